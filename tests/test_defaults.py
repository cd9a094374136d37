"""Defaults that adapt to the data: budget, validation, BatchNorm, image size."""

import math

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn

from skimgcls import CNNClassifier, RandomAugment
from skimgcls._build import AUTO_STEPS, auto_batch_size, auto_max_epochs, auto_patience
from skimgcls._functional import to_float_nchw
from skimgcls.networks import CompactCNN, auto_stem_strides

from .conftest import digits_sample


def per_class(n, seed=0):
    """``n`` digits of each class, and the other digits as a test set."""
    X, y = digits_sample(1797, seed=seed)
    rng = np.random.RandomState(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False)
                          for c in range(10)])
    rest = np.setdiff1d(np.arange(len(y)), idx)
    return X[idx], y[idx], X[rest], y[rest]


@pytest.mark.parametrize("n, batch", [(20, 8), (127, 8), (128, 16), (255, 16),
                                      (256, 32), (50_000, 32)])
def test_auto_batch_size(n, batch):
    assert auto_batch_size(n) == batch


@pytest.mark.parametrize("n, batch, epochs", [(8, 8, 200), (20, 8, 167), (60, 8, 63),
                                              (200, 16, 39), (4000, 32, 8)])
def test_auto_max_epochs_counts_optimizer_steps(n, batch, epochs):
    assert auto_max_epochs(n, batch) == epochs
    assert epochs * math.ceil(n / batch) >= AUTO_STEPS or epochs == 200


def test_a_few_images_per_class_train_with_the_defaults():
    X, y, X_test, y_test = per_class(2)  # 20 images of 10 classes
    clf = CNNClassifier(random_state=0, precision="fp32").fit(X, y)
    assert clf.validation_fraction_ is None  # too few to hold out: trains on all
    assert clf.early_stopping_ is False
    assert (clf.batch_size_, clf.max_epochs_) == (8, 167)
    assert len(clf.history_) == 167
    assert clf.score(X_test, y_test) > 0.45  # chance is 0.1


def test_augment_auto_augments_compact_cnn_from_scratch_only():
    X, y, _, _ = per_class(2)
    clf = CNNClassifier(max_epochs=2, random_state=0, precision="fp32").fit(X, y)
    chosen = clf.best_params_["augment"]
    assert isinstance(clf.net_.augment, RandomAugment) and clf.net_.augment is chosen
    assert chosen.get_params() == RandomAugment().get_params()  # its defaults
    # best_params_ trains the same model again.
    again = CNNClassifier(**clf.best_params_, max_epochs=2, random_state=0,
                          precision="fp32").fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    plain = CNNClassifier(max_epochs=2, random_state=0, precision="fp32", augment=None)
    assert not np.array_equal(plain.fit(X, y).predict_proba(X), clf.predict_proba(X))
    for params in ({"module": "simple_cnn"}, {"augment": None}):
        assert CNNClassifier(max_epochs=1, **params).fit(X, y).net_.augment is None
    mine = RandomAugment(degrees=0.0)
    clf = CNNClassifier(max_epochs=1, augment=mine).fit(X, y)
    assert clf.net_.augment is mine and "augment" not in clf.best_params_


def test_an_explicit_fraction_that_cannot_be_split_still_raises():
    X, y, _, _ = per_class(2)
    with pytest.raises(ValueError, match=r"Cannot hold out validation_fraction=0.1 of 20"):
        CNNClassifier(validation_fraction=0.1, max_epochs=1).fit(X, y)


def test_explicit_values_are_kept():
    X, y, _, _ = per_class(10)
    clf = CNNClassifier(max_epochs=2, batch_size=50, validation_fraction=0.2,
                        early_stopping=False, random_state=0).fit(X, y)
    assert (clf.max_epochs_, clf.batch_size_, clf.validation_fraction_) == (2, 50, 0.2)
    assert len(clf.history_) == 2 and "valid_loss" in clf.history_[-1]


