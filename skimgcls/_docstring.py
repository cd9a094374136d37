"""Parameter documentation and example code written once and shared.

The pattern of imbalanced-learn's ``utils/_docstring.py``: a class or
method docstring holds a placeholder such as ``{image_shape}`` on its own
line, and the :class:`Substitution` decorator replaces it with the shared
text, at the placeholder's indentation, so every estimator that takes
``image_shape`` documents it the same way. A shared text may also be a whole
section, heading included (``{n_features_in_attributes}``). Examples
sections that start from the same data share those doctest lines the same
way.
"""

import re

__all__ = ["SHARED_EXAMPLES", "SHARED_PARAMETERS", "Substitution"]

SHARED_PARAMETERS = {
    "read_table": (
        "mode : {'RGB', 'L', 'RGBA'} or None, default='RGB'\n"
        "Color mode (see :func:`read_image`).\n"
        "size : int or tuple of int or None, default=None\n"
        "``(H, W)`` to resize every image to while decoding.\n"
        "interpolation : {'nearest', 'bilinear', 'bicubic', 'area'}, default='bilinear'\n"
        "Resampling filter for ``size``.\n"
        "keep_aspect_ratio : {None, 'pad', 'crop'}, default=None\n"
        "How ``size`` treats other aspect ratios: stretch, pad or center-crop.\n"
        "lazy : bool, default=False\n"
        "Return the (absolute) paths instead of decoded images.\n"
        "on_error : {'raise', 'skip'}, default='raise'\n"
        "Raise an :class:`ImageReadError` that lists the bad files, or drop\n"
        "them from ``X`` and ``y`` with a warning (see\n"
        ":func:`load_image_folder`).\n"
        "n_jobs : int or None, default=None\n"
        "Threads that decode files in parallel (``lazy=False``).\n"
        "verbose : int, default=0\n"
        "1 or more shows a progress bar while files are read."
    ),
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
    "X_fitted": (
        "X : array-like, torch.Tensor, list of PIL.Image.Image or array of paths\n"
        "Images with the shape seen in :meth:`fit`, or a 1-D array of\n"
        "image file paths (decoded with ``reader``)."
    ),
    "sample_weight": (
        "sample_weight : array-like of shape (n_samples,), default=None\n"
        "Weight of each image in the loss."
    ),
    "n_features_in_": (
        "n_features_in_ : int\n"
        "Values per image seen in :meth:`fit`."
    ),
    "image_grid": (
        "n_cols : int or None, default=None\n"
        "Columns of the grid; about a square grid when None.\n"
        "cmap : str, default='gray'\n"
        "Colormap of one-channel images.\n"
        "ax : array of matplotlib.axes.Axes or None, default=None\n"
        "Axes to draw into (at least as many as images); None creates a\n"
        "figure."
    ),
    "heat_map_grid": (
        "n_cols : int or None, default=None\n"
        "Columns of the grid; about a square grid when None.\n"
        "cmap : str, default='jet'\n"
        "Colormap of the heat maps.\n"
        "alpha : float, default=0.5\n"
        "Opacity of the heat maps.\n"
        "image_cmap : str, default='gray'\n"
        "Colormap of one-channel images.\n"
        "ax : array of matplotlib.axes.Axes or None, default=None\n"
        "Axes to draw into (at least one per map); None creates a figure."
    ),
    "display_labels_columns": (
        "display_labels : ndarray of shape (n_labels,) or None, default=None\n"
        "Multi-label only: the names of the label columns; None shows the\n"
        "column indices."
    ),
    "figure_": (
        "figure_ : matplotlib.figure.Figure\n"
        "The figure."
    ),
    "ax_panels": (
        "ax : sequence of matplotlib.axes.Axes or None, default=None\n"
        "One axes per panel; None creates a figure."
    ),
    "X_images": (
        "X : array-like, torch.Tensor or list of PIL.Image.Image\n"
        "Images."
    ),
    "X_images_y": (
        "X : array-like, torch.Tensor or list of PIL.Image.Image\n"
        "Images.\n"
        "y : None\n"
        "Ignored."
    ),
    "backbone_name": (
        "name : str\n"
        "A name of :func:`list_backbones`."
    ),
    "network_inputs": (
        "in_channels : int\n"
        "Number of input channels.\n"
        "n_classes : int\n"
        "Number of output logits.\n"
        "image_size : tuple of int\n"
        "``(H, W)`` of the input images."
    ),
}

