"""Rules of the defaults, chosen on validation folds of *training* parts only.

Every score here is a stratified k-fold cross-validation score on the
training part of a ``bench/accuracy.py`` condition: the test parts that the
suite reports are never loaded (``training_part`` keeps the first two items
of a split and drops the rest). One JSON line per measurement goes to
``--out``; ``--report`` turns the lines into ``bench/results/explore_defaults.md``.

Experiments (``--experiments``, comma-separated):

* ``frozen``: the frozen-features recipe of ``module='auto'``: input resolution
  of the features (the rule ``3 x shorter side in [96, 224]`` against fixed
  sizes) and whether logistic regression's ``C`` chosen by inner CV beats
  ``C=1``. Informs ``skimgcls._selection.frozen_input_size`` and ``skimgcls._probe.HEAD_CS``.
  Conditions: the photo conditions (30 and 5 per class, 48 px RGB and 128 px
  gray) and digits 20 / MNIST 500 (where the pretrained features must lose).
* ``cost``: seconds per optimizer step of ``compact_cnn`` (48 px RGB) against
  fine-tuning EfficientNet-Lite0 at 96 px, same process, same batch size.
  Informed the former rule that fine-tuning was a candidate on accelerators only
  (dropped since the LP-FT recipe: see ``fine_tune``).
* ``fine_tune``: the LP-FT fine-tuning recipe of ``module='auto'``
  (``skimgcls._selection.fine_tune_recipe``): its input resolution (96 and
  128 px) and peak learning rate (1e-4 against 3e-4), beside the frozen
  features + linear head, by 3-fold CV on the photo training parts; with the
  seconds of each fit. Informs ``fine_tune_input_size``, ``FINE_TUNE_LR`` and
  whether fine-tuning is a candidate on a CPU.
* ``shift``: validation crops from a part of each photo's *training region*
  disjoint from the fitting crops (random folds of overlapping crops score
  94-100 % and cannot tell recipes apart): frozen features at the rule's size
  and at 224 px with several heads, LP-FT, and its weight-space interpolations
  with the probe it started from (WiSE-FT), predicting at 128 and 224 px.
  Informs ``frozen_input_size``, ``FINE_TUNE_WISE_ALPHA`` and the
  one-standard-error rule of ``select_recipe``.
* ``split``: ``CNNClassifier()`` with the random and the neighbourhood
  held-out part of its selection, scored on the shifted folds of the photos
  and by 3-fold CV on digits 5 / 20 and MNIST 500. Informs
  ``skimgcls._selection.SELECT_SPLIT``.
* ``rule``: the selection rule. One selection per fold with every candidate
  trained; three rules pick from its held-out scores (accuracy then log-loss;
  accuracy with equal ones to the simplest; the simplest within one standard
  error of the best), each pick refit as ``fit`` refits it and scored on the
  shifted folds (photos) or 3-fold CV of the training part (digits 5 / 20,
  MNIST 500); with ``--buffer``, the neighbourhood held-out part leaves a
  buffer out of the training part. Informed the one-standard-error rule of
  ``skimgcls._selection._choose`` and ``SELECT_BUFFER``.
* ``select_all``: one selection per fold with every candidate trained, and
  every candidate refit and scored, so that any rule of ``SELECT_RULES`` is
  judged offline: the shifted folds of ``shift`` cut along both axes of the
  training region (photos; 3 draws each) or 3-fold CV of the training part
  (10 and 30 color-MNIST images per class). Informs
  ``skimgcls._selection._choose`` (McNemar's test) and, with ``kfold``,
  ``SELECT_MIN_HELD_OUT``.
* ``kfold``: McNemar's test between the frozen features and ``compact_cnn``
  on one held-out fifth of the fitting data (the product's) against every
  image held out once over 5 folds (random or neighbourhoods), on 3-fold CV
  of 10 and 30 color-MNIST images per class. Informs
  ``skimgcls._selection.SELECT_MIN_HELD_OUT`` (all five fifths chose
  ``compact_cnn`` on every fold with 30 images per class, where one fifth
  kept the frozen features on 1-3 of 3; with 10 per class neither helped).
* ``levels``: frozen features from several depths (the head's pooled output
  concatenated with globally averaged outputs of earlier block stages) on
  the shifted folds of ``shift``, with the selection's linear head and the
  suite baseline's. Informs ``skimgcls._selection.FROZEN_LEVELS``.
* ``head``: the frozen features' linear head (standardized with ``C`` by CV,
  raw with ``C=1``, or the better on the selection's held-out part; and other
  scalings of the features: one scale for all, a floor under each scale, unit
  rows, none with ``C`` by CV, the average of two heads) on the shifted folds
  of ``shift`` (since 2026-12-07 also those cut across the training region).
  Informs ``skimgcls._probe.fit_linear_head``: on the 12 folds cut left to
  right none scored more than 0.4 points above the standardized head's 87.1 %
  mean; on 24, both axes, the floored scale (std + median std) scored 88.4
  against 86.5 %, and it was adopted after ``head_other`` agreed.
* ``head_other``: the heads of ``head`` on 14 photos of scikit-image's bundled
  data that no suite condition uses, cut as the suite cuts its photos, on all
  four layouts (``acc.LAYOUTS``) and 2 crop draws: validation data the suite
  does not share. Informs ``fit_linear_head`` (the floored scale: +0.7 points
  over plain standardization, better on 21 of 32 folds, worse on 5).
* ``ft_levels``: the LP-FT recipe with its probe and head on one or four
  feature levels (``module__levels``), on the shifted folds of ``shift``.
* ``ft_augment``: the LP-FT recipe with its own augmentation and with a
  stronger one (``STRONG_AUGMENT``: crops down to 30 %, rotations, brightness,
  contrast, erasing), beside the frozen recipe, on the shifted folds of
  ``shift``: whether fine-tuning falls below its probe because it learns the
  fitting region's textures (no consistent gain: no change).
* ``ft_ensemble``: surgical fine-tuning (only the last stage or the last three
  stages train) and an output-space ensemble of the fine-tuned network with
  the frozen features' probe, beside the recipe and the frozen features, on
  the shifted folds of ``shift``. Informs ``frozen_ensemble`` of the
  fine-tuning recipe (the ensemble passed the rule set before the run; the
  surgical variants did not).
* ``rules_es``: the early-stopping variant of ``rules`` again with early
  stopping that does not watch during the one-cycle warm-up
  (``EarlyStoppingAfterWarmup``), the same split without early stopping, and
  the defaults rerun (identical to ``rules``' rows), on the same folds and
  seeds (``bench/results/explore_rules_es.md``).
* ``frozen_precision``: the frozen recipe's features and head in bf16 and in
  fp32 on the shifted folds: how much of the differences between recipes is
  rounding (``bench/results/explore_frozen_precision.md``).
* ``ft_recipe``: the fine-tuning recipe as ``module='auto'`` fits it
  (``frozen_ensemble=True``), two training seeds per shifted fold, scored with
  and without its frozen partner, beside the frozen features: the product's
  numbers for ``frozen_ensemble``.
* ``ft_smooth``: the fine-tuning recipe with label smoothing, two training
  seeds per shifted fold, with and without its partner; adoption rule set
  before the run (``SMOOTHING``). Not adopted: see
  ``bench/results/explore_ft_smooth.md``.
* ``ft_fixres``, ``ft_steps`` (and ``ft_steps_short``), ``ft_wise``: the
  fine-tuning recipe predicting at larger sizes, trained for other numbers of
  steps, and with other WiSE weights (``wise_alpha``), two training seeds per
  shifted fold, with and without its partner; each with an adoption rule set
  before its run (``FIXRES_SIZES``, ``FT_STEPS``, ``WISE_ALPHAS``).
* ``singleton``: ``CNNClassifier()`` when one class of the fitting data has
  one image (the selection now runs, that image never held out) against
  ``compact_cnn`` from scratch (what ran before), on the photo folds and
  10 color-MNIST images of 64 px per class.
* ``one_shot``: one image per class (nothing can be held out): ``compact_cnn``
  from scratch (what ran) against the frozen features' head (the simplest
  candidate), on the folds of ``singleton``.
* ``multilabel``: ``CNNClassifier()`` on a multi-label ``y`` (the selection
  now runs: frozen features with a logistic regression per label, or
  ``compact_cnn``) against ``compact_cnn`` from scratch (what ran before), on
  mosaics of photo crops and of color-MNIST digits.
* ``stop``: ``CNNClassifier()`` with and without ``SELECT_STOP_AHEAD`` (a
  from-scratch candidate stops training in the selection once it is clearly
  ahead of the simpler recipes), on 3-fold CV of the color
  MNIST training parts (64 and 128 px, 1,000 images) and the shifted folds of
  the photos: the recipe chosen, the accuracy, the selection's steps and the
  seconds. Informs ``skimgcls._selection.SELECT_STOP_AHEAD``.
* ``ft_size``: the LP-FT recipe trained at 224 px (the frozen features'
  resolution) instead of 128, on the shifted folds of ``shift``. Informs
  ``skimgcls._selection.fine_tune_input_size`` (no change: at 3x the cost it
  scored 84.5 / 82.1 / 87.6 / 86.4 %, still not above its own probe, the
  frozen features, at 88.8 / 81.9 / 91.4 / 86.2 %).
* ``augment``: ``compact_cnn`` with and without ``RandomAugment()`` by 3-fold
  CV of the training parts of digits 5 / 20 and MNIST 500 / 4,000.
* ``rules`` (with ``rules_large``, 5-fold CV of MNIST 4,000, and
  ``rules_cost``, the seconds of 1,000 steps on color MNIST): the ``'auto'``
  rules of ``compact_cnn`` that the former version of this script fixed on
  the suite's test parts (``AUTO_STEPS`` = 500 steps with at least 8 epochs,
  batch ``n/8`` in [8, 32], no validation split below 10,000 images,
  ``update_bn``, ``class_weight=None``), one changed at a time,
  by 3-fold CV (2 seeds) of the training parts of those five conditions
  (digits 5 / 20, MNIST 50 / 500, the imbalanced one) and MNIST 4,000, with
  fit seconds and, on the MNIST 4,000 folds, the classic example's seconds.
  Informs ``skimgcls._build.AUTO_STEPS``, ``AUTO_MIN_EPOCHS``,
  ``auto_batch_size``, ``AUTO_VALIDATION_MIN_SAMPLES`` and the defaults of
  ``update_bn`` and ``class_weight``.

    python bench/_explore_defaults.py --experiments frozen,cost --out /tmp/explore.jsonl
    python bench/_explore_defaults.py --report /tmp/explore.jsonl
    python bench/_explore_defaults.py --experiments fine_tune --out /tmp/ft.jsonl
    python bench/_explore_defaults.py --report /tmp/ft.jsonl --report-out explore_fine_tune.md
    python bench/_explore_defaults.py --experiments shift --out /tmp/shift.jsonl
    python bench/_explore_defaults.py --report /tmp/shift.jsonl --report-out explore_shift.md
    C=photos_rgb48_5,digits_5,photos_gray128_5,digits_20,photos_rgb48_30,photos_gray128_30,mnist_500
    python bench/_explore_defaults.py --experiments rule --conditions $C --out /tmp/rule.jsonl
    python bench/_explore_defaults.py --experiments rule --buffer --conditions $C \
        --out /tmp/rule.jsonl
    python bench/_explore_defaults.py --report /tmp/rule.jsonl --report-out explore_rule.md
    python bench/_explore_defaults.py --experiments levels --out /tmp/levels.jsonl
    python bench/_explore_defaults.py --report /tmp/levels.jsonl --report-out explore_levels.md
    python bench/_explore_defaults.py --experiments stop --out /tmp/stop.jsonl
    python bench/_explore_defaults.py --report /tmp/stop.jsonl --report-out explore_stop.md
    python bench/_explore_defaults.py --experiments ft_levels --out /tmp/ftl.jsonl
    python bench/_explore_defaults.py --report /tmp/ftl.jsonl --report-out explore_ft_levels.md
    python bench/_explore_defaults.py --experiments ft_augment --out /tmp/fta.jsonl
    python bench/_explore_defaults.py --report /tmp/fta.jsonl --report-out explore_ft_augment.md
    python bench/_explore_defaults.py --experiments select_all --out /tmp/select.jsonl
    python bench/_explore_defaults.py --experiments select_all \
        --conditions mnist_rgb64_10pc,mnist_rgb64_30pc --out /tmp/select.jsonl
    python bench/_explore_defaults.py --report /tmp/select.jsonl --report-out explore_select.md
    python bench/_explore_defaults.py --experiments kfold --out /tmp/kfold.jsonl
    python bench/_explore_defaults.py --report /tmp/kfold.jsonl --report-out explore_kfold.md
    python bench/_explore_defaults.py --experiments rules,rules_large,rules_cost \
        --out /tmp/rules.jsonl
    python bench/_explore_defaults.py --report /tmp/rules.jsonl --report-out explore_rules.md
"""

import argparse
import contextlib
import copy
import functools
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from skorch.callbacks import Callback

from skimgcls import CNNClassifier
from skimgcls._build import (
    AUTO_MAX_EPOCHS,
    AUTO_MIN_EPOCHS,
    AUTO_STEPS,
    auto_batch_size,
)
from skimgcls._probe import embed, fit_linear_head
from skimgcls._selection import (
    FINE_TUNE_BATCH,
    FINE_TUNE_LR,
    FINE_TUNE_STEPS,
    FINE_TUNE_WISE_ALPHA,
    fine_tune_recipe,
    frozen_input_size,
)
from skimgcls.backbones import build_backbone

_spec = importlib.util.spec_from_file_location("skimgcls_bench_accuracy",
                                               Path(__file__).parent / "accuracy.py")
acc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(acc)

RESULTS = Path(__file__).parent / "results"


def training_part(split):
    """Only ``(X_train, y_train)`` of a suite split: its test part is never touched."""
    def load():
        X_train, y_train, *_ = split()
        return X_train, y_train
    return load


CONDITIONS = {
    "photos_rgb48_30": training_part(lambda: acc.photos_split(30, 48, False)),
    "photos_rgb48_5": training_part(lambda: acc.photos_split(5, 48, False)),
    "photos_gray128_30": training_part(lambda: acc.photos_split(30, 128, True)),
    "photos_gray128_5": training_part(lambda: acc.photos_split(5, 128, True)),
    "digits_5": training_part(lambda: acc.digits_split(5)),
    "digits_20": training_part(lambda: acc.digits_split(20)),
    "mnist_50": training_part(lambda: acc.mnist_split(50)),
    "mnist_500": training_part(lambda: acc.mnist_split(500)),
    "mnist_4000": training_part(lambda: acc.mnist_split(4000)),
    "mnist_imbalanced": training_part(acc.imbalanced_split),
    "mnist_rgb64": training_part(lambda: acc.mnist_rgb_split(64, 1000, 1000)),
    "mnist_rgb128": training_part(lambda: acc.mnist_rgb_split(128, 1000, 1000)),
    # Few color-MNIST images (10 and 30 per class of the 64 px training part):
    # where the selection's rule must still let compact_cnn win, on few held-out images.
    "mnist_rgb64_10pc": lambda: acc.per_class_subset(
        *training_part(lambda: acc.mnist_rgb_split(64, 1000, 1000))(), 10),
    "mnist_rgb64_30pc": lambda: acc.per_class_subset(
        *training_part(lambda: acc.mnist_rgb_split(64, 1000, 1000))(), 30),
}

FROZEN_CONDITIONS = ("photos_rgb48_30", "photos_rgb48_5", "photos_gray128_30",
                     "photos_gray128_5", "digits_20", "mnist_500")
FINE_TUNE_CONDITIONS = ("photos_rgb48_5", "photos_gray128_5", "photos_rgb48_30",
                        "photos_gray128_30")
KFOLD_CONDITIONS = ("mnist_rgb64_10pc", "mnist_rgb64_30pc")


def folds(y, k=5, seed=0):
    k = min(k, int(np.bincount(y).min()))
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y))


def nhwc(X):
    return X if X.ndim == 4 else X[..., None]


def lite0(X, size=224, levels=1):
    """The pretrained EfficientNet-Lite0 feature extractor for NHWC images ``X``."""
    return build_backbone("efficientnet_lite0", n_classes=None, in_channels=X.shape[-1],
                          input_size=size, pretrained=True, levels=levels)


def frozen(name, X, y, emit):
    """CV accuracy of frozen EfficientNet-Lite0 features + a linear head."""
    X = nhwc(X)
    rule = frozen_input_size(X.shape[1:])
    for size in sorted({96, 128, 160, 224, rule}):
        torch.manual_seed(0)
        net = lite0(X, size)
        start = time.perf_counter()
        features = embed(net, X, device="cpu", precision="bf16")
        feature_s = time.perf_counter() - start
        for how in ("C by inner CV", "C=1"):
            scores = []
            for tr, va in folds(y):
                if how == "C=1":
                    head = fit_linear_head_fixed(features[tr], y[tr])
                else:
                    head = fit_linear_head(features[tr], y[tr], np.ones(len(tr)))
                scores.append(float(np.mean(head.predict(features[va]) == y[va])))
            emit({"experiment": "frozen", "condition": name, "size": size,
                  "rule_size": size == rule, "head": how, "cv_scores": scores,
                  "feature_s": feature_s, "n": len(X)})


