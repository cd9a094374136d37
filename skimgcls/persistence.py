"""Save and load estimators without pickle; export them to ONNX.

:func:`save` writes one ``.safetensors`` file: every array and network weight
as a safetensors tensor, everything else (class names, parameters, fitted
scalars, the training history) as JSON in the file's header, together with
the versions of skimgcls, scikit-learn and torch and a SHA-256 hash of it all.

:func:`load` reads such a file without unpickling anything. It refuses, with
:class:`~skimgcls.exceptions.UnsafeModelFileError`:

* a file whose content does not match its hash (corrupted or edited), or
  whose SHA-256 differs from the ``sha256`` the caller expects;
* a file from an incompatible skimgcls version;
* a file that names a class outside the allowlist: estimators from
  scikit-learn, skimgcls and skorch's callbacks, networks from skimgcls and
  ``torch.nn``, optimizers from ``torch.optim``, plus the dotted names the
  caller lists in ``trusted``. Nothing else is imported, and functions are
  never stored or called.

The embedded hash detects accidental corruption and careless edits; someone
who edits a file on purpose can recompute it. To make sure a file is the one
its author saved, compare its SHA-256 (returned by :func:`save`) with the one
the author published, through ``load(path, sha256=...)``. Loading never runs
code from the file either way.

Pickle and joblib keep working (``pickle.dump(clf, f)``,
``joblib.dump(clf, path)``) and store anything, including custom functions;
use them only for files you trust, since unpickling can run arbitrary code.

Estimators are stored generically: their ``get_params(deep=False)`` plus the
attributes ``fit`` set (NumPy arrays as tensors, plain values as JSON, nested
estimators recursively), so new scikit-learn-style transformers need no
persistence code. :class:`~skimgcls.CNNClassifier`'s network is rebuilt from
its parameters and loaded with the saved weights, on the CPU when the saving
GPU is missing.
"""

import hashlib
import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from skorch.history import History

from ._checkpoint import atomic_write
from ._device import resolve_precision
from ._onnx import export_onnx
from ._version import __version__
from .classifier import CNNClassifier, rebuild_net
from .exceptions import UnsafeModelFileError
from .networks import SimpleCNN

__all__ = ["save", "load", "export_onnx"]

FORMAT = "skimgcls"
#: 2: ``simple_cnn``'s dense layer reads its inputs in (height, width,
#: channel) order (``FlattenChannelsLast``); format 1 files hold ``simple_cnn``
#: weights for the channel-first order, which load refuses (other networks
#: did not change and load from both).
FORMAT_VERSION = 2
#: The formats load reads.
READABLE_FORMATS = (1, 2)

#: Module prefixes whose classes may be instantiated as estimators on load.
ESTIMATOR_MODULES = ("sklearn", "skimgcls", "skorch.callbacks")
#: Module prefixes whose classes may appear as parameter values, with the
#: base class they must derive from (checked after the import).
CLASS_MODULES = {
    "sklearn": "sklearn.base.BaseEstimator",
    "skimgcls": None,
    "skorch.callbacks": "skorch.callbacks.Callback",
    "torch.nn": "torch.nn.Module",
    "torch.optim": "torch.optim.Optimizer",
}
_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_ATTRIBUTE = re.compile(r"[A-Za-z_]\w*")


def _require_safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:  # pragma: no cover - tested with it installed
        raise ImportError(
            "Saving and loading models needs safetensors, a dependency of "
            "skimgcls: pip install safetensors"
        ) from exc
    return safetensors.torch




# -- encoding ----------------------------------------------------------------
def _qualified(cls):
    return {"module": cls.__module__, "name": cls.__qualname__}


