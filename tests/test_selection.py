"""``CNNClassifier(module='auto')`` chooses its recipe on the training data.

The real candidates need the pretrained EfficientNet-Lite0 weights; these
tests swap in small recipes (a compact CNN, a ResNet-18 with weights from a
file) so the machinery is tested fast and without them.
"""

import math

import numpy as np
import pytest
import torch

import skimgcls._build as build_module
import skimgcls._selection as selection_module
import skimgcls.classifier as classifier_module
from skimgcls import CNNClassifier, load, save
from skimgcls._build import net_params, resolve_auto
from skimgcls._probe import embed, fit_linear_head
from skimgcls._selection import (
    Recipe,
    _beats,
    _choose,
    candidate_recipes,
    fine_tune_input_size,
    frozen_input_size,
)
from skimgcls.backbones import BackboneNet, build_backbone

from .conftest import digits_sample


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A ResNet-18 state dict on disk: 'pretrained' weights with no download."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(build_backbone("resnet18", n_classes=10).state_dict(), path)
    return path


def scratch(**params):
    """A small compact CNN with a short budget (30 steps when refit)."""
    return Recipe("compact_cnn", {"module": "compact_cnn", "pretrained": False,
                                  "module__width": 8, **params}, steps=30)


def frozen(path):
    # Two feature levels, as the real recipe has several (FROZEN_LEVELS).
    return Recipe("frozen_features", {"module": "resnet18", "pretrained": str(path),
                                      "freeze": "backbone", "module__input_size": 32,
                                      "module__levels": 2},
                  linear_head=True)


@pytest.fixture
def recipes(monkeypatch):
    """Replace the candidates of ``fit`` by the given list.

    The selection holds out one fifth of the 100 images, as it does from 500
    images on (``SELECT_MIN_HELD_OUT``); the held-out parts of smaller sets
    have their own tests.
    """
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 0)

    def use(*candidates):
        monkeypatch.setattr(classifier_module, "candidate_recipes",
                            lambda image_shape, multilabel=False: list(candidates))
    return use


@pytest.fixture(scope="module")
def data():
    X, y = digits_sample(200, seed=0)
    return X[:100, ..., None], y[:100], X[100:, ..., None], y[100:]


def test_selection_reports_every_candidate_and_the_winner(recipes, weights_file, data):
    X, y, X_test, y_test = data
    recipes(scratch(), frozen(weights_file))
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    results = clf.selection_results_
    assert results["recipe"] == ["compact_cnn", "frozen_features"]
    assert all(0 <= s <= 1 for s in results["valid_score"])
    assert all(loss > 0 for loss in results["valid_log_loss"])
    # The simplest (first) unless the other beats it significantly, which
    # takes at least 6 more of the 20 held-out images (a fifth of 100) right.
    accuracies = results["valid_score"]
    best = clf.recipe_
    assert best in results["recipe"]
    if best == "frozen_features":
        assert 20 * (accuracies[1] - accuracies[0]) >= 6 - 1e-9
    # The scratch recipe trains its own budget (30 steps: 3 epochs of 10
    # batches on the 80 training images); the frozen one takes no steps.
    assert clf.selection_steps_ == results["steps"][0] == 30 and results["steps"][1] == 0
    assert clf.selection_seconds_ > 0
    assert clf.best_params_["module"] == {"compact_cnn": "compact_cnn",
                                          "frozen_features": "resnet18"}[best]
    assert clf.score(X_test, y_test) > 0.5


def test_frozen_features_winner_is_a_frozen_backbone_with_the_fitted_head(
        recipes, weights_file, data, tmp_path):
    X, y, X_test, y_test = data
    # A scratch recipe that cannot learn (lr ~ 0) makes the frozen one win.
    recipes(scratch(lr=1e-9), frozen(weights_file))
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    assert clf.recipe_ == "frozen_features"
    assert clf.max_epochs_ == 0 and len(clf.history_) == 0
    module = clf.module_
    assert isinstance(module, BackboneNet)
    assert not any(p.requires_grad for p in module.body.parameters())
    # The network predicts what the linear head fitted on its features does.
    features = embed(module, X, device="cpu", precision="fp32")
    head = fit_linear_head(features, y, np.ones(len(y)))
    expected = head.predict(embed(module, X_test, device="cpu", precision="fp32"))
    assert np.mean(clf.predict(X_test) == expected) > 0.95
    assert clf.score(X_test, y_test) > 0.5
    # Saved and loaded, it predicts the same.
    save(clf, tmp_path / "model")
    assert np.array_equal(load(tmp_path / "model").predict(X_test), clf.predict(X_test))


def multilabel(y):
    """Three labels of a digit: even, at least 5, zero (8 label sets)."""
    return np.stack([y % 2 == 0, y >= 5, y == 0], axis=1).astype(np.int64)


