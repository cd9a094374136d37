"""Recipe selection of ``CNNClassifier(module='auto')`` on the training data.

What ``fit`` does by default is decided on the data it is given, as
``LogisticRegressionCV`` or ``HistGradientBoostingClassifier(early_stopping=
'auto')`` decide: candidate recipes are compared on a held-out part of the
*training* data (a fifth of each class: an image and its nearest neighbours
in the pretrained features, so that few held-out images keep a near-duplicate
in the training part; below 500 images, several such fifths one after the
other, each candidate trained on the rest every time, see
``SELECT_MIN_HELD_OUT``), and ``fit`` then refits the winner on everything.

Recipes (each a set of ``CNNClassifier`` parameters, so a user can ask for one
directly), simplest first:

* ``'frozen_features'``: a pretrained backbone whose body does not train and a
  linear head fitted on its features (computed once, in one forward pass over
  the images: the pooled outputs of its last four block stages, see
  ``FROZEN_LEVELS``) by logistic regression, the regularization chosen by
  cross-validation on the training part (1,904 x classes parameters fitted);
* ``'compact_cnn'``: the from-scratch network, ``'auto'`` step budget (73 k);
* ``'fine_tune'``: LP-FT, the pretrained backbone trained whole from a
  linear-probe head (on the same four levels), its BatchNorm layers frozen,
  at a low learning rate, with flips and crops, at 128 px (cost), its final
  weights halfway between the fine-tuned ones and the probe's (WiSE-FT), its
  probabilities averaged with the frozen features' (an output-space
  ensemble) (4.7 M).

The simplest recipe that no other recipe beats significantly on the held-out
images wins (McNemar's test, the test Dietterich (1998) recommends for two
classifiers scored on one held-out set; simplest: fewest parameters fitted to
the data, the order above). A recipe that can no longer win is not trained
(``_cannot_win``), nor is fine-tuning when another recipe significantly beat
the frozen features it starts from (``_outclassed``).

Each candidate is trained on the rest as its refit would train it (its own
budget: the ``'auto'`` one of ``compact_cnn``, 100 steps of fine-tuning), so
that the candidates are compared as they would be used; a from-scratch network
scored after a fraction of its budget would lose to one that is done. The
cheap part: the features are computed once for every image and serve both the
selection and the refit; a from-scratch candidate stops training once it
significantly beats every simpler recipe, when the rule can no longer pass it
over (``_StopWhenAhead``); the selection looks at about
``SELECT_MAX_SAMPLES`` images at most. A recipe that does not apply (no pretrained
weights installed, images smaller than ``MIN_PRETRAINED_SIDE``) is not a
candidate; with one candidate nothing is selected, and with fewer than two
classes of two images or more (the image of a class of one is never held out)
the simplest candidate is taken (``unselected``).
"""

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from skorch.callbacks import Callback

from . import backbones
from ._build import PRETRAINED_BACKBONE, auto_batch_size
from ._callbacks import dataset_features
from ._device import inference_batch_size
from ._probe import (
    accuracy_and_log_loss,
    embed,
    fit_linear_head,
    last_linear,
    multilabel_scores,
    set_linear_head,
)
from .augmentation import RandomAugment
from .datasets import MEMORY_BUDGET

__all__ = [
    "Recipe",
    "Selection",
    "can_hold_out",
    "candidate_recipes",
    "install_linear_head",
    "label_groups",
    "select_recipe",
    "selection_rows",
    "unselected",
]

