"""Training-time augmentation on whole batches, and MixUp/CutMix.

:class:`RandomAugment` draws a fresh random transformation for every image of
every batch, vectorized: one affine resampling (``grid_sample``) covers
rotation, flips, zoom, translation and random resized crops; brightness,
contrast and random erasing are batched tensor arithmetic. The random draws
(:meth:`RandomAugment.sample_params`) are kept apart from the deterministic
kernel (:meth:`RandomAugment.apply`).

Two ways to use it, both of which never touch test images:

* ``CNNClassifier(augment=RandomAugment(...))``: the classifier calls it on
  every training batch (float NCHW tensor on the device), never on the
  validation split or in ``predict``/``predict_proba``/``score``. The draws
  come from torch's global generator, which the classifier seeds from its own
  ``random_state``, so a seeded fit is reproducible.
* As a Pipeline step: :meth:`RandomAugment.fit_transform` returns augmented
  images and its ``transform`` returns them unchanged, so a
  Pipeline augments what it fits on and nothing it predicts.

:func:`mix_batch` implements MixUp and CutMix for the classifier's
``mixup_alpha`` and ``cutmix_alpha``; :func:`augmentation_preview` saves a grid
of augmented versions of one image as PNG.
"""

import functools
import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import ImageTransformer
from ._docstring import Substitution
from ._functional import from_float_nchw, to_float_nchw
from ._io import read_image
from .utils._random import seeded
from .utils.validation import check_images

__all__ = ["RandomAugment", "augmentation_preview", "mix_batch"]

_PADDING = {"zeros": "zeros", "border": "border", "reflection": "reflection"}


@functools.lru_cache(maxsize=16)
def _base_grid(height, width, dtype, device):
    """The ``(H * W, 3)`` rows ``(x, y, 1)`` of the output pixel centers.

    In ``grid_sample``'s normalized coordinates (``align_corners=False``), as
    ``F.affine_grid`` lays them out; built once per size, where
    ``affine_grid`` fills an ``(n, H, W, 3)`` copy for every batch (half its
    time on a CPU).
    """
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1
    grid = torch.ones(height, width, 3, dtype=torch.float64)
    grid[..., 0], grid[..., 1] = xs, ys[:, None]
    return grid.reshape(height * width, 3).to(dtype=dtype, device=device)


def _affine_grid(theta, height, width):
    """``F.affine_grid(theta, (n, C, H, W), align_corners=False)`` from a cached base.

    One ``(H * W, 3) @ (3, 2n)`` product: 20x faster on a CPU than the
    batched product ``affine_grid`` makes (64x64 images, batch 32).
    """
    n = len(theta)
    base = _base_grid(height, width, theta.dtype, theta.device)
    grid = base @ theta.permute(2, 0, 1).reshape(3, 2 * n)  # (H * W, 2n)
    return grid.view(height * width, n, 2).transpose(0, 1).reshape(n, height, width, 2)


def _uniform(n, low, high, device):
    return torch.rand(n, device=device) * (high - low) + low


