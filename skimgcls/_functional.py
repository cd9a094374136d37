"""Tensor kernels: the one conversion of images to float NCHW, and the resize,
crop, color and affine kernels every transformer, augmentation, dataset and
network input shares.

The lowest layer of the package: it imports only NumPy and torch. Everything
here works on whole batches.

Conventions
-----------
* Arrays handed around the package are NHWC (``(n, H, W, C)``), uint8,
  uint16 or float32; networks take float32 NCHW.
* :func:`to_float_nchw` is *the* conversion: NHWC (NumPy or torch) to float32
  NCHW, integer images scaled to [0, 1] by :data:`MAX_VALUE`; float images
  are taken as they are.
* Kernels (the ``nn.Module`` classes) map float NCHW to float NCHW; so a
  Pipeline's transformers can be exported as one module.
"""

from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AffineChannels",
    "CropModule",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA",
    "MAX_VALUE",
    "ResizeModule",
    "TORCH_INTERPOLATION",
    "ToGrayModule",
    "ToRGBModule",
    "apply_nhwc",
    "crop_or_pad",
    "from_float_nchw",
    "max_value",
    "pair",
    "resize_nhwc",
    "scaled_float",
    "to_float_nchw",
]

#: The largest value of each integer image dtype: the one scale table.
MAX_VALUE = {"uint8": 255.0, "uint16": 65535.0}

#: ImageNet statistics (RGB, images scaled to [0, 1]) used by torchvision weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ITU-R 601-2 luma, the weights of PIL's ``convert('L')`` and torchvision.
LUMA = (0.299, 0.587, 0.114)

#: scikit-learn-style interpolation names -> ``F.interpolate`` modes.
TORCH_INTERPOLATION = {
    "nearest": "nearest-exact",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "area": "area",
}

#: Images per chunk in :func:`apply_nhwc`: bounds the float32 copy it makes.
CHUNK = 512


def max_value(dtype):
    """The largest value of an integer image dtype (NumPy or torch), else None."""
    return MAX_VALUE.get(str(dtype).removeprefix("torch."))


