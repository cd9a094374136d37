"""RandomAugment, MixUp/CutMix and the guarantee that test data is never augmented."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from torch import nn

from skimgcls import CNNClassifier, RandomAugment, ToFloat
from skimgcls.augmentation import augmentation_preview, mix_batch


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    return X[:200], y[:200]


def tiny(**params):
    defaults = dict(max_epochs=2, batch_size=32, validation_fraction=0.1,
                    precision="fp32", random_state=0)
    if "module" not in params:
        defaults["module__width"] = 4
    defaults.update(params)
    return CNNClassifier(**defaults)


class CountingAugment:
    """Wraps an augmenter; counts calls and keeps inputs and outputs."""

    def __init__(self, augment):
        self.augment = augment
        self.inputs, self.outputs = [], []

    def __call__(self, images):
        out = self.augment(images)
        self.inputs.append(images.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


class MarkerAugment:
    """An 'augmentation' that is impossible to miss: adds 100 to every pixel."""

    def __call__(self, images):
        return images + 100.0


class RecordingNet(nn.Module):
    """A tiny network that records the inputs it sees in train and eval mode."""

    def __init__(self, in_channels, n_classes, image_size):
        super().__init__()
        h, w = image_size
        self.linear = nn.Linear(in_channels * h * w, n_classes)
        self.train_inputs, self.eval_inputs = [], []

    def forward(self, x):
        (self.train_inputs if self.training else self.eval_inputs).append(
            x.detach().clone())
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def fitted_with_augment(digits):
    X, y = digits
    augment = CountingAugment(RandomAugment(degrees=30, hflip=0.5, erasing=0.5))
    clf = tiny(augment=augment).fit(X, y)
    return clf, augment


# -- never on test data ------------------------------------------------------------
def test_predict_proba_identical_with_and_without_augmenter(fitted_with_augment, digits):
    clf, augment = fitted_with_augment
    X, _ = digits
    calls = len(augment.outputs)
    with_augment = clf.predict_proba(X)
    assert len(augment.outputs) == calls  # predict never called it
    clf.net_.augment = None
    try:
        without_augment = clf.predict_proba(X)
        score_without = clf.score(X, digits[1])
    finally:
        clf.net_.augment = augment
    np.testing.assert_array_equal(with_augment, without_augment)
    assert clf.score(X, digits[1]) == score_without
    assert len(augment.outputs) == calls


def test_augmenter_called_on_every_training_batch_only(fitted_with_augment, digits):
    clf, augment = fitted_with_augment
    held_out = clf.validation_fraction_ or 0.0
    n_train = len(digits[0]) - round(held_out * len(digits[0]))
    batches_per_epoch = -(-n_train // clf.batch_size)
    assert len(augment.outputs) == clf.max_epochs * batches_per_epoch
    assert sum(len(x) for x in augment.inputs) == clf.max_epochs * n_train


def test_validation_split_sees_unaugmented_images(digits):
    X, y = digits
    clf = tiny(module=RecordingNet, augment=MarkerAugment(), mixup_alpha=0.4,
               cutmix_alpha=1.0, max_epochs=2).fit(X, y)
    net = clf.module_
    train_seen = torch.cat(net.train_inputs)
    valid_seen = torch.cat(net.eval_inputs)
    assert train_seen.min() >= 100 - 1e-3  # every training image went through augment
    assert valid_seen.max() <= 1.0  # no validation image did, nor mixing
    # The validation images are exactly the original (scaled) images.
    originals = torch.from_numpy(X.reshape(len(X), -1) / 255).float()
    distance = torch.cdist(valid_seen.flatten(1), originals,
                           compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    assert distance.max() < 1e-5
    n_valid = round(0.1 * len(X))
    assert len(valid_seen) == clf.max_epochs * n_valid
    net.eval_inputs.clear()
    clf.predict(X)
    assert torch.cat(net.eval_inputs).max() <= 1.0


def test_two_epochs_see_different_augmentations(digits):
    X, y = digits
    X, y = X[:64], y[:64]

    def run():
        augment = CountingAugment(RandomAugment(degrees=20, translate=0.1))
        tiny(augment=augment, validation_fraction=None, batch_size=64,
             iterator_train__shuffle=False).fit(X, y)
        return augment

    first = run()
    assert len(first.outputs) == 2
    torch.testing.assert_close(first.inputs[0], first.inputs[1])  # same images
    assert not torch.allclose(first.outputs[0], first.outputs[1])  # new draws
    again = run()  # the classifier's random_state makes the draws repeat
    for a, b in zip(first.outputs, again.outputs):
        torch.testing.assert_close(a, b)


def test_pipeline_fit_transform_augments_transform_passes_through(digits):
    X, _ = digits
    pipe = make_pipeline(RandomAugment(degrees=30, random_state=0), ToFloat())
    augmented = pipe.fit_transform(X)
    passed = pipe.transform(X)
    np.testing.assert_array_equal(passed, X[..., None] / np.float32(255))
    assert not np.allclose(augmented, passed)
    assert augmented.shape == passed.shape and augmented.dtype == np.float32
    np.testing.assert_array_equal(pipe.fit_transform(X), augmented)  # seeded


def test_fit_transform_keeps_dtype_and_transform_is_identity(digits):
    X, _ = digits
    aug = RandomAugment(brightness=0.5, random_state=1)
    out = aug.fit_transform(X)
    assert out.dtype == np.uint8 and out.shape == X.shape + (1,)
    assert aug.transform(X).dtype == np.uint8
    np.testing.assert_array_equal(aug.transform(X), X[..., None])


# -- the kernel ----------------------------------------------------------------------
def _batch(n=6, c=3, h=5, w=7, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def off(**params):
    """A RandomAugment with everything off but ``params``."""
    base = dict(degrees=0, translate=0, zoom=0, hflip=0, vflip=0)
    base.update(params)
    return RandomAugment(**base)


def test_all_off_is_identity():
    x = _batch()
    torch.testing.assert_close(off()(x), x)


def test_flips_are_exact_on_non_square_images():
    x = _batch()
    torch.testing.assert_close(off(hflip=1.0)(x), x.flip(-1))
    torch.testing.assert_close(off(vflip=1.0)(x), x.flip(-2))
    torch.testing.assert_close(off(hflip=1.0, vflip=1.0)(x), x.flip(-1, -2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(9, 9), (7, 12), (64, 48)])
def test_sampling_grid_is_torchs_affine_grid(size, dtype):
    from skimgcls.augmentation import _affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0),
                        dtype=dtype)
    expected = torch.nn.functional.affine_grid(theta, [5, 3, *size], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, *size), expected)


def test_each_geometric_op_changes_images_and_keeps_shape():
    x = _batch(h=9, w=9)
    for aug in [off(degrees=30), off(translate=0.3), off(zoom=0.4),
                off(crop_scale=0.3), RandomAugment(padding_mode="reflection")]:
        out = aug(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert not torch.allclose(out, x)


def test_draws_differ_per_image():
    x = _batch(n=1).expand(8, -1, -1, -1)
    out = off(degrees=45)(x)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_brightness_and_contrast_factors():
    x = _batch(n=50)
    out = off(brightness=0.3)(x)
    ratio = (out / x).flatten(1)
    assert torch.allclose(ratio.min(1).values, ratio.max(1).values, atol=1e-4)
    assert ratio.min() >= 0.7 - 1e-5 and ratio.max() <= 1.3 + 1e-5
    out = off(contrast=0.5)(x)
    mean_in, mean_out = x.mean((1, 2, 3)), out.mean((1, 2, 3))
    torch.testing.assert_close(mean_in, mean_out)  # contrast keeps the mean
    std_ratio = out.std((1, 2, 3)) / x.std((1, 2, 3))
    assert std_ratio.min() >= 0.5 - 1e-4 and std_ratio.max() <= 1.5 + 1e-4


def test_random_erasing():
    x = _batch(n=40, h=20, w=20) + 1.0  # no zeros before erasing
    out = off(erasing=1.0, erasing_value=0.0)(x)
    erased = (out == 0).all(dim=1).float().mean((1, 2))
    assert (erased > 0).all()
    assert erased.max() <= 0.5
    assert (off(erasing=0.0)(x) == x).all()


def _uint8_batch(n=32, c=3, h=16, w=16, seed=0):
    """Float images on the uint8 grid: a policy's no-op leaves them unchanged."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g).float() / 255


