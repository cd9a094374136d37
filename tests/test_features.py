"""BackboneFeatures: embeddings of a frozen backbone, inputs, linear probe, caching."""

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import skimgcls.features
from skimgcls import BackboneFeatures, CNNClassifier
from skimgcls.backbones import (
    PretrainedWeightsError,
    build_backbone,
    expected_weights_path,
    read_state_dict,
)

#: Random ResNet-18 weights: its features have a useful scale (a random
#: MobileNet-v3's are ~1e-10).
SMALL = dict(backbone="resnet18", pretrained=False, input_size=32,
             precision="fp32", device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8).astype(np.float32)
    keep = np.flatnonzero(y < 3)[:60]
    return X[keep], y[keep]


@pytest.fixture(scope="module")
def fitted(digits):
    X, _ = digits
    features = BackboneFeatures(**SMALL).fit(X)
    return features, features.transform(X)


def test_embeddings_shape_dtype_names(fitted, digits):
    features, F = fitted
    assert F.shape == (len(digits[0]), 512) and F.dtype == np.float32
    assert features.embedding_dim_ == 512 and features.n_features_in_ == 64
    assert not any(p.requires_grad for p in features.model_.parameters())
    assert not features.model_.training
    names = features.get_feature_names_out()
    assert names[0] == "backbonefeatures0" and len(names) == 512


def test_same_features_for_every_input_kind(fitted, digits, tmp_path):
    features, F = fitted
    X = digits[0][:5]
    expected = F[:5]
    as_uint8 = np.round(X * 255).astype(np.uint8)
    kinds = {
        "NCHW": X[:, None],
        "NHWC": X[..., None],
        "2-D": X.reshape(5, -1),
        "tensor": torch.from_numpy(X[:, None]),
        "PIL": [Image.fromarray(im, mode="L") for im in as_uint8],
    }
    for kind, images in kinds.items():
        tol = 1e-2 if kind == "PIL" else 1e-5  # PIL: uint8 quantization
        np.testing.assert_allclose(features.transform(images), expected, atol=tol,
                                   err_msg=kind)
    # Files of any size are read as RGB and resized to input_size.
    paths = []
    for i, im in enumerate(as_uint8):
        path = tmp_path / f"{i}.png"
        Image.fromarray(im, mode="L").resize((8 + i, 8 + 2 * i)).save(path)
        paths.append(str(path))
    from_files = features.transform(paths)
    assert from_files.shape == (5, 512)
    # The first file has the original size: same image, same features.
    np.testing.assert_allclose(from_files[0], expected[0], atol=1e-2)


def test_fit_on_paths(tmp_path, digits):
    X = np.round(digits[0][:4] * 255).astype(np.uint8)
    paths = []
    for i, im in enumerate(X):
        Image.fromarray(im, mode="L").save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    features = BackboneFeatures(**SMALL).fit(np.array(paths, dtype=object))
    assert features.image_shape_ is None
    assert features.transform(paths).shape == (4, 512)


def test_shape_mismatch_is_an_error(fitted):
    features, _ = fitted
    with pytest.raises(ValueError, match="Resize them first"):
        features.transform(np.zeros((2, 9, 9), dtype=np.float32))


def test_linear_probe(digits):
    X, y = digits
    probe = make_pipeline(BackboneFeatures(**SMALL), LogisticRegression(max_iter=200))
    probe.fit(X[::2], y[::2])
    # Even random convolutional features separate three digit classes.
    assert probe.score(X[1::2], y[1::2]) > 0.6


@pytest.mark.parametrize("device, size, expected", [
    ("cpu", 224, 8), ("cpu", (112, 112), 32), ("cpu", 64, 98), ("cpu", 8, 256),
    ("cpu", None, 98), ("cuda", 224, 64), ("cuda:1", 32, 64),
])
def test_inference_batch_size_holds_a_fixed_number_of_pixels_on_a_cpu(device, size,
                                                                      expected):
    from skimgcls._device import inference_batch_size

    assert inference_batch_size(device, size) == expected


def test_batch_size_auto_follows_the_input_size_and_not_the_features(fitted, digits):
    features, F = fitted
    X = digits[0]
    assert features.batch_size == "auto" and features.batch_size_ == 256  # 32 px: 392, at most 256
    large = BackboneFeatures(**{**SMALL, "input_size": 224}).fit(X[:2])
    assert large.batch_size_ == 8
    five = clone(features).set_params(batch_size=5).fit(X)
    assert five.batch_size_ == 5
    np.testing.assert_allclose(five.transform(X), F, rtol=1e-4, atol=1e-5)


