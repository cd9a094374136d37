"""timm backbones ('timm/<model>'): names, pretrained configs, weights, freezing.

timm's tiny ``test_*`` architectures (0.1-1 M parameters) keep every fit well
under a second. No test needs the network: random weights are saved to tmp
files, and the Hugging Face cache is a tmp folder in offline mode.
"""

import os
import pickle
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

timm = pytest.importorskip("timm")

from skimgcls import BackboneFeatures, CNNClassifier
from skimgcls.backbones import (
    BackboneNet,
    PretrainedWeightsError,
    backbone_input_spec,
    build_backbone,
    list_backbones,
)
from skimgcls.networks import build_network

FAST = {"max_epochs": 1, "batch_size": 8, "validation_fraction": None,
        "lr_schedule": None, "precision": "fp32", "device": "cpu", "random_state": 0}


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8).astype(np.float32)
    keep = np.flatnonzero(y < 3)[:24]
    return X[keep], y[keep]


def params(module):
    return {id(p) for p in module.parameters()}


def members_params(blocks):
    return {id(p) for group in blocks for m in group
            for p in (m.parameters() if isinstance(m, nn.Module) else [m])}


def same(a, b, keys=None):
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


# -- names ------------------------------------------------------------------
def test_list_backbones_lists_both_sources():
    torchvision_names = list_backbones("torchvision")
    timm_names = list_backbones("timm")
    assert "resnet18" in torchvision_names
    assert not any(n.startswith("timm/") for n in torchvision_names)
    assert {"timm/test_resnet", "timm/resnet18", "timm/convnext_atto"} <= set(timm_names)
    assert len(timm_names) == len(timm.list_models())
    assert list_backbones() == (list_backbones("user") + list_backbones("pip")
                                + torchvision_names + timm_names)
    tagged = list_backbones("timm", pretrained=True)
    assert "timm/resnet18.a1_in1k" in tagged and "timm/resnet18" not in tagged
    assert list_backbones(pattern="timm/resnet1*t") == ["timm/resnet10t",
                                                        "timm/resnet14t"]
    small = list_backbones("all", pattern="*mobilenet*v3_small*")
    assert small[0] == "mobilenet_v3_small" and "timm/mobilenetv3_small_050" in small
    assert all("mobilenet" in n and "v3_small" in n for n in small)
    with pytest.raises(ValueError, match="source must be one of"):
        list_backbones("keras")


def test_unknown_timm_names_suggest_close_ones():
    with pytest.raises(ValueError, match=r"Unknown timm model 'resnet-18'.*"
                                         r"Did you mean \['timm/resnet18'"):
        BackboneNet("timm/resnet-18", 2)
    with pytest.raises(ValueError, match=r"no pretrained tag 'in1k' for 'resnet18'.*"
                                         r"timm/resnet18\.(a1|a2|a3|tv)_in1k"):
        BackboneNet("timm/resnet18.in1k", 2)
    # A timm model without the prefix: its timm name comes first.
    clf = CNNClassifier("convnext_atto", **FAST)
    with pytest.raises(ValueError, match=r"Did you mean \['timm/convnext_atto'"):
        clf.fit(np.zeros((4, 8, 8), np.float32), [0, 1, 0, 1])


def test_missing_timm_is_an_import_error_naming_the_package(monkeypatch, digits):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails
    clf = CNNClassifier("timm/test_resnet", **FAST)
    with pytest.raises(ImportError, match=r"pip install timm"):
        clf.fit(*digits)
    with pytest.raises(ImportError, match=r"pip install timm"):
        list_backbones("timm")
    # 'all' degrades to the sources that do not need timm to list names
    assert list_backbones() == (list_backbones("user") + list_backbones("pip")
                                + list_backbones("torchvision"))


# -- building and the pretrained config ------------------------------------------
def test_input_spec_comes_from_timms_pretrained_config():
    assert backbone_input_spec("timm/resnet10t").size == (176, 176)
    vit = backbone_input_spec("timm/vit_tiny_patch16_224")
    assert vit.size == (224, 224) and vit.mean == vit.std == (0.5, 0.5, 0.5)
    assert backbone_input_spec("timm/efficientnet_b0").mean == (0.485, 0.456, 0.406)
    # The tag picks the config: a1 evaluates with crop_pct 0.95, tv with 0.875.
    assert backbone_input_spec("timm/resnet18.a1_in1k").resize_size == (235, 235)
    assert backbone_input_spec("timm/resnet18.tv_in1k").resize_size == (256, 256)
    net = BackboneNet("timm/test_efficientnet", 3)
    config = timm.data.resolve_data_config({}, model=net.body)
    assert net.adapter.size == config["input_size"][1:] == (160, 160)
    torch.testing.assert_close(net.adapter.mean.flatten(), torch.tensor(config["mean"]))
    torch.testing.assert_close(net.adapter.std.flatten(), torch.tensor(config["std"]))


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext",
                                  "test_vit", "test_byobnet", "test_nfnet",
                                  "test_mambaout", "mobilenetv3_small_050"])
