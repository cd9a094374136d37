"""The fast paths: slicing batches, thread count, loss syncs, predict batches."""

import os

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skimgcls import CNNClassifier
from skimgcls import _build, _device
from skimgcls._data import ImageTensorDataset, collate_batch, image_batches
from skimgcls._device import resolve_precision, torch_threads
from skimgcls._skorch import ImageNet


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(n, 6, 6, 1)).astype(np.uint8)
    y = np.arange(n) % 3
    X[y == 1, :3] = 255  # learnable
    return X, y


def _clf(**params):
    defaults = dict(module__width=4, max_epochs=2, batch_size=16, precision="fp32",
                    validation_fraction=None, random_state=0)
    defaults.update(params)
    return CNNClassifier(**defaults)


# -- batching ------------------------------------------------------------------
def test_image_batches_slices_without_a_dataloader():
    X, y = _data(50)
    dataset = ImageTensorDataset(X, y)
    batches = image_batches(dataset, batch_size=16, shuffle=False,
                            collate_fn=collate_batch)
    assert not isinstance(batches, torch.utils.data.DataLoader)
    assert len(batches) == 4
    got = list(batches)
    assert [len(b[1]) for b in got] == [16, 16, 16, 2]
    # contiguous batches are views of the stored images: no copy
    assert got[0][0]["X"].data_ptr() == dataset.X.data_ptr()
    np.testing.assert_array_equal(torch.cat([b[1] for b in got]).numpy(), y)


def test_image_batches_shuffle_covers_every_image_once():
    X, y = _data(50)
    dataset = ImageTensorDataset(X, np.arange(50))
    torch.manual_seed(0)
    order = torch.cat([b[1] for b in image_batches(dataset, batch_size=16,
                                                    shuffle=True)]).numpy()
    assert sorted(order.tolist()) == list(range(50))
    assert order.tolist() != list(range(50))


def test_image_batches_drop_last():
    dataset = ImageTensorDataset(*_data(50))
    batches = image_batches(dataset, batch_size=16, shuffle=True, drop_last=True)
    assert len(batches) == 3
    assert [len(b[1]) for b in batches] == [16, 16, 16]


def test_image_batches_falls_back_to_a_dataloader_for_other_options():
    dataset = ImageTensorDataset(*_data(20))
    loader = image_batches(dataset, batch_size=8, num_workers=0)
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert [len(b[1]) for b in loader] == [8, 8, 4]
    # and a fit routed through the DataLoader path still works
    clf = _clf(iterator_train__num_workers=0, max_epochs=1).fit(*_data())
    assert clf.history_[-1, "train_batch_count"] == 4


def test_sample_weight_still_weights_the_loss():
    X, y = _data()
    w = np.where(y == 0, 0.0, 1.0)
    net = _clf(max_epochs=1).fit(X, y, sample_weight=w).net_
    batch = ImageTensorDataset(X[:8], y[:8], w[:8]).__getitems__(list(range(8)))
    logits = net.infer(batch[0])
    weighted = net.get_loss(logits, batch[1], X=batch[0])
    plain = torch.nn.functional.cross_entropy(logits, batch[1], reduction="none")
    torch.testing.assert_close(weighted, (plain * batch[0]["sample_weight"]).mean())


# -- training loop ----------------------------------------------------------------
def test_history_records_float_losses_and_batch_counts():
    clf = _clf(validation_fraction=0.25).fit(*_data())
    last = clf.history_[-1]
    assert last["train_batch_count"] == 3  # 45 images / 16
    assert last["valid_batch_count"] == 1
    losses = clf.history_[-1, "batches", :, "train_loss"]
    assert all(isinstance(v, float) for v in losses)
    assert isinstance(last["train_loss"], float)


class _DeferredNet(ImageNet):
    """The accelerator path (losses kept as tensors until the epoch ends) on the CPU."""

    def _defer_loss_sync(self):
        return True


class _SeeBatchLoss(Callback):
    def initialize(self):
        self.seen = []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        key = "train_loss" if training else "valid_loss"
        self.seen.append(net.history[-1, "batches", -1, key])


def test_deferred_loss_sync_writes_floats_at_epoch_end(monkeypatch):
    monkeypatch.setattr(_build, "ImageNet", _DeferredNet)
    spy = _SeeBatchLoss()
    clf = _clf(validation_fraction=0.25, callbacks=[("spy", spy)]).fit(*_data())
    spy = dict(clf.net_.callbacks_)["spy"]
    assert spy.seen and all(isinstance(v, torch.Tensor) for v in spy.seen)
    for key in ("train_loss", "valid_loss"):
        values = clf.history_[-1, "batches", :, key]
        assert all(isinstance(v, float) for v in values), key
        assert np.isfinite(clf.history_[-1, key])
    reference = _clf(validation_fraction=0.25).fit(*_data())
    np.testing.assert_allclose(clf.history_[:, "train_loss"],
                               reference.history_[:, "train_loss"], rtol=1e-6)


