"""Persistence safe to share (safetensors + JSON, no pickle) and ONNX export."""

import io
import json
import pickle
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skimgcls import CNNClassifier, persistence
from skimgcls.exceptions import UnsafeModelFileError
from skimgcls.networks import SimpleCNN
from skimgcls.persistence import export_onnx, load, save

safetensors_torch = pytest.importorskip("safetensors.torch")

PARAMS = dict(module__width=4, max_epochs=2, batch_size=32, precision="fp32",
              random_state=0, validation_fraction=None)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:150] / 16).reshape(-1, 8, 8, 1).astype(np.float32), y[:150]


@pytest.fixture(scope="module")
def clf(data):
    return CNNClassifier(optimizer=torch.optim.SGD, optimizer__momentum=0.9,
                         class_weight={0: 2.0}, **PARAMS).fit(*data)


@pytest.fixture
def saved(clf, tmp_path):
    path = tmp_path / "model.safetensors"
    return path, save(clf, path)


def test_classifier_round_trip(clf, saved, data):
    path, digest = saved
    loaded = load(path, sha256=digest)
    assert type(loaded) is CNNClassifier
    assert repr(loaded.get_params()) == repr(clf.get_params())
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.image_shape_ == clf.image_shape_
    assert loaded.history_[:, "train_loss"] == clf.history_[:, "train_loss"]
    np.testing.assert_array_equal(loaded.predict_proba(data[0]),
                                  clf.predict_proba(data[0]))


def test_file_holds_no_pickle_and_readable_json(saved):
    path, _ = saved
    raw = path.read_bytes()
    assert b"\x80\x04\x95" not in raw[:64]  # no pickle protocol header
    with safetensors_torch.safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    spec = json.loads(metadata["spec"])
    assert spec["name"] == "CNNClassifier"
    assert spec["params"]["optimizer"] == {"$": "class", "module": "torch.optim.sgd",
                                           "name": "SGD"}
    assert metadata["skimgcls_version"]


def test_pipeline_and_plain_estimators_round_trip(data, tmp_path):
    X, y = data
    pipe = make_pipeline(MinMaxScaler(), CNNClassifier(image_shape=(8, 8), **PARAMS))
    pipe.fit(X.reshape(len(X), -1), y)
    save(pipe, tmp_path / "pipe.safetensors")
    loaded = load(tmp_path / "pipe.safetensors")
    np.testing.assert_array_equal(loaded.predict_proba(X.reshape(len(X), -1)),
                                  pipe.predict_proba(X.reshape(len(X), -1)))

    labels = np.array(["cat", "dog", "emu"])[y % 3]
    logreg = LogisticRegression(max_iter=50).fit(X.reshape(len(X), -1), labels)
    save(logreg, tmp_path / "logreg.safetensors")
    loaded = load(tmp_path / "logreg.safetensors")
    assert loaded.classes_.dtype == logreg.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X.reshape(len(X), -1)),
                                  logreg.predict(X.reshape(len(X), -1)))

    unfitted = CNNClassifier(lr=0.1, module__width=3)
    save(unfitted, tmp_path / "unfitted.safetensors")
    assert load(tmp_path / "unfitted.safetensors").get_params() == unfitted.get_params()


def test_pickle_and_joblib_still_work(clf, data, tmp_path):
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(data[0]), clf.predict(data[0]))
    joblib.dump(clf, tmp_path / "clf.joblib")
    again = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(again.predict(data[0]), clf.predict(data[0]))


def test_gpu_trained_model_loads_on_the_cpu(clf, data, tmp_path, monkeypatch):
    monkeypatch.setattr(clf, "device_", "cuda:3")  # as if trained on a GPU
    save(clf, tmp_path / "gpu.safetensors")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load(tmp_path / "gpu.safetensors")
    assert loaded.device_ == "cpu"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.predict(data[0]), clf.predict(data[0]))
    assert load(tmp_path / "gpu.safetensors", map_location="cpu").device_ == "cpu"


@pytest.mark.cuda
def test_cuda_trained_model_loads_on_the_cpu(data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gpu = CNNClassifier(device="cuda", **PARAMS).fit(*data)
    save(gpu, tmp_path / "gpu.safetensors")
    cpu = load(tmp_path / "gpu.safetensors", map_location="cpu")
    assert cpu.device_ == "cpu"
    np.testing.assert_allclose(cpu.predict_proba(data[0]), gpu.predict_proba(data[0]),
                               atol=1e-3)


# -- refusals ----------------------------------------------------------------
def test_tampered_file_is_refused(saved):
    path, digest = saved
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsafeModelFileError, match="does not match its hash"):
        load(path)
    with pytest.raises(UnsafeModelFileError, match="not the expected"):
        load(path, sha256=digest)