def test_memory_computes_features_once_per_distinct_input(digits, tmp_path,
                                                           monkeypatch):
    X, y = digits
    computed = []
    forward = skimgcls.features._forward_batches

    def counting(model, images, **kwargs):
        computed.append(len(images))
        return forward(model, images, **kwargs)

    monkeypatch.setattr(skimgcls.features, "_forward_batches", counting)
    grid = {"logisticregression__C": [0.1, 1.0, 10.0]}

    def search(memory):
        # MobileNet builds 3x faster than ResNet-18; its features' scale does
        # not matter here.
        pipe = make_pipeline(BackboneFeatures(**{**SMALL, "backbone":
                                                 "mobilenet_v3_small"}, memory=memory),
                             LogisticRegression(max_iter=100))
        return GridSearchCV(pipe, grid, cv=3).fit(X, y)

    plain = search(None)
    # 3 candidates x 3 folds x (train + test) + the refit on all the data
    assert len(computed) == 3 * 3 * 2 + 1
    computed.clear()
    cached = search(str(tmp_path))
    # each fold's train and test images once, shared by the 3 candidates
    assert len(computed) == 3 * 2 + 1
    computed.clear()
    again = search(str(tmp_path))
    assert computed == []  # a rerun computes nothing
    np.testing.assert_allclose(cached.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"])
    np.testing.assert_allclose(again.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"])


def test_memory_key_follows_the_weights(digits, tmp_path):
    X = digits[0][:4]
    one = BackboneFeatures(**SMALL, memory=str(tmp_path)).fit_transform(X)
    other = BackboneFeatures(**{**SMALL, "random_state": 1},
                             memory=str(tmp_path)).fit_transform(X)
    assert np.abs(one - other).max() > 1e-3 * np.abs(one).max()
    # ... and the levels: same weights, other features.
    levels = BackboneFeatures(**SMALL, levels=2, memory=str(tmp_path)).fit_transform(X)
    assert levels.shape == (4, 256 + 512)
    np.testing.assert_allclose(levels[:, 256:], one, rtol=1e-5, atol=1e-5)


def test_pretrained_file_and_fine_tuned_module(digits, tmp_path):
    X, y = digits
    torch.manual_seed(0)
    net = build_backbone("resnet18", n_classes=None, in_channels=1,
                         input_size=32).eval()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    features = BackboneFeatures(**{**SMALL, "pretrained": tmp_path / "w.pth"})
    with torch.inference_mode():
        expected = net.embed(torch.from_numpy(X[:3, None])).numpy()
    np.testing.assert_allclose(features.fit_transform(X[:3]), expected, atol=1e-5)
    # The module_ of a fitted CNNClassifier: its fine-tuned embeddings.
    clf = CNNClassifier("resnet18", module__input_size=32, max_epochs=1,
                        validation_fraction=None, precision="fp32", random_state=0)
    clf.fit(X, y)
    tuned = BackboneFeatures(clf.module_, precision="fp32").fit_transform(X[:3])
    with torch.inference_mode():
        clf.module_.eval()
        expected = clf.module_.embed(torch.from_numpy(X[:3, None])).numpy()
    np.testing.assert_allclose(tuned, expected, atol=1e-5)


def test_any_module_as_backbone(digits):
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(2))
    features = BackboneFeatures(module, precision="fp32").fit(digits[0][:3])
    assert features.embedding_dim_ == 16
    assert features.transform(digits[0][:3]).shape == (3, 16)


def test_pretrained_default_offline_error(monkeypatch, tmp_path, digits):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    features = BackboneFeatures("mobilenet_v3_small", input_size=32)
    assert features.pretrained is True
    with pytest.raises(PretrainedWeightsError, match=str(tmp_path)):
        features.fit(digits[0][:2])


@pytest.fixture
def fake_download(monkeypatch, tmp_path):
    """torch.hub's downloader, replaced: records (url, progress), writes weights."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, progress))
        torch.save(torchvision.models.mobilenet_v3_small().state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return calls


def test_default_download_shows_progress_once(fake_download, digits, capsys):
    from torchvision.models import MobileNet_V3_Small_Weights

    weights = MobileNet_V3_Small_Weights.DEFAULT
    features = BackboneFeatures("mobilenet_v3_small", input_size=32, device="cpu")
    features.fit(digits[0][:2])
    assert fake_download == [(weights.url, True)]  # a progress bar, not silence
    assert expected_weights_path(weights) in capsys.readouterr().out
    features.fit(digits[0][:2])  # from torch's cache now
    assert fake_download == [(weights.url, True)]


@pytest.mark.parametrize("progress", [True, False])
def test_read_state_dict_passes_progress_to_torch(fake_download, progress):
    from torchvision.models import MobileNet_V3_Small_Weights

    weights = MobileNet_V3_Small_Weights.DEFAULT
    state = read_state_dict(True, weights, progress=progress)
    assert fake_download == [(weights.url, progress)]
    assert "features.0.0.weight" in state


@pytest.mark.parametrize("verbose", [0, 1])
def test_classifier_download_progress_follows_verbose(fake_download, digits, verbose):
    from torchvision.models import MobileNet_V3_Small_Weights

    from skimgcls import CNNClassifier

    X, y = digits[0][:20], digits[1][:20]
    CNNClassifier("mobilenet_v3_small", pretrained=True, freeze="backbone",
                  max_epochs=1, validation_fraction=None, verbose=verbose,
                  module__input_size=32, device="cpu").fit(X, y)
    assert fake_download == [(MobileNet_V3_Small_Weights.DEFAULT.url, bool(verbose))]


def test_clone_and_params():
    features = BackboneFeatures(**SMALL)
    assert clone(features).get_params() == features.get_params()