def fit_linear_head_fixed(features, y):
    """The same head with C=1 (no inner CV)."""
    import skimgcls._probe as probe

    saved = probe.HEAD_CS
    probe.HEAD_CS = (1.0,)
    try:
        return fit_linear_head(features, y, np.ones(len(y)))
    finally:
        probe.HEAD_CS = saved


def cost(emit, steps=20, batch=8):
    """Seconds per optimizer step: compact_cnn at 48 px against fine-tuning at 96 px."""
    X, y = CONDITIONS["photos_rgb48_30"]()
    recipes = {"compact_cnn": {"module": "compact_cnn", "pretrained": False},
               "fine_tune_96": {"module": "efficientnet_lite0", "pretrained": True,
                                "backbone_lr_mult": 0.1, "lr": 2e-3,
                                "module__input_size": 96}}
    epochs = math.ceil(steps / math.ceil(len(X) / batch))
    for round_ in range(2):  # round-robin, twice: a noisy machine slows both alike
        for name, params in recipes.items():
            clf = CNNClassifier(**params, max_epochs=epochs, batch_size=batch,
                                validation_fraction=None, random_state=0)
            start = time.perf_counter()
            clf.fit(X, y)
            seconds = time.perf_counter() - start
            emit({"experiment": "cost", "recipe": name, "round": round_,
                  "steps": epochs * math.ceil(len(X) / batch),
                  "s_per_step": seconds / (epochs * math.ceil(len(X) / batch)),
                  "load": os.getloadavg()[0]})


def fine_tune(name, X, y, emit):
    """3-fold CV accuracy and fit seconds of LP-FT by resolution and learning rate."""
    X = nhwc(X)
    recipe = fine_tune_recipe(X.shape[1:])
    configs = [(96, FINE_TUNE_LR), (128, FINE_TUNE_LR), (recipe.params[
        "module__input_size"], 3 * FINE_TUNE_LR)]
    for size, lr in configs:
        scores, seconds = [], []
        for tr, va in folds(y, k=3):
            b = auto_batch_size(len(tr))
            epochs = max(1, math.ceil(FINE_TUNE_STEPS / math.ceil(len(tr) / b)))
            clf = CNNClassifier(**{**recipe.params, "module__input_size": size, "lr": lr},
                                max_epochs=epochs, batch_size=b, random_state=0)
            start = time.perf_counter()
            clf.fit(X[tr], y[tr])
            seconds.append(time.perf_counter() - start)
            scores.append(float(clf.score(X[va], y[va])))
        emit({"experiment": "fine_tune", "condition": name, "size": size, "lr": lr,
              "rule_size": size == recipe.params["module__input_size"],
              "cv_scores": scores, "fit_s": seconds, "load": os.getloadavg()[0]})
    net = lite0(X, frozen_input_size(X.shape[1:]))
    features = embed(net, X, device="cpu", precision="bf16")
    scores = [float(np.mean(fit_linear_head(features[tr], y[tr], np.ones(len(tr)))
                            .predict(features[va]) == y[va])) for tr, va in folds(y, k=3)]
    emit({"experiment": "fine_tune", "condition": name, "size": frozen_input_size(
        X.shape[1:]), "lr": None, "rule_size": True, "cv_scores": scores, "fit_s": [],
        "load": os.getloadavg()[0]})


#: The photo conditions as (crops per class, side, gray) for ``shift``.
SHIFT_CONDITIONS = {"photos_rgb48_30": (30, 48, False), "photos_rgb48_5": (5, 48, False),
                    "photos_gray128_30": (30, 128, True), "photos_gray128_5": (5, 128, True)}


def shifted_fold(per_class, size, gray, draw, n_valid=20, axis="x"):
    """A validation fold of the *training region* that is shifted as the test is.

    The suite's training crops come from the left ``acc.TRAIN_REGION`` of each
    photo and its test crops from the rest. Here the training region alone is
    cut the same way: fitting crops from its left part, validation crops from
    its right part, so that no validation pixel was in a fitting crop (random
    folds of overlapping crops score 94-100 % and cannot tell recipes apart).
    Crop sides are drawn as the suite draws them (15-35 % of the photo's
    shorter side). The test region is never read. ``axis='y'`` cuts the
    training region across instead: fitting crops from its top part,
    validation crops from its bottom part (other draws).
    """
    from PIL import Image

    rng = np.random.RandomState((1000 if axis == "x" else 2000) + draw)
    parts = {"fit": ([], []), "valid": ([], [])}
    for label, (_, photo) in enumerate(acc.load_photos()):
        h, w = photo.shape[:2]
        region = int(acc.TRAIN_REGION * w)  # pixels right of it are the test's
        along = region if axis == "x" else h
        inner = int(acc.TRAIN_REGION * along)
        for part, (lo, hi), n in (("fit", (0, inner), per_class),
                                  ("valid", (inner, along), n_valid)):
            for _ in range(n):
                side = min(int(rng.uniform(0.15, 0.35) * min(h, w)), hi - lo, region)
                a = rng.randint(lo, hi - side + 1)
                b = rng.randint(0, (h if axis == "x" else region) - side + 1)
                x, y0 = (a, b) if axis == "x" else (b, a)
                crop = Image.fromarray(photo[y0:y0 + side, x:x + side])
                crop = crop.convert("L") if gray else crop
                parts[part][0].append(np.asarray(crop.resize((size, size),
                                                             Image.BILINEAR)))
                parts[part][1].append(label)
    (X, y), (Xv, yv) = ((np.stack(parts[k][0]), np.array(parts[k][1]))
                        for k in ("fit", "valid"))
    return X, y, Xv, yv


def validation_folds(name, draws):
    """``(draw, (X, y, X_valid, y_valid))`` pairs of a condition's training part:
    the shifted folds of ``shifted_fold`` (photos) or 3-fold CV (the others)."""
    if name in SHIFT_CONDITIONS:
        return [(draw, shifted_fold(*SHIFT_CONDITIONS[name], draw)) for draw in draws]
    X, y = CONDITIONS[name]()
    return [(i, (X[tr], y[tr], X[va], y[va])) for i, (tr, va) in enumerate(folds(y, k=3))]


class _Capture(Callback):
    """Keeps the weights at the beginning (after the probe) and end of training."""

    def on_train_begin(self, net, **kwargs):
        self.start_ = copy.deepcopy(net.module_.state_dict())

    def on_train_end(self, net, **kwargs):
        self.end_ = copy.deepcopy(net.module_.state_dict())


def interpolate(start, end, alpha):
    """``(1 - alpha) * start + alpha * end`` for float tensors (WiSE-FT)."""
    return {k: (1 - alpha) * start[k] + alpha * end[k] if end[k].is_floating_point()
            else end[k] for k in end}


def recipe_classifier(X, random_state, steps=FINE_TUNE_STEPS, **changes):
    """The fine-tuning recipe's ``CNNClassifier`` for images ``X`` (with
    ``changes``), trained for ``steps`` (its ``FINE_TUNE_STEPS``) as its refit
    trains it."""
    recipe = fine_tune_recipe(X.shape[1:])
    batches = math.ceil(len(X) / FINE_TUNE_BATCH)
    return CNNClassifier(**{**recipe.params, **changes},
                         max_epochs=max(1, math.ceil(steps / batches)),
                         validation_fraction=None, early_stopping=False,
                         random_state=random_state)


def frozen_probe(X, y, Xv, precision="bf16"):
    """The frozen recipe on a fold: its linear head fitted on the features of
    ``X`` (224 px, ``FROZEN_LEVELS``) and the features of ``Xv``."""
    import skimgcls._selection as selection

    net = lite0(X, levels=selection.FROZEN_LEVELS)
    F, Fv = (embed(net, A, device="cpu", precision=precision) for A in (X, Xv))
    return fit_linear_head(F, y, np.ones(len(y))), Fv


def shifted_nhwc(name, draw):
    """``shifted_fold`` of photo condition ``name``, images as NHWC arrays."""
    X, y, Xv, yv = shifted_fold(*SHIFT_CONDITIONS[name], draw)
    return nhwc(X), y, nhwc(Xv), yv


def lp_ft_scores(X, y, Xv, yv, draw, alphas, **changes):
    """Train the fine-tuning recipe (with ``changes``) once; score interpolations.

    Yields ``(alpha, predict_px, accuracy, fit_s)`` for the weights ``(1 -
    alpha) * probe + alpha * fine-tuned``, each predicting at the trained size
    and at 224 px (FixRes: Touvron et al., NeurIPS 2019).
    """
    # The fine-tuned network alone, as these experiments measured it before the
    # recipe's frozen_ensemble (ft_recipe measures the recipe with it).
    clf = recipe_classifier(X, draw, **{"frozen_ensemble": False,
                                        "callbacks": [("capture", _Capture())], **changes})
    start = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - start
    module, capture = clf.net_.module_, dict(clf.net_.callbacks_)["capture"]
    trained_size = module.adapter.resize.size
    for alpha in alphas:
        module.load_state_dict(interpolate(capture.start_, capture.end_, alpha))
        for predict_size in (trained_size, (224, 224)):
            module.adapter.resize.size = predict_size
            yield alpha, predict_size[0], float(clf.score(Xv, yv)), fit_s
        module.adapter.resize.size = trained_size


def shift(name, emit, draws=(0, 1, 2)):
    """Accuracy on shifted validation folds: frozen heads, LP-FT and its interpolations."""
    from sklearn.linear_model import LogisticRegression

    per_class, size, gray = SHIFT_CONDITIONS[name]
    for draw in draws:
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw)
        X, Xv = nhwc(X), nhwc(Xv)
        for fsize in sorted({frozen_input_size(X.shape[1:]), 224}):
            net = lite0(X, fsize)
            F, Fv = (embed(net, A, device="cpu", precision="bf16") for A in (X, Xv))
            head = fit_linear_head(F, y, np.ones(len(y)))
            emit({"experiment": "shift", "condition": name, "draw": draw,
                  "method": f"frozen {fsize} px, head C by CV ({head.C:g})",
                  "accuracy": float(np.mean(head.predict(Fv) == yv))})
            for C in (0.01, 0.1, 1.0):
                Z = (F - F.mean(0)) / (F.std(0) + 1e-6)
                Zv = (Fv - F.mean(0)) / (F.std(0) + 1e-6)
                model = LogisticRegression(C=C, max_iter=1000).fit(Z, y)
                emit({"experiment": "shift", "condition": name, "draw": draw,
                      "method": f"frozen {fsize} px, head C={C:g}",
                      "accuracy": float(model.score(Zv, yv))})
            model = LogisticRegression(max_iter=1000).fit(F, y)
            emit({"experiment": "shift", "condition": name, "draw": draw,
                  "method": f"frozen {fsize} px, raw features C=1 (suite baseline)",
                  "accuracy": float(model.score(Fv, yv))})
        for alpha, predict_px, accuracy, fit_s in lp_ft_scores(
                X, y, Xv, yv, draw, (0.0, 0.25, 0.5, 0.75, 1.0)):
            emit({"experiment": "shift", "condition": name, "draw": draw,
                  "method": f"LP-FT, weights (1-a) probe + a fine-tuned, a={alpha:g}"
                            f", predicting at {predict_px} px",
                  "accuracy": accuracy, "fit_s": fit_s})


def flip(name, emit, draws=(0, 1, 2)):
    """Shifted validation of frozen 224 px features with horizontal flips."""
    per_class, size, gray = SHIFT_CONDITIONS[name]
    for draw in draws:
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw)
        X, Xv = nhwc(X), nhwc(Xv)
        net = lite0(X)
        F, Fv, G, Gv = (embed(net, np.ascontiguousarray(A), device="cpu", precision="bf16")
                        for A in (X, Xv, X[:, :, ::-1], Xv[:, :, ::-1]))
        ones = np.ones(len(y))
        plain = fit_linear_head(F, y, ones)
        mean = fit_linear_head((F + G) / 2, y, ones)
        both = fit_linear_head(np.concatenate([F, G]), np.concatenate([y, y]),
                               np.ones(2 * len(y)))
        for method, pred in (
                ("features of the images", plain.predict(Fv)),
                ("features averaged over the image and its mirror", mean.predict((Fv + Gv) / 2)),
                ("head fitted on images and mirrors, probabilities averaged",
                 (both.predict_proba(Fv) + both.predict_proba(Gv)).argmax(1))):
            emit({"experiment": "shift", "condition": name, "draw": draw,
                  "method": f"frozen 224 px, {method}",
                  "accuracy": float(np.mean(pred == yv))})


def split(name, emit, draws=(0, 1, 2)):
    """``CNNClassifier()`` with each held-out split of the selection, scored on the
    shifted validation crops (photos) or 3-fold CV of the training part (digits)."""
    import skimgcls._selection as selection

    folds_ = validation_folds(name, draws)
    for draw, (X, y, Xv, yv) in folds_:
        for how in ("random", "neighbourhood"):
            selection.SELECT_SPLIT = how
            clf = CNNClassifier(random_state=draw)
            start = time.perf_counter()
            clf.fit(X, y)
            emit({"experiment": "split", "condition": name, "draw": draw, "split": how,
                  "recipe": clf.recipe_, "accuracy": float(clf.score(Xv, yv)),
                  "valid_scores": clf.selection_results_ and clf.selection_results_[
                      "valid_score"], "fit_s": time.perf_counter() - start})


#: Conditions of ``stop``: where the selection trains ``compact_cnn`` after
#: the frozen features (color MNIST, 1,000 images) and the photos.
STOP_CONDITIONS = ("mnist_rgb64", "mnist_rgb128", *SHIFT_CONDITIONS)


def stop(name, emit, draws=(0, 1, 2)):
    """``CNNClassifier()`` with and without ``SELECT_STOP_AHEAD``: the recipe it
    chooses, the selection's steps and seconds, the fit's seconds and the
    accuracy on the shifted validation crops (photos) or 3-fold CV of the
    training part (color MNIST)."""
    import skimgcls._selection as selection

    folds_ = validation_folds(name, draws)
    default = selection.SELECT_STOP_AHEAD
    try:
        for draw, (X, y, Xv, yv) in folds_:
            for ahead in (False, True):
                selection.SELECT_STOP_AHEAD = ahead
                clf = CNNClassifier(random_state=draw)
                start = time.perf_counter()
                clf.fit(X, y)
                emit({"experiment": "stop", "condition": name, "draw": draw,
                      "stop_ahead": ahead, "recipe": clf.recipe_,
                      "accuracy": float(clf.score(Xv, yv)),
                      "selection_steps": clf.selection_steps_,
                      "selection_s": clf.selection_seconds_,
                      "valid_scores": clf.selection_results_ and clf.selection_results_[
                          "valid_score"], "fit_s": time.perf_counter() - start})
    finally:
        selection.SELECT_STOP_AHEAD = default


def pooled_levels(net, X, blocks, batch_size=64):
    """Frozen EfficientNet-Lite0 features: the head's pooled output and, before
    it, the global average of the outputs of ``blocks`` (timm's ``blocks[i]``)."""
    from skimgcls._functional import to_float_nchw

    body, out = net.body, []
    net.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(X), batch_size):
            x = body.bn1(body.conv_stem(net.adapter(to_float_nchw(X[i:i + batch_size],
                                                                  "cpu"))))
            pooled = []
            for j, block in enumerate(body.blocks):
                x = block(x)
                if j in blocks:
                    pooled.append(x.float().mean((2, 3)))
            pooled.append(body.bn2(body.conv_head(x)).float().mean((2, 3)))
            out.append(torch.cat(pooled, 1))
    return torch.cat(out).numpy()


#: Block sets of ``levels`` (EfficientNet-Lite0 has 7 block stages, 0-6).
LEVELS = ((), (4,), (3, 4), (2, 3, 4), (4, 5, 6))


def levels(name, emit, draws=(0, 1, 2)):
    """Frozen features from several depths, on the shifted folds of ``shift``.

    The pooled output of the network's head (the frozen features of
    ``module='auto'`` before ``FROZEN_LEVELS``) against the same concatenated
    with the global averages of earlier block stages (crops of a photo share
    textures that mid-level features describe), at 224 px, each with two
    linear heads: the selection's (standardized features, ``C`` by inner CV)
    and the suite's frozen+LR baseline's (raw features, ``C=1``).
    """
    from sklearn.linear_model import LogisticRegression

    per_class, size, gray = SHIFT_CONDITIONS[name]
    for draw in draws:
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw)
        X, Xv = nhwc(X), nhwc(Xv)
        net = lite0(X)
        for blocks in LEVELS:
            F, Fv = pooled_levels(net, X, blocks), pooled_levels(net, Xv, blocks)
            head = fit_linear_head(F, y, np.ones(len(y)))
            raw = LogisticRegression(max_iter=1000).fit(F, y)
            scores = (("standardized, C by CV", np.mean(head.predict(Fv) == yv)),
                      ("raw, C=1", raw.score(Fv, yv)))
            for how, accuracy in scores:
                emit({"experiment": "levels", "condition": name, "draw": draw,
                      "blocks": list(blocks), "dim": int(F.shape[1]), "head": how,
                      "accuracy": float(accuracy)})