class _BatchEvents(Callback):
    """Records (event, training, rows in the epoch, row keys) of every batch event."""

    def initialize(self):
        self.events = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        rows = net.history[-1]["batches"]
        self.events.append(("begin", training, len(rows), sorted(rows[-1])))

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        rows = net.history[-1]["batches"]
        assert loss is not None and len(batch[1]) == rows[-1][
            "train_batch_size" if training else "valid_batch_size"]
        self.events.append(("end", training, len(rows), sorted(rows[-1])))


class _EndOnly(Callback):
    def on_batch_end(self, net, **kwargs):
        pass


def test_batch_events_reach_the_callbacks_that_listen_with_their_rows():
    clf = _clf(validation_fraction=0.25, max_epochs=1, lr_schedule=None,
               callbacks=[("events", _BatchEvents()), ("end", _EndOnly())]).fit(*_data())
    begin, end = clf.net_._batch_listeners()
    names = {id(cb): name for name, cb in clf.net_.callbacks_}
    assert [names[id(cb)] for cb in begin] == ["events"]
    assert {"events", "end"} <= {names[id(cb)] for cb in end}
    assert "epoch_timer" not in {names[id(cb)] for cb in begin + end}
    # 45 training images in 3 batches of 16, then 15 validation images in 1
    train = ["train_batch_size", "train_loss"]
    assert dict(clf.net_.callbacks_)["events"].events == [
        ("begin", True, 1, []), ("end", True, 1, train),
        ("begin", True, 2, []), ("end", True, 2, train),
        ("begin", True, 3, []), ("end", True, 3, train),
        ("begin", False, 4, []), ("end", False, 4, ["valid_batch_size", "valid_loss"]),
    ]


class _CountingNet(ImageNet):
    """A subclass with its own batch method: every event goes through notify."""

    def on_batch_end(self, net, **kwargs):
        self.ends = getattr(self, "ends", 0) + 1


def test_a_net_that_overrides_batch_methods_gets_every_event(monkeypatch):
    monkeypatch.setattr(_build, "ImageNet", _CountingNet)
    clf = _clf(validation_fraction=0.25, max_epochs=2,
               callbacks=[("events", _BatchEvents())]).fit(*_data())
    assert clf.net_._batch_listeners() is None
    assert clf.net_.ends == 2 * (3 + 1)
    assert len(dict(clf.net_.callbacks_)["events"].events) == 2 * 2 * (3 + 1)
    assert clf.history_[-1, "batches", :, "train_batch_size"][:3] == [16, 16, 13]


def test_print_log_only_when_verbose(capsys):
    quiet = _clf(max_epochs=1).fit(*_data())
    assert "print_log" not in dict(quiet.net_.callbacks_)
    assert capsys.readouterr().out == ""
    loud = _clf(max_epochs=1, verbose=1).fit(*_data())
    assert "print_log" in dict(loud.net_.callbacks_)
    assert "train_loss" in capsys.readouterr().out


# -- threads ---------------------------------------------------------------------
class _RecordThreads(Callback):
    def initialize(self):
        self.threads = []
        return self

    def on_batch_begin(self, net, **kwargs):
        self.threads.append(torch.get_num_threads())


def test_n_threads_is_used_in_fit_and_restored():
    before = torch.get_num_threads()
    clf = _clf(n_threads=1, callbacks=[("threads", _RecordThreads())]).fit(*_data())
    assert set(dict(clf.net_.callbacks_)["threads"].threads) == {1}
    assert torch.get_num_threads() == before


def test_n_threads_is_used_in_predict(monkeypatch):
    clf = _clf(n_threads=1).fit(*_data())
    seen = []
    original = clf.net_.predict_logits

    def spy(batch, views=None, precision=None):
        seen.append(torch.get_num_threads())
        return original(batch, views, precision)

    monkeypatch.setattr(clf.net_, "predict_logits", spy)
    before = torch.get_num_threads()
    clf.predict(_data()[0])
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_n_threads_none_keeps_torch_setting():
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_n_threads_is_validated():
    with pytest.raises(ValueError, match="n_threads"):
        _clf(n_threads=0).fit(*_data())


