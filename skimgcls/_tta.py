"""Test-time augmentation: the views ``CNNClassifier(tta=...)`` averages.

A view is a deterministic function of a float NCHW batch that returns a batch
of the same shape. ``predict_proba`` averages the softmax probabilities of the
views; ``predict`` and ``score`` take the argmax of that average.
"""

import torch
import torch.nn.functional as F

__all__ = ["TTA_OPS", "TTA_PRESETS", "resolve_tta", "shift_pixels"]


def shift_pixels(height, width):
    """Return the shift of the ``shift_*`` views for images of this size.

    1/16 of the shorter side, at least one pixel: 1 pixel for 8x8 to 31x31
    images, 2 for 32x32, 14 for 224x224.
    """
    return max(1, round(min(height, width) / 16))


def _shift(images, dy, dx):
    """Translate by ``(dy, dx)`` pixels, repeating the edge pixels."""
    height, width = images.shape[-2:]
    pad = max(abs(dy), abs(dx))
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    top, left = pad - dy, pad - dx
    return padded[..., top:top + height, left:left + width]


def _shifted(sign_y, sign_x):
    def view(images):
        step = shift_pixels(*images.shape[-2:])
        return _shift(images, sign_y * step, sign_x * step)
    return view


TTA_OPS = {
    "identity": lambda images: images,
    "hflip": lambda images: torch.flip(images, dims=(-1,)),
    "vflip": lambda images: torch.flip(images, dims=(-2,)),
    "rot180": lambda images: torch.flip(images, dims=(-2, -1)),
    "shift_up": _shifted(-1, 0),
    "shift_down": _shifted(1, 0),
    "shift_left": _shifted(0, -1),
    "shift_right": _shifted(0, 1),
}

_SHIFTS = ("shift_up", "shift_down", "shift_left", "shift_right")

TTA_PRESETS = {
    "flip": ("identity", "hflip"),
    "shift": ("identity",) + _SHIFTS,
    "flip+shift": ("identity", "hflip") + _SHIFTS,
}


def resolve_tta(tta):
    """Turn a ``tta`` parameter into a list of view functions.

    Parameters
    ----------
    tta : None, str or list
        None (no augmentation), a preset name from :data:`TTA_PRESETS`, or a
        list whose items are names from :data:`TTA_OPS` or callables on float
        ``(n, C, H, W)`` tensors.

    Returns
    -------
    views : list of callable or None
        None when ``tta`` is None.
    """
    if tta is None:
        return None
    if isinstance(tta, str):
        if tta not in TTA_PRESETS:
            raise ValueError(
                f"Unknown tta preset {tta!r}. Use one of {sorted(TTA_PRESETS)}, a "
                f"list of view names from {sorted(TTA_OPS)} or callables, or None."
            )
        tta = TTA_PRESETS[tta]
    if not isinstance(tta, (list, tuple)) or len(tta) == 0:
        raise ValueError(
            "tta must be None, a preset name or a non-empty list of views; got "
            f"{tta!r}."
        )
    views = []
    for item in tta:
        if callable(item):
            views.append(item)
        elif isinstance(item, str) and item in TTA_OPS:
            views.append(TTA_OPS[item])
        else:
            raise ValueError(
                f"Unknown tta view {item!r}. Views are names from "
                f"{sorted(TTA_OPS)} or callables that take and return a float "
                "tensor of shape (n, C, H, W)."
            )
    return views


def average_views(forward, images, views, *, multilabel=False):
    """Return the logits of the probabilities of ``forward`` averaged over ``views``.

    Single-label: ``log(mean softmax)``, whose softmax is the averaged
    probabilities and argmax their argmax. Multi-label (independent sigmoid
    per label): ``logit(mean sigmoid)``, whose sigmoid is the averaged
    probabilities, so a threshold on them reads the same.
    """
    activation = torch.sigmoid if multilabel else (lambda z: torch.softmax(z, dim=1))
    proba = None
    for view in views:
        augmented = view(images)
        if augmented.shape != images.shape:
            raise ValueError(
                f"A tta view changed the batch shape from {tuple(images.shape)} to "
                f"{tuple(augmented.shape)}; views must keep (n, C, H, W)."
            )
        p = activation(forward(augmented))
        proba = p if proba is None else proba + p
    proba = proba / len(views)
    return torch.logit(proba) if multilabel else torch.log(proba)
