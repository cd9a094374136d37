"""BackboneFeatures: embeddings of a frozen (pretrained) CNN as a transformer.

``make_pipeline(BackboneFeatures('resnet18'), LogisticRegression())`` is a
linear probe: the backbone runs once per image in inference mode, and any
scikit-learn estimator learns on its pooled embeddings.
"""

import copy
import os
from collections.abc import Mapping
from numbers import Integral

import joblib
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from torch import nn

from ._device import inference_batch_size, resolve_device, resolve_precision
from ._docstring import Substitution
from ._functional import to_float_nchw
from .exceptions import MixedImageShapesError
from .backbones import BackboneNet, build_backbone
from .preprocessing import ImageReader
from .utils._progress import progress_bar
from .utils._random import seeded
from .utils.validation import check_image_shape, check_images, is_path_array

__all__ = ["BackboneFeatures"]



@Substitution("image_shape", "device", "precision")
class BackboneFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                       BaseEstimator):
    """Pooled embeddings of a frozen CNN backbone, as a scikit-learn transformer.

    ``fit`` builds the backbone (and loads its weights); ``transform`` runs it
    in inference mode on batches of images and returns one embedding per
    image: the input of the model's original classification layer (512 values
    for ResNet-18, 1280 for EfficientNet-B0, 768 for ViT-B/16...).  Images are
    resized, repeated to RGB and normalized as the weights expect (see
    :class:`skimgcls.backbones.InputAdapter`).

    Parameters
    ----------
    backbone : str or torch.nn.Module, default='resnet18'
        A torchvision classification model name or a timm model name
        ``'timm/<name>'`` (see :func:`skimgcls.backbones.list_backbones`), or a
        module: a
        :class:`~skimgcls.backbones.BackboneNet` (e.g. the ``module_`` of a
        fitted :class:`~skimgcls.CNNClassifier`, whose fine-tuned embeddings
        are then used) or any module mapping float ``(n, C, H, W)`` images in
        [0, 1] to features (flattened). Modules are copied.
    pretrained : bool, str, path-like or dict, default=True
        Weights of a named backbone: True for the pretrained weights
        (torchvision's default weights, or timm's from the Hugging Face cache),
        a ``.pth``/``.safetensors`` path or a state dict, False for random
        weights (seeded by ``random_state``). Ignored for modules. With True,
        the first ``fit`` downloads the weights file (45 MB for ResNet-18, up
        to hundreds of MB for large models) into the cache, with a progress
        bar, unless it is already there
        (:func:`skimgcls.backbones.expected_weights_path` says where);
        offline, the error says where to put the file. The default stays True
        because frozen random weights give features of little use; pass a
        local file to never download.
    input_size : 'auto', int, tuple of int or None, default='auto'
        Size images are resized to: ``'auto'`` is the size of the weights
        (224 for most models); smaller is faster. None keeps the images'
        size. Ignored for modules.
    levels : int or 'auto', default='auto'
        Depths the embedding is taken from (see
        :class:`~skimgcls.backbones.BackboneNet`): 1, the input of the
        original classification layer; ``k``, that and the global averages of
        the outputs of the ``k - 1`` blocks before the last, concatenated.
        ``'auto'``: what the source measured best for frozen features
        (:meth:`~skimgcls.backbones.BackboneSource.frozen_levels`): 4 for
        ``'efficientnet_lite0'`` (1,904 features; on crops of photos held out
        by region, + ``LogisticRegression()``, 86.4 % on average against
        82.7 % for ``levels=1``; see :ref:`which_model`), 1 for the other
        backbones. Ignored for modules.
    {image_shape}
    batch_size : int or 'auto', default='auto'
        Images per forward pass. ``'auto'``: on a CPU, as many as hold about
        400,000 input pixels (8 images at 224 px, 98 at 64 px; at most 256), a
        batch whose activations stay in the cores' caches (EfficientNet-Lite0
        embeds 224 px images 1.7x faster than in batches of 64 on 2 cores);
        64 on an accelerator.
    {device}
    {precision}
    memory : str, joblib.Memory or None, default=None
        Cache of the embeddings (a directory or a :class:`joblib.Memory`).
        The key is the content of the images and of the network's weights, so
        a search over the downstream estimator computes the features of each
        training or test fold once, however many candidates it tries, and a
        rerun computes nothing.
    random_state : int, RandomState instance or None, default=None
        Seeds the random weights when ``pretrained=False``.
    verbose : int, default=0
        1 shows a progress bar (images embedded) while ``transform`` runs
        (needs tqdm, the ``progress`` extra); 0 is silent.

    Attributes
    ----------
    model_ : torch.nn.Module
        The frozen network, in eval mode, on ``device_``.
    n_features_in_ : int
        Values per image seen in ``fit`` (not set when ``fit`` got paths).
    image_shape_ : tuple of int or None
        ``(H, W, C)`` seen in ``fit``; None when ``fit`` got file paths.
    embedding_dim_ : int
        Number of output features.
    levels_ : int or None
        The feature levels ``levels`` resolved to (None for a module).
    device_ : str
        The device ``'auto'`` resolved to.
    precision_ : {'fp32', 'bf16'}
        The precision ``'auto'`` resolved to.
    batch_size_ : int
        The images per forward pass ``batch_size`` resolved to.

    See Also
    --------
    skimgcls.CNNClassifier : Fine-tune the whole backbone instead.

    Notes
    -----
    Input is any kind :func:`skimgcls.utils.validation.check_images` accepts
    (arrays in NHWC/NCHW/NHW layout, 2-D arrays with ``image_shape``, lists of
    PIL images, torch tensors) and, in addition, 1-D arrays or lists of image
    file paths, read with Pillow as RGB and resized to ``input_size`` one by
    one (so files of different sizes work). uint8 images are scaled to [0, 1];
    float images should already be in [0, 1].

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skimgcls import BackboneFeatures
    >>> X, y = load_digits(return_X_y=True)
    >>> features = BackboneFeatures('mobilenet_v3_small', pretrained=False,
    ...                             input_size=32, random_state=0)
    >>> features.fit_transform(X[:4] / 16).shape
    (4, 1024)
    """

    _parameter_constraints = {
        "backbone": [str, nn.Module],
        "pretrained": ["boolean", str, os.PathLike, Mapping],
        "input_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"),
                       tuple, list, None],
        "levels": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "image_shape": [tuple, list, None],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16"})],
        "memory": [None, str, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, backbone="resnet18", *, pretrained=True, input_size="auto",
                 levels="auto", image_shape=None, batch_size="auto", device="auto",
                 precision="auto",
                 memory=None, random_state=None, verbose=0):
        self.backbone = backbone
        self.pretrained = pretrained
        self.input_size = input_size
        self.levels = levels
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the backbone and load its weights.

        Parameters
        ----------
        X : array-like, torch.Tensor, list of PIL.Image.Image or of paths
            Images (see Notes).
        y : None
            Ignored.

        Returns
        -------
        self : BackboneFeatures
            The fitted transformer.
        """
        X = self._validate(X, reset=True)
        if _is_paths(X) and hasattr(self, "n_features_in_"):
            del self.n_features_in_  # from an earlier fit on arrays
        self.image_shape_ = None if _is_paths(X) else tuple(X.shape[1:])
        channels = 3 if _is_paths(X) else X.shape[3]
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
        with seeded(self.random_state):
            model = self._build(channels)
        for param in model.parameters():
            param.requires_grad_(False)
        # channels_last: the fast layout of oneDNN and cuDNN convolutions, and
        # the layout of the NHWC batches, which then need no conversion.
        self.model_ = model.eval().to(self.device_, memory_format=torch.channels_last)
        self.embedding_dim_ = self._probe_dim(X)
        self.levels_ = getattr(self.model_, "levels", None) if isinstance(
            self.model_, BackboneNet) else None
        self.batch_size_ = (self.batch_size if self.batch_size != "auto" else
                            inference_batch_size(self.device_, self._read_size()))
        self._fingerprint = None  # computed on the first cached transform
        return self

    def _build(self, channels):
        if isinstance(self.backbone, nn.Module):
            return copy.deepcopy(self.backbone)
        image_size = None if self.image_shape_ is None else self.image_shape_[:2]
        return build_backbone(
            self.backbone, in_channels=channels, n_classes=None, image_size=image_size,
            input_size=self.input_size, levels=self.levels,
            pretrained=self.pretrained,
        )

    def _probe_dim(self, X):
        """Embedding size, from the model or from one forward pass."""
        if isinstance(self.model_, BackboneNet):
            return self.model_.embedding_dim
        return _forward_batches(self.model_, X[:1], batch_size=1, device=self.device_,
                                precision=self.precision_,
                                size=self._read_size()).shape[1]

    def _validate(self, X, *, reset):
        fitted = None if reset else self.image_shape_
        if fitted is None or is_path_array(X):
            # fit; or files, or a fit on files: any size (the backbone resizes)
            return check_images(X, image_shape=check_image_shape(self.image_shape),
                                estimator=self if reset else None, reset=reset,
                                allow_paths=True)
        return check_images(X, estimator=self, reset=False, fitted_shape=fitted)

    def _read_size(self):
        """Size to resize files to while reading them (None: keep)."""
        model = self.model_
        if isinstance(model, BackboneNet):
            return model.adapter.size
        return None if self.image_shape_ is None else self.image_shape_[:2]

    def transform(self, X):
        """Return the backbone's pooled embedding of each image.

        Parameters
        ----------
        X : array-like, torch.Tensor, list of PIL.Image.Image or of paths
            Images; arrays must have the shape seen in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_samples, embedding_dim), dtype float32
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        compute, fingerprint = _embed, None
        if self.memory is not None:
            compute = check_memory(self.memory).cache(
                _embed, ignore=["images", "model", "batch_size", "device", "verbose"])
            if getattr(self, "_fingerprint", None) is None:
                self._fingerprint = _fingerprint(self.model_, self.precision_)
            fingerprint = self._fingerprint
        return compute(fingerprint, _cache_key(X), images=X, model=self.model_,
                       verbose=self.verbose,
                       batch_size=self.batch_size_, device=self.device_,
                       precision=self.precision_, size=self._read_size())

    @property
    def _n_features_out(self):
        return self.embedding_dim_