SHARED_PARAMETERS["worst_errors"] = (
    "n_images : int, default=16\nShow at most this many errors.\n"
    + SHARED_PARAMETERS["image_grid"])

#: The Attributes section of the image transformers that learn nothing else.
SHARED_PARAMETERS["n_features_in_attributes"] = (
    "Attributes\n----------\n" + SHARED_PARAMETERS["n_features_in_"])

#: Doctest lines that several Examples sections start from, inserted as they are.
SHARED_EXAMPLES = {
    "image_folder": (
        ">>> import os, tempfile\n"
        ">>> import numpy as np\n"
        ">>> from PIL import Image\n"
        ">>> root = tempfile.mkdtemp()  # cat/0.png, cat/1.png, dog/0.png, dog/1.png\n"
        ">>> for label in ['cat', 'dog']:\n"
        "...     os.makedirs(os.path.join(root, label))\n"
        "...     for i in range(2):\n"
        "...         img = np.full((5, 5, 3), 40 * i, dtype=np.uint8)\n"
        "...         Image.fromarray(img).save(os.path.join(root, label, f'{i}.png'))"
    ),
    "digits_classifier": (
        ">>> from sklearn.datasets import load_digits\n"
        ">>> from skimgcls import CNNClassifier\n"
        ">>> X, y = load_digits(return_X_y=True)\n"
        ">>> X = X.reshape(-1, 8, 8) / 16\n"
        ">>> clf = CNNClassifier(max_epochs=1, module__width=4, random_state=0)\n"
        ">>> clf = clf.fit(X[:100], y[:100])"
    ),
}

#: Lines of a shared text that stand at the placeholder's indentation: those
#: that start a new entry (``name : type``) and section underlines (and the
#: heading above each); the others are an entry's description, indented one
#: level more.
_ENTRY = re.compile(r"^\w+ : ")
_UNDERLINE = re.compile(r"^-+$")


def _indented(name, indent):
    """The shared text ``name``, indented to stand at a placeholder's place."""
    if name in SHARED_EXAMPLES:
        return "\n".join(indent + line for line in SHARED_EXAMPLES[name].split("\n"))
    lines = SHARED_PARAMETERS[name].split("\n")
    return "\n".join(
        indent + ("" if _ENTRY.match(line) or _UNDERLINE.match(line)
                  or _UNDERLINE.match(below) else "    ") + line
        for line, below in zip(lines, lines[1:] + [""]))


class Substitution:
    """Decorator: replace ``{name}`` placeholders in a docstring with shared text.

    Parameters
    ----------
    *names : str
        Keys of :data:`SHARED_PARAMETERS` or :data:`SHARED_EXAMPLES` the
        docstring uses; each must appear, as ``{name}`` on a line of its own
        (indented as the entries or doctest lines around it).
    """

    def __init__(self, *names):
        self.names = names

    def __call__(self, obj):
        doc = obj.__doc__
        for name in self.names:
            placeholder = re.search(r"^( *)\{" + name + r"\}$", doc, re.M)
            if placeholder is None:
                raise ValueError(f"{obj.__name__}'s docstring lacks {{{name}}} on a "
                                 "line of its own.")
            text = _indented(name, indent=placeholder[1])
            doc = doc[:placeholder.start()] + text + doc[placeholder.end():]
        obj.__doc__ = doc
        return obj
