"""What a backbone's pretrained weights expect as input, and the input size rule."""

from dataclasses import dataclass
from numbers import Integral

from .._functional import IMAGENET_MEAN, IMAGENET_STD, pair

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "InputSpec", "resolve_input_size"]


@dataclass(frozen=True)
class InputSpec:
    """What a backbone's pretrained weights expect as input.

    Attributes
    ----------
    size : tuple of int
        ``(H, W)`` the weights were trained and evaluated at (the center-crop
        size of their evaluation transform).
    resize_size : tuple of int
        Size the evaluation transform resizes to before the center crop.
    mean, std : tuple of float
        Per-channel (RGB) normalization of images in [0, 1].
    """

    size: tuple
    resize_size: tuple
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def resolve_input_size(input_size, spec, image_size):
    """``'auto'`` -> the weights' size, int -> square, None -> the data's size.

    Parameters
    ----------
    input_size : 'auto', int, pair of int or None
        What the user asked for.
    spec : InputSpec
        The backbone's input spec (for ``'auto'``).
    image_size : pair of int or None
        ``(H, W)`` of the data (for None).

    Returns
    -------
    size : tuple of int or None
    """
    if isinstance(input_size, str) and input_size == "auto":
        return spec.size
    if input_size is None:
        return None if image_size is None else pair(image_size)
    if not (_is_int(input_size) or (isinstance(input_size, (tuple, list))
                                    and len(input_size) == 2
                                    and all(_is_int(s) for s in input_size))):
        raise ValueError(
            "input_size must be 'auto', None, an int or a pair (H, W) of ints; got "
            f"{input_size!r}."
        )
    size = pair(input_size)
    if min(size) < 1:
        raise ValueError(f"input_size must be positive; got {input_size!r}.")
    return size
