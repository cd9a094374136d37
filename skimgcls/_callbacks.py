"""skorch callbacks that ``CNNClassifier`` adds on its own."""

import math
import time

import torch
from skorch.callbacks import Callback, EarlyStopping

from ._checkpoint import unwrapped_module
from ._probe import embed_batches, fit_linear_head, last_linear, set_linear_head
from .backbones import BackboneNet
from .utils._progress import progress_bar

__all__ = ["EarlyStoppingAfterWarmup", "EpochProgressBar", "InterpolateWeights",
           "ProbeHead", "UnfreezeBackbone", "UpdateBatchNorm"]

#: Seconds between two refreshes of the running loss and accuracy; reading
#: them synchronizes the GPU, so it is not done on every batch.
_REFRESH_SECONDS = 0.25


class EpochProgressBar(Callback):
    """A tqdm bar per epoch with the running training loss and accuracy.

    The bar counts the training and validation batches of the epoch. Its
    postfix shows the running mean training ``loss`` and ``acc`` (accuracy),
    and, once the epoch ends, ``valid_loss`` and ``valid_acc``.

    Parameters
    ----------
    leave : bool, default=False
        Keep each finished bar on screen (True) or erase it (False, the epoch
        summary line printed by skorch stays).
    epochs : int or None, default=None
        Epochs of this fit, shown as ``epoch 3/15``; ``net.max_epochs`` when
        None.
    """

    def __init__(self, leave=False, epochs=None):
        self.leave = leave
        self.epochs = epochs

    def on_train_begin(self, net, **kwargs):
        self.first_epoch_ = len(net.history)

    def _n_batches(self, net, dataset, training):
        if dataset is None:
            return 0
        name = "iterator_train" if training else "iterator_valid"
        batch_size = net.get_params().get(f"{name}__batch_size", net.batch_size)
        batches = math.ceil(len(dataset) / batch_size)
        accelerator = getattr(net, "accelerator", None)
        if accelerator is not None:
            batches = math.ceil(batches / accelerator.num_processes)
        return batches

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = len(net.history) - getattr(self, "first_epoch_", 0)
        epochs = self.epochs or net.max_epochs
        total = (self._n_batches(net, dataset_train, True)
                 + self._n_batches(net, dataset_valid, False))
        accelerator = getattr(net, "accelerator", None)
        main = accelerator is None or accelerator.is_local_main_process
        self.pbar_ = progress_bar(
            total=total, desc=f"epoch {epoch}/{epochs}", unit="batch",
            leave=self.leave, disable=not main,
        )
        self.loss_sum_ = self.correct_ = 0.0
        self.seen_ = 0
        self.last_refresh_ = time.monotonic()

    def on_batch_end(self, net, batch=None, training=None, loss=None, y_pred=None,
                     **kwargs):
        if training and y_pred is not None and batch is not None:
            y_true = batch[1]
            n = len(y_pred)
            self.loss_sum_ = self.loss_sum_ + loss.detach() * n
            if y_true is not None:
                y_true = torch.as_tensor(y_true, device=y_pred.device)
                if y_true.ndim == 2:  # multi-label: all labels right (logit > 0)
                    hits = ((y_pred.detach() > 0) == y_true.bool()).all(dim=1)
                else:
                    hits = y_pred.detach().argmax(dim=1) == y_true
                self.correct_ = self.correct_ + hits.sum()
            self.seen_ += n
            now = time.monotonic()
            if now - self.last_refresh_ > _REFRESH_SECONDS:
                self.last_refresh_ = now
                self.pbar_.set_postfix(self._running(), refresh=False)
        self.pbar_.update(1)

    def _running(self):
        if not self.seen_:
            return {}
        return {"loss": f"{float(self.loss_sum_) / self.seen_:.4f}",
                "acc": f"{float(self.correct_) / self.seen_:.3f}"}

    def on_epoch_end(self, net, **kwargs):
        postfix = self._running()
        row = net.history[-1]
        for key in ("valid_loss", "valid_acc"):
            if key in row:
                postfix[key] = f"{row[key]:.4f}"
        self.pbar_.set_postfix(postfix, refresh=True)
        self.pbar_.close()
        del self.pbar_

    def on_train_end(self, net, **kwargs):
        # An interrupted epoch leaves its bar open.
        if hasattr(self, "pbar_"):
            self.pbar_.close()
            del self.pbar_

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("pbar_", None)
        return state


