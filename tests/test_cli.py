"""The skimgcls command line, end to end on a folder written by the test."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from skimgcls import CNNClassifier, load
from skimgcls.cli import build_parser, main


@pytest.fixture(scope="module")
def folders(tmp_path_factory, digits):
    """train/ and test/ folders of 8x8 digit PNGs, three classes."""
    X, y = digits
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.RandomState(0)
    for split, n in (("train", 40), ("test", 10)):
        for label in (0, 1, 7):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True)
            for i in rng.choice(np.flatnonzero(y == label), n, replace=False):
                Image.fromarray((X[i] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def model_dir(folders):
    out = folders / "model"
    code = main(["train", str(folders / "train"), "--out", str(out), "--epochs", "6",
                 "--mode", "L", "--verbose", "0", "--lr", "0.01", "--batch-size", "16"])
    assert code == 0
    return out


def test_train_writes_a_loadable_model(model_dir, capsys):
    clf = load(model_dir / "model.safetensors")
    assert isinstance(clf, CNNClassifier)
    assert clf.classes_.tolist() == ["digit0", "digit1", "digit7"]
    assert clf.image_shape_ == (8, 8, 1)
    summary = json.loads((model_dir / "training.json").read_text())
    assert summary["n_images"] == 120 and summary["epochs"] == 6


def test_predict_csv_and_json(model_dir, folders, capsys):
    files = sorted((folders / "test" / "digit7").glob("*.png"))
    assert main(["predict", str(model_dir), *map(str, files)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"] for r in rows] == list(map(str, files))
    assert sum(r["label"] == "digit7" for r in rows) >= 7
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)

    out = folders / "pred.json"
    assert main(["predict", str(model_dir), str(folders / "test"), "--format", "json",
                 "--top-k", "2", "-o", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 30 and len(rows[0]["top_k"]) == 2
    assert rows[0]["top_k"][0]["label"] == rows[0]["label"]


def test_evaluate_writes_report_and_confusion_matrix(model_dir, folders, capsys):
    out = folders / "eval"
    assert main(["evaluate", str(model_dir), str(folders / "test"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Accuracy on 30 images" in text and "digit7" in text
    report = json.loads((out / "evaluation.json").read_text())
    assert np.array(report["confusion_matrix"]).sum() == 30
    assert report["accuracy"] > 0.6
    with Image.open(out / "confusion_matrix.png") as im:
        assert im.size[0] > 100


@pytest.mark.parametrize("command", ["demo", "train", "predict", "evaluate"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: skimgcls " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["predict", "nowhere", "x.png"], "no model found at nowhere"),
    (["train", "missing-dir", "--out", "m"], "missing-dir"),
])
def test_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("skimgcls ")


def test_predict_missing_image_is_an_error(model_dir, capsys):
    assert main(["predict", str(model_dir), "no-such.png"]) == 2
    assert "no-such.png: no such file" in capsys.readouterr().err


def test_demo_trains_reports_and_saves(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "m"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy:" in out and "macro avg" in out
    clf = load(tmp_path / "m" / "model.safetensors")
    assert clf.image_shape_ == (8, 8, 1)
