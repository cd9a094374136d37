"""Plotting helpers shared by the displays (matplotlib is imported lazily)."""

import math

import numpy as np

from ._functional import scaled_float

__all__ = ["for_imshow", "image_grid", "pyplot"]


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


def image_grid(plt, n, *, n_cols=None, ax=None, tile=(1.6, 1.9), what="axes"):
    """A figure and a 2-D array of at least ``n`` axes, about square by default.

    ``ax`` (an array of axes, at least ``n``) is used as given; otherwise a new
    constrained-layout figure gets ``tile`` inches (width, height) per image.
    Every axis is turned off; the caller draws into the first ``n``.
    """
    n = max(n, 1)
    n_cols = n_cols or math.ceil(math.sqrt(n))
    n_rows = math.ceil(n / n_cols)
    if ax is None:
        fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                                 figsize=(tile[0] * n_cols, tile[1] * n_rows + 0.5),
                                 layout="constrained")
    else:
        axes = np.asarray(ax, dtype=object).reshape(-1)
        if len(axes) < n:
            raise ValueError(f"Expected at least {n} {what}; got {len(axes)}.")
        fig = axes[0].figure
        axes = axes.reshape(1, -1)
    for axis in axes.flat:
        axis.set_axis_off()
    return fig, axes
