"""The skorch net of :class:`~skimgcls.CNNClassifier`.

``CNNClassifier`` keeps only its parameters; ``fit`` builds ``net_`` (see
:mod:`skimgcls._build`), an :class:`ImageNet` (a skorch
``NeuralNetClassifier``) that:

* reads batches from :class:`~skimgcls._data.ImageTensorDataset` by tensor
  slicing (:func:`~skimgcls._data.image_batches`),
* keeps skorch's per-batch bookkeeping small (no redundant ``train()`` walks,
  no unheard ``on_grad_computed``, one device sync per epoch on accelerators,
  no epoch table formatted when ``verbose=0``),
* turns NHWC uint8/float batches into NCHW float input with channels_last
  memory on the device, without a copy of the permutation,
* runs the forward pass under bf16 autocast when ``precision='bf16'``,
* augments training batches only (never validation, never prediction),
* weights the per-sample loss by ``sample_weight`` (class weights folded in),
* trains multi-label targets (``multilabel=True``: a 0/1 indicator matrix,
  binary cross-entropy per label, averaged over the labels of each sample,
  positives weighted by ``pos_weight_``; ``predict`` thresholds sigmoid
  probabilities, so ``valid_acc`` is the subset accuracy),
* survives training faults: a non-finite loss raises
  :class:`~skimgcls.exceptions.NonFiniteLossError` naming the epoch and batch,
  and a ``KeyboardInterrupt`` inside an epoch, like the loss error, rolls the
  network back to the last complete epoch (kept in memory); a
  ``KeyboardInterrupt`` raised by a callback at the end of an epoch (skorch's
  way to stop early) ends training normally,
* writes a checkpoint at the end of every epoch when given a
  :class:`~skimgcls._checkpoint.Checkpointer` (``checkpoint_``).
"""

import functools
import math
from collections.abc import Mapping

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier
from skorch.callbacks import Callback
from skorch.dataset import get_len, unpack_data
from skorch.history import History
from skorch.utils import to_tensor

from ._checkpoint import to_cpu
from ._functional import to_float_nchw
from ._tta import average_views
from .augmentation import mix_batch
from .exceptions import NonFiniteLossError

__all__ = ["ImageNet", "StopTraining"]

class StopTraining(KeyboardInterrupt):
    """A callback asked to stop training at the end of a complete epoch."""