def test_every_block_and_the_embedding(name):
    net = BackboneNet("timm/" + name, 5, in_channels=1, input_size=32)
    assert net.source == "timm"
    assert isinstance(net.body.get_classifier(), nn.Identity)
    assert isinstance(net.body.get_submodule(net.head_path), nn.Identity)
    embedding = net.embed(torch.rand(2, 1, 8, 8))
    assert embedding.shape == (2, net.embedding_dim)
    assert net.head[-1].in_features == net.embedding_dim
    # timm's group matcher: the stem, then each stage or block, covering the body.
    assert members_params(net.blocks) == params(net.body)
    assert len(net.blocks) >= 4


def test_fixed_size_models_are_created_for_the_input_size():
    net = BackboneNet("timm/test_vit", 2, input_size=32)
    assert net.body.pos_embed.shape[1] == 1 + (32 // 16) ** 2
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 2)
    with pytest.raises(ValueError, match="fixed size.*module__input_size"):
        BackboneNet("timm/test_vit", 2, input_size=None)


def test_module_kwargs_reach_timm_and_reserved_ones_are_refused():
    net = build_network("timm/test_convnext", in_channels=3, n_classes=2,
                        image_size=(8, 8), input_size=32, drop_path_rate=0.2,
                        head_hidden=8)
    assert net.body.stages[1].blocks[0].drop_path.drop_prob > 0
    assert net.head[-1].in_features == 8
    with pytest.raises(ValueError, match="module__in_chans.*repeated to RGB"):
        BackboneNet("timm/test_resnet", 2, in_chans=1)
    with pytest.raises(ValueError, match="module__num_classes"):
        BackboneNet("timm/test_resnet", 2, num_classes=10)


def test_gray_is_repeated_to_rgb():
    net = BackboneNet("timm/test_resnet", 2, input_size=32).eval()
    gray = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(net(gray), net(gray.expand(-1, 3, -1, -1)))


# -- weights ----------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A timm test_resnet state dict with its 1000-class classifier, as files."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("test_resnet")
    state = model.state_dict()
    folder = tmp_path_factory.mktemp("timm")
    torch.save(state, folder / "test_resnet.pth")
    save_file({k: v.contiguous() for k, v in state.items()},
              str(folder / "model.safetensors"))
    return folder, state


def body_keys(state):
    return [k for k in state if not k.startswith("fc.")]


def test_local_weights_pth_safetensors_and_state_dict(resnet_weights):
    folder, state = resnet_weights
    for source in (folder / "test_resnet.pth", str(folder / "model.safetensors"),
                   state):
        net = build_backbone("timm/test_resnet", n_classes=3, input_size=32,
                             pretrained=source)
        assert same(state, net.body.state_dict(), body_keys(state))


def test_backbone_net_state_keeps_a_matching_head(tmp_path):
    torch.manual_seed(0)
    src = BackboneNet("timm/test_convnext", 3, input_size=32)
    torch.save(src.state_dict(), tmp_path / "net.pth")
    again = build_backbone("timm/test_convnext", n_classes=3, input_size=32,
                           pretrained=tmp_path / "net.pth")
    assert same(src.state_dict(), again.state_dict())
    other = build_backbone("timm/test_convnext", n_classes=4, input_size=32,
                           pretrained=src.state_dict())
    assert same(src.body.state_dict(), other.body.state_dict())


def test_vit_weights_of_another_size_are_resampled():
    torch.manual_seed(0)
    src = timm.create_model("test_vit")  # 160x160: 100 patches + class token
    net = build_backbone("timm/test_vit", n_classes=2, input_size=32,
                         pretrained=src.state_dict())
    assert net.body.pos_embed.shape == (1, 5, 64)
    torch.testing.assert_close(net.body.blocks[0].attn.qkv.weight,
                               src.blocks[0].attn.qkv.weight)


