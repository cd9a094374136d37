"""One ``random_state`` seeds everything a fit draws from."""

from contextlib import contextmanager

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["seeded"]


@contextmanager
def seeded(random_state):
    """Seed torch from ``random_state`` for the duration of a ``with`` block.

    The global torch RNG state (CPU, and CUDA when available) is saved and
    restored, so fitting an estimator does not change the user's random
    stream. Yields a :class:`numpy.random.RandomState` seeded from the same
    draw, for NumPy-side randomness (splits).

    Parameters
    ----------
    random_state : int, RandomState instance or None
        As in scikit-learn. None draws a fresh seed.
    """
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield np.random.RandomState(seed)