# -- predict ---------------------------------------------------------------------
def test_predict_batches_of_predict_batch_size_on_cpu(monkeypatch):
    X, y = _data(300)
    clf = _clf(batch_size=256, max_epochs=1).fit(X, y)
    sizes = []
    original = clf.net_.predict_logits

    def spy(batch, views=None, precision=None):
        sizes.append(len(batch))
        assert torch.is_inference_mode_enabled()
        return original(batch, views, precision)

    monkeypatch.setattr(clf.net_, "predict_logits", spy)
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3)
    assert sizes == [128, 128, 44]
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def test_bf16_predictions_match_fp32():
    X, y = _data()
    clf = _clf(max_epochs=3).fit(X, y)
    fp32 = clf.predict_proba(X)
    bf16 = clf.set_params(precision="bf16").predict_proba(X)  # read when predicting
    assert not np.array_equal(bf16, fp32)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    assert (bf16.argmax(1) == fp32.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "mps") == "fp32"


def test_auto_trains_depthwise_convolutions_in_fp32_on_a_cpu(monkeypatch):
    from torchvision.models import mobilenet_v3_small

    from skimgcls.networks import CompactCNN

    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    depthwise = mobilenet_v3_small(num_classes=3)
    dense = CompactCNN(3, 3, (32, 32))
    assert _device.trains_depthwise(depthwise) and not _device.trains_depthwise(dense)
    assert _device.training_precision("auto", "cpu", depthwise) == "fp32"
    assert _device.training_precision("auto", "cpu", dense) == "bf16"
    assert _device.training_precision("bf16", "cpu", depthwise) == "bf16"  # asked for
    depthwise.features.requires_grad_(False)  # a frozen body trains no convolution
    assert not _device.trains_depthwise(depthwise)
    assert _device.training_precision("auto", "cpu", depthwise) == "bf16"
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: False)
    assert _device.training_precision("auto", "cpu", dense) == "fp32"


def test_auto_predicts_a_depthwise_network_in_bf16_on_a_cpu(monkeypatch):
    from torchvision.models import mobilenet_v3_small

    from skimgcls.networks import CompactCNN

    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    depthwise, dense = mobilenet_v3_small(num_classes=3), CompactCNN(3, 3, (32, 32))
    # The exception of training_precision is its backward pass's only.
    assert _device.predict_precision("auto", "fp32", "cpu", depthwise) == "bf16"
    # Otherwise what training used: an accelerator's fp32, a model moved here...
    assert _device.predict_precision("auto", "fp32", "cpu", dense) == "fp32"
    assert _device.predict_precision("auto", "bf16", "cpu", dense) == "bf16"
    # ... and an explicit precision as it is.
    assert _device.predict_precision("fp32", "fp32", "cpu", depthwise) == "fp32"
    assert _device.predict_precision("bf16", "fp32", "cpu", dense) == "bf16"
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: False)
    assert _device.predict_precision("auto", "fp32", "cpu", depthwise) == "fp32"


@pytest.mark.parametrize("freeze, expected", [("none", "fp32"), ("backbone", "bf16")])
def test_fit_resolves_precision_with_the_network(monkeypatch, freeze, expected):
    monkeypatch.setattr(_device, "cpu_has_native_bf16", lambda: True)
    rng = np.random.RandomState(0)
    X, y = rng.randint(0, 256, (12, 32, 32, 3)).astype(np.uint8), np.arange(12) % 3
    clf = CNNClassifier(module="mobilenet_v3_small", pretrained=False, freeze=freeze,
                        module__input_size=32, max_epochs=1, batch_size=6,
                        validation_fraction=None, random_state=0).fit(X, y)
    assert clf.precision_ == clf.net_.precision == expected
    # Predictions run in bf16 either way: the depthwise exception is the
    # backward pass's (bench/bench_precision.py: 2x faster, the same classes).
    dtypes = []
    conv = next(m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(
        lambda module, args, out: dtypes.append(out.dtype))
    assert clf.predict(X).shape == (12,)
    assert set(dtypes) == {torch.bfloat16}
    dtypes.clear()
    clf.set_params(precision="fp32").predict(X)
    assert set(dtypes) == {torch.float32}
    hook.remove()


# -- compile ---------------------------------------------------------------------
def test_compile_is_passed_to_skorch():
    clf = _clf(compile=False).fit(*_data())
    assert clf.net_.compile is False
    assert "compile__dynamic" in _clf(compile__dynamic=True).get_params()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SKIMGCLS_TEST_COMPILE"),
    reason="torch.compile takes minutes on a small CPU; set SKIMGCLS_TEST_COMPILE=1",
)
def test_compile_fits_and_predicts():
    pytest.importorskip("torch._inductor")
    X, y = _data()
    clf = _clf(compile=True, compile__dynamic=False, max_epochs=1).fit(X, y)
    assert isinstance(clf.net_.module_, torch._dynamo.eval_frame.OptimizedModule)
    assert clf.predict(X).shape == (len(X),)


