"""Exceptions raised by skimgcls."""

__all__ = ["IgnoredFilesWarning", "MixedImageShapesError", "NonFiniteLossError",
           "SkippedImagesWarning", "UnsafeModelFileError"]


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss or the weights became NaN or infinite.

    Raised by :meth:`skimgcls.CNNClassifier.fit` with a message that names
    the epoch and the batch. The estimator stays fitted with the weights of
    the last complete epoch (the initial weights if the first epoch failed),
    so it can still predict, be inspected or be saved.

    Common causes: a learning rate that is too high, images with extreme
    values (normalize them), or a custom network or loss that overflows.
    """


class UnsafeModelFileError(ValueError):
    """A model file was refused by :func:`skimgcls.persistence.load`.

    Raised when the file was tampered with or corrupted (its hash does not
    match), comes from an incompatible version of skimgcls, or would need to
    import or run code outside the allowlist (scikit-learn, skorch and
    skimgcls classes; never functions).
    """


class MixedImageShapesError(ValueError):
    """Images to stack into one array differ in size or number of channels.

    Raised when a list of PIL images or a set of image files is read without
    a size to resize them to; the message names examples of each shape and
    how to make them alike (a ``size``, a ``mode``, :class:`~skimgcls.Resize`).
    """


class _FilesWarning(UserWarning):
    """A warning about files, kept in ``paths``."""

    def __init__(self, message, paths=()):
        super().__init__(message)
        self.paths = list(paths)


class SkippedImagesWarning(_FilesWarning):
    """Image files that could not be read were left out (``on_error='skip'``).

    Issued once per call of :func:`skimgcls.datasets.load_image_folder`,
    :func:`~skimgcls.datasets.load_image_csv` or
    :func:`~skimgcls.datasets.load_image_dataframe`, with a message that
    lists the files and why each failed; ``X`` and ``y`` stay aligned.

    Parameters
    ----------
    message : str
        The message.
    paths : list of str, default=()
        The files left out, also kept as ``paths``.
    """


class IgnoredFilesWarning(_FilesWarning):
    """Files in an image folder were not read as images.

    Issued by :func:`skimgcls.datasets.load_image_folder` (and the command
    line's ``train``, ``evaluate`` and ``predict`` on folders) when a folder
    holds files whose names do not end in one of the image extensions (a
    phone's ``.heic`` photos, notes, archives) or, for a folder of classes,
    image files outside the class subfolders. The message counts them by
    extension and names examples, so that a data set never shrinks without the
    user knowing. Hidden files (``.DS_Store``, macOS's ``._*`` metadata files) and
    the files Windows leaves (``Thumbs.db``, ``desktop.ini``) are left out
    without it.

    Parameters
    ----------
    message : str
        The message.
    paths : list of str, default=()
        The files not read, also kept as ``paths``.
    """
