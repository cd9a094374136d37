"""Determinism: one random_state gives bit-identical predictions on the CPU."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skimgcls import CNNClassifier

# Bit-identical results need the same torch thread count in both processes.
PARAMS = dict(module__width=4, max_epochs=2, batch_size=32, precision="fp32", n_threads=1,
              device="cpu", random_state=7)

FIT = textwrap.dedent("""
    import sys
    import numpy as np
    from sklearn.datasets import load_digits
    from skimgcls import CNNClassifier

    X, y = load_digits(return_X_y=True)
    X = (X[:200] / 16).astype(np.float32).reshape(-1, 8, 8)
    clf = CNNClassifier(**{params!r}).fit(X, y[:200])
    np.save(sys.argv[1], clf.predict_proba(X))
""")


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:200] / 16).astype(np.float32).reshape(-1, 8, 8), y[:200]


def test_same_random_state_same_predictions_in_process(data):
    X, y = data
    a = CNNClassifier(**PARAMS).fit(X, y).predict_proba(X)
    np.random.seed(123)  # global seeds do not matter
    b = CNNClassifier(**PARAMS).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = CNNClassifier(**{**PARAMS, "random_state": 8}).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_same_random_state_same_predictions_across_processes(data, tmp_path):
    X, y = data
    here = CNNClassifier(**PARAMS).fit(X, y).predict_proba(X)
    out = tmp_path / "proba.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", FIT.format(params=PARAMS), str(out)],
                   env=env, check=True, timeout=300)
    np.testing.assert_array_equal(np.load(out), here)
