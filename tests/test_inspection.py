"""Displays (rendered headless with Agg) and the top-k accuracy scorer."""

import copy

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    confusion_matrix,
    top_k_accuracy_score,
)
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from scipy import sparse  # noqa: E402

from skimgcls import (  # noqa: E402
    CNNClassifier,
    MisclassifiedImagesDisplay,
    TrainingHistoryDisplay,
    make_top_k_scorer,
)
from skimgcls.inspection import top_k_accuracy  # noqa: E402

from .test_multilabel import planted  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    digits = load_digits()
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(digits.target))[:400]
    X = (digits.images[idx] / 16).astype(np.float32)
    y = digits.target[idx]
    return X[:300], y[:300], X[300:], y[300:]


def tiny(**params):
    defaults = dict(module__width=4, max_epochs=3, batch_size=32, lr=0.01,
                    validation_fraction=0.1, random_state=0, precision="fp32")
    defaults.update(params)
    return CNNClassifier(**defaults)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, _ = data
    return tiny().fit(X, y)


# -- learning curves ------------------------------------------------------------
def test_history_display_from_estimator(fitted):
    display = TrainingHistoryDisplay.from_estimator(fitted)
    assert len(display.axes_) == 2 and len(display.figure_.axes) == 2
    assert [ax.get_title() for ax in display.axes_] == ["Loss", "Score"]
    assert set(display.lines_) == {"train_loss", "valid_loss", "valid_acc"}
    np.testing.assert_allclose(display.lines_["valid_acc"].get_ydata(),
                               fitted.history_[:, "valid_acc"])
    np.testing.assert_array_equal(display.lines_["train_loss"].get_xdata(), [1, 2, 3])
    best = int(np.argmin(fitted.history_[:, "valid_loss"])) + 1
    assert display.best_epoch_ == best
    legend = [t.get_text() for t in display.axes_[0].get_legend().get_texts()]
    assert legend == ["train_loss", "valid_loss", f"best epoch ({best})"]
    assert display.figure_._suptitle.get_text() == "Training history of CNNClassifier"
    assert display.axes_[1].get_xlabel() == "epoch"


def test_history_display_finds_the_network_in_a_pipeline(fitted, data):
    X, y, _, _ = data
    pipe = make_pipeline(FunctionTransformer(), tiny(max_epochs=2,
                                                     validation_fraction=None))
    pipe.fit(X, y)
    display = TrainingHistoryDisplay.from_estimator(pipe)
    # without a validation split there is only the training loss
    assert list(display.lines_) == ["train_loss"] and len(display.axes_) == 1
    with pytest.raises(ValueError, match="Expected a fitted CNNClassifier"):
        TrainingHistoryDisplay.from_estimator(FunctionTransformer())


def test_history_display_from_history_with_keys_and_axes():
    history = [{"epoch": 1, "train_loss": 2.0, "valid_loss": 2.5, "valid_acc": 0.3,
                "valid_loss_best": True, "dur": 0.1},
               {"epoch": 2, "train_loss": 1.0, "valid_loss": 2.0, "valid_acc": 0.6,
                "valid_loss_best": True, "dur": 0.1}]
    fig, axes = plt.subplots(1, 2)
    display = TrainingHistoryDisplay.from_history(history, ax=axes,
                                                  estimator_name="MyNet")
    assert display.figure_ is fig and display.best_epoch_ == 2
    assert display.figure_._suptitle.get_text() == "Training history of MyNet"
    display = TrainingHistoryDisplay.from_history(history, keys=["train_loss"])
    assert list(display.lines_) == ["train_loss"]
    with pytest.raises(ValueError, match="not recorded in every epoch"):
        TrainingHistoryDisplay.from_history(history, keys=["train_acc"])
    with pytest.raises(ValueError, match="Expected 2 axes"):
        TrainingHistoryDisplay.from_history(history, ax=[axes[0]])


