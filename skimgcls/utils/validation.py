"""Input validation: one place that turns any accepted image input into NHWC.

Every public entry point of the package (``fit``, ``predict``, ``transform``...)
goes through :func:`check_images`, so the rules below hold everywhere:

* ``(N, H, W)`` arrays are gray images and become ``(N, H, W, 1)``.
* ``(N, H, W, C)`` arrays with ``C`` in 1, 3 or 4 are kept (channels last wins
  when both ends could be channels, e.g. ``(N, 3, 8, 3)``).
* ``(N, C, H, W)`` arrays with ``C`` in 1, 3 or 4 are transposed to NHWC.
* torch tensors follow torch's convention: a 4-D tensor is read as NCHW.
* 2-D ``(N, H*W*C)`` arrays are reshaped with ``image_shape``; without it they
  must be square gray images (``H*W`` a perfect square).
* a list of PIL images is stacked (all images must have the same size).

uint8 and uint16 images are kept as they are (they are scaled to [0, 1] at the
network's input); every other numeric dtype becomes float32.

What is refused, and how:

* :class:`ValueError`: NaN or infinite values; values beyond
  ``MAX_ABS_VALUE`` (1e5) in absolute value, for every dtype other than
  uint8/uint16; complex data; empty input (zero images, or images with zero
  pixels); unknown layouts (wrong number of dimensions, channel axes that are
  not 1, 3 or 4); images of different sizes.
* :class:`TypeError`: boolean, string, date/time and other non-numeric data
  (object arrays that do not convert to numbers); sparse matrices.

The range rule: every usual image scale fits in +-1e5 ([0, 1], [0, 255],
[0, 65535] as floats, standardized values, CT Hounsfield units). Larger values
are almost always a bug (unscaled sensor counts, uninitialized memory, a
sentinel) and overflow a network's activations and loss, so they are refused
rather than trained on. Rescale such data before passing it.
"""

import math
import os

import numpy as np
import scipy.sparse as sp
from sklearn.utils import assert_all_finite
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from .._io import stack_images

__all__ = ["as_path_array", "check_images", "check_image_shape", "is_path_array"]

CHANNEL_COUNTS = (1, 3, 4)
_KEEP_DTYPES = (np.uint8, np.uint16)

#: Largest absolute pixel value accepted for dtypes other than uint8/uint16.
MAX_ABS_VALUE = 1e5

_LAYOUT_HELP = (
    "Expected images as an array of shape (n_samples, H, W) for gray images, "
    "(n_samples, H, W, C) or (n_samples, C, H, W) with C in {1, 3, 4}, or a "
    "2-D array (n_samples, H*W*C) together with image_shape=(H, W, C)"
)


def check_image_shape(image_shape):
    """Validate an ``image_shape`` parameter.

    Parameters
    ----------
    image_shape : None or tuple of int
        ``(H, W)`` or ``(H, W, C)``; one entry may be ``-1`` and is then
        inferred from the number of features, as in :func:`numpy.reshape`.

    Returns
    -------
    image_shape : None or tuple of int
        The shape as a 3-tuple ``(H, W, C)`` (``C=1`` when omitted).
    """
    if image_shape is None:
        return None
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise TypeError(
            f"image_shape must be a tuple (H, W) or (H, W, C); got {image_shape!r}."
        ) from None
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or any(s == 0 or s < -1 for s in shape) or shape.count(-1) > 1:
        raise ValueError(
            "image_shape must be (H, W) or (H, W, C) with positive entries and at "
            f"most one -1; got {image_shape!r}."
        )
    return shape


def _pandas_column(X):
    """The values of a pandas Series or one-column DataFrame as 1-D, else None."""
    module = type(X).__module__ or ""
    if not module.startswith("pandas"):
        return None
    if hasattr(X, "columns"):
        if X.shape[1] != 1:
            return None
        X = X.iloc[:, 0]
    if getattr(X, "ndim", None) != 1:
        return None
    return np.asarray(X, dtype=object)


def _is_paths(values):
    return (len(values) > 0 and isinstance(values[0], (str, os.PathLike))
            and all(isinstance(v, (str, os.PathLike)) for v in values))


