"""Where and how precisely training runs: device, precision, CPU threads."""

from contextlib import contextmanager
from functools import lru_cache

import torch

__all__ = [
    "cpu_has_native_bf16",
    "inference_batch_size",
    "resolve_device",
    "predict_precision",
    "resolve_precision",
    "training_precision",
    "trains_depthwise",
    "torch_threads",
]

#: Pixels per forward pass of a frozen network on a CPU (see
#: ``inference_batch_size``): 8 images of 224 x 224.
CPU_BATCH_PIXELS = 8 * 224 * 224


def resolve_device(device):
    """Map ``'auto'`` to CUDA, then MPS, then CPU; pass anything else through."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@lru_cache(maxsize=1)
def cpu_has_native_bf16():
    """Return True if the CPU computes bf16 natively (avx512_bf16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision, device):
    """Return ``'bf16'`` or ``'fp32'`` for ``precision`` on ``device``.

    ``'auto'`` picks bf16 autocast on CUDA GPUs that support it and on CPUs
    with native bf16 arithmetic (avx512_bf16 or AMX), where it is about twice
    as fast at the same accuracy; fp32 everywhere else.
    """
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def trains_depthwise(module):
    """Whether ``module`` has a depthwise convolution that trains.

    Depthwise: ``groups == in_channels > 1`` (EfficientNet, MobileNet); that
    trains: one of its parameters requires a gradient (a frozen body does not).
    """
    return any(isinstance(m, torch.nn.Conv2d) and 1 < m.groups == m.in_channels
               and any(p.requires_grad for p in m.parameters())
               for m in module.modules())


def training_precision(precision, device, module):
    """:func:`resolve_precision` for training ``module`` on ``device``.

    ``'auto'`` trains a network with trainable depthwise convolutions in fp32
    on a CPU, where bf16 autocast would be picked: their bf16 backward pass is
    slower there than fp32. On 2 Zen 4 cores (``bench/bench_precision.py``)
    fine-tuning EfficientNet-Lite0 at 128 px took 0.86x the seconds in fp32,
    where ``compact_cnn`` (dense convolutions) took 1.16x. Predicting is a
    forward pass alone: see :func:`predict_precision`.
    """
    resolved = resolve_precision(precision, device)
    if (precision == "auto" and resolved == "bf16" and torch.device(device).type == "cpu"
            and trains_depthwise(module)):
        return "fp32"
    return resolved


def predict_precision(precision, trained, device, module):
    """The precision of predictions with ``module``, which trained in ``trained``.

    ``trained``, except where ``'auto'`` trained in fp32 only because of
    :func:`training_precision`'s exception (trainable depthwise convolutions
    on a CPU with native bf16): that concerns their backward pass, and the
    forward pass alone is faster in bf16 (``bench/bench_precision.py``: the
    fine-tuned EfficientNet-Lite0 recipe predicted 1.94x faster, every class
    the same). An explicit ``precision`` is used as it is.
    """
    if precision != "auto":
        return precision
    resolved = resolve_precision(precision, device)
    if training_precision(precision, device, module) != resolved:  # the exception
        return resolved
    return trained


def inference_batch_size(device, image_size, module=None):
    """Images per forward pass when a frozen network computes features.

    On a CPU, as many as hold about ``CPU_BATCH_PIXELS`` input pixels (8
    images of 224 x 224, 32 of 112 x 112, 98 of 64 x 64; 1 to 256): the
    activations of a small batch stay in the cores' caches. On 2 Zen 4 cores
    (``bench/bench_inference_batch.py``, bf16) EfficientNet-Lite0 embedded
    224 px images 1.7x faster in batches of 8 than of 64 and 2x faster than
    of 128 (ResNet-18 1.04x and 1.17x); at 64, 112 and 224 px this rule was
    within 6 % of the fastest of batches of 8 to 256 for both. On an
    accelerator, 64.

    Parameters
    ----------
    device : str or torch.device
        Where the network runs.
    image_size : int, tuple of int or None
        Size of the images; None: unknown (64 px is assumed).
    module : torch.nn.Module, default=None
        The network: when it resizes its input (``module.adapter.size``, as
        backbone networks do), that size counts instead of ``image_size``.
    """
    if torch.device(device).type != "cpu":
        return 64
    image_size = getattr(getattr(module, "adapter", None), "size", None) or image_size
    h, w = (image_size, image_size) if isinstance(image_size, int) else (
        image_size[:2] if image_size is not None else (64, 64))
    if not h > 0 < w:  # unknown
        h = w = 64
    return int(min(256, max(1, round(CPU_BATCH_PIXELS / (h * w)))))


@contextmanager
def torch_threads(n_threads):
    """Run a ``with`` block with ``torch.set_num_threads(n_threads)``, then restore.

    None leaves torch's setting alone (``torch.get_num_threads()``: the
    ``OMP_NUM_THREADS`` environment variable, else one thread per core).
    """
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