#: Images whose shorter side is below this (digits, MNIST, the estimator
#: checks' 1 x n rows) are trained from scratch, without a selection: a
#: network pretrained on 224 px photos sees them upsampled from a few
#: pixels. On every validation fold of the digits 5 / 20 and MNIST 500
#: training parts (18 folds: ``bench/_explore_defaults.py --experiments
#: rule [--buffer]``) ``compact_cnn`` held out at least as well as both
#: pretrained recipes, and each fold where a rule picked one of them scored
#: 6-50 points below it; the selection made the default fits of the suite's
#: digits and MNIST conditions 2-5x slower (``bench/accuracy.py``).
MIN_PRETRAINED_SIDE = 32
#: Fraction of the training data held out to compare the recipes (at least
#: one image per class).
SELECT_VALID_FRACTION = 0.2
#: The selection looks at about this many images at most (a subsample with
#: every class in proportion and at least two images of each); the winner is
#: refit on all of them.
SELECT_MAX_SAMPLES = 2000
#: How the held-out part is drawn: 'random' (stratified) or 'neighbourhood'
#: (per class, an image and its nearest neighbours in the pretrained features;
#: see ``_neighbourhood_split``).
SELECT_SPLIT = "neighbourhood"
#: When one held-out fifth would hold fewer images than this, the selection
#: holds out more fifths, one after the other (``SELECT_FOLDS`` in all, each
#: image in one), and trains each candidate once per fifth on the rest: a
#: fifth of a few hundred images is too few for McNemar's test to tell
#: recipes 10-15 points apart. On 3-fold CV of 30 color-MNIST images of
#: 64x64 per class (``bench/_explore_defaults.py --experiments kfold``,
#: ``bench/results/explore_kfold.md``), one fifth (40 images) kept the frozen
#: features on 1-3 of 3 folds, where ``compact_cnn`` refit scored 5-20 points
#: higher (78.3 and 86.7 % with random and neighbourhood fifths, against
#: 91.3 %); all five fifths chose ``compact_cnn`` on every fold. The
#: fine-tuning recipe is scored on the first fifth only (``Recipe.folds``).
SELECT_MIN_HELD_OUT = 100
#: Parts the data is cut into when more than one fifth is held out.
SELECT_FOLDS = 5
#: Whether the neighbourhood split also leaves out of the selection's training
#: part, per class, as many of the next nearest images as it holds out (a
#: buffer zone, as spatial block cross-validation leaves between its blocks).
#: Off: on the photo folds of ``bench/_explore_defaults.py --experiments rule
#: [--buffer]`` (data the selection never saw), the rule of ``_choose`` scored
#: 84.3 % without it and 80.7 % with it.
SELECT_BUFFER = False
#: Whether a from-scratch candidate stops training in the selection once it
#: significantly beats every simpler recipe (``_StopWhenAhead``): ``_choose``
#: can then no longer pick a simpler one. Checked ``STOP_CHECKS`` times over
#: its budget.
SELECT_STOP_AHEAD = True
STOP_CHECKS = 10
#: Optimizer steps of the fine-tuning recipe (in the selection and the refit).
#: On the shifted validation crops of ``frozen_input_size`` (12 folds x 2
#: seeds, ``bench/_explore_defaults.py --experiments ft_steps``), 200 steps
#: scored 0.8 +- 0.4 points below and 50 steps 0.5 +- 0.3 below.
FINE_TUNE_STEPS = 100
#: Peak learning rate (AdamW, one-cycle) of the fine-tuning recipe: 50x below
#: the from-scratch one. 3e-4 tied on the CV folds of the photo training parts.
FINE_TUNE_LR = 1e-4
#: Batch size of the fine-tuning recipe, whatever the number of images: with
#: its BatchNorm frozen a small batch costs no accuracy, and its steps stay
#: cheap (about 0.17 s at 128 px on 2 cores).
FINE_TUNE_BATCH = 8
#: Input resolution of the fine-tuning recipe (see ``fine_tune_input_size``).
FINE_TUNE_SIZE = 128


@dataclass(frozen=True)
class Recipe:
    """A candidate: a name, the ``CNNClassifier`` parameters it sets, how it trains.

    ``linear_head`` recipes are fitted on cached features (no optimizer
    steps); the others train with the estimator's loop, ``steps`` optimizer
    steps when refit (None: the ``'auto'`` budget). ``starts_from`` names the
    recipe whose result it starts from (fine-tuning starts from the frozen
    features' probe; see ``_outclassed``). ``folds``: on how many of the
    held-out parts it is scored at most, when the selection holds out
    several (None: all; see ``SELECT_MIN_HELD_OUT``). Lists of recipes are
    ordered simplest first (see ``_choose``).
    """

    name: str
    params: dict
    linear_head: bool = False
    steps: int = None
    starts_from: str = None
    folds: int = None


def frozen_input_size(image_shape):
    """Input resolution of the frozen features: the weights' native 224 px.

    Validation crops from a part of the photos' training region disjoint from
    the fitting crops (``bench/_explore_defaults.py --experiments shift``,
    3 draws) scored 77.4 % at 224 px against 65.7 % at 128 px (48 px RGB, 5
    per class) and 85.5 against 84.5 % (30 per class); random folds of
    overlapping crops had scored the two alike. (Images under
    ``MIN_PRETRAINED_SIDE`` are not candidates.)
    """
    return 224


def fine_tune_input_size(image_shape):
    """Input resolution of fine-tuning: 128 px, whatever the images' size.

    On 3-fold CV of the photo training parts (``bench/_explore_defaults.py``,
    ``fine_tune``), 128 px scored 94.4 / 97.2 / 99.5 % where 96 px scored
    88.4 / 91.4 / 98.6 % (48 px RGB 5 and 30 per class, 128 px gray 5 per
    class), at 1.3-1.4x the seconds per step. 224 px costs 3x more and, on
    the shifted validation crops (``--experiments ft_size``, 3 draws), scored
    84.5 / 82.1 / 87.6 / 86.4 % (48 px RGB 30 and 5 per class, 128 px gray 30
    and 5), no better than the 224 px probe it starts from (the frozen
    features: 88.8 / 81.9 / 91.4 / 86.2 %).
    """
    return FINE_TUNE_SIZE


#: Weight of the fine-tuned weights in the fine-tuning recipe's final ones
#: (``wise_alpha``; the rest is the probe it started from). On the shifted
#: validation crops of ``frozen_input_size``, 0.5 scored 85.7 / 70.2 / 84.5 /
#: 78.1 % where the fine-tuned weights alone scored 79.0 / 70.5 / 81.4 / 76.4 %
#: (48 px RGB 30 and 5 per class, 128 px gray 30 and 5; 3 draws). With the
#: partner and four levels (``--experiments ft_wise``, 12 folds x 2 seeds),
#: 0.25 scored 0.1 +- 0.3 points below 0.5 and 0.75 scored 0.9 +- 0.3 below.
FINE_TUNE_WISE_ALPHA = 0.5


