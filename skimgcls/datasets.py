"""Image files in, arrays or lazy path arrays out.

* :func:`read_image` decodes one file (PNG, JPEG, BMP, TIFF, WebP, GIF first
  frame; gray, RGB, RGBA, palette and 16-bit images; EXIF orientation honored).
* :func:`load_image_folder` reads the class-per-subfolder layout of
  torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory``.
* :func:`load_image_csv` reads a CSV file or a DataFrame of paths and labels.
* :class:`ImagePathDataset` decodes batches of paths in DataLoader workers, so
  :class:`~skimgcls.CNNClassifier` can train on folders larger than memory.

Both loaders return ``(X, y)``: ``X`` is an NHWC uint8 array (``lazy=False``)
or a 1-D object array of paths (``lazy=True``) that slices like any array in
cross-validation and searches and is decoded only when needed.
"""

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImagePathDataset",
    "ImageReadError",
    "load_image_csv",
    "load_image_folder",
    "read_image",
]

#: File name extensions :func:`load_image_folder` picks up (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_MODES = (None, "RGB", "L", "RGBA")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
_ASPECT = (None, "pad", "crop")


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or too large.

    The message names the file; the path is also kept in ``path``.

    Parameters
    ----------
    path : str
        The file that failed.
    reason : str, default=None
        Why it failed and what to do. None takes ``path`` as the whole
        message (as when a DataLoader worker re-raises the error).
    """

    def __init__(self, path, reason=None):
        if reason is None:  # one argument: a whole message (DataLoader re-raise)
            self.path = None
            super().__init__(str(path))
        else:
            self.path = str(path)
            super().__init__(f"Cannot read image file {self.path!r}: {reason}")


def _check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}.")


def _as_size(size):
    """Return ``(H, W)`` from an int or a pair, or None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a pair (H, W); got {size!r}.") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive; got {size!r}.")
    return h, w


def _pil_to_array(im, mode):
    """Convert a decoded PIL image to an (H, W, C) array in ``mode``."""
    src = im.mode
    if src.startswith("I;16") or src in ("I", "F"):
        arr = np.asarray(im)
        if src == "F":
            arr = arr.astype(np.float32)
        else:
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        arr = arr[..., np.newaxis]
        if mode is None:
            return arr
        if arr.dtype == np.uint16:
            arr = np.round(arr / 257.0).astype(np.uint8)
        else:
            arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        if mode == "L":
            return arr
        arr = np.repeat(arr, 3, axis=2)
        if mode == "RGBA":
            arr = np.concatenate([arr, np.full_like(arr[..., :1], 255)], axis=2)
        return arr
    if mode is None:
        if src == "1":
            target = "L"
        elif src in ("L", "RGB", "RGBA"):
            target = src
        elif src in ("P", "PA"):
            has_alpha = src == "PA" or "transparency" in im.info
            target = "RGBA" if has_alpha else "RGB"
        elif src in ("LA", "La", "RGBa"):
            target = "RGBA"
        else:  # CMYK, YCbCr, LAB, HSV, ...
            target = "RGB"
    else:
        target = mode
    if src in ("P", "PA") and target == "L":
        im = im.convert("RGBA" if src == "PA" else "RGB")
    if im.mode != target:
        im = im.convert(target)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., np.newaxis]
    return arr


def _resize_pil(im, size, interpolation, keep_aspect_ratio):
    from PIL import Image, ImageOps

    resample = {"nearest": Image.Resampling.NEAREST,
                "bilinear": Image.Resampling.BILINEAR,
                "bicubic": Image.Resampling.BICUBIC,
                "area": Image.Resampling.BOX}[interpolation]
    h, w = size
    if im.size == (w, h):
        return im
    if keep_aspect_ratio == "crop":
        return ImageOps.fit(im, (w, h), method=resample)
    if keep_aspect_ratio == "pad":
        return ImageOps.pad(im, (w, h), method=resample, color=0)
    return im.resize((w, h), resample=resample)


def _decode(path, mode, size, interpolation, keep_aspect_ratio):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)  # animated GIF/WebP/TIFF: first frame
        if size is not None and im.format == "JPEG":
            # Decode big JPEGs at a reduced scale (DCT scaling) when the
            # target is much smaller: far less memory and time.
            im.draft(im.mode, (size[1], size[0]))
        im = ImageOps.exif_transpose(im)
        eight_bit = not (im.mode.startswith("I") or im.mode == "F")
        if size is not None and eight_bit:
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info
                                else "RGB")
            im = _resize_pil(im, size, interpolation, keep_aspect_ratio)
        arr = _pil_to_array(im, mode)
    if size is not None and not eight_bit:
        from .preprocessing import _resize_nhwc

        arr = _resize_nhwc(arr[np.newaxis], size, interpolation, keep_aspect_ratio,
                           fill=0.0, antialias=True)[0]
    return arr