def test_edited_parameters_are_refused(saved):
    path, _ = saved
    raw = path.read_bytes()
    edited = raw.replace(b'"lr\\": 0.005', b'"lr\\": 0.009')
    assert edited != raw
    path.write_bytes(edited)
    with pytest.raises(UnsafeModelFileError, match="does not match its hash"):
        load(path)


@pytest.mark.parametrize("content, match", [
    (b"", "not a skimgcls model file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a skimgcls model file"),
    (b"definitely not a model", "not a skimgcls model file"),
])
def test_files_that_are_not_models_are_refused(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsafeModelFileError, match=match):
        load(path)


def test_truncated_file_is_refused(saved):
    path, _ = saved
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(UnsafeModelFileError, match="truncated or corrupted"):
        load(path)


def test_incompatible_version_is_refused(clf, tmp_path, monkeypatch):
    monkeypatch.setattr(persistence, "__version__", "0.9.0")
    save(clf, tmp_path / "future.safetensors")
    monkeypatch.undo()
    with pytest.raises(UnsafeModelFileError, match="saved by skimgcls 0.9.0"):
        load(tmp_path / "future.safetensors")


def as_format(path, version):
    """Rewrite a saved file's format version (its hash made valid again)."""
    tensors = safetensors_torch.load_file(path)
    with safetensors_torch.safe_open(path, "pt") as f:
        metadata = f.metadata()
    metadata.pop("sha256")
    metadata["format_version"] = str(version)
    metadata["sha256"] = persistence._digest(metadata, tensors)
    path.write_bytes(safetensors_torch.save(tensors, metadata=metadata))
    return path


def test_files_say_their_format(saved):
    with safetensors_torch.safe_open(saved[0], "pt") as f:
        assert f.metadata()["format_version"] == str(persistence.FORMAT_VERSION) == "2"


@pytest.mark.parametrize("module", ["simple_cnn", SimpleCNN])
def test_format_1_simple_cnn_files_are_refused_with_retrain(data, tmp_path, module):
    X, y = data
    clf = CNNClassifier(module=module, max_epochs=1, batch_size=32, precision="fp32",
                        random_state=0, validation_fraction=None).fit(X, y)
    path = tmp_path / "old.safetensors"
    save(clf, path)
    np.testing.assert_allclose(load(path).predict_proba(X), clf.predict_proba(X))
    with pytest.raises(UnsafeModelFileError, match=r"format 1.*'simple_cnn'.*"
                       r"predict wrongly.*Retrain the model"):
        load(as_format(path, 1))


def test_format_1_files_of_other_networks_still_load(clf, saved, data):
    X, _ = data
    loaded = load(as_format(saved[0], 1))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X),
                               rtol=1e-5, atol=1e-6)


def test_later_formats_are_refused(saved):
    with pytest.raises(UnsafeModelFileError, match=r"uses model file format '3'.*"
                       r"reads formats 1 to 2\. Upgrade skimgcls"):
        load(as_format(saved[0], 3))


def write_spec(path, spec, tensors=None):
    """Write a file with a valid hash, as someone crafting one would."""
    tensors = tensors or {}
    metadata = {"format": "skimgcls", "format_version": "1",
                "skimgcls_version": persistence.__version__, "spec": json.dumps(spec)}
    metadata["sha256"] = persistence._digest(metadata, tensors)
    path.write_bytes(safetensors_torch.save(tensors, metadata=metadata))


@pytest.mark.parametrize("spec, match", [
    ({"$": "estimator", "module": "os", "name": "system", "params": {}, "state": {}},
     r"asks for 'os\.system', which is outside the allowlist.*trusted=\['os\.system'\]"),
    ({"$": "class", "module": "builtins", "name": "eval"},
     r"asks for 'builtins\.eval', which is outside the allowlist"),
    ({"$": "class", "module": "subprocess", "name": "Popen"},
     r"asks for 'subprocess\.Popen', which is outside the allowlist"),
    ({"$": "estimator", "module": "sklearn.base", "name": "__builtins__", "params": {},
      "state": {}},
     r"asks for 'sklearn\.base\.__builtins__', which is outside the allowlist"),
    ({"$": "class", "module": "sklearn.base", "name": "clone"},  # a function
     r"names 'sklearn\.base\.clone', which is not an allowed class"),
    ({"$": "function", "module": "os", "name": "system"},
     r"Unknown entry 'function'"),
    ({"$": "estimator", "module": "sklearn.linear_model", "name": "LogisticRegression",
      "params": {}, "state": {"__class__": {"$": "class", "module": "sklearn.svm",
                                           "name": "SVC"}}},
     r"Invalid attribute name '__class__'"),
])
def test_code_outside_the_allowlist_is_refused(tmp_path, spec, match):
    write_spec(tmp_path / "evil.safetensors", spec)
    with pytest.raises(UnsafeModelFileError, match=match):
        load(tmp_path / "evil.safetensors")


