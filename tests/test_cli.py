"""The skimgcls command line, end to end on a folder written by the test."""

import csv
import io
import json
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skimgcls import CNNClassifier, load, save
from skimgcls._demo import run_demo
from skimgcls.cli import build_parser, main
from skimgcls.preprocessing import ImageReader

from .conftest import tiny_classifier


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


def test_piped_output_has_no_bars_and_no_colors(folders, tmp_path, capsys):
    # capsys stands in for a pipe or a log file: neither is a terminal.
    assert main(["train", str(folders / "train"), "--out", str(tmp_path / "m"),
                 "--model", "compact_cnn", "--epochs", "2", "--mode", "L",
                 "--validation-fraction", "0.2"]) == 0
    out, err = capsys.readouterr()
    assert "valid_acc" in out and "\x1b[" not in out  # the epoch table, uncolored
    assert "\r" not in err and "epoch 1/2" not in err  # no progress bar redraws


def test_train_augment_auto_on_off(model_dir):
    # The model_dir fit used --augment's default, 'auto': compact_cnn augments.
    assert load(model_dir / "model.safetensors").augment == "auto"
    parser = build_parser()
    for flags, expected in (([], "auto"), (["--augment"], "on"),
                            (["--augment", "off"], "off")):
        assert parser.parse_args(["train", "x", "--out", "y", *flags]).augment == expected
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "x", "--out", "y", "--augment", "maybe"])


