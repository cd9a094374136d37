"""Built-in CNNs and the name -> builder registry.

A *builder* is a function ``builder(*, in_channels, n_classes, image_size,
**kwargs) -> nn.Module``.  :class:`~skimgcls.CNNClassifier` calls it in ``fit``
with what it read from the data, plus the ``module__<name>`` parameters.  Every
network returns logits; ``predict_proba`` applies the softmax.
"""

import inspect
import math

import torch
from torch import nn

from ._docstring import Substitution
from .backbones import backbone_builder, suggest_backbones

__all__ = [
    "CompactCNN",
    "FastDropout",
    "FlattenChannelsLast",
    "SimpleCNN",
    "build_network",
    "list_networks",
    "register_network",
]

_REGISTRY = {}

#: Names a builder receives from the data; user-given module classes get them
#: too when their ``__init__`` has parameters with these names.
DATA_PARAMS = ("in_channels", "n_classes", "image_size")


def register_network(name):
    """Register a network builder under ``name`` (a decorator).

    Parameters
    ----------
    name : str
        The name users pass as ``CNNClassifier(module=name)``.

    Returns
    -------
    decorator : callable
        Registers and returns the decorated builder unchanged.

    Examples
    --------
    >>> from torch import nn
    >>> from skimgcls.networks import register_network
    >>> @register_network("tiny_mlp")
    ... def tiny_mlp(*, in_channels, n_classes, image_size, hidden=16):
    ...     h, w = image_size
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * h * w, hidden),
    ...                          nn.ReLU(), nn.Linear(hidden, n_classes))
    """

    def decorator(builder):
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_networks():
    """Return the sorted names of the registered networks.

    Returns
    -------
    names : list of str
    """
    return sorted(_REGISTRY)


def _resolve_builder(name):
    if name in _REGISTRY:
        return _REGISTRY[name]
    # Then torchvision's classification models (imported lazily: torchvision's
    # model zoo is only loaded when a backbone is asked for).
    builder = backbone_builder(name)
    if builder is not None:
        return builder
    close = suggest_backbones(name)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
        f"Unknown network {name!r}.{hint} Built-in networks: {list_networks()}; "
        "torchvision and timm backbones: skimgcls.backbones.list_backbones() (e.g. "
        "'resnet18', 'efficientnet_b0', 'vit_b_16', 'timm/convnext_atto'). Pass "
        "one of these names, a "
        "torch.nn.Module subclass or an instance, or register your own with "
        "skimgcls.networks.register_network."
    )


def build_network(module, *, in_channels, n_classes, image_size, **kwargs):
    """Build the torch module that ``module`` describes, sized for the data.

    Parameters
    ----------
    module : str, type or torch.nn.Module
        A registered name, the name of a torchvision classification model
        or of a timm model as ``'timm/<name>'``
        (see :func:`skimgcls.backbones.list_backbones`; built as a
        :class:`skimgcls.backbones.BackboneNet`), an ``nn.Module`` subclass
        or an instance.  A class is
        instantiated with ``kwargs``, plus ``in_channels``, ``n_classes`` and
        ``image_size`` for those of them its ``__init__`` accepts and
        ``kwargs`` does not give.  An instance is returned as is.
    in_channels : int
        Number of image channels.
    n_classes : int
        Number of classes (size of the output layer).
    image_size : tuple of int
        ``(H, W)`` of the input images.
    **kwargs : dict
        The ``module__<name>`` parameters.

    Returns
    -------
    module : torch.nn.Module
    """
    data = dict(in_channels=in_channels, n_classes=n_classes,
                image_size=tuple(image_size))
    if isinstance(module, nn.Module):
        if kwargs:
            raise ValueError(
                f"module__ parameters {sorted(kwargs)} cannot be applied to a module "
                "instance; pass the module class instead."
            )
        return module
    if isinstance(module, str):
        return _resolve_builder(module)(**data, **kwargs)
    if isinstance(module, type) and issubclass(module, nn.Module):
        accepted = inspect.signature(module.__init__).parameters
        extra = {k: v for k, v in data.items() if k in accepted and k not in kwargs}
        return module(**extra, **kwargs)
    raise TypeError(
        "module must be a network name (str), a torch.nn.Module subclass or an "
        f"instance; got {module!r} of type {type(module).__name__}."
    )