def read_image(path, *, mode="RGB", size=None, interpolation="bilinear",
               keep_aspect_ratio=None):
    """Decode one image file into an ``(H, W, C)`` array.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, BMP, TIFF, WebP or GIF file (anything Pillow opens). For
        animated files, the first frame is read. The EXIF orientation tag is
        applied, so photos come out upright.
    mode : {'RGB', 'L', 'RGBA'} or None, default='RGB'
        Color mode of the result: ``'RGB'`` (3 channels; gray images are
        repeated, alpha is dropped), ``'L'`` (1 gray channel, ITU-R 601-2
        luma), ``'RGBA'`` (4 channels). None keeps the file's own kind: gray
        ``(H, W, 1)``, RGB, RGBA (palette images become RGB or RGBA), and
        16-bit images as uint16.
    size : int or tuple of int or None, default=None
        ``(H, W)`` to resize to while decoding (an int means square). None
        keeps the file's size.
    interpolation : {'nearest', 'bilinear', 'bicubic', 'area'}, default='bilinear'
        Resampling filter for ``size``.
    keep_aspect_ratio : {None, 'pad', 'crop'}, default=None
        None stretches to ``size``; ``'pad'`` fits the whole image and pads
        with black; ``'crop'`` fills ``size`` and crops the center.

    Returns
    -------
    image : ndarray of shape (H, W, C)
        uint8, except 16-bit files with ``mode=None`` (uint16) and 32-bit
        float TIFFs with ``mode=None`` (float32).

    Raises
    ------
    ImageReadError
        If the file is missing, not an image, corrupt, or larger than Pillow's
        decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``). The
        message names the file.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skimgcls.datasets import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "gray.png")
    >>> Image.fromarray(np.zeros((4, 6), dtype=np.uint8)).save(path)
    >>> read_image(path).shape
    (4, 6, 3)
    >>> read_image(path, mode="L", size=(2, 3)).shape
    (2, 3, 1)
    """
    from PIL import Image, UnidentifiedImageError

    _check_choice("mode", mode, _MODES)
    _check_choice("interpolation", interpolation, _INTERPOLATIONS)
    _check_choice("keep_aspect_ratio", keep_aspect_ratio, _ASPECT)
    size = _as_size(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(path, mode, size, interpolation, keep_aspect_ratio)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(path, (
            f"it is larger than Pillow's decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS} pixels ({exc}). If you trust the file, raise "
            "the limit with PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None disables it)."
        )) from None
    except FileNotFoundError:
        raise ImageReadError(path, "no such file.") from None
    except IsADirectoryError:
        raise ImageReadError(path, "it is a directory, not an image file.") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, (
            "Pillow does not recognize it as an image (not an image, or a format "
            "Pillow cannot open). Remove it or pass on_error='skip' to the loader."
        )) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(path, (
            f"the file is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Remove it or pass on_error='skip' to the loader."
        )) from None