class EarlyStoppingAfterWarmup(EarlyStopping):
    """skorch's ``EarlyStopping`` that starts watching after ``start_epoch`` epochs.

    During the first ``start_epoch`` epochs (the one-cycle schedule's
    warm-up, while the learning rate still rises) it neither counts epochs
    without improvement nor keeps weights as the best: the best weights it
    restores are from after the warm-up, as Keras's ``EarlyStopping(
    start_from_epoch=...)``. Without it, a few images make each epoch a few
    optimizer steps, ``patience`` epochs end training while the learning
    rate is still low, and the restored weights are those of a barely
    trained network: with 10 % of 33 MNIST digits held out, validation folds
    scored 11.9 % accuracy, and 56.2 % with the warm-up left out
    (``bench/_explore_defaults.py --experiments rules_es``).

    Parameters
    ----------
    monitor, patience, threshold, threshold_mode, lower_is_better, sink, load_best
        As for :class:`skorch.callbacks.EarlyStopping`.
    start_epoch : int, default=0
        Epochs during which it does not watch; 0 is skorch's ``EarlyStopping``.
    """

    def __init__(self, monitor="valid_loss", patience=5, threshold=1e-4,
                 threshold_mode="rel", lower_is_better=True, sink=print,
                 load_best=False, start_epoch=0):
        super().__init__(monitor=monitor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode, lower_is_better=lower_is_better,
                         sink=sink, load_best=load_best)
        self.start_epoch = start_epoch

    def on_epoch_end(self, net, **kwargs):
        """Watch the monitored score once the warm-up epochs are over."""
        if len(net.history) > self.start_epoch:
            super().on_epoch_end(net, **kwargs)


class UnfreezeBackbone(Callback):
    """skorch callback: make every parameter trainable from a given epoch on.

    Combined with ``freeze='backbone'`` this is the classic two-stage
    fine-tuning: train the new head on a frozen backbone, then everything.
    :class:`~skimgcls.CNNClassifier` adds it when ``unfreeze_at_epoch`` is set.

    Parameters
    ----------
    epoch : int
        First epoch (1-based, as in ``history_``) that trains the whole
        network. The history records ``unfrozen=True`` at the epoch where it
        unfroze (a later one if training resumed past ``epoch``, e.g. with
        ``warm_start``).
    """

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        """Unfreeze when the epoch about to run is ``epoch``."""
        # Not the DistributedDataParallel wrapper of a data-parallel fit: only
        # BackboneNet.unfreeze takes its frozen blocks out of eval mode.
        module = unwrapped_module(net)
        frozen = any(not p.requires_grad for p in module.parameters())
        if len(net.history) < self.epoch or not frozen:
            return
        if isinstance(module, BackboneNet):
            module.unfreeze()
        else:
            for param in module.parameters():
                param.requires_grad_(True)
        net.history.record("unfrozen", True)


class InterpolateWeights(Callback):
    """skorch callback: end training between the starting and the trained weights.

    At the end of training every floating-point parameter and buffer becomes
    ``(1 - alpha) * start + alpha * trained``, ``start`` being the network
    as training began (after the other callbacks' ``on_train_begin``, e.g.
    :class:`ProbeHead`'s linear probe). For a network fine-tuned from
    pretrained weights, this weight-space ensemble of the pretrained model
    and the fine-tuned one keeps the robustness of the first and most of the
    fit of the second: WiSE-FT (Wortsman et al., *Robust fine-tuning of
    zero-shot models*, CVPR 2022), whose ``alpha=0.5`` needs no tuning. It
    is meaningless for a network trained from a random initialization.

    The interpolation happens before later callbacks' ``on_train_end`` (such
    as :class:`UpdateBatchNorm`, which then recomputes BatchNorm statistics
    for the interpolated weights). Every process of a data-parallel fit
    starts and ends with the same weights, so they interpolate alike.

    Parameters
    ----------
    alpha : float, default=0.5
        Weight of the trained weights, in (0, 1]; 1 keeps them unchanged.
    """

    def __init__(self, alpha=0.5):
        self.alpha = alpha

    def on_train_begin(self, net, **kwargs):
        """Keep a copy of the starting weights (not of a frozen partner's)."""
        partner = getattr(unwrapped_module(net), "partner", None)
        frozen = set() if partner is None else {
            value.data_ptr() for value in partner.state_dict().values()}
        self.start_ = {name: value.detach().clone()
                       for name, value in net.module_.state_dict().items()
                       if value.is_floating_point() and value.data_ptr() not in frozen}

    def on_train_end(self, net, **kwargs):
        """Interpolate in place; record ``weights_interpolated`` in the history."""
        start = getattr(self, "start_", None)
        if start is None or not len(net.history) or self.alpha == 1:
            return
        with torch.no_grad():
            for name, value in net.module_.state_dict().items():
                if name in start:
                    value.mul_(self.alpha).add_(start[name].to(value.device),
                                                alpha=1 - self.alpha)
        self.start_ = None  # free the copy
        net.history.record("weights_interpolated", self.alpha)


