"""Data-parallel training (and mixed precision) with Hugging Face Accelerate.

``CNNClassifier(accelerator=...)`` builds its skorch net from
:class:`AcceleratedImageNet`, skorch's ``AccelerateMixin`` over
:class:`~skimgcls._skorch.ImageNet`. In a script started by ``torchrun`` or
``accelerate launch`` (or Accelerate's ``notebook_launcher``), each process:

* wraps the module in DistributedDataParallel (``accelerator.prepare``), which
  averages the gradients over the processes at every step;
* trains on its shard of every epoch: in-memory images through
  :meth:`skimgcls._data.SliceBatches.shard` (same global permutation on all
  processes, batch ``i`` to process ``i % n``), file paths through the
  ``DataLoader`` that ``accelerator.prepare`` shards;
* evaluates its shard of the validation split; the predictions, labels and
  weights are gathered, so the validation loss and scores in the history are
  those of the whole split, identical on all processes (hence identical
  early-stopping decisions);
* takes the BatchNorm buffers (running statistics) of the main process after
  each training pass, so that all processes hold the same model.

The forward pass runs under the accelerator's autocast
(``mixed_precision='bf16'`` or ``'fp16'``) and ``backward`` scales the fp16
loss. This module imports :mod:`skorch.hf`, never accelerate itself (an
optional dependency): the accelerator object is passed in.
"""

import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from skorch.dataset import unpack_data
from skorch.exceptions import DeviceWarning
from skorch.hf import AccelerateMixin

from ._checkpoint import unwrapped_module
from ._data import SliceBatches
from ._skorch import ImageNet

__all__ = ["AcceleratedImageNet", "accelerator_kwargs", "accelerator_precision",
           "launched_processes", "make_accelerator", "shared_random_state"]

_PRECISIONS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}


def make_accelerator(accelerator, *, device, precision):
    """Return the ``accelerate.Accelerator`` of a ``CNNClassifier``, or None.

    Parameters
    ----------
    accelerator : None, dict or accelerate.Accelerator
        A dict holds the keyword arguments of ``Accelerator(...)``.
    device, precision : str
        The estimator's own ``device`` and ``precision``; both must be
        ``'auto'`` with an accelerator, which decides them.
    """
    if accelerator is None:
        return None
    if device != "auto" or precision != "auto":
        raise ValueError(
            "With an accelerator, the accelerator places the model and sets the "
            f"mixed precision: leave device='auto' and precision='auto' (got "
            f"device={device!r}, precision={precision!r}) and pass e.g. "
            "accelerator={'mixed_precision': 'bf16'} or "
            "Accelerator(cpu=True)."
        )
    if isinstance(accelerator, dict):
        try:
            from accelerate import Accelerator
        except ImportError as exc:
            raise ImportError(
                "CNNClassifier(accelerator=...) needs the accelerate package: "
                'pip install "skimgcls[accelerate]".'
            ) from exc
        accelerator = Accelerator(**accelerator_kwargs(accelerator))
    launched = launched_processes()
    if launched > 1 and accelerator.num_processes == 1:
        raise ValueError(
            f"The script was started as {launched} processes (WORLD_SIZE={launched}), "
            "but the accelerator runs each of them alone (distributed type "
            f"{accelerator.distributed_type}): they would all train on all the data. "
            "On a machine without GPUs pass Accelerator(cpu=True) (or a dict "
            "accelerator, which sets it), or start a single process."
        )
    return accelerator


