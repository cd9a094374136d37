"""
=========================================
From a folder of image files to a model
=========================================

Most image collections live on disk as files, one folder per class. This
example writes such a folder from scikit-learn's handwritten digits (as PNG
files), trains a :class:`~skimgcls.CNNClassifier` directly on the file paths
(decoded batch by batch in DataLoader workers, so the folder never has to fit
in memory), predicts labels for new files, and shows the mistakes. Like real
folders, this one has files of other sizes and color modes and a file that
cannot be read.
"""

# %%
# Write a folder of real images
# -----------------------------
# ``root/<label>/<file>.png``: the layout of torchvision's ``ImageFolder`` and
# Keras' ``image_dataset_from_directory``. We keep 100 images apart as "new
# files" to predict later.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

digits = load_digits()
images = (digits.images * 16).clip(0, 255).astype(np.uint8)
names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                  "eight", "nine"])
labels = names[digits.target]

root = Path(tempfile.mkdtemp(prefix="skimgcls-digits-"))
train_dir, new_dir = root / "train", root / "new"
new_dir.mkdir(parents=True)
for i, (image, label) in enumerate(zip(images, labels)):
    picture = Image.fromarray(image)  # 8x8 gray PNG files
    if i < 100:
        picture.save(new_dir / f"{i:04d}.png")
    else:
        (train_dir / label).mkdir(parents=True, exist_ok=True)
        picture.save(train_dir / label / f"{i:04d}.png")

# Real folders are messy: a larger color JPEG, a CMYK one, and an empty file.
color = np.stack([images[100], images[100] // 2, images[100]], axis=-1)
Image.fromarray(color).resize((24, 20)).save(train_dir / labels[100] / "from_camera.jpg")
Image.fromarray(images[101]).convert("CMYK").save(train_dir / labels[101] / "print.jpg")
(train_dir / labels[102] / "empty.png").write_bytes(b"")
print(sorted(p.name for p in train_dir.iterdir()))

# %%
# Load the folder lazily
# ----------------------
# ``lazy=True`` returns the file paths, a 1-D array that slices like any
# array (cross-validation and searches work as usual), and the labels, taken
# from the folder names. ``on_error='skip'`` decodes each file once to find
# those that cannot be read, and leaves them out of both arrays with one
# warning that lists them (the default, ``'raise'``, stops with an error
# that lists them).
import warnings

from skimgcls import load_image_folder

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    paths, y = load_image_folder(train_dir, lazy=True, on_error="skip")
print(caught[0].message)
print(len(paths), "files, e.g.", Path(paths[0]).relative_to(root), "->", y[0])

# %%
# Train on the paths
# ------------------
# The ``reader`` says how to decode the files: as one gray channel, at 8x8
# pixels (the files have several sizes and modes). ``fit`` decodes every file
# once and keeps the images in memory (they take far less than the 2 GiB
# budget of ``ImageReader(keep_in_memory='auto')``), so the epochs run as fast
# as on arrays.
# ``RandomAugment`` varies every training batch of every epoch; it never
# touches the validation split or the images we predict.
from skimgcls import CNNClassifier, ImageReader, RandomAugment

clf = CNNClassifier(
    reader=ImageReader(mode="L", size=(8, 8)),
    augment=RandomAugment(degrees=10, translate=0.1, zoom=0.1),
    module__width=8,
    max_epochs=10,
    validation_fraction=0.1,  # hold out 10% to watch the validation accuracy
    random_state=0,
)
clf.fit(paths, y)
print(f"validation accuracy: {clf.history_[-1, 'valid_acc']:.3f}")

# %%
# Predict new files
# -----------------
# ``predict`` takes paths too (or arrays, or PIL images).
new_files = sorted(str(p) for p in new_dir.glob("*.png"))
predicted = clf.predict(new_files)
truth = labels[:100]
print(f"accuracy on {len(new_files)} new files: {np.mean(predicted == truth):.3f}")

# %%
# Show the mistakes
# -----------------
# Probabilities help to see how sure the model was.
proba = clf.predict_proba(new_files)
wrong = np.flatnonzero(predicted != truth)
shown = wrong[:8] if len(wrong) else np.arange(8)
fig, axes = plt.subplots(1, len(shown), figsize=(1.6 * len(shown), 2.2))
for ax, i in zip(np.atleast_1d(axes), shown):
    with Image.open(new_files[i]) as picture:
        ax.imshow(np.asarray(picture), cmap="gray")
    ax.set_title(f"{predicted[i]}\n({proba[i].max():.2f}) not {truth[i]}", fontsize=8)
    ax.axis("off")
fig.suptitle(f"{len(wrong)} mistakes out of {len(new_files)} new files")
plt.tight_layout()
plt.show()
