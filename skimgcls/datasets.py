"""Image files in, arrays or lazy path arrays out.

* :func:`read_image` decodes one file (PNG, JPEG, BMP, TIFF, WebP, GIF first
  frame; gray, RGB, RGBA, palette and 16-bit images; EXIF orientation honored).
* :func:`load_image_folder` reads the class-per-subfolder layout of
  torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory``.
* :func:`load_image_csv` reads a CSV file of paths and labels,
  :func:`load_image_dataframe` a pandas DataFrame of them.
* :class:`ImagePathDataset` decodes batches of paths in DataLoader workers, so
  :class:`~skimgcls.CNNClassifier` can train on folders larger than memory.

Both loaders return ``(X, y)``: ``X`` is an NHWC uint8 array (``lazy=False``)
or a 1-D object array of paths (``lazy=True``) that slices like any array in
cross-validation and searches and is decoded only when needed.
"""

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ._docstring import Substitution
from ._io import (
    ASPECT,
    IMAGE_EXTENSIONS,
    INTERPOLATIONS,
    MODES,
    ImageReadError,
    as_size,
    check_choice,
    check_readable,
    image_files,
    read_all,
    read_image,
    stack_images,
    unreadable_error,
    warn_ignored,
    warn_skipped,
    with_progress,
)
from .preprocessing import ImageReader
from .utils.validation import read_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImagePathDataset",
    "ImageReadError",
    "load_image_csv",
    "load_image_dataframe",
    "load_image_folder",
    "read_image",
]


_LOADER_ADVICE = ("Remove them, or pass on_error='skip' to leave them out of X and y "
                  "(with a warning that lists them).")


def _load(paths, labels, *, mode, size, interpolation, keep_aspect_ratio, lazy,
          on_error, n_jobs, verbose=0):
    check_choice("on_error", on_error, ("raise", "skip"))
    read_kwargs = dict(mode=mode, size=size, interpolation=interpolation,
                       keep_aspect_ratio=keep_aspect_ratio)
    check_choice("mode", mode, MODES)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("keep_aspect_ratio", keep_aspect_ratio, ASPECT)
    as_size(size)
    paths = np.asarray([str(p) for p in paths], dtype=object)
    labels = np.asarray(labels)
    if lazy:
        if on_error == "skip":
            failed, kept = [], []
            for i, path in enumerate(with_progress(paths, verbose)):
                try:
                    check_readable(path)
                    kept.append(i)
                except ImageReadError as exc:
                    failed.append(exc)
            warn_skipped(failed, len(paths))
            paths, labels = paths[kept], labels[kept]
        return paths, labels
    # Read every file before raising, so that one error lists all bad files.
    images, kept, failed = read_all(paths, read_kwargs, "skip", n_jobs, verbose)
    if failed and on_error == "raise":
        raise unreadable_error(failed, len(paths), _LOADER_ADVICE)
    warn_skipped(failed, len(paths))
    if not images:
        raise ValueError(f"None of the {len(paths)} image files could be read.")
    return stack_images(images, paths[kept]), labels[kept]