class FastDropout(nn.Dropout):
    """Dropout whose random mask costs a fraction of :class:`torch.nn.Dropout`'s on the CPU.

    The same operation as ``nn.Dropout(p)``: in training, each element is
    zeroed with probability ``p`` and the others are scaled by ``1 / (1 - p)``;
    in evaluation it returns its input.  On the CPU, ``torch.nn.Dropout`` draws
    one Bernoulli number per element, which made it the most expensive layer
    of ``simple_cnn`` in bf16 (more than its convolutions' forward passes,
    ``bench/run.py``).  This layer draws 64 random bits at a time from torch's
    generator and cuts them into four 16-bit uniforms, one per element: about
    a quarter of the cost, the same distribution up to ``p`` rounded to a
    multiple of 1/65536, and still seeded by :func:`torch.manual_seed`.  On
    other devices it calls torch's fused dropout.

    It is a subclass of :class:`torch.nn.Dropout`: code that looks for dropout
    layers (``isinstance(m, nn.Dropout)``, as Monte Carlo dropout does) finds
    it.

    Parameters
    ----------
    p : float, default=0.5
        Probability of an element being zeroed.
    inplace : bool, default=False
        Accepted for compatibility with ``nn.Dropout``; on the CPU the output
        is always a new tensor.

    Examples
    --------
    >>> import torch
    >>> from skimgcls.networks import FastDropout
    >>> _ = torch.manual_seed(0)
    >>> x = torch.ones(100_000)
    >>> y = FastDropout(0.25)(x)
    >>> round((y == 0).float().mean().item(), 2), y.max().item()
    (0.25, 1.3333333730697632)
    """

    def forward(self, x):
        """Apply dropout to ``x`` (any shape) in training; return ``x`` otherwise."""
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p == 1:
            return x * 0
        if not _dense(x):
            x = x.contiguous()
        n = x.numel()
        # Four 16-bit uniforms per 64-bit draw, laid out with x's strides
        # (channels_last stays channels_last); element order does not matter.
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        bits = bits.random_(-2**63, None).view(torch.int16)[:n]
        bits = bits.as_strided(x.shape, x.stride())
        keep = bits >= round(self.p * 65536) - 32768
        # Scaled in place by a Python float, as torch's own dropout: the
        # scale is not rounded to x's dtype first (1 / 0.75 is 1.336 in bf16).
        return (x * keep).mul_(1 / (1 - self.p))


def _dense(x):
    """Whether ``x`` covers its storage without gaps or overlaps (any layout)."""
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


class FlattenChannelsLast(nn.Module):
    """Flatten ``(n, C, H, W)`` to ``(n, H * W * C)`` in height, width, channel order.

    For a channels_last tensor (the layout :class:`~skimgcls.CNNClassifier`
    trains in) this is a free view, forward and backward; ``nn.Flatten``'s
    channel-first order copies the activations forward and hands the pooling
    layer before it a channel-first gradient, which on the CPU is the slow
    path of max pooling's backward pass (``bench/run.py``: ``simple_cnn``
    trains 1.2x faster with this layer).  The flattened features are the same
    numbers in another fixed order, so a network using it is the same
    function class as one using ``nn.Flatten``.
    """

    def forward(self, x):
        """Return ``x`` of shape (n, C, H, W) flattened to (n, H * W * C)."""
        return x.permute(0, 2, 3, 1).flatten(1)


def _pool_kernel(size, min_size=4):
    """Pool an axis by 2 only while it stays >= 2 pixels: images from 1x1 work."""
    return tuple(2 if s >= min_size else 1 for s in size)


#: The default network's stem halves images until their shorter side is at most this.
WORKING_SIZE = 48


def auto_stem_strides(image_size, working_size=WORKING_SIZE):
    """Stride-2 stem convolutions that bring ``image_size`` to <= ``working_size``.

    0 up to 48 pixels (8x8 and 32x32 work at full resolution), 1 for 64 and
    96, 2 for 128 and 192, 3 for 256: the cost per image stays roughly flat.
    """
    short = min(image_size)
    return max(0, math.ceil(math.log2(short / working_size))) if short > 0 else 0


def _conv_bn(c_in, c_out, stride=1):
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


