"""Image transformers: read, resize, crop, convert and normalize, the scikit-learn way.

Every transformer here is a :class:`~sklearn.base.BaseEstimator` and
:class:`~sklearn.base.TransformerMixin`: clonable, grid-searchable and usable
in a :class:`~sklearn.pipeline.Pipeline` in front of
:class:`~skimgcls.CNNClassifier`.

Input: anything :func:`skimgcls.utils.check_images` accepts (NHWC, NCHW,
``(N, H, W)``, 2-D with ``image_shape``, lists of PIL images, tensors);
:class:`Resize` and :class:`ImageReader` also take lists of images of
different sizes, and :class:`ImageReader` takes 1-D arrays of file paths.

Output: always a NumPy array of shape ``(n_samples, H, W, C)`` (NHWC). The
geometric and color transformers keep the dtype (uint8 stays uint8, rounded;
uint16 stays uint16; everything else is float32); :class:`Normalize` and
:class:`ToFloat` return float32.

The work runs on whole batches as torch tensors (chunks of a few hundred
images), not in a Python loop per image. :class:`Resize`,
:class:`CenterCrop`, :class:`Normalize`, :class:`ToRGB` and
:class:`ToGrayscale` give the same computation as an ``nn.Module`` on float
NCHW batches with :meth:`as_torch_module`, for export (e.g. ONNX) of a whole
Pipeline.
"""

import os
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._base import ImageTransformer, is_ragged, split_ragged
from ._docstring import Substitution
from ._functional import (
    CHUNK,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCH_INTERPOLATION,
    AffineChannels,
    CropModule,
    ResizeModule,
    ToGrayModule,
    ToRGBModule,
    apply_nhwc,
    max_value,
    pair,
    resize_nhwc,
    scaled_float,
)
from ._cache import open_cache
from ._io import read_all, stack_images
from .utils.validation import as_path_array, is_path_array

__all__ = [
    "CenterCrop",
    "ImageReader",
    "Normalize",
    "Resize",
    "ToFloat",
    "ToGrayscale",
    "ToRGB",
]

_IMAGE_SHAPE_CONSTRAINT = [tuple, list, None]
_SIZE_CONSTRAINT = [Interval(Integral, 1, None, closed="left"), tuple, list]


@Substitution("image_shape", "n_features_in_attributes")
class Resize(ImageTransformer):
    """Resize images to one size, optionally keeping their aspect ratio.

    Parameters
    ----------
    size : int or tuple of int
        Output ``(H, W)``; an int means a square ``(size, size)``.
    interpolation : {'bilinear', 'nearest', 'bicubic', 'area'}, default='bilinear'
        Resampling filter. ``'nearest'`` samples pixel centers (like PIL's
        NEAREST); ``'area'`` averages (for integer shrink factors).
    keep_aspect_ratio : {None, 'pad', 'crop'}, default=None
        None stretches every image to ``size``. ``'pad'`` scales the image to
        fit inside ``size`` and pads the borders with ``fill``; ``'crop'``
        scales it to cover ``size`` and cuts the center.
    fill : float, default=0.0
        Value of padded pixels, in the images' own units (0 is black).
    antialias : bool, default=True
        Low-pass filter when shrinking with 'bilinear' or 'bicubic' (as PIL
        does), avoiding aliasing.
    {image_shape}

    {n_features_in_attributes}

    See Also
    --------
    CenterCrop : Cut the center without scaling.
    ImageReader : Decode files and resize them while reading.

    Notes
    -----
    The dtype is kept: uint8 and uint16 results are rounded and clipped,
    float images are returned as float32 (bicubic may overshoot their range).
    A list of images of different sizes is accepted and resized image by
    image; arrays are resized as one batch.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import Resize
    >>> X = np.zeros((2, 8, 12, 3), dtype=np.uint8)
    >>> Resize((16, 16)).fit_transform(X).shape
    (2, 16, 16, 3)
    >>> Resize(16, keep_aspect_ratio="crop").fit_transform(X).shape
    (2, 16, 16, 3)
    >>> Resize(4).fit_transform([np.zeros((6, 6)), np.zeros((8, 9))]).shape
    (2, 4, 4, 1)
    """

    _parameter_constraints = {
        "size": _SIZE_CONSTRAINT,
        "interpolation": [StrOptions(set(TORCH_INTERPOLATION))],
        "keep_aspect_ratio": [StrOptions({"pad", "crop"}), None],
        "fill": [Real],
        "antialias": ["boolean"],
        "image_shape": _IMAGE_SHAPE_CONSTRAINT,
    }
    _accepts_ragged = True

    def __init__(self, size, *, interpolation="bilinear", keep_aspect_ratio=None,
                 fill=0.0, antialias=True, image_shape=None):
        self.size = size
        self.interpolation = interpolation
        self.keep_aspect_ratio = keep_aspect_ratio
        self.fill = fill
        self.antialias = antialias
        self.image_shape = image_shape

    def as_torch_module(self):
        """Return the resize as an ``nn.Module`` on float NCHW batches.

        Returns
        -------
        module : torch.nn.Module
            Maps ``(n, C, h, w)`` float tensors to ``(n, C, H, W)``, as
            :meth:`transform` does for float32 images.
        """
        self._validate_params()
        return ResizeModule(self.size, self.interpolation, self.keep_aspect_ratio,
                            self.fill, self.antialias)

    def _transform(self, X):
        return apply_nhwc(self.as_torch_module(), X)


