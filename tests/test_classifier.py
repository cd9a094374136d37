"""CNNClassifier: inputs, labels, parameters, fitted attributes and errors."""

import pickle

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from skorch.callbacks import Callback
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import log_loss
from torch import nn

from skimgcls import CNNClassifier, list_networks
from skimgcls.networks import CompactCNN, SimpleCNN

from .conftest import tiny_classifier


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    return tiny_classifier(max_epochs=3).fit(X, y)


# -- fitted attributes --------------------------------------------------------
def test_fitted_attributes(fitted, small_digits):
    X, y = small_digits
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert fitted.n_features_in_ == 64
    assert fitted.image_shape_ == (8, 8, 1)
    assert isinstance(fitted.module_, CompactCNN)
    assert fitted.module_ is fitted.net_.module_
    assert fitted.device_ == "cpu" and fitted.precision_ == "fp32"
    history = fitted.history_
    assert len(history) == 3
    for key in ("train_loss", "valid_loss", "valid_acc", "dur"):
        assert len(history[:, key]) == 3
    proba = fitted.predict_proba(X)
    assert proba.shape == (300, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # score is the accuracy of predict, and 3 tiny epochs learn well above chance (0.1)
    score = fitted.score(X, y)
    assert score == np.mean(fitted.predict(X) == y)
    assert score > 0.5


@pytest.mark.slow
def test_learns_digits(digits):
    X, y = digits
    clf = tiny_classifier(module__width=8, max_epochs=8).fit(X[:1200], y[:1200])
    assert clf.score(X[1200:], y[1200:]) > 0.9


def test_validation_split_is_stratified_and_sized(small_digits):
    X, y = small_digits
    clf = tiny_classifier(max_epochs=1, validation_fraction=0.2).fit(X, y)
    assert sum(clf.history_[-1, "batches", :, "valid_batch_size"]) == 60
    assert sum(clf.history_[-1, "batches", :, "train_batch_size"]) == 240
    no_valid = tiny_classifier(max_epochs=1, validation_fraction=None).fit(X, y)
    assert "valid_loss" not in no_valid.history_[-1]


def test_validation_split_impossible_has_clear_error():
    X = np.random.RandomState(0).rand(12, 8, 8).astype(np.float32)
    y = np.array([0] * 11 + [1])
    with pytest.raises(ValueError, match="validation_fraction=None"):
        tiny_classifier().fit(X, y)


# -- inputs ------------------------------------------------------------------
@pytest.mark.slow
def test_all_input_layouts_give_the_same_model(small_digits):
    X, y = small_digits
    reference = tiny_classifier(max_epochs=1).fit(X, y).predict_proba(X)
    variants = {
        "NHWC": X[..., None],
        "NCHW": X[:, None],
        "2-D square": X.reshape(len(X), -1),
        "tensor NCHW": torch.from_numpy(X[:, None]),
        "tensor NHW": torch.from_numpy(X),
        "list": X.tolist(),
    }
    for name, Xv in variants.items():
        clf = tiny_classifier(max_epochs=1).fit(Xv, y)
        np.testing.assert_allclose(clf.predict_proba(Xv), reference, rtol=1e-5,
                                   atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_image_shape_reads_flat_rgb_rows():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 6, 10, 3).astype(np.float32)
    y = np.repeat([0, 1], 20)
    clf = tiny_classifier(image_shape=(6, 10, 3), validation_fraction=None)
    clf.fit(X.reshape(40, -1), y)
    assert clf.image_shape_ == (6, 10, 3) and clf.n_features_in_ == 180
    inferred = tiny_classifier(image_shape=(6, -1, 3), validation_fraction=None)
    assert inferred.fit(X.reshape(40, -1), y).image_shape_ == (6, 10, 3)
    # images in their own layout work at predict time too
    assert clf.predict(X).shape == (40,)


@pytest.mark.slow
def test_uint8_images_are_scaled_like_floats(small_digits):
    X, y = small_digits
    X8 = np.round(X * 255).astype(np.uint8)
    p8 = tiny_classifier(max_epochs=1).fit(X8, y).predict_proba(X8)
    pf = tiny_classifier(max_epochs=1).fit(X8 / np.float32(255), y).predict_proba(
        X8 / np.float32(255))
    np.testing.assert_allclose(p8, pf, rtol=1e-4, atol=1e-5)


def test_pil_images_gray_and_rgb():
    rng = np.random.RandomState(0)
    arrays = rng.randint(0, 255, size=(24, 9, 11, 3), dtype=np.uint8)
    y = np.repeat(["cat", "dog"], 12)
    rgb = [Image.fromarray(a) for a in arrays]
    clf = tiny_classifier(validation_fraction=None).fit(rgb, y)
    assert clf.image_shape_ == (9, 11, 3)
    np.testing.assert_allclose(clf.predict_proba(rgb), clf.predict_proba(arrays))
    gray = [im.convert("L") for im in rgb]
    assert tiny_classifier(validation_fraction=None).fit(gray, y).image_shape_ == (9, 11, 1)


def test_rgba_images():
    X = np.random.RandomState(0).rand(20, 8, 8, 4).astype(np.float32)
    clf = tiny_classifier(validation_fraction=None).fit(X, np.repeat([0, 1], 10))
    assert clf.image_shape_ == (8, 8, 4)


@pytest.mark.parametrize("labels", [
    np.array(["zero", "one", "two"]),
    np.array([10, 20, 30]),
    np.array([-1.0, 2.0, 7.0]),
])
def test_labels_of_any_kind(labels):
    rng = np.random.RandomState(0)
    y_idx = np.repeat([0, 1, 2], 10)
    X = rng.rand(30, 8, 8).astype(np.float32) + y_idx[:, None, None]
    y = labels[y_idx]
    clf = tiny_classifier(max_epochs=5, validation_fraction=None).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(labels)


# -- parameters --------------------------------------------------------------
def test_simple_cnn_is_the_classic_network(small_digits):
    X, y = small_digits
    clf = CNNClassifier(module="simple_cnn", max_epochs=1, random_state=0).fit(X, y)
    module = clf.module_
    assert isinstance(module, SimpleCNN)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    dense = [m for m in module.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [d.out_features for d in dense] == [128, 10]
    assert sorted(list_networks())[:2] == ["compact_cnn", "simple_cnn"]


def test_simple_cnn_rejects_tiny_images():
    X = np.zeros((10, 5, 5), np.float32)
    with pytest.raises(ValueError, match="at least 6x6"):
        CNNClassifier(module="simple_cnn", validation_fraction=None).fit(
            X, np.repeat([0, 1], 5))


class _TinyNet(nn.Module):
    def __init__(self, in_channels, n_classes, hidden=5):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.net(x)


def test_module_class_gets_data_params_and_routed_params(small_digits):
    X, y = small_digits
    clf = CNNClassifier(module=_TinyNet, module__hidden=7, max_epochs=1,
                        random_state=0).fit(X, y)
    assert clf.module_.hidden == 7
    assert clf.module_.net[-1].out_features == 10


def test_module_instance_is_copied(small_digits):
    X, y = small_digits
    net = _TinyNet(1, 10)
    before = [p.detach().clone() for p in net.parameters()]
    clf = CNNClassifier(module=net, max_epochs=1, random_state=0).fit(X, y)
    assert clf.module_ is not net
    for p, q in zip(before, net.parameters()):
        torch.testing.assert_close(p, q)


def test_unknown_network_name():
    with pytest.raises(ValueError, match="Unknown network 'nope'.*compact_cnn"):
        CNNClassifier(module="nope").fit(np.zeros((4, 8, 8)), [0, 1, 0, 1])


def test_routed_params_roundtrip_and_typos():
    clf = CNNClassifier(module__width=8, optimizer__weight_decay=0.1)
    params = clf.get_params()
    assert params["module__width"] == 8 and params["optimizer__weight_decay"] == 0.1
    assert clone(clf).get_params()["module__width"] == 8
    clf.set_params(module__width=16, lr=0.5)
    assert clf.get_params()["module__width"] == 16 and clf.lr == 0.5
    with pytest.raises(TypeError, match="unexpected parameters \\['modul__width'\\]"):
        CNNClassifier(modul__width=3).fit(np.zeros((4, 8, 8)), [0, 1, 0, 1])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", torch.optim.SGD])
def test_optimizers(small_digits, optimizer):
    X, y = small_digits
    clf = tiny_classifier(optimizer=optimizer, max_epochs=1,
                          optimizer__weight_decay=1e-3).fit(X, y)
    expected = optimizer if isinstance(optimizer, type) else type(clf.net_.optimizer_)
    assert isinstance(clf.net_.optimizer_, expected)
    assert clf.net_.optimizer_.param_groups[0]["weight_decay"] == 1e-3


@pytest.mark.parametrize("schedule", [None, "onecycle", "cosine"])
def test_lr_schedules(small_digits, schedule):
    X, y = small_digits
    clf = tiny_classifier(lr_schedule=schedule, max_epochs=3, patience=1).fit(X, y)
    lr = clf.net_.optimizer_.param_groups[0]["lr"]
    if schedule is None:
        assert lr == 0.03
    else:
        assert lr < 0.001  # annealed to (nearly) zero at the end


def test_plateau_schedule_divides_lr_by_ten_after_patience(small_digits):
    X, y = small_digits
    # lr so small that the validation loss cannot improve by ReduceLROnPlateau's
    # threshold (and no BatchNorm statistics move it): every epoch after the
    # first is a bad one. With patience=1 the second bad epoch (epoch 3) exceeds
    # the patience, so epochs 4 and 5 run at a tenth of lr, and epoch 5 (the
    # second bad epoch since) divides it again. (No smaller lr: torch ignores
    # reductions below eps=1e-8.)
    clf = CNNClassifier(module=_TinyNet, lr=1e-6, lr_schedule="plateau", patience=1,
                        max_epochs=5, batch_size=32, validation_fraction=0.1,
                        precision="fp32", random_state=0).fit(X, y)
    losses = clf.history_[:, "valid_loss"]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-5)  # a plateau indeed
    lrs = clf.history_[:, "event_lr"]  # the lr each epoch trained with
    np.testing.assert_allclose(lrs, [1e-6, 1e-6, 1e-6, 1e-7, 1e-7], rtol=1e-6)
    assert clf.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-8)