def head(name, emit, draws=(0, 1, 2), axes=("x", "y")):
    """The frozen features' linear head, fixed or chosen on the selection's split.

    On the shifted folds of ``shift`` with the frozen recipe's features (224
    px, ``FROZEN_LEVELS``): the selection's head (standardized features, ``C``
    by inner CV), logistic regression on the raw features with ``C=1`` (the
    ``BackboneFeatures`` + ``LogisticRegression()`` route), and the one of
    the two that scores better on the selection's own held-out part of the
    fitting crops (``_neighbourhood_split``; the simpler, standardized one
    when within one standard error), refit on every fitting crop. Scored on
    the validation crops. ``axes``: the shifted folds cut along each axis of
    the training region (see ``shifted_fold``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from skimgcls._selection import (
        FROZEN_LEVELS,
        SELECT_VALID_FRACTION,
        _neighbourhood_split,
    )

    per_class, size, gray = SHIFT_CONDITIONS[name]
    for axis, draw in ((axis, draw) for axis in axes for draw in draws):
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw, axis=axis)
        X, Xv = nhwc(X), nhwc(Xv)
        net = lite0(X, levels=FROZEN_LEVELS)
        F, Fv = (embed(net, A, device="cpu", precision="bf16") for A in (X, Xv))

        def fit(how, F_, y_):
            if how == "standardized, C by CV":
                return fit_linear_head(F_, y_, np.ones(len(y_)))
            return LogisticRegression(max_iter=1000).fit(F_, y_)

        hows = ("standardized, C by CV", "raw, C=1")
        n_valid = max(7, int(round(SELECT_VALID_FRACTION * len(y))))
        _, valid_idx = train_test_split(np.arange(len(y)), test_size=n_valid,
                                        stratify=y, random_state=draw)
        train_idx, valid_idx = _neighbourhood_split(F, y, valid_idx)
        held = [float(np.mean(fit(h, F[train_idx], y[train_idx]).predict(F[valid_idx])
                              == y[valid_idx])) for h in hows]
        best = max(held)
        bar = best - standard_error(best, len(valid_idx))
        chosen = next(h for h, a in zip(hows, held) if a >= bar)
        scores = {h: float(np.mean(fit(h, F, y).predict(Fv) == yv)) for h in hows}
        for how, proba in head_variants(F, y, Fv).items():
            scores[how] = float(np.mean(proba.argmax(1) == yv))
        for how in scores:
            emit({"experiment": "head", "condition": name, "axis": axis, "draw": draw,
                  "head": how, "accuracy": scores[how]})
        emit({"experiment": "head", "condition": name, "axis": axis, "draw": draw,
              "head": "chosen on the selection's held-out part", "chosen": chosen,
              "held_out": held, "accuracy": scores[chosen]})


#: Photos for validation only: scikit-image's bundled data (the ``bench``
#: extra), none of them in the suite (whose cameraman, also in skimage, is left
#: out). Each is one class, as in the suite.
OTHER_PHOTOS_RGB = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                    "immunohistochemistry", "retina")
OTHER_PHOTOS_GRAY = ("coins", "moon", "brick", "grass", "gravel", "page", "clock")


@functools.lru_cache(maxsize=1)
def other_photos():
    """``(name, uint8 (H, W, 3))`` pairs of ``OTHER_PHOTOS_*`` (gray repeated to 3)."""
    import skimage.data

    out = []
    for name in OTHER_PHOTOS_RGB + OTHER_PHOTOS_GRAY:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.dtype != np.uint8:
            img = np.round(255 * (img - img.min()) / max(np.ptp(img), 1e-12)).astype(np.uint8)
        out.append((name, img[..., :3]))
    return tuple(out)


def other_photos_split(per_class, size, gray, layout, draw, n_valid=30):
    """The suite's crop protocol (``acc.photo_crops``) on ``other_photos``: fitting
    crops from the training region of ``layout``, validation crops from the rest."""
    rng = np.random.RandomState(3000 + draw)
    parts = {"train": ([], []), "test": ([], [])}
    for label, (_, photo) in enumerate(other_photos()):
        for region, n in (("train", per_class), ("test", n_valid)):
            parts[region][0].append(acc.photo_crops(photo, n, size, region, rng, gray,
                                                    layout))
            parts[region][1].append(np.full(n, label))
    return tuple(np.concatenate(part) for r in ("train", "test") for part in parts[r])


def head_other(name, emit, draws=(0, 1)):
    """The linear heads of ``head`` on photos the suite never uses (``other_photos``:
    14 classes), with the suite's crop protocol on each of its four layouts.

    Validation data for the head that no suite condition shares: the choice of the
    head can be judged here without the suite's photos.
    """
    from sklearn.linear_model import LogisticRegression

    from skimgcls._selection import FROZEN_LEVELS

    per_class, size, gray = SHIFT_CONDITIONS[name]
    for layout in acc.LAYOUTS:
        for draw in draws:
            X, y, Xv, yv = other_photos_split(per_class, size, gray, layout, draw)
            X, Xv = nhwc(X), nhwc(Xv)
            net = lite0(X, levels=FROZEN_LEVELS)
            F, Fv = (embed(net, A, device="cpu", precision="bf16") for A in (X, Xv))
            scores = {
                "standardized, C by CV": fit_linear_head(F, y, np.ones(len(y))).predict(Fv),
                "raw, C=1": LogisticRegression(max_iter=1000).fit(F, y).predict(Fv)}
            scores = {how: float(np.mean(pred == yv)) for how, pred in scores.items()}
            for how, proba in head_variants(F, y, Fv).items():
                scores[how] = float(np.mean(proba.argmax(1) == yv))
            for how, accuracy in scores.items():
                emit({"experiment": "head_other", "condition": name, "axis": layout,
                      "draw": draw, "head": how, "accuracy": accuracy})


def scaled_head(F, y, Fv, scale):
    """Logistic regression on ``(F - mean) / scale``, ``C`` by the head's inner CV;
    probabilities of ``Fv``."""
    from sklearn.linear_model import LogisticRegression

    from skimgcls._probe import HEAD_SOLVER, _choose_C, _quiet_line_search

    mean, ones = F.mean(0), np.ones(len(y))
    with _quiet_line_search():
        C = _choose_C((F - mean) / scale, y, ones)
        model = LogisticRegression(C=C, solver=HEAD_SOLVER, max_iter=1000)
        model.fit((F - mean) / scale, y)
    return model.predict_proba((Fv - mean) / scale)


def head_variants(F, y, Fv):
    """Probabilities of ``Fv`` under linear heads that scale the features otherwise
    than the selection's per-feature standardization."""
    from sklearn.linear_model import LogisticRegression

    std = F.std(0)
    unit = (lambda A: A / (np.linalg.norm(A, axis=1, keepdims=True) + 1e-12))
    U, Uv = unit(F), unit(Fv)
    standardized = scaled_head(F, y, Fv, std + 1e-6)
    raw = LogisticRegression(max_iter=1000).fit(F, y).predict_proba(Fv)
    return {
        "centred, one scale (mean of the stds), C by CV": scaled_head(F, y, Fv, std.mean()),
        "standardized with a floor (std + median std), C by CV":
            scaled_head(F, y, Fv, std + np.median(std)),
        "unit rows, one scale, C by CV": scaled_head(U, y, Uv, U.std(0).mean()),
        "raw, C by CV": scaled_head(F, y, Fv, 1.0),
        "probabilities of standardized and raw C=1 averaged": (standardized + raw) / 2,
    }


def ft_levels(name, emit, draws=(0, 1, 2)):
    """LP-FT from a probe on one or four feature levels, on the shifted folds.

    The fine-tuning recipe (``fine_tune_recipe``) as it is (``levels=1``: its
    probe and head on the pooled output) and with ``module__levels=4`` (the
    frozen features' levels, ``FROZEN_LEVELS``: the probe it starts from is
    the frozen recipe's at 128 px), each scored with the recipe's
    ``wise_alpha`` and with the fine-tuned weights alone, predicting at the
    trained 128 px and at 224 px.
    """
    per_class, size, gray = SHIFT_CONDITIONS[name]
    for draw in draws:
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw)
        X, Xv = nhwc(X), nhwc(Xv)
        for n_levels in (1, 4):
            for alpha, predict_px, accuracy, fit_s in lp_ft_scores(
                    X, y, Xv, yv, draw, (0.0, FINE_TUNE_WISE_ALPHA, 1.0),
                    wise_alpha=None, module__levels=n_levels):
                emit({"experiment": "ft_levels", "condition": name, "draw": draw,
                      "levels": n_levels, "alpha": alpha, "predict_px": predict_px,
                      "accuracy": accuracy, "fit_s": fit_s})


#: The stronger augmentation of ``ft_augment``: larger crops, rotations,
#: brightness and contrast, random erasing, on top of the recipe's flips.
STRONG_AUGMENT = dict(degrees=15.0, translate=0.1, zoom=0.2, hflip=0.5, crop_scale=0.3,
                      brightness=0.3, contrast=0.3, erasing=0.25)


def ft_augment(name, emit, draws=(0, 1, 2)):
    """LP-FT with a stronger augmentation than the recipe's, on the shifted folds.

    Whether fine-tuning falls below its probe because it learns the fitting
    region's textures, which a stronger augmentation would hide: the recipe
    (``module__levels=4``, 128 px) with its own augmentation (flips and mild
    crops) and with ``STRONG_AUGMENT``, scored as ``ft_levels`` scores it,
    beside the frozen recipe (224 px, four levels, ``fit_linear_head``) on the
    same folds.
    """
    from skimgcls import RandomAugment

    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        head, Fv = frozen_probe(X, y, Xv)
        emit({"experiment": "ft_augment", "condition": name, "draw": draw,
              "augment": "frozen features (224 px)", "alpha": None, "predict_px": 224,
              "accuracy": float(np.mean(head.predict(Fv) == yv)), "fit_s": None})
        for how, changes in (("recipe", {}),
                             ("strong", {"augment": RandomAugment(**STRONG_AUGMENT)})):
            for alpha, predict_px, accuracy, fit_s in lp_ft_scores(
                    X, y, Xv, yv, draw, (0.0, 0.25, FINE_TUNE_WISE_ALPHA, 1.0),
                    wise_alpha=None, **changes):
                emit({"experiment": "ft_augment", "condition": name, "draw": draw,
                      "augment": how, "alpha": alpha, "predict_px": predict_px,
                      "accuracy": accuracy, "fit_s": fit_s})


#: Block groups of EfficientNet-Lite0 (``BackboneNet.blocks``: the stem, then
#: seven stages, the last with the 1x1 head convolution) that ``ft_ensemble``
#: trains: all (the recipe), the last three stages, the last stage.
FT_TRAINED_GROUPS = {"all": 8, "last 3 stages": 3, "last stage": 1}


class _FreezeLeading(Callback):
    """Keeps all but the last ``n_trained`` block groups of a backbone from
    training, on top of the recipe's ``freeze='bn'`` (their parameters get no
    gradient, so AdamW leaves them as they are)."""

    def __init__(self, n_trained):
        self.n_trained = n_trained

    def on_train_begin(self, net, **kwargs):
        groups = net.module_.blocks
        for group in groups[:len(groups) - self.n_trained]:
            for member in group:
                params = (member.parameters() if isinstance(member, torch.nn.Module)
                          else [member])
                for param in params:
                    param.requires_grad_(False)


def ft_ensemble(name, emit, draws=(0, 1, 2)):
    """Two untried levers of fine-tuning, on the shifted folds (issue 18).

    * Surgical fine-tuning (Lee et al., ICLR 2023): only the last block groups
      train (``FT_TRAINED_GROUPS``), the rest keeps the pretrained weights.
    * An output-space ensemble: the mean of the probabilities of the
      fine-tuned network (the recipe's 128 px) and of the frozen features'
      probe (224 px, four levels), which the fine-tuning started from at
      another resolution (Wortsman et al., CVPR 2022, compare it to WiSE-FT).

    Each scored with ``a`` = 0.5 (the recipe's ``wise_alpha``) and 1, beside
    the frozen recipe on the same folds. Decision rule, set before the run: a
    variant replaces the recipe only if its mean over the 12 folds (4
    conditions x 3 draws) is above both the frozen features' and the
    recipe's, and its mean is above the frozen features' on at least 3 of
    the 4 conditions.
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        head, Fv = frozen_probe(X, y, Xv)
        P_frozen = head.predict_proba(Fv)
        row = {"experiment": "ft_ensemble", "condition": name, "draw": draw}
        emit({**row, "trained": "frozen features (224 px)", "alpha": None,
              "ensemble": False, "accuracy": float(np.mean(P_frozen.argmax(1) == yv)),
              "fit_s": None})
        for trained, n_groups in FT_TRAINED_GROUPS.items():
            clf = recipe_classifier(X, draw, wise_alpha=None, frozen_ensemble=False,
                                    callbacks=[("capture", _Capture()),
                                               ("surgical", _FreezeLeading(n_groups))])
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            module, capture = clf.net_.module_, dict(clf.net_.callbacks_)["capture"]
            for alpha in (FINE_TUNE_WISE_ALPHA, 1.0):
                module.load_state_dict(interpolate(capture.start_, capture.end_, alpha))
                P = clf.predict_proba(Xv)
                for ensemble, Q in ((False, P), (True, (P + P_frozen) / 2)):
                    emit({**row, "trained": trained, "alpha": alpha,
                          "ensemble": ensemble,
                          "accuracy": float(np.mean(Q.argmax(1) == yv)), "fit_s": fit_s})


def ft_recipe(name, emit, draws=(0, 1, 2), seeds=(0, 10)):
    """The fine-tuning recipe as ``module='auto'`` fits it, on the shifted folds.

    ``CNNClassifier(**fine_tune_recipe(...).params)`` (``frozen_ensemble=True``)
    with two training seeds per fold, scored with its partner and without it
    (the same trained network: the partner's probe draws no random number the
    training draws), beside the frozen recipe's features and head on the same
    folds (bf16, as the selection computes them).
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        row = {"experiment": "ft_recipe", "condition": name, "draw": draw}
        head, Fv = frozen_probe(X, y, Xv)
        emit({**row, "method": "frozen features", "seed": None, "fit_s": None,
              "accuracy": float(np.mean(head.predict(Fv) == yv))})
        for seed in seeds:
            clf = recipe_classifier(X, draw + seed)
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            module = clf.net_.module_
            emit({**row, "method": "recipe (frozen_ensemble)", "seed": seed,
                  "fit_s": fit_s, "accuracy": float(clf.score(Xv, yv))})
            partner = module.partner
            module.set_partner(None)
            emit({**row, "method": "recipe without the partner", "seed": seed,
                  "fit_s": fit_s, "accuracy": float(clf.score(Xv, yv))})
            module.set_partner(partner)


def with_and_without_partner(clf, Xv, yv):
    """``[(method, accuracy)]`` of a fitted fine-tuning recipe on ``(Xv, yv)``:
    with its frozen partner (``frozen_ensemble``, as it predicts) and its
    network alone (the same trained network)."""
    module = clf.net_.module_
    partner = module.partner
    scores = [("recipe (frozen_ensemble)", float(clf.score(Xv, yv)))]
    module.set_partner(None)
    try:
        scores.append(("network alone", float(clf.score(Xv, yv))))
    finally:
        module.set_partner(partner)
    return scores


#: ``ft_smooth``'s rule, set before its run: the recipe adopts label smoothing
#: if, with its partner, it beats the recipe without it paired over the 24 fits
#: by more than one standard error, and its mean is above the frozen features'.
SMOOTHING = 0.1


