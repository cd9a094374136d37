"""Resource hygiene: memory across repeated fits, thread-safe predict, CUDA memory."""

import gc
import os
import threading

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from skimgcls import CNNClassifier

PARAMS = dict(module__width=4, max_epochs=1, batch_size=32, precision="fp32",
              random_state=0, validation_fraction=None)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:120] / 16).reshape(-1, 8, 8).astype(np.float32), y[:120]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_repeated_fits_do_not_grow_memory(data):
    """50 fits as in a grid search: RSS grows < 10% after the first few."""
    template = CNNClassifier(**PARAMS)
    kept = []
    for i in range(50):
        if i == 5:
            gc.collect()
            baseline = rss_bytes()
        clf = clone(template).set_params(random_state=i).fit(*data)
        kept = [clf.score(*data)]  # drop the previous estimator, keep a score
    assert clf.net_._last_good_ is None  # the roll-back snapshot is dropped
    del clf
    gc.collect()
    final = rss_bytes()
    growth = final / baseline - 1
    print(f"RSS after fit 5: {baseline / 2**20:.1f} MiB, after fit 50: "
          f"{final / 2**20:.1f} MiB, growth {growth:+.2%}")
    assert growth < 0.10, f"RSS grew by {growth:.1%}"
    assert kept


def test_predict_is_thread_safe(data):
    X, y = data
    clf = CNNClassifier(**PARAMS).fit(X, y)
    expected = clf.predict_proba(X)
    n_threads, rounds = 8, 5
    barrier = threading.Barrier(n_threads)
    results, errors = [None] * n_threads, []

    def work(i):
        try:
            barrier.wait()
            results[i] = [clf.predict_proba(X) for _ in range(rounds)]
        except Exception as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for per_thread in results:
        for proba in per_thread:
            np.testing.assert_array_equal(proba, expected)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[expected.argmax(1)])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_memory_is_released_between_fits(data):
    def allocated():
        gc.collect()
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    before = allocated()
    clf = CNNClassifier(device="cuda", **{**PARAMS, "module__width": 16})
    after_fit = []
    for _ in range(5):
        clf.fit(*data)
        after_fit.append(allocated())
    # Refitting replaces the network: memory stays that of one fitted model.
    assert max(after_fit) <= after_fit[0] + 1024 ** 2
    del clf
    assert allocated() <= before + 1024  # everything freed with the estimator
