"""How much the natural-photo conditions' verdict depends on where the test region lies.

The accuracy suite's photo conditions (``bench/accuracy.py``) train on crops
from the left 55 % of each of 7 photos and test on crops from the right 45 %:
one layout, one crop draw, so its three seeds vary only the networks' random
state (the frozen features are deterministic and show no range at all). The
test part holds 350 crops, but only 7 regions, one per class.

This script repeats each photo condition with the training region on each of
the four sides (``accuracy.LAYOUTS``) and ``--draws`` crop draws per layout
(draw 0 of 'left' is the suite's own split), and scores ``CNNClassifier()``
beside the suite's frozen+LR baseline
(``make_pipeline(BackboneFeatures('efficientnet_lite0'), LogisticRegression())``).
Nothing here chooses a default: it measures how far one layout's gap can be
trusted. Run ``python bench/photo_layouts.py`` (about 15 minutes on 2 CPU cores);
results go to ``bench/results/photo_layouts.{json,md}``.

``--fine-tune`` also trains the ``'fine_tune'`` recipe of ``module='auto'``
(LP-FT + WiSE + ``frozen_ensemble``) as its refit trains it, on the same splits:
issue 18's target "fine-tuning beats frozen features + LR with 30 per class",
over 8 test regions instead of one. Its verdict, set before the first run: on
``photos_rgb48_30`` (the issue's condition) fine-tuning beats frozen+LR when
its mean paired difference over the layouts x draws exceeds its standard
error, trails when it is below minus its standard error, and ties otherwise.
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import accuracy as acc  # noqa: E402

from skimgcls import CNNClassifier  # noqa: E402
from skimgcls._selection import fine_tune_recipe  # noqa: E402

CONDITIONS = {  # name: (per_class, size, gray), as in the suite
    "photos_rgb48_30": (30, 48, False),
    "photos_rgb48_5": (5, 48, False),
    "photos_gray128_30": (30, 128, True),
    "photos_gray128_5": (5, 128, True),
}


def fine_tune(X, random_state):
    """The ``'fine_tune'`` recipe of ``module='auto'``, as its refit trains it."""
    recipe = fine_tune_recipe(X.shape[1:])
    batches = math.ceil(len(X) / recipe.params["batch_size"])
    return CNNClassifier(**recipe.params, max_epochs=max(1, math.ceil(recipe.steps / batches)),
                         random_state=random_state)


def run_one(name, layout, draw, with_fine_tune=False):
    per_class, size, gray = CONDITIONS[name]
    X, y, X_test, y_test = acc.photos_split(per_class, size, gray, layout=layout,
                                            seed=acc.DATA_SEED + draw)
    out = {"condition": name, "layout": layout, "draw": draw}
    clf = CNNClassifier(random_state=draw)
    start = time.perf_counter()
    clf.fit(X, y)
    out["default_fit_s"] = time.perf_counter() - start
    out["default"] = float(np.mean(clf.predict(X_test) == y_test))
    out["recipe"] = clf.recipe_
    model, features = acc.baseline_model("frozen_lr", draw)
    model.fit(features(X), y)
    out["frozen_lr"] = float(np.mean(model.predict(features(X_test)) == y_test))
    if with_fine_tune:
        clf = fine_tune(X, draw)
        start = time.perf_counter()
        clf.fit(X, y)
        out["fine_tune_fit_s"] = time.perf_counter() - start
        out["fine_tune"] = float(np.mean(clf.predict(X_test) == y_test))
    return out


def _layout_table(rows, key, label, last_label, last):
    """Per condition and layout: ``key``'s accuracy against frozen+LR, each draw,
    the mean difference and a last column ``last(rows of the cell)``."""
    lines = [f"| condition | layout | {label} | frozen+LR | difference | {last_label} |",
             "|---|---|---|---|---|---|"]
    for name in CONDITIONS:
        for layout in acc.LAYOUTS:
            part = [r for r in rows if r["condition"] == name and r["layout"] == layout]
            if not part:
                continue
            a = [100 * r[key] for r in part]
            f = [100 * r["frozen_lr"] for r in part]
            lines.append(
                f"| {name} | {layout} | {', '.join(f'{v:.1f}' for v in a)} | "
                f"{', '.join(f'{v:.1f}' for v in f)} | "
                f"{statistics.mean(x - y for x, y in zip(a, f)):+.1f} | {last(part)} |")
    return lines


def summary(rows):
    lines = _layout_table(rows, "default", "CNNClassifier()", "recipes",
                          lambda part: ", ".join(r["recipe"] or "-" for r in part))
    lines += ["", "| condition | CNNClassifier() mean | frozen+LR mean | difference: mean "
              "[min, max] over layouts x draws | default ahead in |", "|---|---|---|---|---|"]
    for name in CONDITIONS:
        part = [r for r in rows if r["condition"] == name]
        if not part:
            continue
        diff = [100 * (r["default"] - r["frozen_lr"]) for r in part]
        lines.append(
            f"| {name} | {100 * statistics.mean(r['default'] for r in part):.1f} | "
            f"{100 * statistics.mean(r['frozen_lr'] for r in part):.1f} | "
            f"{statistics.mean(diff):+.1f} [{min(diff):+.1f}, {max(diff):+.1f}] | "
            f"{sum(v > 0 for v in diff)} of {len(diff)} |")
    tuned = [r for r in rows if "fine_tune" in r]
    if tuned:
        lines += ["", "The `'fine_tune'` recipe (as `module='auto'` refits it) against "
                  "frozen+LR on the same splits: per layout, each draw; then paired over "
                  "layouts x draws, with the verdict set before the run (mean difference "
                  "beyond one standard error).", ""]
        lines += _layout_table(tuned, "fine_tune", "fine_tune", "fit s", lambda part: (
            f"{statistics.median(r['fine_tune_fit_s'] for r in part):.1f}"))
        lines += ["", "| condition | fine_tune mean | frozen+LR mean | difference: mean "
                  "+- SE [min, max] | fine_tune ahead in | verdict |",
                  "|---|---|---|---|---|---|"]
        for name in CONDITIONS:
            part = [r for r in tuned if r["condition"] == name]
            if len(part) < 2:
                continue
            diff = [100 * (r["fine_tune"] - r["frozen_lr"]) for r in part]
            mean, se = statistics.mean(diff), statistics.stdev(diff) / math.sqrt(len(diff))
            verdict = "beats" if mean > se else "trails" if mean < -se else "ties"
            lines.append(
                f"| {name} | {100 * statistics.mean(r['fine_tune'] for r in part):.1f} | "
                f"{100 * statistics.mean(r['frozen_lr'] for r in part):.1f} | "
                f"{mean:+.1f} +- {se:.1f} [{min(diff):+.1f}, {max(diff):+.1f}] | "
                f"{sum(v > 0 for v in diff)} of {len(diff)} | {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2, help="crop draws per layout")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fine-tune", action="store_true",
                        help="also train the 'fine_tune' recipe (issue 18's target)")
    parser.add_argument("--out", default="photo_layouts")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for name in args.conditions.split(","):
        for layout in acc.LAYOUTS:
            for draw in range(args.draws):
                rows.append(run_one(name, layout, draw, args.fine_tune))
                r = rows[-1]
                print(f"{name} {layout} draw {draw}: default {100 * r['default']:.1f} "
                      f"({r['recipe']}, {r['default_fit_s']:.1f} s), frozen+LR "
                      f"{100 * r['frozen_lr']:.1f}"
                      + (f", fine_tune {100 * r['fine_tune']:.1f}" if args.fine_tune else ""),
                      flush=True)
    minutes = (time.perf_counter() - started) / 60
    (acc.RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1))
    h = acc.header()
    text = (f"# Natural-photo conditions over four layouts\n\n{h['date']}: {h['machine']}, "
            f"{h['threads']} torch threads, torch {h['torch']}, skimgcls {h['skimgcls']}; "
            f"{minutes:.1f} min in all.\n\n"
            f"Produced by `python bench/photo_layouts.py --draws {args.draws}"
            f"{' --fine-tune' if args.fine_tune else ''}`. Accuracy in % on "
            "the test region; training crops from the 55 % of each photo on the layout's "
            "side, test crops from the rest; per draw (crop draw d, random_state d). "
            "'left', draw 0 is the suite's split. frozen+LR is the suite's baseline. "
            "No default was chosen from these numbers.\n\n" + summary(rows) + "\n")
    (acc.RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