def ft_smooth(name, emit, draws=(0, 1, 2), seeds=(0, 10)):
    """The fine-tuning recipe with label smoothing, on the shifted folds.

    A network trained on hard labels ends near-certain on its training images;
    the mean of its probabilities and the frozen partner's is then mostly its
    own. Label smoothing (Szegedy et al., CVPR 2016; ``SMOOTHING``, timm's
    fine-tuning default) keeps it less certain. Both trainings of each fold and
    seed are scored with and without the partner, with the mean highest
    probability on the validation crops of the network alone and of the
    partner alone (the recipe's mean of probabilities is linear: the
    partner's are ``2 * mean - network``).
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        row = {"experiment": "ft_smooth", "condition": name, "draw": draw}
        for seed in seeds:
            for smoothing in (0.0, SMOOTHING):
                clf = recipe_classifier(X, draw + seed,
                                        criterion__label_smoothing=smoothing)
                start = time.perf_counter()
                clf.fit(X, y)
                fit_s = time.perf_counter() - start
                module = clf.net_.module_
                P_mean = clf.predict_proba(Xv)
                partner = module.partner
                module.set_partner(None)
                P_net = clf.predict_proba(Xv)
                module.set_partner(partner)
                P_partner = 2 * P_mean - P_net
                for method, P in (("recipe (frozen_ensemble)", P_mean),
                                  ("network alone", P_net),
                                  ("partner alone", P_partner)):
                    emit({**row, "seed": seed, "smoothing": smoothing,
                          "method": method, "fit_s": fit_s,
                          "confidence": float(P.max(1).mean()),
                          "accuracy": float(np.mean(clf.classes_[P.argmax(1)] == yv))})


#: ``ft_fixres``'s predicting sizes of the recipe's network (it trains at
#: ``FINE_TUNE_SIZE``; its partner predicts at 224 px whatever this is). Rule,
#: set before the run: the recipe predicts at a larger size if, with its
#: partner, that size beats 128 px paired over the 24 fits by more than one
#: standard error and its mean is above the frozen features'; of several, the
#: highest mean.
FIXRES_SIZES = (128, 160, 192, 224)


def ft_fixres(name, emit, draws=(0, 1, 2), seeds=(0, 10)):
    """The fine-tuning recipe predicting at larger sizes than it trained at.

    It trains on random resized crops (``crop_scale=0.6``) at 128 px, so that
    an object appears larger in training than in the whole image it predicts
    on; predicting at a higher resolution evens the apparent sizes (FixRes:
    Touvron et al., NeurIPS 2019). ``shift`` saw it with the fine-tuned weights
    alone (79.0 % at 128 px, 83.1 % at 224 px on 30 RGB crops per class), not
    with the recipe's WiSE weights and partner. One training per fold and
    seed, as ``ft_recipe`` trains it, scored at each of ``FIXRES_SIZES`` with
    its partner and without it; the frozen features on the same folds.
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        row = {"experiment": "ft_fixres", "condition": name, "draw": draw}
        head, Fv = frozen_probe(X, y, Xv)
        emit({**row, "method": "frozen features", "seed": None, "predict_px": 224,
              "fit_s": None, "accuracy": float(np.mean(head.predict(Fv) == yv))})
        for seed in seeds:
            clf = recipe_classifier(X, draw + seed)
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            resize = clf.net_.module_.adapter.resize
            trained_size = resize.size
            for px in FIXRES_SIZES:
                resize.size = (px, px)
                for method, accuracy in with_and_without_partner(clf, Xv, yv):
                    emit({**row, "method": method, "seed": seed, "predict_px": px,
                          "fit_s": fit_s, "accuracy": accuracy})
            resize.size = trained_size


#: ``ft_steps``'s training lengths (optimizer steps), the recipe's first.
#: Rule, set before the run: the recipe trains for 200 steps if, with its
#: partner, that beats 100 paired over the 24 fits by more than one standard
#: error and its mean is above the frozen features'. 200 scored lower on every
#: condition (-0.8 +- 0.4); the same rule, set before its run, for 50 steps
#: (``ft_steps_short``, which trains only those: its rows join ``ft_steps``').
FT_STEPS = (FINE_TUNE_STEPS, 2 * FINE_TUNE_STEPS, FINE_TUNE_STEPS // 2)


def ft_steps_short(name, emit):
    """``ft_steps`` for the 50-step schedule only (the others are recorded)."""
    ft_steps(name, emit, lengths=FT_STEPS[2:], frozen=False)


def ft_steps(name, emit, draws=(0, 1, 2), seeds=(0, 10), lengths=FT_STEPS[:2],
             frozen=True):
    """The fine-tuning recipe trained twice as long, on the shifted folds.

    Its 100 steps of 8 images are 23 epochs of 5 images per class but 4 of 30
    (7 classes): a longer schedule may be what the larger training sets
    lack. Each length is one one-cycle schedule (the peak learning rate
    unchanged), trained as ``ft_recipe`` trains it, scored with its partner
    and without it; the frozen features on the same folds.
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        row = {"experiment": "ft_steps", "condition": name, "draw": draw}
        if frozen:
            head, Fv = frozen_probe(X, y, Xv)
            emit({**row, "method": "frozen features", "seed": None, "steps": None,
                  "fit_s": None, "accuracy": float(np.mean(head.predict(Fv) == yv))})
        for seed in seeds:
            for steps in lengths:
                clf = recipe_classifier(X, draw + seed, steps=steps)
                start = time.perf_counter()
                clf.fit(X, y)
                fit_s = time.perf_counter() - start
                for method, accuracy in with_and_without_partner(clf, Xv, yv):
                    emit({**row, "method": method, "seed": seed, "steps": steps,
                          "fit_s": fit_s, "accuracy": accuracy})


#: ``ft_wise``'s weights of the fine-tuned weights in the recipe's final ones
#: (``wise_alpha``), the recipe's first. ``shift`` scored 0.25 above 0.5 on 30
#: RGB crops per class (87.6 against 85.7 %, the network alone, before the
#: partner and the four levels) and below it on 5. Rule, set before the run:
#: the recipe's ``wise_alpha`` becomes another value if, with its partner, that
#: value beats 0.5 paired over the 24 fits by more than one standard error and
#: its mean is above the frozen features'; of several, the highest mean.
WISE_ALPHAS = (FINE_TUNE_WISE_ALPHA, 0.25, 0.75)


def wise_weights(start, end, alpha):
    """``interpolate(start, end, alpha)`` for the tensors training changed (the
    recipe's WiSE callback leaves the frozen partner's alone)."""
    return {k: end[k] if torch.equal(start[k], end[k]) else v
            for k, v in interpolate(start, end, alpha).items()}


def ft_wise(name, emit, draws=(0, 1, 2), seeds=(0, 10)):
    """The fine-tuning recipe with other WiSE weights, on the shifted folds.

    One training per fold and seed, as ``ft_recipe`` trains it but without
    the interpolation (the weights before and after training kept), then
    scored at each of ``WISE_ALPHAS`` with its partner and without it; the
    frozen features on the same folds.
    """
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        row = {"experiment": "ft_wise", "condition": name, "draw": draw}
        head, Fv = frozen_probe(X, y, Xv)
        emit({**row, "method": "frozen features", "seed": None, "alpha": None,
              "fit_s": None, "accuracy": float(np.mean(head.predict(Fv) == yv))})
        for seed in seeds:
            clf = recipe_classifier(X, draw + seed, wise_alpha=None,
                                    callbacks=[("capture", _Capture())])
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            capture = dict(clf.net_.callbacks_)["capture"]
            for alpha in WISE_ALPHAS:
                clf.net_.module_.load_state_dict(
                    wise_weights(capture.start_, capture.end_, alpha))
                for method, accuracy in with_and_without_partner(clf, Xv, yv):
                    emit({**row, "method": method, "seed": seed, "alpha": alpha,
                          "fit_s": fit_s, "accuracy": accuracy})


#: ``singleton``'s conditions: the photo folds of ``shift`` and 3-fold CV of 10
#: color-MNIST images of 64 px per class (where ``compact_cnn`` should win).
SINGLETON_CONDITIONS = (*SHIFT_CONDITIONS, "mnist_rgb64_10pc")


def singleton(name, emit, draws=(0, 1, 2)):
    """``CNNClassifier()`` when one class of the fitting data has one image.

    The selection used to need two images in every class; ``compact_cnn``
    was trained from scratch otherwise. It now runs whenever two classes
    have two images or more, the image of a class of one trained on and
    never held out. Per fold, class ``draw % n_classes`` keeps only its first
    fitting image; both are scored on the whole validation part and on that
    class's validation images (its recall). Kept if, paired over the folds,
    the selection is not below ``compact_cnn`` by more than one standard
    error (set before the run).
    """
    for draw, (X, y, Xv, yv) in validation_folds(name, draws):
        X, Xv = nhwc(X), nhwc(Xv)
        rare = draw % len(np.unique(y))
        keep = np.sort(np.r_[np.flatnonzero(y != rare), np.flatnonzero(y == rare)[:1]])
        row = {"experiment": "singleton", "condition": name, "draw": draw, "seed": draw}
        for method, params in (("compact_cnn (before)", {"module": "compact_cnn"}),
                               ("CNNClassifier()", {})):
            clf = CNNClassifier(random_state=draw, **params)
            start = time.perf_counter()
            clf.fit(X[keep], y[keep])
            fit_s = time.perf_counter() - start
            pred = clf.predict(Xv)
            emit({**row, "method": method, "recipe": clf.recipe_, "fit_s": fit_s,
                  "accuracy": float(np.mean(pred == yv)),
                  "rare_recall": float(np.mean(pred[yv == rare] == rare))})


def mosaics(X, y, n, rng, max_labels=2):
    """``n`` multi-label images of 2 x 2 tiles from ``X`` and their 0/1 ``Y``.

    Each image shows 1 to ``max_labels`` classes of ``y`` (drawn at random),
    its four tiles drawn from images of those classes, each class at least
    once; its labels are those classes.
    """
    classes = np.unique(y)
    members = [np.flatnonzero(y == c) for c in classes]
    images, Y = [], np.zeros((n, len(classes)), np.int64)
    for i in range(n):
        shown = rng.choice(len(classes), rng.randint(1, max_labels + 1), replace=False)
        tiles = [X[rng.choice(members[shown[t % len(shown)]])] for t in rng.permutation(4)]
        images.append(np.concatenate([np.concatenate(tiles[:2], 1),
                                      np.concatenate(tiles[2:], 1)], 0))
        Y[i, shown] = 1
    return np.stack(images), Y


#: ``multilabel``'s conditions: mosaics of photo crops (the shifted folds of
#: ``shift``: 32 px RGB and 64 px gray tiles, 30 crops per class to draw
#: from) and of color-MNIST digits (3-fold CV of 300 images of the 64 px
#: training part, tiles at 32 px).
MULTILABEL_CONDITIONS = {"mosaic_photos_rgb64": (30, 32, False),
                         "mosaic_photos_gray128": (30, 64, True),
                         "mosaic_mnist_rgb64": None}


def multilabel_folds(name, draws):
    """``(draw, (M, Y, M_valid, Y_valid))``: 150 fitting and 150 validation
    mosaics per fold (300 fitting ones of digits), tiles from disjoint images."""
    spec = MULTILABEL_CONDITIONS[name]
    if spec is not None:
        parts = [(draw, shifted_fold(*spec, draw)) for draw in draws]
        n_fit = 150
    else:
        from PIL import Image

        X, y = acc.per_class_subset(*CONDITIONS["mnist_rgb64"](), 30)
        X = np.stack([np.asarray(Image.fromarray(x).resize((32, 32), Image.BILINEAR))
                      for x in X])
        parts = [(i, (X[tr], y[tr], X[va], y[va]))
                 for i, (tr, va) in enumerate(folds(y, k=3)) if i in draws]
        n_fit = 300
    out = []
    for draw, (X, y, Xv, yv) in parts:
        rng = np.random.RandomState(3000 + draw)
        out.append((draw, (*mosaics(nhwc(X), y, n_fit, rng),
                           *mosaics(nhwc(Xv), yv, 150, rng))))
    return out


def multilabel(name, emit, draws=(0, 1, 2)):
    """``CNNClassifier()`` on a multi-label ``y``: the selection (frozen features
    with a logistic regression per label, or ``compact_cnn``; new) against
    ``compact_cnn`` from scratch, which ran without a selection before.
    Subset accuracy (``score``) and the samples-averaged F1 on the validation
    mosaics. Kept if, paired over the folds, the selection's subset accuracy
    is not below ``compact_cnn``'s by more than one standard error (set
    before the run).
    """
    from sklearn.metrics import f1_score

    for draw, (M, Y, Mv, Yv) in multilabel_folds(name, draws):
        row = {"experiment": "multilabel", "condition": name, "draw": draw, "seed": draw}
        for method, params in (("compact_cnn (before)", {"module": "compact_cnn"}),
                               ("CNNClassifier()", {})):
            clf = CNNClassifier(random_state=draw, **params)
            start = time.perf_counter()
            clf.fit(M, Y)
            fit_s = time.perf_counter() - start
            pred = clf.predict(Mv)
            emit({**row, "method": method, "recipe": clf.recipe_, "fit_s": fit_s,
                  "accuracy": float(np.mean((pred == Yv).all(1))),
                  "f1_samples": float(f1_score(Yv, pred, average="samples",
                                               zero_division=0))})


def one_shot(name, emit, draws=(0, 1, 2)):
    """One image per class: ``compact_cnn`` from scratch (what ``CNNClassifier()``
    trains when no two classes have two images, as nothing can be held out)
    against the frozen features' linear head (the simplest candidate, which
    the selection's rule keeps when nothing beats it), on the folds of
    ``singleton`` with only the first fitting image of each class. Rule, set
    before the run: ``CNNClassifier()`` falls back to the simplest candidate
    if, paired over the 15 folds, the frozen features beat ``compact_cnn`` by
    more than one standard error.
    """
    for draw, (X, y, Xv, yv) in validation_folds(name, draws):
        X, Xv = nhwc(X), nhwc(Xv)
        first = np.sort([np.flatnonzero(y == c)[0] for c in np.unique(y)])
        X, y = X[first], y[first]
        row = {"experiment": "one_shot", "condition": name, "draw": draw, "seed": draw}
        clf = CNNClassifier(random_state=draw)
        start = time.perf_counter()
        clf.fit(X, y)
        emit({**row, "method": "compact_cnn (before)", "recipe": clf.recipe_,
              "fit_s": time.perf_counter() - start,
              "accuracy": float(clf.score(Xv, yv))})
        start = time.perf_counter()
        head, Fv = frozen_probe(X, y, Xv)
        emit({**row, "method": "CNNClassifier()", "recipe": "frozen_features",
              "fit_s": time.perf_counter() - start,
              "accuracy": float(np.mean(head.predict(Fv) == yv))})


def frozen_precision(name, emit, draws=(0, 1, 2)):
    """The frozen recipe's features and head in bf16 (what ``fit`` computes on a
    CPU with native bf16) and in fp32, on the shifted folds: how much of the
    differences between recipes there is rounding."""
    for draw in draws:
        X, y, Xv, yv = shifted_nhwc(name, draw)
        for precision in ("bf16", "fp32"):
            head, Fv = frozen_probe(X, y, Xv, precision)
            emit({"experiment": "frozen_precision", "condition": name, "draw": draw,
                  "precision": precision, "C": head.C, "fit_s": None,
                  "accuracy": float(np.mean(head.predict(Fv) == yv))})


def ft_size(name, emit, draws=(0, 1, 2)):
    """LP-FT trained at the frozen features' 224 px instead of 128, on the shifted
    folds: whether the resolution is what keeps fine-tuning below the frozen
    features (the recipe's other settings, ``module__levels=4`` included)."""
    per_class, size, gray = SHIFT_CONDITIONS[name]
    for draw in draws:
        X, y, Xv, yv = shifted_fold(per_class, size, gray, draw)
        X, Xv = nhwc(X), nhwc(Xv)
        scores = {alpha: (accuracy, fit_s)  # trained at 224 px: both views alike
                  for alpha, _, accuracy, fit_s in lp_ft_scores(
                      X, y, Xv, yv, draw, (0.0, FINE_TUNE_WISE_ALPHA, 1.0),
                      wise_alpha=None, module__input_size=224)}
        for alpha, (accuracy, fit_s) in scores.items():
            emit({"experiment": "ft_size", "condition": name, "draw": draw,
                  "input_px": 224, "alpha": alpha, "accuracy": accuracy, "fit_s": fit_s})


#: The selection rules compared by ``rule``: recipes ordered simplest first
#: (frozen features, compact_cnn, fine-tuning); each returns the chosen index.
def _refinement_rule(recipes, accuracies, order, n_valid):
    """The first of ``order`` that is not fine-tuning within one error of its features."""
    names = [r.name for r in recipes]
    for i in order:
        if names[i] == "fine_tune" and "frozen_features" in names and accuracies[
                names.index("frozen_features")] >= accuracies[i] - selection_standard_error(
                    accuracies[i], n_valid):
            continue
        return i
    return order[0]


def _rule_log_loss(recipes, accuracies, losses, n_valid):
    """The rule before: accuracy, then log-loss; fine-tuning by one error."""
    order = sorted(range(len(recipes)), key=lambda i: (-accuracies[i], losses[i]))
    return _refinement_rule(recipes, accuracies, order, n_valid)


def _rule_simplest_equal(recipes, accuracies, losses, n_valid):
    """Accuracy, equal ones to the simplest; fine-tuning by one error."""
    order = sorted(range(len(recipes)), key=lambda i: -accuracies[i])
    return _refinement_rule(recipes, accuracies, order, n_valid)


def standard_error(accuracy, n_valid):
    """Standard error of a held-out accuracy, two successes and two failures added
    (Agresti and Coull): the one-standard-error rule's, the selection's before
    McNemar's test."""
    p = (n_valid * accuracy + 2) / (n_valid + 4)
    return math.sqrt(p * (1 - p) / n_valid)


def one_se_choice(accuracies, n_valid):
    """The simplest (first) within one standard error of the best; NaN: not trained."""
    trained = [i for i, a in enumerate(accuracies) if not math.isnan(a)]
    best = max(trained, key=accuracies.__getitem__)
    bar = accuracies[best] - standard_error(accuracies[best], n_valid)
    return next(i for i in trained if accuracies[i] >= bar)


def _rule_one_se(recipes, accuracies, losses, n_valid):
    """The simplest within one standard error of the best."""
    return one_se_choice(accuracies, n_valid)


selection_standard_error = standard_error


RULES = {"accuracy, then log-loss (before)": _rule_log_loss,
         "accuracy, equal ones to the simplest": _rule_simplest_equal,
         "simplest within one standard error of the best": _rule_one_se}


def rule(name, emit, draws=(0, 1, 2)):
    """Selection rules judged on validation data the selection never sees.

    Photos: the shifted folds of ``shift`` (fit on the fitting crops, score on
    the shifted validation crops); digits and MNIST: 3-fold CV of the suite's
    training part. Each fold runs the selection once with every candidate
    trained (``_cannot_win`` off), then refits, as ``fit`` does, the recipe
    each rule chooses from those held-out scores, and scores it.
    """
    import skimgcls._selection as selection

    with every_candidate_trained(min_side=8) as run:  # digits and MNIST compared too
        for draw, (X, y, Xv, yv) in validation_folds(name, draws):
            chosen, recipes = run.select(X, y, draw)
            res = chosen.results
            picks = {label: fn(recipes, res["valid_score"], res["valid_log_loss"],
                               chosen.n_valid) for label, fn in RULES.items()}
            scores = {index: run.refit_score(recipes[index], X, y, Xv, yv, draw)
                      for index in sorted(set(picks.values()))}
            for label, index in picks.items():
                emit({"experiment": "rule", "condition": name, "draw": draw,
                      "rule": label + (" + buffer" if selection.SELECT_BUFFER else ""),
                      "recipe": recipes[index].name, "accuracy": scores[index],
                      "n_valid": chosen.n_valid, "valid_scores": res["valid_score"]})


def _nan(values):
    return [math.nan if v is None else v for v in values]


def _select_one_se(row):
    """The simplest within one standard error of the best accuracy (the rule before)."""
    return one_se_choice(_nan(row["valid_scores"]), row["n_valid"])


def _select_one_se_and_loss(row):
    """The same, or a held-out log-loss no higher than the best's: a more complex
    recipe must win on both."""
    accuracies, losses = _nan(row["valid_scores"]), _nan(row["valid_log_loss"])
    trained = [i for i, a in enumerate(accuracies) if not math.isnan(a)]
    best = max(trained, key=accuracies.__getitem__)
    bar = accuracies[best] - standard_error(accuracies[best], row["n_valid"])
    return next(i for i in trained if accuracies[i] >= bar or losses[i] <= losses[best])


def _select_log_loss(row):
    """The simplest recipe whose held-out log-loss is within 10 % of the lowest."""
    losses = _nan(row["valid_log_loss"])
    trained = [i for i, v in enumerate(losses) if not math.isnan(v)]
    low = min(losses[i] for i in trained)
    return next(i for i in trained if losses[i] <= 1.1 * low)


def _select_mcnemar(row):
    """The simplest recipe that no other significantly beats (McNemar, 5 %)."""
    from skimgcls._selection import _choose

    correct = [None if c is None or math.isnan(a)  # None inside: not scored there
               else np.array([np.nan if v is None else v for v in c], float)
               for c, a in zip(row["correct"], _nan(row["valid_scores"]))]
    return _choose(correct, np.ones(row["n_valid"]))


SELECT_RULES = {
    "simplest within one standard error of the best accuracy": _select_one_se,
    "the same, or a log-loss no higher than the best's": _select_one_se_and_loss,
    "simplest with a log-loss within 10 % of the lowest": _select_log_loss,
    "simplest that no other beats significantly (McNemar, 5 %)": _select_mcnemar,
}


def select_all(name, emit, draws=(0, 1, 2)):
    """Every candidate's held-out scores in the selection and its accuracy, refit as
    ``fit`` refits it, on shifted folds cut along both axes of the training region
    (photos) or 3-fold CV of the training part (the others).

    Any selection rule can then be judged offline (``SELECT_RULES``): its pick's
    refit accuracy on validation crops the selection never saw. The test region
    is never read.
    """
    if name in SHIFT_CONDITIONS:
        per_class, size, gray = SHIFT_CONDITIONS[name]
        folds_ = [(axis, draw, shifted_fold(per_class, size, gray, draw, axis=axis))
                  for axis in ("x", "y") for draw in draws]
    else:  # 3-fold CV of the training part
        folds_ = [("cv", i, fold) for i, fold in validation_folds(name, draws)]
    with every_candidate_trained() as run:
        for axis, draw, (X, y, Xv, yv) in folds_:
            chosen, recipes = run.select(X, y, draw)
            res = chosen.results
            emit({"experiment": "select_all", "condition": name, "axis": axis, "draw": draw,
                  "recipes": [r.name for r in recipes],
                  "n_valid": chosen.n_valid, "valid_scores": res["valid_score"],
                  "valid_log_loss": res["valid_log_loss"], "steps": res["steps"],
                  "refit": [run.refit_score(r, X, y, Xv, yv, draw) for r in recipes],
                  "n_folds": chosen.n_folds,
                  "correct": [None if c is None else
                              [None if np.isnan(v) else int(v) for v in np.asarray(c, float)]
                              for c in chosen.correct]})


class _EveryCandidate:
    """What ``every_candidate_trained`` yields: a selection, then refits of its recipes."""

    def __init__(self, found, caches):
        self.found, self.caches = found, caches

    def select(self, X, y, seed):
        """Fit ``CNNClassifier(random_state=seed)``; its Selection and its candidates."""
        import skimgcls.classifier as classifier

        classifier.select_recipe = self.found["wrapper"]
        CNNClassifier(random_state=seed).fit(X, y)
        return self.found["selection"], self.found["recipes"]

    def refit_score(self, recipe, X, y, Xv, yv, seed):
        """Refit ``recipe`` as ``fit`` refits the winner of the last selection; its
        accuracy on ``(Xv, yv)``."""
        from dataclasses import replace

        import skimgcls.classifier as classifier

        entry = self.caches["cache"].get(recipe.name, {})
        fixed = replace(self.found["selection"], recipe=recipe,
                        features=entry.get("features"), body_state=entry.get("body_state"))
        classifier.select_recipe = lambda *a, **k: fixed
        try:
            return float(CNNClassifier(random_state=seed).fit(X, y).score(Xv, yv))
        finally:
            classifier.select_recipe = self.found["wrapper"]


@contextlib.contextmanager
def every_candidate_trained(min_side=None):
    """Inside, ``CNNClassifier``'s selection trains every candidate (``_cannot_win``
    off) and keeps what it found; yields an ``_EveryCandidate``. ``min_side``
    overrides ``MIN_PRETRAINED_SIDE``. Everything is restored on the way out."""
    import skimgcls._selection as selection
    import skimgcls.classifier as classifier

    saved = (classifier.select_recipe, selection._features, selection._cannot_win,
             selection.MIN_PRETRAINED_SIDE)
    real_select, real_features = saved[0], saved[1]
    found, caches = {}, {}

    def features(recipe, X, cache, **kwargs):
        caches["cache"] = cache
        return real_features(recipe, X, cache, **kwargs)

    def select(*args, **kwargs):
        found["selection"], found["recipes"] = real_select(*args, **kwargs), args[4]
        return found["selection"]

    found["wrapper"] = select
    selection._cannot_win = lambda *args: False
    selection._features = features
    if min_side is not None:
        selection.MIN_PRETRAINED_SIDE = min_side
    classifier.select_recipe = select
    try:
        yield _EveryCandidate(found, caches)
    finally:
        (classifier.select_recipe, selection._features, selection._cannot_win,
         selection.MIN_PRETRAINED_SIDE) = saved


def neighbourhood_folds(features, y, k, rng):
    """Fold index per image: in each class, ``k`` neighbourhoods in the features.

    The K-fold version of the selection's held-out part
    (``_neighbourhood_split``): repeatedly, a random remaining image and its
    nearest remaining neighbours (cosine distance) form the next fold's part
    of the class, ``n_c / k`` images each.
    """
    unit = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        sizes = [len(members) // k + (i < len(members) % k) for i in range(k)]
        for f in rng.permutation(k):
            distance = 1 - unit[members] @ unit[members[0]]
            order = members[np.argsort(distance, kind="stable")]
            fold[order[:sizes[f]]] = f
            members = order[sizes[f]:]
    return fold


def kfold(name, emit, draws=(0, 1, 2)):
    """The selection between the frozen features and ``compact_cnn`` held out on
    K = 5 folds of the fitting data (every image held out once) instead of one
    fifth, on 3-fold CV of the training part.

    Where the training data are few (10 color-MNIST images per class: 13
    held-out images), McNemar's test on one fifth cannot tell the recipes
    apart and keeps the simpler one. Pooled over 5 folds it sees every image,
    at 5x the training cost. Both fold kinds (stratified random, and
    ``neighbourhood_folds``); ``first fold only`` is the product's single
    held-out part. Each pick's refit accuracy on the CV validation part.
    """
    from sklearn.model_selection import StratifiedKFold

    import skimgcls._selection as selection

    for draw, (X, y, Xv, yv) in validation_folds(name, draws):
        X, Xv = nhwc(X), nhwc(Xv)
        net = lite0(X, levels=selection.FROZEN_LEVELS)
        F, Fv = (embed(net, A, device="cpu", precision="bf16") for A in (X, Xv))
        ones = np.ones(len(y))
        refit = [float(np.mean(fit_linear_head(F, y, ones).predict(Fv) == yv)),
                 float(CNNClassifier(module="compact_cnn", pretrained=False,
                                     random_state=draw).fit(X, y).score(Xv, yv))]
        k = min(5, int(np.bincount(y).min()))
        for kind in ("random", "neighbourhood"):
            if kind == "random":
                fold = np.empty(len(y), int)
                splits = StratifiedKFold(k, shuffle=True, random_state=draw).split(y, y)
                for f, (_, va) in enumerate(splits):
                    fold[va] = f
            else:
                fold = neighbourhood_folds(F, y, k, np.random.RandomState(draw))
            right = np.zeros((2, len(y)), bool)
            rng, start = np.random.RandomState(draw), time.perf_counter()
            for f in range(k):
                tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                right[0, va] = fit_linear_head(F[tr], y[tr], ones[tr]).predict(F[va]) == y[va]
                (_, _, right[1, va]), _, _ = selection._score_trained(
                    CNNClassifier(random_state=draw), selection.scratch_recipe(), X, y,
                    ones, tr, va, rng)
            seconds = time.perf_counter() - start
            for held, mask in (("first fold only", fold == 0), ("all folds", fold >= 0)):
                correct = [right[0, mask], right[1, mask]]
                chosen = selection._choose(correct, ones[mask])
                emit({"experiment": "kfold", "condition": name, "draw": draw,
                      "folds": kind, "held_out": held, "n_held_out": int(mask.sum()),
                      "held_out_accuracy": [float(c.mean()) for c in correct],
                      "discordant": selection._discordant(*correct, ones[mask]),
                      "pick": ["frozen_features", "compact_cnn"][chosen],
                      "refit": refit, "accuracy": refit[chosen],
                      "compact_fit_s": seconds if held == "all folds" else seconds / k})


#: Conditions of ``rules``: the five the former version of this script fixed
#: the ``'auto'`` rules on (with their test parts), and MNIST 4,000.
RULES_CONDITIONS = ("digits_5", "digits_20", "mnist_50", "mnist_500", "mnist_4000",
                    "mnist_imbalanced")


def _accuracy(y_true, y_pred):
    return float(np.mean(y_true == y_pred))


def _epochs_for(steps, n_train, batch_size):
    """``max_epochs='auto'`` with another step budget (same bounds)."""
    per_epoch = math.ceil(n_train / batch_size)
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(steps / per_epoch))))