def test_weights_of_another_model_are_a_clear_error(resnet_weights):
    _, state = resnet_weights
    with pytest.raises(ValueError, match=r"do not fit 'timm/test_convnext'.*missing "
                                         r"keys.*timm.create_model\('test_convnext'\)"):
        build_backbone("timm/test_convnext", n_classes=2, input_size=32,
                       pretrained=state)


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """An empty Hugging Face cache in offline mode (what a machine offline sees)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_pretrained_true_offline_says_where_and_how(hf_offline, digits):
    clf = CNNClassifier("timm/test_resnet", pretrained=True, module__input_size=32,
                        **FAST)
    with pytest.raises(PretrainedWeightsError) as info:
        clf.fit(*digits)
    message = str(info.value)
    repo = os.path.join(str(hf_offline), "models--timm--test_resnet.r160_in1k")
    assert repo in message and "'timm/test_resnet.r160_in1k'" in message
    assert "pretrained='/path/to/model.safetensors'" in message
    assert isinstance(info.value, OSError)


def test_pretrained_true_reads_the_hugging_face_cache_offline(hf_offline,
                                                             resnet_weights):
    folder, state = resnet_weights
    repo = hf_offline / "models--timm--test_resnet.r160_in1k"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "model.safetensors").write_bytes(
        (folder / "model.safetensors").read_bytes())
    net = build_backbone("timm/test_resnet", n_classes=2, input_size=32,
                         pretrained=True)
    assert same(state, net.body.state_dict(), body_keys(state))


# -- fine-tuning ------------------------------------------------------------
def test_freeze_backbone_leaves_gradients_only_in_the_head():
    net = BackboneNet("timm/test_convnext", 3, input_size=32).freeze("backbone")
    net(torch.rand(4, 1, 8, 8)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.body.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    assert net.frozen_blocks == len(net.blocks)


def test_fit_frozen_keeps_body_and_batchnorm_statistics(digits, resnet_weights):
    folder, state = resnet_weights
    clf = CNNClassifier("timm/test_resnet", pretrained=folder / "test_resnet.pth",
                        freeze="backbone", module__input_size=32,
                        **{**FAST, "max_epochs": 2})
    clf.fit(*digits)
    body = clf.module_.body.state_dict()
    # Weights *and* running statistics: frozen blocks stay in eval mode.
    assert same(state, body, body_keys(state))
    assert clf.module_.frozen_blocks == len(clf.module_.blocks) == 5
    assert clf.history_[-1, "train_batch_count"] == 3


def test_freeze_leading_blocks_and_unfreeze_at_epoch(digits):
    net = BackboneNet("timm/test_resnet", 2, input_size=32).freeze(2)
    net.train()
    stem_and_layer1 = [net.body.conv1, net.body.bn1, net.body.layer1]
    assert not any(m.training for m in stem_and_layer1)
    assert not any(p.requires_grad for m in stem_and_layer1 for p in m.parameters())
    assert net.body.layer2.training and all(
        p.requires_grad for p in net.body.layer2.parameters())
    clf = CNNClassifier("timm/test_resnet", freeze="backbone", unfreeze_at_epoch=2,
                        module__input_size=32, **{**FAST, "max_epochs": 2})
    clf.fit(*digits)
    assert clf.history_[1, "unfrozen"] is True and "unfrozen" not in clf.history_[0]
    assert all(p.requires_grad for p in clf.module_.parameters())


def test_backbone_lr_mult_gives_the_body_its_own_group(digits):
    clf = CNNClassifier("timm/test_efficientnet", backbone_lr_mult=0.1, lr=0.01,
                        module__input_size=32, **FAST)
    clf.fit(*digits)
    body, head = clf.net_.optimizer_.param_groups
    assert len(body["params"]) == len(list(clf.module_.body.parameters()))
    assert body["lr"] == pytest.approx(0.001) and head["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_classifier_fits_predicts_pickles_and_saves(digits, name, tmp_path):
    from skimgcls import load, save

    X, y = digits
    clf = CNNClassifier("timm/" + name, module__input_size=32, **FAST).fit(X, y)
    assert clf.module_.source == "timm" and clf.module_.adapter.size == (32, 32)
    assert np.isfinite(clf.history_[-1, "train_loss"])
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X[:5]),
                                  proba)
    save(clf, tmp_path / "clf.safetensors")
    np.testing.assert_allclose(load(tmp_path / "clf.safetensors").predict_proba(X[:5]),
                               proba, rtol=1e-5, atol=1e-6)


# -- BackboneFeatures ---------------------------------------------------------
def test_backbone_features_resize_repeat_and_normalize_as_timm_says(digits,
                                                                   resnet_weights):
    folder, state = resnet_weights
    X, _ = digits
    features = BackboneFeatures("timm/test_resnet", pretrained=folder / "test_resnet.pth",
                                input_size=32, device="cpu", precision="fp32")
    out = features.fit_transform(X[:6])
    # The same computation by hand, with timm alone.
    model = timm.create_model("test_resnet", num_classes=0)
    model.load_state_dict({k: v for k, v in state.items() if k in body_keys(state)})
    config = model.pretrained_cfg
    x = torch.from_numpy(X[:6])[:, None].expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(config["mean"]).view(1, 3, 1, 1)) \
        / torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    assert out.shape == (6, model.num_features) == (6, features.embedding_dim_)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
