"""Image files: decode (EXIF orientation, JPEG draft mode, 16-bit, palettes),
errors that name the file, stacking and reading many files.

The one place the package opens image files; everything that reads files
(:func:`skimgcls.datasets.load_image_folder`, :class:`skimgcls.ImageReader`,
:class:`skimgcls.BackboneFeatures`, the displays of
:mod:`skimgcls.inspection`) goes through :func:`read_image` or
:func:`read_all`.
"""

import ast
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ._functional import resize_nhwc
from .exceptions import IgnoredFilesWarning, MixedImageShapesError, SkippedImagesWarning
from .utils._progress import track

__all__ = [
    "ASPECT",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "ImageReadError",
    "MODES",
    "SKIP_ADVICE",
    "READ_TO_ONE_SHAPE",
    "as_size",
    "check_choice",
    "check_readable",
    "image_files",
    "read_all",
    "read_image",
    "stack_images",
    "unreadable_error",
    "warn_ignored",
    "warn_skipped",
    "with_progress",
]

#: File name extensions :func:`load_image_folder` picks up (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Files operating systems leave in folders (lower case): never images, never reported.
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})

MODES = (None, "RGB", "L", "RGBA")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
#: What a message about one bad file advises; left out where files are skipped.
SKIP_ADVICE = " Remove it or pass on_error='skip' to the loader."
ASPECT = (None, "pad", "crop")


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
            message = _original_message(str(path))
            self.path = _quoted_path(message)
            super().__init__(message)
        else:
            self.path = str(path)
            super().__init__(f"Cannot read image file {self.path!r}: {reason}")


def _original_message(text):
    """The error's own message out of a DataLoader worker's re-raise.

    torch re-raises a worker's exception as ``type(exc)(text)`` where the
    text holds the worker's whole traceback; keep the last line, the
    message a person can act on, so that it prints as one line.
    """
    marker = "ImageReadError: "
    if "Traceback" not in text or marker not in text:
        return text
    return text[text.rindex(marker) + len(marker):].strip()


def _quoted_path(message):
    prefix = "Cannot read image file "
    if not message.startswith(prefix):
        return None
    try:
        return str(ast.literal_eval(message[len(prefix):].split(": ", 1)[0]))
    except (ValueError, SyntaxError):
        return None


def check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}.")


def as_size(size):
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


def pil_to_array(im, mode):
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


def resize_pil(im, size, interpolation, keep_aspect_ratio):
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


def decode(path, mode, size, interpolation, keep_aspect_ratio):
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
            im = resize_pil(im, size, interpolation, keep_aspect_ratio)
        arr = pil_to_array(im, mode)
    if size is not None and not eight_bit:
        arr = resize_nhwc(arr[np.newaxis], size, interpolation, keep_aspect_ratio,
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

    check_choice("mode", mode, MODES)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("keep_aspect_ratio", keep_aspect_ratio, ASPECT)
    size = as_size(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return decode(path, mode, size, interpolation, keep_aspect_ratio)
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
            f"Pillow cannot open).{SKIP_ADVICE}"
        )) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(path, (
            f"the file is corrupt or truncated ({type(exc).__name__}: {exc})."
            f"{SKIP_ADVICE}"
        )) from None