def test_a_multilabel_y_is_selected_on_label_sets(recipes, weights_file, data, capsys):
    X, y, X_test, y_test = data
    recipes(scratch(), frozen(weights_file))
    Y = multilabel(y)
    clf = CNNClassifier(random_state=0, precision="fp32", verbose=1).fit(X, Y)
    out = capsys.readouterr().out
    assert clf.multilabel_ and clf.recipe_ in ("compact_cnn", "frozen_features")
    assert "20 of 100 images held out" in out
    assert all(0 <= s <= 1 for s in clf.selection_results_["valid_score"])
    assert clf.predict(X_test).shape == (len(X_test), 3)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3) and not np.allclose(proba.sum(1), 1)
    assert clf.score(X_test, multilabel(y_test)) > 0.5


def test_multilabel_sets_all_different_are_held_out_together(recipes, weights_file,
                                                              data):
    X, y, _, _ = data
    recipes(scratch(), frozen(weights_file))
    Y = np.c_[multilabel(y), np.eye(100, dtype=np.int64)]  # 100 different sets
    assert len(np.unique(Y, axis=0)) == 100
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, Y)
    assert clf.selection_results_ is not None and clf.recipe_ is not None


def test_a_multilabel_frozen_winner_has_a_logistic_regression_per_label(
        recipes, weights_file, data, tmp_path):
    X, y, X_test, y_test = data
    recipes(scratch(lr=1e-9), frozen(weights_file))
    Y = multilabel(y)
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, Y)
    assert clf.recipe_ == "frozen_features" and clf.max_epochs_ == 0
    features = embed(clf.module_, X, device="cpu", precision="fp32")
    head = fit_linear_head(features, Y, np.ones(len(Y)))
    assert head.multilabel and head.coef.shape == (3, features.shape[1])
    expected = head.predict(embed(clf.module_, X_test, device="cpu", precision="fp32"))
    assert np.mean(clf.predict(X_test) == expected) > 0.95
    assert np.mean(clf.predict(X_test) == multilabel(y_test)) > 0.8  # per label
    save(clf, tmp_path / "model")
    assert np.array_equal(load(tmp_path / "model").predict(X_test), clf.predict(X_test))


def test_multilabel_images_are_held_out_per_label_set():
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 1], [0, 0]])
    groups = selection_module.label_groups(Y)
    # Two sets of several images; the two sets of one image, one group.
    assert groups.tolist() == [1, 1, 0, 0, 0, 2, 2]
    assert selection_module.label_groups(np.array([2, 0, 1])).tolist() == [2, 0, 1]
    # Twenty labels: every set is unique, and every image can be held out.
    Y = (np.random.RandomState(0).rand(50, 20) < 0.3).astype(int)
    assert set(selection_module.label_groups(Y)) == {0}
    assert selection_module.can_hold_out(Y)
    assert not selection_module.can_hold_out(Y[:1])
    assert not selection_module.can_hold_out(np.array([0, 0, 1]))
    assert selection_module.can_hold_out(np.array([0, 0, 1, 1, 2]))


def test_the_multilabel_head_fits_each_label_and_weighs_positives():
    rng = np.random.RandomState(0)
    F = rng.normal(size=(200, 6)).astype(np.float32)
    Y = np.stack([F[:, 0] > 0, F[:, 1] > 1, np.zeros(200, bool)], 1).astype(np.int64)
    head = fit_linear_head(F, Y, np.ones(200))
    assert head.multilabel and len(head.C) == 3 and np.isnan(head.C[2])
    assert (head.predict(F)[:, :2] == Y[:, :2]).mean() > 0.95
    proba = head.predict_proba(F)
    assert proba[:, 2].max() < 0.01  # a label never on: a constant near 0
    weighted = fit_linear_head(F, Y, np.ones(200), pos_weight=np.array([1.0, 10.0, 1.0]))
    assert weighted.predict_proba(F)[:, 1].mean() > proba[:, 1].mean() + 0.05


def test_file_paths_kept_on_disk_are_selected_on_a_decoded_subsample(
        recipes, weights_file, data, tmp_path, monkeypatch, capsys):
    """Files whose decoded images exceed the memory budget stay paths; the
    selection decodes a subsample of them, and a frozen winner's head is
    fitted on the features of every file, as it is on in-memory images."""
    from PIL import Image

    from skimgcls import ImageReader

    X, y, X_test, _ = data
    paths = []
    for i, image in enumerate((X[..., 0] * 255).round().astype(np.uint8)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    paths = np.array(paths, dtype=object)
    monkeypatch.setattr(selection_module, "SELECT_MAX_SAMPLES", 90)
    recipes(scratch(lr=1e-9), frozen(weights_file))
    reader = ImageReader(mode="L", keep_in_memory=False)
    clf = CNNClassifier(random_state=0, precision="fp32", reader=reader, verbose=1)
    clf.fit(paths, y)
    assert "of the 90 images looked at" in capsys.readouterr().out
    assert clf.recipe_ == "frozen_features" and clf.max_epochs_ == 0
    in_memory = CNNClassifier(random_state=0, precision="fp32").fit(
        reader.transform(paths), y)
    assert in_memory.recipe_ == "frozen_features"
    test = (X_test * 255).round().astype(np.uint8)
    assert np.mean(clf.predict(test) == in_memory.predict(test)) > 0.95


def test_the_selection_decodes_what_the_memory_budget_holds(monkeypatch):
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(4), 1000)
    assert len(selection_module.selection_rows(y, (64, 64, 3), rng)) == 2000
    monkeypatch.setattr(selection_module, "MEMORY_BUDGET", 300 * 64 * 64 * 3)
    rows = selection_module.selection_rows(y, (64, 64, 3), rng)
    assert len(rows) == 300 and np.bincount(y[rows]).tolist() == [75] * 4
    assert len(selection_module.selection_rows(y[:200], (64, 64, 3), rng)) == 200


