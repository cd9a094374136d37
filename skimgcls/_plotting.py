"""Plotting helpers shared by the displays (matplotlib is imported lazily)."""

import numpy as np

from ._functional import scaled_float

__all__ = ["for_imshow", "pyplot"]


def pyplot(caller):
    """``matplotlib.pyplot``, or an ImportError naming ``caller`` and the extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs matplotlib to plot: pip install \"skimgcls[plots]\"."
        ) from exc
    return plt


def for_imshow(image):
    """An NHWC image as ``imshow`` shows it best: 2-D gray, [0, 1] floats."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint16:
        return scaled_float(image)
    if image.dtype.kind == "f":
        low, high = float(np.min(image)), float(np.max(image))
        if low < 0 or high > 1:  # normalized images: stretch for display
            image = (image - low) / (high - low or 1.0)
    return image
