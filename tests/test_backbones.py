"""Torchvision backbones in CNNClassifier: building, weights, freezing, lr groups.

No test needs the network: weights are saved to tmp files and loaded from them.
Images are tiny (8x8 digits) and resized to a small ``input_size`` inside the
network, so each family trains a step in about a second.
"""

import copy
import pickle
import urllib.error

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback
from torch import nn

from skimgcls import CNNClassifier
from skimgcls.backbones import (
    BackboneNet,
    InputAdapter,
    PretrainedWeightsError,
    backbone_input_spec,
    build_backbone,
    default_weights,
    expected_weights_path,
    list_backbones,
)
from skimgcls.networks import build_network

FAST = dict(max_epochs=1, batch_size=8, validation_fraction=None, lr_schedule=None,
            precision="fp32", device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8).astype(np.float32)
    keep = np.flatnonzero(y < 3)[:24]
    return X[keep], y[keep]


def body_state(module):
    return {k: v.clone() for k, v in module.body.state_dict().items()}


def same(a, b, keys=None):
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


# -- every family -------------------------------------------------------------
#: (name, freeze). VGG-11 has 133M parameters, 120M of them in its two
#: 4096-unit dense layers: its step trains the new head on the frozen body, or
#: the backward pass and AdamW state of those layers take 10 s on 2 cores.
FAMILIES = [
    pytest.param("resnet18", "none", id="resnet18"),
    pytest.param("mobilenet_v3_small", "none", id="mobilenet_v3_small"),
    pytest.param("efficientnet_b0", "none", id="efficientnet_b0"),
    pytest.param("vgg11", "backbone", id="vgg11", marks=pytest.mark.slow),
    pytest.param("convnext_tiny", "none", id="convnext_tiny", marks=pytest.mark.slow),
    pytest.param("vit_b_16", "none", id="vit_b_16", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, freeze", FAMILIES)
def test_family_builds_trains_and_predicts(digits, name, freeze):
    X, y = digits
    X, y = X[:12], y[:12]
    size = 32
    clf = CNNClassifier(name, module__input_size=size, freeze=freeze,
                        **{**FAST, "batch_size": 6})
    clf.fit(X, y)
    assert isinstance(clf.module_, BackboneNet)
    assert clf.module_.adapter.size == (size, size)
    assert clf.history_[-1, "train_batch_count"] == 2
    assert np.isfinite(clf.history_[-1, "train_loss"])
    proba = clf.predict_proba(X[:3])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert set(clf.predict(X[:3])) <= set(clf.classes_)


@pytest.mark.slow
def test_every_torchvision_classifier_gets_a_head_and_blocks():
    """All list_models() names build (on the meta device: no memory, no time)."""
    names = list_backbones(source="torchvision")
    assert {"resnet18", "vgg11", "efficientnet_b0", "mobilenet_v3_small",
            "convnext_tiny", "vit_b_16"} <= set(names)
    for name in names:
        if name.startswith("regnet") and name not in ("regnet_x_400mf",
                                                      "regnet_y_400mf"):
            continue  # RegNet computes its widths with tensors: no meta build
        device = "cpu" if name.startswith("regnet") else "meta"
        with torch.device(device):
            net = BackboneNet(name, n_classes=7, in_channels=1)
        assert isinstance(net.body.get_submodule(net.head_path), nn.Identity), name
        assert net.head[-1].out_features == 7
        assert net.head[-1].in_features == net.embedding_dim
        in_blocks = {id(p) for group in net.blocks for m in group
                     for p in (m.parameters() if isinstance(m, nn.Module) else [m])}
        assert in_blocks == {id(p) for p in net.body.parameters()}, name
        assert len(net.blocks) >= 4, name


def test_build_network_resolves_backbone_names():
    net = build_network("squeezenet1_1", in_channels=3, n_classes=4, image_size=(8, 8),
                        input_size=32)
    assert isinstance(net, BackboneNet) and net.head_path == "classifier.1"
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"Did you mean \['resnet18'"):
        build_network("resnet-18", in_channels=3, n_classes=2, image_size=(8, 8))


# -- input adapter -----------------------------------------------------------
def test_input_size_auto_reads_the_weights():
    assert BackboneNet("resnet18", 2).adapter.size == (224, 224)
    assert backbone_input_spec("efficientnet_b1").size == (240, 240)
    assert backbone_input_spec("efficientnet_v2_l").mean == (0.5, 0.5, 0.5)
    assert BackboneNet("resnet18", 2, image_size=(20, 30),
                       input_size=None).adapter.size == (20, 30)


def test_adapter_repeats_gray_resizes_and_normalizes():
    adapter = InputAdapter((16, 12), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    gray = torch.rand(2, 1, 8, 8)
    out = adapter(gray)
    assert out.shape == (2, 3, 16, 12)
    torch.testing.assert_close(out, adapter(gray.expand(-1, 3, -1, -1)))
    rgba = torch.rand(2, 4, 16, 12)
    expected = (rgba[:, :3] - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(adapter(rgba), expected)
    assert "mean" not in BackboneNet("resnet18", 2, input_size=32).state_dict()


def test_vit_input_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="multiple of 16"):
        BackboneNet("vit_b_16", 2, input_size=40)


def test_head_options():
    net = BackboneNet("mobilenet_v3_small", 5, input_size=32, head_dropout=0.3,
                      head_hidden=16)
    kinds = [type(m) for m in net.head]
    assert kinds == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert net.head[1].in_features == net.embedding_dim == 1024
    assert net.head[-1].out_features == 5


def test_levels_add_the_pooled_outputs_of_the_blocks_before_the_last():
    torch.manual_seed(0)
    net = BackboneNet("resnet18", 3, input_size=32, levels=3).eval()
    one = BackboneNet("resnet18", 3, input_size=32).eval()
    # Levels add no weights: the state dicts have the same keys.
    one.body.load_state_dict(net.body.state_dict())
    x = torch.rand(2, 1, 20, 20)
    with torch.no_grad():
        body = one.body
        h = body.maxpool(body.relu(body.bn1(body.conv1(one.adapter(x)))))
        layer2 = body.layer2(body.layer1(h))
        layer3 = body.layer3(layer2)
        expected = torch.cat([layer2.mean((2, 3)), layer3.mean((2, 3)), one.embed(x)], 1)
        torch.testing.assert_close(net.embed(x), expected)
        assert net(x).shape == (2, 3)
        # Copies tap their own blocks.
        for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
            torch.testing.assert_close(twin.embed(x), expected)
        assert net.body(net.adapter(x)).shape == (2, 512)  # the body alone: unchanged
    assert net.embedding_dim == 128 + 256 + 512 == net.head[-1].in_features
    assert net.levels == 3 and one.levels == 1
    # 'auto': what the source measured for frozen features (1 unless it did).
    assert BackboneNet("resnet18", 3, input_size=32, levels="auto").levels == 1
    for bad in (0, 1.5, "all"):
        with pytest.raises(ValueError, match="levels must be an int >= 1 or 'auto'"):
            BackboneNet("resnet18", 3, input_size=32, levels=bad)
    with pytest.raises(ValueError, match="levels=9 but 'resnet18' has 5 feature levels"):
        BackboneNet("resnet18", 3, input_size=32, levels=9)


# -- weights ------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A torchvision-format resnet18 state dict (with its 1000-class fc)."""
    torch.manual_seed(1)
    import torchvision

    model = torchvision.models.resnet18()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_pretrained_from_pth_safetensors_and_state_dict(resnet_file, tmp_path):
    from safetensors.torch import save_file

    path, state = resnet_file
    keys = [k for k in state if not k.startswith("fc.")]
    for source in (path, str(path), state):
        net = build_backbone("resnet18", n_classes=3, input_size=32, pretrained=source)
        assert same(state, net.body.state_dict(), keys)
    st = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    net = build_backbone("resnet18", n_classes=3, input_size=32, pretrained=st)
    assert same(state, net.body.state_dict(), keys)


def test_pretrained_backbone_net_state_keeps_matching_head(tmp_path):
    torch.manual_seed(0)
    src = BackboneNet("mobilenet_v3_small", 3, input_size=32)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "ckpt.pt")
    same_head = build_backbone("mobilenet_v3_small", n_classes=3, input_size=32,
                               pretrained=tmp_path / "ckpt.pt")
    assert same(src.state_dict(), same_head.state_dict())
    other_head = build_backbone("mobilenet_v3_small", n_classes=4, input_size=32,
                                pretrained=src.state_dict())
    assert same(src.body.state_dict(), other_head.body.state_dict())
    assert other_head.head[-1].out_features == 4


@pytest.mark.slow
def test_pretrained_vit_interpolates_position_embeddings():
    torch.manual_seed(0)
    small = BackboneNet("vit_b_32", 2, input_size=32)
    big = build_backbone("vit_b_32", n_classes=2, input_size=64,
                         pretrained=small.state_dict())
    assert big.body.encoder.pos_embedding.shape == (1, 5, 768)
    torch.testing.assert_close(big.body.conv_proj.weight, small.body.conv_proj.weight)


def test_pretrained_that_does_not_fit_is_a_clear_error(resnet_file):
    _, state = resnet_file
    with pytest.raises(ValueError, match="do not fit 'resnet34'.*missing keys"):
        build_backbone("resnet34", n_classes=2, input_size=32, pretrained=state)
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_backbone("resnet18", n_classes=2, pretrained="missing.pth")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch cache and a download that fails like a machine offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def test_pretrained_true_offline_says_where_and_how(offline, digits):
    weights = default_weights("resnet18")
    path = expected_weights_path(weights)
    assert path.startswith(torch.hub.get_dir())
    clf = CNNClassifier("resnet18", pretrained=True, module__input_size=32, **FAST)
    with pytest.raises(PretrainedWeightsError) as info:
        clf.fit(*digits)
    message = str(info.value)
    assert path in message and weights.url in message
    assert "pretrained='/path/to/resnet18-" in message and "TORCH_HOME" in message
    assert isinstance(info.value, OSError) and offline == [weights.url]


def test_pretrained_true_reads_torch_cache_offline(offline, resnet_file):
    path, state = resnet_file
    cached = expected_weights_path(default_weights("resnet18"))
    import os
    import shutil

    os.makedirs(os.path.dirname(cached))
    shutil.copy(path, cached)
    net = build_backbone("resnet18", n_classes=2, input_size=32, pretrained=True)
    assert same(state, net.body.state_dict(), [k for k in state if "fc." not in k])
    assert offline == []


def test_pretrained_needs_a_backbone(digits):
    clf = CNNClassifier("compact_cnn", pretrained={"x": torch.zeros(1)}, **FAST)
    with pytest.raises(ValueError, match="pretrained applies to backbones"):
        clf.fit(*digits)
    with pytest.raises(ValueError, match="backbone_lr_mult applies"):
        CNNClassifier("compact_cnn", backbone_lr_mult=0.1, **FAST).fit(*digits)


# -- fine-tuning as parameters -----------------------------------------------
class Snapshot(Callback):
    """Keeps a copy of the network's state dict as training begins."""

    def on_train_begin(self, net, **kwargs):
        self.state = copy.deepcopy(net.module_.state_dict())


def fit_with_snapshot(clf, X, y):
    """Fit ``clf``; return the state dict it started from (after loading)."""
    clf.set_params(callbacks=[("snapshot", Snapshot())]).fit(X, y)
    return dict(clf.net_.callbacks_)["snapshot"].state


def split(state):
    body = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
    head = {k[5:]: v for k, v in state.items() if k.startswith("head.")}
    return body, head


def test_freeze_backbone_keeps_body_and_trains_head(digits, resnet_file):
    path, state = resnet_file
    clf = CNNClassifier("resnet18", pretrained=path, freeze="backbone",
                        module__input_size=32, **{**FAST, "max_epochs": 2})
    start_body, start_head = split(fit_with_snapshot(clf, *digits))
    body, head = split(clf.module_.state_dict())
    # Weights *and* BatchNorm statistics: frozen blocks stay in eval mode.
    assert same(state, body, [k for k in state if not k.startswith("fc.")])
    assert same(start_body, body)
    assert not same(start_head, head)
    assert clf.module_.frozen_blocks == len(clf.module_.blocks) == 5


def test_freeze_leading_blocks(digits):
    clf = CNNClassifier("resnet18", freeze=2, module__input_size=32, **FAST)
    before, _ = split(fit_with_snapshot(clf, *digits))
    after, _ = split(clf.module_.state_dict())
    frozen = [k for k in before if k.startswith(("conv1.", "bn1.", "layer1."))]
    trained = [k for k in before if k.startswith("layer2.")]
    assert frozen and same(before, after, frozen)
    assert not same(before, after, trained)
    with pytest.raises(ValueError, match="has 5 blocks"):
        CNNClassifier("resnet18", freeze=6, module__input_size=32, **FAST).fit(*digits)


def test_frozen_blocks_stay_in_eval_mode():
    net = BackboneNet("resnet18", 2, input_size=32).freeze(2)
    net.train()
    assert not net.body.bn1.training and not net.body.layer1.training
    assert net.body.layer2.training and net.head.training
    assert not any(p.requires_grad for p in net.body.layer1.parameters())
    net.unfreeze()
    assert net.body.bn1.training and all(p.requires_grad for p in net.parameters())


def test_freeze_bn_keeps_batchnorm_and_trains_the_rest(digits, resnet_file):
    path, state = resnet_file
    clf = CNNClassifier("resnet18", pretrained=path, freeze="bn", module__input_size=32,
                        **{**FAST, "max_epochs": 2})
    start, _ = split(fit_with_snapshot(clf, *digits))
    body, _ = split(clf.module_.state_dict())
    norms = [k for k in state if k.startswith(("bn1.", "layer1.0.bn1.", "layer4.1.bn2."))]
    assert norms and same(state, body, norms)  # weights, biases and statistics
    assert not same(start, body, ["conv1.weight", "layer4.1.conv2.weight"])
    assert clf.module_.frozen_blocks == 0
    net = clf.module_.train()
    assert not net.body.bn1.training and net.body.layer1.training
    assert not net.body.bn1.weight.requires_grad and net.body.conv1.weight.requires_grad
    with pytest.raises(ValueError, match="'none', 'backbone', 'bn'"):
        BackboneNet("resnet18", 2, input_size=32).freeze("norm")


def test_head_init_probe_starts_from_the_logistic_regression(digits, resnet_file):
    from skimgcls._probe import embed, fit_linear_head

    path, _ = resnet_file
    X, y = digits
    # A learning rate of ~0: the head stays where the probe put it.
    clf = CNNClassifier("resnet18", pretrained=path, freeze="bn", head_init="probe",
                        module__input_size=32, **{**FAST, "lr": 1e-12})
    start = fit_with_snapshot(clf, X, y)
    features = embed(clf.module_, X[..., None], device="cpu", precision="fp32")
    probe = fit_linear_head(features, y, np.ones(len(y)))
    # The same logits (weights of near-constant features may differ more: the
    # probe divides by their standard deviation).
    logits = features @ start["head.0.weight"].numpy().T + start["head.0.bias"].numpy()
    expected = features @ probe.coef.T + probe.intercept
    assert np.abs(logits - expected).max() < 1e-3 * np.abs(expected).max()
    assert clf.score(X, y) == np.mean(probe.predict(features) == y) > 0.9
    random = CNNClassifier("resnet18", pretrained=path, freeze="bn",
                           module__input_size=32, **{**FAST, "lr": 1e-12}).fit(X, y)
    assert random.score(X, y) < 0.9


def test_head_init_probe_is_not_refitted_by_a_warm_start(digits, resnet_file):
    path, _ = resnet_file
    X, y = digits
    clf = CNNClassifier("resnet18", pretrained=path, freeze="bn", head_init="probe",
                        warm_start=True, module__input_size=32, **{**FAST, "lr": 1e-12})
    clf.fit(X, y)
    head = clf.module_.head[0].weight.detach().clone()
    clf.fit(X[::2], y[::2])  # continues: the head is kept, not re-probed on these
    assert torch.allclose(clf.module_.head[0].weight, head, atol=1e-6)
    assert "probe_head" not in dict(clf.net_.callbacks)


def test_wise_alpha_ends_halfway_between_start_and_fine_tuned_weights(digits, resnet_file):
    path, _ = resnet_file
    X, y = digits
    params = dict(pretrained=path, freeze="bn", head_init="probe", module__input_size=32,
                  **{**FAST, "max_epochs": 2, "lr": 1e-3})
    tuned = CNNClassifier("resnet18", **params).fit(X, y)
    wise = CNNClassifier("resnet18", wise_alpha=0.5, **params)
    start = fit_with_snapshot(wise, X, y)
    end, mixed = tuned.module_.state_dict(), wise.module_.state_dict()
    moved = [k for k in end if end[k].is_floating_point()
             and not torch.equal(start[k], end[k])]
    assert "head.0.weight" in moved and "body.conv1.weight" in moved
    for k in moved:
        torch.testing.assert_close(mixed[k], (start[k] + end[k]) / 2)
    assert wise.net_.history[-1]["weights_interpolated"] == 0.5
    assert "weights_interpolated" not in tuned.net_.history[-1]
    with pytest.raises(ValueError, match="wise_alpha"):
        CNNClassifier("resnet18", wise_alpha=0.0, **params).fit(X, y)


def test_frozen_ensemble_averages_the_network_and_a_frozen_probe(digits, resnet_file):
    from skimgcls._probe import embed, fit_linear_head

    path, weights = resnet_file
    X, y = digits
    # WiSE interpolates the network's weights, never the partner's.
    params = dict(pretrained=path, freeze="bn", head_init="probe", module__input_size=32,
                  wise_alpha=0.3, **{**FAST, "max_epochs": 2, "lr": 1e-3})
    alone = CNNClassifier("resnet18", **params).fit(X, y)
    pair = CNNClassifier("resnet18", frozen_ensemble=True, **params).fit(X, y)
    net, partner = pair.module_, pair.module_.partner
    # The network trains as it trains alone (the partner draws no random number).
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in alone.module_.state_dict().items())
    assert pair.history_[:, "train_loss"] == alone.history_[:, "train_loss"]
    # The partner: the pretrained body, untouched, at the weights' native size...
    assert partner.adapter.size == (224, 224) and net.adapter.size == (32, 32)
    assert all(torch.equal(partner.body.state_dict()[k], weights[k])
               for k in partner.body.state_dict() if k in weights)
    assert not any(p.requires_grad for p in partner.parameters())
    assert not partner.training
    # ... with the probe of its own features as its head.
    features = embed(partner, X[..., None], device="cpu", precision="fp32")
    probe = fit_linear_head(features, y, np.ones(len(y)))
    np.testing.assert_allclose(partner.head[0].weight.detach().numpy(), probe.coef,
                               atol=1e-4 * np.abs(probe.coef).max())
    # Predictions: the mean of the two networks' probabilities.
    with torch.no_grad():
        images = torch.from_numpy(X[:, None])
        expected = (torch.softmax(net.head(net.embed(images)), 1)
                    + torch.softmax(partner(images), 1)) / 2
    np.testing.assert_allclose(pair.predict_proba(X), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(alone.predict_proba(X),
                               torch.softmax(net.head(net.embed(images)), 1)
                               .detach().numpy(), atol=1e-5)
    # It survives pickling and a network that unfreezes.
    again = pickle.loads(pickle.dumps(pair))
    np.testing.assert_allclose(again.predict_proba(X), pair.predict_proba(X), atol=1e-6)
    net.unfreeze()
    assert not any(p.requires_grad for p in partner.parameters())
    assert all(p.requires_grad for p in net.body.parameters())


def test_frozen_ensemble_errors(digits, resnet_file):
    X, y = digits
    with pytest.raises(ValueError, match="frozen_ensemble applies to backbones"):
        CNNClassifier("compact_cnn", frozen_ensemble=True, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="got pretrained=False"):
        CNNClassifier("resnet18", frozen_ensemble=True, pretrained=False,
                      module__input_size=32, **FAST).fit(X, y)
    clf = CNNClassifier("resnet18", frozen_ensemble=True, pretrained=resnet_file[0],
                        module__input_size=32, **FAST)
    with pytest.raises(ValueError, match="frozen_ensemble.*does not apply to partial_fit"):
        clf.partial_fit(X, y, classes=np.unique(y))
    Y = np.stack([y == 0, y == 1], axis=1).astype(int)
    with pytest.raises(ValueError, match="does not apply to a multi-label y"):
        clf.fit(X, Y)


def test_head_init_probe_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="head_init='probe'.*backbone name"):
        CNNClassifier("compact_cnn", head_init="probe", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="no module__head_hidden"):
        CNNClassifier("resnet18", head_init="probe", module__input_size=32,
                      module__head_hidden=8, **FAST).fit(X, y)
    clf = CNNClassifier("resnet18", head_init="probe", module__input_size=32, **FAST)
    with pytest.raises(ValueError, match="does not apply to partial_fit"):
        clf.partial_fit(X, y, classes=np.unique(y))
    Y = np.stack([y == 0, y == 1], axis=1).astype(int)
    with pytest.raises(ValueError, match="does not apply to a multi-label y"):
        CNNClassifier("resnet18", head_init="probe", module__input_size=32,
                      **FAST).fit(X, Y)


