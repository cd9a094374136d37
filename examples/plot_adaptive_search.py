"""
===============================================
Successive halving over epochs: a faster search
===============================================

A grid search trains every candidate for the full number of epochs, even the
ones that are hopeless after one. scikit-learn's successive halving
(``HalvingGridSearchCV``, ``HalvingRandomSearchCV``) spends a *resource* in
rounds: every candidate gets a little of it, the best half (``factor=2``) get
twice as much, and so on until one candidate is left. With
``resource='max_epochs'`` the resource is the number of epochs of
:class:`~skimgcls.CNNClassifier`: each round fits its survivors again, from
scratch, for more epochs.

Here eight learning rates of the classic MNIST network (``'simple_cnn'``)
compete on scikit-learn's 8x8 digits;
the halving search trains 32 candidate-epochs per fold where a grid search at
8 epochs would train 64. ``bench/bench_search.py`` measures the time of both
on a larger grid; the :ref:`model selection guide <model_selection>` covers
Optuna and dask-ml's Hyperband too.
"""

# %%
# The data and the search
# -----------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV, train_test_split

from skimgcls import CNNClassifier

digits = load_digits()
X = (digits.images / 16).astype(np.float32)  # (1797, 8, 8) in [0, 1]
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, train_size=500, stratify=digits.target, random_state=0)

clf = CNNClassifier("simple_cnn", batch_size=16, validation_fraction=None, precision="fp32",
                    n_threads=1, random_state=0)
search = HalvingGridSearchCV(
    clf,
    {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]},
    resource="max_epochs",   # the budget that grows from round to round
    min_resources=1,         # epochs of the first round
    max_resources=8,         # epochs of the last round (required for this resource)
    factor=2,                # keep the best half, double their epochs
    cv=2,
)
search.fit(X_train, y_train)
print("epochs per round:", search.n_resources_)
print("candidates per round:", search.n_candidates_)
print("best:", search.best_params_, f"CV accuracy {search.best_score_:.3f}")
print(f"test accuracy of the refitted best model: {search.score(X_test, y_test):.3f}")

# %%
# How the candidates fared
# ------------------------
# Each line is one learning rate: its mean cross-validated accuracy after each
# round it survived. The smallest learning rates barely move in one epoch and
# the largest ones do not settle: both leave after the first round. The last
# two survivors are close after 4 epochs, where the choice rests on a noisy
# score: more folds (``cv``) make such late decisions more reliable.
results = search.cv_results_
fig, ax = plt.subplots(figsize=(6, 4))
for lr in np.unique(results["param_lr"].astype(float)):
    rows = np.flatnonzero(results["param_lr"].astype(float) == lr)
    ax.plot(results["n_resources"][rows], results["mean_test_score"][rows],
            marker="o", label=f"lr={lr:g}")
ax.set_xscale("log", base=2)
ax.set_xticks(search.n_resources_, labels=[str(r) for r in search.n_resources_])
ax.set_xlabel("max_epochs of the round")
ax.set_ylabel("mean CV accuracy")
ax.set_title("Successive halving over epochs")
ax.legend(fontsize="small", ncols=2)
fig.tight_layout()
plt.show()
