"""Successive halving and Hyperband against an exhaustive grid search.

Both searches look at the same candidates (a grid of learning rates and
batch sizes) of ``CNNClassifier`` on scikit-learn's 8x8 digits, with the same
3-fold cross-validation:

* ``GridSearchCV`` trains every candidate for ``--epochs`` epochs;
* ``HalvingRandomSearchCV(resource='max_epochs', factor=3)`` trains all of
  them for a few epochs, keeps the best third, trains those three times
  longer (from scratch: the one-cycle schedule spans each fit), and so on up
  to ``--epochs``; ``n_candidates`` is the size of the grid, so it samples
  every candidate once.

Reported per search: wall time of ``fit`` (refit included), epochs trained
in all (sum over every fit of every fold), best mean CV accuracy, the best
candidate, and the accuracy of the refitted best model on held-out test
images. Fits run one after the other (``n_jobs=1``), each on one torch
thread. Run::

    PYTHONPATH=. python bench/bench_search.py              # ~3 min on 2 busy cores
    PYTHONPATH=. python bench/bench_search.py --quick      # smoke run, no files

Results go to ``bench/results/search.md``, ``search.json`` and ``search.rst``
(the table of the model selection guide).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (GridSearchCV, HalvingRandomSearchCV,
                                     train_test_split)

import skimgcls
from skimgcls import CNNClassifier

RESULTS = Path(__file__).parent / "results"
GRID = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "batch_size": [16, 32, 64]}
QUICK_GRID = {"lr": [1e-3, 3e-2], "batch_size": [32]}


def digits(seed=0):
    """Digits as float32 (n, 8, 8) in [0, 1]: 80 % for the searches, 20 % test."""
    data = load_digits()
    X = (data.images / 16).astype(np.float32)
    return train_test_split(X, data.target, test_size=0.2, stratify=data.target,
                            random_state=seed)


def estimator(epochs):
    return CNNClassifier(module__width=8, max_epochs=epochs, validation_fraction=None,
                         precision="fp32", n_threads=1, random_state=0)


def searches(grid, epochs):
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    return {
        "GridSearchCV": GridSearchCV(estimator(epochs), grid, cv=3),
        "HalvingRandomSearchCV(max_epochs)": HalvingRandomSearchCV(
            estimator(epochs), grid, n_candidates=n_candidates, resource="max_epochs",
            min_resources="exhaust", max_resources=epochs, factor=3, cv=3,
            random_state=0),
    }


class PersistOnCluster:
    """``dask.persist`` sent to the client: the documented workaround for
    dask-ml 2025.1 on dask >= 2025.3 (docs/user_guide/model_selection.rst)."""

    def __init__(self, client):
        self.client = client

    def __call__(self, graph, keys, **kwargs):
        return self.client.get(graph, keys, **kwargs)

    def persist(self, collections, **kwargs):
        return self.client.persist(collections, **kwargs)


def hyperband(grid, epochs, X_train, y_train, X_test, y_test):
    """dask-ml's HyperbandSearchCV over the same grid on a local Dask cluster.

    It trains through ``partial_fit`` (one epoch a call, constant ``lr``) up to
    ``epochs`` calls, scores on its own held-out quarter (not 3-fold CV) and
    does not refit: its best model is the one trained longest among the best.
    """
    try:
        import dask
        import distributed
        from dask_ml.model_selection import HyperbandSearchCV
    except ImportError as exc:
        print(f"HyperbandSearchCV skipped: {exc} (pip install 'skimgcls[dask-ml]')")
        return None
    n = len(X_train)
    clf = CNNClassifier(module__width=8, image_shape=(8, 8), validation_fraction=None,
                        precision="fp32", n_threads=1, random_state=0)
    search = HyperbandSearchCV(clf, grid, max_iter=epochs, test_size=0.25,
                               random_state=0)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client, \
            dask.config.set(scheduler=PersistOnCluster(client)):
        start = time.perf_counter()
        search.fit(X_train.reshape(n, -1), y_train, classes=np.arange(10))
        seconds = time.perf_counter() - start
    calls = np.asarray(search.cv_results_["partial_fit_calls"])
    return dict(
        search="HyperbandSearchCV (dask-ml, partial_fit)", seconds=round(seconds, 1),
        candidates=int(search.metadata_["n_models"]),
        # epochs over the 3/4 training part, in all models
        epochs_trained=int(calls.sum()),
        best_cv_accuracy=round(float(search.best_score_), 4),
        best_params=dict(search.best_params_),
        test_accuracy=round(float(search.best_estimator_.score(
            X_test.reshape(len(X_test), -1), y_test)), 4),
        n_resources=sorted({int(c) for c in calls}),
    )


def epochs_trained(search, epochs):
    """Epochs over the training folds, summed over all fits, refit included."""
    results = search.cv_results_
    per_fit = results.get("n_resources", np.full(len(results["params"]), epochs))
    return int(np.sum(per_fit) * search.n_splits_ + search.best_estimator_.max_epochs)


def run(grid, epochs):
    X_train, X_test, y_train, y_test = digits()
    rows = []
    for name, search in searches(grid, epochs).items():
        start = time.perf_counter()
        search.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        best = search.best_params_
        rows.append(dict(
            search=name, seconds=round(seconds, 1),
            candidates=len(search.cv_results_["params"]),
            epochs_trained=epochs_trained(search, epochs),
            best_cv_accuracy=round(float(search.best_score_), 4),
            best_params={k: v for k, v in best.items()},
            test_accuracy=round(float(search.score(X_test, y_test)), 4),
            n_resources=[int(r) for r in getattr(search, "n_resources_", [epochs])],
        ))
        print(f"{name}: {seconds:.1f} s, best CV {search.best_score_:.4f}, "
              f"test {rows[-1]['test_accuracy']:.4f}", flush=True)
    row = hyperband(grid, epochs, X_train, y_train, X_test, y_test)
    if row is not None:
        rows.append(row)
        print(f"{row['search']}: {row['seconds']:.1f} s, best validation "
              f"{row['best_cv_accuracy']:.4f}, test {row['test_accuracy']:.4f}", flush=True)
    return rows, dict(train=len(X_train), test=len(X_test))


def environment():
    return dict(
        skimgcls=skimgcls.__version__, torch=torch.__version__,
        sklearn=sklearn.__version__, python=platform.python_version(),
        cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
        load_average=[round(x, 1) for x in os.getloadavg()],
    )


def table(rows):
    lines = ["| search | wall time (s) | vs grid | candidate fits (x 3 folds) | epochs trained "
             "| best mean CV accuracy | best candidate | test accuracy |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    grid_seconds = rows[0]["seconds"]
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in sorted(row["best_params"].items()))
        lines.append(
            f"| {row['search']} | {row['seconds']:.1f} | {row['seconds'] / grid_seconds:.2f} "
            f"| {row['candidates']} | {row['epochs_trained']} "
            f"| {row['best_cv_accuracy']:.4f} | {params} | {row['test_accuracy']:.4f} |")
    return "\n".join(lines)


def write(rows, sizes, env, args):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(
        dict(rows=rows, sizes=sizes, environment=env, grid=GRID, epochs=args.epochs),
        indent=2) + "\n")
    halving = rows[1]["n_resources"]
    text = f"""# Successive halving and Hyperband vs grid search

