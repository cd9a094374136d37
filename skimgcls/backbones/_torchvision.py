"""torchvision's classification models as a backbone source.

Every name of ``torchvision.models.list_models(module=torchvision.models)``
(``'resnet18'``, ``'vgg11'``, ``'efficientnet_b0'``, ``'vit_b_16'``...).
Pretrained weights are torchvision's default weights: read from torch's cache
(``$TORCH_HOME/hub/checkpoints``), downloaded there when missing.
"""

import os
import re
from functools import lru_cache

from torch import nn

from .._functional import pair
from ._source import BackboneSource, Body, WeightsInfo
from ._spec import InputSpec
from ._weights import expected_weights_path, read_state_dict

__all__ = ["TorchvisionSource", "default_weights"]

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


@lru_cache(maxsize=1)
def _names():
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def default_weights(name):
    """Return torchvision's default weights enum member for model ``name``."""
    import torchvision

    TorchvisionSource().check(name)
    return torchvision.models.get_model_weights(name).DEFAULT


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


def _find_classifier(model):
    """Return the dotted name of the layer that outputs the ImageNet logits."""
    found = None
    for name, module in model.named_modules():
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


class TorchvisionSource(BackboneSource):
    """torchvision's classification models, with torchvision's default weights."""

    name = "torchvision"

    def owns(self, name):
        return isinstance(name, str) and name in _names()

    def names(self, pretrained=False):
        return list(_names())

    def check(self, name):
        if not self.owns(name):
            super().check(name)

    def input_spec(self, name):
        transform = default_weights(name).transforms()
        return InputSpec(
            size=pair(transform.crop_size), resize_size=pair(transform.resize_size),
            mean=tuple(float(m) for m in transform.mean),
            std=tuple(float(s) for s in transform.std),
        )

    def build(self, name, input_size, kwargs):
        import torchvision

        kwargs = _builder_kwargs(name, input_size, kwargs)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        head_path = _find_classifier(model)
        old = _replace(model, head_path, nn.Identity())
        dim = getattr(old, "in_features", None) or old.in_channels
        return Body(module=model, embedding_dim=dim, head_path=head_path,
                    build_kwargs=kwargs)

    def weights_info(self, name):
        weights = default_weights(name)
        path = expected_weights_path(weights)
        return WeightsInfo(name=name, source=self.name,
                           available_offline=os.path.isfile(path), location=path,
                           provider=weights.url)

    def pretrained_state(self, name, body, *, progress=True):
        return read_state_dict(True, default_weights(name), progress=progress)

    def adapt_state(self, name, body, state):
        drop = (body.head_path + ".",) + _AUX_PREFIXES
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
        if name.startswith("densenet"):
            state = {_DENSENET_LEGACY_KEY.sub(r"\1\2", k): v for k, v in state.items()}
        key = "encoder.pos_embedding"
        own = body.module.state_dict()
        if key in state and key in own and state[key].shape != own[key].shape:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(body.module.image_size,
                                           body.module.patch_size, dict(state))
        return state

    def describe(self, name):
        return f"torchvision's {name} (torchvision.models.{name}().state_dict())"
