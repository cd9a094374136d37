"""Hyperparameter searches on a real Dask cluster through joblib's dask backend."""

import os
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

import skimgcls
from skimgcls import CNNClassifier

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    digits = load_digits()
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(digits.target))[:160]
    return (digits.images[idx] / 16).astype(np.float32), digits.target[idx]


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (1 thread each) on this machine.

    Workers are fresh processes: they must import the same skimgcls as the
    tests, installed or not, so its folder goes first on their PYTHONPATH.
    """
    root = str(Path(skimgcls.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join([root] + [p for p in
                                           [os.environ.get("PYTHONPATH")] if p])
    env = {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            worker_dashboard_address=None, env=env, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            yield client
    finally:
        # The nanny exports OMP_NUM_THREADS=1 & co. into *this* process's
        # environment; later subprocesses of the suite must not inherit it.
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def one_thread():
    """Same torch thread count as the workers, so the fits match bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**params):
    defaults = dict(module__width=4, max_epochs=1, batch_size=32, random_state=0,
                    precision="fp32", validation_fraction=None)
    defaults.update(params)
    return CNNClassifier(**defaults)


def _same_results(on_dask, local):
    assert on_dask.best_params_ == local.best_params_
    for key in ("mean_test_score", "split0_test_score", "split1_test_score",
                "params"):
        np.testing.assert_array_equal(on_dask.cv_results_[key],
                                      local.cv_results_[key])
    assert on_dask.best_score_ == local.best_score_


def test_workers_import_this_skimgcls(client):
    files = client.run(lambda: __import__("skimgcls").__file__)
    assert len(files) == 2 and set(files.values()) == {skimgcls.__file__}
    pids = client.run(os.getpid)
    assert os.getpid() not in pids.values()


def test_grid_search_on_dask_matches_local(client, data, one_thread):
    X, y = data
    grid = {"lr": [0.003, 0.03], "module__width": [4, 8]}
    local = GridSearchCV(tiny(), grid, cv=2, n_jobs=1).fit(X, y)
    with distributed.get_task_stream(client) as tasks, \
            joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(tiny(), grid, cv=2, n_jobs=-1).fit(X, y)
    _same_results(on_dask, local)
    # the 8 fits really ran on the cluster, spread over both workers
    assert len(tasks.data) >= 8
    assert len({task["worker"] for task in tasks.data}) == 2
    np.testing.assert_array_equal(on_dask.predict(X), local.predict(X))


def test_randomized_search_on_dask_matches_local(client, data, one_thread):
    X, y = data
    distributions = {"lr": [0.001, 0.003, 0.01, 0.03], "batch_size": [16, 32]}
    kwargs = dict(n_iter=2, cv=2, random_state=0)
    local = RandomizedSearchCV(tiny(), distributions, n_jobs=1, **kwargs).fit(X, y)
    with joblib.parallel_backend("dask"):
        on_dask = RandomizedSearchCV(tiny(), distributions, n_jobs=-1,
                                     **kwargs).fit(X, y)
    _same_results(on_dask, local)
