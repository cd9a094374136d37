"""The base class of the image transformers (preprocessing and augmentation).

One validation path (:func:`skimgcls.utils.check_images`), one fit/transform
plumbing, one set of tags; ragged lists (images of different sizes) for the
transformers that accept them.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._docstring import Substitution
from .utils.validation import check_image_shape, check_images, is_path_array

__all__ = ["ImageTransformer", "is_ragged", "split_ragged"]


def is_ragged(X):
    """True for a list of images that do not all have one shape."""
    if not isinstance(X, (list, tuple)) or len(X) < 2 or is_path_array(X):
        return False
    shapes = {getattr(im, "size", None) if hasattr(im, "getbands")
              else np.shape(im) for im in X}
    return len(shapes) > 1


def split_ragged(X):
    """Validate each image of a ragged list: list of (1, H, W, C) arrays."""
    images = [check_images([np.asarray(im)]) if hasattr(im, "getbands")
              else check_images(np.asarray(im)[np.newaxis]) for im in X]
    dtypes = {im.dtype for im in images}
    channels = {im.shape[-1] for im in images}
    if len(dtypes) > 1 or len(channels) > 1:
        raise ValueError(
            f"The images have different dtypes {sorted(map(str, dtypes))} or numbers "
            f"of channels {sorted(channels)}. Convert them first, e.g. with ToRGB() "
            "or PIL's im.convert('RGB')."
        )
    return images


class ImageTransformer(TransformerMixin, BaseEstimator):
    """Base class of the image transformers: validation, fit/transform, tags.

    A subclass sets ``_parameter_constraints`` and ``__init__`` (unless
    ``image_shape`` is its only parameter: this class's) and writes
    ``_transform(X)`` on validated NHWC arrays (and ``_fit(X)`` when it
    learns statistics, with ``_stateless = False``). Every transformer of
    :mod:`skimgcls.preprocessing` and :class:`skimgcls.RandomAugment` is one.
    """

    #: Stateless transformers work without fit (tag requires_fit=False).
    _stateless = True

    _parameter_constraints = {"image_shape": [tuple, list, None]}

    def __init__(self, *, image_shape=None):
        self.image_shape = image_shape

    @_fit_context(prefer_skip_nested_validation=True)
    @Substitution("X_images_y")
    def fit(self, X, y=None):
        """Validate ``X`` (and learn statistics, for :class:`Normalize`).

        Parameters
        ----------
        {X_images_y}

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._fit(self._check(X, reset=True))
        return self

    def _fit(self, X):
        """Learn from validated NHWC images; stateless by default."""

    @Substitution("X_images")
    def transform(self, X):
        """Transform images; return an NHWC NumPy array.

        Parameters
        ----------
        {X_images}

        Returns
        -------
        X_new : ndarray of shape (n_samples, H, W, C)
            The transformed images.
        """
        if self._stateless:
            self._validate_params()
        else:
            check_is_fitted(self)
        if is_ragged(X) and self._accepts_ragged:
            images = split_ragged(X)
            return np.concatenate([self._transform(im) for im in images])
        return self._transform(self._check(X, reset=False))

    _accepts_ragged = False

    def _check(self, X, reset):
        if is_ragged(X) and self._accepts_ragged:
            return split_ragged(X)[0]  # fit: nothing to learn from the sizes
        return check_images(X, image_shape=check_image_shape(self.image_shape),
                            estimator=self, reset=reset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.requires_fit = not self._stateless
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