@Substitution("image_shape", "n_features_in_attributes")
class CenterCrop(ImageTransformer):
    """Cut the center ``size`` of each image (pad images that are smaller).

    Parameters
    ----------
    size : int or tuple of int
        Output ``(H, W)``; an int means a square.
    fill : float, default=0.0
        Value of padded pixels when an image is smaller than ``size``, in the
        images' own units.
    {image_shape}

    {n_features_in_attributes}

    See Also
    --------
    Resize : Scale images, optionally center-cropping to keep the aspect ratio.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import CenterCrop
    >>> X = np.arange(2 * 4 * 4).reshape(2, 4, 4).astype(np.uint8)
    >>> CenterCrop(2).fit_transform(X)[0, :, :, 0]
    array([[ 5,  6],
           [ 9, 10]], dtype=uint8)
    """

    _parameter_constraints = {
        "size": _SIZE_CONSTRAINT,
        "fill": [Real],
        "image_shape": _IMAGE_SHAPE_CONSTRAINT,
    }

    def __init__(self, size, *, fill=0.0, image_shape=None):
        self.size = size
        self.fill = fill
        self.image_shape = image_shape

    def as_torch_module(self):
        """Return the crop as an ``nn.Module`` on float NCHW batches.

        Returns
        -------
        module : torch.nn.Module
            Maps ``(n, C, h, w)`` to ``(n, C, H, W)``.
        """
        self._validate_params()
        return CropModule(self.size, self.fill)

    def _transform(self, X):
        h, w = pair(self.size)
        if X.shape[1] >= h and X.shape[2] >= w:  # pure slicing: no float copy
            top = int(round((X.shape[1] - h) / 2.0))
            left = int(round((X.shape[2] - w) / 2.0))
            return np.ascontiguousarray(X[:, top:top + h, left:left + w])
        return apply_nhwc(self.as_torch_module(), X)


def _per_channel(value, name, n_channels, imagenet):
    if isinstance(value, str):
        return np.asarray(imagenet, dtype=np.float64)
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or len(arr) not in (1, n_channels):
        raise ValueError(
            f"{name} must be a number or one value per channel ({n_channels} "
            f"channels); got {value!r}."
        )
    return np.broadcast_to(arr, (n_channels,)).copy()


def _imagenet_stats(n_channels):
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    if n_channels == 1:
        return mean.mean(keepdims=True), std.mean(keepdims=True)
    if n_channels == 4:  # RGBA: alpha left as it is
        return np.append(mean, 0.0), np.append(std, 1.0)
    return mean, std