class UpdateBatchNorm(Callback):
    """skorch callback: recompute BatchNorm statistics with the final weights.

    During training, a BatchNorm layer's running mean and variance (what
    ``predict`` uses) move 10 % toward each batch's, computed with weights that
    were still changing; on small training sets they barely leave their initial
    values and eval-mode predictions can collapse toward one class. At the end
    of training this callback sets them to the exact average over the training
    images, passed once through the final network in training mode without
    gradients or augmentation, as :func:`torch.optim.swa_utils.update_bn` and
    fvcore's PreciseBN do. Frozen BatchNorm layers (no trainable affine
    parameters, e.g. a frozen pretrained backbone) are left alone.

    In data-parallel training each process passes its shard of the training
    batches, and the statistics are then averaged over the processes,
    weighted by their number of batches: the average over the same batches
    as in a single process, identical on every process (and so is
    ``num_batches_tracked``, the number of batches of all processes).

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The training images, as ``net.get_iterator`` takes them.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_train_end(self, net, **kwargs):
        """Recompute the statistics; record ``bn_updated`` in the history."""
        layers = [m for m in net.module_.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  and m.track_running_stats
                  and any(p.requires_grad for p in m.parameters(recurse=False))]
        if not layers or not len(net.history) or len(self.dataset) < 2:
            return
        momenta = [m.momentum for m in layers]
        training = [m.training for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        batches = 0
        try:
            with torch.no_grad():
                for Xb, _ in net.get_iterator(self.dataset, training=False):
                    images = net.to_model_input(Xb)
                    if len(images) > 1:  # one image has no batch variance
                        net.forward_images(images)
                        batches += 1
            net.mean_across_processes(
                [s for m in layers for s in (m.running_mean, m.running_var)], batches)
            # The batch count of one pass over all the batches, on every
            # process (each counted its own shard's).
            accelerator = getattr(net, "accelerator", None)
            processes = 1 if accelerator is None else accelerator.num_processes
            count = torch.tensor([float(batches)])
            net.mean_across_processes([count], 1)
            for m in layers:
                m.num_batches_tracked.fill_(round(count.item() * processes))
        finally:
            for m, momentum, mode in zip(layers, momenta, training):
                m.momentum = momentum
                m.train(mode)
        net.history.record("bn_updated", True)


def dataset_features(net, module, dataset, device):
    """``module.embed`` of every image of ``dataset``, with labels and weights.

    One pass of ``net.get_iterator`` in eval mode (no augmentation; file paths
    decoded batch by batch), in ``net.precision``. Returns NumPy arrays:
    float32 features, the labels, float64 sample weights.
    """
    labels, weights = [], []

    def batches():
        for Xb, yb in net.get_iterator(dataset, training=False):
            labels.append(yb.cpu())
            weights.append(Xb["sample_weight"].cpu())
            yield net.to_model_input(Xb)

    features = embed_batches(module, batches(), device=device, precision=net.precision)
    return (features, torch.cat(labels).numpy(),
            torch.cat(weights).double().numpy())


class ProbeHead(Callback):
    """skorch callback: start training from a linear probe of the pretrained body.

    At the beginning of training, the network's features of the training
    images (one pass in eval mode, no augmentation) are fitted by logistic
    regression (standardized features with a floor under each scale, ``C`` by
    3-fold cross-validation; see ``fit_linear_head``) and
    the result is written into the last linear layer of the head. Fine-tuning
    then starts from a head that already separates the classes, so the first
    steps do not push large random-head gradients into the pretrained body:
    "LP-FT" (Kumar et al., *Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution*, ICLR 2022).

    A network with a frozen partner (``frozen_ensemble=True``, see
    :meth:`skimgcls.backbones.BackboneNet.set_partner`) gets the partner's
    head fitted the same way, on the partner's features.

    In data-parallel training each process fits a probe on its shard and the
    heads are averaged, weighted by the number of images: every process
    starts from the same head.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The training images, as ``net.get_iterator`` takes them.
    network : bool, default=True
        Whether to fit the network's own head; False fits only its partner's.

    Notes
    -----
    The network must have an ``embed`` method and a head ending with a
    ``torch.nn.Linear``, as :class:`skimgcls.backbones.BackboneNet` does.
    """

    def __init__(self, dataset, *, network=True):
        self.dataset = dataset
        self.network = network

    def on_train_begin(self, net, **kwargs):
        """Fit the probe(s) and write them into the head(s)."""
        # In a data-parallel fit the DistributedDataParallel wrapper has
        # neither embed() nor head; the network it wraps shares its parameters.
        module, device = unwrapped_module(net), net.device
        accelerator = getattr(net, "accelerator", None)
        if accelerator is not None:
            device = accelerator.device  # it places the module (net.device is None)
        if self.network:
            self._fit_probe(net, module, device)
        partner = getattr(module, "partner", None)
        if partner is not None:
            # Its pass over the data (a DataLoader draws a seed from the CPU
            # generator) leaves the training's random numbers as they would be
            # without a partner: the network trains the same.
            with torch.random.fork_rng(devices=[]):
                self._fit_probe(net, partner, device)

    def _fit_probe(self, net, module, device):
        linear = last_linear(module)
        features, labels, weights = dataset_features(net, module, self.dataset, device)
        head = fit_linear_head(features, labels, weights, n_classes=linear.out_features)
        set_linear_head(module, head)
        net.mean_across_processes([linear.weight.data, linear.bias.data], len(features))