class _ValidBatches(Callback):
    """Keep the validation batches of the first epoch (the same every epoch)."""

    def initialize(self):
        self.batches_, self.done_ = [], False
        return self

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training and not self.done_:
            Xb, yb = batch
            self.batches_.append((Xb["X"].numpy().copy(), yb.numpy().copy()))

    def on_epoch_end(self, net, **kwargs):
        self.done_ = True

    def images(self):
        return (np.concatenate([b[0] for b in self.batches_]),
                np.concatenate([b[1] for b in self.batches_]))


def test_early_stopping_restores_best_weights(small_digits):
    X, y = small_digits
    clf = tiny_classifier(early_stopping=True, patience=2, max_epochs=40, lr=0.05,
                          lr_schedule=None, update_bn=False,  # the weights as restored
                          callbacks=[("valid_batches", _ValidBatches())]).fit(X, y)
    losses = clf.history_[:, "valid_loss"]
    assert len(losses) < 40
    best = int(np.argmin(losses))
    assert len(losses) - 1 - best == 2  # stopped after `patience` bad epochs
    assert losses[-1] > losses[best] * 1.05  # the last epoch is clearly not the best
    # The weights the estimator holds give the best epoch's validation loss,
    # recomputed on the validation images that training held out.
    X_valid, y_valid = dict(clf.net_.callbacks_)["valid_batches"].images()
    assert len(X_valid) == 30
    proba = clf.predict_proba(X_valid)
    valid_loss = log_loss(y_valid, proba, labels=np.arange(10))
    assert valid_loss == pytest.approx(losses[best], rel=1e-4)
    assert valid_loss != pytest.approx(losses[-1], rel=1e-2)


