"""Torchvision and timm classification models as skimgcls networks (transfer learning).

Every name of ``torchvision.models.list_models(module=torchvision.models)``
(``'resnet18'``, ``'vgg11'``, ``'efficientnet_b0'``, ``'mobilenet_v3_small'``,
``'convnext_tiny'``, ``'vit_b_16'``, ...) is a network name of
:class:`~skimgcls.CNNClassifier`: ``CNNClassifier(module='resnet18')``.  So is
every timm model, prefixed with ``'timm/'`` (``'timm/convnext_atto'``,
``'timm/efficientnet_b0'``, ``'timm/vit_tiny_patch16_224'``, optionally with a
pretrained tag: ``'timm/resnet18.a1_in1k'``), when the optional ``timm``
package is installed (``pip install 'skimgcls[timm]'``).  Either is built as a
:class:`BackboneNet`:

``adapter``
    An :class:`InputAdapter` that turns the classifier's input (float images in
    [0, 1], 1, 3 or 4 channels, any size) into what the backbone was trained
    on: resized to its input size, gray repeated to RGB, normalized with its
    mean and standard deviation.  Because this preprocessing lives inside the
    module, a search over ``module`` needs no pipeline step per backbone.
``body``
    The torchvision model with its last classification layer replaced by an
    identity, or the timm model created with ``num_classes=0``: it returns
    the pooled embedding.
``head``
    A new classification layer (optionally dropout and a hidden layer) with one
    output per class.

Weights come from torchvision's default weights or timm's pretrained weights
(``pretrained=True``), a local file (``.pth``/``.pt``/``.safetensors``) or a
state dict.  :meth:`BackboneNet.freeze`
freezes the backbone or its leading blocks; :class:`UnfreezeBackbone` unfreezes
it at a given epoch.
"""

import difflib
import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral

import torch
from torch import nn
from torch.nn import functional as F

from . import _timm
from ._weights import (
    PretrainedWeightsError,
    expected_weights_path,
    load_state_dict_file,
    read_state_dict,
    split_state,
)

__all__ = [
    "BackboneNet",
    "InputAdapter",
    "InputSpec",
    "PretrainedWeightsError",
    "backbone_input_spec",
    "build_backbone",
    "expected_weights_path",
    "list_backbones",
    "load_state_dict_file",
]

#: Containers whose children are the backbone's blocks (rather than the
#: container being one block): VGG/EfficientNet/MobileNet/ConvNeXt/DenseNet
#: ``features``, ViT ``encoder`` and its ``layers``, RegNet ``trunk_output``,
#: MNASNet ``layers``, MaxViT ``blocks``.
_EXPANDED_CONTAINERS = ("features", "encoder", "layers", "trunk_output", "blocks")

#: Normalization layers join the block before them (a conv and its BatchNorm
#: are one block).
_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)

#: Number of outputs of torchvision's ImageNet classifiers; the layer that
#: produces them is the head that gets replaced.
_IMAGENET_CLASSES = 1000

#: Auxiliary classifiers (GoogLeNet, Inception v3) are not built; their weights
#: are dropped when loading.
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")

#: Old DenseNet checkpoints name ``norm1`` as ``norm.1``.
_DENSENET_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
    r"|running_var))$"
)


# -- names and expected input -----------------------------------------------
@lru_cache(maxsize=1)
def _backbone_names():
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


_SOURCES = ("all", "torchvision", "timm")


