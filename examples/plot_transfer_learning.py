"""
=====================================================
Transfer learning: fine-tuning versus a linear probe
=====================================================

Two ways to reuse a network trained on ImageNet for a new image problem, next
to a small CNN trained from scratch:

* **linear probe**: ``BackboneFeatures('efficientnet_lite0', levels=4)`` turns
  each image into pooled features once (the network's 1,280 and 624 more from
  the three block stages before its last, which describe textures and
  parts), and a ``LogisticRegression`` learns on them;
* **fine-tuning**: ``CNNClassifier('efficientnet_lite0', pretrained=True)``
  replaces EfficientNet-Lite0's 1000-class head with one for our classes and
  trains, first the new head alone on the frozen backbone, then everything
  with a 10x smaller learning rate for the backbone.

The ImageNet weights of ``'efficientnet_lite0'`` are installed with skimgcls
(a pip package ships them): nothing is downloaded, so this runs offline too.
The backbone's preprocessing (resize, gray to RGB, normalization) lives
inside the network, so no preprocessing step is needed.
"""

# %%
# Few photos
# ----------
# Three classes, one photo each (scikit-learn's two sample photos and
# matplotlib's portrait of Grace Hopper), and 10 training crops of 48x48 pixels
# per class, cut from the left part of each photo. The test crops come from
# the right part: no test pixel was seen in training.
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cbook import get_sample_data
from PIL import Image
from sklearn.datasets import load_sample_images

with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
    photos = [*load_sample_images().images, np.array(image.convert("RGB"))]


def crops(photo, n, part, rng, size=48):
    """``n`` random square crops from the left (train) or right (test) part."""
    height, width = photo.shape[:2]
    cut = int(0.55 * width)
    low, high = (0, cut) if part == "train" else (cut, width)
    out = []
    for _ in range(n):
        side = int(rng.uniform(0.15, 0.35) * min(height, width))
        side = min(side, high - low)
        x, y = rng.randint(low, high - side + 1), rng.randint(0, height - side + 1)
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size))
        out.append(np.asarray(crop))
    return np.stack(out)


rng = np.random.RandomState(0)
X_train = np.concatenate([crops(p, 10, "train", rng) for p in photos])
X_test = np.concatenate([crops(p, 40, "test", rng) for p in photos])
y_train, y_test = np.repeat([0, 1, 2], 10), np.repeat([0, 1, 2], 40)
names = ["china", "flower", "grace hopper"]
print(f"{len(X_train)} training and {len(X_test)} test crops, {X_train.shape[1:]}")

fig, axes = plt.subplots(1, 6, figsize=(9, 1.8))
for ax, i in zip(axes, [0, 5, 10, 15, 20, 25]):
    ax.imshow(X_train[i])
    ax.set_title(names[y_train[i]], fontsize=8)
    ax.axis("off")

# %%
# Where the weights come from
# ---------------------------
# :func:`~skimgcls.backbones.weights_info` says, for any backbone name, where
# ``pretrained=True`` reads the weights and whether they are here now.
from skimgcls.backbones import weights_info

print(weights_info("efficientnet_lite0"))

# %%
# Linear probe
# ------------
# The crops are resized to 128x128 inside the network (``input_size``): less
# than a third of the computation of the native 224x224. ``levels=4`` (what
# ``levels='auto'`` gives this backbone) adds the pooled outputs of the
# network's three block stages before the last.
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skimgcls import BackboneFeatures, CNNClassifier

results = {}
probe = make_pipeline(BackboneFeatures("efficientnet_lite0", input_size=128, levels=4),
                      LogisticRegression(max_iter=2000))
start = time.perf_counter()
probe.fit(X_train, y_train)
results["linear probe"] = (probe.score(X_test, y_test), time.perf_counter() - start)

# %%
# Fine-tuning
# -----------
# The first epoch trains only the new head (``freeze='backbone'``), the next
# ones the whole network (``unfreeze_at_epoch=2``) with the backbone at a tenth
# of the learning rate (``backbone_lr_mult=0.1``).
fine_tune = CNNClassifier(
    "efficientnet_lite0", pretrained=True, module__input_size=96,
    freeze="backbone", unfreeze_at_epoch=2, backbone_lr_mult=0.1,
    max_epochs=4, batch_size=10, lr=1e-3, random_state=0,
)
start = time.perf_counter()
fine_tune.fit(X_train, y_train)
results["fine-tuning"] = (fine_tune.score(X_test, y_test), time.perf_counter() - start)

# %%
# From scratch
# ------------
# The same budget of epochs for a small CNN that starts from random weights.
scratch = CNNClassifier("compact_cnn", max_epochs=20, batch_size=10, random_state=0)
start = time.perf_counter()
scratch.fit(X_train, y_train)
results["from scratch"] = (scratch.score(X_test, y_test), time.perf_counter() - start)
for name, (accuracy, seconds) in results.items():
    print(f"{name}: test accuracy {accuracy:.3f}, fit {seconds:.1f} s")

# %%
# Comparison
# ----------
# The probe learns a linear map of fixed features; fine-tuning adapts every
# layer, here with only a dozen optimizer steps; the small CNN learns
# everything, colors included, from 30 crops. Which one wins depends on the
# images (these three photos differ a lot in color, which a network trained
# from scratch picks up at once) and on the budget: no recipe wins on every
# dataset. That is why ``CNNClassifier()`` with its default ``module='auto'``
# compares such recipes on a held-out part of the training data and refits the
# winner (see :ref:`which_model`).
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
labels = list(results)
axes[0].bar(labels, [results[k][0] for k in labels], color=["C0", "C1", "C2"])
axes[0].set_ylim(0, 1)
axes[0].set_title("test accuracy")
axes[1].bar(labels, [results[k][1] for k in labels], color=["C0", "C1", "C2"])
axes[1].set_title("training time (s)")
fig.suptitle("EfficientNet-Lite0 (ImageNet weights, installed with pip) on 30 crops")
fig.tight_layout()
plt.show()