@Substitution("image_shape", "n_features_in_")
class Normalize(ImageTransformer):
    """Scale images to [0, 1] and standardize each channel.

    ``(X / max - mean) / std`` per channel, where ``max`` is 255 for uint8
    images, 65535 for uint16 and 1 for floats.

    Parameters
    ----------
    mean : 'fit', 'imagenet', float or array-like of shape (n_channels,), default='fit'
        ``'fit'`` learns the mean of each channel from the images passed to
        :meth:`fit`; ``'imagenet'`` uses ImageNet's (what torchvision's
        pretrained weights expect; averaged for gray images); or the values,
        on the [0, 1] scale.
    std : 'fit', 'imagenet', float or array-like of shape (n_channels,), default='fit'
        The same for the standard deviation. Channels with zero variance get
        ``std=1``.
    {image_shape}

    Attributes
    ----------
    mean_ : ndarray of shape (n_channels,)
        The mean subtracted from each channel (on the [0, 1] scale).
    std_ : ndarray of shape (n_channels,)
        The standard deviation each channel is divided by.
    {n_features_in_}

    See Also
    --------
    ToFloat : Only the scaling to [0, 1].

    Notes
    -----
    Returns float32. :meth:`as_torch_module` expects float input already on
    the [0, 1] scale, as :class:`~skimgcls.CNNClassifier` feeds its network.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import Normalize
    >>> X = np.stack([np.zeros((2, 2)), np.full((2, 2), 255)]).astype(np.uint8)
    >>> norm = Normalize().fit(X)
    >>> norm.mean_, norm.std_
    (array([0.5]), array([0.5]))
    >>> norm.transform(X)[:, 0, 0, 0]
    array([-1.,  1.], dtype=float32)
    """

    _stateless = False
    _parameter_constraints = {
        "mean": [StrOptions({"fit", "imagenet"}), Real, "array-like"],
        "std": [StrOptions({"fit", "imagenet"}), Real, "array-like"],
        "image_shape": _IMAGE_SHAPE_CONSTRAINT,
    }

    def __init__(self, mean="fit", std="fit", *, image_shape=None):
        self.mean = mean
        self.std = std
        self.image_shape = image_shape

    def _fit(self, X):
        n_channels = X.shape[-1]
        imagenet_mean, imagenet_std = _imagenet_stats(n_channels)
        learn_mean = isinstance(self.mean, str) and self.mean == "fit"
        learn_std = isinstance(self.std, str) and self.std == "fit"
        if learn_mean or learn_std:
            total = np.zeros(n_channels)
            total_sq = np.zeros(n_channels)
            for start in range(0, len(X), CHUNK):
                chunk = scaled_float(X[start:start + CHUNK]).reshape(-1, n_channels)
                chunk = chunk.astype(np.float64)
                total += chunk.sum(axis=0)
                total_sq += np.square(chunk).sum(axis=0)
            count = X.size // n_channels
            fitted_mean = total / count
            fitted_std = np.sqrt(np.maximum(total_sq / count - fitted_mean ** 2, 0.0))
        self.mean_ = (fitted_mean if learn_mean
                      else _per_channel(self.mean, "mean", n_channels, imagenet_mean))
        std = (fitted_std if learn_std
               else _per_channel(self.std, "std", n_channels, imagenet_std))
        if np.any(std < 0):
            raise ValueError(f"std must be positive; got {std.tolist()}.")
        # Constant channels: leave their scale alone, as StandardScaler does.
        self.std_ = np.where(std < 10 * np.finfo(np.float32).eps, 1.0, std)

    def as_torch_module(self):
        """Return ``(x - mean_) / std_`` as an ``nn.Module`` on float NCHW batches.

        Returns
        -------
        module : torch.nn.Module
            Maps float ``(n, C, H, W)`` images on the [0, 1] scale to the
            normalized images :meth:`transform` returns.
        """
        check_is_fitted(self)
        return AffineChannels(self.mean_, self.std_)

    def _transform(self, X):
        n_channels = X.shape[-1]
        if n_channels != len(self.mean_):
            raise ValueError(
                f"X has images with {n_channels} channel(s), but Normalize was fitted "
                f"on images with {len(self.mean_)} channel(s). Convert them, e.g. "
                "with ToRGB() or ToGrayscale()."
            )
        out = np.empty(X.shape, dtype=np.float32)
        mean = self.mean_.astype(np.float32)
        inv_std = (1.0 / self.std_).astype(np.float32)
        for start in range(0, len(X), CHUNK):
            chunk = scaled_float(X[start:start + CHUNK])
            out[start:start + CHUNK] = (chunk - mean) * inv_std
        return out


@Substitution("image_shape", "n_features_in_attributes")
class ToFloat(ImageTransformer):
    """Scale integer images to float32 in [0, 1].

    uint8 images are divided by 255 and uint16 images by 65535; float images
    are returned as float32 unchanged.

    Parameters
    ----------
    {image_shape}

    {n_features_in_attributes}

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import ToFloat
    >>> ToFloat().fit_transform(np.array([[[0, 255]]], dtype=np.uint8)).ravel()
    array([0., 1.], dtype=float32)
    """

    def as_torch_module(self):
        """Return ``nn.Identity()``: float input is already scaled.

        Returns
        -------
        module : torch.nn.Identity
        """
        return nn.Identity()

    def _transform(self, X):
        return np.ascontiguousarray(scaled_float(X))