def list_backbones(source="all", *, pretrained=False, pattern=None):
    """Return the names of the torchvision and timm classification models.

    Each of them is a valid ``module`` of :class:`~skimgcls.CNNClassifier` and
    ``backbone`` of :class:`~skimgcls.BackboneFeatures`.

    Parameters
    ----------
    source : {'all', 'torchvision', 'timm'}, default='all'
        ``'torchvision'``: torchvision's classification models (``'resnet18'``).
        ``'timm'``: timm's models, prefixed ``'timm/'`` (``'timm/resnet18'``);
        needs the optional timm package (``pip install 'skimgcls[timm]'``).
        ``'all'``: both, the timm names only when timm is installed.
    pretrained : bool, default=False
        For timm: False lists the architectures (each has default pretrained
        weights when timm has any); True lists only architectures with
        pretrained weights, once per set of weights, with timm's pretrained
        tag (``'timm/resnet18.a1_in1k'``, ``'timm/resnet18.tv_in1k'``; these
        are also the names of the weights' Hugging Face Hub repositories).
        torchvision's names are the same either way (each has default
        weights).
    pattern : str or None, default=None
        Keep only names matching this shell-style wildcard, e.g.
        ``'timm/convnext*'`` or ``'*efficientnet*'``.

    Returns
    -------
    names : list of str
        Sorted torchvision names, then sorted timm names.

    Examples
    --------
    >>> from skimgcls.backbones import list_backbones
    >>> 'resnet18' in list_backbones() and 'vit_b_16' in list_backbones()
    True
    >>> list_backbones('timm', pattern='timm/resnet1*t')  # doctest: +SKIP
    ['timm/resnet10t', 'timm/resnet14t']
    """
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}; got {source!r}.")
    names = [] if source == "timm" else list(_backbone_names())
    if source == "timm" or (source == "all" and _timm.timm_available()):
        names += _timm.timm_names(bool(pretrained))
    if pattern is not None:
        names = fnmatch.filter(names, pattern)
    return names


def is_backbone(name):
    """Return True if ``name`` is a torchvision or timm (``'timm/...'``) model name."""
    if _timm.is_timm_name(name):
        try:
            _timm.check_timm_name(name)
        except ValueError:
            return False
        return True
    return isinstance(name, str) and name in _backbone_names()


def suggest_backbones(name, n=3):
    """Return up to ``n`` backbone names close to ``name`` (for error messages).

    torchvision names for plain names, timm names for ``'timm/...'`` names; a
    timm model given without the prefix suggests its ``'timm/'`` name.
    """
    if _timm.is_timm_name(name):
        return _timm.suggest_timm(name, n=n)
    close = difflib.get_close_matches(str(name), _backbone_names(), n=n, cutoff=0.6)
    timm_close = _timm.suggest_timm(str(name), n=n)
    exact = [c for c in timm_close[:1] if c == _timm.PREFIX + str(name)]
    return (exact + (close or timm_close[len(exact):]))[:n]


def _check_name(name):
    if _timm.is_timm_name(name):
        _timm.check_timm_name(name)
        return
    if not is_backbone(name):
        close = suggest_backbones(name)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown torchvision backbone {name!r}.{hint} Valid names are listed by "
            "skimgcls.backbones.list_backbones(), e.g. 'resnet18', 'efficientnet_b0', "
            "'mobilenet_v3_small', 'convnext_tiny', 'vit_b_16'; timm models are "
            "named 'timm/<model>', e.g. 'timm/convnext_atto'."
        )


def default_weights(name):
    """Return torchvision's default weights enum member for backbone ``name``."""
    import torchvision

    _check_name(name)
    return torchvision.models.get_model_weights(name).DEFAULT


@dataclass(frozen=True)
class InputSpec:
    """What a backbone's pretrained weights expect as input.

    Attributes
    ----------
    size : tuple of int
        ``(H, W)`` the weights were trained and evaluated at (torchvision's
        crop size).
    resize_size : tuple of int
        Size torchvision's evaluation transform resizes to before the center
        crop.
    mean, std : tuple of float
        Per-channel (RGB) normalization of images in [0, 1].
    """

    size: tuple
    resize_size: tuple
    mean: tuple
    std: tuple


def backbone_input_spec(name):
    """Return the input size and normalization backbone ``name`` expects.

    Read from the metadata of torchvision's default weights, or from timm's
    pretrained config (``input_size``, ``crop_pct``, ``mean``, ``std``) for
    ``'timm/...'`` names, so it is available offline.

    Parameters
    ----------
    name : str
        A name of :func:`list_backbones`.

    Returns
    -------
    spec : InputSpec
        ``size``, ``resize_size``, ``mean`` and ``std``.

    Examples
    --------
    >>> from skimgcls.backbones import backbone_input_spec
    >>> spec = backbone_input_spec('efficientnet_b1')
    >>> spec.size, spec.mean
    ((240, 240), (0.485, 0.456, 0.406))
    """
    if _timm.is_timm_name(name):
        size, resize_size, mean, std = _timm.input_spec(_timm.check_timm_name(name))
        return InputSpec(size=size, resize_size=resize_size, mean=mean, std=std)
    transform = default_weights(name).transforms()
    return InputSpec(
        size=_pair(transform.crop_size), resize_size=_pair(transform.resize_size),
        mean=tuple(float(m) for m in transform.mean),
        std=tuple(float(s) for s in transform.std),
    )