def _check_readable(path):
    """Open the header only: cheap check for lazy loading with on_error='skip'."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.size  # noqa: B018 - the header must parse
    except (Image.DecompressionBombError, Image.DecompressionBombWarning,
            UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from None


def stack_images(images, paths):
    """Stack decoded images into one NHWC array or say which files differ."""
    shapes = {}
    for img, path in zip(images, paths):
        shapes.setdefault(img.shape, path)
    if len(shapes) > 1:
        examples = "; ".join(f"{p!s} is {s[0]}x{s[1]} with {s[2]} channel(s)"
                             for s, p in list(shapes.items())[:3])
        raise ValueError(
            f"The images have {len(shapes)} different shapes ({examples}). Pass a "
            "size to resize them while reading, e.g. ImageReader(size=(224, 224)), "
            "load_image_folder(root, size=(224, 224)) or "
            "CNNClassifier(reader=ImageReader(size=(224, 224))); and mode='RGB' or "
            "'L' to give them one number of channels."
        )
    dtypes = {img.dtype for img in images}
    if len(dtypes) > 1:
        raise ValueError(
            f"The images decode to different dtypes {sorted(map(str, dtypes))} "
            "(16-bit and 8-bit files mixed). Pass mode='L' or mode='RGB' to read "
            "every file as 8-bit."
        )
    return np.stack(images)


def _read_all(paths, read_kwargs, on_error, n_jobs=None, verbose=0):
    """Decode ``paths``; return (images, kept indices)."""
    def one(path):
        try:
            return read_image(path, **read_kwargs)
        except ImageReadError as exc:
            if on_error == "raise":
                raise
            return exc

    if n_jobs is not None and n_jobs != 1 and len(paths) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(one)(p) for p in _reading(paths, verbose))
    else:
        results = [one(p) for p in _reading(paths, verbose)]
    kept = [i for i, r in enumerate(results) if not isinstance(r, ImageReadError)]
    failed = [r for r in results if isinstance(r, ImageReadError)]
    return [results[i] for i in kept], kept, failed


def _reading(paths, verbose):
    """``paths`` with a progress bar when ``verbose`` (tqdm, when installed)."""
    from .utils._progress import track

    return track(paths, total=len(paths), desc="reading images", unit="image",
                 verbose=verbose)


def _warn_skipped(failed, n_total):
    if failed:
        shown = "\n".join(f"  {exc}" for exc in failed[:5])
        more = f"\n  ... and {len(failed) - 5} more" if len(failed) > 5 else ""
        warnings.warn(
            f"Skipped {len(failed)} of {n_total} image files that could not be read "
            f"(on_error='skip'):\n{shown}{more}",
            UserWarning,
            stacklevel=3,
        )


def _load(paths, labels, *, mode, size, interpolation, keep_aspect_ratio, lazy,
          on_error, n_jobs, verbose=0):
    _check_choice("on_error", on_error, ("raise", "skip"))
    read_kwargs = dict(mode=mode, size=size, interpolation=interpolation,
                       keep_aspect_ratio=keep_aspect_ratio)
    _check_choice("mode", mode, _MODES)
    _check_choice("interpolation", interpolation, _INTERPOLATIONS)
    _check_choice("keep_aspect_ratio", keep_aspect_ratio, _ASPECT)
    _as_size(size)
    paths = np.asarray([str(p) for p in paths], dtype=object)
    labels = np.asarray(labels)
    if lazy:
        if on_error == "skip":
            failed, kept = [], []
            for i, path in enumerate(_reading(paths, verbose)):
                try:
                    _check_readable(path)
                    kept.append(i)
                except ImageReadError as exc:
                    failed.append(exc)
            _warn_skipped(failed, len(paths))
            paths, labels = paths[kept], labels[kept]
        return paths, labels
    images, kept, failed = _read_all(paths, read_kwargs, on_error, n_jobs, verbose)
    _warn_skipped(failed, len(paths))
    if not images:
        raise ValueError(f"None of the {len(paths)} image files could be read.")
    return stack_images(images, paths[kept]), labels[kept]


def load_image_folder(root, *, mode="RGB", size=None, interpolation="bilinear",
                      keep_aspect_ratio=None, lazy=False, extensions=IMAGE_EXTENSIONS,
                      on_error="raise", n_jobs=None, verbose=0):
    """Load images stored one folder per class: ``root/<label>/<file>``.

    The layout of torchvision's ``ImageFolder`` and Keras'
    ``image_dataset_from_directory``. Files in nested subfolders of a class
    folder belong to that class. Files are sorted, so the order is the same
    on every machine.

    Parameters
    ----------
    root : str or path-like
        The folder that holds one subfolder per class.
    mode : {'RGB', 'L', 'RGBA'} or None, default='RGB'
        Color mode every image is converted to (see :func:`read_image`).
    size : int or tuple of int or None, default=None
        ``(H, W)`` to resize every image to while decoding. Needed when the
        files have different sizes (unless ``lazy=True`` and the classifier's
        ``reader`` resizes).
    interpolation : {'nearest', 'bilinear', 'bicubic', 'area'}, default='bilinear'
        Resampling filter for ``size``.
    keep_aspect_ratio : {None, 'pad', 'crop'}, default=None
        How ``size`` treats other aspect ratios: stretch, pad or center-crop.
    lazy : bool, default=False
        If True, return the file paths instead of decoded images: a 1-D object
        array that :class:`~skimgcls.CNNClassifier` and
        :class:`~skimgcls.ImageReader` decode batch by batch, so memory does
        not grow with the number of files. ``mode``, ``size``,
        ``interpolation`` and ``keep_aspect_ratio`` are then ignored (set them
        on the reader).
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name extensions (case-insensitive) to load; other files are
        ignored.
    on_error : {'raise', 'skip'}, default='raise'
        What to do with a file that cannot be read: raise an
        :class:`ImageReadError` that names it, or leave it out of both ``X``
        and ``y`` with one warning that lists the files. With ``lazy=True``,
        'skip' opens each file's header only, so a file whose header is fine
        but whose pixel data is corrupt still fails later, when it is decoded.
    n_jobs : int or None, default=None
        Threads that decode files in parallel (``lazy=False``); None is one.
    verbose : int, default=0
        1 or more shows a progress bar while files are read (needs tqdm, the
        ``progress`` extra); 0 is silent.

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C) or (n_samples,)
        uint8 images (uint16 for 16-bit files with ``mode=None``), or the
        paths as an object array when ``lazy=True``.
    y : ndarray of shape (n_samples,)
        The class folder name of each image (str).

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    ValueError
        If ``root`` has no class subfolders with image files, or if the
        images have different shapes and ``size`` is None.

    See Also
    --------
    load_image_csv : Paths and labels from a CSV file or DataFrame.
    skimgcls.ImageReader : Decode paths inside a Pipeline.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skimgcls.datasets import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for label in ["cat", "dog"]:
    ...     os.makedirs(os.path.join(root, label))
    ...     for i in range(2):
    ...         img = np.full((5, 5, 3), 40 * i, dtype=np.uint8)
    ...         Image.fromarray(img).save(os.path.join(root, label, f"{i}.png"))
    >>> X, y = load_image_folder(root)
    >>> X.shape, y.tolist()
    ((4, 5, 5, 3), ['cat', 'cat', 'dog', 'dog'])
    >>> paths, y = load_image_folder(root, lazy=True)
    >>> paths.shape
    (4,)
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {str(root)!r} does not exist or is not a directory.")
    extensions = tuple(e.lower() for e in extensions)
    paths, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            p for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in extensions
        )
        paths += files
        labels += [class_dir.name] * len(files)
    if not paths:
        raise ValueError(
            f"Found no image files ({', '.join(extensions)}) in class subfolders of "
            f"{str(root)!r}. Expected the layout root/<class>/<image file>, e.g. "
            f"{str(root / 'cat' / '001.jpg')!r}."
        )
    return _load(paths, labels, mode=mode, size=size, interpolation=interpolation,
                 keep_aspect_ratio=keep_aspect_ratio, lazy=lazy, on_error=on_error,
                 n_jobs=n_jobs, verbose=verbose)


