"""Reading pretrained weights: torch's cache and downloads, local files, state dicts.

Private helpers of :mod:`skimgcls.backbones` (which re-exports the public
names).
"""

import os
import warnings
from collections.abc import Mapping
from urllib.parse import urlparse

import torch

__all__ = [
    "PretrainedWeightsError",
    "expected_weights_path",
    "load_state_dict_file",
    "read_state_dict",
    "split_state",
]


class PretrainedWeightsError(OSError):
    """Pretrained weights could not be downloaded and are not cached.

    Raised by ``pretrained=True`` when torchvision's weights file is neither in
    torch's cache nor downloadable (no network).  The message says where torch
    looks for the file and how to pass a local copy instead.
    """


def split_state(state):
    """Return (body state, head state) of a torchvision or BackboneNet state dict."""
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("body.") for k in state):
        body = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
        head = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
        return body, head
    return state, {}


def read_state_dict(pretrained, weights, *, progress=True):
    """Return the state dict ``pretrained`` designates.

    Parameters
    ----------
    pretrained : True, str, path-like or mapping
        True: torchvision's ``weights`` from torch's cache, downloaded when
        missing. A path: a ``.pth``/``.pt``/``.safetensors`` file. A mapping:
        a state dict (or a training checkpoint holding one).
    weights : torchvision.models.WeightsEnum member
        The backbone's default weights (used when ``pretrained`` is True).
    progress : bool, default=True
        Show torch's progress bar (on stderr) while downloading. Weights files
        run from tens to hundreds of MB, so a download is not silent by
        default. False leaves torch's one line naming the URL and the cache
        file (for a caller whose ``verbose`` is 0).

    Returns
    -------
    state_dict : mapping of str to torch.Tensor
    """
    if pretrained is True:
        return _download_state_dict(weights, progress=progress)
    if isinstance(pretrained, Mapping):
        return _unwrap_checkpoint(pretrained)
    if isinstance(pretrained, (str, os.PathLike)):
        return _unwrap_checkpoint(load_state_dict_file(pretrained))
    raise TypeError(
        "pretrained must be True, a path to a .pth/.safetensors file or a state "
        f"dict; got {type(pretrained).__name__}."
    )


def _unwrap_checkpoint(obj):
    """Accept ``{'state_dict': ...}`` / ``{'model': ...}`` training checkpoints."""
    if isinstance(obj, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"Expected a state dict (a mapping of parameter names to tensors); got "
            f"{type(obj).__name__}. Save weights with torch.save(model.state_dict(), "
            "path)."
        )
    return obj


def load_state_dict_file(path):
    """Read a state dict from a ``.safetensors`` file or a torch ``.pth`` file.

    Parameters
    ----------
    path : str or path-like
        The file. ``.safetensors`` files need the ``safetensors`` package;
        other files are read with ``torch.load(weights_only=True)``.

    Returns
    -------
    state_dict : dict of str to torch.Tensor
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained={path!r}: no such file. Pass the path of a .pth/.pt file "
            "(torch.save(model.state_dict(), path)) or a .safetensors file, or "
            "pretrained=True for torchvision's default weights."
        )
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(
                "Reading .safetensors weights needs the safetensors package, a "
                "dependency of skimgcls: pip install safetensors."
            ) from exc
        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def expected_weights_path(weights):
    """Return where torch caches (and looks for) a torchvision weights file.

    Parameters
    ----------
    weights : torchvision.models.WeightsEnum member
        E.g. ``ResNet18_Weights.DEFAULT``.

    Returns
    -------
    path : str
        ``<torch.hub.get_dir()>/checkpoints/<file name of the URL>``; torch's
        hub directory is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``).
    """
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _download_state_dict(weights, *, progress=True):
    path = expected_weights_path(weights)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.load/hub chatter on old files
            return weights.get_state_dict(progress=progress, weights_only=True)
    except OSError as exc:  # URLError, HTTPError, socket errors, disk errors
        raise PretrainedWeightsError(
            f"Could not get the pretrained weights {weights} ({exc}). torch looks "
            f"for them at {path} (set TORCH_HOME to change the cache directory) and "
            f"downloads them from {weights.url} when that file is missing, which "
            "needs network access. Offline: download that URL elsewhere and copy "
            f"the file to {path}, or pass its path: pretrained='/path/to/"
            f"{os.path.basename(path)}' (a .pth or .safetensors state dict). "
            "pretrained=False trains from random weights."
        ) from exc
