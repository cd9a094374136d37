"""Adaptive hyperparameter searches over CNNClassifier.

scikit-learn's successive halving (over epochs and over images), Optuna's
``OptunaSearchCV`` (with and without pruning through ``partial_fit``) and
dask-ml's ``HyperbandSearchCV`` on a local Dask cluster.
"""

import numpy as np
import pytest
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

from skimgcls import CNNClassifier

from .conftest import digits_sample

#: Learning rates that cannot learn anything in a few epochs, and ones that do.
HOPELESS_LR, GOOD_LR = 1e-6, 0.03


@pytest.fixture(scope="module")
def data():
    return digits_sample(400)


def tiny(**params):
    defaults = dict(module__width=8, max_epochs=2, batch_size=16, lr=GOOD_LR,
                    random_state=0, precision="fp32", validation_fraction=None,
                    n_threads=1, augment=None)
    defaults.update(params)
    return CNNClassifier(**defaults)


def classic(**params):
    """The classic MNIST network: quick, and it learns something in one epoch."""
    return CNNClassifier("simple_cnn", batch_size=16, lr=GOOD_LR, random_state=0,
                         precision="fp32", validation_fraction=None, n_threads=1,
                         **params)


# -- scikit-learn's successive halving ----------------------------------------

def test_halving_over_max_epochs_retrains_survivors_longer(data):
    X, y = data
    search = HalvingGridSearchCV(
        classic(), {"lr": [HOPELESS_LR, 2 * HOPELESS_LR, 0.01, GOOD_LR]},
        resource="max_epochs", min_resources=1, max_resources=4, factor=2, cv=2,
    ).fit(X, y)
    assert search.n_resources_ == [1, 2, 4]
    assert search.n_candidates_ == [4, 2, 1]
    results = search.cv_results_
    survivors = {results["params"][i]["lr"]
                 for i in np.flatnonzero(results["iter"] == 1)}
    assert survivors == {0.01, GOOD_LR}
    # Each round trains from scratch for its number of epochs.
    assert results["param_max_epochs"].tolist() == [1, 1, 1, 1, 2, 2, 4]
    best = search.best_estimator_
    assert best.max_epochs == 4 and len(best.history_) == 4
    assert search.best_params_["max_epochs"] == 4


def test_halving_over_images_ends_on_all_of_them(data):
    X, y = data
    search = HalvingRandomSearchCV(
        tiny(max_epochs=4), {"lr": [HOPELESS_LR, GOOD_LR]}, n_candidates=2,
        min_resources=200, factor=2, cv=2, random_state=0,
    ).fit(X, y)
    assert search.n_resources_ == [200, 400]
    assert search.best_params_ == {"lr": GOOD_LR}
    assert search.best_score_ > 0.5
    assert search.best_estimator_.image_shape_ == (8, 8, 1)


# -- Optuna ---------------------------------------------------------------------

def quiet_optuna(test):
    """Silence two warnings of optuna-integration: ``OptunaSearchCV`` is marked
    experimental, and it reports scores through optuna's deprecated terminator."""
    for mark in (
        pytest.mark.filterwarnings("ignore:OptunaSearchCV is experimental"),
        pytest.mark.filterwarnings("ignore:.*optuna.terminator.*:FutureWarning"),
    ):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def optuna():
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("optuna_integration")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@quiet_optuna
def test_optuna_search_sets_named_and_routed_parameters(optuna, data):
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)
    from optuna_integration import OptunaSearchCV

    X, y = data
    space = {
        "lr": FloatDistribution(1e-3, 1e-1, log=True),
        "max_epochs": IntDistribution(1, 3),
        "batch_size": CategoricalDistribution([16, 32]),
        "module__width": CategoricalDistribution([4, 8]),
    }
    search = OptunaSearchCV(tiny(), space, n_trials=3, cv=2, random_state=0).fit(X, y)
    assert len(search.trials_) == 3
    best = search.best_estimator_
    for name, value in search.best_params_.items():
        assert best.get_params()[name] == value
    assert len(best.history_) == search.best_params_["max_epochs"]
    assert best.module_.features[0].out_channels == search.best_params_["module__width"]
    assert search.best_score_ == max(t.value for t in search.trials_)