def _rule_variants(name, n_train, n_classes=10):
    """``(label, params)`` of ``rules``: the defaults, then one rule changed at a time."""
    auto_b = auto_batch_size(n_train)
    out = [("defaults", {}),
           ("250 steps", {"max_epochs": _epochs_for(250, n_train, auto_b)}),
           ("1,000 steps", {"max_epochs": _epochs_for(1000, n_train, auto_b)})]
    for b in (8, 16, 32, 64):
        if b != auto_b and b <= n_train // 2:
            out.append((f"batch {b}", {"batch_size": b,
                                       "max_epochs": _epochs_for(AUTO_STEPS, n_train, b)}))
    fraction = max(0.1, n_classes / n_train)  # one image per class at least
    out += [("10 % held out, early stopping", {"validation_fraction": fraction,
                                                "early_stopping": True}),
            ("update_bn=False", {"update_bn": False})]
    if name == "mnist_imbalanced":
        out.append(("class_weight='balanced'", {"class_weight": "balanced"}))
    if n_train >= 2000:  # the floor of 8 epochs sets the budget there
        out += [("12 epochs", {"max_epochs": 12}),
                ("batch 64, 12 epochs", {"batch_size": 64, "max_epochs": 12}),
                ("batch 64, 16 epochs", {"batch_size": 64, "max_epochs": 16})]
    # A budget that the epoch bounds make the same as an earlier one is not
    # trained twice (on 2,667 images 250, 500 and 1,000 steps are all 8 epochs).
    same = {"batch_size": auto_b, "max_epochs": _epochs_for(AUTO_STEPS, n_train, auto_b)}
    seen, kept = [], []
    for label, params in out:
        effective = {**same, **params}
        if effective not in seen:
            seen.append(effective)
            kept.append((label, params))
    return kept


def rules(name, X, y, emit, seeds=(0, 1)):
    """3-fold CV of ``compact_cnn``'s ``'auto'`` rules, one changed at a time.

    The rules (``AUTO_STEPS`` = 500 optimizer steps, at least ``AUTO_MIN_EPOCHS``
    = 8 epochs; batch ``n / 8`` as a power of two in [8, 32]; no validation
    split below 10,000 images; ``update_bn=True``; ``class_weight=None``)
    against 250 and 1,000 steps, fixed batch sizes, a 10 % held-out part with
    early stopping, no BatchNorm recalibration, balanced class weights on the
    imbalanced condition and, from 2,000 images where 8 epochs set the budget,
    12 and 16 epochs. Scored with accuracy (balanced accuracy on the
    imbalanced condition), with the seconds of each fit and, on the same
    fold, of the classic PyTorch MNIST example (``acc.reference_loop``, 5
    epochs fp32), the time target of the MNIST 4,000 condition.
    """
    from sklearn.metrics import balanced_accuracy_score

    metric = balanced_accuracy_score if name == "mnist_imbalanced" else _accuracy
    for seed in seeds:
        for fold, (tr, va) in enumerate(folds(y, k=3, seed=seed)):
            reference_s = None
            if len(tr) >= 2000:
                reference_s = acc.reference_loop((X[tr], y[tr], X[va], y[va]), seed)["fit_s"]
            for label, params in _rule_variants(name, len(tr), len(np.unique(y))):
                emit(_rule_fit(name, seed, fold, label, params, X, y, tr, va, metric,
                               reference_s))


def _rule_fit(condition, seed, fold, label, params, X, y, tr, va, metric, reference_s):
    """One ``rules`` row: ``CNNClassifier(**params)`` fitted on ``tr``, scored on ``va``."""
    clf = CNNClassifier(random_state=seed, **params)
    start = time.perf_counter()
    clf.fit(X[tr], y[tr])
    fit_s = time.perf_counter() - start
    return {"experiment": "rules", "condition": condition, "seed": seed, "fold": fold,
            "variant": label, "n_train": len(tr), "batch_size": int(clf.batch_size_),
            "max_epochs": int(clf.max_epochs_),
            "score": float(metric(y[va], clf.predict(X[va]))), "fit_s": fit_s,
            "reference_s": reference_s, "load": os.getloadavg()[0]}


#: The early-stopping variant of ``rules`` (its label there) and ``rules_es``'s.
ES_BEFORE = "10 % held out, early stopping"
ES_AFTER = "10 % held out, early stopping after the warm-up"
ES_NONE = "10 % held out, no early stopping"


def rules_es(name, X, y, emit, seeds=(0, 1)):
    """The early-stopping variant of ``rules`` again, with this release's early
    stopping (``EarlyStoppingAfterWarmup``: it does not watch during the
    one-cycle warm-up), on the same folds and seeds; with the defaults rerun
    to show that the rest of the fit is the same as in ``rules``, and the same
    held-out part without early stopping (what the split alone costs)."""
    for seed in seeds:
        for fold, (tr, va) in enumerate(folds(y, k=3, seed=seed)):
            variants = dict(_rule_variants(name, len(tr), len(np.unique(y))))
            split_only = {**variants[ES_BEFORE], "early_stopping": False}
            for label, params in (("defaults (rerun)", variants["defaults"]),
                                  (ES_AFTER, variants[ES_BEFORE]),
                                  (ES_NONE, split_only)):
                emit({**_rule_fit(name, seed, fold, label, params, X, y, tr, va,
                                  _rules_metric(name), None), "experiment": "rules_es"})


#: ``es_patience``'s patience fractions: early stopping waits
#: ``max(5, ceil(fraction * max_epochs))`` epochs. Rule, set before the run:
#: ``patience='auto'`` becomes that with the smallest fraction whose mean paired
#: difference from patience 5 over the 24 fits (4 conditions x 3 folds x 2
#: seeds) is positive by more than one standard error, with no condition's
#: mean below patience 5's by more than its standard error; if none passes,
#: patience stays 5.
ES_PATIENCE_FRACTIONS = (0.1, 0.25)
ES_PATIENCE_CONDITIONS = ("digits_5", "digits_20", "mnist_50", "mnist_500")


