"""Saliency maps: they must find the pixels that decide the class."""

import copy
import sys

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from skimgcls import (
    CNNClassifier,
    ImageReader,
    Normalize,
    Resize,
    SaliencyDisplay,
    saliency_maps,
)
from skimgcls.saliency import METHODS

from .conftest import tiny_classifier

pytest.importorskip("captum")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

SIZE = 16
PATCH = (slice(2, 6), slice(9, 13))  # rows, columns of the planted patch
MASK = np.zeros((SIZE, SIZE), bool)
MASK[PATCH] = True


def planted(n, *, seed=0, rgb=False, uint8=False):
    """Noise images; class 'patch' has a bright 4x4 square at PATCH, 'plain' none."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 0.6, (n, SIZE, SIZE)).astype(np.float32)
    y = rng.randint(0, 2, n)
    X[(y == 1)[:, None, None] & MASK] = 1.0
    if rgb:  # the same pattern in three differently scaled channels
        X = X[..., None] * np.array([1.0, 0.8, 0.6], np.float32)
    if uint8:
        X = (X * 255).round().astype(np.uint8)
    return X, np.where(y == 1, "patch", "plain")


class TinyCAMNet(nn.Module):
    """Two convolutions at full resolution, global pooling, a linear layer."""

    def __init__(self, in_channels, n_classes, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
            nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def fit_planted(rgb=False, **params):
    X, y = planted(300, rgb=rgb)
    defaults = {"module": TinyCAMNet, "max_epochs": 3, "lr": 0.03, "random_state": 0,
                "precision": "fp32"}
    return CNNClassifier(**{**defaults, **params}).fit(X, y)


@pytest.fixture(scope="module", params=["gray", "rgb"])
def planted_model(request):
    rgb = request.param == "rgb"
    clf = fit_planted(rgb=rgb)
    X, y = planted(60, seed=1, rgb=rgb)
    assert clf.score(X, y) > 0.9  # the network did learn the patch
    return clf, X, y


def mass_ratio(maps):
    """Share of each map's mass inside the patch, over the patch's area share."""
    inside = maps[:, MASK].sum(axis=1) / maps.reshape(len(maps), -1).sum(axis=1)
    return inside / MASK.mean()


@pytest.mark.parametrize("method", METHODS)
def test_maps_concentrate_on_the_planted_patch(planted_model, method):
    clf, X, y = planted_model
    patch_images = X[y == "patch"][:8]
    maps = saliency_maps(clf, patch_images, method=method, random_state=0)
    assert maps.shape == (len(patch_images), SIZE, SIZE)
    assert maps.dtype == np.float32 and (maps >= 0).all()
    # The patch covers 1/16 of the image; it gets several times that share.
    assert mass_ratio(maps).mean() > 2.5, mass_ratio(maps)
    # Without a patch, nothing singles that square out.
    plain_maps = saliency_maps(clf, X[y == "plain"][:8], method=method,
                               random_state=0)
    assert mass_ratio(plain_maps).mean() < 2.0


@pytest.fixture(scope="module")
def digits_model(small_digits):
    """Ten classes labelled 10..19, so that labels and column indices differ."""
    X, y = small_digits
    return tiny_classifier().fit(X, y + 10), X[:4]


def test_target_is_a_class_label(digits_model):
    clf, images = digits_model
    predicted = saliency_maps(clf, images, method="saliency")
    np.testing.assert_allclose(saliency_maps(clf, images, target=clf.predict(images),
                                             method="saliency"), predicted)
    twelve = saliency_maps(clf, images, target=12, method="saliency")
    thirteen = saliency_maps(clf, images, target=13, method="saliency")
    assert not np.allclose(twelve, thirteen)
    per_image = saliency_maps(clf, images, target=[12, 13, 12, 13], method="saliency")
    np.testing.assert_allclose(per_image[[0, 2]], twelve[[0, 2]])
    np.testing.assert_allclose(per_image[[1, 3]], thirteen[[1, 3]])


def test_two_classes_share_their_evidence(planted_model):
    # With two classes, evidence for one is evidence against the other: the
    # absolute maps agree; Grad-CAM keeps only the positive side and differs.
    clf, X, y = planted_model
    images = X[y == "patch"][:4]
    for method in ("saliency", "integrated_gradients"):
        np.testing.assert_allclose(
            saliency_maps(clf, images, target="plain", method=method),
            saliency_maps(clf, images, target="patch", method=method), rtol=1e-4,
            atol=1e-6)
    assert not np.allclose(saliency_maps(clf, images, target="plain", method="gradcam"),
                           saliency_maps(clf, images, method="gradcam"))


def test_target_errors(digits_model):
    clf, images = digits_model
    with pytest.raises(ValueError, match=r"target labels 0 are not among the "
                       r"classes.*not column indices"):
        saliency_maps(clf, images, target=0)
    with pytest.raises(ValueError, match="target has 3 labels for 4 images"):
        saliency_maps(clf, images, target=[12] * 3)


def test_pipeline_input_goes_through_the_preceding_steps():
    X, y = planted(300, rgb=True, uint8=True)
    pipe = make_pipeline(Normalize(), CNNClassifier(
        module=TinyCAMNet, max_epochs=3, lr=0.03, random_state=0, precision="fp32"))
    pipe.fit(X, y)
    X_test, y_test = planted(20, seed=1, rgb=True, uint8=True)
    images = X_test[y_test == "patch"][:6]
    maps = saliency_maps(pipe, images, method="integrated_gradients")
    np.testing.assert_allclose(
        maps, saliency_maps(pipe[-1], pipe[:-1].transform(images),
                            method="integrated_gradients"), rtol=1e-5, atol=1e-7)
    assert mass_ratio(maps).mean() > 2.5
    # A fitted search is unwrapped through best_estimator_.
    search = GridSearchCV(pipe.set_params(cnnclassifier__max_epochs=1),
                          {"cnnclassifier__lr": [0.03]}, cv=2).fit(X[:100], y[:100])
    np.testing.assert_allclose(saliency_maps(search, images, method="saliency"),
                               saliency_maps(search.best_estimator_, images,
                                             method="saliency"))


def test_file_paths_as_input(tmp_path):
    clf = fit_planted(max_epochs=1, reader=ImageReader(mode="L"))
    X, _ = planted(3, seed=1, uint8=True)
    paths = []
    for i, image in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_allclose(saliency_maps(clf, np.array(paths), method="saliency"),
                               saliency_maps(clf, X, method="saliency"))


def test_gradcam_layer_choice():
    clf = fit_planted(module="compact_cnn", module__width=4, max_epochs=1)
    X, _ = planted(3, seed=1)
    default = saliency_maps(clf, X, method="gradcam")
    # The default is the output of the convolutional part (after its ReLU).
    np.testing.assert_allclose(saliency_maps(clf, X, method="gradcam",
                                             layer="features"), default)
    early = saliency_maps(clf, X, method="gradcam", layer=clf.module_.features[2])
    assert early.shape == default.shape and not np.allclose(early, default)
    with pytest.raises(ValueError, match=r"No layer named 'conv9'.*features\.0"):
        saliency_maps(clf, X, method="gradcam", layer="conv9")
    with pytest.raises(ValueError, match="not a submodule"):
        saliency_maps(clf, X, method="gradcam", layer=nn.Conv2d(1, 1, 3))


def test_gradcam_finds_the_last_stage_of_a_torchvision_backbone(digits):
    X, y = digits
    clf = CNNClassifier(module="resnet18", module__input_size=(64, 64), max_epochs=1,
                        batch_size=12, validation_fraction=None, random_state=0,
                        precision="fp32")
    clf.fit(X[:12], y[:12])
    maps = saliency_maps(clf, X[:2], method="gradcam")
    assert maps.shape == (2, 8, 8)  # upsampled from layer4's 2x2 maps
    np.testing.assert_allclose(maps, saliency_maps(clf, X[:2], method="gradcam",
                                                   layer="body.layer4"))


def test_gradcam_needs_a_feature_map():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 2))
    X, y = planted(40)
    clf = CNNClassifier(module=mlp, max_epochs=1, random_state=0,
                        precision="fp32").fit(X, y)
    with pytest.raises(ValueError, match=r"needs a layer that outputs \(n, C, h, w\)"):
        saliency_maps(clf, X[:2], method="gradcam")
    assert saliency_maps(clf, X[:2], method="saliency").shape == (2, SIZE, SIZE)


def test_gradient_shap_is_seeded_and_leaves_torch_rng_alone(planted_model):
    clf, X, _ = planted_model
    torch.manual_seed(123)
    np.random.seed(123)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    a = saliency_maps(clf, X[:3], method="gradient_shap", random_state=0)
    np.testing.assert_array_equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    b = saliency_maps(clf, X[:3], method="gradient_shap", random_state=0)
    c = saliency_maps(clf, X[:3], method="gradient_shap", random_state=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_method_params_reach_captum(planted_model):
    clf, X, _ = planted_model
    coarse = saliency_maps(clf, X[:2], method="occlusion",
                           method_params={"sliding_window_shapes": (X.shape[-1]
                                                                   if X.ndim == 4
                                                                   else 1, 8, 8),
                                          "strides": 8})
    # 8x8 windows with stride 8: each quarter of the image is constant.
    assert np.allclose(coarse[:, :8, :8], coarse[:, :1, :1])


def test_leaves_the_network_in_eval_mode_and_predictions_unchanged(planted_model):
    clf, X, _ = planted_model
    before = clf.predict_proba(X[:5])
    saliency_maps(clf, X[:5], method="integrated_gradients")
    assert not clf.module_.training
    np.testing.assert_allclose(clf.predict_proba(X[:5]), before)


def test_errors_for_wrong_estimators_and_methods(planted_model):
    clf, X, y = planted_model
    with pytest.raises(TypeError, match="need a fitted CNNClassifier.*got "
                                        "LogisticRegression"):
        saliency_maps(LogisticRegression().fit(X.reshape(len(X), -1), y), X)
    with pytest.raises(NotFittedError):
        saliency_maps(CNNClassifier(), X)
    with pytest.raises(ValueError, match=r"Unknown method 'lime'; expected one of "
                                         r"\['integrated_gradients'"):
        saliency_maps(clf, X, method="lime")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        saliency_maps(clf, X, batch_size=0)


def test_missing_captum_names_the_extra(planted_model, monkeypatch):
    clf, X, _ = planted_model
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r'pip install "skimgcls\[saliency\]"'):
        saliency_maps(clf, X[:2])


# -- the display ----------------------------------------------------------------
def test_display_draws_a_grid_of_overlays(planted_model):
    clf, X, y = planted_model
    display = SaliencyDisplay.from_estimator(clf, X[:5], y[:5], method="saliency",
                                             n_cols=3)
    assert display.axes_.shape == (2, 3)
    assert len(display.overlays_) == 5
    np.testing.assert_allclose(display.maps, saliency_maps(clf, X[:5],
                                                           method="saliency"))
    np.testing.assert_array_equal(display.images, X[:5] if X.ndim == 4
                                  else X[:5, ..., None])
    np.testing.assert_array_equal(display.y_pred, clf.predict(X[:5]))
    title = display.axes_[0, 0].get_title()
    assert title.startswith(f"true: {y[0]}\npred: {display.y_pred[0]} (")
    assert "map of" not in title
    # Each overlay is scaled to its own peak.
    assert display.overlays_[0].get_array().max() == pytest.approx(1.0)
    assert not display.axes_[1, 2].axison  # the unused cell is hidden
    plt.close(display.figure_)


def test_display_other_target_and_given_axes(planted_model):
    clf, X, y = planted_model
    fig, axes = plt.subplots(1, 3)
    display = SaliencyDisplay.from_estimator(clf, X[:2], target="plain",
                                             method="gradcam", ax=axes)
    assert display.figure_ is fig
    assert list(display.targets) == ["plain", "plain"]
    shown = [ax.get_title() for ax in axes[:2]]
    assert all("map of: plain" in t for t, p in zip(shown, display.y_pred)
               if p != "plain")
    with pytest.raises(ValueError, match="Expected at least 2 axes, one per image"):
        SaliencyDisplay.from_estimator(clf, X[:2], ax=axes[:1])
    with pytest.raises(ValueError, match="y has 3 labels for 2 images"):
        SaliencyDisplay.from_estimator(clf, X[:2], y[:3])
    plt.close(fig)


def test_display_shows_original_images_or_what_the_network_saw():
    X, y = planted(120, rgb=True, uint8=True)
    same = make_pipeline(Normalize(), CNNClassifier(
        module=TinyCAMNet, max_epochs=1, random_state=0, precision="fp32")).fit(X, y)
    display = SaliencyDisplay.from_estimator(same, X[:2], method="saliency")
    np.testing.assert_array_equal(display.images, X[:2])  # uint8 originals
    plt.close(display.figure_)
    resized = make_pipeline(Resize((8, 8)), CNNClassifier(
        module=TinyCAMNet, max_epochs=1, random_state=0, precision="fp32")).fit(X, y)
    display = SaliencyDisplay.from_estimator(resized, X[:2], method="saliency")
    assert display.maps.shape == (2, 8, 8)
    np.testing.assert_array_equal(display.images, resized[:-1].transform(X[:2]))
    plt.close(display.figure_)


@pytest.mark.parametrize("name", ["timm/test_resnet", "timm/test_convnext"])
def test_gradcam_finds_the_layer_of_timm_backbones(name):
    pytest.importorskip("timm")
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = (digits.images[:60] / 16).astype(np.float32), digits.target[:60]
    clf = CNNClassifier(module=name, module__input_size=32, max_epochs=1,
                        validation_fraction=None, precision="fp32",
                        random_state=0).fit(X, y)
    maps = saliency_maps(clf, X[:3], method="gradcam")
    assert maps.shape == (3, 8, 8) and (maps >= 0).all() and maps.max() > 0


# -- multi-label ----------------------------------------------------------------
OTHER_MASK = np.zeros((SIZE, SIZE), bool)  # the second label's pattern: a ring
OTHER_MASK[9:15, 1:7] = True
OTHER_MASK[10:14, 2:6] = False
TAGS = ["top", "bottom"]


def planted_multilabel(n, *, seed=0):
    """Noise images; label 0 puts a bright square at PATCH, label 1 a ring below.

    The shapes differ: the network pools globally, so place alone cannot tell
    the labels apart.
    """
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 0.6, (n, SIZE, SIZE)).astype(np.float32)
    Y = (rng.rand(n, 2) < 0.5).astype(np.int64)
    X[(Y[:, 0] == 1)[:, None, None] & MASK] = 1.0
    X[(Y[:, 1] == 1)[:, None, None] & OTHER_MASK] = 1.0
    return X, Y


@pytest.fixture(scope="module")
def multilabel_model():
    X, Y = planted_multilabel(300)
    clf = CNNClassifier(module=TinyCAMNet, max_epochs=6, lr=0.03, random_state=0,
                        precision="fp32").fit(X, Y)
    X_test, Y_test = planted_multilabel(40, seed=1)
    assert clf.multilabel_ and clf.score(X_test, Y_test) > 0.9
    return clf, X_test, Y_test


def test_multilabel_maps_explain_the_label_own_logit(multilabel_model):
    clf, X, _ = multilabel_model
    images = X[:6]
    inputs = torch.from_numpy(images[:, None]).requires_grad_()
    clf.module_(inputs)[:, 1].sum().backward()
    # the gradient of label 1's logit alone (no softmax-style centering, which
    # would mix in label 0's evidence)
    np.testing.assert_allclose(saliency_maps(clf, images, target=1, method="saliency"),
                               inputs.grad.abs().sum(1).numpy(), rtol=1e-5, atol=1e-7)
    # None explains each image's most probable label
    top = clf.predict_proba(images).argmax(axis=1)
    np.testing.assert_allclose(saliency_maps(clf, images, method="saliency"),
                               saliency_maps(clf, images, target=top, method="saliency"))


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam"])
def test_multilabel_each_label_map_leans_to_its_pattern(multilabel_model, method):
    clf, X, Y = multilabel_model
    both = X[(Y == 1).all(axis=1)][:6]
    assert len(both) >= 4

    def square_over_ring(maps):  # per-pixel mass on the square over that on the ring
        return maps[:, MASK].mean(axis=1) / maps[:, OTHER_MASK].mean(axis=1)

    square = square_over_ring(saliency_maps(clf, both, target=0, method=method))
    ring = square_over_ring(saliency_maps(clf, both, target=1, method=method))
    assert (square > 1.3).all(), square
    assert (square > 2 * ring).all(), (square, ring)


def test_multilabel_display_draws_each_predicted_label(multilabel_model):
    clf, X, Y = multilabel_model
    blank = np.random.RandomState(2).uniform(0, 0.6, (1, SIZE, SIZE)).astype(np.float32)
    images = np.concatenate([X[:5], blank])
    Y_true = np.concatenate([Y[:5], [[0, 0]]])
    Y_pred, proba = clf.predict(images), clf.predict_proba(images)
    assert Y_pred[:5].sum(axis=1).max() == 2 and Y_pred[5].sum() == 0
    display = SaliencyDisplay.from_estimator(clf, images, Y_true, target="predicted",
                                             method="saliency", display_labels=TAGS)
    # a map per predicted label; an image with none (the blank one) gets one map,
    # of its most probable label
    pairs = [(i, j) for i in range(6) for j in np.flatnonzero(Y_pred[i])]
    pairs += [(i, proba[i].argmax()) for i in range(6) if not Y_pred[i].any()]
    rows, labels = np.array(sorted(pairs)).T
    assert len(rows) > 6 and rows[-1] == 5 and (rows == 5).sum() == 1
    np.testing.assert_array_equal(display.indices, rows)
    np.testing.assert_array_equal(display.targets, labels)
    np.testing.assert_array_equal(display.y_pred, Y_pred[rows])
    np.testing.assert_array_equal(display.y_true, Y_true[rows])
    np.testing.assert_allclose(display.confidence, proba[rows, labels], rtol=1e-5)
    np.testing.assert_array_equal(display.images[..., 0], images[rows])
    np.testing.assert_allclose(display.maps, saliency_maps(
        clf, images[rows], target=labels, method="saliency"))
    assert len(display.overlays_) == len(rows)

    def label_set(row):
        return "{" + ", ".join(TAGS[j] for j in np.flatnonzero(row)) + "}"

    for ax, i, j in zip(display.axes_.flat, rows, labels):
        assert ax.get_title() == (f"true: {label_set(Y_true[i])}\n"
                                  f"pred: {label_set(Y_pred[i])}\n"
                                  f"map of: {TAGS[j]} ({proba[i, j]:.2f})")
    # 'predicted' follows the estimator's threshold, as predict does
    strict = copy.deepcopy(clf).set_params(threshold=[0.5, 0.999])
    display = SaliencyDisplay.from_estimator(strict, images[:5], target="predicted",
                                             method="saliency")
    expected = np.nonzero(strict.predict(images[:5]))
    assert len(expected[0]) < (rows < 5).sum()
    assert set(zip(display.indices, display.targets)) >= set(zip(*expected))
    assert len(display.indices) == len(expected[0]) + (
        ~strict.predict(images[:5]).any(axis=1)).sum()
    # an indicator target explains each label it sets, e.g. the true ones
    assert Y_true[1:5].any(axis=1).all()
    display = SaliencyDisplay.from_estimator(clf, images[1:5], target=Y_true[1:5],
                                             method="saliency")
    rows, labels = np.nonzero(Y_true[1:5])
    np.testing.assert_array_equal(display.indices, rows)
    np.testing.assert_array_equal(display.targets, labels)
    i, j = rows[0] + 1, labels[0]
    assert display.axes_.flat[0].get_title() == (
        f"pred: {{{', '.join(map(str, np.flatnonzero(Y_pred[i])))}}}\n"
        f"map of: {j} ({proba[i, j]:.2f})")
    # one label for all: one map per image
    display = SaliencyDisplay.from_estimator(clf, images[:3], target=1,
                                             method="saliency", display_labels=TAGS)
    assert display.indices.tolist() == [0, 1, 2]
    assert display.axes_.flat[0].get_title().endswith(
        f"map of: bottom ({proba[0, 1]:.2f})")


def test_multilabel_errors(multilabel_model):
    clf, X, Y = multilabel_model
    with pytest.raises(ValueError, match=r"saliency_maps returns one map per image.*"
                                         r"target='predicted'.*np\.nonzero"):
        saliency_maps(clf, X[:2], target="predicted")
    with pytest.raises(ValueError, match="saliency_maps returns one map per image"):
        saliency_maps(clf, X[:2], target=Y[:2])
    with pytest.raises(ValueError, match=r"target labels 2 are not labels of the "
                                         r"multi-label estimator: pass label \(column\) "
                                         r"indices from 0 to 1"):
        saliency_maps(clf, X[:2], target=2)
    with pytest.raises(ValueError, match=r"target: y has 3 label columns, but "
                                         r"CNNClassifier was fitted in fit on 2 labels"):
        SaliencyDisplay.from_estimator(clf, X[:2], target=np.ones((2, 3), int))
    with pytest.raises(ValueError, match=r"X and y have different numbers of samples: "
                                         r"2 images and 3 rows"):
        SaliencyDisplay.from_estimator(clf, X[:2], Y[:3], method="saliency")
    with pytest.raises(ValueError, match=r"multi-label indicator matrix of 2 labels, "
                                         r"so y must be a 2-D array"):
        SaliencyDisplay.from_estimator(clf, X[:2], Y[:2, 0], method="saliency")
    with pytest.raises(ValueError, match=r"display_labels has 3 names for the 2 label "
                                         r"columns"):
        SaliencyDisplay.from_estimator(clf, X[:2], method="saliency",
                                       display_labels=["a", "b", "c"])


def test_single_label_display_names_and_predicted_target(digits_model):
    clf, images = digits_model  # classes 10..19
    names = [f"digit {c - 10}" for c in clf.classes_]
    # 'predicted' is the prediction (as None) for a single-label classifier
    display = SaliencyDisplay.from_estimator(clf, images, clf.predict(images),
                                             target="predicted", method="saliency",
                                             display_labels=names)
    np.testing.assert_allclose(display.maps, saliency_maps(clf, images,
                                                           method="saliency"))
    predicted = [f"digit {c - 10}" for c in clf.predict(images)]
    assert list(display.y_pred) == predicted == list(display.targets)
    title = display.axes_.flat[0].get_title()
    assert title.startswith(f"true: {predicted[0]}\npred: {predicted[0]} (")
    assert "map of" not in title
