"""Exploration for issue #11 (may be deleted): candidate 'auto' training rules,
BatchNorm recalibration, and class_weight on the 10:1 imbalanced MNIST.

Every rule is expressed through public parameters of ``CNNClassifier``; each
fit is scored twice: as is, and after recomputing the BatchNorm running
statistics over the training images with the final weights
(``torch.optim.swa_utils.update_bn``). One JSON line per fit goes to ``--out``.

    python bench/_explore_defaults.py --threads 1 --out /tmp/explore.jsonl
"""

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch.optim.swa_utils import update_bn

from skimgcls import CNNClassifier

_spec = importlib.util.spec_from_file_location("skimgcls_bench_accuracy",
                                               Path(__file__).parent / "accuracy.py")
acc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(acc)

DATA = {
    "digits_5": lambda: acc.digits_split(5),
    "digits_20": lambda: acc.digits_split(20),
    "mnist_50": lambda: acc.mnist_split(50),
    "mnist_500": lambda: acc.mnist_split(500),
    "mnist_imbalanced": lambda: acc.imbalanced_split(300),
}


def batch_rule(n, low=8, high=32, div=8):
    """min(high, max(low, n // div)) rounded down to a power of two."""
    b = min(high, max(low, n // div))
    return 2 ** int(math.log2(b))


def steps_rule(n, steps, batch, min_epochs=8):
    """Epochs for about ``steps`` optimizer steps, at least ``min_epochs``."""
    per_epoch = math.ceil(n / batch)
    return max(min_epochs, math.ceil(steps / per_epoch))


def rules(n):
    """name -> CNNClassifier params, resolved for n training images."""
    out = {"current": {}, "noval": {"validation_fraction": None}}
    b8 = batch_rule(n)
    for steps in (250, 500, 1000):
        out[f"S{steps}_b{b8}"] = {"validation_fraction": None, "batch_size": b8,
                                 "max_epochs": steps_rule(n, steps, b8)}
    out[f"S1000_b{b8}_lrsqrt"] = {**out[f"S1000_b{b8}"],
                                  "lr": 5e-3 * math.sqrt(b8 / 32)}
    out["S1000_b32"] = {"validation_fraction": None, "batch_size": 32,
                        "max_epochs": steps_rule(n, 1000, 32)}
    return out


def recalibrate(clf, X):
    """Recompute BatchNorm running statistics over X with the final weights."""
    X = X if X.ndim == 4 else X[..., None]
    loader = [clf.net_.to_model_input(torch.from_numpy(X[i:i + 256]))
              for i in range(0, len(X), 256)]
    bf16 = clf.precision_ == "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        update_bn(loader, clf.module_)
    clf.module_.eval()


def one(name, params, data, seed, metric, extra):
    X_train, y_train, X_test, y_test = data
    clf = CNNClassifier(**params, **extra, random_state=seed)
    row = {"rule": name, "seed": seed, "params": params, **{f"x_{k}": v for k, v in
                                                            extra.items()}}
    start = time.perf_counter()
    try:
        clf.fit(X_train, y_train)
    except ValueError as exc:
        return {**row, "error": str(exc)[:120]}
    row["fit_s"] = time.perf_counter() - start
    batches = [b for e in clf.history_ for b in e["batches"] if "train_batch_size" in b]
    row["epochs"], row["steps"] = len(clf.history_), len(batches)
    row["score"] = float(metric(y_test, clf.predict(X_test)))
    recalibrate(clf, X_train)
    row["score_bn"] = float(metric(y_test, clf.predict(X_test)))
    return row


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--conditions", default="digits_5,digits_20,mnist_50,mnist_500")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rules", default="all")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="/tmp/explore.jsonl")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    with open(args.out, "a") as out:
        for cond in args.conditions.split(","):
            data = DATA[cond]()
            n = len(data[0])
            if cond == "mnist_imbalanced":
                metric = balanced_accuracy_score
                todo = [(name, params, extra) for name, params in
                        [("current", {})] + [(k, v) for k, v in rules(n).items()
                                             if k in args.rules.split(",")
                                             or args.rules == "all" and k == "S1000_b32"]
                        for extra in ({}, {"class_weight": "balanced"})]
            else:
                metric = accuracy_score
                todo = [(k, v, {}) for k, v in rules(n).items()
                        if args.rules == "all" or k in args.rules.split(",")]
            for name, params, extra in todo:
                for seed in seeds:
                    row = {"condition": cond, "n": n,
                           **one(name, params, data, seed, metric, extra)}
                    print(json.dumps(row), flush=True)
                    out.write(json.dumps(row) + "\n")
                    out.flush()


if __name__ == "__main__":
    sys.exit(main())