def tiny_images(n, n_classes, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    X = rng.randint(0, 50, size=(n, 4, 4, 1)).astype(np.uint8)
    X[:, 0, 0, 0] = (y * 255 // max(n_classes - 1, 1)).astype(np.uint8)
    return X, y


def test_auto_validation_holds_out_a_split_on_large_data():
    X, y = tiny_images(10_000, 2)
    clf = CNNClassifier(max_epochs=1, batch_size=500, module__width=2,
                        random_state=0).fit(X, y)
    assert clf.validation_fraction_ == 0.1 and clf.early_stopping_ is True
    assert "valid_loss" in clf.history_[-1]
    # Classes too small to stratify (5 images each): train on all, no error.
    X, y = tiny_images(10_000, 2_000)
    clf = CNNClassifier(max_epochs=1, batch_size=500, module__width=2,
                        random_state=0).fit(X, y)
    assert clf.validation_fraction_ is None and clf.early_stopping_ is False


@pytest.mark.parametrize("epochs, patience", [(8, 5), (50, 5), (51, 6), (167, 17),
                                               (200, 20)])
def test_auto_patience_is_a_tenth_of_the_epochs_at_least_five(epochs, patience):
    assert auto_patience(epochs) == patience


@pytest.mark.parametrize("schedule, callback", [("onecycle", "early_stopping"),
                                                ("plateau", "lr_schedule")])
def test_patience_auto_scales_with_the_epochs_of_the_fit(schedule, callback):
    X, y = tiny_images(40, 2)  # 'auto': batch 8, 100 epochs of 5 steps
    clf = CNNClassifier(early_stopping=True, lr_schedule=schedule, module__width=2,
                        random_state=0).fit(X, y)
    assert (clf.max_epochs_, clf.patience_) == (100, 10)
    watcher = dict(clf.net_.callbacks_)[callback]  # skorch's LRScheduler keeps kwargs
    assert getattr(watcher, "kwargs", vars(watcher))["patience"] == 10
    clf.set_params(patience=3, max_epochs=8).fit(X, y)
    assert clf.patience_ == 3
    assert CNNClassifier(max_epochs=8, module__width=2).fit(X, y).patience_ == 5


def _bn_layers(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_update_bn_sets_the_exact_statistics_of_the_training_images():
    X, y, _, _ = per_class(5)
    clf = CNNClassifier(max_epochs=3, batch_size=8, lr_schedule=None, random_state=0,
                        precision="fp32").fit(X, y)
    assert clf.history_[-1, "bn_updated"] is True
    reference = clf.module_
    saved = [(m.running_mean.clone(), m.running_var.clone())
             for m in _bn_layers(reference)]
    images = to_float_nchw(X[..., np.newaxis])
    loader = torch.utils.data.DataLoader(images, batch_size=8)  # fit's batches
    update_bn(loader, reference)
    for (mean, var), layer in zip(saved, _bn_layers(reference)):
        torch.testing.assert_close(mean, layer.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var, layer.running_var, rtol=1e-4, atol=1e-5)


def test_update_bn_rescues_predictions_after_few_steps():
    # The failure the 'auto' budget also prevents: 60 images, 8 epochs of batch 32
    # (16 steps) leave the running statistics near their initial values and
    # eval-mode predictions collapse toward one class.
    X, y, X_test, y_test = per_class(6)
    params = dict(max_epochs=8, batch_size=32, random_state=0, precision="fp32")
    stale = CNNClassifier(update_bn=False, **params).fit(X, y).score(X_test, y_test)
    fresh = CNNClassifier(update_bn=True, **params).fit(X, y).score(X_test, y_test)
    assert stale < 0.35 and fresh > 0.6, (stale, fresh)


@pytest.mark.parametrize("size, strides", [(8, 0), (32, 0), (48, 0), (64, 1), (128, 2),
                                           (256, 3)])
def test_the_default_network_works_at_a_bounded_resolution(size, strides):
    assert auto_stem_strides((size, size)) == strides
    net = CompactCNN(3, 10, (size, size))
    shapes = []
    first_stage = net.features[3 * strides]  # the first conv after the stem
    first_stage.register_forward_hook(lambda m, i, o: shapes.append(i[0].shape[-2:]))
    assert net(torch.zeros(2, 3, size, size)).shape == (2, 10)
    assert max(shapes[0]) <= 48