def _is_paths(X):
    return X.dtype == object


def _cache_key(X):
    """The images, or for files their (path, size, mtime): an edited file is new."""
    if not _is_paths(X):
        return X
    return [(os.fspath(p), s.st_size, s.st_mtime_ns) for p, s in
            ((p, os.stat(p)) for p in X)]


def _fingerprint(model, precision):
    """What the features depend on besides the images: weights, input, levels,
    arithmetic."""
    state = {k: v.detach().cpu().float().numpy() if v.is_floating_point()
             else v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    adapter = getattr(model, "adapter", None)
    config = None if adapter is None else (
        adapter.size, adapter.mean.tolist(), adapter.std.tolist(),
        getattr(model, "levels", 1))
    return joblib.hash((type(model).__name__, config, precision, state))


def _embed(fingerprint, key, *, images, model, batch_size, device, precision, size,
           verbose=0):
    """Features of ``images``: the function ``memory`` caches.

    The cache key is ``fingerprint`` (weights, input adapter, precision),
    ``key`` (the images, or the files' path/size/mtime), ``precision`` and
    ``size``; the model object, batching and device are ignored.
    """
    return _forward_batches(model, images, batch_size=batch_size, device=device,
                            precision=precision, size=size, verbose=verbose)


def _forward_batches(model, X, *, batch_size, device, precision, size, verbose=0):
    """Run ``model`` (embed for a BackboneNet) over X batch by batch."""
    forward = model.embed if isinstance(model, BackboneNet) else model
    device_type = torch.device(device).type
    out = []
    with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16,
                                                enabled=precision == "bf16"), \
            progress_bar(total=len(X), desc="features", unit="img",
                         verbose=verbose) as bar:
        for start in range(0, len(X), batch_size):
            batch = _to_tensor(X[start:start + batch_size], size, device)
            out.append(forward(batch).float().flatten(1).cpu())
            bar.update(len(batch))
    return torch.cat(out).numpy()


def _to_tensor(batch, size, device):
    """NHWC array (or paths) -> float NCHW in [0, 1] on ``device``."""
    if _is_paths(batch):
        try:
            batch = ImageReader(mode="RGB", size=size).read(batch)
        except MixedImageShapesError as exc:
            raise MixedImageShapesError(
                f"{exc} For BackboneFeatures, image files of different sizes need a "
                "backbone that resizes: pass input_size='auto' or an int instead of "
                "None."
            ) from None
    return to_float_nchw(batch, device)
