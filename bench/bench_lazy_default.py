"""Fit time of the lazy route with default settings against in-memory arrays.

Writes a folder of ``--n-images`` small photo crops (scikit-learn's sample
photos, ``--n-classes`` regions, one class per subfolder; 60 % of 64x64 and
40 % of other sizes from 40 to 119 pixels; gray and CMYK JPEGs, RGBA and RGB
PNGs mixed) and fits ``CNNClassifier()`` with its default parameters on it
in three ways:

* ``in_memory``: ``load_image_folder(root, size=64)`` decodes the files into
  an array, then ``fit(X, y)`` (the reference);
* ``lazy``: ``load_image_folder(root, lazy=True)`` and
  ``CNNClassifier(reader=ImageReader(size=64)).fit(paths, y)``, all defaults:
  ``fit`` decodes every file once and keeps the images in memory
  (``keep_in_memory='auto'``, within 2 GiB);
* ``lazy_per_batch``: the same with ``ImageReader(keep_in_memory=False)``:
  every epoch decodes every file again in DataLoader workers (the behaviour
  before issue 21).

``load + fit`` is what a user waits for (the decoding of ``in_memory`` happens
in the loader, that of ``lazy`` inside ``fit``). Variants run round-robin,
``--repeats`` times, in this process; medians are reported. Target (issue 21,
item 3): ``lazy`` within 1.3x of ``in_memory``.

Run:  PYTHONPATH=. python bench/bench_lazy_default.py [--n-images 400]
Writes bench/results/lazy_default.md and bench/results/lazy_default.json.
Not part of the test suite.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("in_memory", "lazy", "lazy_per_batch")


def write_folder(root, n_images, n_classes, seed=0):
    """Photo crops of mixed sizes and modes, one region of a photo per class."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        k = i % n_classes
        photo = photos[k % 2]
        top = 30 + 90 * (k // 2) % 280
        left = 30 + 170 * (k // 2) % 480
        h, w = (64, 64) if rng.random() < 0.6 else rng.integers(40, 120, size=2)
        y0, x0 = top + rng.integers(0, 25), left + rng.integers(0, 25)
        image = Image.fromarray(photo[y0:y0 + h, x0:x0 + w])
        folder = root / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = i % 4
        if kind == 0:
            image.convert("L").save(folder / f"{i:04d}.jpg")
        elif kind == 1:
            image.convert("CMYK").save(folder / f"{i:04d}.jpg")
        elif kind == 2:
            image.convert("RGBA").save(folder / f"{i:04d}.png")
        else:
            image.save(folder / f"{i:04d}.png")


def cpu_seconds():
    """CPU time of this process and its finished children (DataLoader workers).

    On a shared machine the wall clock also counts the time other processes
    hold the cores; CPU time counts only the work done.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(variant, root, size, max_epochs="auto"):
    from skimgcls import CNNClassifier, ImageReader, load_image_folder

    start, cpu_start = time.perf_counter(), cpu_seconds()
    if variant == "in_memory":
        X, y = load_image_folder(root, size=size)
        clf = CNNClassifier(max_epochs=max_epochs, random_state=0)
    else:
        X, y = load_image_folder(root, lazy=True)
        keep = "auto" if variant == "lazy" else False
        clf = CNNClassifier(reader=ImageReader(size=size, keep_in_memory=keep),
                            max_epochs=max_epochs, random_state=0)
    loaded = time.perf_counter()
    clf.fit(X, y)
    done, cpu_done = time.perf_counter(), cpu_seconds()
    return {"load_s": loaded - start, "fit_s": done - loaded, "total_s": done - start,
            "cpu_s": cpu_done - cpu_start,
            "epochs": len(clf.history_), "train_accuracy": float(clf.score(X, y)),
            "precision": clf.precision_}


def markdown(res, command):
    cfg, out = res["config"], res["variants"]
    ref = out["in_memory"]
    lines = [
        "# The lazy route with default settings against in-memory arrays", "",
        f"`{command}`", "",
        f"{cfg['n_images']} image files in {cfg['n_classes']} classes (crops of "
        "scikit-learn's sample photos; 60 % 64x64, 40 % of 40-119 pixels; gray and CMYK "
        "JPEG, RGBA and RGB PNG), read at "
        f"{cfg['size']}x{cfg['size']} RGB, `CNNClassifier(max_epochs={cfg['max_epochs']!r}, "
        "random_state=0)` with every other parameter at its default "
        f"({ref['epochs']} epochs, precision {ref['precision']}). "
        f"Median of {cfg['repeats']} round-robin runs in one process; seconds.", "",
        "| variant | load s | fit s | load + fit s | load + fit vs in memory "
        "| fit vs in-memory fit | CPU s (load + fit, workers included) | CPU vs in memory |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in VARIANTS:
        s = out[name]
        lines.append(
            f"| {name} | {s['load_s']:.2f} | {s['fit_s']:.2f} | {s['total_s']:.2f} | "
            f"{s['total_s'] / ref['total_s']:.2f}x | {s['fit_s'] / ref['fit_s']:.2f}x | "
            f"{s['cpu_s']:.1f} | {s['cpu_s'] / ref['cpu_s']:.2f}x |")
    ratio = out["lazy"]["total_s"] / ref["total_s"]
    cpu_ratio = out["lazy"]["cpu_s"] / ref["cpu_s"]
    lines += [
        "", f"Target (the lazy route with default settings within 1.3x of in memory, "
            f"load + fit): **{'met' if ratio <= 1.3 else 'not met'}** ({ratio:.2f}x "
            f"wall clock, {cpu_ratio:.2f}x CPU time). "
            "Decoding every file again in every epoch (`keep_in_memory=False`) costs "
            f"{out['lazy_per_batch']['total_s'] / ref['total_s']:.2f}x wall clock, "
            f"{out['lazy_per_batch']['cpu_s'] / ref['cpu_s']:.2f}x CPU time.", "",
        f"Machine: {res['machine']}; load average {res['load']} at the start."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--n-classes", type=int, default=6)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-epochs", type=lambda v: v if v == "auto" else int(v),
                        default="auto", help="CNNClassifier's max_epochs (default: "
                        "its default, 'auto'); fewer epochs weigh the one decoding "
                        "of the lazy route more, so its ratio is then conservative")
    parser.add_argument("--outdir", default=str(RESULTS))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="skimgcls-lazy-"))
    load = [round(v, 2) for v in os.getloadavg()]
    runs = {name: [] for name in VARIANTS}
    try:
        write_folder(root, args.n_images, args.n_classes)
        run("in_memory", root, args.size, max_epochs=1)  # warm-up: imports, kernels
        for _ in range(args.repeats):
            for name in VARIANTS:
                row = run(name, root, args.size, args.max_epochs)
                print(name, row, flush=True)
                runs[name].append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    variants = {name: {**{k: statistics.median(r[k] for r in rows)
                          for k in ("load_s", "fit_s", "total_s", "cpu_s", "train_accuracy")},
                       "epochs": rows[0]["epochs"], "precision": rows[0]["precision"],
                       "runs": rows}
                for name, rows in runs.items()}
    res = {"config": {k: v for k, v in vars(args).items() if k != "outdir"},
           "variants": variants, "load": load,
           "machine": f"{platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores, OMP_NUM_THREADS="
                      f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"}
    command = "PYTHONPATH=. python bench/bench_lazy_default.py " + " ".join(sys.argv[1:])
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "lazy_default.json").write_text(json.dumps(res, indent=1))
    table = markdown(res, command.strip())
    (outdir / "lazy_default.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
