"""Pretrained EfficientNet-Lite0 (weights installed with pip) on natural-photo crops.

Measures, with every network connection refused (the weights never download):

* **Frozen features**: ``BackboneFeatures('efficientnet_lite0', input_size=r,
  levels=k)`` + ``LogisticRegression`` at several input sizes ``r``, with the
  network's pooled output alone (``k=1``) and with the pooled outputs of the
  three block stages before it (``k=4``, the ``'frozen_features'`` recipe of
  ``module='auto'``): seconds to embed 400 images, 5-fold cross-validated
  accuracy on the *training* crops and the test accuracy (reported, never
  used to choose).
* **Fine-tuning** (the LP-FT ``'fine_tune'`` recipe of ``module='auto'``)
  beside from-scratch ``compact_cnn`` and frozen features + LR, on 5 and 30
  training crops per class: test accuracy and fit seconds, for several seeds.

The photo crops are ``bench/accuracy.py``'s natural-photo conditions (seven
photos that install with packages, one class each; training crops from the
left part of each photo, test crops from the right part).  Run::

    PYTHONPATH=. python bench/bench_pretrained.py             # ~15 min on 2 cores
    PYTHONPATH=. python bench/bench_pretrained.py --quick     # smoke run

Results go to ``bench/results/pretrained.md`` and ``pretrained.json``.
"""

import argparse
import json
import math
import os
import platform
import socket
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

import skimgcls
from skimgcls import BackboneFeatures, CNNClassifier
from skimgcls._selection import fine_tune_recipe

from accuracy import photos_split  # noqa: E402 - a sibling script of bench/

RESULTS = Path(__file__).parent / "results"