#: Feature levels of the frozen features (``levels`` of ``BackboneNet``): the
#: network's pooled output and the pooled outputs of the three block stages
#: before it (EfficientNet-Lite0: 1,280 + 112 + 192 + 320 values). On the
#: shifted validation crops of ``frozen_input_size``
#: (``bench/_explore_defaults.py --experiments levels``, 3 draws) they scored
#: 88.8 / 82.1 / 92.1 / 86.2 % where the pooled output alone scored 85.5 /
#: 77.4 / 90.2 / 84.3 % (48 px RGB 30 and 5 per class, 128 px gray 30 and 5),
#: every draw better or equal; mean 87.3 % against 84.4 %. The other sets
#: tried averaged 85.6 (stage 4), 86.7 (stages 3-4; the best on 5 gray crops
#: per class, 86.9 %) and 85.6 % (stages 2-4).
FROZEN_LEVELS = 4


def scratch_recipe():
    return Recipe("compact_cnn", {"module": "compact_cnn", "pretrained": False})


def frozen_recipe(image_shape, backbone=PRETRAINED_BACKBONE):
    return Recipe("frozen_features", {
        "module": backbone, "pretrained": True, "freeze": "backbone",
        "module__input_size": frozen_input_size(image_shape),
        "module__levels": FROZEN_LEVELS}, linear_head=True)


def fine_tune_recipe(image_shape, backbone=PRETRAINED_BACKBONE):
    """LP-FT: fine-tune the whole pretrained network from a linear-probe head.

    The head starts as the logistic regression of the frozen features
    (``head_init='probe'``), the BatchNorm layers keep their pretrained
    weights and statistics (``freeze='bn'``: batches of a few images would
    overwrite them), and the rest trains at a learning rate 50x below the
    from-scratch one, with flips and mild random resized crops, at a reduced
    resolution (cost); the final weights are halfway between the fine-tuned
    ones and the probe's (``wise_alpha=0.5``), and it predicts with the mean
    of its probabilities and those of the frozen features' probe at 224 px
    (``frozen_ensemble=True``): on the shifted validation crops
    (``--experiments ft_recipe``, 12 folds x 2 seeds) 87.9 % against 85.6 %
    for the fine-tuned network alone and 87.5 % for the frozen features
    (first measured, and adopted by a rule set before the run, in
    ``--experiments ft_ensemble``: 88.5 against 86.0 and 87.5 %; training
    only the last one or three stages instead scored 85.9 and 84.6 %).

    Its probe and head take the frozen features' levels
    (``FROZEN_LEVELS``): on the shifted validation
    crops (``bench/_explore_defaults.py --experiments ft_levels``, 3 draws)
    the recipe scored 86.2 / 76.0 / 83.1 / 81.7 % with them against 83.1 /
    72.1 / 84.0 / 78.1 % with the pooled output alone (48 px RGB 30 and 5
    per class, 128 px gray 30 and 5), still below the frozen features'
    88.8 / 82.1 / 92.1 / 86.2 %. Kumar et al. (ICLR 2022)
    found that a probe first keeps fine-tuning from distorting the pretrained
    features; Wortsman et al. (CVPR 2022) that the weight-space ensemble keeps
    the pretrained model's robustness to images unlike the training ones, and
    compared it with the output-space one.
    """
    return Recipe("fine_tune", {
        "module": backbone, "pretrained": True, "freeze": "bn", "head_init": "probe",
        "wise_alpha": FINE_TUNE_WISE_ALPHA, "frozen_ensemble": True, "lr": FINE_TUNE_LR,
        "batch_size": FINE_TUNE_BATCH,
        "augment": RandomAugment(degrees=0.0, translate=0.0, zoom=0.0, hflip=0.5,
                                 crop_scale=0.6),
        "module__input_size": fine_tune_input_size(image_shape),
        "module__levels": FROZEN_LEVELS},
        # 17-20 s per training on 2 cores: scored on one held-out part only. No
        # measurement had it win on a few hundred images (see _choose).
        steps=FINE_TUNE_STEPS, starts_from="frozen_features", folds=1)


def pretrained_available(name=PRETRAINED_BACKBONE):
    """Whether the pretrained weights of ``name`` are installed (no network)."""
    check = getattr(backbones, "available_offline", None)
    if check is None:
        return False
    try:
        return bool(check(name))
    except (KeyError, ValueError):
        return False


def candidate_recipes(image_shape, multilabel=False):
    """The recipes that apply to images of ``image_shape``, simplest first.

    Simplest: fewest parameters fitted to the data. The frozen features' linear
    head fits 1,904 per class, ``compact_cnn`` about 73,000 and fine-tuning
    EfficientNet-Lite0 4.7 million. The pretrained ones need the weights
    installed and images with a shorter side of at least
    ``MIN_PRETRAINED_SIDE``. For a ``multilabel`` target the frozen features
    get one logistic regression per label and fine-tuning is no candidate
    (its probe and frozen partner are multi-class).
    """
    if min(image_shape[:2]) < MIN_PRETRAINED_SIDE or not pretrained_available():
        return [scratch_recipe()]
    if multilabel:
        return [frozen_recipe(image_shape), scratch_recipe()]
    return [frozen_recipe(image_shape), scratch_recipe(), fine_tune_recipe(image_shape)]


def label_groups(y_enc):
    """What the held-out parts are drawn per: the class, or for a multi-label
    ``y`` (2-D) the label set (each distinct row, as a label powerset), the
    label sets of a single image together in one group (with many labels most
    sets are unique, and their images must be held out too)."""
    if y_enc.ndim == 1:
        return y_enc
    _, sets, counts = np.unique(y_enc, axis=0, return_inverse=True, return_counts=True)
    sets = sets.reshape(-1)
    sets[counts[sets] < 2] = len(counts)
    return np.unique(sets, return_inverse=True)[1].reshape(-1)


