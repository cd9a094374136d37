"""timm's models as a backbone source: names, pretrained configs, bodies, blocks, weights.

Backbone names ``'timm/<model name>'`` (optionally with a pretrained tag,
``'timm/resnet18.a1_in1k'``).  timm is imported only when such a name is used.
Pretrained weights come from the Hugging Face cache, downloaded there when
missing.  :class:`TimmSource` is also the architecture side of sources that
build a timm model and bring its weights from elsewhere (the pip source).
"""

import difflib
import importlib.util
import inspect
import os
import sys
from functools import lru_cache

from ._source import BackboneSource, Body, WeightsInfo
from ._spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from ._weights import PretrainedWeightsError

__all__ = ["PREFIX", "TimmSource", "import_timm", "timm_available"]

#: Backbone names ``'timm/<model name>'`` are timm models. The same string is
#: the Hugging Face Hub repository of timm's pretrained weights when the model
#: name carries a pretrained tag (``'timm/resnet18.a1_in1k'``).
PREFIX = "timm/"

#: ``timm.create_model`` arguments that skimgcls sets itself, and why.
_RESERVED = {
    "pretrained": "weights come from the estimator's pretrained=... parameter",
    "num_classes": "the head is built from y (module__head_hidden, module__head_dropout "
                   "shape it)",
    "in_chans": "gray images are repeated to RGB by the input adapter, so the "
                "pretrained first convolution is used unchanged, as for torchvision "
                "backbones",
    "features_only": "a backbone returns the pooled embedding",
    "pretrained_cfg": "the pretrained config is chosen by the model name's tag "
                      "('timm/<model>.<tag>')",
    "pretrained_cfg_overlay": "pass local weights as pretrained='/path/to/file' "
                              "instead",
}


def is_timm_name(name):
    """Return True if ``name`` has the ``'timm/'`` prefix (valid or not)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def timm_available():
    """Return True if the timm package is installed (without importing it)."""
    try:
        return importlib.util.find_spec("timm") is not None
    except ValueError:  # sys.modules['timm'] is None: its import is blocked
        return False


def import_timm(what="timm backbones"):
    """Import and return timm, or raise an ImportError naming the extra."""
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            f"{what} need the timm package, a dependency of skimgcls, which is not "
            "installed (or cannot be imported). Install it with: pip install timm."
        ) from exc
    return timm


def timm_names(pretrained=False):
    """Sorted ``'timm/<name>'`` of timm's models (with weight tags if pretrained)."""
    return _timm_names(bool(pretrained), import_timm())


@lru_cache(maxsize=2)
def _timm_names(pretrained, timm):
    return tuple(PREFIX + n for n in timm.list_models(pretrained=pretrained))


def suggest_timm(name, n=3):
    """Return up to ``n`` ``'timm/...'`` names close to ``name`` (error messages).

    ``name`` may lack the prefix: ``'convnext_atto'`` suggests
    ``'timm/convnext_atto'`` first.
    """
    if not timm_available():
        return []
    timm = import_timm()
    bare = name[len(PREFIX):] if is_timm_name(name) else str(name)
    arch = bare.split(".", 1)[0]
    exact = [PREFIX + bare] if not is_timm_name(name) and timm.is_model(arch) else []
    if is_timm_name(name) and timm.is_model(arch):  # a wrong tag: the valid ones
        pool = [PREFIX + t for t in timm.list_pretrained(arch + ".*")]
    else:
        pool = timm_names(False) + timm_names(True)
    close = difflib.get_close_matches(PREFIX + bare, pool, n=n, cutoff=0.6)
    return (exact + [c for c in close if c not in exact])[:n]


def check_timm_name(name):
    """Return the timm model name of backbone ``name`` ('timm/x' -> 'x').

    Raises ImportError without timm and ValueError (with close names) for a
    model or pretrained tag timm does not know.
    """
    timm = import_timm(f"module={name!r}: timm backbones")
    model_name = name[len(PREFIX):]
    arch, _, tag = model_name.partition(".")
    known = timm.is_model(arch) and (
        not tag or model_name in timm.list_pretrained(arch + ".*"))
    if not known:
        close = suggest_timm(name)
        hint = f" Did you mean {close}?" if close else ""
        what = (f"timm has no pretrained tag {tag!r} for {arch!r}" if tag
                and timm.is_model(arch) else f"Unknown timm model {model_name!r}")
        raise ValueError(
            f"{what} (backbone {name!r}).{hint} timm names are listed by "
            "skimgcls.backbones.list_backbones(source='timm') (architectures) and "
            "list_backbones(source='timm', pretrained=True) (with their pretrained "
            "tags), e.g. 'timm/resnet18', 'timm/convnext_atto', "
            "'timm/efficientnet_b0.ra_in1k'."
        )
    return model_name