@Substitution("image_folder")
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
        File name extensions (case-insensitive) to load. Other files in the
        class subfolders, and image files directly in ``root`` instead of a
        class subfolder, are not read, with one
        :class:`~skimgcls.exceptions.IgnoredFilesWarning` that counts them
        (other files in ``root``, such as a README, are not data); hidden
        files and folders (``.DS_Store``, macOS's ``._*`` metadata files),
        ``Thumbs.db`` and ``desktop.ini`` are left out without it.
    on_error : {'raise', 'skip'}, default='raise'
        What to do with files that cannot be read (missing, empty, corrupt or
        truncated): raise one :class:`ImageReadError` that lists them all, or
        leave them out of both ``X`` and ``y`` (which stay aligned) with one
        warning that lists them. 'raise' is the default so that a data set
        never shrinks without the user knowing (as with torchvision's
        ``ImageFolder``); the error says how to skip. With ``lazy=True``,
        'skip' decodes each file once, cheaply (JPEGs at 1/8 scale), to find
        the bad ones, and 'raise' opens no file: a fit of
        :class:`~skimgcls.CNNClassifier` on the paths decodes every file
        before its first epoch and stops, before training, with an error
        that lists the bad ones.
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
    load_image_csv : Paths and labels from a CSV file.
    load_image_dataframe : Paths and labels from a pandas DataFrame.
    skimgcls.ImageReader : Decode paths inside a Pipeline.

    Examples
    --------
    {image_folder}
    >>> from skimgcls.datasets import load_image_folder
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
    paths, labels, ignored = [], [], []
    for class_dir in sorted(p for p in root.iterdir()
                            if p.is_dir() and not p.name.startswith(".")):
        files, others = image_files(class_dir, extensions)
        paths += files
        labels += [class_dir.name] * len(files)
        ignored += others
    # Image files beside the class folders (a README or a CSV file there is not data).
    loose = [p for p in sorted(root.iterdir()) if p.is_file()
             and not p.name.startswith(".") and p.suffix.lower() in extensions]
    if not paths:
        found = ""
        if loose:
            found += (f" The {len(loose)} image files directly in it (e.g. "
                      f"{loose[0].name!r}) need a subfolder per class.")
        if ignored:
            kinds = sorted({p.suffix.lower() or "no extension" for p in ignored})
            found += (f" Its class subfolders hold {len(ignored)} other files "
                      f"({', '.join(kinds[:5])}): convert them, or pass extensions=... "
                      "for a format that Pillow reads.")
        raise ValueError(
            f"Found no image files ({', '.join(extensions)}) in class subfolders of "
            f"{str(root)!r}. Expected the layout root/<class>/<image file>, e.g. "
            f"{str(root / 'cat' / '001.jpg')!r}.{found}"
        )
    warn_ignored(root, ignored, loose, extensions)
    return _load(paths, labels, mode=mode, size=size, interpolation=interpolation,
                 keep_aspect_ratio=keep_aspect_ratio, lazy=lazy, on_error=on_error,
                 n_jobs=n_jobs, verbose=verbose)


@Substitution("read_table", "image_folder")
def load_image_csv(source, *, path_column="path", label_column="label", root=None,
                   mode="RGB", size=None, interpolation="bilinear",
                   keep_aspect_ratio=None, lazy=False, on_error="raise", n_jobs=None,
                   verbose=0, label_sep=None):
    """Load images listed in a CSV file or a DataFrame of paths and labels.

    Parameters
    ----------
    source : str, path-like, pandas.DataFrame or dict
        A CSV file with a header row, or a table (DataFrame or dict of
        columns) with ``path_column`` and ``label_column``.
    path_column : str, default='path'
        Column of image file paths.
    label_column : str, list of str or None, default='label'
        Column of labels. None returns ``y=None`` (images to predict). A list
        of columns holding 0/1 (or true/false) reads multi-label data: ``y``
        is then the indicator matrix, one column per name, in that order.
    root : str or path-like or None, default=None
        Folder that relative paths are relative to. None: the CSV file's
        folder for a CSV file, the working directory for a table.
    {read_table}
    label_sep : str or None, default=None
        Multi-label data in one column: split each cell of ``label_column``
        on this separator (e.g. ``'|'`` for ``beach|people``; blanks around
        names and empty names are dropped, so an empty cell is an image
        without labels). ``y`` is then an object array of tuples of label
        names; ``MultiLabelBinarizer().fit_transform(y)`` turns it into the
        indicator matrix that :class:`~skimgcls.CNNClassifier` takes, and
        its ``classes_`` names the columns.

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C) or (n_samples,)
        Images, or the paths as an object array when ``lazy=True``.
    y : ndarray of shape (n_samples,) or (n_samples, n_labels), or None
        The labels, as read (strings from a CSV file); the indicator matrix
        (int64) for a list of label columns; tuples of names with
        ``label_sep``.

    Examples
    --------
    {image_folder}
    >>> from skimgcls.datasets import load_image_csv
    >>> X, y = load_image_csv({"path": ["cat/0.png", "dog/1.png"], "label": [0, 1]},
    ...                       root=root, mode="L")
    >>> X.shape, y.tolist()
    ((2, 5, 5, 1), [0, 1])
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
        what = "the DataFrame" if hasattr(source, "columns") else "the table"
    available = list(columns.keys())
    label_columns = [label_column] if isinstance(label_column, str) else label_column
    if label_sep is not None and not isinstance(label_column, str):
        raise ValueError("label_sep splits one label column: pass label_column as "
                         f"a column name; got {label_column!r}.")
    for col in (path_column, *(label_columns or ())):
        if col is not None and col not in available:
            raise ValueError(
                f"Column {col!r} not found in {what}; its columns are {available}. "
                "Pass path_column= and label_column= to name them."
            )
    raw_paths = list(columns[path_column]) if available else []
    if not raw_paths:
        raise ValueError(f"{what} lists no images.")
    paths = [p if Path(p).is_absolute() else base / p for p in map(str, raw_paths)]
    if label_column is None:
        labels = np.zeros(len(paths))
    elif not isinstance(label_column, str):
        labels = np.column_stack([_indicator_column(columns[col], col, what)
                                  for col in label_column])
    elif label_sep is not None:
        labels = _label_sets(columns[label_column], label_sep)
    else:
        labels = np.asarray(list(columns[label_column]))
    X, y = _load(paths, labels, mode=mode, size=size, interpolation=interpolation,
                 keep_aspect_ratio=keep_aspect_ratio, lazy=lazy, on_error=on_error,
                 n_jobs=n_jobs, verbose=verbose)
    return X, (y if label_column is not None else None)


@Substitution("read_table", "image_folder")
def load_image_dataframe(frame, *, path_column="path", label_column="label", root=None,
                         mode="RGB", size=None, interpolation="bilinear",
                         keep_aspect_ratio=None, lazy=False, on_error="raise",
                         n_jobs=None, verbose=0, label_sep=None):
    """Load images listed in a pandas DataFrame of paths and labels.

    The DataFrame counterpart of :func:`load_image_csv`, for file lists kept
    in pandas (e.g. ``df = pd.read_parquet(...)`` filtered and joined).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per image, with ``path_column`` and ``label_column``.
    path_column : str, default='path'
        Column of image file paths (str or path-like).
    label_column : str, list of str or None, default='label'
        Column of labels; None returns ``y=None`` (images to predict); a list
        of 0/1 columns reads multi-label data (see :func:`load_image_csv`).
    root : str or path-like or None, default=None
        Folder that relative paths are relative to; None: the working
        directory.
    {read_table}
    label_sep : str or None, default=None
        Split each cell of ``label_column`` on this separator for multi-label
        data (see :func:`load_image_csv`).

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C) or (n_samples,)
        Images, or the paths as an object array when ``lazy=True``.
    y : ndarray of shape (n_samples,) or (n_samples, n_labels), or None
        The labels, with the column's dtype.

    See Also
    --------
    load_image_csv : The same from a CSV file.
    load_image_folder : One subfolder per class.

    Notes
    -----
    A column of paths can also go straight to an estimator that reads files:
    ``CNNClassifier(reader=ImageReader(size=64)).fit(df["path"], df["label"])``
    (a Series or a one-column DataFrame is read as a 1-D array of paths).

    Examples
    --------
    {image_folder}
    >>> import pandas as pd
    >>> from skimgcls import load_image_dataframe
    >>> df = pd.DataFrame({"file": ["cat/0.png", "dog/1.png"],
    ...                    "species": ["cat", "dog"]})
    >>> X, y = load_image_dataframe(df, path_column="file", label_column="species",
    ...                             root=root, mode="L")
    >>> X.shape, y.tolist()
    ((2, 5, 5, 1), ['cat', 'dog'])
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "iloc"):
        raise TypeError(
            "load_image_dataframe takes a pandas DataFrame with a column of paths "
            f"and a column of labels; got {type(frame).__name__}. For a CSV file use "
            "load_image_csv(path); for a folder per class, load_image_folder(root)."
        )
    return load_image_csv(
        frame, path_column=path_column, label_column=label_column, root=root,
        mode=mode, size=size, interpolation=interpolation,
        keep_aspect_ratio=keep_aspect_ratio, lazy=lazy, on_error=on_error,
        n_jobs=n_jobs, verbose=verbose, label_sep=label_sep)


