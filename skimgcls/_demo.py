"""The embedded default job: digits in, report out, model saved."""

import time
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

from .classifier import CNNClassifier
from .persistence import save


def run_demo(out="model-digits", max_epochs=None, random_state=0):
    """Train on scikit-learn's digits, print accuracy and a report, save the model.

    The classifier is ``CNNClassifier()`` with its own defaults (epochs,
    validation fraction, learning rate...), so the demo shows what the
    defaults do.

    Parameters
    ----------
    out : str or path-like, default='model-digits'
        Directory the fitted model is written to.
    max_epochs : int, str or None, default=None
        Training epochs; None keeps ``CNNClassifier``'s default.
    random_state : int, default=0
        Seed of the split and the training.

    Returns
    -------
    accuracy : float
        Accuracy on the held-out quarter of the images.
    """
    digits = load_digits()
    X = digits.images.astype("float32") / 16.0  # (1797, 8, 8), pixel values 0-16
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target,
        random_state=random_state,
    )
    print(f"Training CNNClassifier on {len(X_train)} digits images (8x8 gray), "
          f"testing on {len(X_test)}.")
    params = {} if max_epochs is None else {"max_epochs": max_epochs}
    clf = CNNClassifier(random_state=random_state, verbose=1, **params)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    y_pred = clf.predict(X_test)
    accuracy = float((y_pred == y_test).mean())
    print(f"\nTest accuracy: {accuracy:.4f} (fit took {seconds:.1f} s on "
          f"{clf.device_}, precision {clf.precision_})\n")
    print(classification_report(y_test, y_pred, digits=3))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.safetensors"
    digest = save(clf, path)
    print(f"Saved the fitted model to {path} (sha256 {digest[:16]}...); load it with "
          f"skimgcls.load({str(path)!r}), or use it from the command line: "
          f"skimgcls predict {out} IMAGES...")
    return accuracy