def test_a_recipe_may_fix_its_batch_size(recipes, data):
    X, y, _, _ = data
    # The recipe with its own batch size wins (the other cannot learn at lr ~0;
    # ties go to the first).
    recipes(scratch(batch_size=10), Recipe("fine_tune", {
        "module": "compact_cnn", "pretrained": False, "module__width": 8, "lr": 1e-9},
        steps=30))
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    assert clf.selection_results_["steps"][0] == 32  # 4 epochs of 8 batches of 10
    assert clf.recipe_ == "compact_cnn" and clf.best_params_["batch_size"] == 10
    assert clf.batch_size_ == 10 and clf.max_epochs_ == 3  # 30 steps, 100 images


def test_same_random_state_same_selection_and_model(recipes, weights_file, data):
    X, y, X_test, _ = data
    X, y = X[:60], y[:60]
    recipes(scratch(), frozen(weights_file))
    a = CNNClassifier(random_state=3, precision="fp32").fit(X, y)
    b = CNNClassifier(random_state=3, precision="fp32").fit(X, y)
    assert a.selection_results_["valid_score"] == b.selection_results_["valid_score"]
    assert a.recipe_ == b.recipe_
    assert np.allclose(a.predict_proba(X_test), b.predict_proba(X_test))


FEW_STEPS = {"batch_size": 100, "module__width": 4}  # 'auto' epochs of one step


@pytest.fixture
def few_auto_steps(monkeypatch):
    """The 'auto' budget at its floor (8 epochs): explicit-parameter fits stay fast."""
    monkeypatch.setattr(build_module, "AUTO_STEPS", 1)


@pytest.mark.parametrize("params", [{"module": "compact_cnn", **FEW_STEPS},
                                    {"max_epochs": 2}, {"pretrained": False, **FEW_STEPS},
                                    {"module__width": 8, **FEW_STEPS}])
def test_explicit_parameters_win_no_selection(recipes, weights_file, data, params,
                                              few_auto_steps):
    X, y, _, _ = data
    recipes(scratch(), frozen(weights_file))
    clf = CNNClassifier(random_state=0, precision="fp32", **params)
    clf.fit(X, y)
    assert clf.recipe_ is None and clf.selection_results_ is None
    assert clf.selection_steps_ == 0
    assert clf.module_.__class__.__name__ == "CompactCNN"


def test_a_class_of_one_image_is_trained_on_and_never_held_out(recipes, weights_file,
                                                              data, capsys):
    X, y, _, _ = data
    recipes(scratch(), frozen(weights_file))
    keep = np.concatenate([np.flatnonzero(y != 0), np.flatnonzero(y == 0)[:1]])
    clf = CNNClassifier(random_state=0, precision="fp32", verbose=1)
    clf.fit(X[keep], y[keep])
    assert clf.recipe_ in ("compact_cnn", "frozen_features")
    assert clf.classes_.tolist() == list(range(10))
    # A fifth of the images (the unit test below: never the class of one).
    held = f"{round(len(keep) / 5)} of {len(keep)} images held out"
    assert held in capsys.readouterr().out
    assert clf.predict_proba(X[keep][:3]).shape == (3, 10)


@pytest.mark.parametrize("one_image", ["all classes", "all but one"])
def test_the_simplest_recipe_when_nothing_can_be_held_out(recipes, weights_file, data,
                                                          one_image, capsys):
    X, y, X_test, y_test = data
    recipes(frozen(weights_file), scratch())
    keep = np.array([np.flatnonzero(y == c)[0] for c in range(10)])
    if one_image == "all but one":  # one class of several: still none to compare
        keep = np.union1d(keep, np.flatnonzero(y == 0))
    clf = CNNClassifier(random_state=0, precision="fp32", verbose=1)
    clf.fit(X[keep], y[keep])
    assert "none can be held out" in capsys.readouterr().out
    assert clf.recipe_ == "frozen_features" and clf.selection_results_ is None
    assert clf.max_epochs_ == 0 and clf.best_params_["freeze"] == "backbone"
    # The head on the features of every image, as a selection's winner gets it.
    features = embed(clf.module_, X[keep], device="cpu", precision="fp32")
    head = fit_linear_head(features, y[keep], np.ones(len(keep)))
    expected = head.predict(embed(clf.module_, X_test, device="cpu", precision="fp32"))
    assert np.mean(clf.predict(X_test) == expected) > 0.95