class _Encoder:
    """Turn an estimator into a JSON spec plus a dict of tensors."""

    def __init__(self):
        self.tensors = {}

    def tensor(self, value):
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value.detach().to("cpu").contiguous().clone()
        return key

    def encode(self, value, where):
        if isinstance(value, np.generic):
            if value.dtype.kind not in "biuf":
                raise _unsupported(value, where)
            return {"$": "scalar", "dtype": value.dtype.str,
                    "v": self.encode(value.item(), where)}
        if value is None or isinstance(value, (bool, str, int)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, torch.Tensor):
            return {"$": "tensor", "key": self.tensor(value)}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"$": "tuple",
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            tag = "bunch" if type(value).__name__ == "Bunch" else "dict"
            if tag == "dict" and type(value) is not dict:
                raise _unsupported(value, where)
            return {"$": tag,
                    "keys": [self.encode(k, where) for k in value],
                    "values": [self.encode(v, f"{where}[{k!r}]") for k, v in value.items()]}
        if isinstance(value, type):
            return {"$": "class", **_qualified(value)}
        if _is_estimator_like(value):
            return self.estimator(value, where)
        raise _unsupported(value, where)

    def array(self, value, where):
        if value.dtype.kind in "biu" or (value.dtype.kind == "f"
                                         and value.dtype.itemsize <= 8):
            tensor = torch.from_numpy(np.ascontiguousarray(value).astype(
                value.dtype.newbyteorder("="), copy=False))
            return {"$": "ndarray", "key": self.tensor(tensor), "dtype": value.dtype.str}
        if value.dtype.kind in "UO":
            return {"$": "ndarray_list", "dtype": value.dtype.str,
                    "shape": list(value.shape),
                    "items": [self.encode(v, where) for v in value.ravel().tolist()]}
        raise TypeError(f"Cannot save {where}: arrays of dtype {value.dtype} are not "
                        "supported.")

    def estimator(self, value, where):
        name = type(value).__name__
        params = value.get_params(deep=False)
        state = {}
        for attr, attr_value in vars(value).items():
            if attr in params or attr.startswith("__") or attr == "_metadata_request":
                continue
            if attr == "net_" and hasattr(attr_value, "module_"):
                state[attr] = self.net(attr_value)
            else:
                state[attr] = self.encode(attr_value, f"{where}.{attr}")
        return {"$": "estimator", **_qualified(type(value)),
                "params": {k: self.encode(v, f"{where}({name}).{k}")
                           for k, v in params.items()},
                "state": state}

    def net(self, net):
        return {"$": "skorch_net",
                "module": {k: self.tensor(v) for k, v in net.module_.state_dict().items()},
                "history": json.loads(json.dumps(net.history.to_list(),
                                                 default=_json_default))}


def _is_estimator_like(value):
    return hasattr(value, "get_params") and hasattr(value, "set_params")


def _json_default(value):
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return repr(value)


def _unsupported(value, where):
    kind = type(value).__name__
    if callable(value):
        what = f"a {kind} ({getattr(value, '__qualname__', value)!r}), i.e. code"
    else:
        what = f"an object of type {kind}"
    return TypeError(
        f"Cannot save {where}: it is {what}, which skimgcls.persistence.save does "
        "not store, so that loading never runs code. Use a registered network name "
        "(skimgcls.networks.register_network) or a scikit-learn/skimgcls estimator "
        "instead, or pickle/joblib if the people loading the file trust you."
    )