@dataclass
class Selection:
    """What the selection found: the winner, every candidate's scores, the cost."""

    recipe: Recipe
    results: dict
    steps: int
    seconds: float
    n_train: int
    n_valid: int
    rows: np.ndarray = field(default=None, repr=False)  # the images it looked at
    features: object = field(default=None, repr=False)  # for a linear-head winner
    body_state: dict = field(default=None, repr=False)
    # Per candidate, which held-out images it got right (None: not trained;
    # NaN where it was not scored, see Recipe.folds).
    correct: list = field(default=None, repr=False)
    n_folds: int = 1  # held-out parts, each trained on the rest


def can_hold_out(y_enc):
    """Whether images can be held out to compare recipes: two images or more
    in at least two classes; for a multi-label ``y``, in one label set (or
    one group of the sets of a single image, see ``label_groups``): every
    image carries all the labels, and a held-out part of one group scores
    them all."""
    enough = int((np.bincount(label_groups(y_enc)) >= 2).sum())
    return enough >= (1 if y_enc.ndim == 2 else 2)


def unselected(recipes, verbose=0):
    """The :class:`Selection` when nothing can be held out (``can_hold_out``):
    the simplest of ``recipes``, which the rule of ``_choose`` keeps when no
    held-out image shows another to be better. With one image per class, the
    frozen features scored 64.1 % where ``compact_cnn`` from scratch scored
    33.5 % (``bench/_explore_defaults.py --experiments one_shot``: photo
    crops and color digits, 15 folds, better on every one)."""
    _log(verbose, "no two classes have two images, so none can be held out to "
                  f"compare recipes: the simplest, {recipes[0].name}")
    return Selection(recipes[0], None, 0, 0.0, 0, 0)


def _log(verbose, text):
    if verbose:
        print(f"[recipe selection] {text}", flush=True)


