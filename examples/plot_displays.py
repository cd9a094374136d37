"""
Inspecting a trained classifier
===============================

After ``fit``, look at what the network learned and where it fails:

* learning curves from ``history_`` with
  :class:`~skimgcls.TrainingHistoryDisplay`;
* scikit-learn's confusion matrix, which works with
  :class:`~skimgcls.CNNClassifier` as it is;
* the misclassified images the network was most sure about, with
  :class:`~skimgcls.MisclassifiedImagesDisplay`;
* top-k accuracy with :func:`~skimgcls.make_top_k_scorer`, and test-time
  augmentation (``tta``).

We use scikit-learn's 8x8 digits so that it all runs in seconds on a CPU.
"""

# %%
# Train a small network
# ---------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

from skimgcls import (
    CNNClassifier,
    MisclassifiedImagesDisplay,
    TrainingHistoryDisplay,
    make_top_k_scorer,
)

digits = load_digits()
X = (digits.images / 16).astype(np.float32)  # (1797, 8, 8), values in [0, 1]
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.3, stratify=digits.target, random_state=0
)
clf = CNNClassifier(module__width=8, max_epochs=6, validation_fraction=0.1,
                    precision="fp32", random_state=0)
clf.fit(X_train, y_train)
print(f"test accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# Learning curves
# ---------------
# The training and validation losses, and the validation accuracy, of every
# epoch. The dotted line marks the epoch with the lowest validation loss. A
# validation loss that climbs again while the training loss keeps falling
# would mean overfitting.
history = TrainingHistoryDisplay.from_estimator(clf)
print(f"lowest validation loss at epoch {history.best_epoch_}")

# %%
# Confusion matrix
# ----------------
# scikit-learn's display, used as with any classifier.
ConfusionMatrixDisplay.from_estimator(clf, X_test, y_test, colorbar=False)
plt.title("Confusion matrix on the test images")

# %%
# The worst errors
# ----------------
# The misclassified test images the network was most confident about, with
# the true label, the prediction and its probability.
errors = MisclassifiedImagesDisplay.from_estimator(clf, X_test, y_test, n_images=12,
                                                   n_cols=6)
print(f"{errors.n_errors} of {errors.n_samples} test images are misclassified")

# %%
# Top-k accuracy
# --------------
# How often is the true digit among the 2 or 3 most probable ones? The scorer
# also works as ``scoring=`` in ``GridSearchCV`` and ``cross_val_score``.
for k in (1, 2, 3):
    print(f"top-{k} accuracy: {make_top_k_scorer(k)(clf, X_test, y_test):.3f}")

# %%
# Test-time augmentation
# ----------------------
# Averaging the probabilities of the image and four copies shifted by one
# pixel. (Mirrors would not suit digits: a mirrored 2 is not a 2.) It only
# changes prediction, so it can be switched on after ``fit``.
clf.set_params(tta="shift")
print(f"test accuracy with tta='shift': {clf.score(X_test, y_test):.3f}")
clf.set_params(tta=None)