def _pretrained_cfg(model_name):
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(model_name)


def input_spec(model_name):
    """Return ``(size, resize_size, mean, std)`` of timm's pretrained config.

    ``size`` is the config's ``input_size[1:]``; ``resize_size`` is what timm's
    evaluation transform resizes to before the center crop
    (``floor(size / crop_pct)``).  Architectures without a config get 224 and
    ImageNet's statistics.
    """
    cfg = _pretrained_cfg(model_name)
    if cfg is None:
        return (224, 224), (256, 256), IMAGENET_MEAN, IMAGENET_STD
    channels, height, width = cfg.input_size
    if channels != 3:  # pragma: no cover - none in timm 1.0
        raise ValueError(
            f"timm's {model_name!r} was pretrained on {channels}-channel images; "
            "skimgcls backbones take RGB models."
        )
    crop = cfg.crop_pct or 1.0
    resize = (int(height / crop), int(width / crop))
    mean = tuple(float(m) for m in cfg.mean)
    std = tuple(float(s) for s in cfg.std)
    return (int(height), int(width)), resize, mean, std


def _create_kwargs(model_name, size, kwargs):
    """Arguments of ``timm.create_model``: the input size when it is fixed."""
    kwargs = dict(kwargs)
    for reserved, why in _RESERVED.items():
        if reserved in kwargs:
            raise ValueError(
                f"module__{reserved} cannot be passed to a timm backbone: {why}. "
                f"Remove module__{reserved}."
            )
    cfg = _pretrained_cfg(model_name)
    if cfg is not None and cfg.fixed_input_size:
        if size is None:
            raise ValueError(
                f"timm's {model_name!r} needs images of a fixed size; got "
                "input_size=None. Pass module__input_size=<int> or 'auto'."
            )
        if tuple(size) != tuple(cfg.input_size[1:]):
            kwargs.setdefault("img_size", tuple(size))
    return kwargs


def create_body(model_name, size, kwargs):
    """Build timm's ``model_name`` without classifier (random weights).

    Returns ``(body, create_kwargs)``: the model, whose ``forward`` returns
    the pooled embedding (``num_classes=0``), and the keyword arguments it was
    created with (reused to read pretrained weights for the same shapes).
    """
    timm = import_timm()
    create_kwargs = _create_kwargs(model_name, size, kwargs)
    body = timm.create_model(model_name, pretrained=False, num_classes=0,
                             **create_kwargs)
    return body, create_kwargs


def embedding_dim(body):
    """Size of the pooled embedding of a timm model without classifier."""
    return getattr(body, "head_hidden_size", None) or body.num_features


def classifier_names(body):
    """Dotted names of the classifier layer(s) in timm's pretrained weights."""
    names = body.pretrained_cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def block_groups(body):
    """Split a timm model into its blocks with timm's own (coarse) group matcher.

    timm defines, per architecture, how parameters group into the stem and
    the stages/blocks (the grouping it uses for layer-wise learning-rate
    decay).  Each group becomes one block: the largest submodules whose
    parameters all fall in that group, plus loose parameters (ViT's class
    token and position embedding join the stem).  Returns None when the model
    defines no matcher.
    """
    from timm.models import group_parameters

    try:
        matcher = body.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return None
    group_of = group_parameters(body, matcher, reverse=True)
    groups = [[] for _ in range(max(group_of.values(), default=-1) + 1)]

    def visit(module, prefix):
        for name, param in module.named_parameters(recurse=False):
            groups[group_of[prefix + name]].append(param)
        for name, child in module.named_children():
            ids = {group_of[f"{prefix}{name}.{k}"] for k, _ in child.named_parameters()}
            if len(ids) == 1:
                groups[ids.pop()].append(child)
            elif ids:
                visit(child, f"{prefix}{name}.")

    visit(body, "")
    return [group for group in groups if group]


def _filter_fn(body):
    """timm's checkpoint filter of the model's module (remaps/resamples keys)."""
    return getattr(sys.modules.get(type(body).__module__), "checkpoint_filter_fn", None)


def adapt_state(body, state):
    """Make a timm state dict fit ``body``: timm's filter, classifier dropped.

    The filter is what ``timm.create_model(pretrained=True)`` applies: it maps
    original (e.g. JAX or other-repository) checkpoints to timm's keys and
    resamples ViT position embeddings to the input size.
    """
    state = dict(state)
    fn = _filter_fn(body)
    if fn is not None:
        takes_model = len(inspect.signature(fn).parameters) > 1
        try:
            state = dict(fn(state, body) if takes_model else fn(state))
        except (KeyError, IndexError, RuntimeError, ValueError):
            # Weights of another model: loading them unfiltered names the keys
            # that do not fit, which says more than the filter's own failure.
            pass
    for name in classifier_names(body):
        state.pop(name + ".weight", None)
        state.pop(name + ".bias", None)
    return state