def select_recipe(estimator, X, y_enc, weights, recipes, *, rng, device, precision,
                  build_module, pos_weight=None, n_images=None, verbose=0):
    """Compare ``recipes`` on a held-out part of ``X``; return a :class:`Selection`.

    Parameters
    ----------
    estimator : CNNClassifier
        The estimator being fitted: trained recipes are its clones with the
        recipe's parameters.
    X : ndarray of shape (n, H, W, C)
        Validated in-memory images.
    y_enc : ndarray of shape (n,) or (n, n_labels)
        Class indices, or a multi-label 0/1 indicator matrix: its held-out
        parts are drawn per label set, and an image is right when all its
        labels are (at the estimator's ``threshold``).
    weights : ndarray of shape (n,)
        Sample weights (class weights included).
    recipes : list of Recipe
        At least two.
    rng : numpy.random.RandomState
        Draws the split and the seeds of the trained candidates.
    device, precision : str
        Where and how the features are computed.
    build_module : callable
        ``build_module(params) -> torch.nn.Module``: the network of a recipe's
        parameters, built as ``fit`` builds it (pretrained weights, freezing).
    pos_weight : ndarray of shape (n_labels,) or None
        Multi-label: the weight of each label's positives (``class_weight``).
    n_images : int or None
        The number of training images when ``X`` is a subsample of them
        (``selection_rows`` of file paths); None: ``X`` is all of them.
    """
    start = time.perf_counter()
    rows = np.arange(len(X))
    subsampled = len(X) > SELECT_MAX_SAMPLES or (n_images or 0) > len(X)
    if len(X) > SELECT_MAX_SAMPLES:
        rows = _subsample(label_groups(y_enc), SELECT_MAX_SAMPLES, rng)
    X, y_enc, weights = X[rows], y_enc[rows], weights[rows]
    groups = label_groups(y_enc)
    n_groups = int((np.bincount(groups) >= 2).sum())  # those that can be held out
    n_valid = max(n_groups, int(round(SELECT_VALID_FRACTION * len(X))))
    scorer = functools.partial(_scores, threshold=getattr(estimator, "threshold", 0.5))
    results = {"recipe": [], "steps": [], "valid_score": [], "valid_log_loss": [],
               "fit_s": []}
    correct = []  # per recipe: which held-out images it got right (None: not trained)
    cache, spent, early_s = {}, 0, {}
    linear = [r for r in recipes if r.linear_head]
    features = None
    if SELECT_SPLIT == "neighbourhood" and linear:
        t0 = time.perf_counter()
        features = _features(linear[0], X, cache, device=device, precision=precision,
                             build_module=build_module)
        early_s[linear[0].name] = time.perf_counter() - t0  # counted as its fit_s
    folds = _held_out_folds(features, groups, n_valid, rng)
    held_idx = np.concatenate([valid for _, valid in folds])
    held_weights = weights[held_idx]
    looked_at = f"the {len(X)} images looked at" if subsampled else f"{len(X)} images"
    parts = (f" in {len(folds)} parts, each scored after training on the rest"
             if len(folds) > 1 else "")
    _log(verbose, f"{len(held_idx)} of {looked_at} held out{parts}; a recipe beats a "
                  "simpler one by getting significantly more of them right (McNemar's "
                  "test at 5 %)")
    for recipe in recipes:
        t0 = time.perf_counter() - early_s.get(recipe.name, 0.0)
        used_folds = folds[:recipe.folds or len(folds)]
        scored = np.zeros(len(held_idx), bool)
        scored[:sum(len(valid) for _, valid in used_folds)] = True
        why = None
        if _cannot_win(correct, held_weights, scored):
            # By the rule of ``_choose``, whatever it scores, a simpler one wins.
            why = ("a simpler recipe makes too few errors on the held-out part to be "
                   "beaten significantly")
        elif _outclassed(recipe, results["recipe"], correct, held_weights):
            why = (f"another recipe significantly beats {recipe.starts_from}, which "
                   "it starts from")
        if why is not None:
            for key, value in (("recipe", recipe.name), ("steps", 0),
                               ("valid_score", math.nan), ("valid_log_loss", math.nan),
                               ("fit_s", 0.0)):
                results[key].append(value)
            correct.append(None)
            _log(verbose, f"{recipe.name:<16} not trained: {why}")
            continue
        right = np.full(len(held_idx), np.nan)
        scores, used, budget, offset = [], 0, 0, 0
        for train_idx, valid_idx in used_folds:
            here = slice(offset, offset + len(valid_idx))
            offset += len(valid_idx)
            if recipe.linear_head:
                score, loss, fold_right = _score_linear_head(
                    recipe, X, y_enc, weights, train_idx, valid_idx, cache,
                    device=device, precision=precision, build_module=build_module,
                    pos_weight=pos_weight, score=scorer)
            else:
                simpler = [c[here] for c in correct if c is not None
                           and not np.isnan(np.asarray(c[here], float)).any()]
                ahead_of = (simpler if SELECT_STOP_AHEAD and simpler
                            and recipe.starts_from is None else None)
                (score, loss, fold_right), fold_used, fold_budget = _score_trained(
                    estimator, recipe, X, y_enc, weights, train_idx, valid_idx, rng,
                    ahead_of=ahead_of, score=scorer)
                used, budget = used + fold_used, budget + fold_budget
            right[here] = fold_right
            scores.append((score, loss, weights[valid_idx].sum()))
        if not np.isnan(right).any():
            right = right.astype(bool)
        # Each part's accuracy and log-loss, weighted by its held-out weight.
        part_weights = [w for _, _, w in scores] if sum(w for *_, w in scores) > 0 else None
        score, loss = (float(np.average([part[i] for part in scores],
                                        weights=part_weights)) for i in (0, 1))
        correct.append(right)
        spent += used
        for key, value in (("recipe", recipe.name), ("steps", used),
                           ("valid_score", score), ("valid_log_loss", loss),
                           ("fit_s", time.perf_counter() - t0)):
            results[key].append(value)
        used_text = (f"{used} of {budget} steps: stopped when it significantly beat "
                     "the simpler recipes" if used < budget else f"{used} steps")
        if len(used_folds) < len(folds):
            used_text += f"; scored on {len(used_folds)} of the {len(folds)} parts"
        _log(verbose, f"{recipe.name:<16} valid accuracy {score:.3f}, log-loss "
                      f"{loss:.3f} ({used_text}, {time.perf_counter() - t0:.1f} s)")
    best = _choose(correct, held_weights)
    _log(verbose, f"chose {recipes[best].name} (valid accuracy "
                  f"{results['valid_score'][best]:.3f}) in "
                  f"{time.perf_counter() - start:.1f} s")
    best = recipes[best]
    entry = cache.get(best.name, {})
    return Selection(best, results, spent, time.perf_counter() - start,
                     len(folds[0][0]), len(held_idx), rows, entry.get("features"),
                     entry.get("body_state"), correct, len(folds))


def selection_rows(y_enc, image_shape, rng):
    """The rows of a fit on file paths that the selection decodes and looks at.

    A fit keeps file paths (decoded batch by batch) when its decoded images
    exceed the reader's memory budget: the selection then decodes a
    subsample of ``SELECT_MAX_SAMPLES`` images (``_subsample``), or as many
    as ``MEMORY_BUDGET`` holds when they are large, and the winner is refit
    on every file.
    """
    groups = label_groups(y_enc)
    n = min(SELECT_MAX_SAMPLES, MEMORY_BUDGET // max(1, math.prod(image_shape)))
    return np.arange(len(groups)) if n >= len(groups) else _subsample(groups, n, rng)


def _subsample(y_enc, n, rng):
    """About ``n`` of the rows, sorted: each class in proportion, and at least
    two images of each (all of a class of fewer), so that every class is
    trained on, and held out where it can be."""
    counts = np.bincount(y_enc)
    take = np.maximum(np.minimum(counts, 2), np.round(counts * n / len(y_enc)).astype(int))
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y_enc == c))[:k]
                                   for c, k in enumerate(take)]))