def refuse_network():
    """Make every network connection fail, as on an air-gapped machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by bench_pretrained.py")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def probe(size, seed=0, levels=1):
    return make_pipeline(BackboneFeatures("efficientnet_lite0", input_size=size,
                                          levels=levels),
                         LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def features_section(sizes, per_class, seeds, levels=(1, 4)):
    """Frozen features: embedding speed, CV on training crops, test accuracy.

    The embeddings of each size are computed once (they are deterministic);
    the seeds vary the CV folds and the logistic regression.
    """
    rows = []
    X400 = photos_split(60, 48, gray=False, n_test=1)[0][:400]
    X, y, X_test, y_test = photos_split(per_class, 48, gray=False)
    for size, level in ((s, k) for s in sizes for k in levels):
        features = BackboneFeatures("efficientnet_lite0", input_size=size, levels=level)
        start = time.perf_counter()
        features.fit_transform(X400)
        embed_s = time.perf_counter() - start
        F, F_test = features.transform(X), features.transform(X_test)
        cv, test = [], []
        for seed in seeds:
            folds = StratifiedKFold(5, shuffle=True, random_state=seed)
            linear = LogisticRegression(max_iter=2000, random_state=seed)
            cv.append(cross_val_score(linear, F, y, cv=folds).mean())
            test.append(linear.fit(F, y).score(F_test, y_test))
        rows.append({"size": size, "levels": level, "dim": F.shape[1],
                     "embed_400_s": embed_s, "cv": cv, "test": test})
        print(f"features {size}px, levels={level}: 400 images in {embed_s:.1f} s, CV "
              f"{np.mean(cv):.3f}, test {np.mean(test):.3f}", flush=True)
    return rows


def recipes(quick):
    """The compared recipes: name -> estimator factory(seed, n_images)."""
    def lp_ft(seed, n, **changes):
        # The 'fine_tune' recipe of module='auto', as its refit trains it.
        recipe = fine_tune_recipe((48, 48, 3))
        steps = 4 if quick else recipe.steps
        epochs = max(1, math.ceil(steps / math.ceil(n / recipe.params["batch_size"])))
        return CNNClassifier(**{**recipe.params, **changes}, max_epochs=epochs,
                             random_state=seed)

    return {
        "compact_cnn (from scratch, 'auto' budget)": lambda seed, n: CNNClassifier(
            "compact_cnn", random_state=seed, **({"max_epochs": 2} if quick else {})),
        "frozen lite0 + LR (128 px)": lambda seed, n: probe(128, seed),
        "frozen lite0 + LR (224 px)": lambda seed, n: probe(224, seed),
        "frozen lite0, levels=4 + LR (224 px)": lambda seed, n: probe(224, seed, 4),
        "fine-tune lite0 (LP-FT, 128 px, 100 steps of 8; no WiSE)":
            lambda seed, n: lp_ft(seed, n, wise_alpha=None, frozen_ensemble=False),
        "fine-tune lite0 (LP-FT + wise_alpha=0.5)":
            lambda seed, n: lp_ft(seed, n, frozen_ensemble=False),
        "fine-tune lite0 (the 'fine_tune' recipe: LP-FT + wise_alpha=0.5 "
        "+ frozen_ensemble)": lp_ft,
    }


def recipes_section(per_class_list, seeds, quick):
    rows = []
    for per_class in per_class_list:
        for name, make in recipes(quick).items():
            accs, secs = [], []
            X, y, X_test, y_test = photos_split(per_class, 48, gray=False)
            for seed in seeds:
                start = time.perf_counter()
                est = make(seed, len(X)).fit(X, y)
                secs.append(time.perf_counter() - start)
                accs.append(est.score(X_test, y_test))
            rows.append({"per_class": per_class, "recipe": name, "test": accs,
                         "fit_s": secs})
            print(f"{per_class}/class {name}: test {np.mean(accs):.3f} "
                  f"({min(accs):.3f}-{max(accs):.3f}), fit {np.median(secs):.1f} s",
                  flush=True)
    return rows


def _fmt(values, digits=3):
    return (f"{statistics.mean(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def write(results, out):
    lines = [
        "# Pretrained EfficientNet-Lite0 (pip-installed weights) on photo crops",
        "",
        f"`{results['command']}`: network connections refused; 48x48 RGB crops of "
        "seven photos (bench/accuracy.py's fixed draw), training crops from the left "
        "part of each photo, test crops (50 per class) from the right part; "
        f"estimator and CV-fold seeds {results['seeds']}; mean (min-max).",
        "",
        f"skimgcls {results['skimgcls']}, torch {results['torch']}, "
        f"{results['cpus']} cores, {results['threads']} torch threads; load average "
        f"before {results['load_before']}, after {results['load_after']}.",
        "",
        "## Frozen features + LogisticRegression, by input size",
        "",
        f"{results['features_per_class']} training crops per class. CV: 5-fold on the "
        "training crops (what a size is chosen by); test: the disjoint test crops "
        "(reported, not used to choose).",
        "",
        "`levels`: 1, the network's pooled output; 4, with the pooled outputs of the "
        "three block stages before it (what the `'frozen_features'` recipe of "
        "`module='auto'` uses, chosen on validation crops: "
        "`bench/_explore_defaults.py --experiments levels`).",
        "",
        "| input size | levels | features | embed 400 images (s) | CV accuracy "
        "| test accuracy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["features"]:
        lines.append(f"| {row['size']} | {row['levels']} | {row['dim']} | "
                     f"{row['embed_400_s']:.1f} | {_fmt(row['cv'])} | "
                     f"{_fmt(row['test'])} |")
    lines += ["", "## Recipes: test accuracy and fit seconds", "",
              "One test region per photo: the seeds vary the networks, not the data "
              "(the frozen features + LR rows are deterministic, hence no range). For "
              "the spread over test regions and crop draws, see "
              "`python bench/photo_layouts.py --draws 2 --fine-tune` "
              "(`photo_layouts_fine_tune.md`: 4 layouts x 2 draws).", "",
              "| crops per class | recipe | test accuracy | fit s (median) |",
              "|---:|---|---:|---:|"]
    for row in results["recipes"]:
        lines.append(f"| {row['per_class']} | {row['recipe']} | {_fmt(row['test'])} | "
                     f"{statistics.median(row['fit_s']):.1f} |")
    (out / "pretrained.md").write_text("\n".join(lines) + "\n")
    (out / "pretrained.json").write_text(json.dumps(results, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, no files")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list: features,recipes")
    args = parser.parse_args()
    refuse_network()
    seeds = list(range(1 if args.quick else args.seeds))
    skip = set(filter(None, args.skip.split(",")))
    load_before = os.getloadavg()
    results = {
        "command": "python bench/bench_pretrained.py" + (" --quick" if args.quick else ""),
        "skimgcls": skimgcls.__version__, "torch": torch.__version__,
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "seeds": seeds,
        "features_per_class": 30,
        "load_before": [round(x, 2) for x in load_before],
    }
    sizes = [64, 128] if args.quick else [96, 128, 160, 224]
    results["features"] = ([] if "features" in skip else
                           features_section(sizes, 30, seeds))
    results["recipes"] = ([] if "recipes" in skip else
                          recipes_section([5, 30], seeds, args.quick))
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if not args.quick:
        write(results, RESULTS)


if __name__ == "__main__":
    main()
