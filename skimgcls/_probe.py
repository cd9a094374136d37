"""Linear probes: logistic regression on a frozen network's features.

Used twice: the ``'frozen_features'`` recipe is a probe written into the
network's last linear layer, and ``head_init='probe'`` starts fine-tuning from
one (LP-FT: Kumar et al., "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR 2022).
"""

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from ._device import inference_batch_size
from ._functional import to_float_nchw

__all__ = [
    "HEAD_CS",
    "LinearHead",
    "accuracy_and_log_loss",
    "embed",
    "embed_batches",
    "fit_linear_head",
    "last_linear",
    "multilabel_scores",
    "set_linear_head",
]

#: Regularization grid of the linear head (inverse strength ``C`` of
#: ``LogisticRegression`` on standardized features), chosen by inner 3-fold CV
#: (accuracy, then log-loss).
HEAD_CS = (0.01, 0.1, 1.0)
#: Solver of the linear head's logistic regressions. Newton-CG reaches the
#: optimum of these problems (a few hundred images, 1,904 standardized
#: features) in about 10 iterations, 10-20x faster than L-BFGS (7 s -> 0.5 s
#: for the head of 800 color-MNIST images); on 3-fold CV of the training
#: parts of color MNIST (1,000 images) and of 3 photo conditions it scored
#: the same as L-BFGS (84.4 against 84.6 %, 99.5 against 99.8 %, equal on
#: the other two).
HEAD_SOLVER = "newton-cg"


@contextmanager
def _quiet_line_search():
    """Silence Newton-CG's line-search warnings in the head's fits.

    When no step decreases the loss by more than rounding (a few easy images,
    weak regularization: the optimum is reached), scipy warns that its line
    search did not converge and scikit-learn that it failed, then stops
    there. The user fitted no logistic regression: these are no news.
    """
    with warnings.catch_warnings():
        # scipy's "The line search algorithm did not converge", "Rounding
        # errors prevent the line search from converging", ..., and
        # scikit-learn's "Line Search failed" (matched case-insensitively).
        warnings.filterwarnings("ignore", message=r".*line search")
        yield


@dataclass
class LinearHead:
    """``logits = features @ coef.T + intercept``, one row per class.

    With ``multilabel``, one row per label: each logit is a sigmoid's (a
    label is on above ``threshold``), not a softmax over the rows. ``C`` is
    the regularization chosen (for a multi-label head, one per label).
    """

    coef: np.ndarray
    intercept: np.ndarray
    C: object
    multilabel: bool = False

    def predict(self, features, threshold=0.5):
        if self.multilabel:
            return (self.predict_proba(features) > threshold).astype(np.int64)
        return (features @ self.coef.T + self.intercept).argmax(1)

    def predict_proba(self, features):
        logits = torch.from_numpy(features @ self.coef.T + self.intercept).double()
        return (torch.sigmoid(logits) if self.multilabel
                else torch.softmax(logits, 1)).numpy()


def embed_batches(module, batches, *, device, precision):
    """Features ``module.embed(x)`` of float NCHW ``batches``, float32, in eval mode."""
    module.eval()
    kind = torch.device(device).type
    out = []
    with torch.inference_mode():
        for images in batches:
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out.append(module.embed(images).float().cpu())
    return torch.cat(out).numpy()


def embed(module, X, *, device, precision):
    """Features ``module.embed(x)`` of in-memory images ``X``, float32, in eval mode.

    In batches of ``inference_batch_size`` images of the network's input size.
    """
    batch_size = inference_batch_size(device, X.shape[1:3], module)
    batches = (to_float_nchw(X[i:i + batch_size], device)
               for i in range(0, len(X), batch_size))
    return embed_batches(module, batches, device=device, precision=precision)


def accuracy_and_log_loss(y_true, proba, weights, labels):
    """Weighted accuracy and log-loss of ``proba``, whose columns are ``labels``.

    The ranking of the recipe selection and of the head's ``C``: accuracy
    first, the log-loss (a proper scoring rule) between equal accuracies.
    """
    accuracy = float(np.average(y_true == labels[proba.argmax(1)], weights=weights))
    loss = log_loss(y_true, proba, sample_weight=weights, labels=labels)
    return accuracy, float(loss)


def multilabel_scores(y_true, proba, weights, threshold=0.5):
    """Weighted subset accuracy and binary log-loss of multi-label ``proba``.

    An image is right when every label is (``proba > threshold`` equals its
    row of ``y_true``), as ``score`` counts it; the log-loss is the binary
    cross-entropy averaged over the labels of an image, as the network is
    trained on. Returns ``(accuracy, loss, right)``.
    """
    right = ((proba > threshold) == (y_true > 0)).all(1)
    p = np.clip(proba, 1e-15, 1 - 1e-15)
    bce = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean(1)
    return (float(np.average(right, weights=weights)),
            float(np.average(bce, weights=weights)), right)