@quiet_optuna
def test_optuna_pruning_trains_one_epoch_per_step(optuna, data):
    from optuna.distributions import CategoricalDistribution
    from optuna_integration import OptunaSearchCV

    X, y = data
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.GridSampler({"lr": [GOOD_LR, HOPELESS_LR]}),
        # Stop a trial whose accuracy is still at chance after its 2nd epoch.
        pruner=optuna.pruners.ThresholdPruner(lower=0.2, n_warmup_steps=1),
    )
    search = OptunaSearchCV(
        tiny(lr_schedule=None, max_epochs=4),
        {"lr": CategoricalDistribution([GOOD_LR, HOPELESS_LR])},
        n_trials=2, cv=2, enable_pruning=True, max_iter=4, study=study,
    ).fit(X, y)
    states = {t.params["lr"]: t.state for t in search.trials_}
    assert states == {GOOD_LR: optuna.trial.TrialState.COMPLETE,
                      HOPELESS_LR: optuna.trial.TrialState.PRUNED}
    by_lr = {t.params["lr"]: t.intermediate_values for t in search.trials_}
    assert sorted(by_lr[HOPELESS_LR]) == [0, 1]
    curve = by_lr[GOOD_LR]
    assert sorted(curve) == [0, 1, 2, 3]
    # Each partial_fit call continued the same network: accuracy grew.
    assert curve[3] > curve[0] + 0.2
    assert search.best_params_ == {"lr": GOOD_LR}


# -- dask-ml's Hyperband ---------------------------------------------------------

class PersistOnCluster:
    """Scheduler for ``dask.config.set(scheduler=...)`` that sends ``dask.persist`` to ``client``.

    The workaround of the user guide (``docs/user_guide/model_selection.rst``)
    for dask-ml 2025.1 with dask >= 2025.3: dask-ml calls ``dask.persist``
    inside the client's event loop, where dask refuses the client.
    """

    def __init__(self, client):
        self.client = client

    def __call__(self, graph, keys, **kwargs):
        return self.client.get(graph, keys, **kwargs)

    def persist(self, collections, **kwargs):
        return self.client.persist(collections, **kwargs)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask_ml")
    # Threads in this process: no worker start-up, and the workers import
    # this very skimgcls.
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _hyperband(data, **params):
    import dask.array as da
    from dask_ml.model_selection import HyperbandSearchCV
    from scipy.stats import loguniform

    X, y = data
    # dask-ml splits 2-D arrays only: flat rows, read back with image_shape.
    X = da.from_array(X.reshape(len(X), -1), chunks=(len(X), 64))
    y = da.from_array(y, chunks=len(y))
    search = HyperbandSearchCV(
        tiny(image_shape=(8, 8), lr_schedule=None),
        {"lr": loguniform(3e-3, 1e-1)}, max_iter=3, test_size=0.25,
        random_state=0, **params)
    return search.fit(X, y, classes=np.arange(10))


def test_hyperband_on_a_local_cluster(client, data):
    import dask

    with dask.config.set(scheduler=PersistOnCluster(client)):
        search = _hyperband(data)
    results = search.cv_results_
    assert max(results["partial_fit_calls"]) == 3
    assert search.metadata_["n_models"] == len(results["params"]) > 2
    best = search.best_estimator_
    # One epoch per partial_fit call, on the same network.
    best_calls = results["partial_fit_calls"][search.best_index_]
    assert len(best.history_) == best_calls
    assert search.best_score_ > 0.5
    assert best.predict(data[0][:5].reshape(5, -1)).shape == (5,)


def test_hyperband_needs_the_workaround_on_recent_dask(client, data):
    """dask-ml 2025.1 calls ``dask.persist`` inside the client's event loop,
    which dask >= 2025.3 refuses (dask-ml issue 1016). When this test fails, a
    fixed dask-ml came out: update docs/user_guide/model_selection.rst."""
    import dask

    if tuple(int(p) for p in dask.__version__.split(".")[:2]) < (2025, 3):
        pytest.skip("dask < 2025.3 runs HyperbandSearchCV without the workaround")
    with pytest.raises(RuntimeError, match="asynchronous Client in a synchronous context"):
        _hyperband(data)
