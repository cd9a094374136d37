"""CNNClassifier inside scikit-learn's meta-estimators and model selection."""

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from .conftest import tiny_classifier


@pytest.fixture(scope="module")
def flat_digits(small_digits):
    """Digits as 2-D rows, the form scikit-learn's tabular tools pass around."""
    X, y = small_digits
    return X.reshape(len(X), -1), y


def test_pipeline_with_function_transformer(flat_digits):
    X, y = flat_digits
    pipe = make_pipeline(
        FunctionTransformer(lambda Z: Z.reshape(-1, 8, 8)),  # rows -> images
        tiny_classifier(max_epochs=5),
    ).fit(X, y)
    assert pipe.predict(X).shape == (300,)
    assert pipe.score(X, y) > 0.3


def test_grid_search_over_lr_and_module_param_in_parallel(flat_digits):
    X, y = flat_digits
    search = GridSearchCV(
        tiny_classifier(max_epochs=1),
        {"lr": [0.003, 0.03], "module__width": [2, 4]},
        cv=StratifiedKFold(2), n_jobs=2,
    ).fit(X, y)
    assert set(search.best_params_) == {"lr", "module__width"}
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.module_.features[0].out_channels == \
        search.best_params_["module__width"]
    serial = GridSearchCV(
        tiny_classifier(max_epochs=1),
        {"lr": [0.003, 0.03], "module__width": [2, 4]},
        cv=StratifiedKFold(2), n_jobs=1,
    ).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_cross_val_score(flat_digits):
    X, y = flat_digits
    scores = cross_val_score(tiny_classifier(max_epochs=5), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.2)


def test_soft_voting_with_logistic_regression(flat_digits):
    X, y = flat_digits
    vote = VotingClassifier(
        [("cnn", tiny_classifier(max_epochs=5)),
         ("lr", LogisticRegression(max_iter=200))],
        voting="soft",
    ).fit(X, y)
    proba = vote.predict_proba(X)
    expected = np.mean([est.predict_proba(X) for est in vote.estimators_], axis=0)
    np.testing.assert_allclose(proba, expected, rtol=1e-6)


def test_stacking(flat_digits):
    X, y = flat_digits
    stack = StackingClassifier(
        [("cnn", tiny_classifier(max_epochs=5)),
         ("lr", LogisticRegression(max_iter=200))],
        final_estimator=LogisticRegression(max_iter=200), cv=2,
    ).fit(X, y)
    assert stack.transform(X).shape == (300, 20)  # 10 probabilities per model
    assert stack.score(X, y) > 0.5


def test_calibrated_classifier(flat_digits):
    X, y = flat_digits
    calibrated = CalibratedClassifierCV(tiny_classifier(max_epochs=5), cv=2).fit(X, y)
    proba = calibrated.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert len(calibrated.calibrated_classifiers_) == 2