def es_patience(name, X, y, emit, seeds=(0, 1)):
    """Early stopping's patience as a share of the epochs, on ``rules``' folds.

    With a few dozen images an epoch is a few optimizer steps, and ``'auto'``
    trains 100-170 of them: 5 epochs without a lower validation loss (10
    images held out, one per class) pass by chance soon after the warm-up,
    while the learning rate is at its peak, and the weights restored are
    those of that part of the schedule (``rules_es``: 12 and 11 points below
    the same split without early stopping on digits 5 and MNIST 50). On a
    large set, where 8 epochs are the budget, 5 is most of the schedule. This
    fits the ``rules_es`` early-stopping variant (patience 5) and the same
    with patience ``max(5, ceil(fraction * max_epochs))`` for each of
    ``ES_PATIENCE_FRACTIONS``, with the same split without early stopping and
    ``early_stopping=True`` alone (no split below 10,000 images: it watches
    the training loss), on the same folds and seeds.
    """
    for seed in seeds:
        for fold, (tr, va) in enumerate(folds(y, k=3, seed=seed)):
            variants = dict(_rule_variants(name, len(tr), len(np.unique(y))))
            es = variants[ES_BEFORE]
            first = _rule_fit(name, seed, fold, ES_AFTER, es, X, y, tr, va,
                              _rules_metric(name), None)
            fits = [first]
            for fraction in ES_PATIENCE_FRACTIONS:
                patience = max(5, math.ceil(fraction * first["max_epochs"]))
                fits.append(_rule_fit(
                    name, seed, fold, f"{ES_AFTER}, patience {fraction:.0%} of the epochs",
                    {**es, "patience": patience}, X, y, tr, va, _rules_metric(name), None))
            fits.append(_rule_fit(name, seed, fold, ES_NONE,
                                  {**es, "early_stopping": False}, X, y, tr, va,
                                  _rules_metric(name), None))
            fits.append(_rule_fit(name, seed, fold, "early_stopping=True alone",
                                  {"early_stopping": True}, X, y, tr, va,
                                  _rules_metric(name), None))
            for row in fits:
                emit({**row, "experiment": "es_patience"})


def es_patience_auto(name, X, y, emit, seeds=(0, 1)):
    """After ``patience='auto'`` was adopted: its two early-stopping variants of
    ``es_patience`` with this release's default patience, on the same folds and
    seeds (the split one must repeat the 10 % rows; the other, watching the
    training loss, is what ``early_stopping=True`` alone does on a few
    images)."""
    for seed in seeds:
        for fold, (tr, va) in enumerate(folds(y, k=3, seed=seed)):
            es = dict(_rule_variants(name, len(tr), len(np.unique(y))))[ES_BEFORE]
            for label, params in ((f"{ES_AFTER}, patience 'auto'", es),
                                  ("early_stopping=True alone, patience 'auto'",
                                   {"early_stopping": True})):
                emit({**_rule_fit(name, seed, fold, label, params, X, y, tr, va,
                                  _rules_metric(name), None), "experiment": "es_patience"})


def _rules_metric(name):
    from sklearn.metrics import balanced_accuracy_score

    return balanced_accuracy_score if name == "mnist_imbalanced" else _accuracy


def rules_large(name, X, y, emit, seed=0):
    """5-fold CV (3,200 of the 4,000 MNIST images train) of the large-set budget.

    The 3-fold folds of ``rules`` train on 2,667 images, where 500 steps of
    batch 64 are 12 epochs; on 4,000 they are 8. This trains the defaults
    (8 epochs of batch 32) against batch 64 for 8, 10 and 12 epochs on folds
    closer to the full set, timing the classic example on each fold.
    """
    for fold, (tr, va) in enumerate(folds(y, k=5, seed=seed)):
        reference_s = acc.reference_loop((X[tr], y[tr], X[va], y[va]), seed)["fit_s"]
        for label, params in [("defaults", {}),
                              ("batch 64, 8 epochs", {"batch_size": 64, "max_epochs": 8}),
                              ("batch 64, 10 epochs", {"batch_size": 64, "max_epochs": 10}),
                              ("batch 64, 12 epochs", {"batch_size": 64, "max_epochs": 12})]:
            emit(_rule_fit(f"{name} (5 folds)", seed, fold, label, params, X, y, tr, va,
                           _accuracy, reference_s))