def launched_processes():
    """How many processes ``torchrun`` / ``accelerate launch`` started (WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _has_device_accelerator():
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "is_available"):
        return api.is_available()
    return torch.cuda.is_available()


def accelerator_kwargs(kwargs):
    """The arguments of ``Accelerator(...)`` for a dict ``accelerator``.

    In a multi-process launch on a machine without GPUs (or other device
    accelerators), Accelerate forms a process group only with ``cpu=True``;
    without it every process would train alone on all the data. So
    ``cpu=True`` is added there unless the dict says otherwise.
    """
    kwargs = dict(kwargs)
    if launched_processes() > 1 and not _has_device_accelerator():
        kwargs.setdefault("cpu", True)
    return kwargs


def shared_random_state(random_state, accelerator):
    """The ``random_state`` that every process of a data-parallel fit uses.

    All processes must hold out the same validation split and draw the same
    batch permutation. An int (or a RandomState) is used as is; None becomes
    one seed drawn by the main process and broadcast to the others.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        The estimator's ``random_state``.
    accelerator : accelerate.Accelerator or None
        The fit's accelerator; None or a single process changes nothing.
    """
    if random_state is not None or accelerator is None or accelerator.num_processes < 2:
        return random_state
    seed = torch.tensor([np.random.randint(np.iinfo(np.int32).max)],
                        device=accelerator.device)
    torch.distributed.broadcast(seed, src=0)
    return int(seed.item())


def _has_trainable(module):
    return any(p.requires_grad for p in module.parameters())


def _is_prepared_optimizer(optimizer):
    # accelerate's AcceleratedOptimizer, without importing accelerate.
    return hasattr(optimizer, "accelerator_state") and hasattr(optimizer, "optimizer")


def accelerator_precision(accelerator):
    """Return ``'fp32'``, ``'bf16'``, ``'fp16'`` or ``'fp8'`` for an accelerator."""
    mixed = str(getattr(accelerator, "mixed_precision", "no"))
    return _PRECISIONS.get(mixed, mixed)


class AcceleratedImageNet(AccelerateMixin, ImageNet):
    """:class:`~skimgcls._skorch.ImageNet` trained through an ``Accelerator``.

    skorch's ``AccelerateMixin`` prepares the module, optimizer and data
    loaders. This class keeps what ``ImageNet`` adds: NHWC batches become NCHW
    input on the accelerator's device, augmentation of training batches,
    sample weights in the loss. The forward pass runs under
    ``accelerator.autocast()``, also in ``predict``; backward goes through
    ``accelerator.backward`` (loss scaling for fp16, gradient synchronization
    across processes). With several processes it also shards the in-memory
    batches, gathers the validation results over the processes and keeps the
    BatchNorm buffers in step (see the module docstring).
    """

    @property
    def num_processes(self):
        return self.accelerator.num_processes

    # skorch's AccelerateMixin has no public hook for what it prepares: this
    # class overrides its _initialize_accelerator and uses _unwrap_accelerator,
    # _wrapped_with_accelerator and the net's _modules/_criteria/_optimizers
    # lists, within the skorch versions pinned in pyproject.toml.
    def _initialize_accelerator(self):
        """Prepare the module(s) and optimizer(s) with the accelerator.

        Unlike skorch's, modules without trainable parameters (the loss, a
        fully frozen network) are only moved to the device: wrapping them in
        DistributedDataParallel fails ("DistributedDataParallel is not needed
        when a module doesn't have any parameter that requires a gradient").
        The learning-rate scheduler stays a plain one: accelerate's wrapper
        would step it once per process at every batch, and the one-cycle
        schedule already counts the steps of one process.
        """
        if self._wrapped_with_accelerator:
            return self
        accelerator = self.accelerator
        for name in self._criteria + self._modules:
            module = getattr(self, name + "_")
            if not isinstance(module, torch.nn.Module):
                continue
            if _has_trainable(module):
                module = accelerator.prepare(module)
            elif accelerator.device_placement:
                module = module.to(accelerator.device)
            setattr(self, name + "_", module)
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            if (isinstance(optimizer, torch.optim.Optimizer)
                    and not _is_prepared_optimizer(optimizer)):
                setattr(self, name + "_", accelerator.prepare(optimizer))
        self._trainable_ = self._trainable_mask()
        self._wrapped_with_accelerator = True
        return self

    def _trainable_mask(self):
        return tuple(p.requires_grad for p in unwrapped_module(self).parameters())

    def get_iterator(self, dataset, training=False):
        """This process's batches of ``dataset``.

        In-memory images are sliced and sharded here; a ``DataLoader`` (file
        paths, workers) goes through ``accelerator.prepare``, which shards it.
        """
        iterator = ImageNet.get_iterator(self, dataset, training=training)
        sliced = isinstance(iterator, SliceBatches)
        if not training:  # how validation_step gathers this loader's batches
            self._valid_prepared_ = not sliced
        if sliced:
            return iterator.shard(self.num_processes, self.accelerator.process_index,
                                  even=training)
        return self.accelerator.prepare(iterator)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if training and self._wrapped_with_accelerator \
                and self._trainable_mask() != self._trainable_:
            # DistributedDataParallel only synchronizes the parameters that
            # were trainable when it wrapped the module: wrap it again after a
            # callback (UnfreezeBackbone) changed them.
            self._unwrap_accelerator()
            self._initialize_accelerator()
        if training and isinstance(iterator, SliceBatches):
            self._synchronize_rng()
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        if training:
            self._broadcast_buffers()

    def _synchronize_rng(self):
        """Give every process the main process's torch random state.

        All processes must draw the same permutation of the epoch, but their
        generators drift apart (dropout on batches of different sizes): each
        epoch starts from the main process's state, as Accelerate does for
        its data loaders.
        """
        if self.num_processes < 2:
            return
        state = torch.get_rng_state().to(self.accelerator.device)
        torch.distributed.broadcast(state, src=0)
        torch.set_rng_state(state.cpu())

    def _broadcast_buffers(self):
        """Give every process the main process's buffers (BatchNorm statistics).

        DistributedDataParallel broadcasts them before each training forward
        pass, so after the last batch each process holds its own update.
        """
        if self.num_processes < 2:
            return
        for buffer in self.module_.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def mean_across_processes(self, tensors, weight):
        """Replace ``tensors`` in place by their ``weight``-weighted mean over processes."""
        if self.num_processes < 2:
            return
        device = self.accelerator.device
        total = torch.tensor(float(weight), device=device)
        torch.distributed.all_reduce(total)
        if total.item() == 0:
            return
        for tensor in tensors:
            summed = tensor.detach().to(device, torch.float64) * weight
            torch.distributed.all_reduce(summed)
            tensor.copy_(summed / total)

    def _gather(self, batch, y_pred):
        """The predictions, labels and weights of one validation step, all processes."""
        Xi, yi = unpack_data(batch)
        device = y_pred.device
        weights = Xi["sample_weight"] if isinstance(Xi, Mapping) else None
        if weights is None:
            weights = torch.ones(len(y_pred))
        tensors = (y_pred, torch.as_tensor(yi).to(device), weights.to(device))
        if getattr(self, "_valid_prepared_", False):
            # accelerate's own loader: it knows which samples are padding.
            return self.accelerator.gather_for_metrics(tensors)
        # Sliced batches: sizes differ on the last step (empty on processes
        # without a batch); pad, gather, and keep each process's real rows.
        sizes = self.accelerator.gather(torch.tensor([len(y_pred)], device=device))
        padded = self.accelerator.gather(
            tuple(self.accelerator.pad_across_processes(t, dim=0) for t in tensors))
        width = len(padded[0]) // self.num_processes
        return tuple(torch.cat([t[i * width:i * width + int(n)]
                                for i, n in enumerate(sizes.tolist())])
                     for t in padded)

    def validation_step(self, batch, **fit_params):
        """Evaluate this process's batch; loss and predictions over all processes.

        The gathered batches come in the order of the validation split, so
        the cached predictions of the epoch scores (``valid_acc``) line up
        with its labels. The callbacks' ``on_batch_end`` gets the gathered
        batch: its labels and ``{'sample_weight': ...}`` (not the images).
        """
        step = super().validation_step(batch, **fit_params)
        if self.num_processes < 2:
            return step
        y_pred, y_true, weights = self._gather(batch, step["y_pred"])
        gathered = {"sample_weight": weights}
        loss = self.get_loss(y_pred, y_true, X=gathered)
        return {"loss": loss, "y_pred": y_pred, "batch_size": len(y_pred),
                "gathered_batch": (gathered, y_true)}

    def to_model_input(self, x):
        # device=None with accelerate: the accelerator's device is the target.
        if isinstance(x, Mapping):
            x = x["X"]
        return super().to_model_input(x.to(self.accelerator.device, non_blocking=True))

    def forward_images(self, images, precision=None):
        with self.accelerator.autocast():
            return super().forward_images(images, precision)

    def train_step_single(self, batch, **fit_params):
        self.set_mode(True)
        loss, y_pred = self.training_loss(batch)
        self.accelerator.backward(loss)
        return {"loss": loss, "y_pred": y_pred}

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # Re-prepare a module unwrapped at the end of the last fit (warm
        # start, partial_fit); a first fit's initialize prepared it already.
        self._initialize_accelerator()
        return super().on_train_begin(net, X=X, y=y, **kwargs)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # Not AccelerateMixin's, which unwraps the module before the
        # callbacks' on_train_end (early stopping's best weights, update_bn)
        # run on it; notify unwraps after them.
        return ImageNet.on_train_end(self, net, X=X, y=y, **kwargs)

    def notify(self, method_name, **cb_kwargs):
        if "gathered_batch" in cb_kwargs:  # a data-parallel validation step
            cb_kwargs["batch"] = cb_kwargs.pop("gathered_batch")
        if method_name != "on_train_end":
            return super().notify(method_name, **cb_kwargs)
        try:
            super().notify(method_name, **cb_kwargs)
        finally:
            self.accelerator.wait_for_everyone()
            if self.unwrap_after_train:
                self._unwrap_accelerator()
            # torch's LR schedulers patch ``optimizer.step`` on the instance
            # to track calls. A plain optimizer drops the patch when pickled,
            # accelerate's AcceleratedOptimizer does not (and its patch cannot
            # be pickled): drop it once training is over so that the fitted
            # estimator pickles.
            for name in self._optimizers:
                vars(getattr(self, name + "_")).pop("step", None)

    def __setstate__(self, state):
        # device=None is on purpose (the accelerator places the module), but
        # skorch warns about it when unpickling and replaces it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeviceWarning)
            super().__setstate__(state)
        self.device = None
