"""Per-epoch checkpoints of a :class:`~skimgcls.CNNClassifier` fit, and resume.

A checkpoint is one file, ``<directory>/checkpoint.pt``, rewritten atomically
(temporary file, ``fsync``, ``os.replace``) at the end of every epoch, so a
process killed at any instant leaves either the previous or the new
checkpoint, never a torn one. It holds everything the next epoch depends on:

* the module's weights and buffers and the optimizer's state,
* the state of the learning-rate scheduler and early-stopping callbacks,
* the training history,
* the torch random number generators (batch order, dropout, augmentation),
* a fingerprint of the parameters and the data, so that a checkpoint is never
  resumed by a different fit.

The file is written with :func:`torch.save` and read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain
Python values and never runs code from the file.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, LRScheduler

__all__ = ["Checkpointer", "fit_fingerprint"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1

#: Parameters that do not change what a fit computes, so a resumed fit may
#: differ in them.
_IGNORED_PARAMS = {"verbose", "callbacks", "device", "checkpoint", "warm_start"}

#: Images hashed to recognize the training data: enough to catch another data
#: set, few enough to cost nothing next to an epoch.
_HASHED_IMAGES = 256


def _describe(value):
    """A JSON-able description of a parameter value, stable across processes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "get_params"):
        return [type(value).__qualname__, _describe(value.get_params(deep=False))]
    return type(value).__qualname__