# -- hashing -----------------------------------------------------------------
def _digest(metadata, tensors):
    digest = hashlib.sha256()
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    for key in sorted(tensors):
        tensor = tensors[key]
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(estimator, path):
    """Save an estimator or a pipeline to a file, without pickle.

    Parameters
    ----------
    estimator : estimator
        A fitted or unfitted scikit-learn-compatible estimator: a
        :class:`~skimgcls.CNNClassifier`, a :class:`~sklearn.pipeline.Pipeline`
        of skimgcls/scikit-learn steps, or any estimator whose parameters and
        fitted attributes are arrays, plain values or estimators.
    path : str or path-like
        The file to write (conventionally ``*.safetensors``). It is replaced
        atomically.

    Returns
    -------
    sha256 : str
        The SHA-256 of the file, to publish with it; pass it to
        :func:`load` as ``sha256=`` to make sure a file is unchanged.

    Raises
    ------
    TypeError
        If a parameter or attribute is code (a function, a lambda, a
        ``torch.nn.Module`` instance) or an object of unsupported type.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skimgcls.persistence import save, load
    >>> clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> digest = save(clf, path)
    >>> load(path, sha256=digest).predict([[0.9]])
    array([1])
    """
    st = _require_safetensors()

    encoder = _Encoder()
    spec = encoder.encode(estimator, type(estimator).__name__)
    import sklearn

    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "skimgcls_version": __version__,
        "sklearn_version": sklearn.__version__,
        "torch_version": torch.__version__,
        "spec": json.dumps(spec, sort_keys=True),
    }
    metadata["sha256"] = _digest(metadata, encoder.tensors)
    data = st.save(encoder.tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
    return hashlib.sha256(data).hexdigest()


# -- loading -----------------------------------------------------------------
def _compatible(saved, current):
    def release(version):
        match = re.match(r"(\d+)\.(\d+)", version or "")
        return (int(match[1]), int(match[2])) if match else None

    old, new = release(saved), release(current)
    if old is None or new is None:
        return False
    if new[0] == 0:
        return old == new
    return old[0] == new[0] and old <= new


def _read_header(raw, path):
    if len(raw) < 8:
        raise UnsafeModelFileError(f"{path} is not a skimgcls model file: it is "
                                   f"{len(raw)} bytes long.")
    size = int.from_bytes(raw[:8], "little")
    try:
        if size > len(raw) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(raw[8:8 + size])
        return header.get("__metadata__") or {}
    except (ValueError, AttributeError) as exc:
        raise UnsafeModelFileError(
            f"{path} is not a skimgcls model file, or it is truncated or corrupted "
            f"({exc})."
        ) from None


def _check_metadata(metadata, path):
    if metadata.get("format") != FORMAT:
        raise UnsafeModelFileError(f"{path} is not a skimgcls model file (a "
                                   "safetensors file without skimgcls metadata).")
    if metadata.get("format_version") not in {str(v) for v in READABLE_FORMATS}:
        raise UnsafeModelFileError(
            f"{path} uses model file format {metadata.get('format_version')!r}; this "
            f"skimgcls ({__version__}) reads formats {READABLE_FORMATS[0]} to "
            f"{READABLE_FORMATS[-1]}. Upgrade skimgcls."
        )
    saved = metadata.get("skimgcls_version")
    if not _compatible(saved, __version__):
        raise UnsafeModelFileError(
            f"{path} was saved by skimgcls {saved}, which this version "
            f"({__version__}) cannot load: files are read by the same minor version "
            f"(0.x) or by a later version of the same major one (1.x and up). "
            f"Load it with skimgcls=={saved}, or retrain."
        )


class _Decoder:
    def __init__(self, tensors, trusted, map_location, format_version=FORMAT_VERSION):
        self.tensors = tensors
        self.format_version = format_version
        self.trusted = set(trusted)
        self.map_location = map_location
        self.used = set()

    def tensor(self, key):
        if key not in self.tensors:
            raise UnsafeModelFileError(f"The file refers to a missing tensor {key!r}.")
        self.used.add(key)
        return self.tensors[key]

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        tag = value.get("$")
        if tag == "float":
            return float(value["v"])
        if tag == "scalar":
            dtype = np.dtype(_safe_dtype(value["dtype"], "biuf"))
            return dtype.type(self.decode(value["v"]))
        if tag == "ndarray":
            dtype = np.dtype(_safe_dtype(value["dtype"], "biuf"))
            return self.tensor(value["key"]).numpy().astype(dtype, copy=False)
        if tag == "ndarray_list":
            dtype = np.dtype(_safe_dtype(value["dtype"], "UO"))
            items = [self.decode(v) for v in value["items"]]
            array = np.empty(len(items), dtype=dtype)
            array[:] = items
            return array.reshape(value["shape"])
        if tag == "tensor":
            return self.tensor(value["key"])
        if tag == "tuple":
            return tuple(self.decode(v) for v in value["items"])
        if tag in ("dict", "bunch"):
            pairs = zip((self.decode(k) for k in value["keys"]),
                        (self.decode(v) for v in value["values"]))
            if tag == "dict":
                return dict(pairs)
            from sklearn.utils import Bunch

            return Bunch(**{str(k): v for k, v in pairs})
        if tag == "class":
            return self.resolve(value, estimator=False)
        if tag == "estimator":
            return self.estimator(value)
        raise UnsafeModelFileError(f"Unknown entry {tag!r} in the model file.")

    def resolve(self, ref, *, estimator):
        module, name = ref.get("module", ""), ref.get("name", "")
        dotted = f"{module}.{name}"
        allowed = ESTIMATOR_MODULES if estimator else tuple(CLASS_MODULES)
        inside = any(module == p or module.startswith(p + ".") for p in allowed)
        if (not _NAME.fullmatch(dotted) or "__" in dotted
                or not (inside or dotted in self.trusted)):
            raise UnsafeModelFileError(
                f"The model file asks for {dotted!r}, which is outside the allowlist "
                f"of classes load may import ({', '.join(allowed)}). If you trust "
                f"the file and this class, pass trusted=[{dotted!r}]."
            )
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part, None)
        base = None if estimator or dotted in self.trusted else CLASS_MODULES[
            next(p for p in allowed if module == p or module.startswith(p + "."))]
        if not isinstance(obj, type) or (base is not None and not issubclass(
                obj, _import_dotted(base))):
            raise UnsafeModelFileError(
                f"The model file names {dotted!r}, which is not an allowed class.")
        if estimator and not _is_estimator_like_class(obj):
            raise UnsafeModelFileError(f"{dotted!r} is not an estimator.")
        return obj

    def estimator(self, spec):
        cls = self.resolve(spec, estimator=True)
        params = {k: self.decode(v) for k, v in spec["params"].items()}
        try:
            est = cls(**params)
        except TypeError as exc:
            raise UnsafeModelFileError(
                f"Cannot rebuild {cls.__name__} with the saved parameters ({exc}); "
                "the installed scikit-learn/skimgcls may differ from the saving one."
            ) from None
        nets = {}
        for attr, value in spec["state"].items():
            if not _ATTRIBUTE.fullmatch(attr) or attr.startswith("__"):
                raise UnsafeModelFileError(f"Invalid attribute name {attr!r}.")
            if isinstance(value, dict) and value.get("$") == "skorch_net":
                nets[attr] = value
            else:
                setattr(est, attr, self.decode(value))
        for attr, value in nets.items():
            setattr(est, attr, self.net(est, value))
        return est

    def net(self, est, spec):
        if not isinstance(est, CNNClassifier):
            raise UnsafeModelFileError(
                f"{type(est).__name__} cannot rebuild its network from a file.")
        if self.format_version < 2 and _is_simple_cnn(est.module):
            raise UnsafeModelFileError(
                "This file (model file format 1) holds a 'simple_cnn' network saved "
                "before its dense layer changed the order in which it reads its "
                "inputs (format 2): its weights would predict wrongly with this skimgcls. "
                "Retrain the model and save it again."
            )
        saved = est.device_
        est.device_ = _target_device(saved, self.map_location)
        if torch.device(est.device_).type != torch.device(saved).type:
            est.precision_ = resolve_precision(est.precision, est.device_)
        with torch.random.fork_rng(devices=[]):  # random init, then overwritten
            net = rebuild_net(est)
        state = {k: self.tensor(v) for k, v in spec["module"].items()}
        try:
            net.module_.load_state_dict(state)
        except RuntimeError as exc:
            raise UnsafeModelFileError(
                f"The saved weights do not fit the network {est.module!r} ({exc})."
            ) from None
        net.history = History(spec["history"])
        return net


