"""Shared fixtures: small real images and a classifier that trains in a blink."""

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from skimgcls import CNNClassifier


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits as (images (n, 8, 8) float32 in [0, 1], labels)."""
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target


@pytest.fixture(scope="session")
def small_digits(digits):
    """300 digits images, stratified over the 10 classes."""
    X, y = digits
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), 30, replace=False)
                          for c in range(10)])
    rng.shuffle(idx)
    return X[idx], y[idx]


def digits_sample(n, seed=0):
    """``n`` digits images drawn at random, as (float32 (n, 8, 8) in [0, 1], labels)."""
    digits = load_digits()
    idx = np.random.RandomState(seed).permutation(len(digits.target))[:n]
    return (digits.images[idx] / 16).astype(np.float32), digits.target[idx]


def tiny_classifier(**params):
    """A CNNClassifier small enough for unit tests (well under a second a fit)."""
    # An explicit budget and validation split, not the 'auto' ones: tests of
    # training mechanics want few epochs and valid_* metrics; and no
    # augmentation (augment='auto' augments compact_cnn), which slows the
    # learning that 2 epochs show.
    defaults = dict(module__width=4, max_epochs=2, batch_size=32, lr=0.03,
                    validation_fraction=0.1, random_state=0, precision="fp32",
                    augment=None)
    defaults.update(params)
    return CNNClassifier(**defaults)


@pytest.fixture
def make_tiny():
    """The :func:`tiny_classifier` factory, as a fixture."""
    return tiny_classifier


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """No test downloads weights unasked: torch.hub's downloader fails as offline.

    A test that means to exercise the download path monkeypatches
    ``torch.hub.download_url_to_file`` itself (its patch wins).
    """
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(
            f"the test suite does not download ({url}); save weights to a file "
            "and pass its path, or monkeypatch torch.hub.download_url_to_file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def write_mixed_folder(root, n_per_class=9, classes=("roof", "sky", "tree")):
    """A user's folder: photo crops of mixed sizes and modes, plus two bad files.

    ``root/<label>/<file>`` from crops of scikit-learn's sample photos (a
    different region per class); two thirds of the files 48x48, the others
    of other, mostly non-square sizes; gray and CMYK JPEGs, RGBA and RGB PNGs mixed;
    one corrupt JPEG (a valid header, then garbage) and one empty PNG.
    Returns the paths of the two bad files.
    """
    from pathlib import Path

    from sklearn.datasets import load_sample_images

    root = Path(root)
    photo = load_sample_images().images[0]
    rng = np.random.default_rng(0)
    for k, label in enumerate(classes):
        folder = root / label
        folder.mkdir(parents=True)
        top, left = 40 + 120 * k, 40 + 150 * k
        for i in range(n_per_class):
            h, w = (48, 48) if i % 5 < 3 else rng.integers(24, 72, size=2)
            y0, x0 = top + rng.integers(0, 30), left + rng.integers(0, 30)
            image = Image.fromarray(photo[y0:y0 + h, x0:x0 + w])
            kind = i % 4
            if kind == 0:
                image.convert("L").save(folder / f"{i:02d}.jpg")
            elif kind == 1:
                image.convert("CMYK").save(folder / f"{i:02d}.jpg")
            elif kind == 2:
                image.convert("RGBA").save(folder / f"{i:02d}.png")
            else:
                image.save(folder / f"{i:02d}.png")
    corrupt, empty = root / classes[0] / "corrupt.jpg", root / classes[1] / "empty.png"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    empty.write_bytes(b"")
    return corrupt, empty