@pytest.mark.parametrize("policy", ["trivial", "rand"])
def test_policies_apply_torchvisions_operations(policy):
    from torchvision.transforms import v2

    x = _uint8_batch()
    torch.manual_seed(0)
    out = off(policy=policy, policy_magnitude=20)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert changed >= 0.75  # a no-op policy changes nothing
    # each image gets its own draw of the named torchvision policy
    ops = (v2.TrivialAugmentWide() if policy == "trivial"
           else v2.RandAugment(num_ops=2, magnitude=20))
    torch.manual_seed(0)
    expected = torch.stack([ops((img * 255).round().to(torch.uint8)) for img in x])
    torch.testing.assert_close(out, expected.float() / 255)


def test_rand_policy_uses_magnitude_and_ops():
    x = _uint8_batch()

    def change(**params):
        torch.manual_seed(0)
        return (off(policy="rand", **params)(x) - x).abs().mean().item()

    assert change(policy_magnitude=25) > 2 * change(policy_magnitude=0)
    assert change(policy_ops=4) > change(policy_ops=1)


@pytest.mark.parametrize("policy", ["trivial", "rand"])
def test_policies_are_seeded_by_random_state(policy, digits):
    X = digits[0][:40, :, :, None]  # NHWC, as fit_transform returns
    first = off(policy=policy, random_state=0).fit_transform(X)
    assert first.shape == X.shape and first.dtype == np.uint8
    # most images change (TrivialAugment's draws include identity and magnitude 0)
    assert np.mean([not np.array_equal(a, b) for a, b in zip(first, X)]) > 0.5
    np.testing.assert_array_equal(off(policy=policy, random_state=0).fit_transform(X),
                                  first)
    assert not np.array_equal(off(policy=policy, random_state=1).fit_transform(X),
                              first)


