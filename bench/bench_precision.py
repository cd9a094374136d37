"""bf16 autocast against fp32 when training on a CPU, per network.

``precision='auto'`` trains in bf16 autocast where the CPU computes bf16
natively (AVX-512 BF16, AMX). That pays for dense convolutions; depthwise ones
(EfficientNet, MobileNet) run their bf16 backward pass slower than fp32 on
such CPUs. This measures whole ``CNNClassifier`` fits, as the recipe
selection trains them, with ``precision='bf16'`` and ``'fp32'``, everything
else equal (same data, seed, steps, augmentation):

* ``fine_tune``: the selection's fine-tuning recipe (EfficientNet-Lite0 from
  its pip-installed ImageNet weights, 128 px, batch 8, 100 steps, BatchNorm
  frozen, probe head first) on the 210 training crops of
  ``bench/accuracy.py``'s ``photos_rgb48_30``;
* ``compact_cnn``: ``CNNClassifier(module='compact_cnn')`` with its ``'auto'``
  budget and augmentation on the 1,000 training images of ``mnist_rgb64``.

Only training parts are loaded. Variants run round-robin, ``--repeats``
times, in this process; medians are reported, with the fp32 / bf16 ratio of
the fit seconds (below 1: fp32 is faster).

Predicting is timed too: after each fit, ``predict_proba`` of the training
images with the forward pass in each precision (``set_params(precision=...)``,
which ``predict`` reads; the weights trained in either), with the share of
images whose predicted class is the same in both. The fine-tuning recipe
predicts with two networks, its own at 128 px and its frozen partner at 224
px. (``precision='auto'`` trains it in fp32 and predicts in bf16 on a CPU
with native bf16.)

Run:  PYTHONPATH=. python bench/bench_precision.py [--threads 2]
Writes bench/results/precision.md and bench/results/precision.json.
Not part of the test suite.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results"
PRECISIONS = ("bf16", "fp32")


def workloads():
    """``name -> (X, y, CNNClassifier parameters)``."""
    import accuracy as acc

    from skimgcls._selection import FINE_TUNE_BATCH, FINE_TUNE_STEPS, fine_tune_recipe

    X_photo, y_photo, *_ = acc.photos_split(30, 48, False)
    recipe = fine_tune_recipe(X_photo.shape[1:])
    epochs = max(1, math.ceil(FINE_TUNE_STEPS / math.ceil(len(X_photo) / FINE_TUNE_BATCH)))
    X_rgb, y_rgb, *_ = acc.mnist_rgb_split(64, 1000, 1000)
    return {
        "fine_tune (EfficientNet-Lite0, 128 px, batch 8)": (
            X_photo, y_photo, {**recipe.params, "max_epochs": epochs,
                               "validation_fraction": None}),
        "compact_cnn (64 px, batch 32, 'auto' budget)": (
            X_rgb, y_rgb, {"module": "compact_cnn", "pretrained": False}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from skimgcls import CNNClassifier, __version__

    loads = workloads()
    seconds = {(name, p): [] for name in loads for p in PRECISIONS}
    predict_seconds = {(name, p): [] for name in loads for p in PRECISIONS}
    agreement = {name: [] for name in loads}
    steps = {}
    for _ in range(args.repeats):
        for name, (X, y, params) in loads.items():
            for precision in PRECISIONS:
                clf = CNNClassifier(**params, precision=precision, random_state=0)
                start = time.perf_counter()
                clf.fit(X, y)
                seconds[name, precision].append(time.perf_counter() - start)
                steps[name] = len(clf.history_) * math.ceil(len(X) / clf.batch_size_)
                print(f"{name} {precision}: {seconds[name, precision][-1]:.1f} s",
                      flush=True)
                clf.predict_proba(X[:8])  # warm-up
                labels = {}
                for predict_precision in PRECISIONS:
                    clf.set_params(precision=predict_precision)
                    start = time.perf_counter()
                    labels[predict_precision] = clf.predict_proba(X).argmax(1)
                    predict_seconds[name, predict_precision].append(
                        time.perf_counter() - start)
                agreement[name].append(float((labels["bf16"] == labels["fp32"]).mean()))

    rows = []
    for name in loads:
        med = {p: statistics.median(seconds[name, p]) for p in PRECISIONS}
        pred = {p: statistics.median(predict_seconds[name, p]) for p in PRECISIONS}
        rows.append({"workload": name, "steps": steps[name],
                     **{f"{p}_s": med[p] for p in PRECISIONS},
                     **{f"{p}_runs": seconds[name, p] for p in PRECISIONS},
                     "fp32_over_bf16": med["fp32"] / med["bf16"],
                     "n_predict": len(loads[name][0]),
                     **{f"predict_{p}_s": pred[p] for p in PRECISIONS},
                     **{f"predict_{p}_runs": predict_seconds[name, p] for p in PRECISIONS},
                     "predict_fp32_over_bf16": pred["fp32"] / pred["bf16"],
                     "same_class": min(agreement[name])})
    meta = {"machine": f"{platform.processor() or platform.machine()} "
                       f"({torch.get_num_threads()} threads, {platform.system()})",
            "torch": torch.__version__, "skimgcls": __version__,
            "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "precision.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                       indent=1))
    lines = ["# bf16 autocast against fp32 when training on a CPU", "",
             f"`python bench/bench_precision.py --threads {args.threads}`: {meta['machine']}, "
             f"torch {meta['torch']}, skimgcls {meta['skimgcls']}; whole `CNNClassifier` "
             f"fits, medians of {args.repeats} round-robin repeats in one process (each "
             "run in brackets).", "",
             "| workload | steps | bf16 fit s | fp32 fit s | fp32 / bf16 |",
             "|---|---|---|---|---|"]
    for r in rows:
        runs = {p: ", ".join(f"{s:.1f}" for s in r[f"{p}_runs"]) for p in PRECISIONS}
        lines.append(f"| {r['workload']} | {r['steps']} | {r['bf16_s']:.1f} ({runs['bf16']}) "
                     f"| {r['fp32_s']:.1f} ({runs['fp32']}) | {r['fp32_over_bf16']:.2f}x |")
    lines += ["", "Predicting the training images (`predict_proba`, after each fit: "
              f"{2 * args.repeats} runs per precision; same class: the lowest share of "
              "images whose predicted class is the same in both):", "",
              "| workload | images | bf16 predict s | fp32 predict s | fp32 / bf16 "
              "| same class |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['n_predict']} | {r['predict_bf16_s']:.2f} "
                     f"| {r['predict_fp32_s']:.2f} | {r['predict_fp32_over_bf16']:.2f}x "
                     f"| {100 * r['same_class']:.1f} % |")
    (RESULTS / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