# -- misclassified images -------------------------------------------------------
def test_misclassified_from_estimator_shows_worst_errors(fitted, data):
    _, _, X_test, y_test = data
    display = MisclassifiedImagesDisplay.from_estimator(fitted, X_test, y_test,
                                                        n_images=6)
    proba = fitted.predict_proba(X_test)
    y_pred = fitted.classes_[proba.argmax(axis=1)]
    errors = np.flatnonzero(y_pred != y_test)
    assert display.n_errors == len(errors) > 6
    # the six most confident errors, most confident first
    confidence = proba.max(axis=1)
    np.testing.assert_array_equal(
        display.indices, errors[np.argsort(-confidence[errors], kind="stable")][:6])
    assert np.all(np.diff(display.confidence) <= 0)
    drawn = [ax for ax in display.axes_.flat if ax.images]
    assert len(drawn) == 6 and display.axes_.shape == (2, 3)
    for ax, i in zip(drawn, display.indices):
        assert ax.get_title() == (f"true: {y_test[i]}\npred: {y_pred[i]} "
                                  f"({confidence[i]:.2f})")
        np.testing.assert_allclose(ax.images[0].get_array(), X_test[i])
    assert display.figure_._suptitle.get_text() == (
        f"6 worst of {len(errors)} errors (100 images)")


def test_misclassified_from_predictions_with_labels_and_paths(tmp_path):
    paths = []
    for i, value in enumerate([0, 128, 255]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((5, 6, 3), value, np.uint8)).save(path)
        paths.append(str(path))
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    display = MisclassifiedImagesDisplay.from_predictions(
        paths, ["cat", "dog", "cat"], ["dog", "cat", "dog"], y_proba=proba,
        labels=["cat", "dog"], n_cols=3)
    assert display.indices.tolist() == [1, 0, 2]  # by confidence 0.9, 0.8, 0.6
    titles = [ax.get_title() for ax in display.axes_.flat]
    assert titles == ["true: dog\npred: cat (0.90)", "true: cat\npred: dog (0.80)",
                      "true: cat\npred: dog (0.60)"]
    assert display.axes_.flat[0].images[0].get_array().shape == (5, 6, 3)
    with pytest.raises(ValueError, match="not in labels"):
        MisclassifiedImagesDisplay.from_predictions(
            paths, ["a", "b", "a"], ["b", "a", "c"], y_proba=proba, labels=["a", "b"])


def test_misclassified_without_errors():
    display = MisclassifiedImagesDisplay.from_predictions(
        np.zeros((2, 4, 4)), [1, 2], [1, 2])
    assert display.n_errors == 0
    texts = [t.get_text() for t in display.axes_.flat[0].texts]
    assert texts == ["No misclassified images"]
    assert display.figure_._suptitle.get_text() == "No errors (2 images)"
    display = MisclassifiedImagesDisplay.from_predictions(
        np.zeros((3, 4, 4)), [1, 2, 2], [1, 1, 2])
    assert display.figure_._suptitle.get_text() == "All 1 errors (3 images)"


def test_misclassified_display_labels_name_single_label_classes():
    display = MisclassifiedImagesDisplay.from_predictions(
        np.zeros((3, 4, 4)), [0, 1, 2], [0, 2, 1], y_proba=[0.9, 0.8, 0.7],
        display_labels=["cat", "dog", "bird"])
    assert [ax.get_title() for ax in display.axes_.flat if ax.images] == [
        "true: dog\npred: bird (0.80)", "true: bird\npred: dog (0.70)"]
    with pytest.raises(ValueError, match=r"display_labels has 2 names for the 3 "
                                         r"classes \[0, 1, 2\]"):
        MisclassifiedImagesDisplay.from_predictions(
            np.zeros((3, 4, 4)), [0, 1, 2], [0, 2, 1], display_labels=["a", "b"])


# -- misclassified images: multi-label ------------------------------------------
NAMES = ["hbar", "vbar", "diagonal", "square"]


@pytest.fixture(scope="module")
def multilabel():
    X, Y = planted(300)
    X_test, Y_test = planted(100, seed=1)
    clf = CNNClassifier(module__width=4, max_epochs=3, precision="fp32",
                        random_state=0).fit(X, Y)
    return clf, X_test, Y_test


