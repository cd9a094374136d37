"""Metrics of image classifiers: top-k accuracy, as a function and a scorer."""

import numbers

import numpy as np
from sklearn.utils.validation import column_or_1d

__all__ = ["TopKAccuracyScorer", "make_top_k_scorer", "top_k_accuracy"]


class TopKAccuracyScorer:
    """Scorer: share of images whose true class is among the ``k`` most probable.

    Callable as ``scorer(estimator, X, y)``, hence usable as
    ``GridSearchCV(scoring=...)`` or ``cross_val_score(scoring=...)``, also in
    a dict of several scorers. Unlike scikit-learn's ``'top_k_accuracy'``
    string, it takes the class list from the estimator, so it works when a
    test fold lacks some classes, and ``k`` at least the number of classes
    simply scores 1.

    Parameters
    ----------
    k : int, default=5
        Number of most probable classes that count as a hit.

    See Also
    --------
    make_top_k_scorer : Build this scorer.
    sklearn.metrics.top_k_accuracy_score : The metric on given scores.
    """

    def __init__(self, k=5):
        self.k = k

    def __call__(self, estimator, X, y_true, sample_weight=None):
        """Return the top-k accuracy of ``estimator`` on ``X, y_true``.

        Parameters
        ----------
        estimator : estimator instance
            A fitted classifier with ``predict_proba`` and ``classes_``.
        X : array-like
            Images accepted by ``estimator``.
        y_true : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the images in the average.

        Returns
        -------
        score : float
            Between 0 and 1, higher is better.
        """
        proba = np.asarray(estimator.predict_proba(X))
        return top_k_accuracy(y_true, proba, estimator.classes_, k=self.k,
                              sample_weight=sample_weight)

    def __repr__(self):
        return f"make_top_k_scorer(k={self.k})"


def top_k_accuracy(y_true, y_proba, classes, *, k=5, sample_weight=None):
    """Share of samples whose true class is among the ``k`` highest scores.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels; labels not in ``classes`` count as misses.
    y_proba : array-like of shape (n_samples, n_classes)
        Class scores, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,)
        The class labels.
    k : int, default=5
        Number of highest scores that count as a hit.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples in the average.

    Returns
    -------
    score : float
        Weighted share of hits.
    """
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    y_true = column_or_1d(y_true)
    classes = np.asarray(classes)
    proba = np.asarray(y_proba)
    k = min(int(k), len(classes))
    top = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    hits = (classes[top] == y_true[:, None]).any(axis=1)
    return float(np.average(hits, weights=sample_weight))


def make_top_k_scorer(k=5):
    """Make a top-k accuracy scorer for searches and cross-validation.

    Parameters
    ----------
    k : int, default=5
        Number of most probable classes that count as a hit.

    Returns
    -------
    scorer : TopKAccuracyScorer
        A callable ``scorer(estimator, X, y) -> float``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from skimgcls import CNNClassifier, make_top_k_scorer
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(max_epochs=1, module__width=4, random_state=0)
    >>> scores = cross_val_score(clf, X[:200] / 16, y[:200], cv=2,
    ...                          scoring=make_top_k_scorer(k=3))
    >>> scores.shape
    (2,)
    """
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    return TopKAccuracyScorer(k=int(k))