def test_magnitudes_are_searchable_params():
    clf = CNNClassifier(augment=RandomAugment())
    clf.set_params(augment__degrees=25, augment__erasing=0.2)
    assert clf.get_params()["augment__degrees"] == 25
    assert clone(clf).augment.erasing == 0.2


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"shape \(n, C, H, W\).*fit_transform"):
        RandomAugment()(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match="float"):
        RandomAugment()(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="degrees"):
        RandomAugment(degrees=-1)(_batch())


# -- MixUp / CutMix ------------------------------------------------------------------
def test_mixup_blends_with_a_permutation():
    torch.manual_seed(0)
    x = _batch(n=8)
    mixed, perm, lam = mix_batch(x, mixup_alpha=0.4)
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])


def test_cutmix_pastes_a_box_and_lam_is_its_area():
    torch.manual_seed(3)
    x = _batch(n=8, h=16, w=16)
    mixed, perm, lam = mix_batch(x, cutmix_alpha=1.0)
    moved = perm != torch.arange(8)  # images paired with themselves stay
    from_partner = ((mixed == x[perm]) & (mixed != x)).all(dim=1)[moved]
    share = from_partner.float().mean().item()
    assert share == pytest.approx(1 - lam, abs=0.02)


def test_no_mixing_when_off():
    x = _batch()
    mixed, perm, lam = mix_batch(x)
    assert mixed is x and perm is None and lam == 1.0


def test_classifier_trains_with_mixup_and_cutmix(digits):
    X, y = digits
    plain = tiny(validation_fraction=None).fit(X, y)
    mixed = tiny(validation_fraction=None, mixup_alpha=0.4, cutmix_alpha=1.0).fit(X, y)
    losses = mixed.history_[:, "train_loss"]
    assert np.isfinite(losses).all()
    assert losses != plain.history_[:, "train_loss"]
    with pytest.raises(ValueError, match="mixup_alpha"):
        tiny(mixup_alpha=-1).fit(X, y)


# -- preview ---------------------------------------------------------------------------
def test_augmentation_preview_saves_png(tmp_path, digits):
    image = digits[0][0]
    path = tmp_path / "preview.png"
    grid = augmentation_preview(RandomAugment(degrees=30), image, n_images=6,
                                n_cols=3, path=path, min_tile_size=16)
    assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 1)
    saved = np.asarray(Image.open(path))
    np.testing.assert_array_equal(saved, grid[..., 0])
    first = grid[2:18, 2:18, 0]  # the original, enlarged twice
    np.testing.assert_array_equal(first[::2, ::2], image)
    again = augmentation_preview(RandomAugment(degrees=30), image, n_images=6,
                                 n_cols=3, min_tile_size=16)
    np.testing.assert_array_equal(again, grid)