@Substitution("image_shape", "n_features_in_attributes")
class RandomAugment(ImageTransformer):
    """Random image augmentation for training, one draw per image per batch.

    Every magnitude is a parameter, so it can be grid-searched, e.g.
    ``GridSearchCV(CNNClassifier(augment=RandomAugment()),
    {"augment__degrees": [0, 15]})``. A magnitude of 0 (or None) turns that
    augmentation off.

    Parameters
    ----------
    degrees : float, default=10.0
        Rotation by an angle drawn uniformly from ``[-degrees, degrees]``.
    translate : float, default=0.1
        Shift by up to this fraction of the width and height, each way.
    zoom : float, default=0.1
        Scale by a factor drawn from ``[1 - zoom, 1 + zoom]`` (> 1 zooms in).
    hflip : float, default=0.0
        Probability of a horizontal flip. Off by default: it changes the
        meaning of digits and text; 0.5 is usual for natural images.
    vflip : float, default=0.0
        Probability of a vertical flip.
    crop_scale : float or None, default=None
        Random resized crop: cut a region covering a fraction of the image
        area drawn from ``[crop_scale, 1]``, with aspect ratio in
        ``[3/4, 4/3]``, and scale it back to full size (as torchvision's
        ``RandomResizedCrop``; 0.08 is the ImageNet recipe). None: off.
    brightness : float, default=0.0
        Multiply intensities by a factor drawn from
        ``[1 - brightness, 1 + brightness]``.
    contrast : float, default=0.0
        Scale the deviation from each image's mean gray by a factor drawn from
        ``[1 - contrast, 1 + contrast]``.
    erasing : float, default=0.0
        Probability of random erasing: a rectangle covering 2 to 33 % of the
        image (aspect ratio 0.3 to 3.3) is set to ``erasing_value``.
    erasing_value : float, default=0.0
        Value of erased pixels, in the units of the network's input.
    policy : {'trivial', 'rand'} or None, default=None
        Also apply torchvision's TrivialAugmentWide (``'trivial'``) or
        RandAugment (``'rand'``) to each image, first. These policies assume
        images on the [0, 1] scale (as the classifier makes uint8 images).
    policy_magnitude : int, default=9
        RandAugment's magnitude (0 to 30).
    policy_ops : int, default=2
        RandAugment's number of operations per image.
    padding_mode : {'zeros', 'border', 'reflection'}, default='zeros'
        How pixels that geometric transforms bring in from outside the image
        are filled.
    random_state : int, RandomState instance or None, default=None
        Seeds :meth:`fit_transform`. Inside ``CNNClassifier`` the classifier's
        ``random_state`` governs the draws instead.
    {image_shape}

    {n_features_in_attributes}

    See Also
    --------
    augmentation_preview : Look at what the parameters do.
    skimgcls.CNNClassifier : Its ``mixup_alpha`` and ``cutmix_alpha`` add MixUp
        and CutMix.

    Notes
    -----
    :meth:`__call__` works on float tensors of shape ``(n, C, H, W)`` (any
    device) and returns one of the same shape and dtype. Brightness and
    contrast do not clip, so the augmenter also works on normalized images.
    In :meth:`fit_transform` uint8 and uint16 images are augmented on the
    [0, 1] scale and returned with their dtype. ``transform`` returns the
    images unchanged (validated, NHWC): test data is never augmented.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import RandomAugment
    >>> X = np.random.RandomState(0).rand(4, 8, 8).astype(np.float32)
    >>> aug = RandomAugment(degrees=20, hflip=0.5, random_state=0)
    >>> X_aug = aug.fit_transform(X)
    >>> X_aug.shape, bool(np.allclose(X_aug, X[..., None]))
    ((4, 8, 8, 1), False)
    >>> bool(np.array_equal(aug.transform(X), X[..., None]))  # test data: unchanged
    True
    """

    _parameter_constraints = {
        "degrees": [Interval(Real, 0, 180, closed="both")],
        "translate": [Interval(Real, 0, 1, closed="both")],
        "zoom": [Interval(Real, 0, 1, closed="left")],
        "hflip": [Interval(Real, 0, 1, closed="both")],
        "vflip": [Interval(Real, 0, 1, closed="both")],
        "crop_scale": [Interval(Real, 0, 1, closed="right"), None],
        "brightness": [Interval(Real, 0, 1, closed="both")],
        "contrast": [Interval(Real, 0, 1, closed="both")],
        "erasing": [Interval(Real, 0, 1, closed="both")],
        "erasing_value": [Real],
        "policy": [StrOptions({"trivial", "rand"}), None],
        "policy_magnitude": [Interval(Integral, 0, 30, closed="both")],
        "policy_ops": [Interval(Integral, 1, None, closed="left")],
        "padding_mode": [StrOptions(set(_PADDING))],
        "random_state": ["random_state"],
        "image_shape": [tuple, list, None],
    }

    def __init__(self, *, degrees=10.0, translate=0.1, zoom=0.1, hflip=0.0, vflip=0.0,
                 crop_scale=None, brightness=0.0, contrast=0.0, erasing=0.0,
                 erasing_value=0.0, policy=None, policy_magnitude=9, policy_ops=2,
                 padding_mode="zeros", random_state=None, image_shape=None):
        self.degrees = degrees
        self.translate = translate
        self.zoom = zoom
        self.hflip = hflip
        self.vflip = vflip
        self.crop_scale = crop_scale
        self.brightness = brightness
        self.contrast = contrast
        self.erasing = erasing
        self.erasing_value = erasing_value
        self.policy = policy
        self.policy_magnitude = policy_magnitude
        self.policy_ops = policy_ops
        self.padding_mode = padding_mode
        self.random_state = random_state
        self.image_shape = image_shape

    # -- random draws -----------------------------------------------------------
    def sample_params(self, n, height, width, device="cpu"):
        """Draw the random parameters of ``n`` augmentations.

        Uses torch's global random generator (seed it with
        :func:`torch.manual_seed` to repeat draws).

        Parameters
        ----------
        n : int
            Number of images.
        height, width : int
            Image size in pixels.
        device : str or torch.device, default='cpu'
            Device of the returned tensors.

        Returns
        -------
        params : dict of str to torch.Tensor
            ``theta`` (n, 2, 3) affine sampling matrices or None (no geometric
            change), ``brightness`` and ``contrast`` factors (n,) or None,
            ``erase`` (n, H, W) boolean masks or None.
        """
        params = {"theta": self._sample_theta(n, height, width, device),
                  "brightness": None, "contrast": None, "erase": None}
        if self.brightness > 0:
            params["brightness"] = _uniform(n, 1 - self.brightness,
                                            1 + self.brightness, device)
        if self.contrast > 0:
            params["contrast"] = _uniform(n, 1 - self.contrast, 1 + self.contrast,
                                          device)
        if self.erasing > 0:
            params["erase"] = _sample_erase_masks(n, height, width, self.erasing, device)
        return params

    def _sample_theta(self, n, height, width, device):
        active = (self.degrees > 0 or self.translate > 0 or self.zoom > 0
                  or self.hflip > 0 or self.vflip > 0 or self.crop_scale is not None)
        if not active:
            return None
        # Work in pixel units centered on the image, then normalize, so that
        # rotations stay rotations on non-square images.
        # Output pixel p_out maps to input pixel p_in = M @ p_out + t.
        eye = torch.eye(2, device=device).expand(n, 2, 2)
        matrix = eye.clone()
        shift = torch.zeros(n, 2, device=device)
        if self.hflip > 0 or self.vflip > 0:
            flips = torch.ones(n, 2, device=device)
            flips[:, 0] = torch.where(torch.rand(n, device=device) < self.hflip, -1.0, 1.0)
            flips[:, 1] = torch.where(torch.rand(n, device=device) < self.vflip, -1.0, 1.0)
            matrix = matrix * flips[:, None, :]
        if self.degrees > 0:
            angle = _uniform(n, -self.degrees, self.degrees, device) * (math.pi / 180)
            cos, sin = torch.cos(angle), torch.sin(angle)
            rot = torch.stack([torch.stack([cos, -sin], 1),
                               torch.stack([sin, cos], 1)], 1)
            matrix = rot @ matrix
        if self.zoom > 0:
            scale = _uniform(n, 1 - self.zoom, 1 + self.zoom, device)
            matrix = matrix / scale[:, None, None]
        if self.translate > 0:
            size = torch.tensor([width, height], device=device, dtype=torch.float32)
            shift = shift - _uniform(2 * n, -self.translate, self.translate,
                                     device).reshape(n, 2) * size
        if self.crop_scale is not None:
            crop_size, crop_center = _sample_crops(n, height, width, self.crop_scale,
                                                   device)
            size = torch.tensor([width, height], device=device, dtype=torch.float32)
            ratio = crop_size / size
            matrix = matrix * ratio[:, :, None]
            shift = shift * ratio + crop_center
        half = torch.tensor([width / 2, height / 2], device=device)
        theta = torch.empty(n, 2, 3, device=device)
        theta[:, :, :2] = matrix * half[None, None, :] / half[None, :, None]
        theta[:, :, 2] = shift / half
        return theta

    # -- deterministic kernel ----------------------------------------------------
    def apply(self, images, params):
        """Apply drawn parameters to a float NCHW batch (no randomness).

        Parameters
        ----------
        images : torch.Tensor of shape (n, C, H, W)
            Float images.
        params : dict
            From :meth:`sample_params`.

        Returns
        -------
        images : torch.Tensor of shape (n, C, H, W)
            Augmented images.
        """
        x = images
        if params["theta"] is not None:
            grid = _affine_grid(params["theta"].to(x.dtype), *x.shape[2:])
            x = F.grid_sample(x, grid, mode="bilinear",
                              padding_mode=_PADDING[self.padding_mode],
                              align_corners=False)
        if params["brightness"] is not None:
            x = x * params["brightness"].to(x.dtype)[:, None, None, None]
        if params["contrast"] is not None:
            gray = x[:, :3].mean(dim=(1, 2, 3), keepdim=True)
            factor = params["contrast"].to(x.dtype)[:, None, None, None]
            x = (x - gray) * factor + gray
        if params["erase"] is not None:
            mask = params["erase"][:, None]
            x = torch.where(mask, torch.as_tensor(float(self.erasing_value),
                                                  dtype=x.dtype, device=x.device), x)
        return x

    def _apply_policy(self, images):
        from torchvision.transforms import v2

        if self.policy == "trivial":
            policy = v2.TrivialAugmentWide()
        else:
            policy = v2.RandAugment(num_ops=self.policy_ops,
                                    magnitude=self.policy_magnitude)
        as_uint8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        if as_uint8.shape[1] not in (1, 3):
            raise ValueError(
                f"policy={self.policy!r} works on images with 1 or 3 channels; got "
                f"{as_uint8.shape[1]}. Convert them with skimgcls.ToRGB()."
            )
        # The policies draw one operation per call: call them image by image so
        # that every image gets its own.
        out = torch.stack([policy(img) for img in as_uint8])
        return out.to(images.dtype) / 255

    def __call__(self, images):
        """Augment a float batch of shape ``(n, C, H, W)``; draws fresh parameters.

        Parameters
        ----------
        images : torch.Tensor of shape (n, C, H, W)
            Float images on any device.

        Returns
        -------
        images : torch.Tensor of shape (n, C, H, W)
            Augmented images, same dtype and device.
        """
        self._validate_params()
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                "RandomAugment expects a float torch tensor of shape (n, C, H, W); got "
                f"{type(images).__name__} with shape {tuple(np.shape(images))}. "
                "Use fit_transform for NumPy images."
            )
        if not images.is_floating_point():
            raise TypeError(f"RandomAugment expects float images; got {images.dtype}.")
        if self.policy is not None:
            images = self._apply_policy(images)
        n, _, height, width = images.shape
        params = self.sample_params(n, height, width, images.device)
        return self.apply(images, params)

    # -- scikit-learn API ------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    @Substitution("X_images_y")
    def fit_transform(self, X, y=None):
        """Return augmented copies of the (training) images ``X``.

        Parameters
        ----------
        {X_images_y}

        Returns
        -------
        X_aug : ndarray of shape (n_samples, H, W, C)
            One random augmentation of each image, with the dtype of the
            validated input (uint8, uint16 or float32).
        """
        X = self._check(X, reset=True)
        with seeded(self.random_state):
            out = self(to_float_nchw(X))
        return from_float_nchw(out, X.dtype)

    def _transform(self, X):
        return X  # transform: test data is never augmented

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags


def _sample_crops(n, height, width, min_scale, device):
    """Crop sizes (w, h) and centers (pixels from the image center), vectorized.

    As torchvision's RandomResizedCrop: area fraction in ``[min_scale, 1]``,
    log-uniform aspect ratio in ``[3/4, 4/3]``; draws that do not fit are
    clipped to the image.
    """
    area = _uniform(n, min_scale, 1.0, device) * (height * width)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), device)
    ratio = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * ratio).clamp(1, width)
    crop_h = torch.sqrt(area / ratio).clamp(1, height)
    free = torch.stack([width - crop_w, height - crop_h], 1)
    center = (torch.rand(n, 2, device=device) - 0.5) * free
    return torch.stack([crop_w, crop_h], 1), center


def _sample_erase_masks(n, height, width, p, device):
    """Boolean (n, H, W) masks of random rectangles, empty with probability 1 - p."""
    area = _uniform(n, 0.02, 0.33, device) * (height * width)
    ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), device))
    h = torch.sqrt(area * ratio).round().clamp(1, height)
    w = torch.sqrt(area / ratio).round().clamp(1, width)
    top = (torch.rand(n, device=device) * (height - h + 1)).floor()
    left = (torch.rand(n, device=device) * (width - w + 1)).floor()
    on = torch.rand(n, device=device) < p
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
    return inside & on[:, None, None]


