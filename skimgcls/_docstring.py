"""Parameter documentation written once and shared by several classes.

The pattern of imbalanced-learn's ``utils/_docstring.py``: a class docstring
holds a placeholder such as ``{image_shape}`` on its own line, and the
:class:`Substitution` decorator replaces it with the shared text, so every
estimator that takes ``image_shape`` documents it the same way.
"""

__all__ = ["Substitution", "SHARED_PARAMETERS"]

_INDENT = " " * 8  # parameter descriptions in a class docstring

SHARED_PARAMETERS = {
    "image_shape": (
        "image_shape : tuple of int or None, default=None\n"
        "``(H, W)`` or ``(H, W, C)`` to read 2-D input of shape\n"
        "``(n_samples, H*W*C)`` (one entry may be -1); None reads 2-D rows as\n"
        "square gray images. Ignored for 3-D and 4-D input."
    ),
    "device": (
        "device : str or torch.device, default='auto'\n"
        "Where the network runs. ``'auto'`` picks CUDA, then MPS, then the CPU."
    ),
    "precision": (
        "precision : {'auto', 'fp32', 'bf16'}, default='auto'\n"
        "Arithmetic of the forward pass. ``'auto'`` uses bf16 autocast on GPUs\n"
        "that support it and on CPUs with native bf16 (avx512_bf16 or AMX),\n"
        "fp32 elsewhere."
    ),
}


class Substitution:
    """Decorator: replace ``{name}`` placeholders in a docstring with shared text.

    Parameters
    ----------
    *names : str
        Keys of :data:`SHARED_PARAMETERS` the docstring uses; each must
        appear, as ``    {name}`` on a line of its own.
    """

    def __init__(self, *names):
        self.names = names

    def __call__(self, obj):
        doc = obj.__doc__
        for name in self.names:
            placeholder = "    {" + name + "}"
            if placeholder not in doc:
                raise ValueError(f"{obj.__name__}'s docstring lacks {placeholder!r}.")
            first, *rest = SHARED_PARAMETERS[name].split("\n")
            text = "\n".join(["    " + first] + [_INDENT + line for line in rest])
            doc = doc.replace(placeholder, text)
        obj.__doc__ = doc
        return obj