def test_the_held_out_parts_never_hold_out_a_class_of_one_image(monkeypatch):
    rng = np.random.RandomState(0)
    y = np.array([0] * 12 + [1] * 9 + [2])
    features = rng.rand(len(y), 4)
    part = selection_module._neighbourhood_parts(features, y, 5, rng)
    assert part[-1] == -1 and (part[:-1] >= 0).all()
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 0)
    for feats in (features, None):  # one part, with and without features
        ((train, valid),) = selection_module._held_out_folds(feats, y, 5, rng)
        assert 21 in train and 21 not in valid
        assert np.array_equal(np.sort(np.r_[train, valid]), np.arange(len(y)))
        assert np.bincount(y[valid], minlength=3).tolist()[:2] >= [1, 1]
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 10)
    folds = selection_module._held_out_folds(features, y, 5, rng)  # 2 parts of 5
    assert len(folds) == 2
    for train, valid in folds:
        assert 21 in train and 21 not in valid


def test_two_images_per_class_are_held_out_in_two_parts(recipes, weights_file, data,
                                                        monkeypatch):
    """Parts that would hold no image are not held out (an empty part made the
    selection divide by zero)."""
    X, y, _, _ = data
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 100)
    recipes(scratch(), frozen(weights_file))
    keep = np.concatenate([np.flatnonzero(y == c)[:2] for c in (0, 1)])
    folds = selection_module._held_out_folds(None, y[keep], 2, np.random.RandomState(0))
    assert [len(valid) for _, valid in folds] == [2, 2]
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X[keep], y[keep])
    assert clf.recipe_ is not None and clf.selection_results_ is not None


def test_the_subsample_keeps_two_images_of_every_class():
    rng = np.random.RandomState(0)
    y = np.array([0] * 3000 + [1] * 900 + [2] * 3 + [3])
    rows = selection_module._subsample(y, 400, rng)
    counts = np.bincount(y[rows], minlength=4)
    assert counts.tolist() == [307, 92, 2, 1]  # in proportion, at least two
    assert np.array_equal(rows, np.unique(rows))


def test_a_large_set_with_rare_classes_is_selected_on(recipes, weights_file, data,
                                                      monkeypatch):
    """Subsampled for the selection, a class of two images keeps both: one
    is held out, the other trained on, and every candidate knows every class."""
    X, y, _, _ = data
    monkeypatch.setattr(selection_module, "SELECT_MAX_SAMPLES", 50)
    recipes(scratch(), frozen(weights_file))
    keep = np.concatenate([np.flatnonzero(y != 0), np.flatnonzero(y == 0)[:2]])
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X[keep], y[keep])
    assert clf.recipe_ in ("compact_cnn", "frozen_features")
    assert np.isfinite(clf.selection_results_["valid_score"]).all()