@Substitution("image_shape", "n_features_in_attributes")
class ToRGB(ImageTransformer):
    """Give every image 3 channels: repeat gray, drop alpha.

    Parameters
    ----------
    {image_shape}

    {n_features_in_attributes}

    See Also
    --------
    ToGrayscale : The other way.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import ToRGB
    >>> ToRGB().fit_transform(np.zeros((2, 5, 5), dtype=np.uint8)).shape
    (2, 5, 5, 3)
    """

    def as_torch_module(self):
        """Return the conversion as an ``nn.Module`` on float NCHW batches.

        Returns
        -------
        module : torch.nn.Module
            Maps ``(n, 1, H, W)``, ``(n, 3, H, W)`` or ``(n, 4, H, W)`` to
            ``(n, 3, H, W)``.
        """
        return ToRGBModule()

    def _transform(self, X):
        if X.shape[-1] == 1:
            return np.ascontiguousarray(np.repeat(X, 3, axis=-1))
        return np.ascontiguousarray(X[..., :3])


@Substitution("image_shape", "n_features_in_attributes")
class ToGrayscale(ImageTransformer):
    """Convert images to gray with ITU-R 601-2 luma (as PIL and torchvision).

    ``L = 0.299 R + 0.587 G + 0.114 B``; alpha is dropped; gray images pass.

    Parameters
    ----------
    n_channels : {1, 3}, default=1
        Channels of the output; 3 repeats the gray value (for networks that
        expect RGB input).
    {image_shape}

    {n_features_in_attributes}

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import ToGrayscale
    >>> X = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    >>> X[..., 0] = 255
    >>> ToGrayscale().fit_transform(X)[0, 0, 0]
    array([76], dtype=uint8)
    """

    _parameter_constraints = {
        "n_channels": [Options(Integral, {1, 3})],
        "image_shape": _IMAGE_SHAPE_CONSTRAINT,
    }

    def __init__(self, *, n_channels=1, image_shape=None):
        self.n_channels = n_channels
        self.image_shape = image_shape

    def as_torch_module(self):
        """Return the conversion as an ``nn.Module`` on float NCHW batches.

        Returns
        -------
        module : torch.nn.Module
            Maps ``(n, C, H, W)`` to ``(n, n_channels, H, W)``.
        """
        self._validate_params()
        return ToGrayModule(int(self.n_channels))

    def _transform(self, X):
        return apply_nhwc(self.as_torch_module(), X)


