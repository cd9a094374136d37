"""A user's own feature extractors, registered by name, as a backbone source."""

import os

import torch

from ._source import BackboneSource, Body, WeightsInfo
from ._weights import PretrainedWeightsError, read_state_dict

__all__ = ["UserSource"]


class UserSource(BackboneSource):
    """Feature extractors registered with :func:`register_backbone`."""

    name = "user"

    def __init__(self):
        self._registry = {}

    def add(self, name, builder, spec, weights):
        """Register ``builder`` (see :func:`~skimgcls.backbones.register_backbone`)."""
        self._registry[name] = (builder, spec, weights)

    def owns(self, name):
        return isinstance(name, str) and name in self._registry

    def names(self, pretrained=False):
        return sorted(n for n, (_, _, w) in self._registry.items()
                      if w is not None or not pretrained)

    def input_spec(self, name):
        return self._registry[name][1]

    def build(self, name, input_size, kwargs):
        builder, spec, _ = self._registry[name]
        module = builder(**kwargs)
        size = input_size or spec.size
        with torch.no_grad():
            dim = int(module.eval()(torch.zeros(1, 3, *size)).flatten(1).shape[1])
        return Body(module=module.train(), embedding_dim=dim, head_path="",
                    build_kwargs=dict(kwargs))

    def weights_info(self, name):
        weights = self._registry[name][2]
        is_file = isinstance(weights, (str, os.PathLike))
        available = (os.path.isfile(weights) if is_file else weights is not None)
        return WeightsInfo(name=name, source=self.name, available_offline=available,
                           location=os.fspath(weights) if is_file else None,
                           provider=None)

    def pretrained_state(self, name, body, *, progress=True):
        weights = self._registry[name][2]
        if weights is None:
            raise PretrainedWeightsError(
                f"{name!r} was registered without weights. Pass weights=... to "
                "register_backbone, a file as pretrained='/path/to/weights.pth', or "
                "pretrained=False."
            )
        return read_state_dict(weights, None)

    def adapt_state(self, name, body, state):
        return dict(state)

    def describe(self, name):
        return f"the module registered as {name!r}"