def test_multilabel_errors_are_wrong_label_sets_ranked_by_largest_error(multilabel):
    clf, X, Y = multilabel
    display = MisclassifiedImagesDisplay.from_estimator(clf, X, Y, n_images=6,
                                                        display_labels=NAMES)
    Y_pred, proba = clf.predict(X), clf.predict_proba(X)
    wrong = np.flatnonzero((Y_pred != Y).any(axis=1))
    # an error is an image that score (the subset accuracy) counts as wrong
    assert display.n_errors == len(wrong) == round((1 - clf.score(X, Y)) * len(X))
    assert 6 < len(wrong) < len(X)
    gap = np.abs(proba - Y).max(axis=1)
    np.testing.assert_array_equal(
        display.indices, wrong[np.argsort(-gap[wrong], kind="stable")][:6])
    np.testing.assert_allclose(display.confidence, gap[display.indices])
    assert np.all(np.diff(display.confidence) <= 0)
    np.testing.assert_array_equal(display.y_true, Y[display.indices])
    np.testing.assert_array_equal(display.y_pred, Y_pred[display.indices])
    drawn = [ax for ax in display.axes_.flat if ax.images]
    assert len(drawn) == 6
    for k, (ax, i) in enumerate(zip(drawn, display.indices)):
        true = {NAMES[j] for j in np.flatnonzero(Y[i])}
        pred = {NAMES[j] for j in np.flatnonzero(Y_pred[i])}
        lines = ax.get_title().split("\n")
        assert lines[0] == "true: {" + ", ".join(n for n in NAMES if n in true) + "}"
        assert lines[1] == "pred: {" + ", ".join(n for n in NAMES if n in pred) + "}"
        expected = []
        for what, names in (("missing", true - pred), ("extra", pred - true)):
            if names:
                expected.append(f"{what}: " + ", ".join(
                    f"{n} ({proba[i, NAMES.index(n)]:.2f})" for n in NAMES if n in names))
        assert lines[2:] == expected
        np.testing.assert_array_equal(display.images[k][..., 0], X[i])
    assert display.figure_._suptitle.get_text() == (
        f"6 worst of {len(wrong)} errors (100 images)")
    # the panels widen to fit their titles (about 0.065 inch a character)
    longest = max(len(line) for ax in drawn for line in ax.get_title().split("\n"))
    assert longest > 25
    assert display.figure_.get_size_inches()[0] >= 3 * 0.065 * longest


def test_multilabel_errors_follow_the_threshold(multilabel):
    clf, X, Y = multilabel
    strict = copy.deepcopy(clf).set_params(threshold=0.9)
    display = MisclassifiedImagesDisplay.from_estimator(strict, X, Y, n_images=100)
    expected = np.flatnonzero((strict.predict(X) != Y).any(axis=1))
    assert display.n_errors == len(expected) == round((1 - strict.score(X, Y)) * 100)
    assert display.n_errors != MisclassifiedImagesDisplay.from_estimator(
        clf, X, Y).n_errors
    np.testing.assert_array_equal(np.sort(display.indices), expected)