def test_unfreeze_at_epoch(digits):
    params = dict(freeze="backbone", unfreeze_at_epoch=2, module__input_size=32, **FAST)
    one = CNNClassifier("mobilenet_v3_small", **params)
    start, _ = split(fit_with_snapshot(one, *digits))
    assert same(start, split(one.module_.state_dict())[0])
    two = CNNClassifier("mobilenet_v3_small", **{**params, "max_epochs": 2})
    start, _ = split(fit_with_snapshot(two, *digits))
    assert not same(start, split(two.module_.state_dict())[0])
    assert two.history_[1, "unfrozen"] is True and "unfrozen" not in two.history_[0]
    assert all(p.requires_grad for p in two.module_.parameters())


@pytest.mark.parametrize("lr_schedule", [None, "onecycle"])
def test_backbone_lr_mult_reaches_the_optimizer(digits, lr_schedule):
    clf = CNNClassifier("mobilenet_v3_small", backbone_lr_mult=0.1, lr=0.01,
                        module__input_size=32, **{**FAST, "lr_schedule": lr_schedule})
    clf.fit(*digits)
    body, head = clf.net_.optimizer_.param_groups
    n_body = len(list(clf.module_.body.parameters()))
    assert len(body["params"]) == n_body and body["lr_mult"] == 0.1
    assert len(head["params"]) == len(list(clf.module_.head.parameters()))
    if lr_schedule is None:
        assert body["lr"] == pytest.approx(0.001) and head["lr"] == pytest.approx(0.01)
    else:  # the one-cycle peak is scaled per group
        assert body["max_lr"] == pytest.approx(0.001)
        assert head["max_lr"] == pytest.approx(0.01)


@pytest.mark.slow
def test_search_over_backbones_end_to_end(digits):
    X, y = digits
    pipe = make_pipeline(CNNClassifier("resnet18", module__input_size=32,
                                       **{**FAST, "batch_size": 12}))
    search = GridSearchCV(
        pipe, {"cnnclassifier__module": ["resnet18", "mobilenet_v3_small",
                                         "efficientnet_b0"]}, cv=2, error_score="raise")
    search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert search.best_estimator_.predict(X[:4]).shape == (4,)
    assert search.best_estimator_[-1].module_.name == search.best_params_[
        "cnnclassifier__module"]


def test_rgb_uint8_bf16_pickle_and_numpy_ints(digits):
    import pickle

    X, y = digits
    rgb = np.round(np.repeat(X[..., None], 3, axis=3) * 255).astype(np.uint8)
    clf = CNNClassifier("mobilenet_v3_small", module__input_size=np.int64(32),
                        freeze=np.int64(3), **{**FAST, "precision": "bf16"})
    clf.fit(rgb, y)
    assert clf.module_.frozen_blocks == 3 and clf.precision_ == "bf16"
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(rgb), clf.predict_proba(rgb))
    assert not again.module_.train().body.features[0].training  # still frozen
