"""Shared fixtures: small real images and a classifier that trains in a blink."""

import urllib.error

import numpy as np
import pytest
import torch
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
    # training mechanics want few epochs and valid_* metrics.
    defaults = dict(module__width=4, max_epochs=2, batch_size=32, lr=0.03,
                    validation_fraction=0.1, random_state=0, precision="fp32")
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