@Substitution("network_inputs")
class CompactCNN(nn.Module):
    """A small BatchNorm CNN with global pooling; the default network.

    A stem of stride-2 3x3 convolutions (+ BatchNorm + ReLU) for large images,
    then three stages of two 3x3 convolution + BatchNorm + ReLU layers, widths
    ``width``, ``2 * width`` and ``4 * width``, with 2x2 max pooling between
    stages (on each axis that still has at least 4 pixels, so any image size
    works), then global average pooling, dropout and a linear layer.

    Parameters
    ----------
    {network_inputs}
    width : int, default=16
        Channels of the first stage (``bench/accuracy.py`` measures the
        default on MNIST); 32 costs about four times the arithmetic.
    dropout : float, default=0.1
        Dropout before the classifier layer.
    stem_strides : int or 'auto', default='auto'
        Stride-2 convolutions before the stages. ``'auto'`` halves the images
        until their shorter side is at most 48 pixels (none for 8x8 or 32x32,
        one for 64x64, two for 128x128, three for 256x256), which keeps the
        cost per image roughly flat across image sizes.
    """

    def __init__(self, in_channels, n_classes, image_size, width=16, dropout=0.1,
                 stem_strides="auto"):
        super().__init__()
        layers, size, c_in = [], tuple(image_size), in_channels
        if stem_strides == "auto":
            stem_strides = auto_stem_strides(size)
        for _ in range(int(stem_strides)):
            layers += _conv_bn(c_in, width, stride=2)
            size, c_in = tuple((s + 1) // 2 for s in size), width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            layers += _conv_bn(c_in, c_out) + _conv_bn(c_out, c_out)
            kernel = _pool_kernel(size)
            if stage < 2 and kernel != (1, 1):
                layers.append(nn.MaxPool2d(kernel))
                size = tuple(s // k for s, k in zip(size, kernel))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), FastDropout(dropout),
                                  nn.Linear(c_in, n_classes))

    def forward(self, x):
        """Return logits of shape (n, n_classes) for images of shape (n, C, H, W)."""
        return self.head(self.pool(self.features(x)))


@Substitution("network_inputs")
class SimpleCNN(nn.Module):
    """The classic MNIST CNN of the Keras and PyTorch examples.

    ``Conv(32, 3x3) - ReLU - Conv(64, 3x3) - ReLU - MaxPool(2) - Dropout(0.25) -
    Flatten - Dense(128) - ReLU - Dropout(0.5) - Dense(n_classes)``, softmax in
    ``predict_proba``.  The convolutions are unpadded, as in the originals, so
    images need at least 6x6 pixels.

    Two implementation choices make it train faster on the CPU than the
    examples' code, with the same layers: the flatten reads the features in
    height, width, channel order (:class:`FlattenChannelsLast`, a free view of
    channels_last activations) and the dropout layers are
    :class:`FastDropout`.

    Parameters
    ----------
    {network_inputs}
    hidden : int, default=128
        Units of the dense layer.
    dropout : float or tuple of two floats, default=(0.25, 0.5)
        Probabilities of the two dropout layers (after the pooling, after the
        dense layer), as in the examples; one number sets both, and 0 removes
        a layer. ``bench/run.py`` measures what they cost (about a tenth of a
        bf16 fit on the CPU) and buy (within noise of nothing at 5 epochs on
        4,000 MNIST digits; regularization matters more on longer training).
    """

    def __init__(self, in_channels, n_classes, image_size, hidden=128,
                 dropout=(0.25, 0.5)):
        super().__init__()
        h, w = image_size
        if min(h, w) < 6:
            raise ValueError(
                f"'simple_cnn' needs images of at least 6x6 pixels; got {h}x{w}. "
                "Use module='compact_cnn' or resize the images."
            )
        p_features, p_dense = _dropout_pair(dropout)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), *_dropout(p_features), FlattenChannelsLast(),
        )
        n_flat = 64 * ((h - 4) // 2) * ((w - 4) // 2)
        self.classifier = nn.Sequential(
            nn.Linear(n_flat, hidden), nn.ReLU(inplace=True), *_dropout(p_dense),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x):
        """Return logits of shape (n, n_classes) for images of shape (n, C, H, W)."""
        return self.classifier(self.features(x))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dropout_pair(dropout):
    if _is_number(dropout):
        return dropout, dropout
    pair = tuple(dropout) if isinstance(dropout, (tuple, list)) else ()
    if len(pair) != 2:
        raise ValueError(
            "dropout must be a number or a pair of numbers (after the pooling, after "
            f"the dense layer); got {dropout!r}."
        )
    return pair


def _dropout(p):
    """``[FastDropout(p)]``, or no layer for ``p == 0``; ``p`` is checked."""
    if not _is_number(p) or not 0 <= p < 1:
        raise ValueError(
            f"dropout probabilities must be numbers in [0, 1); got {p!r}. Pass one "
            "number for both layers or a pair, e.g. module__dropout=(0.25, 0.5); "
            "0 removes a layer."
        )
    return [FastDropout(p)] if p else []


@register_network("compact_cnn")
def compact_cnn(*, in_channels, n_classes, image_size, **kwargs):
    """Build :class:`CompactCNN` (the default network)."""
    return CompactCNN(in_channels, n_classes, image_size, **kwargs)


@register_network("simple_cnn")
def simple_cnn(*, in_channels, n_classes, image_size, **kwargs):
    """Build :class:`SimpleCNN`, the classic Keras/PyTorch MNIST network."""
    return SimpleCNN(in_channels, n_classes, image_size, **kwargs)