def _held_out_folds(features, y_enc, n_valid, rng):
    """``(train_idx, valid_idx)`` pairs: the held-out parts of the selection.

    One part of ``n_valid`` images (stratified; a neighbourhood per class
    when there are ``features``, see ``_neighbourhood_split``) when that is
    at least ``SELECT_MIN_HELD_OUT`` images; otherwise the data is cut into
    ``SELECT_FOLDS`` parts (per class, neighbourhoods one after the other,
    see ``_neighbourhood_parts``) and as many of them are held out, each
    with the rest as its training part, as it takes to hold out that many
    images (all of them at most).

    The image of a class that has only one is never held out: every
    candidate trains on it, and the held-out parts score the other classes.
    """
    indices = np.arange(len(y_enc))
    n_folds = (1 if n_valid >= SELECT_MIN_HELD_OUT
               else min(SELECT_FOLDS, math.ceil(SELECT_MIN_HELD_OUT / n_valid)))
    if n_folds == 1:
        alone = np.bincount(y_enc)[y_enc] < 2
        train_idx, valid_idx = train_test_split(
            indices[~alone], test_size=n_valid, stratify=y_enc[~alone], random_state=rng)
        if features is not None:
            train_idx, valid_idx = _neighbourhood_split(features, y_enc, valid_idx,
                                                        buffer=SELECT_BUFFER)
        else:
            train_idx = np.sort(np.r_[train_idx, indices[alone]])
        return [(train_idx, valid_idx)]
    part = _neighbourhood_parts(features, y_enc, SELECT_FOLDS, rng)
    n_folds = min(n_folds, int(part.max()) + 1)  # as many parts as hold images
    return [(np.flatnonzero(part != f), np.flatnonzero(part == f))
            for f in range(n_folds)]