def test_verbose_shows_the_selection(recipes, weights_file, data, capsys):
    X, y, _, _ = data
    recipes(scratch(), frozen(weights_file))
    CNNClassifier(random_state=0, precision="fp32", verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "[recipe selection] 20 of 100 images held out" in out
    assert "[recipe selection] compact_cnn" in out
    assert "frozen_features" in out and "chose" in out


def test_candidates_depend_on_the_images(monkeypatch):
    selection = selection_module
    monkeypatch.setattr(selection, "pretrained_available", lambda name=None: True)
    assert [r.name for r in candidate_recipes((1, 64, 1))] == ["compact_cnn"]
    # Digits and MNIST: pretrained photo networks would see them upsampled.
    assert [r.name for r in candidate_recipes((28, 28, 1))] == ["compact_cnn"]
    assert len(candidate_recipes((32, 32, 1))) == 3
    names = [r.name for r in candidate_recipes((48, 48, 3))]
    assert names == ["frozen_features", "compact_cnn", "fine_tune"]  # simplest first
    # Multi-label: fine-tuning's probe and partner are multi-class.
    names = [r.name for r in candidate_recipes((48, 48, 3), multilabel=True)]
    assert names == ["frozen_features", "compact_cnn"]
    monkeypatch.setattr(selection, "pretrained_available", lambda name=None: False)
    assert [r.name for r in candidate_recipes((48, 48, 3))] == ["compact_cnn"]


@pytest.mark.parametrize("side", [32, 48, 128, 500])
def test_input_sizes(side):
    assert frozen_input_size((side, side, 1)) == 224
    assert fine_tune_input_size((side, side, 3)) == 128


def test_auto_resolves_without_selection():
    assert resolve_auto("auto", "auto") == {"module": "compact_cnn", "pretrained": False}
    assert resolve_auto("auto", True) == {"module": "efficientnet_lite0"}
    assert resolve_auto("resnet18", "auto") == {"pretrained": False}
    assert resolve_auto("compact_cnn", False) == {}
    params = net_params(CNNClassifier())
    assert params["module"] == "compact_cnn" and params["pretrained"] is False


def right(n, *wrong):
    """Which of ``n`` held-out images a recipe got right: all but ``wrong``."""
    out = np.ones(n, bool)
    out[list(wrong)] = False
    return out


@pytest.mark.parametrize("wins, losses, beats", [
    (6, 0, True),     # 6 images one recipe gets right and the other wrong
    (5, 0, False),    # 5 can be chance
    (0, 6, False),
    (10, 3, False),   # (7 - 1)**2 = 36 < 3.841 * 13
    (12, 3, True),    # (9 - 1)**2 = 64 > 3.841 * 15
    (40, 4, True),
    (0, 0, False),
    (6.0, 0.0, True),  # weighted counts
])
def test_a_significant_win_is_mcnemars_test_at_five_percent(wins, losses, beats):
    assert _beats(wins, losses) == beats
    assert not (_beats(wins, losses) and _beats(losses, wins))


@pytest.mark.parametrize("correct, chosen", [
    ([right(42, 0), right(42, *range(21)), right(42)], 0),  # one error in 42
    ([right(42, *range(6)), right(42), right(42, 6, 7)], 1),  # 6 errors: beaten
    ([right(42, *range(5)), right(42), right(42)], 0),  # 5 errors: not beaten
    ([right(42, *range(3)), right(42), None], 0),  # 3 more right of 42 (too few)
    ([right(42, *range(10)), right(42, 10, 11, 12), None], 0),  # 10 against 3
    ([right(42, *range(8)), right(42, *range(8)), right(42)], 2),  # both beaten
    ([right(7, 0, 1), right(7), right(7)], 0),  # 7 held-out images: too few to tell
    ([right(400, *range(40)), right(400, 50), right(400, 50, 51)], 1),
    ([right(24), right(24), right(24)], 0),  # equal: the simplest
    ([right(24, *range(12)), right(24), None], 1),  # None: not trained, never chosen
])
def test_the_simplest_recipe_that_no_other_significantly_beats_wins(correct, chosen):
    n = len(next(c for c in correct if c is not None))
    assert _choose(correct, np.ones(n)) == chosen


def test_the_chosen_recipe_is_never_beaten_and_the_most_accurate_never_is():
    rng = np.random.RandomState(0)
    for _ in range(300):
        n = rng.randint(1, 60)
        weights = rng.choice([0.5, 1.0, 3.0], n)
        correct = [rng.rand(n) < rng.uniform(0.3, 1.0) for _ in range(3)]
        chosen = _choose(correct, weights)
        beaten = [any(_beats(*selection_module._discordant(correct[j], correct[i], weights))
                      for j in range(3) if j != i) for i in range(3)]
        assert not beaten[chosen] and all(beaten[:chosen])
        accuracy = [np.average(c, weights=weights) for c in correct]
        assert not beaten[int(np.argmax(accuracy))]


def test_the_rule_counts_weighted_images():
    # 3 images that the frozen features miss weigh 3 each against 1 for the
    # other 39: 7.9 images' worth of weight (in a mean weight of 1), a win.
    weights = np.ones(42)
    weights[:3] = 3.0
    correct = [right(42, 0, 1, 2), right(42)]
    assert _choose(correct, np.ones(42)) == 0
    assert _choose(correct, weights) == 1


def candidate_recipes_for(shape):
    from skimgcls._selection import fine_tune_recipe, frozen_recipe, scratch_recipe

    return [frozen_recipe(shape), scratch_recipe(), fine_tune_recipe(shape)]


def test_candidates_are_ordered_simplest_first():
    recipes = candidate_recipes_for((48, 48, 3))
    assert [r.name for r in recipes] == ["frozen_features", "compact_cnn", "fine_tune"]


def test_a_recipe_that_cannot_win_is_not_trained(recipes, weights_file, data,
                                                 monkeypatch, tmp_path):
    X, y, _, _ = data
    cannot_win = selection_module._cannot_win
    ones = np.ones(42)
    assert cannot_win([right(42, *range(21)), right(42, *range(5))], ones)  # 5 misses
    assert not cannot_win([right(42, *range(21)), right(42, *range(6))], ones)
    assert not cannot_win([], ones) and not cannot_win([None], ones)
    # In fit: when nothing can beat anything, nothing after the first is trained.
    monkeypatch.setattr(selection_module, "_beats", lambda wins, losses: False)
    last = Recipe("fine_tune", {"module": "compact_cnn", "pretrained": False,
                                "module__width": 8}, steps=30)
    recipes(frozen(weights_file), scratch(), last)
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    res = clf.selection_results_
    assert res["recipe"] == ["frozen_features", "compact_cnn", "fine_tune"]
    assert res["steps"][1:] == [0, 0] and np.isnan(res["valid_score"][1:]).all()
    assert clf.recipe_ == "frozen_features" and clf.selection_steps_ == 0
    save(clf, tmp_path / "model")
    assert np.isnan(load(tmp_path / "model").selection_results_["valid_score"][2])


def all_wrong(score):
    """A stand-in for ``_score_linear_head``: every held-out image wrong."""
    def scores(recipe, X, y_enc, weights, train_idx, valid_idx, *args, **kwargs):
        return score, 5.0, np.zeros(len(valid_idx), bool)
    return scores


def test_fine_tuning_is_not_trained_when_its_start_was_clearly_beaten(
        recipes, weights_file, data, monkeypatch, capsys):
    outclassed = selection_module._outclassed
    tune = Recipe("fine_tune", {}, starts_from="frozen_features")
    names = ["frozen_features", "compact_cnn"]
    ones = np.ones(200)
    assert outclassed(tune, names, [right(200, *range(40)), right(200, 0, 1)], ones)
    assert not outclassed(tune, names, [right(200, *range(5)), right(200)], ones)
    assert not outclassed(tune, names, [None, right(200)], ones)  # the start not trained
    assert not outclassed(Recipe("other", {}), names,
                          [right(200, *range(40)), right(200)], ones)
    # In fit: frozen features that get every held-out image wrong.
    X, y, _, _ = data
    monkeypatch.setattr(selection_module, "_score_linear_head", all_wrong(0.0))
    last = Recipe("fine_tune", {"module": "compact_cnn", "pretrained": False,
                                "module__width": 8}, steps=30,
                  starts_from="frozen_features")
    recipes(frozen(weights_file), scratch(), last)
    clf = CNNClassifier(random_state=0, precision="fp32", verbose=1).fit(X, y)
    res = clf.selection_results_
    assert 20 * res["valid_score"][1] >= 6  # 6 of the 20 held-out images right
    assert res["steps"][2] == 0 and math.isnan(res["valid_score"][2])
    assert clf.recipe_ == "compact_cnn"
    assert ("fine_tune        not trained: another recipe significantly beats "
            "frozen_features, which it starts from") in capsys.readouterr().out


def test_a_candidate_clearly_ahead_stops_training_early(recipes, weights_file, data,
                                                        monkeypatch, capsys):
    # Frozen features that get every held-out image wrong, and any win counted
    # as significant: the scratch recipe (3 epochs of 10 batches, checked
    # after each but the last) wins after its first epoch and stops there.
    X, y, X_test, _ = data
    monkeypatch.setattr(selection_module, "_score_linear_head", all_wrong(0.0))
    monkeypatch.setattr(selection_module, "_beats", lambda wins, losses: wins > losses)
    recipes(frozen(weights_file), scratch())
    fitted = {}
    for stop in (True, False):
        monkeypatch.setattr(selection_module, "SELECT_STOP_AHEAD", stop)
        clf = fitted[stop] = CNNClassifier(random_state=0, precision="fp32",
                                           verbose=1).fit(X, y)
        res = clf.selection_results_
        shown = "10 of 30 steps: stopped when it significantly beat the simpler recipes"
        assert (shown in capsys.readouterr().out) == stop
        assert clf.recipe_ == "compact_cnn" and res["valid_score"][1] > 0
        assert res["steps"] == [0, 10 if stop else 30]
        assert clf.selection_steps_ == res["steps"][1]
    # The refit trains its whole budget either way: the same model.
    assert len(fitted[True].history_) == 3
    np.testing.assert_allclose(fitted[True].predict_proba(X_test),
                               fitted[False].predict_proba(X_test), atol=1e-6)


def test_the_early_stop_checks_spaced_epochs_and_never_the_last():
    stop = selection_module._StopWhenAhead(np.zeros((4, 8, 8, 1), np.uint8),
                                           np.array([0, 1, 0, 1]), np.ones(4),
                                           [np.zeros(4, bool)])

    class Net:
        max_epochs, history = 25, []

        def predict_logits(self, images):
            raise AssertionError("scored at an unchecked epoch")

    net = Net()
    stop.on_train_begin(net)
    assert stop.every_ == 3  # ceil(25 / STOP_CHECKS)
    for epoch in (1, 2, 4, 25):  # not a multiple of 3, or the last epoch
        net.history = [{}] * epoch
        stop.on_epoch_end(net)
    assert stop.stopped_at_ is None


def test_neighbourhood_split_holds_out_a_neighbourhood_per_class():
    rng = np.random.RandomState(0)
    # Class 0: two tight groups of 5 (directions e0 and e1); class 1: 10 near e2.
    centers = np.eye(3)[[0] * 5 + [1] * 5 + [2] * 10]
    features = centers + 0.01 * rng.rand(20, 3)
    y = np.array([0] * 10 + [1] * 10)
    valid_idx = np.array([0, 7, 12, 15])  # what a stratified split would hold out: 2 + 2
    train, valid = selection_module._neighbourhood_split(features, y, valid_idx)
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(20))
    assert np.bincount(y[valid]).tolist() == [2, 2]
    held0 = valid[y[valid] == 0]
    assert 0 in held0 and (held0 < 5).all()  # image 0 and its group, not 7's
    # One held-out image per class: the random draw's.
    _, valid = selection_module._neighbourhood_split(features, y, np.array([7, 15]))
    assert valid.tolist() == [7, 15]