def _is_simple_cnn(module):
    return ((isinstance(module, str) and module == "simple_cnn")
            or module is SimpleCNN or isinstance(module, SimpleCNN))


def _safe_dtype(dtype, kinds):
    if not isinstance(dtype, str) or np.dtype(dtype).kind not in kinds:
        raise UnsafeModelFileError(f"Unexpected dtype {dtype!r} in the model file.")
    return dtype


def _import_dotted(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_estimator_like_class(cls):
    return hasattr(cls, "get_params") and hasattr(cls, "set_params")


def _target_device(saved, map_location):
    if map_location is not None:
        return str(map_location)
    kind = torch.device(saved).type
    if kind == "cuda" and torch.cuda.is_available():
        index = torch.device(saved).index or 0
        return saved if index < torch.cuda.device_count() else "cuda"
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and mps is not None and mps.is_available():
        return saved
    return "cpu" if kind in ("cuda", "mps") else saved


def load(path, *, sha256=None, map_location=None, trusted=()):
    """Load an estimator saved by :func:`save`, without running code from it.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    sha256 : str or None, default=None
        The expected SHA-256 of the whole file, as returned by :func:`save`
        (e.g. published next to the file by its author). When given, a file
        with another digest is refused.
    map_location : str, torch.device or None, default=None
        Device of the loaded networks. None keeps the saving device when it
        exists here and uses the CPU otherwise (a model trained on a GPU loads
        on a machine without one).
    trusted : sequence of str, default=()
        Dotted names of extra classes the file may instantiate, e.g.
        ``["mypackage.MyTransformer"]`` for your own estimators. Only list
        classes whose ``__init__`` you trust.

    Returns
    -------
    estimator : estimator
        The estimator, fitted if it was fitted when saved.

    Raises
    ------
    skimgcls.exceptions.UnsafeModelFileError
        If the file is corrupted or was modified (hash mismatch), is not a
        skimgcls model file, comes from an incompatible version, or names a
        class outside the allowlist.
    """
    st = _require_safetensors()
    path = Path(path)
    raw = path.read_bytes()
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != str(sha256).lower():
        raise UnsafeModelFileError(
            f"{path} has SHA-256 {hashlib.sha256(raw).hexdigest()}, not the expected "
            f"{sha256}: it is not the file that was published. Do not use it."
        )
    metadata = _read_header(raw, path)
    _check_metadata(metadata, path)
    try:
        tensors = st.load(raw)
    except Exception as exc:
        raise UnsafeModelFileError(f"{path} is truncated or corrupted ({exc}).") from None
    expected = metadata.pop("sha256", None)
    if _digest(metadata, tensors) != expected:
        raise UnsafeModelFileError(
            f"{path} does not match its hash: it was corrupted or modified after it "
            "was saved. Do not use it; get the file again from its author."
        )
    decoder = _Decoder(tensors, trusted, map_location,
                       format_version=int(metadata["format_version"]))
    return decoder.decode(json.loads(metadata["spec"]))