def test_train_defaults_choose_the_recipe_and_say_which(folders, monkeypatch, capsys):
    """The default --model is the classifier's 'auto': the recipe is selected,
    printed and written down; a frozen-features winner trains no epoch."""
    from skimgcls._selection import Recipe

    stuck = Recipe("compact_cnn", {"module": "compact_cnn", "pretrained": False,
                                   "module__width": 4, "lr": 1e-9}, steps=2)
    frozen = Recipe("frozen_features", {
        "module": "efficientnet_lite0", "pretrained": True, "freeze": "backbone",
        "module__input_size": 32}, linear_head=True)
    monkeypatch.setattr("skimgcls.classifier.candidate_recipes",
                        lambda shape, multilabel=False: [stuck, frozen])
    out = folders / "auto-model"
    assert main(["train", str(folders / "train"), "--out", str(out), "--mode", "L",
                 "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert "Recipe chosen on a held-out part of the training images: " \
           "frozen_features" in printed
    assert "refit on all" in printed and "No images were held out" not in printed
    summary = json.loads((out / "training.json").read_text())
    assert summary["recipe"] == "frozen_features" and summary["epochs"] == 0
    assert summary["model"] == "efficientnet_lite0" and summary["train_loss"] is None
    assert load(out / "model.safetensors").score(*_folder_arrays(folders / "test")) > 0.8


def test_train_says_when_nothing_could_be_held_out(folders, tmp_path, monkeypatch,
                                                   capsys):
    """One image per class: the simplest candidate, and the CLI says why."""
    import shutil

    from skimgcls._selection import Recipe

    frozen = Recipe("frozen_features", {
        "module": "efficientnet_lite0", "pretrained": True, "freeze": "backbone",
        "module__input_size": 32}, linear_head=True)
    scratch = Recipe("compact_cnn", {"module": "compact_cnn", "pretrained": False})
    monkeypatch.setattr("skimgcls.classifier.candidate_recipes",
                        lambda shape, multilabel=False: [frozen, scratch])
    for folder in (folders / "train").iterdir():
        (tmp_path / "one" / folder.name).mkdir(parents=True)
        shutil.copy(sorted(folder.glob("*.png"))[0], tmp_path / "one" / folder.name)
    assert main(["train", str(tmp_path / "one"), "--out", str(tmp_path / "model"),
                 "--mode", "L", "--verbose", "0"]) == 0
    printed = capsys.readouterr().out
    assert ("Too few images per class to hold any out and compare recipes: the "
            "simplest, frozen_features, trained on all 3 images.") in printed
    assert "No images were held out" in printed and "refit on all" not in printed


def _folder_arrays(root):
    paths = sorted(root.glob("*/*.png"))
    X = np.stack([np.asarray(Image.open(p))[..., None] for p in paths])
    return X, np.array([p.parent.name for p in paths])


def test_predict_csv_and_json(model_dir, folders, capsys):
    files = sorted((folders / "test" / "digit7").glob("*.png"))
    assert main(["predict", str(model_dir), *map(str, files)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"] for r in rows] == list(map(str, files))
    assert sum(r["label"] == "digit7" for r in rows) >= 7
    # each row holds the model's own most probable label and its probability
    clf = load(model_dir / "model.safetensors")
    proba = clf.predict_proba(np.array(list(map(str, files)), dtype=object))
    assert [r["label"] for r in rows] == clf.classes_[proba.argmax(1)].tolist()
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba.max(1),
                               atol=1e-6)

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
    assert "macro avg" in out
    printed = float(re.search(r"Test accuracy: (\d\.\d+)", out).group(1))
    assert printed > 0.85  # two epochs on 1,347 digits; chance is 0.1
    clf = load(tmp_path / "m" / "model.safetensors")
    assert clf.image_shape_ == (8, 8, 1) and len(clf.history_) == 2
    # the saved model is the one whose accuracy was printed (same held-out quarter)
    digits = load_digits()
    _, X_test, _, y_test = train_test_split(
        digits.images.astype("float32") / 16, digits.target, test_size=0.25,
        stratify=digits.target, random_state=0)
    assert clf.score(X_test, y_test) == pytest.approx(printed, abs=5e-5)


def test_demo_and_train_defaults_are_the_classifiers(monkeypatch):
    defaults = CNNClassifier().get_params()
    train = build_parser().parse_args(["train", "data", "--out", "m"])
    for param in ("max_epochs", "batch_size", "lr", "validation_fraction"):
        assert getattr(train, param) == defaults[param], param
    assert train.model == defaults["module"] and train.pretrained == defaults["pretrained"]
    assert build_parser().parse_args(["demo"]).max_epochs == defaults["max_epochs"]
    # read at parse time, so a changed default (e.g. 'auto') is followed
    monkeypatch.setitem(CNNClassifier.__init__.__kwdefaults__, "max_epochs", "auto")
    monkeypatch.setitem(CNNClassifier.__init__.__kwdefaults__,
                        "validation_fraction", "auto")
    train = build_parser().parse_args(["train", "data", "--out", "m"])
    assert train.max_epochs == "auto" and train.validation_fraction == "auto"
    assert build_parser().parse_args(["demo"]).max_epochs == "auto"
    explicit = build_parser().parse_args(["train", "data", "--out", "m", "--epochs",
                                          "3", "--validation-fraction", "0.2"])
    assert explicit.max_epochs == 3 and explicit.validation_fraction == 0.2


def test_demo_without_epochs_uses_the_classifiers_default(monkeypatch, tmp_path):
    fitted = {}

    def record_fit(self, X, y, **kwargs):
        fitted.update(self.get_params())
        raise KeyboardInterrupt  # stop before training: only the params matter

    monkeypatch.setattr(CNNClassifier, "fit", record_fit)
    defaults = CNNClassifier().get_params()
    assert main(["demo", "--out", str(tmp_path / "m")]) == 130
    for param in ("max_epochs", "validation_fraction", "lr", "batch_size"):
        assert fitted[param] == defaults[param], param
    # run_demo itself follows the classifier, whatever its default is
    monkeypatch.setitem(CNNClassifier.__init__.__kwdefaults__, "max_epochs", 3)
    fitted.clear()
    with pytest.raises(KeyboardInterrupt):
        run_demo(out=tmp_path / "m")
    assert fitted["max_epochs"] == 3


# -- evaluate: folder names against the model's classes -------------------------
@pytest.fixture(scope="module")
def numeric_model(folders, digits):
    """A model of the integer classes 0, 1, 7 (fitted in memory, saved)."""
    X, y = digits
    keep = np.isin(y, [0, 1, 7])
    clf = tiny_classifier(max_epochs=4, validation_fraction=None,
                          reader=ImageReader(mode="L")).fit(X[keep], y[keep])
    out = folders / "numeric-model"
    out.mkdir()
    save(clf, out / "model.safetensors")
    return out


def test_evaluate_numeric_classes_on_named_folders_is_an_error(numeric_model, folders,
                                                               capsys):
    assert main(["evaluate", str(numeric_model), str(folders / "test"),
                 "--out", str(folders / "eval-bad")]) == 2
    err = capsys.readouterr().err
    assert "the model's classes are numbers (0, 1, 7)" in err
    assert "['digit0', 'digit1', 'digit7'], which are not numbers" in err
    assert "Name the subfolders after the model's classes" in err
    assert not (folders / "eval-bad" / "evaluation.json").exists()


def test_evaluate_numeric_classes_on_numbered_folders(numeric_model, folders, tmp_path):
    for folder in (folders / "test").iterdir():  # digit7/ -> 7/
        shutil.copytree(folder, tmp_path / "data" / folder.name.removeprefix("digit"))
    assert main(["evaluate", str(numeric_model), str(tmp_path / "data"),
                 "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["labels"] == [0, 1, 7] and report["accuracy"] > 0.6


def test_folder_files_not_read_and_unknown_classes_are_reported(model_dir, folders, tmp_path,
                                                                 capsys):
    data = tmp_path / "data"
    shutil.copytree(folders / "test", data)
    (data / "digit0" / "IMG_0001.HEIC").write_bytes(b"ftypheic")
    (data / "digit0" / ".DS_Store").write_bytes(b"Bud1")
    (data / "cat").mkdir()
    shutil.copy(next((data / "digit1").glob("*.png")), data / "cat" / "a.png")
    with warnings.catch_warnings():  # as outside pytest: shown, not raised
        warnings.simplefilter("always")
        assert main(["evaluate", str(model_dir), str(data), "--out",
                     str(tmp_path / "e")]) == 0
        captured = capsys.readouterr()
        assert main(["predict", str(model_dir), str(data / "digit0")]) == 0
        predicted = capsys.readouterr()
    assert "Accuracy on 31 images" in captured.out
    lines = [line for line in captured.err.splitlines() if ": warning:" in line]
    assert len(lines) == 2, captured.err
    assert "Ignored 1 file(s)" in lines[0] and "1 .heic" in lines[0]
    assert "not classes of the model: cat (1 image)" in lines[1]
    assert "Ignored 1 file(s)" in predicted.err and "HEIC" not in predicted.out
    assert len(predicted.out.strip().splitlines()) == 1 + 10  # header + the PNGs


def test_evaluate_with_no_folder_among_the_classes_is_an_error(model_dir, tmp_path,
                                                              capsys):
    for name in ("cat", "dog"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    assert main(["evaluate", str(model_dir), str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "(['cat', 'dog']) is a class of the model (digit0, digit1, digit7)" in err