def _neighbourhood_parts(features, y_enc, k, rng):
    """The part (0 to ``k - 1``) of each image: in each class, ``k`` neighbourhoods.

    Per class, a random remaining image and its nearest remaining
    neighbours (cosine distance of ``features``) make the next part, one
    ``k``-th of the class each (the first parts one image more when it does
    not divide); without ``features``, random images instead of neighbours.
    A class of ``k`` images or fewer has at most one image in each part; the
    image of a class of one is in none (-1): it is never held out.
    """
    unit = (None if features is None else
            features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12))
    part = np.empty(len(y_enc), int)
    for c in range(int(y_enc.max()) + 1):
        members = rng.permutation(np.flatnonzero(y_enc == c))
        if len(members) < 2:
            part[members] = -1
            continue
        sizes = [len(members) // k + (i < len(members) % k) for i in range(k)]
        for f in range(k):
            if unit is not None and len(members):
                distance = 1 - unit[members] @ unit[members[0]]
                members = members[np.argsort(distance, kind="stable")]
            part[members[:sizes[f]]] = f
            members = members[sizes[f]:]
    return part


#: McNemar's statistic above which one recipe beats another on the held-out
#: part: the chi-squared quantile of 1 degree of freedom at 5 %.
MCNEMAR_CHI2 = 3.841


def _discordant(right_a, right_b, weights):
    """Held-out images that ``a`` got right and ``b`` wrong, and the reverse.

    Counted in images: the sample weights are rescaled to a mean of 1. Images
    that either was not scored on (NaN) do not count.
    """
    w = np.asarray(weights, dtype=float)
    w = w / w.mean() if w.sum() > 0 else np.ones_like(w)
    a, b = np.asarray(right_a, float), np.asarray(right_b, float)
    both = ~(np.isnan(a) | np.isnan(b))  # images that both were scored on
    a, b = a == 1, b == 1
    return float(w[a & ~b & both].sum()), float(w[b & ~a & both].sum())


def _beats(wins, losses):
    """Whether ``wins`` against ``losses`` discordant images is a significant win.

    McNemar's test with Edwards' continuity correction, at 5 % (two-sided), as
    Dietterich (*Neural Computation*, 1998) recommends for comparing two
    classifiers on one held-out set: ``(|wins - losses| - 1)**2 / (wins +
    losses) > 3.841``. With no losses it takes 6 wins: 5 images that one
    recipe gets right and the other wrong can be chance.
    """
    return wins > losses and (abs(wins - losses) - 1) ** 2 > MCNEMAR_CHI2 * (wins + losses)


def _choose(correct, weights):
    """Index of the chosen recipe: the simplest that no other significantly beats.

    ``correct[i]`` says which held-out images recipe ``i`` got right (None:
    not trained, see ``_cannot_win``), the recipes ordered simplest first
    (fewest parameters fitted to the data). Two recipes are compared on
    the same held-out images, by the images where they disagree
    (``_beats``).

    A small held-out part cannot tell close recipes apart, and one of images
    with near-duplicates in the training part (crops of the same photos,
    frames of the same scene) scores the recipes that memorize them near
    1.0: the simpler recipe is the safer bet on images unlike the training
    ones. Judged on data the selection never saw (``bench/_explore_defaults.py
    --experiments select_all``, ``bench/results/explore_select_previous.md``,
    with the previous linear head and one held-out fifth: every
    candidate refit and scored on crops from another part of each photo's
    training region, cut along both axes, 4 photo conditions x 6 folds),
    this rule scored 86.5 % (worst fold 71.4 %) where the simplest recipe
    within one standard error of the best accuracy, the rule before, scored
    85.4 % (worst 60.0 %): on one fold that rule took ``compact_cnn``, right
    on 3 more of 42 held-out images, and it scored 28 points below the
    frozen features on the validation crops. Both agree on the other 23.
    On 3-fold CV of 10 and 30 color-MNIST images of 64x64 per class, where
    ``compact_cnn`` wins, they differ on one fold of 6, with 13 held-out
    images (the frozen features 5 right, ``compact_cnn`` 10): McNemar's test
    kept the frozen features, 2.9 points below; 71.6 against 72.1 % in all.
    Both pick ``compact_cnn`` on every fold with 30 images per class. Rerun
    with this release (the floored head, several held-out parts below 500
    images; ``bench/results/explore_select.md``) the two rules agree on all
    30 folds: the frozen features on every photo fold (88.5 %, worst 78.6
    %; fine-tuning always: 85.7 %), ``compact_cnn`` on every fold with 30
    color-MNIST images per class (91.3 %).
    """
    trained = [i for i, c in enumerate(correct) if c is not None]
    # A win takes a higher (weighted) accuracy: the discordant images' balance
    # is the difference of the two accuracies. The most accurate recipe is
    # never beaten, so there is always one to choose, when all were scored
    # on the same images; when one was scored on fewer (``Recipe.folds``)
    # and the wins go round in a circle, the simplest.
    return next((i for i in trained
                 if not any(_beats(*_discordant(correct[j], correct[i], weights))
                            for j in trained if j != i)), trained[0])


def _cannot_win(correct, weights, scored=None):
    """Whether a recipe after those with held-out results ``correct`` can no longer win.

    The recipe ``_choose`` picks among them stays picked unless a later one
    beats it; a later one can at best get every image it is scored on
    (``scored``, a mask; all by default) right, so it cannot when the errors
    of the pick there are too few to be beaten (fewer than 6 images).
    Training it is then wasted (fine-tuning's 17-20 s on 2 cores).
    """
    if not any(c is not None for c in correct):
        return False
    pick = correct[_choose(correct, weights)]
    best = np.where(np.ones(len(pick), bool) if scored is None else scored, 1.0, np.nan)
    wrong, _ = _discordant(best, pick, weights)
    return not _beats(wrong, 0.0)


def _outclassed(recipe, names, correct, weights):
    """Whether ``recipe`` starts from a recipe that another one significantly beat.

    Fine-tuning starts from the frozen features' linear probe, at a learning
    rate 50x below the from-scratch one, and its final weights are halfway
    back to that probe (WiSE-FT): it refines the frozen features rather than
    replacing them. When another recipe (``compact_cnn``) beats the frozen
    features clearly, fine-tuning did not catch up with it on any held-out
    part where that happened: 6 validation folds of the digits and MNIST
    training parts (``bench/_explore_defaults.py --experiments rule``) and
    the 6 fits of the color-MNIST conditions of ``bench/accuracy.py``
    (held-out 0.58-0.85 against 0.955-0.98), so training it (20-30 s on 2
    cores) is skipped there.
    """
    if recipe.starts_from not in names:
        return False
    base = correct[names.index(recipe.starts_from)]
    if base is None:
        return False
    return any(_beats(*_discordant(c, base, weights)) for c in correct if c is not None)


def _scores(y_true, proba, weights, threshold=0.5):
    """Accuracy, log-loss and which images are right, of ``proba`` (a column per
    class; per label for a multi-label ``y_true``, see ``multilabel_scores``)."""
    if y_true.ndim == 2:
        return multilabel_scores(y_true, proba, weights, threshold)
    accuracy, loss = accuracy_and_log_loss(y_true, proba, weights,
                                           np.arange(proba.shape[1]))
    return accuracy, loss, proba.argmax(1) == y_true


class _StopWhenAhead(Callback):
    """Stops a candidate's training once ``_choose`` can no longer pass it over.

    At ``STOP_CHECKS`` evenly spaced epoch ends, the network being trained is
    scored on the held-out part; when it significantly beats every simpler
    recipe (``ahead_of``: which held-out images each got right; ``_beats``),
    the rule of ``_choose`` picks it (or a later recipe) whatever the rest of
    its budget would add, and the rest is skipped. (Its refit still trains on
    the whole budget.) Fine-tuning from the simpler recipe's probe is
    ``_outclassed`` then too.

    The network is scored as it stands at that epoch's end, with the
    BatchNorm statistics of training; the score reported for it is taken
    after ``UpdateBatchNorm`` recomputed them at the end, and can differ.
    """

    def __init__(self, X_valid, y_valid, weights, ahead_of, score=_scores):
        self.X_valid = X_valid
        self.y_valid = y_valid
        self.weights = weights
        self.ahead_of = ahead_of
        self.score = score

    def on_train_begin(self, net, **kwargs):
        self.every_ = max(1, math.ceil(net.max_epochs / STOP_CHECKS))
        self.stopped_at_ = None

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch % self.every_ or epoch >= net.max_epochs:
            return
        images = torch.from_numpy(self.X_valid)
        size = inference_batch_size(net.device, images.shape[1:3], net.module_)
        with torch.inference_mode():
            logits = torch.cat([net.predict_logits(images[i:i + size])
                                for i in range(0, len(images), size)])
        proba = (torch.sigmoid(logits.float()) if self.y_valid.ndim == 2
                 else torch.softmax(logits.float(), 1)).cpu().numpy()
        _, _, right = self.score(self.y_valid, proba, self.weights)
        if all(_beats(*_discordant(right, other, self.weights))
               for other in self.ahead_of):
            self.stopped_at_ = epoch
            raise KeyboardInterrupt  # skorch's way to end training after an epoch


def _score_trained(estimator, recipe, X, y_enc, weights, train_idx, valid_idx, rng,
                   ahead_of=None, score=_scores):
    """Train a clone on the train part as the refit would train it; score it.

    The recipe's own budget (``recipe.steps`` optimizer steps, or the
    ``'auto'`` budget of the train part's size), so that every candidate is
    compared as it would be used; with ``ahead_of`` (which held-out images
    each simpler recipe got right), less when it is clearly ahead
    (``_StopWhenAhead``). Returns the scores of ``_scores``, the optimizer
    steps taken and the budget's.
    """
    n_train = len(train_idx)
    params = {**recipe.params, "validation_fraction": None, "early_stopping": False,
              "verbose": 0, "checkpoint": None,
              "random_state": int(rng.randint(2**31 - 1))}
    if recipe.steps is not None:
        batch_size = recipe.params.get("batch_size") or auto_batch_size(n_train)
        params.update(batch_size=batch_size, max_epochs=max(
            1, math.ceil(recipe.steps / math.ceil(n_train / batch_size))))
    clf = clone(estimator)
    if ahead_of is not None:
        stop = _StopWhenAhead(X[valid_idx], y_enc[valid_idx], weights[valid_idx],
                              ahead_of, score)
        params["callbacks"] = [*(estimator.callbacks or []), ("select_stop", stop)]
    clf.set_params(**params)
    clf.fit(X[train_idx], y_enc[train_idx], sample_weight=weights[train_idx])
    proba = clf.predict_proba(X[valid_idx])
    per_epoch = math.ceil(n_train / clf.batch_size_)
    return (score(y_enc[valid_idx], proba, weights[valid_idx]),
            len(clf.net_.history) * per_epoch, clf.max_epochs_ * per_epoch)


def _features(recipe, X, cache, *, device, precision, build_module):
    """The features of every image under ``recipe``'s frozen body, computed once."""
    if recipe.name not in cache:
        module = build_module(recipe.params).to(device)
        features = embed(module, X, device=device, precision=precision)
        cache[recipe.name] = {"features": features, "body_state": module.state_dict()}
    return cache[recipe.name]["features"]


def _neighbourhood_split(features, y_enc, valid_idx, buffer=False):
    """Hold out, in each class, an image and its nearest neighbours.

    As many images per class as the stratified random ``valid_idx`` holds
    out, but the nearest ones (cosine distance of the pretrained features) to
    the first of them: a neighbourhood of the class, as spatial block
    cross-validation holds out a block (Roberts et al., *Ecography*, 2017).
    A class with one held-out image keeps the random draw's.
    A random held-out part of overlapping images (crops of the same photos,
    frames of a video) has near-duplicates in the training part and scores
    every candidate at 91-100 %.
    """
    unit = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    counts = np.bincount(y_enc[valid_idx], minlength=int(y_enc.max()) + 1)
    held, dropped = [], []
    for c, count in enumerate(counts):
        members = np.flatnonzero(y_enc == c)
        if not count:
            continue
        seed = valid_idx[y_enc[valid_idx] == c][0]
        distance = 1 - unit[members] @ unit[seed]
        order = members[np.argsort(distance, kind="stable")]
        held.append(order[:count])
        if buffer:  # keep at least ``count`` images to train on
            dropped.append(order[count:count + min(count, len(order) - 2 * count)])
    valid = np.sort(np.concatenate(held))
    left_out = np.concatenate([valid, *dropped])
    return np.setdiff1d(np.arange(len(y_enc)), left_out), valid


def _score_linear_head(recipe, X, y_enc, weights, train_idx, valid_idx, cache, *,
                       device, precision, build_module, pos_weight=None, score=_scores):
    """Features of every image once; a linear head on the train part, scored."""
    features = _features(recipe, X, cache, device=device, precision=precision,
                         build_module=build_module)
    head = fit_linear_head(features[train_idx], y_enc[train_idx], weights[train_idx],
                           n_classes=None if y_enc.ndim == 2 else int(y_enc.max()) + 1,
                           pos_weight=pos_weight)
    proba = head.predict_proba(features[valid_idx])
    return score(y_enc[valid_idx], proba, weights[valid_idx])


def install_linear_head_streamed(net, selection, dataset, *, pos_weight=None):
    """``install_linear_head`` for a dataset of file paths, decoded batch by batch.

    The features of every image of ``dataset`` (``net.get_iterator`` in eval
    mode, as :class:`~skimgcls.callbacks.ProbeHead` computes them), then the
    head on them, written into ``net.module_``.
    """
    module = net.module_
    if selection.body_state is not None:
        module.load_state_dict(selection.body_state)
    features, labels, weights = dataset_features(net, module, dataset, net.device)
    head = fit_linear_head(features, labels, weights,
                           n_classes=last_linear(module).out_features,
                           pos_weight=pos_weight)
    set_linear_head(module, head)
    return head


def install_linear_head(module, selection, X, y_enc, weights, *, device, precision,
                        pos_weight=None):
    """Refit the linear head on every image's features and write it into ``module``.

    ``module`` is a freshly built network of the winning recipe (frozen body,
    head ending with a ``torch.nn.Linear``); its body gets the exact weights
    the features were computed with. The features of the selection are
    reused when it looked at every image.
    """
    if selection.body_state is not None:
        module.load_state_dict(selection.body_state)
    features = selection.features
    if features is None or len(selection.rows) != len(X):
        features = embed(module, X, device=device, precision=precision)
    head = fit_linear_head(features, y_enc, weights,
                           n_classes=last_linear(module).out_features,
                           pos_weight=pos_weight)
    set_linear_head(module, head)
    return head