def _pair(size):
    size = list(size) if isinstance(size, (list, tuple)) else [size]
    size = [int(s) for s in size]
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _resolve_input_size(input_size, name, image_size):
    """``'auto'`` -> the weights' size, int -> square, None -> the data's size."""
    if isinstance(input_size, str) and input_size == "auto":
        return backbone_input_spec(name).size
    if input_size is None:
        return None if image_size is None else _pair(image_size)
    if not (_is_int(input_size) or (isinstance(input_size, (tuple, list))
                                    and len(input_size) == 2
                                    and all(_is_int(s) for s in input_size))):
        raise ValueError(
            "input_size must be 'auto', None, an int or a pair (H, W) of ints; got "
            f"{input_size!r}."
        )
    size = _pair(input_size)
    if min(size) < 1:
        raise ValueError(f"input_size must be positive; got {input_size!r}.")
    return size


# -- modules ----------------------------------------------------------------
class InputAdapter(nn.Module):
    """Resize, gray -> RGB and normalize images for a pretrained backbone.

    Parameters
    ----------
    size : tuple of int or None
        ``(H, W)`` to resize to (bilinear, antialiased when shrinking); None
        keeps the input size.
    mean, std : sequence of 3 floats
        RGB normalization: the output is ``(x - mean) / std``.

    Notes
    -----
    Input is float ``(n, C, H, W)`` in [0, 1] (what
    :class:`~skimgcls.CNNClassifier` feeds: uint8 images are scaled by 1/255).
    Gray images (``C=1``) are **repeated** to three channels, which the
    normalization does by broadcasting: the first convolution and its
    pretrained weights stay unchanged (no first-layer surgery), and a pretrained
    network sees a gray image exactly as it saw gray photos in training.  RGBA
    images (``C=4``) drop the alpha channel.
    """

    def __init__(self, size, mean, std):
        super().__init__()
        self.size = None if size is None else _pair(size)
        # Non-persistent: the state dict holds only learned weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)
                             .view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)
                             .view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        """Return normalized 3-channel images of shape ``(n, 3, *size)``."""
        channels = x.shape[1]
        if channels == 4:
            x = x[:, :3]
        elif channels not in (1, 3):
            raise ValueError(
                f"Backbones take images with 1, 3 or 4 channels; got {channels}."
            )
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                              antialias=shrink)
        # Broadcasting (n, 1, H, W) against (1, 3, 1, 1) repeats gray to RGB.
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self):
        return f"size={self.size}"