# -- cheap dropout, free flatten, fused optimizer --------------------------------
from torch import nn  # noqa: E402

from skimgcls.networks import FastDropout, FlattenChannelsLast, SimpleCNN  # noqa: E402


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_fast_dropout_zeroes_a_fraction_p_and_scales_the_rest(p):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = FastDropout(p).train()(x)
    assert abs((y == 0).double().mean().item() - p) < 0.005
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)))


def test_fast_dropout_masks_are_independent_and_seeded():
    layer = FastDropout(0.5).train()
    x = torch.ones(4, 8, 5, 5)
    torch.manual_seed(1)
    a, b = layer(x), layer(x)
    torch.manual_seed(1)
    assert torch.equal(layer(x), a)
    assert not torch.equal(a, b)
    # the four 16-bit draws of one 64-bit number are not tied to each other
    same = ((a == 0) == (b == 0)).double().mean().item()
    assert 0.4 < same < 0.6
    flat = (a.flatten() == 0).double()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.05


def test_fast_dropout_keeps_channels_last_and_backpropagates_its_mask():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4, 5).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = FastDropout(0.25).train()(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(y.detach()[kept], x.detach()[kept] / 0.75)
    assert torch.allclose(x.grad, kept.float() / 0.75)


def test_fast_dropout_edge_cases():
    x = torch.randn(6, 7)
    layer = FastDropout(0.5)
    assert isinstance(layer, nn.Dropout)
    assert layer.eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))
    strided = torch.randn(8, 10)[:, ::2]  # not dense: copied first
    out = FastDropout(0.5).train()(strided)
    assert out.shape == strided.shape
    assert torch.equal(out[out != 0], 2 * strided[out != 0])
    # other devices use torch's own dropout
    meta = FastDropout(0.5).train()(torch.empty(4, 4, device="meta"))
    assert meta.device.type == "meta"


def test_flatten_channels_last_is_a_free_view_in_hwc_order():
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = FlattenChannelsLast()(x)
    assert torch.equal(y, x.detach().permute(0, 2, 3, 1).reshape(2, -1))
    assert y.data_ptr() == x.data_ptr()  # no copy
    y.backward(torch.ones_like(y))
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    # channel-first input gives the same numbers
    assert torch.equal(FlattenChannelsLast()(x.detach().contiguous()), y.detach())


def test_simple_cnn_uses_the_cheap_layers():
    kinds = [type(m) for m in SimpleCNN(1, 10, (28, 28)).modules()]
    assert kinds.count(FastDropout) == 2 and FlattenChannelsLast in kinds
    assert nn.Flatten not in kinds


@pytest.mark.parametrize("params, fused", [
    ({}, True),
    ({"optimizer": "sgd"}, True),
    ({"optimizer__foreach": True}, None),  # the user's choice of implementation
    ({"optimizer": "rmsprop"}, None),  # no fused kernel
])
def test_torch_optimizers_run_fused_unless_told_otherwise(params, fused):
    X, y = _data(32)
    clf = _clf(max_epochs=1, **params).fit(X, y)
    groups = clf.net_.optimizer_.param_groups
    assert all(g.get("fused") is fused for g in groups)


def test_fused_options_only_where_torch_has_the_kernel():
    opts = _build.fused_optimizer_options
    assert opts(torch.optim.Adam, {}, "cuda") == {"optimizer__fused": True}
    assert opts(torch.optim.Adagrad, {}, "cuda") == {}  # fused Adagrad is CPU only
    assert opts(torch.optim.Adam, {}, "mps") == {}
    assert opts(torch.optim.Adam, {"optimizer__capturable": True}, "cpu") == {}

    class MyAdam(torch.optim.Adam):
        pass

    assert opts(MyAdam, {}, "cpu") == {}


@pytest.mark.parametrize("dropout, expected", [
    ((0.25, 0.5), [0.25, 0.5]), (0.1, [0.1, 0.1]), (0, []), ((0.3, 0), [0.3])])
def test_simple_cnn_dropout_is_optional(dropout, expected):
    net = SimpleCNN(1, 10, (12, 12), dropout=dropout)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == expected
    assert net(torch.zeros(2, 1, 12, 12)).shape == (2, 10)


@pytest.mark.parametrize("dropout", [1.0, -0.1, "0.5", (0.1,), (0.1, 0.2, 0.3), None])
def test_simple_cnn_refuses_bad_dropout(dropout):
    with pytest.raises(ValueError, match="dropout"):
        SimpleCNN(1, 10, (12, 12), dropout=dropout)