def mix_batch(images, *, mixup_alpha=0.0, cutmix_alpha=0.0):
    """MixUp or CutMix a float NCHW batch with a shuffled copy of itself.

    With both alphas positive, each batch uses one of the two, chosen with
    probability 1/2 (as timm does). Draws come from torch's global generator.

    Parameters
    ----------
    images : torch.Tensor of shape (n, C, H, W)
        Float images.
    mixup_alpha : float, default=0.0
        MixUp: ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha,
        alpha)``; 0 turns it off.
    cutmix_alpha : float, default=0.0
        CutMix: paste a box of ``x[perm]`` covering a ``1 - lam`` share of the
        area, ``lam ~ Beta(alpha, alpha)``; 0 turns it off.

    Returns
    -------
    images : torch.Tensor of shape (n, C, H, W)
        The mixed batch (the input when both alphas are 0).
    perm : torch.Tensor of shape (n,) or None
        Index of the partner of each image; None when nothing was mixed.
    lam : float
        Weight of each image's own label (1.0 when nothing was mixed); the
        partner's label gets ``1 - lam``.

    Examples
    --------
    >>> import torch
    >>> from skimgcls.augmentation import mix_batch
    >>> _ = torch.manual_seed(0)
    >>> mixed, perm, lam = mix_batch(torch.rand(4, 1, 8, 8), mixup_alpha=0.2)
    >>> mixed.shape, perm.shape, 0 <= lam <= 1
    (torch.Size([4, 1, 8, 8]), torch.Size([4]), True)
    """
    use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
    if not (use_mixup or use_cutmix) or len(images) < 2:
        return images, None, 1.0
    if use_mixup and use_cutmix:
        use_cutmix = bool(torch.rand(()) < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    concentration = torch.tensor([float(alpha), float(alpha)])
    lam = float(torch.distributions.Dirichlet(concentration).sample()[0])
    perm = torch.randperm(len(images)).to(images.device)
    if not use_cutmix:
        return images * lam + images[perm] * (1 - lam), perm, lam
    height, width = images.shape[-2:]
    cut = math.sqrt(1 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, ()))
    cx = int(torch.randint(0, width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, perm, lam


def augmentation_preview(augment, image, *, n_images=16, n_cols=4, path=None,
                         min_tile_size=64, random_state=0):
    """Draw augmented versions of one image in a grid; optionally save it as PNG.

    The first tile is the original image.

    Parameters
    ----------
    augment : RandomAugment or callable
        Anything that maps a float NCHW batch to an augmented one.
    image : array-like of shape (H, W) or (H, W, C), PIL.Image.Image, or path
        The image (uint8 images are shown on [0, 255], floats on [0, 1]).
    n_images : int, default=16
        Number of tiles, the original included.
    n_cols : int, default=4
        Tiles per row.
    path : str or path-like or None, default=None
        Where to save the grid as PNG; None only returns it.
    min_tile_size : int, default=64
        Small images are enlarged (nearest neighbor, integer factor) to at
        least this many pixels per side, so 8x8 digits stay visible.
    random_state : int, RandomState instance or None, default=0
        Seed of the draws.

    Returns
    -------
    grid : ndarray of shape (rows * (H' + 2) + 2, n_cols * (W' + 2) + 2, C)
        The uint8 grid, with a 2-pixel gray border between tiles.

    Examples
    --------
    >>> import numpy as np
    >>> from skimgcls import RandomAugment
    >>> from skimgcls.augmentation import augmentation_preview
    >>> grid = augmentation_preview(RandomAugment(degrees=30), np.eye(8),
    ...                             n_images=4, n_cols=2, min_tile_size=8)
    >>> grid.shape
    (22, 22, 1)
    """
    from PIL import Image

    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        image = read_image(image, mode=None)
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    X = check_images(np.asarray(image)[np.newaxis])
    batch = to_float_nchw(X).expand(n_images - 1, -1, -1, -1).contiguous()
    with seeded(random_state), torch.no_grad():
        augmented = augment(batch) if n_images > 1 else batch
    tiles = torch.cat([batch[:1], augmented[:n_images - 1]])
    tiles = (tiles.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _, h, w, c = tiles.shape
    factor = max(1, math.ceil(min_tile_size / max(min(h, w), 1)))
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    h, w = h * factor, w * factor
    n_rows = math.ceil(n_images / n_cols)
    grid = np.full((n_rows * (h + 2) + 2, n_cols * (w + 2) + 2, c), 128, np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, n_cols)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = tile
    if path is not None:
        Image.fromarray(grid[..., 0] if c == 1 else grid).save(path, format="PNG")
    return grid