def rules_cost(name, X, y, emit, sizes=(1000, 200)):
    """Seconds of a default fit with ``AUTO_STEPS`` = 500 and 1,000, alternating.

    On color MNIST 64 px (the suite's training part, 1,000 images and 20 per
    class), where the selection trains ``compact_cnn`` once per held-out part
    and again in the refit: whether a 1,000-step budget keeps a fit within 30 s.
    """
    import skimgcls._build as build

    default = build.AUTO_STEPS
    try:
        for n in sizes:
            Xn, yn = (X, y) if n >= len(y) else acc.per_class_subset(X, y, n // 10)
            for steps in (500, 1000, 500, 1000):
                build.AUTO_STEPS = steps
                clf = CNNClassifier(random_state=0)
                start = time.perf_counter()
                clf.fit(Xn, yn)
                emit({"experiment": "rules_cost", "condition": name, "n": len(yn),
                      "steps": steps, "recipe": clf.recipe_,
                      "max_epochs": int(clf.max_epochs_),
                      "fit_s": time.perf_counter() - start,
                      "load": os.getloadavg()[0]})
    finally:
        build.AUTO_STEPS = default


#: Conditions of ``augment``: the from-scratch network's (images under 32 px).
AUGMENT_CONDITIONS = ("digits_5", "digits_20", "mnist_500", "mnist_4000")


def augment(name, X, y, emit, seed=0, only=None):
    """3-fold CV of the training part: ``compact_cnn`` with and without augmentation.

    The ``'auto'`` budget either way (and 12 or 16 epochs with augmentation
    from 2,000 images, where the budget is 8 epochs); the augmentation is
    ``RandomAugment()``'s default geometry (rotation up to 10 degrees,
    translation and zoom up to 10 %, no flips: digits are not symmetric).
    Informs whether ``compact_cnn`` augments by default.
    """
    from skimgcls import RandomAugment

    variants = [("none", None, "auto"), ("RandomAugment()", RandomAugment(), "auto")]
    if len(y) >= 2000:  # the 'auto' budget is its floor of 8 epochs there
        variants += [("RandomAugment(), 12 epochs", RandomAugment(), 12),
                     ("RandomAugment(), 16 epochs", RandomAugment(), 16)]
    for how, aug, epochs in variants:
        if only and how not in only:
            continue
        scores, fit_s = [], []
        for tr, va in folds(y, k=3, seed=seed):
            clf = CNNClassifier("compact_cnn", pretrained=False, augment=aug,
                                max_epochs=epochs, random_state=seed)
            start = time.perf_counter()
            clf.fit(X[tr], y[tr])
            fit_s.append(time.perf_counter() - start)
            scores.append(float(clf.score(X[va], y[va])))
        emit({"experiment": "augment", "condition": name, "augment": how,
              "cv_scores": scores, "fit_s": fit_s})


def _grouped(rows, key):
    """``rows`` grouped by ``key(row)``, in order of first appearance."""
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def _mean_and_each(accuracies):
    """Table cells ``mean | each, ...`` of accuracies, in %."""
    return (f"{100 * statistics.fmean(accuracies):.1f} | "
            f"{', '.join(f'{100 * v:.1f}' for v in accuracies)}")


def _draw_table(rows, keys):
    """Table lines of per-draw rows: the ``keys`` of each group, the mean and each
    accuracy, the mean fit seconds (``-`` for a missing key or fit)."""
    lines = []
    for key, rs in _grouped(rows, lambda r: tuple(r[k] for k in keys)).items():
        cells = ["-" if v is None else format(v, "g") if isinstance(v, float) else str(v)
                 for v in key]
        fit = ("-" if rs[0]["fit_s"] is None
               else f"{statistics.fmean(r['fit_s'] for r in rs):.1f}")
        lines.append(f"| {' | '.join(cells)} | "
                     f"{_mean_and_each([r['accuracy'] for r in rs])} | {fit} |")
    return lines


def _draw_section(rows, title, text, columns, per="per draw"):
    """A report section of per-draw rows (none if there are no rows): a heading,
    ``text`` and the ``_draw_table`` of the ``columns`` (row key -> column label)."""
    if not rows:
        return []
    labels = [*columns.values(), "accuracy", per, "fit s"]
    return (["", f"## {title}", "", text, "", f"| {' | '.join(labels)} |",
             "|" + "---|" * len(labels)] + _draw_table(rows, tuple(columns)))


def _mean_accuracy(rows):
    """The mean ``accuracy`` of ``rows`` in %, one decimal."""
    return f"{100 * statistics.fmean(r['accuracy'] for r in rows):.1f}"


def _mean_se(values):
    """``mean +- standard error`` of ``values`` (points), signed."""
    return (f"{statistics.fmean(values):+.1f} +- "
            f"{statistics.stdev(values) / math.sqrt(len(values)):.1f}")


def _fit(row):
    """The fold and training seed of a row: what paired differences pair on."""
    return row["condition"], row["draw"], row["seed"]


def _paired_line(label, rows, base_rows):
    """``- label, paired: mean +- SE`` of the accuracy of ``rows`` minus that of
    ``base_rows`` of the same fit, in points (no line below two pairs)."""
    base = {_fit(r): r["accuracy"] for r in base_rows}
    diffs = [100 * (r["accuracy"] - base[_fit(r)]) for r in rows if _fit(r) in base]
    if len(diffs) < 2:
        return []
    return [f"- {label}, paired: {_mean_se(diffs)} (SE, {len(diffs)} fits)"]


def _variant_section(rows, title, text, variant, label, values, unit,
                     with_cost=False):
    """A report section of rows of the fine-tuning recipe trained or scored
    with ``variant`` (a row key) set to each of ``values`` (the first the
    recipe's): its ``_draw_section``, the means, and each other value minus the
    first, paired, with the partner and without."""
    lines = _draw_section(rows, title, text, {"condition": "condition",
                                              "method": "method", variant: label},
                          per="per draw and seed")
    if not rows:
        return lines
    cells = _grouped(rows, lambda r: (r["method"], r[variant]))
    suffix = f" {unit}" if unit else ""
    lines += ["", "Mean over the 4 conditions x 3 draws (x 2 seeds):", ""]
    for (method, value), rs in cells.items():
        fit_s = [r["fit_s"] for r in rs if r["fit_s"] is not None]
        cost = f", fit {statistics.fmean(fit_s):.1f} s" if with_cost and fit_s else ""
        what = method if value is None else f"{method}, {value}{suffix}"
        lines.append(f"- {what}: {_mean_accuracy(rs)} %{cost}")
    for method in ("recipe (frozen_ensemble)", "network alone"):
        for value in values[1:]:
            lines += _paired_line(f"{method}, {value} minus {values[0]}{suffix}",
                                  cells.get((method, value), []),
                                  cells.get((method, values[0]), []))
    return lines


def _against_compact_cnn(rows, title, text, scores):
    """A report section of ``CNNClassifier()`` against ``compact_cnn (before)``
    (the ``method`` of each row) on the same folds: the ``_draw_section``, each
    method's ``scores(rows)`` and the recipes it chose, and the paired
    difference of accuracies."""
    lines = _draw_section(rows, title, text, {"condition": "condition", "method": "method"},
                          per="per fold")
    if not rows:
        return lines
    cells = _grouped(rows, lambda r: r["method"])
    lines.append("")
    for method, rs in cells.items():
        recipes = ", ".join(sorted({str(r["recipe"]) for r in rs}))
        lines.append(f"- {method}: {scores(rs)} (recipes: {recipes})")
    return lines + _paired_line("CNNClassifier() minus compact_cnn (before)",
                                cells.get("CNNClassifier()", []),
                                cells.get("compact_cnn (before)", []))


def _rules_report(rows, base="defaults"):
    """The ``rules`` section: per condition, each variant against the defaults
    (the variant ``base``)."""
    lines = ["", "## The 'auto' rules of compact_cnn (informs `AUTO_STEPS`, "
             "`AUTO_MIN_EPOCHS`, `auto_batch_size`, `AUTO_VALIDATION_MIN_SAMPLES`, "
             "`update_bn`, `class_weight`)", "",
             "3-fold CV of the training part, 2 seeds (6 fits per cell; balanced accuracy "
             "on the imbalanced condition); `(5 folds)`: 5-fold CV, one seed "
             "(`rules_large`). `diff`: mean paired difference from the "
             "defaults on the same folds, +/- its standard error. `fit s`: mean seconds; "
             "on MNIST 4,000 also as a ratio to the classic PyTorch example (5 epochs "
             "fp32) timed on the same fold.", "",
             "| condition | variant | batch | epochs | accuracy | per fit | diff | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    for cond, crows in _grouped(rows, lambda r: r["condition"]).items():
        by = _grouped(crows, lambda r: r["variant"])
        reference = {(r["seed"], r["fold"]): r["score"] for r in by[base]}
        for variant, vrows in by.items():
            scores = [r["score"] for r in vrows]
            d = [r["score"] - reference[(r["seed"], r["fold"])] for r in vrows
                 if (r["seed"], r["fold"]) in reference]
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0
            diff = ("" if variant == base
                    else f"{100 * statistics.fmean(d):+.1f} +/- {100 * se:.1f}")
            fit = f"{statistics.fmean(r['fit_s'] for r in vrows):.1f}"
            if vrows[0].get("reference_s"):
                ratio = statistics.fmean(r["fit_s"] / r["reference_s"] for r in vrows)
                fit += f" ({ratio:.2f}x)"
            epochs = sorted({r["max_epochs"] for r in vrows})
            lines.append(f"| {cond} | {variant} | {vrows[0]['batch_size']} | "
                         f"{'-'.join(map(str, epochs))} | {100 * statistics.fmean(scores):.1f} | "
                         f"{', '.join(f'{100 * x:.1f}' for x in scores)} | {diff} | {fit} |")
    return lines


def report(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    lines = ["# Rules of the defaults, chosen by cross-validation on training parts only",
             "", "Produced by `bench/_explore_defaults.py`; no test part of "
             "`bench/accuracy.py` is loaded. CV: stratified 5 folds (3 for budgets) of "
             "the training part, mean accuracy [min, max] over folds.", ""]
    frozen_rows = [r for r in rows if r["experiment"] == "frozen"]
    if frozen_rows:
        lines += ["## Frozen EfficientNet-Lite0 features + linear head "
                  "(informs `frozen_input_size`, `HEAD_CS`)", "",
                  "| condition | n | input size | rule size? | head | CV accuracy | "
                  "feature s |", "|---|---|---|---|---|---|---|"]
        for r in frozen_rows:
            s = r["cv_scores"]
            lines.append(f"| {r['condition']} | {r['n']} | {r['size']} | "
                         f"{'yes' if r['rule_size'] else ''} | {r['head']} | "
                         f"{100 * statistics.fmean(s):.1f} [{100 * min(s):.1f}, "
                         f"{100 * max(s):.1f}] | {r['feature_s']:.1f} |")
    cost_rows = [r for r in rows if r["experiment"] == "cost"]
    if cost_rows:
        lines += ["", "## Cost per optimizer step (informs: fine-tuning only on "
                  "accelerators)", ""]
        for r in cost_rows:
            lines.append(f"- round {r['round']}: {r['recipe']}: {r['s_per_step']:.3f} s "
                         f"per step ({r['steps']} steps, load {r['load']:.1f})")
    ft_rows = [r for r in rows if r["experiment"] == "fine_tune"]
    if ft_rows:
        lines += ["", "## Fine-tuning (LP-FT) by resolution and learning rate (informs "
                  "`fine_tune_input_size`, `FINE_TUNE_LR`, fine-tuning on a CPU)", "",
                  "3-fold CV on the training part, 100 optimizer steps per fit; lr "
                  "'-' is the frozen features + linear head at `frozen_input_size`.", "",
                  "| condition | input size | lr | CV accuracy | fit s (mean) | load |",
                  "|---|---|---|---|---|---|"]
        for r in ft_rows:
            s = r["cv_scores"]
            fit_s = f"{statistics.fmean(r['fit_s']):.1f}" if r["fit_s"] else "-"
            lines.append(f"| {r['condition']} | {r['size']} | {format(r['lr'], 'g') if r['lr'] else '-'} | "
                         f"{100 * statistics.fmean(s):.1f} [{100 * min(s):.1f}, "
                         f"{100 * max(s):.1f}] | {fit_s} | {r['load']:.1f} |")
    shift_rows = [r for r in rows if r["experiment"] == "shift"]
    if shift_rows:
        lines += ["", "## Shifted validation: frozen features, LP-FT and WiSE-FT (informs "
                  "`frozen_input_size`, `FINE_TUNE_WISE_ALPHA`, the one-standard-error "
                  "rule of the selection)", "",
                  "Each photo's *training region* is cut again: fitting crops (as many per "
                  "class as the condition) from its left part, 20 validation crops per "
                  "class from its right part, so no validation pixel was in a fitting crop, "
                  "as in the suite's test. Mean accuracy [per draw] over 3 crop draws; the "
                  "test region is never read. `a` is `wise_alpha`: the final weights are "
                  "(1 - a) x the probe LP-FT starts from + a x the fine-tuned ones.", "",
                  "| condition | method | accuracy | per draw |", "|---|---|---|---|"]
        groups = _grouped(shift_rows, lambda r: (r["condition"], r["method"].split(" (")[0]
                                                 if "C by CV" in r["method"] else r["method"]))
        for (condition, method), rs in groups.items():
            lines.append(f"| {condition} | {method} | "
                         f"{_mean_and_each([r['accuracy'] for r in rs])} |")
    split_rows = [r for r in rows if r["experiment"] == "split"]
    if split_rows:
        lines += ["", "## The held-out part of the selection: random or neighbourhood "
                  "(informs `SELECT_SPLIT`)", "",
                  "`CNNClassifier()` fitted with each held-out split of its recipe "
                  "selection. Photos: fitted on the fitting crops of a shifted fold (see "
                  "above) and scored on its validation crops, 3 draws; digits and MNIST: "
                  "3-fold CV of the training part. Accuracy per draw or fold, the recipe "
                  "chosen, mean fit seconds.", "",
                  "| condition | split | accuracy | per draw | recipes | fit s |",
                  "|---|---|---|---|---|---|"]
        for (condition, how), rs in _grouped(
                split_rows, lambda r: (r["condition"], r["split"])).items():
            lines.append(f"| {condition} | {how} | "
                         f"{_mean_and_each([r['accuracy'] for r in rs])} | "
                         f"{', '.join(r['recipe'] for r in rs)} | "
                         f"{statistics.fmean(r['fit_s'] for r in rs):.1f} |")
    level_rows = [r for r in rows if r["experiment"] == "levels"]
    if level_rows:
        lines += ["", "## Frozen features from several depths (informs `FROZEN_LEVELS`)",
                  "",
                  "Shifted folds of `shift` (3 draws), 224 px. Blocks: timm's "
                  "EfficientNet-Lite0 block stages (0-6) whose globally averaged outputs "
                  "are concatenated before the head's pooled output (`-`: the head's "
                  "alone; `4, 5, 6` is `levels=4`, adopted). Heads: the selection's "
                  "(standardized features, `C` by inner CV) and the suite's frozen+LR "
                  "baseline's (raw features, `C=1`).", "",
                  "| condition | blocks | features | head | accuracy | per draw |",
                  "|---|---|---|---|---|---|"]
        for (condition, blocks, dim, head), rs in _grouped(
                level_rows, lambda r: (r["condition"], tuple(r["blocks"]), r["dim"],
                                       r.get("head", "standardized, C by CV"))).items():
            lines.append(f"| {condition} | {', '.join(map(str, blocks)) or '-'} | {dim} | "
                         f"{head} | {_mean_and_each([r['accuracy'] for r in rs])} |")
    rule_rows = [r for r in rows if r["experiment"] == "rule"]
    if rule_rows:
        short = {"frozen_features": "F", "compact_cnn": "C", "fine_tune": "T"}
        lines += ["", "## The selection rule (informs `_choose`)", "",
                  "One selection per fold with every candidate trained; each rule picks "
                  "from its held-out scores, and the pick is refit as `fit` refits it and "
                  "scored on validation data the selection never saw. Photos: the shifted "
                  "folds of `--experiments shift` (3 draws); digits and MNIST: 3-fold CV "
                  "of the training part. `+ buffer`: the held-out part's neighbourhoods "
                  "with a buffer (`SELECT_BUFFER`, `--buffer`). Recipes per fold: F "
                  "frozen features, C compact_cnn, T fine-tuning; held-out accuracies "
                  "F/C/T of each fold. Adopted: the simplest within one standard error "
                  "of the best, without the buffer (on the photo conditions; digits and "
                  "MNIST, images under 32 px, no longer select).", "",
                  "| condition | rule | accuracy | per fold | picks | held-out F/C/T |",
                  "|---|---|---|---|---|---|"]
        for (condition, how), rs in _grouped(
                rule_rows, lambda r: (r["condition"], r["rule"])).items():
            held = "; ".join("/".join(f"{v:.2f}" for v in r["valid_scores"]) for r in rs)
            lines.append(f"| {condition} | {how} | "
                         f"{_mean_and_each([r['accuracy'] for r in rs])} | "
                         f"{''.join(short[r['recipe']] for r in rs)} | {held} |")
        def means(rows_):
            return "; ".join(
                f"{how} {_mean_accuracy(rs)}"
                for how, rs in _grouped(rows_, lambda r: r["rule"]).items())

        photo_rows = [r for r in rule_rows if r["condition"].startswith("photos_")]
        lines += ["", f"Mean over every fold of every condition: {means(rule_rows)}.",
                  "", "Mean over the photo conditions (images of 32 px or more: where "
                  f"the selection runs): {means(photo_rows)}.",
                  "", "The digits and MNIST rows were measured with their frozen "
                  "features at 96 px, the rule for images under 32 px at the time."]
    select_rows = [r for r in rows if r["experiment"] == "select_all"]
    if select_rows:
        short = {"frozen_features": "F", "compact_cnn": "C", "fine_tune": "T"}

        def triple(values, digits=2):
            return "/".join("-" if math.isnan(v) else f"{v:.{digits}f}" for v in values)

        def pick(fn, r):
            return fn(r)

        lines += ["", "## Every candidate refit, on shifted folds along both axes "
                  "(informs `_choose`)", "",
                  "Per photo condition, 3 draws of the shifted folds of `shift` (axis x: "
                  "fitting crops from the left part of the training region, validation "
                  "crops from its right part) and 3 cut across (axis y: top part, bottom "
                  "part); the other conditions: 3-fold CV of their training part "
                  "(fold `cv`). One selection per fold with every candidate trained; every "
                  "candidate then refit as `fit` refits it and scored on the validation "
                  "crops. Held-out: the selection's own held-out part of the fitting "
                  "crops (accuracy, log-loss; F frozen features, C compact_cnn, T "
                  "fine-tuning, `-` not trained). Picks: one letter per rule of "
                  "`SELECT_RULES`, in the order of the summary.", "",
                  "| condition | fold | held-out accuracy | held-out log-loss | "
                  "refit accuracy | picks |", "|---|---|---|---|---|---|"]
        for r in select_rows:
            picks = "".join(short[r["recipes"][pick(fn, r)]] for fn in SELECT_RULES.values())
            lines.append(
                f"| {r['condition']} | {r['axis']}{r['draw']} | "
                f"{triple([math.nan if v is None else v for v in r['valid_scores']])} | "
                f"{triple([math.nan if v is None else v for v in r['valid_log_loss']])} | "
                f"{triple(r['refit'], 3)} | {picks} |")
        always = {f"always {name}": (lambda i: (lambda r: i))(i)
                  for i, name in enumerate(select_rows[0]["recipes"])}
        groups = {"the photo conditions": [r for r in select_rows
                                           if r["condition"] in SHIFT_CONDITIONS],
                  "the other conditions": [r for r in select_rows
                                           if r["condition"] not in SHIFT_CONDITIONS]}
        for group, group_rows in groups.items():
            if not group_rows:
                continue
            names = list(_grouped(group_rows, lambda r: r["condition"]))
            lines += ["", f"Over {group} ({', '.join(names)}; {len(group_rows)} folds):", "",
                      "| rule | mean refit accuracy | per condition | worst fold |",
                      "|---|---|---|---|"]
            for label, fn in {**SELECT_RULES, **always}.items():
                got = [r["refit"][pick(fn, r)] for r in group_rows]
                per = ", ".join(
                    f"{100 * statistics.fmean(r['refit'][pick(fn, r)] for r in rs):.1f}"
                    for rs in _grouped(group_rows, lambda r: r["condition"]).values())
                lines.append(f"| {label} | {100 * statistics.fmean(got):.1f} | {per} | "
                             f"{100 * min(got):.1f} |")
            best = [max(r["refit"]) for r in group_rows]
            lines.append(f"| the best refit of each fold (not a rule) | "
                         f"{100 * statistics.fmean(best):.1f} | | {100 * min(best):.1f} |")
    kfold_rows = [r for r in rows if r["experiment"] == "kfold"]
    if kfold_rows:
        lines += ["", "## One held-out fifth against every image held out once (5 folds)", "",
                  "`--experiments kfold`: 3-fold CV of the training part. Inside each "
                  "fitting part, the frozen features (F) and `compact_cnn` (C) are scored "
                  "on 5 folds (stratified random, or `neighbourhood_folds`), and "
                  "McNemar's test (`_choose`) picks on the first fold's held-out images "
                  "(the product's single held-out fifth) or on all of them. Refit: each "
                  "recipe fitted on the whole fitting part, scored on the CV validation "
                  "part; the pick's is the accuracy. C s: seconds of `compact_cnn`'s "
                  "fits (one fold, or all five).", "",
                  "| condition | fold | folds | held out | images | held-out F/C | "
                  "discordant F/C | pick | refit F/C | C s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in kfold_rows:
            lines.append(
                f"| {r['condition']} | cv{r['draw']} | {r['folds']} | {r['held_out']} | "
                f"{r['n_held_out']} | "
                f"{'/'.join(f'{v:.2f}' for v in r['held_out_accuracy'])} | "
                f"{'/'.join(f'{v:g}' for v in r['discordant'])} | {r['pick']} | "
                f"{'/'.join(f'{v:.3f}' for v in r['refit'])} | {r['compact_fit_s']:.1f} |")
        lines += ["", "| condition | folds | held out | mean accuracy of the pick | "
                  "always compact_cnn | C s (mean) |", "|---|---|---|---|---|---|"]
        groups = _grouped(kfold_rows, lambda r: (r["condition"], r["folds"], r["held_out"]))
        for (condition, kind, held), rs in groups.items():
            lines.append(
                f"| {condition} | {kind} | {held} | "
                f"{_mean_accuracy(rs)} | "
                f"{100 * statistics.fmean(r['refit'][1] for r in rs):.1f} | "
                f"{statistics.fmean(r['compact_fit_s'] for r in rs):.1f} |")
    other_rows = [r for r in rows if r["experiment"] == "head_other"]
    if other_rows:
        lines += ["", "## The frozen features' linear head on photos the suite never uses", "",
                  "`--experiments head_other`: 14 photos of scikit-image's bundled data "
                  "(`OTHER_PHOTOS_RGB`, `OTHER_PHOTOS_GRAY`; one class each), cut as the "
                  "suite cuts its photos (`acc.photo_crops`: 55 % training region, "
                  "fitting crops from it and 30 validation crops per photo from the "
                  "rest) on each of the four layouts, 2 crop draws each: 8 folds per "
                  "condition, frozen features at 224 px with `FROZEN_LEVELS`. Accuracy "
                  "on the validation crops, mean and per fold (layouts left, right, top, "
                  "bottom; draws 0, 1).", "",
                  "| condition | head | accuracy | per fold |", "|---|---|---|---|"]
        for (condition, how), rs in _grouped(
                other_rows, lambda r: (r["condition"], r["head"])).items():
            lines.append(f"| {condition} | {how} | "
                         f"{_mean_and_each([r['accuracy'] for r in rs])} |")
        by_fold = {}
        for r in other_rows:
            by_fold.setdefault((r["condition"], r["axis"], r["draw"]), {})[r["head"]] = \
                r["accuracy"]
        base = "standardized, C by CV"
        lines += ["", "Against the selection's head (standardized, `C` by CV), over all "
                  f"{len(by_fold)} folds:", ""]
        for how in _grouped(other_rows, lambda r: r["head"]):
            if how == base:
                continue
            diff = np.array([v[how] - v[base] for v in by_fold.values()])
            lines.append(f"- {how}: {100 * diff.mean():+.1f} points (standard error "
                         f"{100 * diff.std(ddof=1) / np.sqrt(len(diff)):.1f}), better on "
                         f"{int((diff > 1e-9).sum())} folds, worse on "
                         f"{int((diff < -1e-9).sum())}")
    head_rows = [r for r in rows if r["experiment"] == "head"]
    if head_rows:
        lines += ["", "## The frozen features' linear head: fixed or chosen", "",
                  "Shifted folds of `shift` (3 draws; runs since 2026-12-07 add 3 cut "
                  "across the training region, `shifted_fold(axis='y')`, listed after "
                  "them), frozen features at 224 px with "
                  "`FROZEN_LEVELS`. `chosen`: the better of the two on the selection's "
                  "neighbourhood held-out part of the fitting crops (the standardized one "
                  "within one standard error), refit on all of them; its picks per draw "
                  "(S standardized, R raw). The other rows scale the features "
                  "otherwise before the same logistic regression (`head_variants`).", "",
                  "| condition | head | accuracy | per draw | picks |",
                  "|---|---|---|---|---|"]
        for (condition, how), rs in _grouped(
                head_rows, lambda r: (r["condition"], r["head"])).items():
            picks = "".join(r["chosen"][0].upper() for r in rs if "chosen" in r)
            lines.append(f"| {condition} | {how} | "
                         f"{_mean_and_each([r['accuracy'] for r in rs])} | {picks} |")
        lines += ["", "Mean over the four conditions: " + "; ".join(
            f"{how} {_mean_accuracy(rs)}"
            for how, rs in _grouped(head_rows, lambda r: r["head"]).items()) + "."]
    stop_rows = [r for r in rows if r["experiment"] == "stop"]
    if stop_rows:
        short = {"frozen_features": "F", "compact_cnn": "C", "fine_tune": "T"}
        lines += ["", "## Stopping a candidate that is clearly ahead (informs "
                  "`SELECT_STOP_AHEAD`)", "",
                  "`CNNClassifier()` fitted with and without the early stop of "
                  "`_StopWhenAhead`, scored on 3-fold CV of the training part (color "
                  "MNIST) or the shifted folds of `shift` (photos). Picks per fold: F "
                  "frozen features, C compact_cnn, T fine-tuning. Seconds: mean over "
                  "the folds, the selection's and the whole fit's (selection and "
                  "refit).", "",
                  "| condition | early stop | accuracy | per fold | picks | selection "
                  "steps | selection s | fit s |", "|---|---|---|---|---|---|---|---|"]
        for (condition, ahead), rs in _grouped(
                stop_rows, lambda r: (r["condition"], r["stop_ahead"])).items():
            lines.append(
                f"| {condition} | {'yes' if ahead else 'no'} | "
                f"{_mean_and_each([r['accuracy'] for r in rs])} | "
                f"{''.join(short.get(r['recipe'], '-') for r in rs)} | "
                f"{', '.join(str(r['selection_steps']) for r in rs)} | "
                f"{statistics.fmean(r['selection_s'] for r in rs):.1f} | "
                f"{statistics.fmean(r['fit_s'] for r in rs):.1f} |")
    lines += _draw_section(
        [r for r in rows if r["experiment"] == "ft_size"], "Fine-tuning at 224 px",
        "Shifted folds of `shift` (3 draws). The LP-FT recipe (four levels) "
        "trained and predicting at 224 px instead of 128; weights `(1 - a)` "
        "probe + `a` fine-tuned (`a=0`: the frozen features' probe; `a=0.5`: "
        "the recipe's `wise_alpha`). For comparison, on these folds: the recipe "
        "at 128 px 86.2 / 76.0 / 83.1 / 81.7 % (`ft_levels`), the frozen "
        "recipe 88.8 / 82.1 / 92.1 / 86.2 % (`levels`).",
        {"condition": "condition", "alpha": "a"})
    lines += _draw_section(
        [r for r in rows if r["experiment"] == "ft_levels"],
        "Fine-tuning from a probe on one or four feature levels",
        "Shifted folds of `shift` (3 draws). The LP-FT recipe trained at 128 "
        "px with `module__levels` 1 (as it is) or 4; weights `(1 - a)` probe + "
        "`a` fine-tuned (`a=0`: the probe alone at 128 px; `a=0.5`: the "
        "recipe's `wise_alpha`), predicting at 128 or 224 px. For comparison, "
        "the frozen recipe (224 px, levels=4, its head) scored 88.8 / 82.1 / "
        "92.1 / 86.2 % on these folds (`levels` above).",
        {"condition": "condition", "levels": "levels", "alpha": "a",
         "predict_px": "predict px"})
    lines += _draw_section(
        [r for r in rows if r["experiment"] == "ft_augment"],
        "Fine-tuning with a stronger augmentation",
        "Shifted folds of `shift` (3 draws), this release's code (the floored "
        "head). The LP-FT recipe (128 px, four levels) with its own "
        "augmentation and with `STRONG_AUGMENT`; weights `(1 - a)` probe + `a` "
        "fine-tuned (`a=0.5`: the recipe's `wise_alpha`; the recipe predicts "
        "at 128 px), beside the frozen recipe on the same folds.",
        {"condition": "condition", "augment": "augment", "alpha": "a",
         "predict_px": "predict px"})
    fte_rows = [r for r in rows if r["experiment"] == "ft_ensemble"]
    lines += _draw_section(
        fte_rows, "Surgical fine-tuning and an output-space ensemble",
        "Shifted folds of `shift` (3 draws), this release's code. The LP-FT "
        "recipe (128 px, four levels) training all block groups, the last "
        "three stages or the last stage; weights `(1 - a)` probe + `a` "
        "fine-tuned (`a=0.5`: the recipe's `wise_alpha`); `ensemble`: the mean "
        "of its probabilities and the frozen features' (224 px). Beside the "
        "frozen recipe on the same folds.",
        {"condition": "condition", "trained": "trained", "alpha": "a",
         "ensemble": "ensemble"})
    if fte_rows:
        lines += ["", "Mean over the 12 folds:", ""]
        for key, rs in _grouped(fte_rows, lambda r: (r["trained"], r["alpha"],
                                                     r["ensemble"])).items():
            lines.append(f"- {key[0]}, a={key[1]}, ensemble={key[2]}: "
                         f"{_mean_accuracy(rs)} %")
    ftr_rows = [r for r in rows if r["experiment"] == "ft_recipe"]
    lines += _draw_section(
        ftr_rows, "The fine-tuning recipe with `frozen_ensemble`",
        "Shifted folds of `shift` (3 draws), `CNNClassifier(**fine_tune_recipe"
        "(...).params)` as `module='auto'` fits it, two training seeds per "
        "draw (`random_state` = draw + seed), scored with and without its "
        "frozen partner (one trained network); the frozen recipe's features "
        "and head on the same folds. Fit seconds: the run shared the machine "
        "with a test run, they are not timings.",
        {"condition": "condition", "method": "method"}, per="per draw and seed")
    if ftr_rows:
        by_method = _grouped(ftr_rows, lambda r: r["method"])
        lines += ["", "Mean over the 4 conditions x 3 draws (x 2 seeds):", ""]
        for method, rs in by_method.items():
            lines.append(f"- {method}: "
                         f"{_mean_accuracy(rs)} %")
        frozen = {(r["condition"], r["draw"]): r["accuracy"]
                  for r in by_method.get("frozen features", [])}
        for method in ("recipe (frozen_ensemble)", "recipe without the partner"):
            diffs = [100 * (r["accuracy"] - frozen[r["condition"], r["draw"]])
                     for r in by_method.get(method, [])]
            if len(diffs) > 1:
                lines.append(f"- {method} minus the frozen features, paired: "
                             f"{_mean_se(diffs)} (SE, {len(diffs)} fits; seeds of one "
                             "draw are not independent)")
    fts_rows = [r for r in rows if r["experiment"] == "ft_smooth"]
    lines += _draw_section(
        fts_rows, "The fine-tuning recipe with label smoothing",
        "Shifted folds of `shift` (3 draws), the recipe as `ft_recipe` trains it "
        f"with `criterion__label_smoothing` 0 and {SMOOTHING}, two training seeds "
        "per draw; each training scored with its partner, alone, and the partner "
        "alone (fp32, as the recipe computes it). Rule, set before the run: "
        "adopt the smoothing if, with the partner, it beats no smoothing paired "
        "over the 24 fits by more than one standard error and its mean is above "
        "the frozen features'.",
        {"condition": "condition", "smoothing": "smoothing", "method": "method"},
        per="per draw and seed")
    if fts_rows:
        lines += ["", "Mean over the 4 conditions x 3 draws x 2 seeds (accuracy; "
                  "mean highest probability on the validation crops):", ""]
        cells = _grouped(fts_rows, lambda r: (r["smoothing"], r["method"]))
        for (smoothing, method), rs in cells.items():
            lines.append(
                f"- smoothing {smoothing}, {method}: "
                f"{_mean_accuracy(rs)} %, "
                f"confidence {statistics.fmean(r['confidence'] for r in rs):.3f}")
        for method in ("recipe (frozen_ensemble)", "network alone"):
            lines += _paired_line(f"{method}, smoothing {SMOOTHING} minus none",
                                  cells.get((SMOOTHING, method), []),
                                  cells.get((0.0, method), []))
    lines += _variant_section(
        [r for r in rows if r["experiment"] == "ft_fixres"],
        "The fine-tuning recipe predicting at larger sizes (FixRes)",
        "Shifted folds of `shift` (3 draws), the recipe as `ft_recipe` trains it "
        "(128 px), two training seeds per draw; each training scored with its "
        "network predicting at each size, with its partner (224 px) and alone; "
        "the frozen features on the same folds. Rule, set before the run: the "
        "recipe predicts at a larger size if, with the partner, that size beats "
        "128 px paired over the 24 fits by more than one standard error and its "
        "mean is above the frozen features'; of several, the highest mean.",
        "predict_px", "predict px", FIXRES_SIZES, "px")
    lines += _variant_section(
        [r for r in rows if r["experiment"] == "ft_steps"],
        "The fine-tuning recipe trained twice as long",
        "Shifted folds of `shift` (3 draws), the recipe as `ft_recipe` trains it "
        f"for {', '.join(map(str, FT_STEPS))} optimizer steps (one one-cycle "
        "schedule each, whole epochs), two training seeds per draw, scored with "
        "its partner and alone; the frozen features on the same folds. Rule, set "
        f"before each run: the recipe trains for {FT_STEPS[1]} (then "
        f"{FT_STEPS[2]}) steps if, with the partner, that beats {FT_STEPS[0]} "
        "paired over the 24 fits by more than one standard error and its mean is "
        "above the frozen features'.",
        "steps", "steps", FT_STEPS, "steps", with_cost=True)
    lines += _variant_section(
        [r for r in rows if r["experiment"] == "ft_wise"],
        "The fine-tuning recipe with other WiSE weights",
        "Shifted folds of `shift` (3 draws), the recipe as `ft_recipe` trains it, "
        "two training seeds per draw; each training's final weights "
        "`(1 - a) * start + a * trained` for each `a` (`wise_alpha`), scored with "
        "its partner and alone; the frozen features on the same folds. Rule, set "
        f"before the run: `wise_alpha` becomes another of {WISE_ALPHAS[1:]} if, "
        f"with the partner, it beats {WISE_ALPHAS[0]} paired over the 24 fits by "
        "more than one standard error and its mean is above the frozen features'; "
        "of several, the highest mean.",
        "alpha", "a", WISE_ALPHAS, "")
    lines += _against_compact_cnn(
        [r for r in rows if r["experiment"] == "singleton"],
        "A class of one image: the selection against compact_cnn",
        "`CNNClassifier()` when one class of the fitting data keeps one image (class "
        "`draw % n_classes`): before, no selection ran and `compact_cnn` trained "
        "from scratch; now the selection runs, the image of the class of one trained "
        "on and never held out. Shifted folds of `shift` (photos, 3 draws) and "
        "3-fold CV of 10 color-MNIST images of 64 px per class; accuracy on the "
        "validation part, the recipe chosen, and the class of one's recall. Rule, "
        "set before the run: the selection stays if, paired over the folds, it is "
        "not below `compact_cnn` by more than one standard error.",
        lambda rs: f"{_mean_accuracy(rs)} %, recall of the class of one "
                   f"{100 * statistics.fmean(r['rare_recall'] for r in rs):.1f} %")
    lines += _against_compact_cnn(
        [r for r in rows if r["experiment"] == "one_shot"],
        "One image per class: the frozen features against compact_cnn",
        "When no two classes have two images nothing can be held out and no "
        "selection runs: `CNNClassifier()` trained `compact_cnn` from scratch "
        "(`compact_cnn (before)`, the estimator as it was); the rows "
        "`CNNClassifier()` are the frozen features' linear head (224 px, four "
        "levels), the simplest candidate. The folds of `singleton`, the first "
        "fitting image of each class only. Rule, set before the run: the fallback "
        "becomes the simplest candidate if, paired over the folds, the frozen "
        "features beat `compact_cnn` by more than one standard error.",
        lambda rs: f"{_mean_accuracy(rs)} %")
    lines += _against_compact_cnn(
        [r for r in rows if r["experiment"] == "multilabel"],
        "A multi-label y: the selection against compact_cnn",
        "`CNNClassifier()` on mosaics of 2 x 2 tiles showing 1 or 2 classes (the "
        "labels): before, no selection ran for a multi-label `y` and `compact_cnn` "
        "trained from scratch; now the frozen features (a logistic regression per "
        "label) and `compact_cnn` are compared on held-out parts drawn per label set. "
        "Tiles of photo crops from the shifted folds of `shift` (3 draws; 150 fitting "
        "and 150 validation mosaics) and of color-MNIST digits (3-fold CV of 300 "
        "images; 300 and 150 mosaics). Accuracy is the subset accuracy (`score`). "
        "Rule, set before the run: the selection stays if, paired over the folds, its "
        "subset accuracy is not below `compact_cnn`'s by more than one standard error.",
        lambda rs: f"subset accuracy {_mean_accuracy(rs)} %, F1 (samples) "
                   f"{100 * statistics.fmean(r['f1_samples'] for r in rs):.1f} %")
    fp_rows = [r for r in rows if r["experiment"] == "frozen_precision"]
    lines += _draw_section(
        fp_rows, "The frozen features in bf16 and fp32",
        "Shifted folds of `shift` (3 draws): the frozen recipe's features "
        "(224 px, four levels) computed in bf16 autocast (what `fit` does on "
        "a CPU with native bf16) and in fp32, each with its head "
        "(`fit_linear_head`, C by inner CV).",
        {"condition": "condition", "precision": "precision"})
    if fp_rows:
        pairs = _grouped(fp_rows, lambda r: (r["condition"], r["draw"]))
        diffs = [100 * (g[1]["accuracy"] - g[0]["accuracy"]) for g in pairs.values()
                 if len(g) == 2]
        same_c = sum(g[0]["C"] == g[1]["C"] for g in pairs.values())
        if len(diffs) > 1:
            lines += ["", f"fp32 minus bf16, paired over {len(diffs)} folds: "
                      f"{_mean_se(diffs)} (SE); per fold {min(diffs):+.1f} to "
                      f"{max(diffs):+.1f}; the same head C on {same_c} of {len(pairs)} "
                      "folds."]
    aug_rows = [r for r in rows if r["experiment"] == "augment"]
    if aug_rows:
        lines += ["", "## Augmentation of compact_cnn (informs its default `augment`)", "",
                  "3-fold CV of the training part, the `'auto'` budget; accuracy per "
                  "fold and mean fit seconds.", "",
                  "| condition | augment | accuracy | per fold | fit s |",
                  "|---|---|---|---|---|"]
        for r in aug_rows:
            lines.append(f"| {r['condition']} | {r['augment']} | "
                         f"{_mean_and_each(r['cv_scores'])} | "
                         f"{statistics.fmean(r['fit_s']):.1f} |")
    es_rows = [r for r in rows if r["experiment"] == "rules_es"]
    if es_rows:
        recorded = [json.loads(line) for line in
                    (RESULTS / "explore_rules.jsonl").read_text().splitlines()]
        recorded = [r for r in recorded if r["experiment"] == "rules"
                    and r["variant"] in ("defaults", ES_BEFORE)
                    and r["condition"] in {e["condition"] for e in es_rows}]
        lines += ["", "## Early stopping after the one-cycle warm-up", "",
                  "The early-stopping variant of `rules` (10 % held out, at least one "
                  "image per class) with `EarlyStoppingAfterWarmup` (no watching during "
                  "the first 30 % of the epochs, the one-cycle warm-up), on the same "
                  "folds and seeds; `defaults` and the variant before the change are "
                  "the rows recorded by `rules` (`explore_rules.jsonl`), `defaults "
                  "(rerun)` the defaults refitted with this release's code. `diff`: "
                  "paired, from the recorded defaults."]
        lines += _rules_report(recorded + es_rows)[3:]
    esp_rows = [r for r in rows if r["experiment"] == "es_patience"]
    if esp_rows:
        lines += ["", "## Early stopping's patience as a share of the epochs", "",
                  "The `rules_es` early-stopping variant (patience 5) and the same with "
                  "patience `max(5, ceil(fraction * max_epochs))`, the same split without "
                  "early stopping, and `early_stopping=True` alone (no split below "
                  "10,000 images: it watches the training loss); 3-fold CV of the "
                  "training part, 2 seeds. `diff`: paired, from patience 5. Rule, set "
                  "before the run: `patience='auto'` takes the smallest fraction whose "
                  "mean paired difference from patience 5 over the 24 fits is positive "
                  "by more than one standard error, with no condition below patience "
                  "5 by more than its standard error; none passing, patience stays 5."]
        lines += _rules_report(esp_rows, base=ES_AFTER)[3:]
        fits = _grouped(esp_rows, lambda r: r["variant"])
        base = {(r["condition"], r["seed"], r["fold"]): r["score"] for r in fits[ES_AFTER]}
        lines += ["", "Over all conditions, paired from patience 5:", ""]
        for variant, vrows in fits.items():
            if variant != ES_AFTER:
                d = [100 * (r["score"] - base[r["condition"], r["seed"], r["fold"]])
                     for r in vrows]
                lines.append(f"- {variant}: {_mean_se(d)} (SE, {len(d)} fits)")
    rule_rows = [r for r in rows if r["experiment"] == "rules"]
    if rule_rows:
        lines += _rules_report(rule_rows)
    cost_rows = [r for r in rows if r["experiment"] == "rules_cost"]
    if cost_rows:
        lines += ["", "Seconds of a default fit with 500 and 1,000 steps of `compact_cnn` "
                  "(`rules_cost`, alternating, one process):", ""]
        for (cond, n, steps), g in _grouped(
                cost_rows, lambda r: (r["condition"], r["n"], r["steps"])).items():
            lines.append(f"- {cond}, {n} images, {steps} steps ({g[0]['max_epochs']} "
                         f"epochs, {g[0]['recipe']}): "
                         + ", ".join(f"{r['fit_s']:.1f}" for r in g) + " s")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default="frozen,cost")
    p.add_argument("--conditions", default=None, help="comma-separated (default: "
                   "each experiment's own)")
    p.add_argument("--out", default="/tmp/explore_defaults.jsonl")
    p.add_argument("--report", default=None, help="a JSONL file to turn into the report")
    p.add_argument("--report-out", default="explore_defaults.md",
                   help="file name of the report under bench/results/")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--buffer", action="store_true", help="the selection's "
                   "neighbourhood split with a buffer (SELECT_BUFFER)")
    args = p.parse_args(argv)
    if args.report:
        text = report(args.report)
        (RESULTS / args.report_out).write_text(text)
        print(text)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.buffer:
        import skimgcls._selection as selection

        selection.SELECT_BUFFER = True

    def emit(row):
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")

    chosen = args.conditions.split(",") if args.conditions else None
    for experiment in args.experiments.split(","):
        if experiment == "cost":
            cost(emit)
            continue
        if experiment in ("shift", "flip", "split", "rule", "levels", "ft_levels", "head",
                          "ft_augment", "ft_ensemble", "ft_recipe", "ft_smooth",
                          "ft_fixres", "ft_steps", "ft_steps_short", "ft_wise",
                          "singleton", "multilabel", "one_shot",
                          "frozen_precision",
                          "stop", "ft_size", "select_all", "head_other", "kfold"):
            default = {"stop": STOP_CONDITIONS, "kfold": KFOLD_CONDITIONS,
                       "singleton": SINGLETON_CONDITIONS,
                       "one_shot": SINGLETON_CONDITIONS,
                       "multilabel": MULTILABEL_CONDITIONS}.get(
                experiment, SHIFT_CONDITIONS)
            for name in chosen or default:
                {"shift": shift, "flip": flip, "split": split, "rule": rule,
                 "levels": levels, "ft_levels": ft_levels, "head": head,
                 "ft_augment": ft_augment, "ft_ensemble": ft_ensemble,
                 "ft_recipe": ft_recipe, "ft_smooth": ft_smooth,
                 "ft_fixres": ft_fixres, "ft_steps": ft_steps,
                 "ft_steps_short": ft_steps_short, "ft_wise": ft_wise,
                 "singleton": singleton, "multilabel": multilabel,
                 "one_shot": one_shot,
                 "frozen_precision": frozen_precision,
                 "stop": stop, "ft_size": ft_size,
                 "select_all": select_all, "head_other": head_other,
                 "kfold": kfold}[experiment](name, emit)
            continue
        names = chosen or {"frozen": FROZEN_CONDITIONS, "rules": RULES_CONDITIONS,
                           "rules_es": RULES_CONDITIONS,
                           "es_patience": ES_PATIENCE_CONDITIONS,
                           "es_patience_auto": ES_PATIENCE_CONDITIONS,
                           "rules_large": ("mnist_4000",), "rules_cost": ("mnist_rgb64",),
                           "fine_tune": FINE_TUNE_CONDITIONS,
                           "augment": AUGMENT_CONDITIONS}[experiment]
        for name in names:
            X, y = CONDITIONS[name]()
            {"frozen": frozen, "rules": rules, "rules_large": rules_large,
             "rules_es": rules_es, "es_patience": es_patience,
             "es_patience_auto": es_patience_auto,
             "rules_cost": rules_cost,
             "fine_tune": fine_tune,
             "augment": augment}[experiment](
                name, X, y, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