def test_load_never_imports_unlisted_modules(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "probe_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "class Probe:\n    def get_params(self, deep=True): return {}\n"
        "    def set_params(self, **p): return self\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"$": "estimator", "module": "probe_module", "name": "Probe", "params": {},
            "state": {}}
    write_spec(tmp_path / "probe.safetensors", spec)
    with pytest.raises(UnsafeModelFileError, match="outside the allowlist.*trusted="):
        load(tmp_path / "probe.safetensors")
    assert not marker.exists() and "probe_module" not in sys.modules
    loaded = load(tmp_path / "probe.safetensors", trusted=["probe_module.Probe"])
    assert type(loaded).__name__ == "Probe" and marker.exists()
    sys.modules.pop("probe_module", None)


@pytest.mark.parametrize("params, match", [
    (dict(augment=lambda images: images), "lambda.*code"),
    (dict(module=torch.nn.Linear(2, 2)), "Linear"),
    (dict(callbacks=[print]), "print"),
])
def test_save_refuses_code(tmp_path, params, match):
    with pytest.raises(TypeError, match=match):
        save(CNNClassifier(**params), tmp_path / "code.safetensors")
    assert not (tmp_path / "code.safetensors").exists()


# -- ONNX ----------------------------------------------------------------------
@pytest.fixture
def onnx_tools():
    """Skip ONNX tests where the onnx extra is not installed."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


def run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def test_onnx_export_of_a_classifier_matches_predict_proba(clf, data, tmp_path,
                                                           onnx_tools):
    X = data[0]
    path = export_onnx(clf, tmp_path / "clf.onnx", layout="NCHW")
    proba = run_onnx(path, np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
    expected = clf.predict_proba(X)
    assert np.abs(proba - expected).max() < 1e-4
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["classes"]) == clf.classes_.tolist()
    assert meta["input_layout"] == "NCHW"


class Affine(TransformerMixin, BaseEstimator):
    """A test transformer that implements the as_torch_module protocol."""

    def __init__(self, scale=2.0, shift=-1.0):
        self.scale = scale
        self.shift = shift

    def fit(self, X, y=None):
        self.image_shape_in_ = X.shape[1:]
        return self

    def transform(self, X):
        return X * self.scale + self.shift

    def as_torch_module(self):
        return _AffineModule(self.scale, self.shift)


class CropBorder(TransformerMixin, BaseEstimator):
    """Drop a one-pixel border (NHWC in NumPy, NCHW in torch)."""

    def fit(self, X, y=None):
        self.image_shape_in_ = X.shape[1:]
        return self

    def transform(self, X):
        return X[:, 1:-1, 1:-1, :]

    def as_torch_module(self):
        return _CropModule()


class _AffineModule(torch.nn.Module):
    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return x * self.scale + self.shift


class _CropModule(torch.nn.Module):
    def forward(self, x):
        return x[:, :, 1:-1, 1:-1]


def test_onnx_export_of_a_pipeline_matches_predict_proba(data, tmp_path, onnx_tools):
    X, y = data
    pipe = make_pipeline(CropBorder(), Affine(), CNNClassifier(**PARAMS)).fit(X, y)
    path = export_onnx(pipe, tmp_path / "pipe.onnx")
    difference = np.abs(run_onnx(path, X) - pipe.predict_proba(X)).max()
    print(f"max |onnxruntime - predict_proba| = {difference:.2e}")
    assert difference < 1e-4


def test_onnx_export_refuses_steps_without_a_torch_module(data, onnx_tools):
    X, y = data
    pipe = make_pipeline(MinMaxScaler(), CNNClassifier(image_shape=(8, 8), **PARAMS))
    pipe.fit(X.reshape(len(X), -1), y)
    with pytest.raises(TypeError, match="'minmaxscaler'.*as_torch_module"):
        export_onnx(pipe, io.BytesIO())
    with pytest.raises(TypeError, match="CNNClassifier"):
        export_onnx(LogisticRegression(), io.BytesIO())