def fit_fingerprint(params, classes, X, y, sample_weight):
    """Describe a fit: its parameters, classes and (a hash of) its data.

    Parameters
    ----------
    params : dict
        The estimator's ``get_params(deep=False)``.
    classes : ndarray
        The class labels.
    X, y, sample_weight : ndarray
        Validated images, encoded labels and sample weights.

    Returns
    -------
    fingerprint : dict
        JSON-able; two fits with equal fingerprints compute the same thing.
    """
    digest = hashlib.sha256()
    digest.update(repr((X.shape, X.dtype.str)).encode())
    step = max(1, len(X) // _HASHED_IMAGES)
    digest.update(np.ascontiguousarray(X[::step]).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(np.ascontiguousarray(sample_weight).tobytes())
    return {
        "params": {k: _describe(v) for k, v in sorted(params.items())
                   if k not in _IGNORED_PARAMS},
        "classes": [repr(c) for c in np.asarray(classes).tolist()],
        "data": digest.hexdigest(),
    }


def _differences(saved, current):
    diffs = []
    for key in sorted(set(saved["params"]) | set(current["params"])):
        old, new = saved["params"].get(key), current["params"].get(key)
        if old != new:
            diffs.append(f"{key} ({old!r} in the checkpoint, {new!r} now)")
    if saved["classes"] != current["classes"]:
        diffs.append("the classes")
    if saved["data"] != current["data"]:
        diffs.append("the training data")
    return diffs


def to_cpu(obj):
    """Deep copy of nested containers with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _plain(value):
    """NumPy scalars to Python scalars (for JSON and weights_only loading)."""
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value):
    """NumPy/torch scalars as numbers; anything else a callback recorded as text."""
    if isinstance(value, (np.generic, torch.Tensor)) and value.ndim == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return repr(value)


def _callback_states(net):
    states = {}
    for name, cb in net.callbacks_:
        if isinstance(cb, LRScheduler) and getattr(cb, "lr_scheduler_", None) is not None:
            states[name] = {"lr_scheduler": cb.lr_scheduler_.state_dict(),
                            "batch_idx": int(cb.batch_idx_)}
        elif isinstance(cb, EarlyStopping):
            best = getattr(cb, "best_model_weights_", None)
            states[name] = {
                "misses": int(cb.misses_),
                "dynamic_threshold": float(_plain(cb.dynamic_threshold_)),
                "best_epoch": int(cb.best_epoch_),
                "best_model_weights": None if best is None else to_cpu(best),
            }
    return states


def _apply_callback_states(net, states):
    for name, cb in net.callbacks_:
        state = states.get(name)
        if state is None:
            continue
        if isinstance(cb, LRScheduler) and "lr_scheduler" in state:
            cb.lr_scheduler_.load_state_dict(state["lr_scheduler"])
            cb.batch_idx_ = state["batch_idx"]
        elif isinstance(cb, EarlyStopping) and "misses" in state:
            cb.misses_ = state["misses"]
            cb.dynamic_threshold_ = state["dynamic_threshold"]
            cb.best_epoch_ = state["best_epoch"]
            best = state["best_model_weights"]
            if best is not None:
                device = next(net.module_.parameters()).device
                best = {k: v.to(device) for k, v in best.items()}
            cb.best_model_weights_ = best


def unwrapped_module(net):
    """``net.module_`` without the accelerator's DistributedDataParallel wrapper.

    In a data-parallel fit ``net.module_`` is the wrapper, which has neither
    the network's methods and attributes (``embed``, ``unfreeze``...) nor its
    state dict keys; the network it wraps shares its parameters and buffers.
    Checkpoints hold the plain network's keys, so that a multi-process fit
    resumes in one process and the other way round.
    """
    accelerator = getattr(net, "accelerator", None)
    if accelerator is None:
        return net.module_
    return accelerator.unwrap_model(net.module_, keep_fp32_wrapper=False)


def _rng_state():
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def atomic_write(path, write):
    """Write a file through ``write(f)`` so that it is replaced atomically.

    The data go to ``<path>.tmp``, are flushed to disk, and the temporary file
    is renamed over ``path``: readers see the old or the new file, never a
    partial one, even if the process is killed meanwhile.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Checkpointer:
    """Save a net's training state each epoch; restore it to resume.

    Parameters
    ----------
    directory : str or path-like
        Where ``checkpoint.pt`` lives; created if missing.
    fingerprint : dict
        From :func:`fit_fingerprint`; a checkpoint with another fingerprint
        is refused.
    """

    def __init__(self, directory, fingerprint):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.resume = None

    @property
    def path(self):
        return self.directory / CHECKPOINT_NAME

    def load(self):
        """Read the checkpoint if there is one; return ``(epochs_done, stopped)``."""
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"checkpoint={str(self.directory)!r} is a file; pass a "
                             "directory (it is created if missing).")
        if not self.path.exists():
            return 0, False
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"Cannot read the checkpoint {str(self.path)!r} ({exc}). Delete it "
                "to train from scratch."
            ) from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{str(self.path)!r} is not a skimgcls checkpoint of "
                             f"format {FORMAT}. Delete it to train from scratch.")
        diffs = _differences(state["fingerprint"], self.fingerprint)
        if diffs:
            raise ValueError(
                f"The checkpoint in {str(self.directory)!r} comes from a different "
                f"fit: {', '.join(diffs)} differ. Resume with the same parameters "
                "and data, or pass another checkpoint directory (or delete this "
                "one) to train from scratch."
            )
        self.resume = state
        return state["epochs"], state["stopped"]

    def save(self, net, *, stopped):
        """Write the state of ``net`` at the end of an epoch.

        In data-parallel training (``net.accelerator``) every process holds
        the same state; the main process writes it, the others wait for it.
        """
        accelerator = getattr(net, "accelerator", None)
        if accelerator is not None and not accelerator.is_main_process:
            accelerator.wait_for_everyone()
            return
        state = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "epochs": len(net.history),
            "stopped": bool(stopped),
            "module": unwrapped_module(net).state_dict(),
            # ImageNet has one optimizer, skorch's "optimizer" (optimizer_).
            "optimizers": {"optimizer": net.optimizer_.state_dict()},
            "callbacks": _callback_states(net),
            "history": json.dumps(net.history.to_list(), default=_json_default),
            "rng": _rng_state(),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: torch.save(state, f))
        if accelerator is not None:
            accelerator.wait_for_everyone()

    def restore(self, net):
        """Load the checkpoint read by :meth:`load` into an initialized net.

        Called after the callbacks' ``on_train_begin``, which builds the
        learning-rate scheduler whose state is then overwritten.
        """
        state, self.resume = self.resume, None
        if state is None:
            return
        unwrapped_module(net).load_state_dict(state["module"])
        for name, optimizer_state in state["optimizers"].items():
            getattr(net, name + "_").load_state_dict(optimizer_state)
        net.history.clear()
        net.history.extend(json.loads(state["history"]))
        _apply_callback_states(net, state["callbacks"])
        _set_rng_state(state["rng"])