_TRUE, _FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no", ""}


def _indicator_column(values, name, what):
    """A column of 0/1 (true/false, yes/no) cells as int64."""
    out = []
    for value in values:
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise ValueError(
                f"Label column {name!r} of {what} holds {value!r}; a column of a "
                "multi-label table must hold 0/1 (or true/false). For one column of "
                "label names joined by a separator, pass label_column=<name> and "
                "label_sep=<separator>."
            )
        out.append(int(text in _TRUE))
    return np.asarray(out, dtype=np.int64)


def _label_sets(values, sep):
    """Cells such as ``'beach|people'`` as an object array of name tuples."""
    sets = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        missing = value is None or (isinstance(value, float) and value != value)  # NaN
        names = [] if missing else str(value).split(sep)
        sets[i] = tuple(name.strip() for name in names if name.strip())
    return sets


#: Bytes of decoded images that a fit on file paths keeps in memory by default
#: (``ImageReader(keep_in_memory='auto')``): 2 GiB, e.g. 170,000 images of
#: 64x64 RGB or 14,000 of 224x224 RGB.
MEMORY_BUDGET = 2 * 1024 ** 3

_FIT_ADVICE = (
    "No training was started. Remove these files, or leave them out of X and y "
    "before fit: load_image_folder(root, lazy=True, on_error='skip') (also "
    "load_image_csv and load_image_dataframe) finds and skips them with a warning."
)