def load_image_csv(source, *, path_column="path", label_column="label", root=None,
                   mode="RGB", size=None, interpolation="bilinear",
                   keep_aspect_ratio=None, lazy=False, on_error="raise", n_jobs=None,
                   verbose=0):
    """Load images listed in a CSV file or a DataFrame of paths and labels.

    Parameters
    ----------
    source : str, path-like, pandas.DataFrame or dict
        A CSV file with a header row, or a table (DataFrame or dict of
        columns) with ``path_column`` and ``label_column``.
    path_column : str, default='path'
        Column of image file paths.
    label_column : str or None, default='label'
        Column of labels. None returns ``y=None`` (images to predict).
    root : str or path-like or None, default=None
        Folder that relative paths are relative to. None: the CSV file's
        folder for a CSV file, the working directory for a table.
    mode : {'RGB', 'L', 'RGBA'} or None, default='RGB'
        Color mode (see :func:`read_image`).
    size : int or tuple of int or None, default=None
        ``(H, W)`` to resize every image to while decoding.
    interpolation : {'nearest', 'bilinear', 'bicubic', 'area'}, default='bilinear'
        Resampling filter for ``size``.
    keep_aspect_ratio : {None, 'pad', 'crop'}, default=None
        How ``size`` treats other aspect ratios: stretch, pad or center-crop.
    lazy : bool, default=False
        Return the (absolute) paths instead of decoded images.
    on_error : {'raise', 'skip'}, default='raise'
        Raise an :class:`ImageReadError` naming a bad file, or drop it from
        ``X`` and ``y`` with a warning (see :func:`load_image_folder`).
    n_jobs : int or None, default=None
        Threads that decode files in parallel (``lazy=False``).
    verbose : int, default=0
        1 or more shows a progress bar while files are read.

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C) or (n_samples,)
        Images, or the paths as an object array when ``lazy=True``.
    y : ndarray of shape (n_samples,) or None
        The labels, as read (strings from a CSV file).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skimgcls.datasets import load_image_csv
    >>> root = tempfile.mkdtemp()
    >>> for name in ["a.png", "b.png"]:
    ...     Image.fromarray(np.zeros((3, 3), np.uint8)).save(os.path.join(root, name))
    >>> X, y = load_image_csv({"path": ["a.png", "b.png"], "label": [0, 1]},
    ...                       root=root, mode="L")
    >>> X.shape, y.tolist()
    ((2, 3, 3, 1), [0, 1])
    """
    if isinstance(source, (str, os.PathLike)):
        csv_path = Path(source)
        if not csv_path.is_file():
            raise FileNotFoundError(f"CSV file {str(csv_path)!r} does not exist.")
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = {} if not rows else {k: [r[k] for r in rows] for k in rows[0]}
        base = Path(root) if root is not None else csv_path.parent
        what = f"CSV file {str(csv_path)!r}"
    else:
        columns = source
        base = Path(root) if root is not None else Path.cwd()
        what = "the table"
    available = list(columns.keys())
    for col in (path_column, label_column):
        if col is not None and col not in available:
            raise ValueError(
                f"Column {col!r} not found in {what}; its columns are {available}. "
                "Pass path_column= and label_column= to name them."
            )
    raw_paths = list(columns[path_column]) if available else []
    if not raw_paths:
        raise ValueError(f"{what} lists no images.")
    paths = [p if Path(p).is_absolute() else base / p for p in map(str, raw_paths)]
    labels = (np.asarray(list(columns[label_column])) if label_column is not None
              else np.zeros(len(paths)))
    X, y = _load(paths, labels, mode=mode, size=size, interpolation=interpolation,
                 keep_aspect_ratio=keep_aspect_ratio, lazy=lazy, on_error=on_error,
                 n_jobs=n_jobs, verbose=verbose)
    return X, (y if label_column is not None else None)