def fit_linear_head(features, y, weights, *, n_classes=None, pos_weight=None):
    """Logistic regression on standardized features, ``C`` from ``HEAD_CS`` by CV.

    Each feature is centred and divided by its standard deviation plus the
    median standard deviation of all features: a floor under each scale, so
    that features that barely vary on the training images (and may vary more
    on other images) are not blown up to the others' size. On validation
    crops that no suite test shares (``bench/_explore_defaults.py
    --experiments head_other``: 14 photos the suite never uses, 32 folds;
    ``--experiments head``: the suite's photo training regions cut along
    both axes, 24 folds) it scored 0.7 and 1.9 points above plain
    standardization (better on 21 of 32 and 13 of 24 folds, worse on 5 and
    9), where raw features with ``C=1`` scored 0.1 and 1.3 points above.

    The scaling is folded into the returned weights, so the head applies to
    the raw features. Returns a :class:`LinearHead` with one row per class
    (zeros for a class absent from ``y``).

    A 2-D 0/1 ``y`` (multi-label) gets one binary logistic regression per
    label (one-vs-rest, as a sigmoid network has one output per label), each
    with its ``C``, its positives weighted by ``pos_weight``; a label that is
    always off (or on) is a constant at its smoothed frequency.
    """
    mean = features.mean(0)
    std = features.std(0)
    scale = std + np.median(std) + 1e-6
    Z = (features - mean) / scale
    if y.ndim == 2:
        return _fold_scale(*_fit_per_label(Z, y, weights, pos_weight), mean, scale,
                           multilabel=True)
    n_classes = n_classes or int(y.max()) + 1
    with _quiet_line_search():
        C = _choose_C(Z, y, weights)
        model = LogisticRegression(C=C, solver=HEAD_SOLVER, max_iter=1000)
        model.fit(Z, y, sample_weight=weights)
    coef = np.zeros((n_classes, features.shape[1]))
    intercept = np.zeros(n_classes)
    if len(model.classes_) == 2 and model.coef_.shape[0] == 1:
        # Binary: scikit-learn keeps one row, the logit of the second class.
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], \
            model.intercept_[0]
    else:
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
    return _fold_scale(coef, intercept, C, mean, scale)


def _fit_per_label(Z, y, weights, pos_weight):
    """``(coef, intercept, Cs)`` of one binary logistic regression per column of ``y``."""
    n, n_labels = y.shape
    coef, intercept = np.zeros((n_labels, Z.shape[1])), np.zeros(n_labels)
    Cs = np.full(n_labels, np.nan)
    for j in range(n_labels):
        target = (y[:, j] > 0).astype(int)
        w = weights if pos_weight is None else weights * np.where(target, pos_weight[j], 1)
        positives = np.average(target, weights=w)
        if target.min() == target.max():  # nothing to separate
            p = (positives * n + 0.5) / (n + 1)
            intercept[j] = np.log(p / (1 - p))
            continue
        with _quiet_line_search():
            Cs[j] = _choose_C(Z, target, w)
            model = LogisticRegression(C=Cs[j], solver=HEAD_SOLVER, max_iter=1000)
            model.fit(Z, target, sample_weight=w)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept, Cs


def _fold_scale(coef, intercept, C, mean, scale, multilabel=False):
    """The head on raw features of a head fitted on ``(features - mean) / scale``."""
    coef = coef / scale
    intercept = intercept - coef @ mean
    return LinearHead(coef.astype(np.float32), intercept.astype(np.float32), C,
                      multilabel)


def _choose_C(Z, y, weights):
    """The ``C`` of ``HEAD_CS`` with the best stratified 3-fold accuracy.

    Equal accuracies (folds that every ``C`` gets right, as on a few easy
    images) are decided by the log-loss, a proper scoring rule, as the
    recipe selection decides; exact ties go to the smaller ``C``.

    In each fold the ``C`` grid is a regularization path, each fit starting
    from the previous, more regularized solution (``warm_start``, as
    ``LogisticRegressionCV`` computes its path): the same optima, about 30 %
    fewer iterations.
    """
    folds = min(3, int(np.bincount(y).min()))
    if folds < 2 or len(HEAD_CS) == 1:
        return HEAD_CS[0] if len(HEAD_CS) == 1 else 1.0
    splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(Z, y)
    scores = np.zeros((len(HEAD_CS), 2))  # minus summed accuracies, summed log-losses
    path = sorted(HEAD_CS)  # most regularized first
    for tr, va in splits:
        model = LogisticRegression(solver=HEAD_SOLVER, max_iter=1000, warm_start=True)
        for i, C in enumerate(path):
            model.set_params(C=C).fit(Z[tr], y[tr], sample_weight=weights[tr])
            accuracy, loss = accuracy_and_log_loss(
                y[va], model.predict_proba(Z[va]), weights[va], model.classes_)
            scores[i] -= (accuracy, -loss)
    best = min(range(len(HEAD_CS)), key=lambda i: tuple(scores[i]))
    return path[best]


def last_linear(module):
    """The ``torch.nn.Linear`` that ends ``module.head`` (a backbone network's head).

    Raises a ``ValueError`` that says what is needed when there is none.
    """
    head = getattr(module, "head", None)
    linear = head[-1] if isinstance(head, torch.nn.Sequential) and len(head) else head
    if not (isinstance(linear, torch.nn.Linear) and hasattr(module, "embed")
            and linear.in_features == getattr(module, "embedding_dim", None)):
        raise ValueError(
            "head_init='probe' (a linear probe) needs a network with an embed() "
            "method and a head that is one torch.nn.Linear on the embedding (no "
            "module__head_hidden), as the backbone networks have "
            "(module='efficientnet_lite0', 'resnet18', ...; see "
            f"skimgcls.backbones.list_backbones()); got a {type(module).__name__}. "
            "Pass a backbone name as module, or leave head_init='random'."
        )
    return linear


def set_linear_head(module, head):
    """Write a :class:`LinearHead` into the last linear layer of ``module.head``."""
    linear = last_linear(module)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.coef))
        linear.bias.copy_(torch.from_numpy(head.intercept))