@Substitution("image_shape")
class ImageReader(ImageTransformer):
    """Turn file paths (or any images) into one NHWC array.

    The first step of a Pipeline fed with paths from
    :func:`~skimgcls.datasets.load_image_folder` (``lazy=True``). It also
    accepts arrays, PIL images and lists of images of different sizes, which
    it converts with ``mode`` and resizes with ``size`` like files, so the same
    Pipeline serves paths and in-memory images. As
    ``CNNClassifier(reader=...)`` it says how to decode paths batch by batch.

    Parameters
    ----------
    mode : {'RGB', 'L', 'RGBA'} or None, default='RGB'
        Color mode of the result (see :func:`skimgcls.datasets.read_image`);
        None keeps each file's own (files must then agree).
    size : int or tuple of int or None, default=None
        ``(H, W)`` to resize every image to; required when the images have
        different sizes.
    interpolation : {'bilinear', 'nearest', 'bicubic', 'area'}, default='bilinear'
        Resampling filter for ``size``.
    keep_aspect_ratio : {None, 'pad', 'crop'}, default=None
        None stretches to ``size``; 'pad' fits and pads with black; 'crop'
        covers and center-crops.
    n_jobs : int or None, default=None
        Threads that decode files in parallel; None is one.
    cache : str or path-like or None, default=None
        A directory where decoded files are kept (created if missing): each
        file is decoded and resized once, stored as uint8 in a memory-mapped
        file, and read back from it afterwards, so that the second and later
        epochs of ``CNNClassifier(reader=ImageReader(size=..., cache=...))``
        on paths read slices instead of decoding. Needs ``size`` and
        ``mode``. An entry is keyed by the file's absolute path, size and
        modification time (and this reader's size, mode, interpolation and
        aspect), so a file that changes on disk is decoded again. Safe for
        several processes at once (DataLoader workers, parallel fits). None
        decodes every time.
    keep_in_memory : 'auto', bool or int, default='auto'
        How a fit of ``CNNClassifier(reader=...)`` on file paths holds the
        decoded images. Before its first epoch, the fit decodes every file
        once (a file that cannot be read stops it there, with an error that
        lists every such file). 'auto' keeps the decoded images in memory
        when they take at most 2 GiB
        (``skimgcls.datasets.MEMORY_BUDGET``), so that every epoch runs
        at the speed of in-memory arrays; larger data sets are decoded again
        batch by batch in DataLoader workers, so memory stays bounded (pass
        ``cache`` to decode them only once). True always keeps them, False
        never; an int is the budget in bytes. :meth:`transform` and
        ``predict`` are not affected.
    {image_shape}

    Attributes
    ----------
    n_features_in_ : int
        Values per image seen in :meth:`fit` (not set for paths).

    See Also
    --------
    skimgcls.datasets.load_image_folder : Paths and labels of a folder.

    Notes
    -----
    Files are decoded and resized by Pillow (uint8, or uint16 for 16-bit
    files with ``mode=None``); arrays are resized by :class:`Resize`. A file
    that cannot be read raises :class:`skimgcls.datasets.ImageReadError`
    naming it.

    The cache takes ``H * W * C`` bytes per file (12 KiB at 64x64 RGB) plus
    a few bytes of index; it only grows (entries of changed files stay), so
    delete the directory to reclaim it, never while a fit reads it. The
    images it returns are those decoding gives, byte for byte. See the
    performance guide for the speed it buys.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skimgcls import ImageReader
    >>> folder = tempfile.mkdtemp()
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(3)]
    >>> for i, path in enumerate(paths):
    ...     Image.fromarray(np.full((4 + i, 5, 3), 9, np.uint8)).save(path)
    >>> ImageReader(size=(4, 4)).fit_transform(np.array(paths)).shape
    (3, 4, 4, 3)
    """

    _parameter_constraints = {
        "mode": [StrOptions({"RGB", "L", "RGBA"}), None],
        "size": _SIZE_CONSTRAINT + [None],
        "interpolation": [StrOptions(set(TORCH_INTERPOLATION))],
        "keep_aspect_ratio": [StrOptions({"pad", "crop"}), None],
        "n_jobs": [Integral, None],
        "cache": [str, os.PathLike, None],
        "keep_in_memory": [StrOptions({"auto"}), "boolean",
                           Interval(Integral, 0, None, closed="left")],
        "image_shape": _IMAGE_SHAPE_CONSTRAINT,
    }

    def __init__(self, *, mode="RGB", size=None, interpolation="bilinear",
                 keep_aspect_ratio=None, n_jobs=None, cache=None,
                 keep_in_memory="auto", image_shape=None):
        self.mode = mode
        self.size = size
        self.interpolation = interpolation
        self.keep_aspect_ratio = keep_aspect_ratio
        self.n_jobs = n_jobs
        self.cache = cache
        self.keep_in_memory = keep_in_memory
        self.image_shape = image_shape

    def _read_kwargs(self):
        """The keyword arguments of :func:`skimgcls.datasets.read_image`."""
        return dict(mode=self.mode, size=self.size, interpolation=self.interpolation,
                    keep_aspect_ratio=self.keep_aspect_ratio)

    def read(self, paths):
        """Decode image files into one NHWC array.

        Parameters
        ----------
        paths : array-like of str or path-like, shape (n_samples,)
            Image files.

        Returns
        -------
        X : ndarray of shape (n_samples, H, W, C)
            uint8 images (uint16 for 16-bit files with ``mode=None``).
        """
        paths = as_path_array(paths)
        if self.cache is not None:
            return open_cache(self.cache, self._read_kwargs()).read(paths, self.n_jobs)
        images, _, _ = read_all(paths, self._read_kwargs(), "raise", self.n_jobs)
        return stack_images(images, paths)

    def _check(self, X, reset):
        if is_path_array(X) or is_ragged(X):
            return X
        return super()._check(X, reset)

    def _transform(self, X):
        if is_path_array(X):
            return self.read(X)
        if isinstance(X, (list, tuple)):  # ragged list of in-memory images
            images = [self._transform(im) for im in split_ragged(X)]
            return stack_images([im[0] for im in images],
                                [f"image {i}" for i in range(len(images))])
        if self.mode == "RGB" or (self.mode == "RGBA" and X.shape[-1] == 1):
            X = ToRGB()._transform(X)
        elif self.mode == "L":
            X = ToGrayscale()._transform(X)
        if self.mode == "RGBA" and X.shape[-1] == 3:
            alpha = np.full(X.shape[:-1] + (1,), max_value(X.dtype) or 1.0, dtype=X.dtype)
            X = np.concatenate([X, alpha], axis=-1)
        if self.size is not None:
            X = resize_nhwc(X, self.size, self.interpolation, self.keep_aspect_ratio,
                             fill=0.0, antialias=True)
        return X

    def transform(self, X):
        """Decode paths, or convert and resize in-memory images.

        Parameters
        ----------
        X : array-like of paths, array-like of images or list of PIL.Image.Image
            A 1-D array of file paths, or images in any accepted layout
            (also a list of images of different sizes).

        Returns
        -------
        X_new : ndarray of shape (n_samples, H, W, C)
            The images.
        """
        self._validate_params()
        return self._transform(self._check(X, reset=False))