def to_float_nchw(x, device=None):
    """NHWC images (NumPy array or tensor) -> float32 NCHW tensor, scaled.

    uint8 and uint16 images are divided by their largest value (to [0, 1]);
    float images are taken as they are. The result is a channels-last view
    when the input is contiguous NHWC (no copy of the layout).

    Parameters
    ----------
    x : ndarray or torch.Tensor of shape (n, H, W, C)
        Images.
    device : str or torch.device, default=None
        Where to put the result; None keeps the tensor's (CPU for arrays).

    Returns
    -------
    images : torch.Tensor of shape (n, C, H, W), float32
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2)
    scale = max_value(x.dtype)
    if scale is None:
        return x.float()
    return x.float().mul_(1.0 / scale)  # a fresh tensor: scaled in place


def from_float_nchw(x, dtype, scaled=True):
    """Float NCHW tensor -> NHWC NumPy array of ``dtype``.

    Integer dtypes are rounded and clipped to their range; with ``scaled``
    the values are in [0, 1] and multiplied back by the dtype's largest value
    (the inverse of :func:`to_float_nchw`).
    """
    dtype = np.dtype(dtype)
    top = max_value(dtype)
    if top is not None:
        if scaled:
            x = x * top
        x = x.round().clamp_(0, top)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy().astype(dtype, copy=False))


def scaled_float(X):
    """NHWC NumPy images -> float32 NHWC: uint8 /255, uint16 /65535, float as is."""
    scale = max_value(X.dtype)
    X = X.astype(np.float32, copy=False)
    return X / np.float32(scale) if scale is not None else X


def pair(size):
    """``(H, W)`` from an int, a pair of ints or a 1-element sequence."""
    if isinstance(size, Integral):
        return int(size), int(size)
    if len(size) == 1:  # torchvision transforms hold sizes as [224]
        return int(size[0]), int(size[0])
    h, w = size
    return int(h), int(w)


def crop_or_pad(x, height, width, fill):
    """Center-crop and/or pad ``x`` (..., h, w) to (height, width)."""
    h, w = x.shape[-2], x.shape[-1]
    if h > height:
        top = int(round((h - height) / 2.0))
        x = x[..., top:top + height, :]
    if w > width:
        left = int(round((w - width) / 2.0))
        x = x[..., :, left:left + width]
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h or pad_w:
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2),
                  value=float(fill))
    return x


class ResizeModule(nn.Module):
    """Resize float NCHW images to ``size``, optionally keeping the aspect ratio."""

    def __init__(self, size, interpolation, keep_aspect_ratio, fill, antialias):
        super().__init__()
        self.size = pair(size)
        self.mode = TORCH_INTERPOLATION[interpolation]
        self.keep_aspect_ratio = keep_aspect_ratio
        self.fill = float(fill)
        self.antialias = bool(antialias) and self.mode in ("bilinear", "bicubic")

    def forward(self, x):
        h, w = int(x.shape[-2]), int(x.shape[-1])
        height, width = self.size
        if self.keep_aspect_ratio is None:
            new = (height, width)
        else:
            pick = min if self.keep_aspect_ratio == "pad" else max
            scale = pick(height / h, width / w)
            new = (max(1, round(h * scale)), max(1, round(w * scale)))
            if self.keep_aspect_ratio == "pad":
                new = (min(new[0], height), min(new[1], width))
            else:
                new = (max(new[0], height), max(new[1], width))
        if new != (h, w):
            kwargs = {}
            if self.mode in ("bilinear", "bicubic"):
                # Bilinear antialiasing changes nothing when enlarging (within
                # 2e-6) but takes a slower kernel: use it only to shrink.
                shrink = new[0] < h or new[1] < w
                antialias = self.antialias and (shrink or self.mode == "bicubic")
                kwargs = dict(align_corners=False, antialias=antialias)
            x = F.interpolate(x, size=new, mode=self.mode, **kwargs)
        if self.keep_aspect_ratio is not None:
            x = crop_or_pad(x, height, width, self.fill)
        return x


class CropModule(nn.Module):
    """Center-crop (or pad with ``fill``) float NCHW images to ``size``."""

    def __init__(self, size, fill):
        super().__init__()
        self.size = pair(size)
        self.fill = float(fill)

    def forward(self, x):
        return crop_or_pad(x, *self.size, self.fill)


class AffineChannels(nn.Module):
    """``x -> (x - mean) / std`` per channel, on float NCHW.

    One-channel input and three-channel statistics broadcast to three channels
    (gray repeated to RGB, without a copy first). ``persistent=False`` keeps
    the statistics out of the state dict (for a module inside a network whose
    state dict should hold learned weights only).
    """

    def __init__(self, mean, std, persistent=True):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32)
                             .reshape(1, -1, 1, 1), persistent=persistent)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32)
                             .reshape(1, -1, 1, 1), persistent=persistent)

    def forward(self, x):
        return (x - self.mean) / self.std


class ToRGBModule(nn.Module):
    """Gray -> 3 equal channels; RGBA -> RGB (alpha dropped)."""

    def forward(self, x):
        c = x.shape[1]
        if c == 1:
            return x.expand(-1, 3, -1, -1).contiguous()
        return x[:, :3]


class ToGrayModule(nn.Module):
    """Luma of RGB(A) images, repeated to ``n_channels`` channels."""

    def __init__(self, n_channels):
        super().__init__()
        self.n_channels = int(n_channels)
        self.register_buffer("luma", torch.tensor(LUMA).reshape(1, 3, 1, 1))

    def forward(self, x):
        if x.shape[1] >= 3:
            x = (x[:, :3] * self.luma).sum(dim=1, keepdim=True)
        return x.expand(-1, self.n_channels, -1, -1).contiguous()


def apply_nhwc(module, X, out_dtype=None):
    """Run a float NCHW ``module`` over NHWC ``X`` chunk by chunk, unscaled.

    Values keep their range (uint8 images are processed in [0, 255]);
    ``out_dtype`` None keeps the dtype of ``X`` (integers rounded and clipped).
    """
    out_dtype = np.dtype(X.dtype if out_dtype is None else out_dtype)
    chunks = []
    for start in range(0, len(X), CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(X[start:start + CHUNK]))
        with torch.no_grad():
            y = module(x.permute(0, 3, 1, 2).to(torch.float32))
        chunks.append(from_float_nchw(y, out_dtype, scaled=False))
    return np.ascontiguousarray(np.concatenate(chunks))


def resize_nhwc(X, size, interpolation, keep_aspect_ratio, fill, antialias):
    """Resize an NHWC array (one size per call) keeping its dtype."""
    module = ResizeModule(size, interpolation, keep_aspect_ratio, fill, antialias)
    return apply_nhwc(module, X)