class ImageNet(NeuralNetClassifier):
    """skorch ``NeuralNetClassifier`` for NHWC image batches.

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`skorch.NeuralNetClassifier`.
    augment : callable or None, default=None
        Applied to each training batch (float NCHW tensor on the device) before
        the forward pass, never to validation or prediction batches.
    precision : {'fp32', 'bf16'}, default='fp32'
        ``'bf16'`` runs the forward pass under bf16 autocast.
    mixup_alpha, cutmix_alpha : float, default=0.0
        MixUp / CutMix of training batches (after ``augment``), see
        :func:`skimgcls.augmentation.mix_batch`; 0 turns them off.
    multilabel : bool, default=False
        Targets are 0/1 indicator rows (criterion: ``BCEWithLogitsLoss`` with
        ``reduction='none'``, prediction: sigmoid, then ``> threshold``).
    threshold : float or ndarray of shape (n_labels,), default=0.5
        Multi-label only: probability above which ``predict`` sets a label.
    """

    def __init__(self, *args, augment=None, precision="fp32", mixup_alpha=0.0,
                 cutmix_alpha=0.0, multilabel=False, threshold=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.augment = augment
        self.precision = precision
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.multilabel = multilabel
        self.threshold = threshold
        # Trailing underscores keep these out of skorch's get_params.
        self.pos_weight_ = None
        self.checkpoint_ = None
        self.interrupted_ = None
        self.hears_grads_ = True
        self._last_good_ = None

    def to_model_input(self, x):
        """Turn an NHWC batch into float NCHW (channels_last) on the device."""
        if isinstance(x, Mapping):
            x = x["X"]
        return to_float_nchw(x, self.device)

    def forward_images(self, images, precision=None):
        """Forward float NCHW images through the module; return float32 logits.

        ``precision``: that of this forward pass (``'fp32'`` or ``'bf16'``);
        None: :attr:`precision`, the training one.
        """
        if (precision or self.precision) != "bf16":
            # No autocast(enabled=False): it would switch off an enclosing
            # autocast, such as the one of an accelerator.
            return self.module_(images).float()
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16):
            return self.module_(images).float()

    def get_default_callbacks(self):
        """skorch's default callbacks, without ``print_log`` when ``verbose=0``.

        ``PrintLog`` formats the epoch table every epoch even when it prints
        nothing, which costs more than a small network's batches.
        """
        callbacks = super().get_default_callbacks()
        if not self.verbose:
            callbacks = [(name, cb) for name, cb in callbacks if name != "print_log"]
        return callbacks

    def set_mode(self, training):
        """Set train/eval mode, skipping the module walk when it is already set.

        skorch's own ``_set_training`` walks every submodule (``Module.train``)
        for every batch, a cost that shows on small networks; the steps of
        this class call this method instead.
        """
        modules = [m for m in (self.module_, self.criterion_)
                   if isinstance(m, torch.nn.Module)]
        if any(m.training != training for m in modules):
            for module in modules:
                module.train(training)

    def _grad_hooks(self):
        """Whether a callback (or a subclass) listens to ``on_grad_computed``."""
        if type(self).on_grad_computed is not NeuralNetClassifier.on_grad_computed:
            return True
        return any(type(cb).on_grad_computed is not Callback.on_grad_computed
                   for _, cb in self.callbacks_)

    def torch_compile(self, module, name):
        """Compile the network only (``compile=True``), not the criterion.

        The loss is one cheap fused op; compiling it on its own only adds
        compile time (and trips a dynamo warning about non-leaf gradients).
        """
        if name != "module":
            return module
        return super().torch_compile(module, name)

    def _defer_loss_sync(self):
        """Keep batch losses on the device until the epoch ends (accelerators)."""
        accelerator = getattr(self, "accelerator", None)
        device = accelerator.device if accelerator is not None else self.device
        return torch.device(device).type != "cpu"

    def _batch_listeners(self):
        """The callbacks that listen to ``on_batch_begin`` / ``on_batch_end``.

        None when the net's own batch methods or ``notify`` are overridden (a
        subclass): then every batch event goes through :meth:`notify`.
        """
        for name in ("on_batch_begin", "on_batch_end"):
            if getattr(type(self), name) is not getattr(NeuralNet, name):
                return None
        if type(self).notify is not ImageNet.notify:
            return None
        return tuple([cb for _, cb in self.callbacks_
                      if getattr(type(cb), name, None) is not getattr(Callback, name)]
                     for name in ("on_batch_begin", "on_batch_end"))

    # skorch's documented hooks (callbacks, get_iterator, train_step_single,
    # validation_step, get_loss, infer, notify, on_*) cannot make its loop
    # cheaper per batch: its run_single_epoch calls every callback and indexes
    # the history for every batch and syncs the device for every loss. So this
    # method replaces skorch's (a public method, same signature and history
    # keys) and writes batch rows into History's list of dicts. It relies on
    # how skorch calls it, hence the tested range of skorch in pyproject.toml
    # (CI runs the lowest; bench/run.py keeps the per-batch cost within 1.2x
    # raw tensor slicing).
    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """Run one epoch; as skorch's, with less work per batch.

        * Batch events reach only the callbacks that override them (skorch
          calls every callback's method for every batch).
        * Batch rows are written straight into the epoch's list of batches of
          a plain :class:`skorch.history.History` (no history indexing per
          value).
        * On the CPU, the non-finite loss check reads the float that the
          history records anyway (no ``torch.isfinite`` per batch); on an
          accelerator the batch losses are kept as tensors during the epoch,
          so that the host can queue the next batches without waiting for
          each loss (``.item()`` would), and written to the history as floats
          at the end of the epoch, before the epoch callbacks read them.

        A non-finite training loss raises
        :class:`~skimgcls.exceptions.NonFiniteLossError`; the fit rolls back
        to the last complete epoch.
        """
        if iterator is None:
            return
        defer = self._defer_loss_sync()
        history, key, size_key = self.history, prefix + "_loss", prefix + "_batch_size"
        listeners = self._batch_listeners()
        plain = type(history) is History
        batches = history[-1]["batches"] if plain else None
        rows, losses, batch_count = [], [], 0
        for batch in iterator:
            if listeners is None:
                self.notify("on_batch_begin", batch=batch, training=training)
            else:
                if plain:
                    batches.append({})
                else:
                    history.new_batch()
                for cb in listeners[0]:
                    cb.on_batch_begin(self, batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            loss = step["loss"].detach()
            value = loss if defer else loss.item()
            # A data-parallel validation step reports the gathered batch's size.
            size = step.get("batch_size") or _batch_len(batch)
            if plain:
                row = batches[-1]
                row[key], row[size_key] = value, size
            else:
                history.record_batch(key, value)
                history.record_batch(size_key, size)
            if defer:
                rows.append(history[-1]["batches"][-1])
                losses.append(loss)
            elif training and not math.isfinite(value):
                self._raise_non_finite(f"The training loss is {value}")
            if listeners is None:
                self.notify("on_batch_end", batch=batch, training=training, **step)
            else:
                for cb in listeners[1]:
                    cb.on_batch_end(self, batch=batch, training=training, **step)
            batch_count += 1
        if losses:
            values = torch.stack(losses).float().tolist()
            for row, value in zip(rows, values):
                row[key] = value
            bad = [i for i, value in enumerate(values) if not math.isfinite(value)]
            if training and bad:
                raise NonFiniteLossError(
                    f"The training loss is {values[bad[0]]} at epoch "
                    f"{len(history)}, batch {bad[0] + 1}: training diverged and was "
                    "stopped. The estimator keeps the weights of the last complete "
                    "epoch. Lower lr, normalize the images, or use precision='fp32'."
                )
        history.record(prefix + "_batch_count", batch_count)

    def predict_logits(self, Xi, views=None, precision=None):
        """Return the float32 logits of one batch, in evaluation mode.

        With ``views`` (test-time augmentation, see :mod:`skimgcls._tta`),
        return the logits of the probabilities averaged over the views (softmax,
        or sigmoid when ``multilabel``). ``precision``: as for
        :meth:`forward_images`. Call it under :func:`torch.inference_mode`.
        """
        self.set_mode(False)
        images = self.to_model_input(Xi)
        if views is None:
            return self.forward_images(images, precision)
        return average_views(functools.partial(self.forward_images, precision=precision),
                             images, views, multilabel=self.multilabel)

    def predict(self, X):
        """Class indices (argmax), or the 0/1 indicator rows when ``multilabel``."""
        if not self.multilabel:
            return super().predict(X)
        return (self.predict_proba(X) > self.threshold).astype(np.int64)

    def set_pos_weight(self, pos_weight):
        """Weight the positives of each label in the multi-label loss.

        Parameters
        ----------
        pos_weight : array-like of shape (n_labels,) or None
            As ``BCEWithLogitsLoss(pos_weight=...)``; None weighs all equally.
        """
        self.pos_weight_ = (None if pos_weight is None
                            else torch.as_tensor(pos_weight, dtype=torch.float32))

    def mean_across_processes(self, tensors, weight):
        """Average ``tensors`` in place over data-parallel processes.

        Each process's tensors count ``weight`` times. A single process (this
        class) has nothing to average; see
        :class:`~skimgcls._accelerate.AcceleratedImageNet`.
        """

    def infer(self, x, **fit_params):
        return self.forward_images(self.to_model_input(x))

    def training_loss(self, batch):
        """Loss and logits of one training batch: augment, mix, forward, check.

        Augmentation and MixUp/CutMix happen here, so only training batches
        ever see them. (A non-finite loss is caught by
        :meth:`run_single_epoch`.)
        """
        Xi, yi = unpack_data(batch)
        images = self.to_model_input(Xi)
        if self.augment is not None:
            images = self.augment(images)
        images, perm, lam = mix_batch(images, mixup_alpha=self.mixup_alpha,
                                      cutmix_alpha=self.cutmix_alpha)
        y_pred = self.forward_images(images)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        if perm is not None:  # the partner's label, with its sample weight
            perm = perm.to("cpu")
            partner = {"sample_weight": Xi["sample_weight"][perm]}
            loss = lam * loss + (1 - lam) * self.get_loss(
                y_pred, yi[perm], X=partner, training=True)
        return loss, y_pred

    def validation_step(self, batch, **fit_params):
        """Loss and logits of one validation batch, in evaluation mode."""
        self.set_mode(False)
        Xi, yi = unpack_data(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def train_step_single(self, batch, **fit_params):
        self.set_mode(True)
        loss, y_pred = self.training_loss(batch)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    # -- training faults and checkpoints -------------------------------------
    def _raise_non_finite(self, what):
        epoch = len(self.history)
        row = self.history[-1] if epoch else {}
        batch = row.get("train_batch_count", len(row.get("batches", ())))
        kept = (f"the weights of epoch {epoch - 1}, the last complete epoch"
                if epoch > 1 else "its initial weights (no epoch completed)")
        raise NonFiniteLossError(
            f"{what} at epoch {epoch}, batch {batch}: training diverged and was "
            f"stopped. The estimator keeps {kept}. Lower lr, normalize the images "
            "(extreme values overflow), or use precision='fp32'."
        )

    def _weights_finite(self):
        tensors = [t.detach() for t in (*self.module_.parameters(),
                                        *self.module_.buffers())
                   if t.is_floating_point()]
        if not tensors:
            return True
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _snapshot(self):
        """Keep (on the CPU) what rolling back to this point needs."""
        self._last_good_ = {
            "epochs": len(self.history),
            "module": to_cpu(self.module_.state_dict()),
            "optimizer": to_cpu(self.optimizer_.state_dict()),
        }

    def _roll_back(self):
        """Return to the last complete epoch: weights, optimizer, history."""
        snapshot = self._last_good_
        if snapshot is None:
            return
        self.module_.load_state_dict(snapshot["module"])
        self.optimizer_.load_state_dict(snapshot["optimizer"])
        del self.history[snapshot["epochs"]:]

    def _end_epoch(self, *, stopped):
        if not self._weights_finite():
            self._raise_non_finite("The weights became non-finite after the last "
                                   "training batch")
        self._snapshot()
        if self.checkpoint_ is not None:
            self.checkpoint_.save(self, stopped=stopped)

    def notify(self, method_name, **cb_kwargs):
        if method_name == "on_grad_computed" and not self.hears_grads_:
            return  # skorch's train_step notifies every step; none listens
        if method_name == "on_train_begin":
            self.interrupted_ = None
            self.hears_grads_ = self._grad_hooks()
            super().notify(method_name, **cb_kwargs)
            # After the callbacks' on_train_begin, which (re)build the
            # scheduler whose state a checkpoint then overwrites.
            if self.checkpoint_ is not None:
                self.checkpoint_.restore(self)
            self._snapshot()
            return
        if method_name != "on_epoch_end":
            super().notify(method_name, **cb_kwargs)
            return
        try:
            super().notify(method_name, **cb_kwargs)
        except KeyboardInterrupt as exc:
            # skorch's callbacks (EarlyStopping) stop training this way: the
            # epoch is complete, so it is kept and checkpointed.
            self._end_epoch(stopped=True)
            raise StopTraining() from exc
        self._end_epoch(stopped=False)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except StopTraining:
            raise
        except KeyboardInterrupt:
            self._roll_back()
            self.interrupted_ = len(self.history) + 1
            raise  # skorch's partial_fit ends training; CNNClassifier re-raises
        except NonFiniteLossError:
            self._roll_back()
            raise
        finally:
            self._last_good_ = None

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Mean of the per-sample losses weighted by ``X['sample_weight']``.

        Multi-label losses (one per label) are first averaged over the labels
        of each sample, positives weighted by ``pos_weight_``. The weighted
        mean is one dot product with the weights divided by the batch size:
        ``(loss * w).mean()`` adds two autograd nodes, a visible share of a
        small network's batch on the CPU.
        """
        y_true = to_tensor(y_true, device=self.device)
        if self.multilabel:
            y_true = y_true.to(device=y_pred.device, dtype=y_pred.dtype)
        loss = self.criterion_(y_pred, y_true)
        if loss.ndim == 2:  # multi-label: one loss per label
            if self.pos_weight_ is not None:
                # BCE's pos_weight, for 0/1 targets: positives' terms times it.
                loss = loss * (1 + (self.pos_weight_.to(loss.device) - 1) * y_true)
            loss = loss.mean(dim=1)
        if not (isinstance(X, Mapping) and "sample_weight" in X):
            return loss.mean()
        weight = X["sample_weight"].to(loss.device)
        if loss.ndim != 1 or weight.shape != loss.shape or weight.dtype != loss.dtype:
            return (loss * weight).mean()
        return torch.dot(loss, weight / len(weight))


def _batch_len(batch):
    X = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(X, Mapping) and "X" in X:
        return len(X["X"])
    return get_len(X)
