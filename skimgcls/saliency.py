"""Saliency maps: which pixels a fitted network bases its decision on.

:func:`saliency_maps` returns one heat map per image, and
:class:`SaliencyDisplay` draws them over the images in a grid, in
scikit-learn's display style. Both work on a fitted
:class:`~skimgcls.CNNClassifier`, a Pipeline ending with one (the images go
through the preceding steps first) and a fitted search whose
``best_estimator_`` is one of those.

The attribution methods are Captum's (``pip install "skimgcls[saliency]"``),
imported only when a map is computed:

==========================  ====================================================
``'integrated_gradients'``  :class:`captum.attr.IntegratedGradients` from a black
                            (all-zero) network input
``'saliency'``              :class:`captum.attr.Saliency`: absolute gradients
``'gradient_shap'``         :class:`captum.attr.GradientShap` around a black input
``'occlusion'``             :class:`captum.attr.Occlusion`: the drop of the
                            target's logit when a square is blanked out
``'gradcam'``               :class:`captum.attr.LayerGradCam` on the last spatial
                            feature map (or ``layer=``), upsampled bilinearly
==========================  ====================================================

What is explained is a score that decides the target's probability without
saturating on confident predictions: for a single-label classifier the
target's logit minus the mean logit (what the softmax depends on), for a
multi-label one the target label's own logit, its log-odds (the label's
sigmoid probability depends on nothing else).
"""

import contextlib
import numbers
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._docstring import Substitution
from .classifier import (
    CNNClassifier,
    decision_rule,
    final_estimator,
    input_spec,
    is_multilabel,
)
from ._plotting import display_names, for_imshow, image_grid, label_set, pyplot, tile_for
from .utils.validation import check_images, check_labels, is_path_array, read_images

__all__ = ["SaliencyDisplay", "saliency_maps"]

METHODS = ("integrated_gradients", "saliency", "gradient_shap", "occlusion",
           "gradcam")

_NEEDS_CAPTUM = ('Saliency maps need Captum, an optional dependency: '
                 'pip install "skimgcls[saliency]".')


def _captum_attr():
    try:
        import captum.attr
    except ImportError as exc:
        raise ImportError(_NEEDS_CAPTUM) from exc
    return captum.attr


# -- the estimator and its input ----------------------------------------------
def _classifier_and_input(estimator, X):
    """The fitted CNNClassifier inside ``estimator``, and ``X`` as it receives it."""
    clf, Xt = final_estimator(estimator, X)
    if isinstance(clf, CNNClassifier):
        check_is_fitted(clf)
        return clf, Xt
    raise TypeError(
        "Saliency maps need a fitted CNNClassifier, a Pipeline ending with one, or "
        f"a fitted search whose best_estimator_ is one of those; got "
        f"{type(estimator).__name__}. Other classifiers have no network to take "
        "gradients of."
    )


def _target_indices(clf, target, n):
    """Class indices (n,) of given target labels: one for all, or one per image."""
    if np.ndim(target) == 0:
        labels = [target] * n
    else:
        labels = column_or_1d(np.asarray(target, dtype=object)).tolist()
    if len(labels) != n:
        raise ValueError(f"target has {len(labels)} labels for {n} images; pass "
                         "one label for all images, one per image, or None for "
                         "the predicted classes.")
    index = {label: i for i, label in enumerate(clf.classes_.tolist())}
    unknown = sorted({repr(label) for label in labels if label not in index})
    if unknown and is_multilabel(clf):
        raise ValueError(
            f"target labels {', '.join(unknown[:5])} are not labels of the "
            f"multi-label estimator: pass label (column) indices from 0 to "
            f"{len(clf.classes_) - 1}, e.g. list(binarizer.classes_).index(name) "
            "for a MultiLabelBinarizer's names; None targets each image's most "
            "probable label."
        )
    if unknown:
        raise ValueError(
            f"target labels {', '.join(unknown[:5])} are not among the classes of "
            f"the estimator, {clf.classes_.tolist()[:20]!r}. Pass class labels (as "
            "in y), not column indices; None targets the predicted classes."
        )
    return np.array([index[label] for label in labels], dtype=np.int64)