def test_early_stopping_does_not_watch_during_the_one_cycle_warmup(small_digits):
    from types import SimpleNamespace

    from skorch.history import History

    from skimgcls._callbacks import EarlyStoppingAfterWarmup

    # A validation loss that only worsens: skorch's EarlyStopping keeps epoch 1
    # and stops at epoch 3; after 3 warm-up epochs, it keeps epoch 4, stops at 6.
    for start, best, stop in ((0, 1, 3), (3, 4, 6)):
        cb = EarlyStoppingAfterWarmup(patience=2, load_best=True, start_epoch=start,
                                      sink=lambda *args: None)
        net = SimpleNamespace(history=History(), module_=nn.Linear(1, 1), verbose=0)
        cb.on_train_begin(net)
        stopped = None
        for epoch in range(1, 9):
            net.history.new_epoch()
            net.history.record("epoch", epoch)
            net.history.record("valid_loss", float(epoch))
            try:
                cb.on_epoch_end(net)
            except KeyboardInterrupt:
                stopped = epoch
                break
        assert (cb.best_epoch_, stopped) == (best, stop)
    # The estimator's: the warm-up of its one-cycle schedule (30 % of the epochs).
    X, y = small_digits
    for schedule, start in (("onecycle", 6), ("cosine", 0)):
        clf = tiny_classifier(early_stopping=True, patience=2, max_epochs=20,
                              lr_schedule=schedule).fit(X, y)
        cb = dict(clf.net_.callbacks_)["early_stopping"]
        assert isinstance(cb, EarlyStoppingAfterWarmup) and cb.start_epoch == start
        assert len(clf.history_) > start and cb.best_epoch_ > start