def make_head(in_features, n_classes, *, dropout=0.0, hidden=None):
    """Return the classification head: [dropout, hidden + ReLU + dropout,] linear.

    Parameters
    ----------
    in_features : int
        Size of the embedding.
    n_classes : int or None
        Number of logits; None returns an identity (embeddings out).
    dropout : float, default=0.0
        Dropout probability before each linear layer.
    hidden : int or None, default=None
        Units of an optional hidden layer.

    Returns
    -------
    head : torch.nn.Module
    """
    if n_classes is None:
        return nn.Identity()
    layers = [nn.Dropout(dropout)] if dropout else []
    if hidden:
        layers += [nn.Linear(in_features, hidden), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout else []
        in_features = hidden
    layers.append(nn.Linear(in_features, n_classes))
    return nn.Sequential(*layers)


def _builder_kwargs(name, input_size, kwargs):
    """Arguments of the torchvision builder: family needs + the user's."""
    kwargs = dict(kwargs)
    for reserved in ("weights", "num_classes"):
        if reserved in kwargs:
            raise ValueError(
                f"{reserved!r} is set by skimgcls (weights via pretrained=..., the "
                "number of classes from y); remove module__" + reserved + "."
            )
    if name.startswith("vit_"):
        if input_size is None or input_size[0] != input_size[1]:
            raise ValueError(
                f"{name!r} needs square images of a fixed size; got input_size="
                f"{input_size}. Pass module__input_size=<int> (a multiple of the "
                "patch size) or 'auto'."
            )
        patch = int(re.search(r"_(\d+)$", name).group(1))
        if input_size[0] % patch:
            raise ValueError(
                f"{name!r} cuts images into {patch}x{patch} patches, so its input "
                f"size must be a multiple of {patch}; got input_size={input_size[0]}. "
                f"Pass e.g. module__input_size={max(patch, input_size[0] // patch * patch)}."
            )
        kwargs["image_size"] = input_size[0]
    elif name.startswith("maxvit"):
        kwargs["input_size"] = input_size
    elif name in ("googlenet", "inception_v3"):
        # No auxiliary classifiers (their tuple outputs break a plain loss); the
        # input transform is what torchvision's pretrained weights expect.
        kwargs = {"aux_logits": False, "transform_input": True,
                  "init_weights": True, **kwargs}
    return kwargs


def _find_classifier(body):
    """Return the dotted name of the layer that outputs the ImageNet logits."""
    found = None
    for name, module in body.named_modules():
        if (isinstance(module, nn.Linear) and module.out_features == _IMAGENET_CLASSES
                or isinstance(module, nn.Conv2d)
                and module.out_channels == _IMAGENET_CLASSES):
            found = name
    if found is None:  # pragma: no cover - every torchvision classifier has one
        raise RuntimeError("Could not find the classification layer to replace.")
    return found


def _replace(root, dotted, new):
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def _has_params(module):
    return any(True for _ in module.parameters())


def _block_groups(body):
    """Split a torchvision model into its blocks, in forward order.

    A block is a list of modules (and loose parameters, e.g. ViT's class token
    and position embedding, which join the first block).  Children of
    containers named in ``_EXPANDED_CONTAINERS`` are blocks of their own; a
    normalization layer joins the block before it.
    """
    groups, loose = [], []

    def visit(module):
        loose.extend(p for p in module._parameters.values() if p is not None)
        for name, child in module.named_children():
            if not _has_params(child):
                continue
            if name in _EXPANDED_CONTAINERS and len(list(child.children())) > 1:
                visit(child)
            elif isinstance(child, _NORM_LAYERS) and groups:
                groups[-1].append(child)
            else:
                groups.append([child])

    visit(body)
    if loose:
        groups = [loose + groups[0]] + groups[1:] if groups else [loose]
    return groups


class BackboneNet(nn.Module):
    """A torchvision or timm classification model with a new head and an input adapter.

    ``forward(x) = head(body(adapter(x)))``: see the module docstring of
    :mod:`skimgcls.backbones`.  Usually built by name through
    :class:`~skimgcls.CNNClassifier` (``module='resnet18'``) or
    :func:`build_backbone`.

    Parameters
    ----------
    name : str
        A name of :func:`list_backbones`: a torchvision model (``'resnet18'``)
        or a timm model (``'timm/resnet18'``, ``'timm/resnet18.a1_in1k'``).
    n_classes : int or None
        Number of logits; None makes ``forward`` return the embedding.
    in_channels : int, default=3
        Channels of the input images (1, 3 or 4; see :class:`InputAdapter`).
    image_size : tuple of int or None, default=None
        ``(H, W)`` of the data; used only when ``input_size=None``.
    input_size : 'auto', int, tuple of int or None, default='auto'
        Size the adapter resizes images to. ``'auto'``: the size of
        torchvision's default weights (224 for most models, 240-600 for
        EfficientNets, 299 for Inception, 518 for ``vit_h_14``) or of timm's
        pretrained config (``input_size``).  Smaller sizes
        (e.g. 64) are much faster and fine for small images; None feeds the
        images at their own size.  ViTs need a multiple of the patch size;
        timm models with a fixed input size (ViT, MaxViT...) are created for
        this size (``img_size``).
    head_dropout : float, default=0.0
        Dropout before the head's linear layer(s).
    head_hidden : int or None, default=None
        Units of a hidden layer (with ReLU) in the head.
    **kwargs : dict
        Passed to the torchvision builder (e.g. ``stochastic_depth_prob`` of
        ConvNeXt, ``dropout`` of EfficientNet's classifier) or to
        ``timm.create_model`` (e.g. ``drop_path_rate``, ``drop_rate``).

    Attributes
    ----------
    name : str
        The backbone name.
    adapter : InputAdapter
        Resize, gray -> RGB, normalization.
    body : torch.nn.Module
        The torchvision model whose last classification layer (``head_path``)
        is an identity, or the timm model created with ``num_classes=0``
        (its ``get_classifier()`` is an identity).
    head : torch.nn.Module
        The new head.
    head_path : str
        Dotted name of the replaced layer in the torchvision model (``'fc'``,
        ``'classifier.6'``, ``'heads.head'``...), or of the classifier named by
        timm's pretrained config (``'fc'``, ``'head.fc'``, ``'head'``...).
    embedding_dim : int
        Size of the embedding the body returns.
    input_spec : InputSpec
        The input the default weights expect (size, mean, std).
    frozen_blocks : int
        Number of leading blocks frozen by :meth:`freeze`.
    source : {'torchvision', 'timm'}
        Where the model comes from (``'timm'`` for ``'timm/...'`` names).

    Examples
    --------
    >>> import torch
    >>> from skimgcls.backbones import BackboneNet
    >>> net = BackboneNet('mobilenet_v3_small', n_classes=10, in_channels=1,
    ...                   input_size=32)
    >>> net(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> net.embedding_dim, net.head_path
    (1024, 'classifier.3')
    """

    def __init__(self, name, n_classes, *, in_channels=3, image_size=None,
                 input_size="auto", head_dropout=0.0, head_hidden=None, **kwargs):
        import torchvision

        super().__init__()
        _check_name(name)
        if in_channels not in (1, 3, 4):
            raise ValueError(
                f"Backbones take images with 1, 3 or 4 channels; got {in_channels}."
            )
        self.name = name
        self.input_spec = backbone_input_spec(name)
        size = _resolve_input_size(input_size, name, image_size)
        self.adapter = InputAdapter(size, self.input_spec.mean, self.input_spec.std)
        if self.source == "timm":
            self.body, self._create_kwargs = _timm.create_body(
                name[len(_timm.PREFIX):], size, kwargs)
            self.head_path = (_timm.classifier_names(self.body) or ("",))[0]
            self.embedding_dim = _timm.embedding_dim(self.body)
        else:
            self.body = torchvision.models.get_model(
                name, weights=None, **_builder_kwargs(name, size, kwargs))
            self.head_path = _find_classifier(self.body)
            old = _replace(self.body, self.head_path, nn.Identity())
            self.embedding_dim = getattr(old, "in_features", None) or old.in_channels
        self.head = make_head(self.embedding_dim, n_classes, dropout=head_dropout,
                              hidden=head_hidden)
        self.frozen_blocks = 0
        self._frozen_modules = ()

    @property
    def source(self):
        """``'timm'`` for ``'timm/...'`` names, else ``'torchvision'``."""
        return "timm" if _timm.is_timm_name(self.name) else "torchvision"

    def embed(self, x):
        """Return the pooled embeddings ``(n, embedding_dim)`` of images ``x``."""
        return self.body(self.adapter(x))

    def forward(self, x):
        """Return logits ``(n, n_classes)`` of float images ``(n, C, H, W)``."""
        return self.head(self.embed(x))

    # -- blocks and freezing --------------------------------------------------
    @property
    def blocks(self):
        """The backbone's blocks in forward order (lists of modules/parameters).

        For timm models, the groups of timm's ``group_matcher(coarse=True)``
        (stem, then stages or blocks).
        """
        if self.source == "timm":
            groups = _timm.block_groups(self.body)
            if groups is not None:
                return groups
        return _block_groups(self.body)

    def freeze(self, freeze="backbone"):
        """Freeze the backbone, or its first blocks; the head always trains.

        Frozen parameters get ``requires_grad=False`` (optimizers skip them, so
        they stay bit for bit unchanged) and frozen modules stay in eval mode
        while the network trains: BatchNorm keeps its running statistics and
        dropout is off in frozen blocks.

        Parameters
        ----------
        freeze : 'none', 'backbone' or int, default='backbone'
            ``'backbone'``: every block of the body; an int: that many leading
            blocks (see :attr:`blocks`); ``'none'`` or 0: nothing.

        Returns
        -------
        self : BackboneNet
        """
        blocks = self.blocks
        if freeze == "none":
            n = 0
        elif freeze == "backbone":
            n = len(blocks)
        elif _is_int(freeze) and freeze >= 0:
            if freeze > len(blocks):
                raise ValueError(
                    f"freeze={freeze} but {self.name!r} has {len(blocks)} blocks. Pass "
                    f"at most {len(blocks)}, or freeze='backbone'."
                )
            n = int(freeze)
        else:
            raise ValueError(
                f"freeze must be 'none', 'backbone' or a number of blocks >= 0; got "
                f"{freeze!r}."
            )
        self.unfreeze()
        members = [m for group in blocks[:n] for m in group]
        for member in members:
            for param in member.parameters() if isinstance(member, nn.Module) else [member]:
                param.requires_grad_(False)
        self.frozen_blocks = n
        # A plain tuple, not registered submodules: train() runs every batch.
        self._frozen_modules = tuple(m for m in members if isinstance(m, nn.Module))
        return self.train(self.training)

    def unfreeze(self):
        """Make every parameter trainable again.

        Returns
        -------
        self : BackboneNet
        """
        for param in self.parameters():
            param.requires_grad_(True)
        self.frozen_blocks = 0
        self._frozen_modules = ()
        return self.train(self.training)

    def train(self, mode=True):
        """Set train/eval mode; frozen blocks always stay in eval mode."""
        super().train(mode)
        for module in getattr(self, "_frozen_modules", ()):
            module.eval()
        return self

    # -- weights --------------------------------------------------------------
    def load_pretrained(self, pretrained=True, *, progress=True):
        """Load pretrained weights into the body (and the head if they match).

        Parameters
        ----------
        pretrained : True, str, path or mapping
            ``True``: torchvision's default weights, downloaded to torch's
            cache (``$TORCH_HOME/hub/checkpoints``) the first time, read from
            there afterwards (offline too); for timm models, timm's pretrained
            weights of the name's tag (or the default tag), read from the
            Hugging Face cache and downloaded there when missing. A path: a
            ``.pth``/``.pt`` file (``torch.save(state_dict)``) or a
            ``.safetensors`` file (e.g. the ``model.safetensors`` of a timm
            Hub repository). A mapping: a state dict. State dicts of the
            torchvision or timm model (the original ImageNet head is dropped;
            timm's checkpoint filter of the architecture is applied) and of a
            ``BackboneNet`` (keys ``body.*``/``head.*``; the head is loaded
            when its shapes match) are all accepted.
        progress : bool, default=True
            Show a progress bar while torchvision weights download.

        Returns
        -------
        self : BackboneNet

        Raises
        ------
        PretrainedWeightsError
            ``pretrained=True`` offline with no cached file.
        ValueError
            The state dict does not fit this backbone.
        """
        if self.source == "timm" and pretrained is True:
            state = _timm.pretrained_state(self.name[len(_timm.PREFIX):],
                                           self._create_kwargs)
        elif self.source == "timm":
            state = read_state_dict(pretrained, None)
        else:
            state = read_state_dict(pretrained, default_weights(self.name),
                                    progress=progress)
        body_state, head_state = split_state(state)
        body_state = self._adapt_body_state(body_state)
        result = self.body.load_state_dict(body_state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            model = self.name.removeprefix(_timm.PREFIX)
            origin = (f"timm's {model} (timm.create_model({model!r}).state_dict())"
                      if self.source == "timm" else
                      f"torchvision's {model} (torchvision.models.{model}()"
                      ".state_dict())")
            raise ValueError(
                f"The pretrained weights do not fit {self.name!r}: "
                f"{len(result.missing_keys)} missing keys (e.g. "
                f"{result.missing_keys[:3]}) and {len(result.unexpected_keys)} "
                f"unexpected keys (e.g. {result.unexpected_keys[:3]}). Pass a state "
                f"dict of {origin} or of a skimgcls BackboneNet of the same name."
            )
        own_head = self.head.state_dict()
        if head_state and set(head_state) == set(own_head) and all(
                head_state[k].shape == own_head[k].shape for k in own_head):
            self.head.load_state_dict(head_state)
        return self

    def _adapt_body_state(self, state):
        if self.source == "timm":
            return _timm.adapt_state(self.body, state)
        drop = (self.head_path + ".",) + _AUX_PREFIXES
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
        if self.name.startswith("densenet"):
            state = {_DENSENET_LEGACY_KEY.sub(r"\1\2", k): v for k, v in state.items()}
        key = "encoder.pos_embedding"
        own = self.body.state_dict()
        if key in state and key in own and state[key].shape != own[key].shape:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(self.body.image_size, self.body.patch_size,
                                           dict(state))
        return state


def build_backbone(name, *, in_channels=3, n_classes, image_size=None,
                   pretrained=False, **kwargs):
    """Build a :class:`BackboneNet`, optionally with pretrained weights.

    This is the builder behind ``CNNClassifier(module=<torchvision name>)``
    and ``CNNClassifier(module='timm/<timm name>')``.

    Parameters
    ----------
    name : str
        A name of :func:`list_backbones`.
    in_channels : int, default=3
        Channels of the images (1, 3 or 4).
    n_classes : int or None
        Number of logits (None: the network returns embeddings).
    image_size : tuple of int or None, default=None
        ``(H, W)`` of the images.
    pretrained : bool, str, path or mapping, default=False
        See :meth:`BackboneNet.load_pretrained`; False keeps the random
        initialization.
    **kwargs : dict
        ``input_size``, ``head_dropout``, ``head_hidden`` and torchvision
        builder arguments; see :class:`BackboneNet`.

    Returns
    -------
    net : BackboneNet

    Examples
    --------
    >>> import torch
    >>> from skimgcls.backbones import build_backbone
    >>> net = build_backbone('resnet18', n_classes=3, input_size=32)
    >>> torch.save(net.state_dict(), 'weights.pth')  # doctest: +SKIP
    >>> build_backbone('resnet18', n_classes=3, pretrained='weights.pth')  # doctest: +SKIP
    """
    net = BackboneNet(name, n_classes, in_channels=in_channels, image_size=image_size,
                      **kwargs)
    if pretrained is not False and pretrained is not None:
        net.load_pretrained(pretrained)
    return net


def backbone_builder(name):
    """Return the network builder of torchvision or timm model ``name``, or None.

    Every ``'timm/...'`` name gets a builder: the name is checked (timm
    installed, model known) when the network is built.
    """
    if not (_timm.is_timm_name(name) or is_backbone(name)):
        return None

    def builder(*, in_channels, n_classes, image_size, **kwargs):
        return build_backbone(name, in_channels=in_channels, n_classes=n_classes,
                              image_size=image_size, **kwargs)

    builder.__name__ = name
    return builder


# -- fine-tuning helpers used by CNNClassifier --------------------------------
def _require_backbone(module, what):
    if not isinstance(module, BackboneNet):
        raise ValueError(
            f"{what} applies to torchvision and timm backbones (module='resnet18', "
            "'efficientnet_b0', 'timm/convnext_atto', ... or a "
            "skimgcls.backbones.BackboneNet); got a "
            f"{type(module).__name__}. Pass a backbone name as module, or leave "
            f"{what} at its default."
        )


def prepare_module(module, *, pretrained=False, freeze="none", progress=True):
    """Load pretrained weights into and freeze a freshly built network.

    Parameters
    ----------
    module : torch.nn.Module
        The network; must be a :class:`BackboneNet` unless both other
        arguments are at their defaults.
    pretrained : bool, str, path or mapping, default=False
        See :meth:`BackboneNet.load_pretrained`.
    freeze : 'none', 'backbone' or int, default='none'
        See :meth:`BackboneNet.freeze`.
    progress : bool, default=True
        Show a progress bar while weights download.

    Returns
    -------
    module : torch.nn.Module
    """
    if pretrained is not False and pretrained is not None:
        _require_backbone(module, "pretrained")
        module.load_pretrained(pretrained, progress=progress)
    if not (isinstance(freeze, str) and freeze == "none") and not (
            isinstance(freeze, Integral) and freeze == 0):
        _require_backbone(module, "freeze")
        module.freeze(freeze)
    return module


def backbone_param_groups(module, lr, lr_mult):
    """skorch ``optimizer__param_groups`` giving the body ``lr * lr_mult``.

    Parameters
    ----------
    module : BackboneNet
        The network.
    lr : float
        The learning rate of the head.
    lr_mult : float
        Multiplier of the body's learning rate (discriminative fine-tuning).

    Returns
    -------
    param_groups : list of (pattern, options) tuples
        Empty when ``lr_mult == 1``. The group carries ``lr_mult`` so that
        learning-rate schedules can scale their peak per group.
    """
    if lr_mult == 1:
        return []
    _require_backbone(module, "backbone_lr_mult")
    return [("body.*", {"lr": lr * lr_mult, "lr_mult": lr_mult})]


def __getattr__(name):
    # UnfreezeBackbone is a skorch callback: it lives with the other callbacks
    # in the training layer; this alias keeps skimgcls.backbones.UnfreezeBackbone.
    if name == "UnfreezeBackbone":
        from ._callbacks import UnfreezeBackbone

        return UnfreezeBackbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