def check_readable(path):
    """Decode ``path`` cheaply (JPEG at 1/8 scale) to find unreadable files.

    The whole file is parsed, so a file whose header is fine but whose data
    is cut or corrupt fails here too, not later during training.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft(im.mode, (1, 1))  # entropy decoding only, no full IDCT
                im.load()
    except FileNotFoundError:
        raise ImageReadError(path, "no such file.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning,
            UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from None


#: How to give image files one shape while reading them.
READ_TO_ONE_SHAPE = (
    "Pass a size to resize them while reading, e.g. ImageReader(size=(224, 224)), "
    "load_image_folder(root, size=(224, 224)) or "
    "CNNClassifier(reader=ImageReader(size=(224, 224))); and mode='RGB' or "
    "'L' to give them one number of channels."
)


def stack_images(images, names=None, *, fix=READ_TO_ONE_SHAPE):
    """Stack decoded NHWC images into one array, or say which ones differ.

    ``names`` (file paths) name the images in the error; None numbers them.
    ``fix`` says how to give them one shape. Different shapes raise
    :class:`~skimgcls.exceptions.MixedImageShapesError`.
    """
    if names is None:
        names = [f"image {i}" for i in range(len(images))]
    shapes = {}
    for img, name in zip(images, names):
        shapes.setdefault(img.shape, name)
    if len(shapes) > 1:
        examples = "; ".join(
            f"{name!s} is {s[0]}x{s[1]} with {s[2] if len(s) > 2 else 1} channel(s)"
            for s, name in list(shapes.items())[:3])
        raise MixedImageShapesError(
            f"The images have {len(shapes)} different shapes ({examples}); they "
            f"must all have the same size and number of channels. {fix}"
        )
    dtypes = {img.dtype for img in images}
    if len(dtypes) > 1:
        raise ValueError(
            f"The images decode to different dtypes {sorted(map(str, dtypes))} "
            "(16-bit and 8-bit files mixed). Pass mode='L' or mode='RGB' to read "
            "every file as 8-bit."
        )
    return np.stack(images)


def read_all(paths, read_kwargs, on_error, n_jobs=None, verbose=0):
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
            delayed(one)(p) for p in with_progress(paths, verbose))
    else:
        results = [one(p) for p in with_progress(paths, verbose)]
    kept = [i for i, r in enumerate(results) if not isinstance(r, ImageReadError)]
    failed = [r for r in results if isinstance(r, ImageReadError)]
    return [results[i] for i in kept], kept, failed


def with_progress(paths, verbose):
    """``paths`` with a progress bar when ``verbose`` (tqdm, when installed)."""
    return track(paths, total=len(paths), desc="reading images", unit="image",
                 verbose=verbose)


def _listed(failed):
    shown = "\n".join(f"  {str(exc).replace(SKIP_ADVICE, '')}" for exc in failed[:5])
    more = f"\n  ... and {len(failed) - 5} more" if len(failed) > 5 else ""
    return shown + more


def unreadable_error(failed, n_total, advice):
    """One :class:`ImageReadError` that lists every file of ``failed``.

    ``path`` is the first file; ``paths`` all of them.
    """
    if len(failed) == 1 and n_total == 1:
        return failed[0]
    error = ImageReadError(
        f"{len(failed)} of {n_total} image files cannot be read:\n{_listed(failed)}\n"
        f"{advice}")
    error.path = failed[0].path
    error.paths = [exc.path for exc in failed]
    return error


def warn_skipped(failed, n_total):
    if failed:
        warnings.warn(
            SkippedImagesWarning(
                f"Skipped {len(failed)} of {n_total} image files that could not be "
                f"read (on_error='skip'):\n{_listed(failed)}",
                [exc.path for exc in failed]),
            stacklevel=4,  # the caller of load_image_folder / load_image_csv
        )


def image_files(folder, extensions=IMAGE_EXTENSIONS):
    """The image files under ``folder`` and the other files there, both sorted.

    Recursive. Hidden files and folders (names starting with ``'.'``, such as
    ``.DS_Store`` or the ``._*`` metadata files macOS writes beside each file
    on other file systems) and :data:`SYSTEM_FILES` are in neither list.

    Parameters
    ----------
    folder : path-like
        The folder.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        The image files' name endings, lower case.

    Returns
    -------
    images, others : list of pathlib.Path
    """
    folder = Path(folder)
    images, others = [], []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if (not path.is_file() or any(part.startswith(".") for part in parts)
                or path.name.lower() in SYSTEM_FILES):
            continue
        (images if path.suffix.lower() in extensions else others).append(path)
    return images, others


def warn_ignored(root, others, loose=(), extensions=IMAGE_EXTENSIONS, stacklevel=3):
    """One :class:`~skimgcls.exceptions.IgnoredFilesWarning` for files of an image
    folder that are not read: ``others`` (not image files by name) and
    ``loose`` (files beside the class subfolders instead of in one).
    ``stacklevel`` 3 points at the caller of the function that calls this one."""
    if not others and not loose:
        return
    parts = []
    if others:
        kinds = Counter(p.suffix.lower() or "no extension" for p in others)
        listed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common(5))
        more = f" and {len(kinds) - 5} other kinds" if len(kinds) > 5 else ""
        parts.append(
            f"{len(others)} file(s) whose names do not end in an image extension "
            f"({listed}{more}; e.g. {str(others[0])!r}). Only "
            f"{', '.join(extensions)} files are read: convert the others (phone "
            "photos in .heic to .jpg, for instance); load_image_folder(extensions="
            "...) reads other formats that Pillow opens.")
    if loose:
        parts.append(
            f"{len(loose)} image file(s) directly in {str(root)!r}, outside the class "
            f"subfolders (e.g. {str(loose[0])!r}): move each into the subfolder "
            "named after its class.")
    paths = [str(p) for p in [*others, *loose]]
    warnings.warn(IgnoredFilesWarning(
        f"Ignored {len(paths)} file(s) under {str(root)!r}: " + " ".join(parts), paths),
        stacklevel=stacklevel)
