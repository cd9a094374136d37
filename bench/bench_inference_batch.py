"""Images per forward pass when a frozen backbone computes features on a CPU.

``BackboneFeatures(batch_size='auto')`` and the frozen-features recipe of
``CNNClassifier()`` embed images in batches of
``skimgcls._device.inference_batch_size``: on a CPU, as many images as hold
about 400,000 input pixels (8 at 224 px). This measures why: the seconds to
embed ``--n-images`` photo crops (scikit-learn's sample photos) with
EfficientNet-Lite0 (its pip-installed ImageNet weights, ``levels=4`` as the
recipe uses it) and ResNet-18 (random weights: the arithmetic is the same) at
input sizes 64, 112 and 224, in batches of 8, 32, 64 (the former
``BackboneFeatures`` default), 128 (the former default of the recipe) and
256, and with ``'auto'``. bf16 autocast where the CPU computes it natively, as
``precision='auto'`` does. Variants run round-robin, ``--repeats`` times, in
this process; medians are reported, and each one's ratio to the fastest batch
size of its row.

Run:  PYTHONPATH=. python bench/bench_inference_batch.py [--threads 2]
Writes bench/results/inference_batch.md and bench/results/inference_batch.json.
Not part of the test suite.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
BATCHES = (8, 32, 64, 128, 256)
SIZES = (64, 112, 224)


def crops(n, side=96, seed=0):
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        photo = photos[i % 2]
        y0 = rng.integers(0, photo.shape[0] - side)
        x0 = rng.integers(0, photo.shape[1] - side)
        out[i] = photo[y0:y0 + side, x0:x0 + side]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from skimgcls import BackboneFeatures, __version__
    from skimgcls._device import inference_batch_size

    X = crops(args.n_images)
    rows = []
    for name, kwargs in (("efficientnet_lite0", {"pretrained": True, "levels": 4}),
                         ("resnet18", {"pretrained": False, "random_state": 0})):
        for size in SIZES:
            auto = inference_batch_size("cpu", size)
            variants = {b: BackboneFeatures(name, input_size=size, batch_size=b,
                                            **kwargs).fit(X[:2]) for b in BATCHES}
            variants["auto"] = BackboneFeatures(name, input_size=size, **kwargs).fit(X[:2])
            seconds = {key: [] for key in variants}
            for features in variants.values():  # warm up oneDNN's kernels
                features.transform(X[:features.batch_size_])
            for _ in range(args.repeats):
                for key, features in variants.items():
                    start = time.perf_counter()
                    features.transform(X)
                    seconds[key].append(time.perf_counter() - start)
            medians = {key: statistics.median(v) for key, v in seconds.items()}
            fastest = min(medians[b] for b in BATCHES)
            rows.append({"backbone": name, "input_size": size, "auto_batch": auto,
                         "seconds": medians, "all_seconds": seconds,
                         "ratio_to_fastest": {k: v / fastest for k, v in medians.items()},
                         "precision": variants["auto"].precision_})
            print(name, size, {k: round(v, 2) for k, v in medians.items()}, flush=True)

    head = (f"Embedding {args.n_images} photo crops on {platform.processor() or 'CPU'} "
            f"({args.threads} torch threads), torch {torch.__version__}, skimgcls "
            f"{__version__}, {time.strftime('%Y-%m-%dT%H:%M')}; median of "
            f"{args.repeats} round-robin repeats; precision "
            f"{rows[0]['precision']}.\n\n")
    lines = [head, "Seconds (ratio to the fastest fixed batch size of the row).\n\n",
             "| backbone | input px | " + " | ".join(f"batch {b}" for b in BATCHES)
             + " | 'auto' (batch) |\n", "|---|---|" + "---|" * (len(BATCHES) + 1) + "\n"]
    for row in rows:
        cells = [f"{row['seconds'][b]:.2f} ({row['ratio_to_fastest'][b]:.2f}x)"
                 for b in BATCHES]
        cells.append(f"{row['seconds']['auto']:.2f} ({row['ratio_to_fastest']['auto']:.2f}x,"
                     f" {row['auto_batch']})")
        lines.append(f"| {row['backbone']} | {row['input_size']} | " + " | ".join(cells)
                     + " |\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference_batch.md").write_text("".join(lines))
    (RESULTS / "inference_batch.json").write_text(json.dumps(
        {"n_images": args.n_images, "threads": args.threads, "rows": rows}, indent=1))
    print("".join(lines))


if __name__ == "__main__":
    main()
