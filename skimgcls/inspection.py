"""Look inside a fitted classifier: learning curves and worst errors.

The displays follow scikit-learn's visualization API: build one with
``from_estimator`` (or ``from_history`` / ``from_predictions``), which calls
``plot``; the figure is then in ``figure_`` and the axes in ``ax_`` or
``axes_``. matplotlib is needed only to plot (``pip install
"skimgcls[plots]"``) and is imported when ``plot`` runs.

scikit-learn's own displays work as they are with
:class:`~skimgcls.CNNClassifier`, e.g.
``sklearn.metrics.ConfusionMatrixDisplay.from_estimator(clf, X_test, y_test)``.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import column_or_1d

from ._docstring import Substitution
from ._io import read_image
from ._plotting import display_names, for_imshow, image_grid, label_set, pyplot, tile_for
from .classifier import final_estimator, is_multilabel
# The top-k scorers live in skimgcls.metrics; importable from here as before.
from .metrics import TopKAccuracyScorer, make_top_k_scorer, top_k_accuracy
from .utils.validation import as_path_array, check_images, check_labels, is_path_array

__all__ = [
    "MisclassifiedImagesDisplay",
    "TopKAccuracyScorer",
    "TrainingHistoryDisplay",
    "make_top_k_scorer",
    "top_k_accuracy",
]

#: History columns that are bookkeeping, not curves.
_NOT_CURVES = {"epoch", "dur", "batches", "train_batch_count", "valid_batch_count"}


def _history_of(estimator):
    """Find the skorch history of a CNNClassifier, a Pipeline or a search."""
    seen, (estimator, _) = estimator, final_estimator(estimator)
    history = getattr(estimator, "history_", None)
    if history is None and hasattr(estimator, "net_"):
        history = estimator.net_.history
    if history is not None:
        return history
    raise ValueError(
        "Expected a fitted CNNClassifier (alone, as the last step of a Pipeline, "
        f"or as best_estimator_ of a search) with a training history; got "
        f"{type(seen).__name__}. Fit it first, or pass its history_ to "
        "TrainingHistoryDisplay.from_history."
    )


@Substitution("figure_")
class TrainingHistoryDisplay:
    """Learning curves: losses and scores per epoch of a fitted network.

    Build it with :meth:`from_estimator` or :meth:`from_history`; the left
    panel shows the losses (``train_loss``, ``valid_loss``...), the right one
    the scores (``valid_acc``...), and a dotted line marks the epoch with the
    lowest validation loss.

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
        Epoch numbers, starting at 1.
    losses : dict of str to ndarray of shape (n_epochs,)
        Loss curves by name.
    scores : dict of str to ndarray of shape (n_epochs,)
        Score curves (accuracy...) by name; may be empty.
    estimator_name : str or None, default=None
        Shown in the figure title.

    Attributes
    ----------
    {figure_}
    axes_ : ndarray of matplotlib.axes.Axes
        One panel (losses) or two (losses, scores).
    lines_ : dict of str to matplotlib.lines.Line2D
        The curve of each name.
    best_epoch_ : int or None
        Epoch with the lowest ``valid_loss`` (``train_loss`` without
        validation).

    See Also
    --------
    sklearn.model_selection.LearningCurveDisplay : Score versus training set
        size, across refits.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from skimgcls import CNNClassifier, TrainingHistoryDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(max_epochs=2, module__width=4, validation_fraction=0.1,
    ...                     random_state=0)
    >>> clf = clf.fit(X[:300] / 16, y[:300])
    >>> display = TrainingHistoryDisplay.from_estimator(clf)
    >>> [ax.get_title() for ax in display.axes_]
    ['Loss', 'Score']
    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    """

    def __init__(self, *, epochs, losses, scores, estimator_name=None):
        self.epochs = epochs
        self.losses = losses
        self.scores = scores
        self.estimator_name = estimator_name

    @classmethod
    @Substitution("ax_panels")
    def from_history(cls, history, *, keys=None, estimator_name=None, ax=None):
        """Plot the curves recorded in a skorch history.

        Parameters
        ----------
        history : skorch.History or list of dict
            One dict per epoch, e.g. ``clf.history_``.
        keys : list of str or None, default=None
            Columns to plot. None plots every numeric column present in all
            epochs except bookkeeping (``epoch``, ``dur``, batch counts, the
            ``*_best`` flags and ``event_*`` values such as learning rates). Names
            ending in ``loss`` go to the loss panel, the others to the score
            panel.
        estimator_name : str or None, default=None
            Shown in the figure title.
        {ax_panels}

        Returns
        -------
        display : TrainingHistoryDisplay
            The plotted display.
        """
        rows = list(history.to_list() if hasattr(history, "to_list") else history)
        if not rows:
            raise ValueError("The history is empty: fit the estimator for at least "
                             "one epoch first.")
        if keys is None:
            keys = [key for key in rows[0]
                    if key not in _NOT_CURVES and not key.endswith("_best")
                    and not key.startswith("event_")
                    and all(isinstance(row.get(key), numbers.Real)
                            and not isinstance(row.get(key), bool) for row in rows)]
        missing = [key for key in keys if any(key not in row for row in rows)]
        if missing:
            raise ValueError(
                f"History columns {missing} are not recorded in every epoch; "
                f"available: {sorted(rows[-1])}."
            )
        epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(rows)])
        curves = {key: np.array([row[key] for row in rows], dtype=float)
                  for key in keys}
        display = cls(
            epochs=epochs,
            losses={k: v for k, v in curves.items() if k.endswith("loss")},
            scores={k: v for k, v in curves.items() if not k.endswith("loss")},
            estimator_name=estimator_name,
        )
        return display.plot(ax=ax)

    @classmethod
    @Substitution("ax_panels")
    def from_estimator(cls, estimator, *, keys=None, ax=None):
        """Plot the training history of a fitted estimator.

        Parameters
        ----------
        estimator : estimator instance
            A fitted :class:`~skimgcls.CNNClassifier`, a Pipeline ending with
            one, or a fitted search whose ``best_estimator_`` is one of those.
        keys : list of str or None, default=None
            Columns to plot, as in :meth:`from_history`.
        {ax_panels}

        Returns
        -------
        display : TrainingHistoryDisplay
            The plotted display.
        """
        return cls.from_history(_history_of(estimator), keys=keys,
                                estimator_name=type(estimator).__name__, ax=ax)

    def plot(self, *, ax=None):
        """Draw the curves.

        Parameters
        ----------
        ax : sequence of matplotlib.axes.Axes or None, default=None
            One axes per panel (one without scores, else two); None creates a
            figure.

        Returns
        -------
        display : TrainingHistoryDisplay
            This display, with ``figure_``, ``axes_`` and ``lines_``.
        """
        plt = pyplot("TrainingHistoryDisplay")
        panels = [("Loss", self.losses)] + ([("Score", self.scores)]
                                            if self.scores else [])
        if ax is None:
            fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5),
                                     squeeze=False, layout="constrained")
            axes = axes[0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object))
            if len(axes) != len(panels):
                raise ValueError(f"Expected {len(panels)} axes (one per panel: "
                                 f"{[p[0] for p in panels]}); got {len(axes)}.")
            fig = axes[0].figure
        monitor = self.losses.get("valid_loss", self.losses.get("train_loss"))
        self.best_epoch_ = (None if monitor is None
                            else int(self.epochs[int(np.nanargmin(monitor))]))
        self.lines_ = {}
        for axis, (title, curves) in zip(axes, panels):
            for name, values in curves.items():
                (self.lines_[name],) = axis.plot(self.epochs, values, marker=".",
                                                 label=name)
            if self.best_epoch_ is not None:
                axis.axvline(self.best_epoch_, color="gray", linestyle=":",
                             label=f"best epoch ({self.best_epoch_})")
            axis.set(title=title, xlabel="epoch")
            axis.legend()
        if self.estimator_name:
            fig.suptitle(f"Training history of {self.estimator_name}")
        self.figure_, self.axes_ = fig, np.asarray(axes, dtype=object)
        return self


def _display_images(X, indices):
    """Return the images at ``indices`` as NHWC arrays for imshow."""
    if is_path_array(X):  # decoded like training files: EXIF-upright, closed
        paths = as_path_array(X)[indices]
        return [read_image(path, mode=None) for path in paths]
    images = check_images(X)
    return [images[i] for i in indices]


@Substitution("display_labels_columns", "figure_")
class MisclassifiedImagesDisplay:
    """A grid of the worst errors: image, true label, prediction, probability.

    "Worst" means the misclassified images the classifier was most confident
    about (highest probability of the wrong prediction). Build it with
    :meth:`from_estimator` or :meth:`from_predictions`.

    Multi-label data (2-D 0/1 indicator matrices ``y``, as a multi-label
    :class:`~skimgcls.CNNClassifier` predicts) count an image as misclassified
    when its predicted label set differs from the true one in any label (the
    subset accuracy of ``score``). The errors are ranked by their largest
    per-label probability error ``max_j |p_j - y_j|``, so an image with a
    label predicted at 0.98 that it does not carry comes before one whose
    wrong label hovers at the threshold. Each title shows the true and
    predicted label sets, the missing labels (true, not predicted) and the
    extra ones (predicted, not true), each with its probability.

    Parameters
    ----------
    images : list of ndarray
        The misclassified images to show, NHWC or HW.
    y_true : ndarray of shape (n_images,) or (n_images, n_labels)
        Their true labels (names when ``display_labels`` was given), or rows
        of a multi-label indicator matrix.
    y_pred : ndarray of shape (n_images,) or (n_images, n_labels)
        The predicted labels, as ``y_true``.
    confidence : ndarray of shape (n_images,) or None
        The probability of each prediction (multi-label: the largest
        per-label error ``max_j |p_j - y_j|``), or None if unknown; the
        errors are ranked by it.
    indices : ndarray of shape (n_images,)
        Positions of the images in the input.
    n_errors : int
        How many images were misclassified in all.
    n_samples : int
        How many images were classified.
    y_proba : ndarray of shape (n_images, n_labels) or None, default=None
        Multi-label only: each label's probability, shown next to the
        missing and extra labels.
    {display_labels_columns}

    Attributes
    ----------
    {figure_}
    axes_ : ndarray of matplotlib.axes.Axes of shape (n_rows, n_cols)
        One axes per image (unused cells are hidden).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skimgcls import MisclassifiedImagesDisplay
    >>> images = np.zeros((4, 8, 8))
    >>> display = MisclassifiedImagesDisplay.from_predictions(
    ...     images, y_true=[0, 1, 1, 0], y_pred=[0, 0, 1, 1],
    ...     y_proba=[0.9, 0.8, 0.7, 0.6])
    >>> display.indices.tolist()
    [1, 3]
    >>> display.axes_[0, 0].get_title()
    'true: 1\\npred: 0 (0.80)'

    Multi-label indicator matrices, with names for the label columns:

    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    >>> display = MisclassifiedImagesDisplay.from_predictions(
    ...     images, y_true=[[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]],
    ...     y_pred=[[0, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]],
    ...     y_proba=[[0.3, 0.9, 0.1], [0.2, 0.8, 0.1], [0.9, 0.2, 0.95],
    ...              [0.1, 0.1, 0.7]],
    ...     display_labels=["cat", "dog", "bird"])
    >>> display.indices.tolist()  # largest |p - y|: 0.95 (bird), then 0.7 (cat)
    [2, 0]
    >>> print(display.axes_[0, 0].get_title())
    true: {cat}
    pred: {cat, bird}
    extra: bird (0.95)
    >>> print(display.axes_[0, 1].get_title())
    true: {cat, dog}
    pred: {dog}
    missing: cat (0.30)
    >>> plt.close("all")
    """

    def __init__(self, *, images, y_true, y_pred, confidence, indices, n_errors,
                 n_samples, y_proba=None, display_labels=None):
        self.images = images
        self.y_true = y_true
        self.y_pred = y_pred
        self.confidence = confidence
        self.indices = indices
        self.n_errors = n_errors
        self.n_samples = n_samples
        self.y_proba = y_proba
        self.display_labels = display_labels

    @classmethod
    @Substitution("worst_errors")
    def from_estimator(cls, estimator, X, y, *, display_labels=None, n_images=16,
                       n_cols=None, cmap="gray", ax=None):
        """Classify ``X`` and show the worst errors.

        Parameters
        ----------
        estimator : estimator instance
            A fitted classifier with ``predict_proba`` and ``classes_`` (a
            :class:`~skimgcls.CNNClassifier` or a Pipeline ending with one).
            A multi-label one is used through ``predict`` (its
            ``threshold``) and ``predict_proba``.
        X : array-like, list of PIL.Image.Image or array of paths
            Images accepted by ``estimator``.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            True labels, or the 0/1 indicator matrix of a multi-label
            estimator.
        display_labels : array-like of shape (n_classes,) or None, default=None
            Names shown in the titles for ``estimator.classes_``, in their
            order; for a multi-label estimator, the names of its label
            columns (e.g. the ``classes_`` of the ``MultiLabelBinarizer``
            that made ``y``). None shows the labels themselves (the column
            indices, for multi-label).
        {worst_errors}

        Returns
        -------
        display : MisclassifiedImagesDisplay
            The plotted display.
        """
        proba = np.asarray(estimator.predict_proba(X))
        if _is_indicator(y) or is_multilabel(final_estimator(estimator)[0]):
            # predict applies the estimator's threshold, as its score does
            y_pred, labels = estimator.predict(X), None
        else:
            y_pred, labels = estimator.classes_[proba.argmax(axis=1)], estimator.classes_
        return cls.from_predictions(
            X, y, y_pred, y_proba=proba, labels=labels, display_labels=display_labels,
            n_images=n_images, n_cols=n_cols, cmap=cmap, ax=ax)

    @classmethod
    @Substitution("worst_errors")
    def from_predictions(cls, X, y_true, y_pred, *, y_proba=None, labels=None,
                         display_labels=None, n_images=16, n_cols=None, cmap="gray",
                         ax=None):
        """Show the worst errors among given predictions.

        Parameters
        ----------
        X : array-like, list of PIL.Image.Image or array of paths
            The images that were classified.
        y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
            True labels, or a multi-label 0/1 indicator matrix (dense or
            sparse).
        y_pred : array-like of shape (n_samples,) or (n_samples, n_labels)
            Predicted labels, in the format of ``y_true``.
        y_proba : array-like of shape (n_samples,) or (n_samples, n_classes), \