def test_multilabel_from_predictions_titles_without_probabilities():
    images = np.zeros((4, 4, 4))
    Y_true = sparse.csr_matrix([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]])
    Y_pred = [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    display = MisclassifiedImagesDisplay.from_predictions(images, Y_true, Y_pred)
    assert display.indices.tolist() == [1, 2, 3]  # no probabilities: input order
    assert display.confidence is None
    assert [ax.get_title() for ax in display.axes_.flat if ax.images] == [
        "true: {}\npred: {1}\nextra: 1",
        "true: {0, 1}\npred: {}\nmissing: 0, 1",
        "true: {1, 2}\npred: {0, 2}\nmissing: 1\nextra: 0",
    ]
    assert display.figure_._suptitle.get_text() == "All 3 errors (4 images)"


def test_multilabel_shape_errors_say_what_to_pass(multilabel):
    clf, X, Y = multilabel
    images = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match=r"y_true is a multi-label indicator matrix "
                                         r"of shape \(2, 3\), but y_pred has shape "
                                         r"\(2,\), one label per image"):
        MisclassifiedImagesDisplay.from_predictions(images, [[1, 0, 0], [0, 1, 1]],
                                                    [0, 1])
    with pytest.raises(ValueError, match=r"y_pred is a multi-label indicator matrix"):
        MisclassifiedImagesDisplay.from_predictions(images, [0, 1],
                                                    [[1, 0, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match=r"y_true has shape \(2, 3\) but y_pred has "
                                         r"shape \(2, 2\); pass one row per image"):
        MisclassifiedImagesDisplay.from_predictions(images, [[1, 0, 0], [0, 1, 1]],
                                                    [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"y_pred: A multi-label y must be a binary "
                                         r"indicator matrix"):
        MisclassifiedImagesDisplay.from_predictions(images, [[1, 0, 0], [0, 1, 1]],
                                                    [[1, 0, 2], [0, 1, 1]])
    with pytest.raises(ValueError, match=r"A multi-label y_proba holds each label's "
                                         r"probability, shape \(n_samples, n_labels\) "
                                         r"= \(2, 3\).*got shape \(2,\)"):
        MisclassifiedImagesDisplay.from_predictions(
            images, [[1, 0, 0], [0, 1, 1]], [[1, 0, 1], [0, 1, 1]], y_proba=[0.9, 0.1])
    with pytest.raises(ValueError, match="Pass their names as display_labels="):
        MisclassifiedImagesDisplay.from_predictions(
            images, [[1, 0, 0], [0, 1, 1]], [[1, 0, 1], [0, 1, 1]], labels=["a", "b"])
    with pytest.raises(ValueError, match=r"display_labels has 2 names for the 3 label "
                                         r"columns of y_true"):
        MisclassifiedImagesDisplay.from_predictions(
            images, [[1, 0, 0], [0, 1, 1]], [[1, 0, 1], [0, 1, 1]],
            display_labels=["a", "b"])
    # a multi-label estimator with one label per image: refused, not the top label
    with pytest.raises(ValueError, match=r"y_pred is a multi-label indicator matrix "
                                         r"of shape \(100, 4\), but y_true has shape "
                                         r"\(100,\)"):
        MisclassifiedImagesDisplay.from_estimator(clf, X, Y.argmax(axis=1))


# -- scikit-learn's displays ----------------------------------------------------
def test_sklearn_confusion_matrix_display_works(fitted, data):
    _, _, X_test, y_test = data
    display = ConfusionMatrixDisplay.from_estimator(fitted, X_test, y_test)
    np.testing.assert_array_equal(
        display.confusion_matrix, confusion_matrix(y_test, fitted.predict(X_test)))
    np.testing.assert_array_equal(display.display_labels, fitted.classes_)
    assert display.text_.shape == (10, 10)
    assert display.ax_.get_xlabel() == "Predicted label"
    tick_labels = [t.get_text() for t in display.ax_.get_xticklabels()]
    assert tick_labels == [str(c) for c in range(10)]


# -- top-k accuracy -------------------------------------------------------------
def test_top_k_accuracy_matches_sklearn():
    rng = np.random.RandomState(0)
    proba = rng.dirichlet(np.ones(5), size=50)
    y = rng.randint(5, size=50)
    weights = rng.rand(50)
    for k in (1, 2, 4):
        assert top_k_accuracy(y, proba, np.arange(5), k=k) == pytest.approx(
            top_k_accuracy_score(y, proba, k=k, labels=np.arange(5)))
        assert top_k_accuracy(y, proba, np.arange(5), k=k,
                              sample_weight=weights) == pytest.approx(
            top_k_accuracy_score(y, proba, k=k, labels=np.arange(5),
                                 sample_weight=weights))
    assert top_k_accuracy(y, proba, np.arange(5), k=9) == 1.0  # no warning
    with pytest.raises(ValueError, match="positive integer"):
        make_top_k_scorer(k=0)


def test_top_k_scorer_on_estimator(fitted, data):
    _, _, X_test, y_test = data
    scorer = make_top_k_scorer(k=1)
    assert repr(scorer) == "make_top_k_scorer(k=1)"
    assert scorer(fitted, X_test, y_test) == pytest.approx(fitted.score(X_test, y_test))
    top3 = make_top_k_scorer(3)(fitted, X_test, y_test)
    assert top3 > fitted.score(X_test, y_test)
    # a test set that lacks classes: the scorer takes them from the estimator
    few = np.isin(y_test, [0, 1])
    expected = top_k_accuracy_score(y_test[few], fitted.predict_proba(X_test[few]), k=3,
                                    labels=fitted.classes_)
    assert make_top_k_scorer(3)(fitted, X_test[few], y_test[few]) == expected


def test_top_k_scorer_in_grid_search(data):
    X, y, _, _ = data
    search = GridSearchCV(tiny(max_epochs=1), {"lr": [0.01, 0.03]}, cv=2,
                          scoring={"top3": make_top_k_scorer(3), "acc": "accuracy"},
                          refit="top3").fit(X, y)
    top3 = search.cv_results_["mean_test_top3"]
    acc = search.cv_results_["mean_test_acc"]
    assert np.all(top3 > acc)
    assert search.best_score_ == top3.max()
    scores = cross_val_score(tiny(max_epochs=1), X, y, cv=2,
                             scoring=make_top_k_scorer(10))
    np.testing.assert_array_equal(scores, [1.0, 1.0])
