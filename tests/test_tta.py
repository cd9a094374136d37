"""Test-time augmentation: predict_proba averages the softmax of the views."""

import numpy as np
import pytest
import torch
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.utils._param_validation import InvalidParameterError

from skimgcls._tta import TTA_PRESETS, shift_pixels

from .conftest import digits_sample, tiny_classifier


@pytest.fixture(scope="module")
def data():
    return digits_sample(300)


def tiny(**params):
    return tiny_classifier(**{"lr": 0.01, **params})


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return tiny(max_epochs=3).fit(X, y)


def _shift_np(X, dy, dx):
    """Reference shift of (n, H, W) images, repeating edge pixels."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(X, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    h, w = X.shape[1:]
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


@pytest.fixture
def clf(fitted):
    yield fitted
    fitted.set_params(tta=None)


def test_flip_averages_image_and_mirror(clf, data):
    X, _ = data
    plain = clf.predict_proba(X)
    mirrored = clf.predict_proba(X[:, :, ::-1])
    tta = clf.set_params(tta="flip").predict_proba(X)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=1), 1, atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-3  # the views really differ
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[tta.argmax(axis=1)])
    assert clf.score(X, data[1]) == pytest.approx(
        np.mean(clf.classes_[tta.argmax(axis=1)] == data[1]))


def test_flip_shift_averages_six_views(clf, data):
    X, _ = data
    assert shift_pixels(8, 8) == 1 and shift_pixels(224, 224) == 14
    views = [X, X[:, :, ::-1], _shift_np(X, -1, 0), _shift_np(X, 1, 0),
             _shift_np(X, 0, -1), _shift_np(X, 0, 1)]
    expected = np.mean([clf.predict_proba(np.ascontiguousarray(v)) for v in views],
                       axis=0)
    np.testing.assert_allclose(clf.set_params(tta="flip+shift").predict_proba(X),
                               expected, atol=1e-6)
    assert TTA_PRESETS["shift"] == ("identity", "shift_up", "shift_down",
                                    "shift_left", "shift_right")


def test_list_of_names_and_callables(clf, data):
    X, _ = data
    plain = clf.predict_proba(X)
    upside_down = clf.predict_proba(X[:, ::-1, ::-1])
    np.testing.assert_allclose(clf.set_params(tta=["identity"]).predict_proba(X),
                               plain, atol=1e-6)
    darker = lambda images: images * 0.5  # noqa: E731
    expected = (upside_down + clf.set_params(tta=None).predict_proba(X * 0.5)) / 2
    got = clf.set_params(tta=["rot180", darker]).predict_proba(X)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_uint8_images_are_scaled_before_the_views(clf, data):
    X, _ = data
    X8 = (X * 255).round().astype(np.uint8)
    clf.set_params(tta="flip")
    expected = clf.predict_proba(X8.astype(np.float32) / 255)
    np.testing.assert_allclose(clf.predict_proba(X8), expected, atol=1e-5)


def test_cross_val_score_uses_tta(data):
    X, y = data
    cv = StratifiedKFold(2)
    expected = []
    for train, test in cv.split(X, y):
        est = tiny().fit(X[train], y[train]).set_params(tta="flip")
        expected.append(est.score(X[test], y[test]))
    got = cross_val_score(tiny(tta="flip"), X, y, cv=cv)
    np.testing.assert_allclose(got, expected)


def test_soft_voting_uses_each_members_tta(data):
    X, y = data
    voting = VotingClassifier(
        [("tta", tiny(tta="flip+shift")), ("plain", tiny())], voting="soft"
    ).fit(X, y)
    with_tta, plain = (est.predict_proba(X) for est in voting.estimators_)
    # same seed, same weights: only test-time augmentation differs
    assert np.abs(with_tta - plain).max() > 1e-3
    np.testing.assert_allclose(voting.predict_proba(X), (with_tta + plain) / 2,
                               atol=1e-6)


def test_invalid_tta(data):
    X, y = data
    with pytest.raises(InvalidParameterError, match="tta"):
        tiny(tta="mirror").fit(X, y)
    with pytest.raises(ValueError, match="Unknown tta view 'twist'"):
        tiny(tta=["hflip", "twist"]).fit(X, y)
    with pytest.raises(ValueError, match="non-empty"):
        tiny(tta=[]).fit(X, y)


def test_view_changing_shape_is_rejected(clf, data):
    X, _ = data
    clf.set_params(tta=[lambda images: torch.nn.functional.avg_pool2d(images, 2)])
    with pytest.raises(ValueError, match="views must keep"):
        clf.predict(X)