def test_class_weight_changes_training(small_digits):
    X, y = small_digits
    y2 = (y == 0).astype(int)  # 10% positives
    params = dict(max_epochs=4, lr=0.02, validation_fraction=None)
    plain = tiny_classifier(**params).fit(X, y2)
    balanced = tiny_classifier(class_weight="balanced", **params).fit(X, y2)
    as_dict = tiny_classifier(class_weight={0: 1.0, 1: 30.0}, **params).fit(X, y2)
    p_plain = plain.predict_proba(X)[:, 1].mean()
    assert balanced.predict_proba(X)[:, 1].mean() > p_plain
    assert as_dict.predict_proba(X)[:, 1].mean() > p_plain
    with pytest.raises(ValueError, match="class_weight has labels that are not"):
        tiny_classifier(class_weight={5: 1.0}).fit(X, y2)


def test_sample_weight_matters(small_digits):
    X, y = small_digits
    w = np.where(y == 3, 20.0, 1.0)
    plain = tiny_classifier(max_epochs=3).fit(X, y)
    weighted = tiny_classifier(max_epochs=3).fit(X, y, sample_weight=w)
    assert (weighted.predict_proba(X)[:, 3].mean()
            > plain.predict_proba(X)[:, 3].mean())


@pytest.mark.slow
def test_random_state_repeats_bit_for_bit(small_digits):
    X, y = small_digits
    a = tiny_classifier(max_epochs=2, random_state=3).fit(X, y)
    b = tiny_classifier(max_epochs=2, random_state=3).fit(X, y)
    c = tiny_classifier(max_epochs=2, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    for p, q in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(p, q)


@pytest.mark.slow
def test_fit_does_not_touch_global_torch_rng(small_digits):
    X, y = small_digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_classifier(max_epochs=1).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.slow
def test_device_auto_and_bf16_precision(small_digits):
    X, y = small_digits
    clf = tiny_classifier(device="auto", precision="bf16", max_epochs=1).fit(X, y)
    mps = getattr(torch.backends, "mps", None)
    expected = ("cuda" if torch.cuda.is_available()
                else "mps" if mps is not None and mps.is_available() else "cpu")
    assert clf.device_ == expected
    assert next(clf.module_.parameters()).device.type == expected
    assert clf.precision_ == "bf16"
    assert clf.predict_proba(X).dtype == np.float32


def test_verbose_prints_epochs(small_digits, capsys):
    X, y = small_digits
    tiny_classifier(max_epochs=2, verbose=0).fit(X, y)
    assert capsys.readouterr().out == ""
    tiny_classifier(max_epochs=2, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_acc" in out


class _Recorder(Callback):
    def initialize(self):
        self.epochs_ = 0
        return self

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1


def test_skorch_callbacks_pass_through(small_digits):
    X, y = small_digits
    clf = tiny_classifier(max_epochs=2, callbacks=[("recorder", _Recorder())]).fit(X, y)
    assert dict(clf.net_.callbacks_)["recorder"].epochs_ == 2


class _GradientNorms(Callback):
    """Record the gradient norm of every training step (skorch's on_grad_computed)."""

    def initialize(self):
        self.norms_ = []
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.norms_.append(float(torch.norm(torch.stack(
            [p.grad.norm() for _, p in named_parameters if p.grad is not None]))))


def test_on_grad_computed_reaches_the_callbacks_that_listen(small_digits):
    X, y = small_digits
    clf = tiny_classifier(max_epochs=2, validation_fraction=None,
                          callbacks=[("norms", _GradientNorms())]).fit(X, y)
    norms = dict(clf.net_.callbacks_)["norms"].norms_
    steps = sum(row["train_batch_count"] for row in clf.history_)
    assert len(norms) == steps == 2 * int(np.ceil(len(X) / 32))
    assert all(np.isfinite(norms)) and min(norms) > 0


def test_warm_start_continues_training(small_digits):
    X, y = small_digits
    clf = tiny_classifier(max_epochs=2, warm_start=True).fit(X, y)
    module = clf.module_
    clf.fit(X, y)
    assert clf.module_ is module and len(clf.history_) == 4
    cold = tiny_classifier(max_epochs=2).fit(X, y)
    first = cold.module_
    assert cold.fit(X, y).module_ is not first and len(cold.history_) == 2


def test_partial_fit(small_digits):
    X, y = small_digits
    clf = tiny_classifier()
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    clf.partial_fit(X[100:], y[100:])
    assert len(clf.history_) == 2
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    with pytest.raises(ValueError, match="labels not seen in the first fit"):
        clf.partial_fit(X[:10], y[:10] + 100)
    with pytest.raises(ValueError, match="shape"):
        clf.partial_fit(np.zeros((4, 9, 9), np.float32), y[:4])


# -- round trips ---------------------------------------------------------------
def test_clone_pickle_joblib_roundtrips(fitted, small_digits, tmp_path):
    X, _ = small_digits
    expected = fitted.predict_proba(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), expected)
    assert restored.module_ is restored.net_.module_
    joblib.dump(fitted, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").predict_proba(X), expected)
    unfitted = clone(fitted)
    assert unfitted.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        unfitted.predict(X)


# -- errors --------------------------------------------------------------------
@pytest.mark.parametrize("X, match", [
    (np.zeros((5,)), "Expected images"),
    (np.zeros((2, 3, 4, 5, 6)), "5 dimensions"),
    (np.zeros((4, 7, 7, 2)), "neither 1, 3 nor 4"),
    (np.zeros((0, 8, 8)), "0 sample"),
    (np.zeros((4, 10)), "not a square gray image"),
    (np.full((4, 8, 8), np.nan), "NaN"),
    (np.full((4, 8, 8), np.inf), "infinite"),
    (np.zeros((4, 8, 8), dtype=bool), "Boolean images"),
    ([], "0 sample"),
])
def test_bad_images_are_refused(X, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_classifier(validation_fraction=None).fit(X, [0, 1, 0, 1][: len(X)])


def test_bad_labels_are_refused():
    X = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="4 images and 3 labels"):
        tiny_classifier().fit(X, [0, 1, 0])
    with pytest.raises(ValueError, match="only one class"):
        tiny_classifier().fit(X, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        tiny_classifier().fit(X, [0.5, 1.5, 2.5, 3.7])
    with pytest.raises(ValueError, match="requires y"):
        tiny_classifier().fit(X, None)


def test_predict_checks_shape_and_channels(fitted):
    with pytest.raises(ValueError, match=r"shape \(9, 9, 1\).*Resize"):
        fitted.predict(np.zeros((2, 9, 9), np.float32))
    with pytest.raises(ValueError, match="3 channel.*1 channel.*ToGrayscale"):
        fitted.predict(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="X has 63 features, but CNNClassifier is "
                                         "expecting 64 features"):
        fitted.predict(np.zeros((2, 63), np.float32))


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        CNNClassifier().predict(np.zeros((2, 8, 8)))
    with pytest.raises(NotFittedError):
        CNNClassifier().module_  # noqa: B018


def test_invalid_parameters_are_refused_in_fit(small_digits):
    X, y = small_digits
    for params in ({"lr": -1}, {"lr_schedule": "linear"}, {"precision": "fp8"},
                   {"validation_fraction": 1.5}, {"optimizer": "lbfgs"}):
        with pytest.raises(ValueError, match="parameter of CNNClassifier"):
            CNNClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="image_shape must be"):
        CNNClassifier(image_shape=(8, -1, -1)).fit(X.reshape(300, -1), y)


class _FirstBatches(Callback):
    """Records the labels of the first training batch of every epoch.

    fit copies the user's callbacks; this one stays itself (one record).
    """

    def __init__(self):
        self.first = []

    def __deepcopy__(self, memo):
        return self

    def on_epoch_begin(self, net, **kwargs):
        self._new_epoch = True

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training and self._new_epoch:
            self.first.append(batch[1].tolist())
            self._new_epoch = False


def test_partial_fit_calls_draw_new_batch_orders_repeatably(small_digits):
    X, y = small_digits

    def run():
        recorder = _FirstBatches()
        clf = tiny_classifier(callbacks=[("first", recorder)])
        for _ in range(3):
            clf.partial_fit(X, y, classes=np.arange(10))
        return recorder.first

    orders = run()
    assert len(orders) == 3
    assert orders[0] != orders[1] and orders[1] != orders[2]  # not the same shuffle
    assert run() == orders  # and repeatable with the same random_state