def test_neighbourhood_split_leaves_a_buffer_out_of_the_training_part():
    # Per class a line of images: each one's nearest neighbours are the next ones.
    angles = np.r_[np.linspace(0, 0.5, 6), np.linspace(2, 2.5, 6)]
    features = np.c_[np.cos(angles), np.sin(angles)]
    y = np.repeat([0, 1], 6)
    train, valid = selection_module._neighbourhood_split(features, y, np.array([0, 6]),
                                                         buffer=True)
    assert valid.tolist() == [0, 6]
    # The nearest image of each held-out one (1 and 7) trains no candidate.
    assert train.tolist() == [2, 3, 4, 5, 8, 9, 10, 11]
    train, _ = selection_module._neighbourhood_split(features, y, np.array([0, 6]))
    assert 1 in train and 7 in train
    # Two images per class: one held out, the other still trains.
    train, valid = selection_module._neighbourhood_split(
        features[[0, 1, 6, 7]], np.array([0, 0, 1, 1]), np.array([0, 2]), buffer=True)
    assert train.tolist() == [1, 3] and valid.tolist() == [0, 2]


def test_few_images_are_held_out_in_several_parts(recipes, weights_file, data,
                                                   monkeypatch, capsys):
    # 100 images: a fifth is 20, fewer than the 50 asked for, so 3 of the 5
    # parts are held out one after the other; each candidate trains once per
    # part, but one with folds=1 only on the first.
    X, y, _, _ = data
    sizes = [[n // 5 + (i < n % 5) for i in range(5)] for n in np.bincount(y)]
    first, held = sum(s[0] for s in sizes), sum(sum(s[:3]) for s in sizes)
    assert first >= 20 and held >= 60
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 50)
    monkeypatch.setattr(selection_module, "SELECT_STOP_AHEAD", False)
    monkeypatch.setattr(selection_module, "_cannot_win", lambda *args: False)
    found = {}
    real = classifier_module.select_recipe

    def keep(*args, **kwargs):
        found["selection"] = real(*args, **kwargs)
        return found["selection"]

    monkeypatch.setattr(classifier_module, "select_recipe", keep)
    once = Recipe("fine_tune", {"module": "compact_cnn", "pretrained": False,
                                "module__width": 8}, steps=30, folds=1)
    recipes(frozen(weights_file), scratch(), once)
    clf = CNNClassifier(random_state=0, precision="fp32", verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert (f"{held} of 100 images held out in 3 parts, each scored after training "
            "on the rest") in out
    assert "30 steps; scored on 1 of the 3 parts" in out
    selection = found["selection"]
    assert selection.n_folds == 3 and selection.n_valid == held
    assert selection.n_train == 100 - first  # each part trains on the others
    steps = clf.selection_results_["steps"]  # 3 trainings of 30 steps or more, then 1
    assert steps[0] == 0 and steps[1] >= 90 and 30 <= steps[2] < 60
    frozen_right, scratch_right, once_right = selection.correct
    assert frozen_right.dtype == bool and scratch_right.dtype == bool
    assert not np.isnan(once_right[:first]).any() and np.isnan(once_right[first:]).all()
    assert 0 <= clf.selection_results_["valid_score"][2] <= 1


def test_the_held_out_parts_cover_every_image_once_in_neighbourhoods(monkeypatch):
    rng = np.random.RandomState(0)
    # Class 0: two tight groups of 5 (directions e0 and e1); class 1: 11 near e2.
    features = np.eye(3)[[0] * 5 + [1] * 5 + [2] * 11] + 0.01 * rng.rand(21, 3)
    y = np.array([0] * 10 + [1] * 11)
    part = selection_module._neighbourhood_parts(features, y, 2, rng)
    assert np.bincount(part[y == 0]).tolist() == [5, 5]  # one group each
    assert len(set(part[:5])) == 1 and len(set(part[5:10])) == 1
    assert np.bincount(part[y == 1]).tolist() == [6, 5]  # the first one more
    # Without features: random parts of the same sizes.
    part = selection_module._neighbourhood_parts(None, y, 5, rng)
    assert np.bincount(part[y == 1]).tolist() == [3, 2, 2, 2, 2]
    # One part of a fifth from SELECT_MIN_HELD_OUT images on, several below.
    monkeypatch.setattr(selection_module, "SELECT_MIN_HELD_OUT", 10)
    folds = selection_module._held_out_folds(features, y, 4, rng)  # 3 parts of 5
    assert len(folds) == 3
    held = np.concatenate([valid for _, valid in folds])
    assert len(np.unique(held)) == len(held) >= 10
    for train, valid in folds:
        assert np.array_equal(np.sort(np.r_[train, valid]), np.arange(21))
    assert len(selection_module._held_out_folds(features, y, 10, rng)) == 1


def test_recipes_scored_on_fewer_images_are_compared_where_both_were():
    nan = np.nan
    a = np.array([1, 1, 1, 0, nan, nan])
    b = np.array([0, 0, 1, 1, 1, 0], bool)
    assert selection_module._discordant(a, b, np.ones(6)) == (2.0, 1.0)
    # The pick's errors only count where the next recipe will be scored.
    pick = right(12, *range(8))  # 8 errors, 4 of them in the first third
    first_third = np.arange(12) < 4
    assert not selection_module._cannot_win([pick], np.ones(12))
    assert selection_module._cannot_win([pick], np.ones(12), first_third)


def test_the_frozen_features_fit_seconds_include_computing_the_features(
        recipes, weights_file, data, monkeypatch):
    # The neighbourhood split computes them before the candidates are scored.
    X, y, _, _ = data
    real_embed = selection_module.embed

    def slow_embed(*args, **kwargs):
        import time

        time.sleep(0.5)
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(selection_module, "embed", slow_embed)
    recipes(frozen(weights_file), scratch())
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    assert clf.selection_results_["fit_s"][0] >= 0.5


def test_the_heads_regularization_path_chooses_as_independent_fits_do():
    """Warm starts along ``HEAD_CS`` and Newton-CG reach the optima that
    independent L-BFGS fits reach: the same ``C``, the same head."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    from skimgcls._probe import HEAD_CS, _choose_C, fit_linear_head

    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(4), 30)
    Z = rng.normal(size=(len(y), 60)) + 0.6 * np.eye(4, 60)[y] * rng.uniform(0, 3, 60)
    # Every feature with a standard deviation of 0.5: fit_linear_head's scale
    # (std + median std) is then 1, and it fits these very features.
    Z = (Z - Z.mean(0)) / Z.std(0) / 2
    weights = np.ones(len(y))
    expected = []
    for C in HEAD_CS:
        accuracy = loss = 0.0
        for tr, va in StratifiedKFold(3, shuffle=True, random_state=0).split(Z, y):
            model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(Z[tr], y[tr])
            proba = model.predict_proba(Z[va])
            accuracy += np.mean(proba.argmax(1) == y[va])
            loss += log_loss(y[va], proba, labels=model.classes_)
        expected.append((-accuracy, loss))
    C = HEAD_CS[min(range(len(HEAD_CS)), key=expected.__getitem__)]
    assert C != max(HEAD_CS) and _choose_C(Z, y, weights) == C  # not a boundary
    head = fit_linear_head(Z, y, weights)
    reference = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(Z, y)
    assert head.C == C
    np.testing.assert_allclose(head.predict_proba(Z), reference.predict_proba(Z),
                               atol=1e-3)


def test_the_heads_fits_silence_line_search_warnings_only():
    """Newton-CG stops on rounding with line-search warnings a user cannot act on
    (seen on the README's few-image fits); other warnings pass."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from skimgcls._probe import _quiet_line_search

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with _quiet_line_search():
            for message in ("The line search algorithm did not converge",
                            "Rounding errors prevent the line search from converging",
                            "Line Search failed"):
                warnings.warn(message, RuntimeWarning, stacklevel=1)
            warnings.warn("newton-cg failed to converge", ConvergenceWarning,
                          stacklevel=1)
    assert [str(w.message) for w in seen] == ["newton-cg failed to converge"]


def test_the_head_does_not_blow_up_features_that_barely_vary():
    # Feature 0 barely varies and separates the training classes; the others
    # vary at scale 1 and carry the same signal with noise. A shift of 0.002
    # in feature 0 (20 of its standard deviations, a tiny fraction of the
    # others') leaves the predictions of the floored head alone.
    from skimgcls._probe import fit_linear_head

    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 40)
    signal = np.where(y == 1, 1.0, -1.0)
    F = np.column_stack([1e-4 * signal,
                         signal[:, None] + 1.5 * rng.normal(size=(len(y), 20))])
    head = fit_linear_head(F, y, np.ones(len(y)))
    shifted = F.copy()
    shifted[:, 0] += np.where(y == 1, -2e-3, 2e-3)  # toward the other class
    assert np.mean(head.predict(shifted) == head.predict(F)) > 0.9
