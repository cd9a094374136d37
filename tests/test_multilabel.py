"""Multi-label CNNClassifier: a 0/1 indicator y, sigmoid outputs, thresholds.

The task: 12x12 noisy gray images where each of four labels is a planted
pattern (a horizontal bar, a vertical bar, a diagonal, a square) drawn at a
random place; an image carries one to four of them.
"""

import copy
import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    hamming_loss,
    roc_auc_score,
)
from sklearn.model_selection import cross_val_score
from sklearn.utils.multiclass import type_of_target

from skimgcls import CNNClassifier, load, load_image_csv, save
from skimgcls.cli import main

PATTERNS = [
    np.ones((1, 4)),   # horizontal bar
    np.ones((4, 1)),   # vertical bar
    np.eye(4),         # diagonal
    np.ones((2, 2)),   # square
]
# No augmentation: 6 epochs show the mechanics, and rotations blur the planted
# bars and diagonal that tell the labels apart.
PARAMS = dict(module__width=8, max_epochs=6, precision="fp32", random_state=0,
              augment=None)


def planted(n, size=12, seed=0):
    """Images with the planted patterns of their labels, and the indicator y."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, len(PATTERNS))) < 0.4).astype(np.int64)
    empty = Y.sum(axis=1) == 0
    Y[empty, rng.integers(0, len(PATTERNS), empty.sum())] = 1
    X = rng.normal(0, 0.1, (n, size, size)).astype(np.float32)
    for i, j in zip(*np.nonzero(Y)):
        h, w = PATTERNS[j].shape
        r, c = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        X[i, r:r + h, c:c + w] += PATTERNS[j]
    return X, Y


@pytest.fixture(scope="module")
def data():
    X, Y = planted(400)
    X_test, Y_test = planted(200, seed=1)
    return X, Y, X_test, Y_test


@pytest.fixture(scope="module")
def clf(data):
    X, Y, _, _ = data
    return CNNClassifier(**PARAMS).fit(X, Y)


def test_learns_the_planted_labels(clf, data):
    _, _, X_test, Y_test = data
    y_pred = clf.predict(X_test)
    assert y_pred.shape == Y_test.shape and y_pred.dtype == np.int64
    assert type_of_target(y_pred) == "multilabel-indicator"
    assert clf.multilabel_ and clf.classes_.tolist() == [0, 1, 2, 3]
    f1 = f1_score(Y_test, y_pred, average="samples", zero_division=0)
    print(f"f1 samples {f1:.3f}, hamming {hamming_loss(Y_test, y_pred):.3f}")
    assert f1 > 0.8
    assert hamming_loss(Y_test, y_pred) < 0.1
    assert roc_auc_score(Y_test, clf.predict_proba(X_test), average="macro") > 0.95
    # score is scikit-learn's subset accuracy
    assert clf.score(X_test, Y_test) == accuracy_score(Y_test, y_pred) > 0.6
    report = classification_report(Y_test, y_pred, output_dict=True, zero_division=0)
    assert report["samples avg"]["f1-score"] == pytest.approx(f1)


def test_predict_proba_is_per_label_sigmoid(clf, data):
    X_test = data[2]
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 4)  # MLPClassifier's format: one array
    assert ((proba >= 0) & (proba <= 1)).all()
    assert np.abs(proba.sum(axis=1) - 1).max() > 0.5  # independent labels
    with torch.no_grad():
        logits = clf.module_.eval()(torch.from_numpy(X_test[:, None]))
    np.testing.assert_allclose(proba, torch.sigmoid(logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X_test), (proba > 0.5).astype(int))


def test_threshold_can_be_changed_after_fit(clf, data):
    X_test = data[2]
    proba = clf.predict_proba(X_test)
    strict = copy.deepcopy(clf).set_params(threshold=0.9)
    np.testing.assert_array_equal(strict.predict(X_test), (proba > 0.9).astype(int))
    per_label = copy.deepcopy(clf).set_params(threshold=[0.1, 0.5, 0.9, 0.99])
    expected = (proba > np.array([0.1, 0.5, 0.9, 0.99])).astype(int)
    np.testing.assert_array_equal(per_label.predict(X_test), expected)
    with pytest.raises(ValueError, match=r"one value per label \(4\)"):
        per_label.set_params(threshold=[0.5, 0.5]).predict(X_test)


def test_labels_must_be_a_binary_indicator(data):
    X, Y = data[0][:20], data[1][:20]
    with pytest.raises(ValueError, match="binary indicator matrix of 0 and 1.*got the "
                       r"values \[2\].*MultiOutputClassifier"):
        CNNClassifier(**PARAMS).fit(X, Y * 2)
    with pytest.raises(ValueError, match="20 images and 19 rows"):
        CNNClassifier(**PARAMS).fit(X, Y[:19])
    with pytest.raises(ValueError, match="classes has 3 entries but the multi-label "
                       "y has 4 label columns"):
        CNNClassifier(**PARAMS).partial_fit(X, Y, classes=[0, 1, 2])


def test_fitted_kind_of_labels_is_enforced(clf, data):
    X_test, Y_test = data[2][:10], data[3][:10]
    with pytest.raises(ValueError, match="multi-label indicator matrix of 4 labels, "
                       r"so y must be a 2-D array"):
        clf.score(X_test, Y_test[:, 0])
    with pytest.raises(ValueError, match="y has 3 label columns.*on 4 labels"):
        clf.score(X_test, Y_test[:, :3])
    single = CNNClassifier(**{**PARAMS, "max_epochs": 1}).fit(X_test, Y_test[:, 0])
    with pytest.raises(ValueError, match="multi-label indicator matrix, but "
                       "CNNClassifier was fitted in fit on one label per image"):
        single.score(X_test, Y_test)


def test_label_representations_and_empty_labels(data):
    """Lists, bools and sparse matrices are the same y; a label never set is fine."""
    X, Y = data[0][:64], data[1][:64].copy()
    Y[:, 3] = 0
    params = {**PARAMS, "max_epochs": 2}
    reference = CNNClassifier(**params).fit(X, Y).predict_proba(X)
    import scipy.sparse as sp

    for y in (Y.tolist(), Y.astype(bool), sp.csr_matrix(Y)):
        np.testing.assert_array_equal(CNNClassifier(**params).fit(X, y).predict_proba(X),
                                      reference)
    assert (reference[:, 3] < 0.5).all()  # never seen set: never predicted


def test_validation_split_early_stopping_and_mixup(data):
    X, Y, X_test, Y_test = data
    clf = CNNClassifier(**{**PARAMS, "max_epochs": 8}, validation_fraction=0.25,
                        early_stopping=True, mixup_alpha=0.2).fit(X, Y)
    assert clf.validation_fraction_ == 0.25
    valid_acc = clf.history_[:, "valid_acc"]
    # valid_acc is the subset accuracy of the held-out 100 images
    assert all(round(v * 100) == pytest.approx(v * 100) for v in valid_acc)
    assert max(valid_acc) > 0.5
    assert f1_score(Y_test, clf.predict(X_test), average="samples") > 0.7


def test_class_weight_balanced_is_pos_weight(data):
    X, Y = data[0][:64], data[1][:64]
    clf = CNNClassifier(**{**PARAMS, "max_epochs": 1},
                        class_weight="balanced").fit(X, Y)
    positives = Y.sum(axis=0)
    pos_weight = (len(Y) - positives) / positives
    np.testing.assert_allclose(clf.net_.pos_weight_.numpy(), pos_weight, rtol=1e-6)
    logits = torch.randn(len(Y), 4)
    target = torch.as_tensor(Y, dtype=torch.float32)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.as_tensor(pos_weight, dtype=torch.float32))
    assert clf.net_.get_loss(logits, Y).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="not label indices.*0 to 3"):
        CNNClassifier(**PARAMS, class_weight={"beach": 2.0}).fit(X, Y)


def test_tta_averages_sigmoid_probabilities(clf, data):
    X_test = data[2][:50]
    flipped = copy.deepcopy(clf).set_params(tta="flip")
    expected = (clf.predict_proba(X_test) + clf.predict_proba(X_test[:, :, ::-1])) / 2
    proba = flipped.predict_proba(X_test)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    np.testing.assert_array_equal(flipped.predict(X_test), (proba > 0.5).astype(int))


def test_partial_fit_continues(data):
    X, Y = data[0], data[1]
    clf = CNNClassifier(**PARAMS)
    for _ in range(2):
        clf.partial_fit(X, Y)
    assert clf.multilabel_ and len(clf.history_) == 2
    assert clf.history_[-1, "train_loss"] < clf.history_[0, "train_loss"]
    with pytest.raises(ValueError, match="multi-label indicator matrix of 4 labels"):
        clf.partial_fit(X, Y[:, 0])


def test_cross_val_score_with_a_multilabel_scorer(data):
    X, Y = data[0], data[1]
    scores = cross_val_score(CNNClassifier(**PARAMS), X, Y, cv=2, scoring="f1_samples")
    assert scores.shape == (2,) and scores.min() > 0.7


def test_save_load_round_trip(clf, data, tmp_path):
    X_test = data[2]
    clf = copy.deepcopy(clf).set_params(threshold=0.4)
    loaded = load(tmp_path / "model.safetensors",
                  sha256=save(clf, tmp_path / "model.safetensors"))
    assert loaded.multilabel_ and loaded.threshold == 0.4
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), clf.predict(X_test))


def test_onnx_export_returns_sigmoid_probabilities(clf, data, tmp_path):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)
    import onnx
    import onnxruntime

    from skimgcls import export_onnx

    X_test = data[2][:, :, :, None]
    path = export_onnx(clf, tmp_path / "clf.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    proba = session.run(None, {"images": X_test})[0]
    assert np.abs(proba - clf.predict_proba(X_test)).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["multilabel"]) is True
    assert json.loads(meta["threshold"]) == 0.5
    np.testing.assert_array_equal(proba > 0.5, clf.predict(X_test) == 1)


def test_progress_bar_reports_subset_accuracy(data, capsys):
    pytest.importorskip("tqdm")
    X, Y = data[0][:64], data[1][:64]
    CNNClassifier(**{**PARAMS, "max_epochs": 1}, verbose=2).fit(X, Y)
    assert "acc=" in capsys.readouterr().err


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    """PNG files and two CSV files: 0/1 columns, and names joined by '|'.

    The CSV files list the first 150 images; the last 50 are for predict.
    """
    X, Y = planted(200, seed=2)
    root = tmp_path_factory.mktemp("multilabel_csv")
    names = ["hbar", "vbar", "diagonal", "square"]
    rows = []
    for i, (image, labels) in enumerate(zip(X, Y)):
        file = f"img{i}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(root / file)
        rows.append((file, labels))
    with open(root / "columns.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *names])
        writer.writerows([file, *labels] for file, labels in rows[:150])
    with open(root / "joined.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "tags"])
        writer.writerows([file, "|".join(names[j] for j in np.flatnonzero(labels))]
                         for file, labels in rows[:150])
    return root, Y, names


def test_load_image_csv_reads_multilabel_tables(csv_folder):
    root, Y, names = csv_folder
    X, y = load_image_csv(root / "columns.csv", label_column=names, mode="L")
    assert X.shape == (150, 12, 12, 1)
    np.testing.assert_array_equal(y, Y[:150])
    _, tags = load_image_csv(root / "joined.csv", label_column="tags", label_sep="|",
                             lazy=True)
    assert tags[0] == tuple(names[j] for j in np.flatnonzero(Y[0]))
    with pytest.raises(ValueError, match="Label column 'path'.*must hold 0/1"):
        load_image_csv(root / "columns.csv", label_column=["path", "hbar"], lazy=True)


def test_cli_trains_and_predicts_multilabel_from_csv(csv_folder, capsys):
    root, Y, names = csv_folder
    out = root / "model"
    assert main(["train", str(root / "joined.csv"), "--label-column", "tags",
                 "--label-sep", "|", "--out", str(out), "--mode", "L", "--epochs", "8",
                 "--verbose", "0"]) == 0
    assert "4 labels (multi-label)" in capsys.readouterr().out
    summary = json.loads((out / "training.json").read_text())
    assert summary["multilabel"] and summary["classes"] == sorted(names)
    files = [str(root / f"img{i}.png") for i in range(150, 200)]
    assert main(["predict", str(out), *files]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "labels",
                             *(f"probability_{n}" for n in sorted(names))]
    predicted = np.array([[n in row["labels"].split("|") for n in names] for row in rows])
    assert f1_score(Y[150:], predicted, average="samples") > 0.7
    assert main(["evaluate", str(out), str(root)]) == 2
    assert "this model is multi-label" in capsys.readouterr().err