def _per_label(clf, target):
    """Whether ``target`` asks for a map per (image, label): 'predicted' or an
    indicator matrix, for a multi-label classifier."""
    if not is_multilabel(clf):
        return False
    if isinstance(target, str) and target == "predicted":
        return True
    return np.ndim(target) == 2 or hasattr(target, "toarray")


def _panels(clf, target, proba):
    """(image rows, label indices) of the maps to compute, one pair per map.

    ``'predicted'`` and an indicator matrix give a pair per label that is on,
    in image then column order; an image with none gets its most probable label.
    """
    if isinstance(target, str) and target == "predicted":
        on = decision_rule(clf).indicators(proba).astype(bool)
    else:
        try:
            on = check_labels(target, n_samples=len(proba), classes=clf.classes_,
                              estimator=clf, multilabel=True).astype(bool)
        except ValueError as exc:
            raise ValueError(f"target: {exc}") from None
    on[~on.any(axis=1), proba[~on.any(axis=1)].argmax(axis=1)] = True
    return np.nonzero(on)


# -- the methods ----------------------------------------------------------------
def _last_feature_map(module, inputs):
    """Name of the layer that outputs the network's last spatial feature map.

    Hooks record which layers return (n, C, h, w) tensors with more than one
    position, in the order they finish; the last one is the output of the
    convolutional part (e.g. ``features`` of the built-in networks, ``body.layer4``
    of a ResNet), after its activation, as Grad-CAM expects.
    """
    finished = []

    def record(name):
        def hook(layer, args, output):
            if (isinstance(output, torch.Tensor) and output.ndim == 4
                    and output.shape[-2] * output.shape[-1] > 1):
                finished.append(name)
        return hook

    handles = [layer.register_forward_hook(record(name))
               for name, layer in module.named_modules() if name]
    try:
        with torch.no_grad():
            module(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise ValueError(
            f"method='gradcam' needs a layer that outputs (n, C, h, w) feature maps, "
            f"and {type(module).__name__} has none (a vision transformer's tokens "
            "are not one). Pass layer= a layer name or module, or use another method."
        )
    return finished[-1]


def _resolve_layer(module, layer, inputs):
    if layer is None:
        layer = _last_feature_map(module, inputs)
    if isinstance(layer, torch.nn.Module):
        if not any(layer is m for m in module.modules()):
            raise ValueError("layer is not a submodule of the fitted network "
                             "(estimator.module_); pass one of its layers or a name.")
        return layer
    layers = dict(module.named_modules())
    if layer not in layers:
        convs = [name for name, m in layers.items() if isinstance(m, torch.nn.Conv2d)]
        raise ValueError(f"No layer named {layer!r} in the network; its convolution "
                         f"layers are {convs[-10:]}. See estimator.module_ for the "
                         "names.")
    return layers[layer]


def _occlusion_window(shape):
    """About an eighth of the image, moved by half its size."""
    side = max(1, min(shape[-2:]) // 8)
    return (shape[1], side, side), (shape[1], max(1, side // 2), max(1, side // 2))


def _attribute(method, forward, inputs, target, layer, params):
    """Attributions of one batch, reduced to (n, H, W) non-negative maps."""
    attr = _captum_attr()
    params = dict(params)
    inputs = inputs.requires_grad_()
    if method == "gradcam":
        params.setdefault("relu_attributions", True)
        cam = attr.LayerGradCam(forward, layer).attribute(inputs, target=target,
                                                         **params)
        if cam.ndim != 4:
            raise ValueError(f"The Grad-CAM layer must output (n, C, h, w) feature "
                             f"maps; its map has shape {tuple(cam.shape)}. Pass "
                             "layer= a convolution layer.")
        cam = attr.LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]),
                                                interpolate_mode="bilinear")
        return cam.sum(1).clamp_min(0)
    if method == "integrated_gradients":
        maps = attr.IntegratedGradients(forward).attribute(inputs, target=target,
                                                          **params)
    elif method == "saliency":
        params.setdefault("abs", True)
        maps = attr.Saliency(forward).attribute(inputs, target=target, **params)
    elif method == "gradient_shap":
        params.setdefault("baselines", torch.zeros_like(inputs[:1]))
        params.setdefault("n_samples", 16)
        params.setdefault("stdevs", 0.1)
        maps = attr.GradientShap(forward).attribute(inputs, target=target, **params)
    else:  # occlusion
        window, strides = _occlusion_window(inputs.shape)
        params.setdefault("sliding_window_shapes", window)
        params.setdefault("strides", strides)
        params.setdefault("perturbations_per_eval", 16)
        maps = attr.Occlusion(forward).attribute(inputs, target=target, **params)
    return maps.abs().sum(1)


@contextlib.contextmanager
def _seeded(random_state, device):
    """Seed torch and NumPy (Captum draws from both), then restore their states."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if random_state is None:
            yield
            return
        numpy_state = np.random.get_state()
        torch.manual_seed(random_state)
        np.random.seed(random_state)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


class SaliencyResult(NamedTuple):
    """What :func:`_saliency` computed.

    ``clf``: the fitted CNNClassifier; ``maps``: one map a row of ``rows``
    (the image of each map) and ``targets`` (the class or label index it
    explains); ``proba``: the probabilities of each image; ``inputs``: the
    images as the network took them (with ``keep_images``, else None).
    """

    clf: object
    maps: np.ndarray
    rows: np.ndarray
    targets: np.ndarray
    proba: np.ndarray
    inputs: object


def _saliency(estimator, X, target, method, *, layer, method_params, batch_size,
              random_state, keep_images=False, per_label=False):
    """Maps, image rows, target indices, probabilities (and network inputs).

    One map per image, or with ``per_label`` (a multi-label classifier and a
    target of ``'predicted'`` or an indicator matrix) one per (image, label)
    pair; ``rows`` gives each map's image. ``proba`` and the inputs are per
    image.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; expected one of {list(METHODS)}.")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    _captum_attr()  # fail before any work when Captum is missing
    clf, Xt = _classifier_and_input(estimator, X)
    spec = input_spec(clf)
    Xt = check_images(Xt, image_shape=spec.image_shape, fitted_shape=spec.image_shape,
                      allow_paths=True, reader=spec.reader)
    if Xt.ndim == 1:  # file paths: decode them (maps are for a few images)
        Xt = read_images(spec.reader, Xt, fitted_shape=spec.image_shape)
    net = clf.net_
    module = net.module_.eval()
    multilabel = is_multilabel(clf)
    if _per_label(clf, target) and not per_label:
        raise ValueError(
            "saliency_maps returns one map per image, so target must be one label "
            "index for all images, one per image, or None (each image's most "
            "probable label). For a map per predicted label, use "
            "SaliencyDisplay.from_estimator(..., target='predicted') (its maps and "
            "indices), or saliency_maps(estimator, X[rows], target=labels) with "
            "rows, labels = np.nonzero(estimator.predict(X))."
        )

    def forward(images):
        logits = module(images).float()
        if multilabel:  # each label's own log-odds: sigmoid(z_t) is its probability
            return logits
        # Softmax ignores what all logits share, so a logit alone is no evidence
        # for its class: explain z_t - mean(z), which, unlike log p_t, does not
        # saturate on confident predictions.
        return logits - logits.mean(dim=1, keepdim=True)

    def activation(scores):
        return torch.sigmoid(scores) if multilabel else torch.softmax(scores, dim=1)

    def batches(rows):
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            yield chunk, net.to_model_input(torch.from_numpy(Xt[chunk])).contiguous()

    if (per_label and not multilabel and isinstance(target, str)
            and target == "predicted" and target not in clf.classes_.tolist()):
        target = None  # a single-label classifier predicts one class an image
    maps, probas, done, cam_layer = [], [], 0, None
    with _seeded(random_state, torch.device(spec.device)), torch.enable_grad():
        with torch.no_grad():
            for _, inputs in batches(np.arange(len(Xt))):
                probas.append(activation(forward(inputs)).cpu().numpy())
        proba = np.concatenate(probas)
        if target is None:
            rows, indices = np.arange(len(Xt)), proba.argmax(1)
        elif per_label and _per_label(clf, target):
            rows, indices = _panels(clf, target, proba)
        else:
            rows, indices = np.arange(len(Xt)), _target_indices(clf, target, len(Xt))
        for chunk, inputs in batches(rows):
            if method == "gradcam" and cam_layer is None:
                cam_layer = _resolve_layer(module, layer, inputs)
            batch_maps = _attribute(
                method, forward, inputs,
                torch.as_tensor(indices[done:done + len(chunk)], device=inputs.device),
                cam_layer, method_params or {})
            maps.append(batch_maps.detach().float().cpu().numpy())
            done += len(chunk)
    return SaliencyResult(clf=clf, maps=np.concatenate(maps), rows=rows,
                          targets=indices, proba=proba,
                          inputs=Xt if keep_images else None)


@Substitution("digits_classifier")
def saliency_maps(estimator, X, target=None, method="integrated_gradients", *,
                  layer=None, method_params=None, batch_size=32, random_state=None):
    """Compute a saliency map per image: where the network looks for a class.

    Parameters
    ----------
    estimator : estimator instance
        A fitted :class:`~skimgcls.CNNClassifier`, a Pipeline ending with one
        (``X`` is transformed by the preceding steps), or a fitted search
        whose ``best_estimator_`` is one of those.
    X : array-like, torch.Tensor, list of PIL.Image.Image or array of paths
        Images accepted by ``estimator`` (gray or color).
    target : label, array-like of shape (n_samples,) or None, default=None
        The class to explain, as a label from ``classes_`` (not an index):
        one for all images or one per image (e.g. the true labels). None
        explains each image's predicted class. For a multi-label estimator,
        ``classes_`` are the label (column) indices, so ``target=j``
        explains label ``j``; None explains each image's most probable
        label. For a map per predicted label of each image, see
        :meth:`~skimgcls.SaliencyDisplay.from_estimator` with ``target='predicted'``.
    method : {'integrated_gradients', 'saliency', 'gradient_shap', \
'occlusion', 'gradcam'}, default='integrated_gradients'
        The Captum attribution method; see :mod:`skimgcls.saliency`. What is
        explained is the target's logit minus the mean logit, for a
        multi-label estimator the target label's own logit.
    layer : str, torch.nn.Module or None, default=None
        The layer of ``method='gradcam'``, by name in
        ``estimator.module_.named_modules()`` or as a module; None takes the
        layer that outputs the last spatial feature map (e.g. ``features``
        of the built-in networks, ``body.layer4`` of a ResNet backbone). Ignored by the
        other methods.
    method_params : dict or None, default=None
        Extra arguments of the Captum method's ``attribute``, e.g.
        ``{'n_steps': 100}`` for integrated gradients,
        ``{'sliding_window_shapes': (1, 4, 4)}`` for occlusion or
        ``{'baselines': ...}`` (a network input, on the network's device).
    batch_size : int, default=32
        Images per attribution call. Integrated gradients and Gradient SHAP
        run ``n_steps`` / ``n_samples`` forward passes of each batch.
    random_state : int or None, default=None
        Seeds the random draws of ``'gradient_shap'`` (the other methods are
        deterministic); the global random states of torch and NumPy are left
        as they were.

    Returns
    -------
    maps : ndarray of shape (n_samples, H, W)
        float32, non-negative, one map per image at the resolution of the
        network input, pixel for pixel aligned with it (hence with ``X``
        unless a Pipeline step resizes or crops). Pixel methods sum the
        absolute attributions over the channels; Grad-CAM keeps the positive
        part. Larger means more important; the scale differs between methods
        and images.

    Raises
    ------
    ImportError
        If Captum is not installed.

    See Also
    --------
    SaliencyDisplay : Draw the maps over the images.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("captum")
    >>> import numpy as np
    >>> from skimgcls import saliency_maps
    {digits_classifier}
    >>> saliency_maps(clf, X[:5], method="gradcam").shape
    (5, 8, 8)

    A map per predicted label of a multi-label classifier: repeat each image
    once per label.

    >>> Y = np.stack([y[:100] % 2, y[:100] > 4], axis=1).astype(int)  # odd, large
    >>> multi = CNNClassifier(max_epochs=1, module__width=4, random_state=0)
    >>> multi = multi.fit(X[:100], Y)
    >>> rows, labels = np.nonzero(multi.predict(X[:5]))
    >>> saliency_maps(multi, X[:5][rows], target=labels).shape == (len(rows), 8, 8)
    True
    """
    return _saliency(estimator, X, target, method, layer=layer,
                     method_params=method_params, batch_size=batch_size,
                     random_state=random_state).maps


def _shown_images(X, network_inputs, size):
    """The images to draw under the maps: ``X`` itself when the network saw
    images of its size, else the network inputs (after the Pipeline steps)."""
    if not is_path_array(X) and not isinstance(X, str):
        try:
            images = check_images(X)
        except (TypeError, ValueError):  # a format only the Pipeline's steps read
            images = None
        if images is not None and images.shape[1:3] == tuple(size):
            return images
    return network_inputs


@Substitution("display_labels_columns", "figure_", "digits_classifier")
class SaliencyDisplay:
    """Saliency maps drawn over their images, in a grid.

    Each cell shows an image with its heat map on top (scaled so that the
    image's largest value is 1), the predicted label and its probability, and
    the explained class when it is not the prediction. Build it with
    :meth:`from_estimator`; the raw maps are in ``maps``.

    For a multi-label classifier each cell shows the true label set (when
    ``y`` is given), the predicted set (labels above the estimator's
    ``threshold``) and the label its map explains, with that label's
    probability. ``target='predicted'`` draws one cell per (image, predicted
    label).

    Parameters
    ----------
    images : ndarray of shape (n_maps, H, W, C)
        The image under each map.
    maps : ndarray of shape (n_maps, H, W)
        Non-negative saliency maps, aligned with ``images``.
    targets : ndarray of shape (n_maps,)
        The class label each map explains (for multi-label, the label's
        column index).
    y_pred : ndarray of shape (n_maps,) or (n_maps, n_labels) or None, \
default=None
        Predicted labels, or for multi-label the rows of the predicted
        indicator matrix.
    confidence : ndarray of shape (n_maps,) or None, default=None
        Probability of each prediction; for multi-label, of the explained
        label.
    y_true : ndarray of shape (n_maps,) or (n_maps, n_labels) or None, \
default=None
        True labels (or indicator rows), shown when given.
    method : str or None, default=None
        The attribution method, shown in the figure title.
    indices : ndarray of shape (n_maps,) or None, default=None
        Position in ``X`` of each map's image (an image appears once per
        explained label with ``target='predicted'``).
    {display_labels_columns}

    Attributes
    ----------
    {figure_}
    axes_ : ndarray of matplotlib.axes.Axes of shape (n_rows, n_cols)
        One axes per map (unused cells are hidden).
    overlays_ : list of matplotlib.image.AxesImage
        The heat map of each cell.

    See Also
    --------
    saliency_maps : The maps alone, as an array.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("captum")
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skimgcls import SaliencyDisplay
    {digits_classifier}
    >>> display = SaliencyDisplay.from_estimator(clf, X[300:306], y[300:306],
    ...                                          method="saliency")
    >>> display.maps.shape
    (6, 8, 8)
    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    """

    def __init__(self, *, images, maps, targets, y_pred=None, confidence=None,
                 y_true=None, method=None, indices=None, display_labels=None):
        self.images = images
        self.maps = maps
        self.targets = targets
        self.y_pred = y_pred
        self.confidence = confidence
        self.y_true = y_true
        self.method = method
        self.indices = indices
        self.display_labels = display_labels

    @classmethod
    @Substitution("heat_map_grid")
    def from_estimator(cls, estimator, X, y=None, *, target=None,
                       method="integrated_gradients", layer=None, method_params=None,
                       batch_size=32, random_state=None, display_labels=None,
                       n_cols=None, cmap="jet", alpha=0.5, image_cmap="gray", ax=None):
        """Compute the saliency maps of images ``X`` and draw them.

        Parameters
        ----------
        estimator : estimator instance
            A fitted :class:`~skimgcls.CNNClassifier`, a Pipeline ending with
            one, or a fitted search whose ``best_estimator_`` is one of those.
        X : array-like, torch.Tensor, list of PIL.Image.Image or array of paths
            Images accepted by ``estimator``; one grid cell each (one per
            explained label with ``target='predicted'``).
        y : array-like of shape (n_samples,) or (n_samples, n_labels) or None, \
default=None
            True labels, shown in the titles; the 0/1 indicator matrix for a
            multi-label estimator.
        target : label, array-like of shape (n_samples,), 'predicted' or None, \
default=None
            The class to explain, as a label from ``classes_``: one for all
            images or one per image (``target=y`` explains the true
            classes). None explains the predictions. For a multi-label
            estimator, ``classes_`` are the label indices: ``target=j``
            explains label ``j`` in every image, None each image's most
            probable label, ``'predicted'`` each predicted label (a cell per
            image and label above ``threshold``; an image with none gets one
            cell, for its most probable label), and an indicator matrix
            (e.g. ``target=y``) each label it sets.
        method : {'integrated_gradients', 'saliency', 'gradient_shap', \
'occlusion', 'gradcam'}, default='integrated_gradients'
            The attribution method, see :func:`saliency_maps`.
        layer : str, torch.nn.Module or None, default=None
            The Grad-CAM layer; None takes the one that outputs the last
            spatial feature map.
        method_params : dict or None, default=None
            Extra arguments of the Captum method's ``attribute``.
        batch_size : int, default=32
            Images per attribution call.
        random_state : int or None, default=None
            Seeds the noise of ``'gradient_shap'``.
        display_labels : array-like of shape (n_classes,) or None, default=None
            Names shown in the titles for ``classes_``, in their order; for a
            multi-label estimator, the names of its label columns (e.g. the
            ``classes_`` of a ``MultiLabelBinarizer``). None shows the labels
            themselves (the column indices, for multi-label).
        {heat_map_grid}

        Returns
        -------
        display : SaliencyDisplay
            The plotted display.

        Examples
        --------
        A cell per predicted label of a multi-label classifier, with names:

        >>> import pytest; _ = pytest.importorskip("captum")
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np
        >>> from sklearn.datasets import load_digits
        >>> from skimgcls import CNNClassifier, SaliencyDisplay
        >>> X, y = load_digits(return_X_y=True)
        >>> X = X.reshape(-1, 8, 8) / 16
        >>> Y = np.stack([y % 2, y > 4], axis=1).astype(int)
        >>> clf = CNNClassifier(max_epochs=3, module__width=4, random_state=0)
        >>> clf = clf.fit(X[:300], Y[:300])
        >>> display = SaliencyDisplay.from_estimator(
        ...     clf, X[300:304], Y[300:304], target="predicted", method="saliency",
        ...     display_labels=["odd", "large"])
        >>> len(display.maps) == len(display.indices) >= 4
        True
        >>> import matplotlib.pyplot as plt
        >>> plt.close(display.figure_)
        """
        result = _saliency(
            estimator, X, target, method, layer=layer, method_params=method_params,
            batch_size=batch_size, random_state=random_state, keep_images=True,
            per_label=True)
        clf, rows, targets, proba = result.clf, result.rows, result.targets, result.proba
        n_images, classes = len(proba), clf.classes_
        names = None
        if display_labels is not None:
            what = "label columns" if is_multilabel(clf) else "classes"
            names = display_names(display_labels, classes.size, f"{what} of the "
                                  "estimator", "pass one name per entry of classes_, "
                                  "in its order.")
        if y is not None and is_multilabel(clf):
            y = check_labels(y, n_samples=n_images, classes=classes, estimator=clf,
                             multilabel=True)[rows]
        elif y is not None:
            y = column_or_1d(y)
            if len(y) != n_images:
                raise ValueError(f"y has {len(y)} labels for {n_images} images; pass "
                                 "one true label per image, or None.")
            if names is not None:
                lookup = dict(zip(classes.tolist(), names.tolist()))
                y = np.array([lookup.get(v, v) for v in y.tolist()], dtype=object)
        maps = result.maps
        images = _shown_images(X, result.inputs, maps.shape[1:])[rows]
        if is_multilabel(clf):
            display = cls(
                images=images, maps=maps, targets=classes[targets],
                y_pred=decision_rule(clf).indicators(proba)[rows],
                confidence=proba[rows, targets], y_true=y, method=method,
                indices=rows, display_labels=names)
        else:
            shown = classes if names is None else names
            display = cls(
                images=images, maps=maps, targets=shown[targets],
                y_pred=shown[proba.argmax(1)], confidence=proba.max(1), y_true=y,
                method=method, indices=rows)
        return display.plot(n_cols=n_cols, cmap=cmap, alpha=alpha,
                            image_cmap=image_cmap, ax=ax)

    def _title(self, i):
        if self.y_pred is not None and np.ndim(self.y_pred) == 2:  # multi-label
            names = self.display_labels
            lines = [] if self.y_true is None else [
                f"true: {label_set(self.y_true[i], names)}"]
            lines.append(f"pred: {label_set(self.y_pred[i], names)}")
            target = self.targets[i] if names is None else names[self.targets[i]]
            if self.confidence is not None:
                target = f"{target} ({self.confidence[i]:.2f})"
            lines.append(f"map of: {target}")
            return "\n".join(lines)
        lines = [] if self.y_true is None else [f"true: {self.y_true[i]}"]
        if self.y_pred is not None:
            pred = f"pred: {self.y_pred[i]}"
            if self.confidence is not None:
                pred += f" ({self.confidence[i]:.2f})"
            lines.append(pred)
        if self.y_pred is None or self.targets[i] != self.y_pred[i]:
            lines.append(f"map of: {self.targets[i]}")
        return "\n".join(lines)

    @Substitution("heat_map_grid")
    def plot(self, *, n_cols=None, cmap="jet", alpha=0.5, image_cmap="gray",
             ax=None):
        """Draw each image with its heat map on top.

        Parameters
        ----------
        {heat_map_grid}

        Returns
        -------
        display : SaliencyDisplay
            This display, with ``figure_``, ``axes_`` and ``overlays_``.
        """
        plt = pyplot("SaliencyDisplay")
        n = len(self.maps)
        if n == 0:
            raise ValueError("There are no saliency maps to draw; pass at least "
                             "one image.")
        per_label = self.indices is not None and len(np.unique(self.indices)) < n
        titles = [self._title(i) for i in range(n)]
        tile = (1.8, 2.1)
        if self.y_pred is not None and np.ndim(self.y_pred) == 2:  # label sets
            tile = tile_for(titles, tile)
        fig, axes = image_grid(plt, n, n_cols=n_cols, ax=ax, tile=tile,
                               what="axes, one per (image, label) map" if per_label
                               else "axes, one per image")
        self.overlays_ = []
        for i, axis in enumerate(axes.flat[:n]):
            axis.imshow(for_imshow(self.images[i]), cmap=image_cmap)
            peak = float(self.maps[i].max())
            self.overlays_.append(axis.imshow(
                self.maps[i] / (peak or 1.0), cmap=cmap, alpha=alpha, vmin=0.0,
                vmax=1.0, interpolation="bilinear"))
            axis.set_title(titles[i], fontsize=8)
        if self.method:
            fig.suptitle(f"Saliency ({self.method})")
        self.figure_, self.axes_ = fig, axes
        return self