`PYTHONPATH=. python bench/bench_search.py` (scikit-learn digits, 8x8: {sizes['train']} images
searched with 3-fold CV, {sizes['test']} held out for the test accuracy;
`CNNClassifier(module__width=8, validation_fraction=None, precision='fp32', n_threads=1,
random_state=0)`; grid {GRID} = {rows[0]['candidates']} candidates; GridSearchCV trains each
for {args.epochs} epochs; HalvingRandomSearchCV(resource='max_epochs', factor=3) trains for
{', '.join(map(str, halving))} epochs in its successive rounds; fits one after the other).

skimgcls {env['skimgcls']}, torch {env['torch']}, scikit-learn {env['sklearn']},
{env['cores']} cores; load average at the end {tuple(env['load_average'])}.

{table(rows)}

"epochs trained" counts passes over a training fold (2/3 of the images) in every fit, plus
the final refit on all of them. HyperbandSearchCV (dask-ml, on a one-worker local Dask
cluster, through the documented `dask.persist` workaround) differs in kind: it trains
through `partial_fit` (one epoch per call, constant `lr`, no one-cycle schedule) on 3/4 of
the images, scores on the remaining quarter instead of 3-fold CV (its "best mean CV
accuracy" is that single validation score), runs up to {args.epochs} calls per model and
does not refit; its epochs are passes over that 3/4. Other jobs shared the cores, so the
times are noisy; the epoch counts are exact.
"""
    (RESULTS / "search.md").write_text(text)
    (RESULTS / "search.rst").write_text(rst_table(rows))
    print(f"wrote {RESULTS / 'search.md'} and search.rst")


def rst_table(rows):
    """The table for the user guide (docs/user_guide/model_selection.rst)."""
    header = ["search", "wall time (s)", "vs grid", "epochs trained",
              "best mean CV accuracy", "test accuracy"]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    grid_seconds = rows[0]["seconds"]
    for cells in [header] + [
            [row["search"], f"{row['seconds']:.1f}", f"{row['seconds'] / grid_seconds:.2f}",
             str(row["epochs_trained"]), f"{row['best_cv_accuracy']:.4f}",
             f"{row['test_accuracy']:.4f}"] for row in rows]:
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" for cell in cells[1:]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9,
                        help="epochs of each grid-search fit, the halving's maximum")
    parser.add_argument("--quick", action="store_true",
                        help="2 candidates, 3 epochs, no files written")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 3
    rows, sizes = run(QUICK_GRID if args.quick else GRID, args.epochs)
    print()
    print(table(rows))
    if not args.quick:
        write(rows, sizes, environment(), args)
    return rows


if __name__ == "__main__":
    main()
