"""Training on several GPUs (or in mixed precision) with Hugging Face Accelerate.

``CNNClassifier(accelerator=...)`` builds its skorch net from
:class:`AcceleratedImageNet`, skorch's ``AccelerateMixin`` over
:class:`~skimgcls._skorch.ImageNet`. The accelerator then places the module,
shards the training and validation batches over the processes started by
``accelerate launch``, wraps the module in DistributedDataParallel, runs the
forward pass under its autocast (``mixed_precision='bf16'`` or ``'fp16'``) and
scales the fp16 loss in ``backward``.

This module imports :mod:`skorch.hf` (not accelerate itself); it is imported
only when an accelerator is used.
"""

import warnings
from collections.abc import Mapping

from skorch.exceptions import DeviceWarning
from skorch.hf import AccelerateMixin

from ._skorch import ImageNet

__all__ = ["AcceleratedImageNet", "make_accelerator", "accelerator_precision"]

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
        accelerator = Accelerator(**accelerator)
    return accelerator


def accelerator_precision(accelerator):
    """Return ``'fp32'``, ``'bf16'``, ``'fp16'`` or ``'fp8'`` for an accelerator."""
    mixed = str(getattr(accelerator, "mixed_precision", "no"))
    return _PRECISIONS.get(mixed, mixed)


class AcceleratedImageNet(AccelerateMixin, ImageNet):
    """:class:`~skimgcls._skorch.ImageNet` trained through an ``Accelerator``.

    skorch's ``AccelerateMixin`` prepares the module, optimizer and data
    loaders and gathers validation predictions across processes. This class
    keeps what ``ImageNet`` adds: NHWC batches become NCHW input on the
    accelerator's device, augmentation of training batches, sample weights in
    the loss. The forward pass runs under ``accelerator.autocast()``, also in
    ``predict``; backward goes through ``accelerator.backward`` (loss scaling
    for fp16, gradient synchronization across processes).
    """

    def to_model_input(self, x):
        # device=None with accelerate: the accelerator's device is the target.
        if isinstance(x, Mapping):
            x = x["X"]
        return super().to_model_input(x.to(self.accelerator.device, non_blocking=True))

    def forward_images(self, images):
        with self.accelerator.autocast():
            return super().forward_images(images)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        loss, y_pred = self.training_loss(batch)
        self.accelerator.backward(loss)
        return {"loss": loss, "y_pred": y_pred}

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        # torch's LR schedulers patch ``optimizer.step`` on the instance to
        # track calls. A plain optimizer drops the patch when pickled, accelerate's
        # AcceleratedOptimizer does not (and its patch cannot be pickled): drop it
        # once training is over so that the fitted estimator pickles.
        for name in self._optimizers:
            vars(getattr(self, name + "_")).pop("step", None)
        return self

    def __setstate__(self, state):
        # device=None is on purpose (the accelerator places the module), but
        # skorch warns about it when unpickling and replaces it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeviceWarning)
            super().__setstate__(state)
        self.device = None