def is_path_array(X):
    """Return True if ``X`` is a 1-D sequence of file paths (str or PathLike).

    A 1-D array or list of paths, or a pandas Series or one-column DataFrame
    of them (:func:`as_path_array` makes them one array).
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        return False
    column = _pandas_column(X)
    if column is not None:
        return _is_paths(column)
    if isinstance(X, np.ndarray):
        if X.ndim != 1 or X.size == 0:
            return False
        if X.dtype.kind == "U":
            return True
        return X.dtype == object and isinstance(X[0], (str, os.PathLike))
    if isinstance(X, (list, tuple)) and len(X) > 0:
        return all(isinstance(x, (str, os.PathLike)) for x in X)
    return False


def as_path_array(X):
    """File paths (see :func:`is_path_array`) as a 1-D object array."""
    column = _pandas_column(X)
    return column if column is not None else np.asarray(X, dtype=object)


def _is_pil_list(X):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return (
        isinstance(X, (list, tuple))
        and len(X) > 0
        and all(isinstance(im, Image.Image) for im in X)
    )


def _stack_pil(images):
    modes = {im.mode for im in images}
    if len(modes) > 1:
        raise ValueError(
            f"All images must have the same mode; got {sorted(modes)}. Convert them, "
            "e.g. [im.convert('RGB') for im in images]."
        )
    return stack_images([np.asarray(im) for im in images],
                        fix="Resize them first, e.g. with skimgcls.Resize(size=(H, W)) "
                        "(which takes such a list) or [im.resize((W, H)) for im in "
                        "images]; for files, read them at one size with "
                        "ImageReader(size=(H, W)) or "
                        "CNNClassifier(reader=ImageReader(size=(H, W))).")


def _from_tensor(X):
    import torch

    X = X.detach().cpu()
    if X.dtype == torch.bfloat16 or X.dtype == torch.float16:
        X = X.float()
    arr = X.numpy()
    if arr.ndim == 4 and arr.shape[1] in CHANNEL_COUNTS:
        arr = arr.transpose(0, 2, 3, 1)
    elif arr.ndim == 4:
        raise ValueError(
            f"A 4-D torch tensor is read as (n_samples, C, H, W) with C in "
            f"{{1, 3, 4}}; got shape {tuple(arr.shape)}."
        )
    return arr


def _check_dtype(X):
    kind = X.dtype.kind
    if kind == "b":
        raise TypeError(
            "Boolean images are not supported: got an array of dtype bool. "
            "Convert masks explicitly, e.g. X.astype(np.uint8) * 255 or "
            "X.astype(np.float32)."
        )
    if kind == "c":
        raise ValueError("Complex data not supported: got images of dtype "
                         f"{X.dtype}. Pass real-valued images, e.g. np.abs(X) "
                         "for magnitudes.")
    if kind in "Mm":
        raise TypeError(f"Images must be numeric; got an array of dtype {X.dtype} "
                        "(dates or durations).")
    if kind in "OUSV":
        raise TypeError(
            f"Images must be numeric; got an array of dtype {X.dtype}. For file "
            "paths pass a 1-D array of paths to an estimator that reads them "
            "(e.g. skimgcls.ImageReader)."
        )
    if kind not in "uif":
        raise TypeError(f"Unsupported image dtype {X.dtype}.")


def _to_nhwc(X):
    """Reshape a >= 3-D array to NHWC or raise."""
    if X.ndim == 3:
        return X[..., np.newaxis]
    if X.ndim == 4:
        if X.shape[-1] in CHANNEL_COUNTS:
            return X
        if X.shape[1] in CHANNEL_COUNTS:
            return X.transpose(0, 2, 3, 1)
        raise ValueError(
            f"{_LAYOUT_HELP}. Got a 4-D array of shape {X.shape} whose channel "
            "axis (1 or 3) is neither 1, 3 nor 4."
        )
    raise ValueError(f"{_LAYOUT_HELP}. Got an array with {X.ndim} dimensions, "
                     f"shape {X.shape}.")


def _resolve_2d_shape(n_features, image_shape):
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"Got a 2-D array with {n_features} features, which is not a square "
                "gray image. Pass image_shape=(H, W, C) to read each row as an "
                "image (one entry may be -1), or pass images as a 3-D or 4-D array."
            )
        return (side, side, 1)
    known = math.prod(s for s in image_shape if s != -1)
    if -1 in image_shape:
        if n_features % known:
            raise ValueError(
                f"Cannot reshape rows of {n_features} features into image_shape="
                f"{image_shape}: {n_features} is not a multiple of {known}."
            )
        return tuple(n_features // known if s == -1 else s for s in image_shape)
    if known != n_features:
        raise ValueError(
            f"image_shape={image_shape} holds {known} values per image but X has "
            f"{n_features} features per row."
        )
    return image_shape


def check_images(
    X,
    *,
    image_shape=None,
    estimator=None,
    reset=True,
    fitted_shape=None,
    allow_paths=False,
    reader=None,
    return_image_shape=False,
):
    """Validate images and return them as one NHWC NumPy array.

    Parameters
    ----------
    X : array-like, torch.Tensor or list of PIL.Image.Image
        Images in any layout listed in the module docstring.
    image_shape : None or tuple of int, default=None
        How to read 2-D input, ``(H, W)`` or ``(H, W, C)``; one entry may be
        ``-1``.
    estimator : estimator instance, default=None
        When given, ``n_features_in_`` (and ``feature_names_in_`` for
        DataFrames) are set on it if ``reset`` is True, else checked against
        it.
    reset : bool, default=True
        Whether this call is from ``fit`` (True) or a later method (False).
    fitted_shape : tuple of int, default=None
        The ``(H, W, C)`` seen in fit; when given, the images must have it.
    allow_paths : bool, default=False
        If True, a 1-D array of file paths is returned unchanged (as an object
        array) for the caller to read lazily.
    reader : object with a ``read(paths)`` method, default=None
        For paths: decodes the first file (see :func:`read_images`) to learn
        the image shape (``n_features_in_`` on ``estimator`` when ``reset``)
        or check it against ``fitted_shape``. None: paths are not opened.
    return_image_shape : bool, default=False
        Also return the ``(H, W, C)`` of the images: that of the array, or of
        the first file decoded by ``reader`` (None for paths without one).

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C)
        uint8/uint16 arrays keep their dtype; everything else is float32.
        For path input with ``allow_paths=True``, a 1-D object array.
    image_shape : tuple of int or None
        Only with ``return_image_shape=True``.

    Raises
    ------
    ValueError
        For NaN or infinite values, values beyond +-``MAX_ABS_VALUE`` (1e5)
        in any dtype but uint8/uint16, complex data, empty input, unknown
        layouts and shape mismatches (see the module docstring).
    TypeError
        For boolean, string, date/time and other non-numeric data, and sparse
        matrices.
    """
    if allow_paths and is_path_array(X):
        X = as_path_array(X)
        shape = None
        if reader is not None:  # the first file gives (or must have) the shape
            shape = tuple(read_images(reader, X[:1], fitted_shape=fitted_shape).shape[1:])
            if estimator is not None and reset:
                estimator.n_features_in_ = int(np.prod(shape))
        return (X, shape) if return_image_shape else X
    _check_not_strings(X, estimator, allow_paths)
    if fitted_shape is not None and _is_one_image(getattr(X, "shape", None), fitted_shape):
        raise ValueError(_one_image_message(tuple(X.shape), fitted_shape, estimator))
    if _is_pil_list(X):
        X = _stack_pil(X)
    elif type(X).__module__.startswith("torch") and hasattr(X, "detach"):
        X = _from_tensor(X)
    if fitted_shape is not None and image_shape is None:
        image_shape = fitted_shape

    if hasattr(X, "sparse") or hasattr(X, "toarray"):
        raise TypeError(
            "Sparse input is not supported: images are dense. Got "
            f"{type(X).__name__}; call X.toarray() if it fits in memory."
        )
    if not hasattr(X, "columns") and not isinstance(X, np.ndarray):
        X = _asarray(X)
    if hasattr(X, "columns") or X.ndim == 2:
        X = _check_2d(X, image_shape, estimator, reset)
    else:
        X = _check_nd(X, estimator, reset)
    if fitted_shape is not None and X.shape[1:] != tuple(fitted_shape):
        raise ValueError(_shape_mismatch_message(X.shape[1:], fitted_shape, estimator))
    return (X, tuple(X.shape[1:])) if return_image_shape else X


_READ_FILES_HELP = (
    "Decode them with a reader: CNNClassifier(reader=ImageReader(size=(64, 64))) "
    "reads paths itself, and in a Pipeline put skimgcls.ImageReader(size=(64, 64)) "
    "first, e.g. make_pipeline(ImageReader(size=(64, 64)), Normalize(), "
    "CNNClassifier())."
)


def _check_not_strings(X, estimator, allow_paths):
    """Refuse file paths where images are needed, and tables of several columns
    of strings, with what came and what to do."""
    name = type(estimator).__name__ if estimator is not None else "This step"
    if hasattr(X, "columns") and hasattr(X, "dtypes") and X.shape[1] > 1:
        strings = [str(c) for c, dtype in X.dtypes.items()
                   if getattr(dtype, "kind", "O") in "OSU"]
        if strings:
            first = strings[0]
            raise TypeError(
                f"Got a DataFrame of {X.shape[1]} columns, of which {strings[:5]} hold "
                f"strings (object columns, e.g. file paths or labels). Images are "
                f"either numeric columns (one pixel per column) or one column of file "
                f"paths: pass that column alone, e.g. X = df[{first!r}] (a Series) "
                f"or df[[{first!r}]], and the labels as y."
            )
    if allow_paths or not is_path_array(X):
        return
    kind = ("a pandas Series" if type(X).__module__.startswith("pandas")
            and not hasattr(X, "columns") else
            "a one-column DataFrame" if hasattr(X, "columns") else "a 1-D array")
    example = as_path_array(X)[0]
    raise TypeError(
        f"{name} needs images, but got {kind} of {len(X)} file paths (an object "
        f"column of strings such as {str(example)!r}). {_READ_FILES_HELP}"
    )


def read_images(reader, paths, *, fitted_shape=None):
    """Decode ``paths`` with ``reader``: the reader protocol, checked.

    A reader is any object with a method ``read(paths)`` that takes a 1-D
    object array of file paths and returns the decoded images, one per path,
    in any layout :func:`skimgcls.utils.check_images` accepts (NHWC uint8 is
    what :class:`~skimgcls.ImageReader` returns). That method is all the
    package calls; the reader is pickled to DataLoader worker processes.

    Parameters
    ----------
    reader : object with a ``read(paths)`` method
        The reader, e.g. :class:`~skimgcls.ImageReader`.
    paths : ndarray of shape (n_samples,)
        File paths (object array).
    fitted_shape : tuple of int, default=None
        ``(H, W, C)`` every image must have (that of the first image seen
        in ``fit``); None accepts any.

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C)
        The validated images.

    Examples
    --------
    A minimal reader: every file becomes a black 4x4 gray image.

    >>> import numpy as np
    >>> from skimgcls.utils import read_images
    >>> class BlackReader:
    ...     def read(self, paths):
    ...         return np.zeros((len(paths), 4, 4), dtype=np.uint8)
    >>> read_images(BlackReader(), np.array(["a.png", "b.png"], dtype=object)).shape
    (2, 4, 4, 1)
    """
    paths = np.asarray(paths, dtype=object)
    X = reader.read(paths)
    if (isinstance(X, np.ndarray) and X.ndim == 4 and X.shape[-1] in (1, 3, 4)
            and X.dtype in (np.uint8, np.uint16)):
        pass  # ImageReader's output: nothing to convert on the per-batch path
    else:
        try:
            X = check_images(X)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{type(reader).__name__}.read(paths) must return images, one per path, "
                "as an array of shape (n, H, W, C) (or another layout check_images "
                f"accepts); it returned something else: {exc}"
            ) from exc
    if len(X) != len(paths):
        raise ValueError(
            f"{type(reader).__name__}.read(paths) returned {len(X)} images for "
            f"{len(paths)} paths; a reader must return exactly one image per path."
        )
    if fitted_shape is not None and X.shape[1:] != tuple(fitted_shape):
        raise ValueError(
            f"Image file {paths[0]!r} (and the others of its batch) decodes to shape "
            f"{X.shape[1:]} (H, W, C), but the images must have shape "
            f"{tuple(fitted_shape)} (that of the first image seen in fit). Resize while "
            "reading: CNNClassifier(reader=ImageReader(size=(H, W), mode='RGB'))."
        )
    return X


def check_labels(y, *, n_samples=None, classes=None, estimator=None, seen_in="fit",
                 multilabel=False):
    """Validate labels: the one label check of ``fit``, ``partial_fit``, ``score``.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        Class labels of any hashable kind, or (with ``multilabel``) a binary
        indicator matrix, one 0/1 column per label (what
        :class:`sklearn.preprocessing.MultiLabelBinarizer` returns; a sparse
        matrix is accepted and made dense).
    n_samples : int, default=None
        Number of images ``y`` must label (one row per image).
    classes : ndarray, default=None
        The known classes (``classes_``); every label must be one of them.
        Labels of another type or spelling (``'1'`` against ``1``) are
        reported rather than silently misclassified. With ``multilabel``, the
        indicator must have ``len(classes)`` columns.
    estimator : estimator instance, default=None
        Named in the messages.
    seen_in : str, default='fit'
        Where ``classes`` were learned, for the message.
    multilabel : bool or 'auto', default=False
        True: ``y`` must be an indicator matrix. False: ``y`` must hold one
        label per image. ``'auto'``: a 2-D ``y`` with more than one column
        (or a sparse one) is an indicator matrix, anything else labels.

    Returns
    -------
    y : ndarray of shape (n_samples,) or (n_samples, n_labels)
        The labels as a 1-D array, or the indicator matrix as 2-D int64.

    Raises
    ------
    ValueError
        For a missing ``y``, NaN or infinite labels, a length that differs
        from ``n_samples``, continuous or multi-output targets, labels
        outside ``classes``, an indicator with values other than 0 and 1 or
        with another number of columns than ``classes``, and an indicator
        where labels are expected (or the reverse).
    """
    name = type(estimator).__name__ if estimator is not None else "The estimator"
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None.")
    if multilabel == "auto":
        multilabel = _is_indicator_shaped(y)
    if multilabel:
        return _check_indicator(y, n_samples, classes, name, seen_in)
    if classes is not None and _is_indicator_shaped(y):
        raise ValueError(
            f"y is a 2-D array of shape {_shape(y)}, a multi-label indicator matrix, "
            f"but {name} was fitted in {seen_in} on one label per image (classes "
            f"{np.asarray(classes).tolist()[:20]!r}). Pass one label per image, or "
            "fit a new estimator on the indicator matrix."
        )
    y = column_or_1d(y, warn=True)
    if y.dtype.kind in "fcO":
        assert_all_finite(y, input_name="y")
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(
            f"X and y have different numbers of samples: {n_samples} images and "
            f"{len(y)} labels. Pass one label per image."
        )
    if classes is not None:
        known = set(np.asarray(classes).tolist())
        unseen = {label for label in y.tolist() if label not in known}
        if unseen:
            raise ValueError(
                f"y contains labels not seen in {seen_in}: "
                f"{sorted(unseen, key=repr)[:10]!r}; the classes are "
                f"{np.asarray(classes).tolist()[:20]!r}. Check that the labels have "
                "the same type and spelling as those passed to fit."
            )
    check_classification_targets(y)
    return y


def _shape(y):
    return y.shape if hasattr(y, "shape") else np.asarray(y).shape


def _is_indicator_shaped(y):
    """A sparse matrix, or a 2-D array with more than one column."""
    if sp.issparse(y):
        return True
    try:
        shape = _shape(y)
    except ValueError:  # ragged nested sequences: not a matrix
        return False
    return len(shape) == 2 and shape[1] != 1


def _check_indicator(y, n_samples, classes, name, seen_in):
    """A multi-label indicator matrix of 0/1 values, as int64."""
    y = y.toarray() if sp.issparse(y) else np.asarray(y)
    if y.ndim != 2 or y.shape[1] == 0:
        what = ("A multi-label y" if classes is None else
                f"{name} was fitted in {seen_in} on a multi-label indicator matrix of "
                f"{len(classes)} labels, so y")
        raise ValueError(
            f"{what} must be a 2-D array of shape (n_samples, n_labels); got an "
            f"array of shape {y.shape}."
        )
    if y.dtype.kind not in "biuf":
        raise ValueError(
            f"A multi-label y must be a numeric indicator matrix of 0 and 1; got "
            f"dtype {y.dtype}. Turn lists of label names into one with "
            "sklearn.preprocessing.MultiLabelBinarizer."
        )
    if y.dtype.kind == "f":
        assert_all_finite(y, input_name="y")
    values = np.unique(y)
    bad = values[~np.isin(values, (0, 1))]
    if bad.size:
        raise ValueError(
            f"A multi-label y must be a binary indicator matrix of 0 and 1 (one "
            f"column per label, as sklearn.preprocessing.MultiLabelBinarizer "
            f"returns); got the values {bad[:5].tolist()}. For several classes per "
            "column (multi-output multiclass), use "
            "sklearn.multioutput.MultiOutputClassifier around the estimator."
        )
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(
            f"X and y have different numbers of samples: {n_samples} images and "
            f"{len(y)} rows of labels. Pass one row of labels per image."
        )
    if classes is not None and y.shape[1] != len(classes):
        raise ValueError(
            f"y has {y.shape[1]} label columns, but {name} was fitted in {seen_in} "
            f"on {len(classes)} labels. Pass an indicator matrix with one column "
            "per label, in the order of fit."
        )
    return y.astype(np.int64)


def _check_2d(X, image_shape, estimator, reset):
    kwargs = dict(dtype=None, ensure_min_samples=1, ensure_all_finite=False)
    if getattr(X, "dtype", None) is not None and X.dtype.kind == "c":
        _check_dtype(X)
    if estimator is not None:
        X = validate_data(estimator, X, reset=reset, **kwargs)
    else:
        X = check_array(X, **kwargs)
    X = _as_image_dtype(X)
    shape = _resolve_2d_shape(X.shape[1], image_shape)
    return np.ascontiguousarray(X.reshape((X.shape[0],) + tuple(shape)))


def _check_nd(X, estimator, reset):
    if X.dtype.kind in "USVcMm":
        _check_dtype(X)
    if X.ndim <= 1:
        raise ValueError(
            f"{_LAYOUT_HELP}. Got a {X.ndim}-D array of shape {X.shape}; "
            "Reshape your data either using array.reshape(-1, 1) if your data has "
            "a single feature or array.reshape(1, -1) if it contains a single sample."
        )
    X = check_array(X, dtype=None, allow_nd=True, ensure_all_finite=False,
                    ensure_min_samples=1, ensure_min_features=1)
    if 0 in X.shape:
        raise ValueError(f"Got images of zero size: shape {X.shape}. Each image needs "
                         "at least one pixel.")
    X = _as_image_dtype(X)
    X = _to_nhwc(X)
    if estimator is not None:
        n_features = int(np.prod(X.shape[1:]))
        if reset:
            estimator.n_features_in_ = n_features
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
    return np.ascontiguousarray(X)


def _asarray(X):
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise ValueError("Found array with 0 sample(s) (shape=(0,)) while a minimum "
                         "of 1 is required. Pass at least one image.")
    try:
        return np.asarray(X)
    except ValueError as exc:
        shapes = _shapes_of_list(X)
        if shapes is not None and len(shapes) > 1:
            shown = ", ".join(str(s) for s in shapes[:3])
            raise ValueError(
                f"All images must have the same size; got a list of {len(X)} images "
                f"of {len(shapes)} different shapes (e.g. {shown}). Resize them "
                "first: skimgcls.Resize(size=(H, W)).fit_transform(images) takes "
                "such a list, and so does a Pipeline that starts with "
                "skimgcls.Resize(size=(H, W)); for files, read them at one size "
                "with ImageReader(size=(H, W)) or "
                "CNNClassifier(reader=ImageReader(size=(H, W)))."
            ) from None
        raise ValueError(f"{_LAYOUT_HELP}. Could not make an array of the input "
                         f"({exc}); are all images the same size?") from None


def _shapes_of_list(X):
    """The distinct shapes of a list of arrays, in order of first appearance."""
    if not isinstance(X, (list, tuple)):
        return None
    shapes = []
    for image in X:
        shape = np.shape(image) if hasattr(image, "shape") or isinstance(
            image, (list, tuple)) else None
        if shape is None:
            return None
        if shape not in shapes:
            shapes.append(shape)
    return shapes


def _is_one_image(shape, fitted):
    """A shape that is one fitted image without the batch axis."""
    if shape is None:
        return False
    shape, (h, w, c) = tuple(shape), tuple(fitted)
    if len(shape) == 2 and shape[1] == h * w * c:
        return False  # also rows of flattened images (1 x W gray: one row)
    # (1, H, W) is also a batch of one gray image: not flagged.
    one = {(h, w, c)} | ({(h, w)} if c == 1 else {(c, h, w)})
    return shape in one


def _one_image_message(shape, fitted, estimator):
    name = type(estimator).__name__ if estimator is not None else "The estimator"
    return (f"X has shape {shape}: one image without the batch axis, but {name} "
            f"takes a batch of images of shape (n_samples, {', '.join(map(str, fitted))})."
            " For one image pass X[np.newaxis] (or X.reshape(1, *X.shape), or a list "
            "[image]); a batch of one image comes back as an array of one prediction.")


def _as_image_dtype(X):
    """Keep uint8/uint16; cast other numbers (and numeric objects) to float32.

    Refuses non-numeric dtypes, NaN, infinity and values beyond
    ``MAX_ABS_VALUE`` (see the module docstring).
    """
    if X.dtype.kind == "O":
        X = _objects_to_float(X)
    _check_dtype(X)
    if X.dtype.type in _KEEP_DTYPES:
        return X
    _check_values(X)
    return X.astype(np.float32, copy=False)


def _objects_to_float(X):
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as exc:
        kinds = sorted({type(v).__name__ for v in X.flat
                        if not isinstance(v, (int, float, np.number))})
        raise TypeError(
            f"Images must be numeric; got an object array holding {kinds} values "
            f"that do not convert to numbers ({exc}). Pass a numeric array."
        ) from None


def _check_values(X):
    """Refuse NaN, infinity and values beyond +-MAX_ABS_VALUE."""
    low, high = np.min(X), np.max(X)  # NaN propagates, so one pass finds all
    if not (np.isfinite(low) and np.isfinite(high)):
        n_nan = int(np.isnan(X).sum()) if X.dtype.kind == "f" else 0
        n_inf = int(np.isinf(X).sum()) if X.dtype.kind == "f" else 0
        raise ValueError(
            f"Images contain NaN or infinite values ({n_nan} NaN and {n_inf} "
            f"infinite among {X.size} values). Replace them, e.g. with "
            "np.nan_to_num(X), or drop those images."
        )
    if max(abs(float(low)), abs(float(high))) > MAX_ABS_VALUE:
        raise ValueError(
            f"Images have values in [{float(low):.4g}, {float(high):.4g}], beyond "
            f"+-{MAX_ABS_VALUE:g}: far outside any image scale ([0, 1], [0, 255], "
            "[0, 65535] or standardized), they would overflow the network. "
            "Rescale them first, e.g. X / np.abs(X).max(), or standardize them."
        )


def _shape_mismatch_message(got, expected, estimator):
    name = type(estimator).__name__ if estimator is not None else "The estimator"
    got, expected = tuple(got), tuple(expected)
    if got[:2] == expected[:2]:
        return (f"X has images with {got[2]} channel(s), but {name} was fitted on "
                f"images with {expected[2]} channel(s) (shape {expected}). Convert "
                "them, e.g. with skimgcls.ToRGB() or skimgcls.ToGrayscale().")
    return (f"X has images of shape {got} (H, W, C), but {name} was fitted on images "
            f"of shape {expected}. Resize them first, e.g. with "
            f"skimgcls.Resize(size={expected[:2]}).")

