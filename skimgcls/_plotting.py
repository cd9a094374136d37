"""Plotting helpers shared by the displays (matplotlib is imported lazily)."""

import math

import numpy as np

from ._functional import scaled_float

__all__ = ["display_names", "for_imshow", "image_grid", "label_set", "pyplot", "tile_for"]


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


def display_names(display_labels, n, what, fix):
    """``display_labels`` as an object array of ``n`` names, or a ValueError.

    ``what`` says what the ``n`` names are for (``'label columns of y_true'``),
    ``fix`` how to pass them right.
    """
    names = np.asarray(display_labels, dtype=object)
    if names.shape != (n,):
        raise ValueError(
            f"display_labels has {names.size} names for the {n} {what}; {fix}")
    return names


def label_set(row, names=None):
    """``'{a, b}'``: the labels that are on in a 0/1 indicator row, by name.

    ``names`` (one per column) names them; None shows the column indices.
    """
    return "{" + ", ".join(str(j if names is None else names[j])
                           for j in np.flatnonzero(row)) + "}"


def tile_for(titles, tile):
    """``tile`` (inches per image) widened and heightened to fit ``titles``.

    The default tiles fit two short title lines at font size 8; longer lines
    widen the tile (about 0.065 inch a character) and the image with it, more
    lines add height.
    """
    lines = [line for title in titles for line in title.split("\n")]
    if not lines:
        return tile
    width = max(tile[0], 0.065 * max(map(len, lines)))
    n_lines = max(title.count("\n") + 1 for title in titles)
    return width, width + (tile[1] - tile[0]) + 0.14 * max(0, n_lines - 2)