def _hf_cache_dir():
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of timm
        return os.path.join("~", ".cache", "huggingface", "hub")
    return constants.HF_HUB_CACHE


def pretrained_state(model_name, create_kwargs):
    """Return the state dict of timm's pretrained weights for ``model_name``.

    timm reads them from the Hugging Face cache and downloads them there when
    missing; offline without the file this raises
    :class:`~skimgcls.backbones.PretrainedWeightsError` saying where timm looks
    and how to pass a local file instead.
    """
    timm = import_timm()
    cfg = _pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) or ""
    if cfg is None or not (hub_id or cfg.url or cfg.file):
        raise ValueError(
            f"timm has no pretrained weights for {model_name!r}. Pick a name of "
            "skimgcls.backbones.list_backbones(source='timm', pretrained=True), "
            "pass a local file as pretrained='/path/to/weights.safetensors', or "
            "pretrained=False."
        )
    try:
        model = timm.create_model(model_name, pretrained=True, num_classes=0,
                                  **create_kwargs)
    except OSError as exc:  # offline, not cached, HTTP errors, disk errors
        cache = _hf_cache_dir()
        repo = "models--" + hub_id.replace("/", "--")
        raise PretrainedWeightsError(
            f"Could not get timm's pretrained weights for {model_name!r} ({exc}). "
            f"timm reads them from the Hugging Face cache ({os.path.join(cache, repo)}; "
            "set HF_HOME or HF_HUB_CACHE to move it) and downloads them from the "
            f"Hub repository {hub_id!r} when missing, which needs network access. "
            f"Offline: run `hf download {hub_id}` on a machine that is online "
            f"and copy its {repo} folder into {cache}, or pass the weights file: "
            "pretrained='/path/to/model.safetensors' (or a .pth state dict). "
            "pretrained=False trains from random weights."
        ) from exc
    return model.state_dict()


def _cached_weights(cfg):
    """Path of timm's weights file in the Hugging Face cache, or None."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of timm
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename, cache_dir=_hf_cache_dir())
        if isinstance(found, str):
            return found
    return None


class TimmSource(BackboneSource):
    """timm's models, named ``'timm/<model>'``, with timm's pretrained weights."""

    name = "timm"

    def owns(self, name):
        return is_timm_name(name)

    def names(self, pretrained=False):
        return list(timm_names(pretrained))

    def check(self, name):
        check_timm_name(name)

    def suggest(self, name, n=3):
        return suggest_timm(name, n=n)

    def input_spec(self, name):
        return self.model_input_spec(check_timm_name(name))

    def build(self, name, input_size, kwargs):
        return self.build_model(check_timm_name(name), input_size, kwargs)

    def block_groups(self, body):
        groups = block_groups(body)
        return super().block_groups(body) if groups is None else groups

    def weights_info(self, name):
        model_name = check_timm_name(name)
        cfg = _pretrained_cfg(model_name)
        hub_id = getattr(cfg, "hf_hub_id", None) or None
        path = _cached_weights(cfg) if cfg is not None else None
        return WeightsInfo(name=name, source=self.name, available_offline=path is not None,
                           location=path, provider=hub_id or getattr(cfg, "url", None))

    def pretrained_state(self, name, body, *, progress=True):
        return pretrained_state(check_timm_name(name), body.build_kwargs)

    def adapt_state(self, name, body, state):
        return adapt_state(body.module, state)

    def describe(self, name):
        model = name.removeprefix(PREFIX)
        return f"timm's {model} (timm.create_model({model!r}).state_dict())"

    # -- the architecture side, by timm model name (no prefix) ---------------
    def model_input_spec(self, model_name):
        """The :class:`InputSpec` of timm's pretrained config for ``model_name``."""
        size, resize_size, mean, std = input_spec(model_name)
        return InputSpec(size=size, resize_size=resize_size, mean=mean, std=std)

    def build_model(self, model_name, input_size, kwargs):
        """The :class:`Body` of timm's ``model_name`` (random weights)."""
        module, create_kwargs = create_body(model_name, input_size, kwargs)
        return Body(module=module, embedding_dim=embedding_dim(module),
                    head_path=(classifier_names(module) or ("",))[0],
                    build_kwargs=create_kwargs)
