"""
=================================
Multi-label images: several tags
=================================

A photo can be "beach" *and* "people". scikit-learn writes such targets as a
2-D indicator matrix, one 0/1 column per label (what
:class:`~sklearn.preprocessing.MultiLabelBinarizer` returns), and
:class:`~skimgcls.CNNClassifier` takes it as ``MLPClassifier`` does: one
sigmoid per label, ``predict`` returns the indicator matrix, ``predict_proba``
the probability of each label, and scikit-learn's multi-label metrics work on
them.

Here each of four tags is a small pattern drawn at a random place of a noisy
12x12 image: a horizontal bar, a vertical bar, a diagonal and a square. An
image carries one to four of them.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import classification_report, f1_score, hamming_loss
from sklearn.preprocessing import MultiLabelBinarizer

from skimgcls import CNNClassifier, MisclassifiedImagesDisplay

PATTERNS = {"hbar": np.ones((1, 4)), "vbar": np.ones((4, 1)),
            "diagonal": np.eye(4), "square": np.ones((2, 2))}


def make_images(n, seed):
    """Noisy images and, for each, the tuple of its tags."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (n, 12, 12)).astype(np.float32)
    tags = []
    for image in images:
        names = [name for name in PATTERNS if rng.random() < 0.4] or [
            rng.choice(list(PATTERNS))]
        for name in names:
            h, w = PATTERNS[name].shape
            r, c = rng.integers(0, 13 - h), rng.integers(0, 13 - w)
            image[r:r + h, c:c + w] += PATTERNS[name]
        tags.append(tuple(names))
    return images, tags


X_train, tags_train = make_images(500, seed=0)
X_test, tags_test = make_images(200, seed=1)
binarizer = MultiLabelBinarizer()
Y_train = binarizer.fit_transform(tags_train)  # (500, 4) of 0/1
Y_test = binarizer.transform(tags_test)
print(binarizer.classes_, Y_train[:3])

# %%
# Fit, predict, score
# -------------------
# ``classes_`` are the column indices, as for ``MLPClassifier``; the binarizer
# keeps the names. ``score`` is scikit-learn's subset accuracy (all tags of an
# image right); the per-sample F1 and the Hamming loss are finer measures.
clf = CNNClassifier(module__width=8, max_epochs=6, precision="fp32", random_state=0)
clf.fit(X_train, Y_train)
Y_pred = clf.predict(X_test)
print("subset accuracy:", clf.score(X_test, Y_test))
print("F1 (samples):   ", round(f1_score(Y_test, Y_pred, average="samples"), 3))
print("Hamming loss:   ", round(hamming_loss(Y_test, Y_pred), 3))
print(classification_report(Y_test, Y_pred, target_names=binarizer.classes_))

# %%
# Choosing the threshold
# ----------------------
# A tag is predicted when its probability is above ``threshold`` (0.5). Lower
# it for recall, raise it for precision, or give one value per tag; it can be
# set after ``fit``.
proba = clf.predict_proba(X_test)  # (200, 4): each tag's own probability
for threshold in (0.2, 0.5, 0.8):
    clf.set_params(threshold=threshold)
    print(f"threshold {threshold}: F1 (samples) "
          f"{f1_score(Y_test, clf.predict(X_test), average='samples'):.3f}")
clf.set_params(threshold=0.5)

# %%
# What the network sees and says
# ------------------------------
fig, axes = plt.subplots(2, 6, figsize=(9, 3.6))
for ax, image, true, p in zip(axes.ravel(), X_test, tags_test, proba):
    ax.imshow(image, cmap="gray")
    predicted = binarizer.classes_[p > 0.5]
    color = "black" if set(predicted) == set(true) else "red"
    ax.set_title("\n".join(predicted) or "(none)", fontsize=7, color=color)
    ax.axis("off")
fig.suptitle("Predicted tags (red: not exactly the true ones)")
fig.tight_layout()
plt.show()

# %%
# The worst errors
# ----------------
# :class:`~skimgcls.MisclassifiedImagesDisplay` takes the indicator matrices:
# an image is an error when its tag set is wrong (what ``score`` counts), the
# most confidently wrong first (the largest per-tag probability error), and
# each title lists the missing and extra tags with their probabilities.
display = MisclassifiedImagesDisplay.from_estimator(
    clf, X_test, Y_test, n_images=8, n_cols=4, display_labels=binarizer.classes_)
plt.show()