default=None
            The probability of each prediction, or all class probabilities
            with columns in the order of ``labels``; for multi-label data,
            each label's probability, shape ``(n_samples, n_labels)`` (a
            multi-label ``predict_proba``). Errors are sorted by it, most
            confident first (multi-label: by ``max_j |y_proba[:, j] -
            y_true[:, j]|``). None keeps the input order.
        labels : array-like of shape (n_classes,) or None, default=None
            Column labels of a 2-D single-label ``y_proba``; the sorted union
            of ``y_true`` and ``y_pred`` when None. Not for multi-label data,
            whose columns are the labels.
        display_labels : array-like of shape (n_classes,) or None, default=None
            Names shown in the titles, in the order of ``labels``; for
            multi-label data, the names of the label columns. None shows the
            labels themselves (the column indices, for multi-label).
        {worst_errors}

        Returns
        -------
        display : MisclassifiedImagesDisplay
            The plotted display.
        """
        if _is_indicator(y_true) or _is_indicator(y_pred):
            return cls._from_indicators(
                X, y_true, y_pred, y_proba=y_proba, labels=labels,
                display_labels=display_labels, n_images=n_images, n_cols=n_cols,
                cmap=cmap, ax=ax)
        y_true = column_or_1d(y_true)
        y_pred = column_or_1d(y_pred)
        if len(y_true) != len(y_pred):
            raise ValueError(f"y_true has {len(y_true)} labels but y_pred has "
                             f"{len(y_pred)}; pass one of each per image.")
        confidence = _prediction_confidence(y_proba, y_pred, y_true, labels)
        errors = np.flatnonzero(y_true != y_pred)
        if confidence is not None:
            errors = errors[np.argsort(-confidence[errors], kind="stable")]
        shown = errors[:n_images]
        shown_true, shown_pred = y_true[shown], y_pred[shown]
        if display_labels is not None:
            classes = (np.unique(np.concatenate([y_true, y_pred])) if labels is None
                       else np.asarray(labels))
            shown_true = _named(shown_true, classes, display_labels)
            shown_pred = _named(shown_pred, classes, display_labels)
        display = cls(
            images=_display_images(X, shown), y_true=shown_true, y_pred=shown_pred,
            confidence=None if confidence is None else confidence[shown],
            indices=shown, n_errors=len(errors), n_samples=len(y_true),
        )
        return display.plot(n_cols=n_cols, cmap=cmap, ax=ax)

    @classmethod
    def _from_indicators(cls, X, y_true, y_pred, *, y_proba, labels, display_labels,
                         n_images, n_cols, cmap, ax):
        """:meth:`from_predictions` for multi-label indicator matrices."""
        y_true, y_pred = _check_indicators(y_true, y_pred)
        n_samples, n_labels = y_true.shape
        if labels is not None:
            raise ValueError(
                "labels= orders the columns of a single-label y_proba; the columns "
                "of multi-label indicator matrices are the labels themselves. Pass "
                "their names as display_labels=."
            )
        if display_labels is not None:
            display_labels = display_names(
                display_labels, n_labels, "label columns of y_true", "pass one name "
                "per column, in column order (e.g. the classes_ of a "
                "MultiLabelBinarizer).")
        proba = confidence = None
        if y_proba is not None:
            proba = np.asarray(y_proba.toarray() if sp.issparse(y_proba) else y_proba,
                               dtype=float)
            if proba.shape != y_true.shape:
                raise ValueError(
                    f"A multi-label y_proba holds each label's probability, shape "
                    f"(n_samples, n_labels) = {y_true.shape} like y_true; got "
                    f"shape {proba.shape}. Pass predict_proba(X) of the multi-label "
                    "classifier, or None."
                )
            confidence = np.abs(proba - y_true).max(axis=1)
        errors = np.flatnonzero((y_true != y_pred).any(axis=1))
        if confidence is not None:
            errors = errors[np.argsort(-confidence[errors], kind="stable")]
        shown = errors[:n_images]
        display = cls(
            images=_display_images(X, shown), y_true=y_true[shown],
            y_pred=y_pred[shown],
            confidence=None if confidence is None else confidence[shown],
            indices=shown, n_errors=len(errors), n_samples=n_samples,
            y_proba=None if proba is None else proba[shown],
            display_labels=display_labels,
        )
        return display.plot(n_cols=n_cols, cmap=cmap, ax=ax)

    def _title(self, i):
        if np.ndim(self.y_true) != 2:
            title = f"true: {self.y_true[i]}\npred: {self.y_pred[i]}"
            if self.confidence is not None:
                title += f" ({self.confidence[i]:.2f})"
            return title
        true, pred = self.y_true[i].astype(bool), self.y_pred[i].astype(bool)
        names = self.display_labels
        lines = [f"true: {label_set(true, names)}", f"pred: {label_set(pred, names)}"]
        for what, columns in (("missing", true & ~pred), ("extra", pred & ~true)):
            shown = [str(j if names is None else names[j])
                     + ("" if self.y_proba is None else f" ({self.y_proba[i, j]:.2f})")
                     for j in np.flatnonzero(columns)]
            if shown:
                lines.append(f"{what}: {', '.join(shown)}")
        return "\n".join(lines)

    @Substitution("image_grid")
    def plot(self, *, n_cols=None, cmap="gray", ax=None):
        """Draw the grid of images.

        Parameters
        ----------
        {image_grid}

        Returns
        -------
        display : MisclassifiedImagesDisplay
            This display, with ``figure_`` and ``axes_``.
        """
        plt = pyplot("MisclassifiedImagesDisplay")
        titles = [self._title(i) for i in range(len(self.images))]
        tile = (1.6, 1.9)
        if np.ndim(self.y_true) == 2:  # label sets: longer titles
            tile = tile_for(titles, tile)
        fig, axes = image_grid(plt, len(self.images), n_cols=n_cols, ax=ax, tile=tile)
        if not len(self.images):
            axes.flat[0].text(0.5, 0.5, "No misclassified images",
                              ha="center", va="center")
        for i, axis in enumerate(axes.flat[:len(self.images)]):
            axis.imshow(for_imshow(self.images[i]), cmap=cmap)
            axis.set_title(titles[i], fontsize=8)
        if self.n_errors == 0:
            shown = "No errors"
        elif len(self.images) == self.n_errors:
            shown = f"All {self.n_errors} errors"
        else:
            shown = f"{len(self.images)} worst of {self.n_errors} errors"
        fig.suptitle(f"{shown} ({self.n_samples} images)")
        self.figure_, self.axes_ = fig, axes
        return self


def _is_indicator(y):
    """A sparse matrix, or a 2-D array with more than one column (as ``fit``)."""
    if sp.issparse(y):
        return True
    try:
        shape = np.shape(y)
    except ValueError:  # ragged nested sequences: not a matrix
        return False
    return len(shape) == 2 and shape[1] != 1


def _check_indicators(y_true, y_pred):
    """Both as int64 0/1 indicator matrices of one shape, or a ValueError."""
    def shape(y):
        return y.shape if sp.issparse(y) else np.shape(y)

    if _is_indicator(y_true) != _is_indicator(y_pred):
        which, other = (("y_true", "y_pred") if _is_indicator(y_true)
                        else ("y_pred", "y_true"))
        given = {"y_true": y_true, "y_pred": y_pred}
        raise ValueError(
            f"{which} is a multi-label indicator matrix of shape "
            f"{shape(given[which])}, but {other} has shape {shape(given[other])}, "
            "one label per image. Pass both as 0/1 indicator matrices of the same "
            "shape (a multi-label classifier's predict returns one; "
            "MultiLabelBinarizer makes one from label sets), or both as one label "
            "per image."
        )
    checked = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        try:
            checked.append(check_labels(y, multilabel=True))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    y_true, y_pred = checked
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; "
            "pass one row per image and one column per label, in the same column "
            "order, for both."
        )
    return y_true, y_pred


def _named(values, classes, display_labels):
    """``values`` (labels from ``classes``) as their ``display_labels``."""
    classes = np.asarray(classes)
    names = display_names(display_labels, classes.size,
                          f"classes {classes.tolist()[:20]!r}",
                          "pass one name per class, in that order.")
    lookup = dict(zip(classes.tolist(), names.tolist()))
    unknown = sorted({repr(v) for v in values.tolist() if v not in lookup})
    if unknown:
        raise ValueError(f"Labels {', '.join(unknown[:5])} are not among the classes "
                         f"{classes.tolist()[:20]!r} that display_labels names.")
    return np.array([lookup[v] for v in values.tolist()], dtype=object)


def _prediction_confidence(y_proba, y_pred, y_true, labels):
    if y_proba is None:
        return None
    proba = np.asarray(y_proba, dtype=float)
    if proba.ndim == 1:
        if len(proba) != len(y_pred):
            raise ValueError(f"A 1-D y_proba needs one probability per image "
                             f"({len(y_pred)}); got {len(proba)}.")
        return proba
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = np.asarray(labels)
    unknown = np.setdiff1d(y_pred, labels)
    if unknown.size:
        raise ValueError(f"y_pred has labels {unknown.tolist()[:5]} that are not in "
                         f"labels={labels.tolist()[:20]}.")
    if proba.shape != (len(y_pred), len(labels)):
        raise ValueError(
            f"A 2-D y_proba must have shape (n_samples, n_classes) = "
            f"({len(y_pred)}, {len(labels)}); got {proba.shape}. Pass labels= in "
            "the order of its columns."
        )
    order = np.argsort(labels)
    columns = order[np.searchsorted(labels, y_pred, sorter=order)]
    return proba[np.arange(len(y_pred)), columns]