class ImagePathDataset(torch.utils.data.Dataset):
    """Image files decoded one batch at a time, for DataLoader workers.

    The lazy counterpart of :class:`skimgcls._skorch.ImageTensorDataset`, with
    the same batch format: ``__getitems__`` returns
    ``({"X": uint8 NHWC tensor, "sample_weight": w}, y)``.

    Parameters
    ----------
    paths : array-like of shape (n_samples,)
        Image file paths.
    y : array-like of shape (n_samples,), default=None
        Encoded labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Per-sample loss weights; ones when None.
    reader : ImageReader, default=None
        Decodes the files (mode, size); ``ImageReader()`` when None.
    image_shape : tuple of int, default=None
        ``(H, W, C)`` every decoded image must have; a file that decodes to
        another shape raises a ValueError that names it.

    Attributes
    ----------
    X : ndarray of shape (n_samples,)
        The paths (object array); named as in skorch's datasets.
    """

    def __init__(self, paths, y=None, sample_weight=None, *, reader=None,
                 image_shape=None):
        if reader is None:
            from .preprocessing import ImageReader

            reader = ImageReader()
        # Named X (and y) like skorch's datasets, so skorch finds the classes.
        self.X = np.asarray(paths, dtype=object)
        self.y = None if y is None else torch.as_tensor(y, dtype=torch.long)
        if sample_weight is None:
            sample_weight = np.ones(len(self.X), dtype=np.float32)
        self.sample_weight = torch.as_tensor(sample_weight, dtype=torch.float32)
        self.reader = reader
        self.image_shape = None if image_shape is None else tuple(image_shape)

    def __len__(self):
        return len(self.X)

    def read(self, indices):
        """Decode the files at ``indices`` into one NHWC array."""
        paths = self.X[np.asarray(indices, dtype=np.intp)]
        images = [read_image(p, **self.reader._read_kwargs()) for p in paths]
        if self.image_shape is not None:
            for img, path in zip(images, paths):
                if img.shape != self.image_shape:
                    raise ValueError(
                        f"Image file {path!r} decodes to shape {img.shape} (H, W, C), "
                        f"but the images must have shape {self.image_shape} (that of "
                        "the first image seen in fit). Resize while reading: "
                        "CNNClassifier(reader=ImageReader(size=(H, W), mode='RGB'))."
                    )
        return stack_images(images, paths)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        Xb = {"X": torch.from_numpy(self.read(indices)),
              "sample_weight": self.sample_weight[idx]}
        return Xb, None if self.y is None else self.y[idx]

    def __getitem__(self, i):
        Xb, yb = self.__getitems__([i])
        return {k: v[0] for k, v in Xb.items()}, None if yb is None else yb[0]