def _memory_budget(reader):
    keep = getattr(reader, "keep_in_memory", "auto")
    if keep is True:
        return float("inf")
    if keep is False:
        return 0
    return MEMORY_BUDGET if keep == "auto" else int(keep)


def decode_for_fit(reader, paths, image_shape, *, n_jobs=None):
    """Decode every file of a fit once, before its first epoch.

    So a file that cannot be read stops the fit before training, with one
    error that lists every such file (never a DataLoader worker's traceback
    in the middle of an epoch). When the decoded images fit the reader's
    ``keep_in_memory`` budget (``MEMORY_BUDGET`` by default) they are
    returned as one NHWC array and the fit trains on it at in-memory speed;
    otherwise the paths are returned, to be decoded again batch by batch, so
    memory stays bounded.

    Parameters
    ----------
    reader : object with a ``read(paths)`` method
        The classifier's reader (see :func:`skimgcls.utils.read_images`).
    paths : ndarray of shape (n_samples,)
        File paths (object array).
    image_shape : tuple of int
        ``(H, W, C)`` of the first file; every file must decode to it.
    n_jobs : int or None, default=None
        Threads that decode chunks of files; None: the reader's ``n_jobs``,
        else up to 4.

    Returns
    -------
    X : ndarray of shape (n_samples, H, W, C) or (n_samples,)
        The decoded images, or ``paths`` when they exceed the budget.

    Raises
    ------
    ImageReadError
        Listing every file that cannot be read.
    """
    paths = np.asarray(paths, dtype=object)
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    n_jobs = max(1, int(n_jobs or getattr(reader, "n_jobs", None)
                        or min(4, os.cpu_count() or 1)))

    def decode(chunk):
        try:
            return read_images(reader, chunk, fitted_shape=image_shape), []
        except ImageReadError:  # find every bad file of the chunk
            images, failed = [], []
            for i in range(len(chunk)):
                try:
                    images.append(read_images(reader, chunk[i:i + 1],
                                              fitted_shape=image_shape)[0])
                except ImageReadError as exc:
                    failed.append(exc)
            return images, failed

    window = 4 * n_jobs  # chunks in flight: decoded images waiting stay bounded
    out, failed, start = None, [], 0
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        results = (result for i in range(0, len(chunks), window)
                   for result in pool.map(decode, chunks[i:i + window]))
        for images, bad in results:
            failed += bad
            if start == 0 and not bad:  # the first chunk tells the size in memory
                if len(paths) * images[0].nbytes <= _memory_budget(reader):
                    out = np.empty((len(paths),) + images[0].shape, images[0].dtype)
            if out is not None and not failed:
                out[start:start + len(images)] = images
            start += len(images)
    if failed:
        raise unreadable_error(failed, len(paths), _FIT_ADVICE)
    return paths if out is None else out


_CHUNK = 64  # files per decoding task


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
    reader : object with a ``read(paths)`` method, default=None
        Decodes the files (see :func:`skimgcls.utils.read_images` for the
        protocol);
        ``ImageReader()`` when None.
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
        # Named X (and y) like skorch's datasets, so skorch finds the classes.
        self.X = np.asarray(paths, dtype=object)
        self.y = None if y is None else torch.as_tensor(y, dtype=torch.long)
        if sample_weight is None:
            sample_weight = np.ones(len(self.X), dtype=np.float32)
        self.sample_weight = torch.as_tensor(sample_weight, dtype=torch.float32)
        self.reader = ImageReader() if reader is None else reader
        self.image_shape = None if image_shape is None else tuple(image_shape)

    def __len__(self):
        return len(self.X)

    def read(self, indices):
        """Decode the files at ``indices`` into one NHWC array."""
        paths = self.X[np.asarray(indices, dtype=np.intp)]
        return read_images(self.reader, paths, fitted_shape=self.image_shape)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        Xb = {"X": torch.from_numpy(self.read(indices)),
              "sample_weight": self.sample_weight[idx]}
        return Xb, None if self.y is None else self.y[idx]

    def __getitem__(self, i):
        Xb, yb = self.__getitems__([i])
        return {k: v[0] for k, v in Xb.items()}, None if yb is None else yb[0]
