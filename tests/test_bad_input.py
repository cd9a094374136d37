"""Bad input, tried systematically: each case ends in a clear ValueError/TypeError.

Every estimator of the package that takes images is listed in ``ESTIMATORS``;
each bad input is tried on its ``fit`` and on its prediction/transform method.
Image *files* (corrupt, truncated, non-image files with image extensions,
decompression bombs) are the file reader's concern and are tested with it.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.utils.validation import check_is_fitted

from skimgcls import (
    CenterCrop,
    CNNClassifier,
    Normalize,
    RandomAugment,
    Resize,
    ToFloat,
    ToGrayscale,
    ToRGB,
)
from skimgcls.utils.validation import MAX_ABS_VALUE


def tiny_classifier():
    return CNNClassifier(module__width=4, max_epochs=1, batch_size=16,
                         validation_fraction=None, precision="fp32", random_state=0)


#: (name, factory, supervised). Add the package's transformers here: a
#: transformer is fitted with ``fit(X)`` and applied with ``transform``.
ESTIMATORS = [
    ("CNNClassifier", tiny_classifier, True),
    ("Resize", lambda: Resize(size=(6, 6)), False),
    ("CenterCrop", lambda: CenterCrop(size=(6, 6)), False),
    ("Normalize", Normalize, False),
    ("ToFloat", ToFloat, False),
    ("ToRGB", ToRGB, False),
    ("ToGrayscale", ToGrayscale, False),
    ("RandomAugment", lambda: RandomAugment(random_state=0), False),
]
IDS = [name for name, *_ in ESTIMATORS]


def _fit(estimator, supervised, X, y):
    return estimator.fit(X, y) if supervised else estimator.fit(X)


def _apply(estimator, supervised, X):
    return estimator.predict(X) if supervised else estimator.transform(X)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:64] / 16).reshape(-1, 8, 8).astype(np.float32), y[:64]


@pytest.fixture(scope="module", params=ESTIMATORS, ids=IDS)
def fitted(request, digits):
    name, factory, supervised = request.param
    X, y = digits
    return _fit(factory(), supervised, X, y), supervised


def _images(value, dtype=np.float32, shape=(4, 8, 8)):
    X = np.full(shape, 0.5, dtype=dtype)
    X.flat[3] = value
    return X


def _object_images(value):
    X = np.full((4, 8, 8), 0.5, dtype=object)
    X[0, 0, 0] = value
    return X


#: (id, images, exception, message regex): applied both to fit and predict.
BAD_IMAGES = [
    ("nan", lambda: _images(np.nan), ValueError, "NaN"),
    ("inf", lambda: _images(np.inf), ValueError, "infinite"),
    ("-inf", lambda: _images(-np.inf, np.float64), ValueError, "infinite"),
    ("float-too-large", lambda: _images(1e30, np.float64), ValueError, r"beyond \+-100000"),
    ("float-overflowing-float32", lambda: _images(1e300, np.float64), ValueError,
     "Rescale"),
    ("int-too-large", lambda: _images(2**40, np.int64), ValueError, "beyond"),
    ("1-D", lambda: np.zeros(64, np.float32), ValueError, "Expected images"),
    ("0-D", lambda: np.float32(1.0), ValueError, "Expected images"),
    ("5-D", lambda: np.zeros((4, 1, 8, 8, 1), np.float32), ValueError, "5 dimensions"),
    ("zero-height", lambda: np.zeros((4, 0, 8), np.float32), ValueError, "zero size"),
    ("zero-channels", lambda: np.zeros((4, 8, 8, 0), np.float32), ValueError,
     "zero size"),
    ("zero-samples", lambda: np.zeros((0, 8, 8), np.float32), ValueError, "0 sample"),
    ("empty-list", lambda: [], ValueError, "0 sample"),
    ("5-channels", lambda: np.zeros((4, 8, 8, 5), np.float32), ValueError,
     "neither 1, 3 nor 4"),
    ("ragged", lambda: [np.zeros((8, 8)), np.zeros((7, 7))], ValueError,
     "same size"),
    ("object-none", lambda: _object_images(None), ValueError, "NaN"),
    ("object-str", lambda: _object_images("a"), TypeError, "numeric"),
    ("object-dict", lambda: _object_images({"a": 1}), TypeError,
     "argument must be a string.* number"),
    ("complex", lambda: np.zeros((4, 8, 8), np.complex64), ValueError,
     "Complex data not supported"),
    ("bool", lambda: np.zeros((4, 8, 8), bool), TypeError, "Boolean"),
    ("datetime", lambda: np.zeros((4, 8, 8), "datetime64[s]"), TypeError,
     "dates or durations"),
    ("strings", lambda: np.full((4, 8, 8), "a"), TypeError, "numeric"),
    ("None", lambda: None, ValueError, "Expected images"),
]
BAD_IDS = [case[0] for case in BAD_IMAGES]


@pytest.mark.parametrize("name, factory, supervised", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("case, make_X, error, match", BAD_IMAGES, ids=BAD_IDS)
def test_fit_refuses_bad_images(name, factory, supervised, case, make_X, error, match):
    if case == "ragged" and name == "Resize":
        pytest.skip("Resize takes lists of images of different sizes by design")
    X = make_X()
    n = len(X) if isinstance(X, (list, np.ndarray)) and np.shape(X[:0]) != () else 4
    y = np.arange(max(n, 1)) % 2
    with pytest.raises(error, match=match):
        _fit(factory(), supervised, X, y)


@pytest.mark.parametrize("case, make_X, error, match", BAD_IMAGES, ids=BAD_IDS)
def test_predict_refuses_bad_images(fitted, case, make_X, error, match):
    estimator, supervised = fitted
    if case == "ragged" and isinstance(estimator, Resize):
        pytest.skip("Resize takes lists of images of different sizes by design")
    with pytest.raises(error, match=match):
        _apply(estimator, supervised, make_X())


@pytest.mark.parametrize("value", [MAX_ABS_VALUE, -1024.0, 65535.0, 255.0, -3.0])
def test_usual_image_scales_are_accepted(fitted, value):
    estimator, supervised = fitted
    X = _images(value, np.float64)
    assert len(_apply(estimator, supervised, X)) == 4


def test_prediction_refuses_other_image_shapes(fitted, digits):
    estimator, supervised = fitted
    X = digits[0]
    rgb = np.repeat(X[..., None], 3, axis=-1)
    if not supervised:
        # Image transformers work on any image size; only what they learned
        # per channel in fit (Normalize's mean/std) ties them to a channel count.
        assert len(estimator.transform(X[:, :6, :6])) == len(X)
        if isinstance(estimator, Normalize):
            with pytest.raises(ValueError, match="channel"):
                estimator.transform(rgb)
        return
    with pytest.raises(ValueError, match="Resize"):
        _apply(estimator, supervised, X[:, :6, :6])
    with pytest.raises(ValueError, match="channel"):
        _apply(estimator, supervised, rgb)


# -- labels ------------------------------------------------------------------
SUPERVISED = [case for case in ESTIMATORS if case[2]]
SUPERVISED_IDS = [case[0] for case in SUPERVISED]

BAD_LABELS = [
    ("too-few", lambda y: y[:-1], ValueError, "different numbers of samples"),
    ("too-many", lambda y: np.r_[y, y[:1]], ValueError, "different numbers of samples"),
    ("nan", lambda y: np.where(np.arange(len(y)) == 0, np.nan, y.astype(float)),
     ValueError, "NaN"),
    ("continuous", lambda y: np.linspace(0, 1, len(y)), ValueError, "Unknown label type"),
    ("one-class", lambda y: np.zeros_like(y), ValueError, "at least 2 classes"),
    # A 2-D y is a multi-label indicator matrix: class labels in it are refused.
    ("2-D", lambda y: np.c_[y, y], ValueError, "binary indicator matrix of 0 and 1"),
    ("None", lambda y: None, ValueError, "requires y"),
]


@pytest.mark.parametrize("name, factory, supervised", SUPERVISED, ids=SUPERVISED_IDS)
@pytest.mark.parametrize("case, make_y, error, match", BAD_LABELS,
                         ids=[case[0] for case in BAD_LABELS])
def test_fit_refuses_bad_labels(digits, name, factory, supervised, case, make_y,
                                error, match):
    X, y = digits
    with pytest.raises(error, match=match):
        factory().fit(X, make_y(y))


def test_score_refuses_unseen_labels(fitted, digits):
    estimator, supervised = fitted
    if not supervised:
        pytest.skip("transformers have no score")
    X, y = digits
    with pytest.raises(ValueError, match=r"not seen in fit: \['3'\]"):
        estimator.score(X[:3], np.array(["3", 3, 3], dtype=object))
    with pytest.raises(ValueError, match="not seen in fit"):
        estimator.score(X[:2], [0, 42])
    # known labels are scored: the (weighted) accuracy of predict, by a model
    # trained long enough to predict more than one class
    learner = clone(estimator).set_params(max_epochs=6, lr=0.03).fit(X, y)
    hits = learner.predict(X) == y
    assert learner.score(X, y) == np.mean(hits) > 0.5  # chance is 0.1
    weights = np.where(y % 2 == 0, 3.0, 1.0)
    assert learner.score(X, y, sample_weight=weights) == pytest.approx(
        np.average(hits, weights=weights))


# -- fuzzing -------------------------------------------------------------------
DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32,
          np.float64, np.bool_, np.complex64, object]
LABELS = st.sampled_from([
    [0, 1, 2], ["cat", "dog"], [0.5, 1.5], [True, False], [-1, 1], [np.nan, 1.0],
])


@st.composite
def wild_images(draw):
    """Any shape (0 to 5 axes of 0 to 5), any dtype, any values."""
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    dtype = draw(st.sampled_from(DTYPES))
    elements = (st.one_of(st.none(), st.integers(-300, 300), st.floats(width=32),
                          st.text(max_size=2))
                if dtype is object else None)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def plausible_images(draw):
    """Image-like shapes and numeric dtypes, values mostly in range."""
    n = draw(st.integers(2, 8))
    spatial = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    channels = draw(st.sampled_from([(), (1,), (3,), (4,)]))
    first = draw(st.booleans()) and channels  # NCHW
    shape = (n, *channels, *spatial) if first else (n, *spatial, *channels)
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int8, np.int32, np.float16,
                                  np.float32, np.float64]))
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-300, 300, width=np.dtype(dtype).itemsize * 8,
                             allow_subnormal=False)
    elif dtype is np.int32:
        elements = st.integers(-1000, 1000)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def images_and_labels(draw):
    X = draw(st.one_of(plausible_images(), plausible_images(), wild_images()))
    n = X.shape[0] if X.ndim else 1
    n_labels = draw(st.sampled_from([n, n, n, n, max(n - 1, 0), n + 1]))
    pool = draw(LABELS)
    y = draw(st.lists(st.sampled_from(pool), min_size=n_labels, max_size=n_labels))
    return X, np.array(y, dtype=object if isinstance(pool[0], str) else None)


@pytest.mark.parametrize("name, factory, supervised", ESTIMATORS, ids=IDS)
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=images_and_labels())
def test_fuzzed_input_fits_or_raises_a_documented_error(name, factory, supervised,
                                                         data):
    X, y = data
    estimator = factory()
    try:
        _fit(estimator, supervised, X, y)
    except (ValueError, TypeError) as exc:
        assert str(exc), "errors must say what went wrong"
        event(f"refused: {type(exc).__name__}")
        return
    event("fitted")
    check_is_fitted(estimator)
    out = _apply(estimator, supervised, X)
    assert len(out) == len(X)
    if supervised:
        assert set(np.asarray(out).tolist()) <= set(estimator.classes_.tolist())


# -- image files -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """A good PNG and, next to it, each kind of bad file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_files")
    good = root / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    data = good.read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "text.jpg").write_text("not an image")
    return root


@pytest.mark.parametrize("name", ["truncated.png", "corrupt.png", "text.jpg",
                                  "missing.png"])
def test_bad_files_are_named_by_readers_and_the_classifier(bad_files, name):
    from skimgcls import ImageReader

    paths = np.array([str(bad_files / "good.png"), str(bad_files / name)], dtype=object)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        ImageReader(mode="L").fit_transform(paths)
    clf = CNNClassifier(module__width=4, max_epochs=1, validation_fraction=None,
                        iterator_train__num_workers=0)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        clf.fit(np.r_[paths, paths], [0, 1, 0, 1])


def test_decompression_bomb_in_a_reader(bad_files, monkeypatch):
    from PIL import Image

    from skimgcls import ImageReader

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
    with pytest.raises(ValueError, match=r"good\.png.*decompression-bomb"):
        ImageReader().fit_transform(np.array([str(bad_files / "good.png")], dtype=object))
