"""A user's own folder, end to end: mixed sizes and modes, bad files, pandas.

Bad files are found before training on every route (in memory, lazy, CLI,
data-parallel); pandas columns of paths go wherever 1-D arrays of paths do;
a fit on paths keeps the decoded images in memory within its budget; shape
errors give the advice that fits.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skimgcls import (
    CNNClassifier,
    ImageReader,
    Normalize,
    load_image_dataframe,
    load_image_folder,
)
from skimgcls.cli import main
from skimgcls.datasets import ImagePathDataset, ImageReadError
from skimgcls.exceptions import SkippedImagesWarning

from .conftest import tiny_classifier, write_mixed_folder

pd = pytest.importorskip("pandas")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """(root, the corrupt file, the empty file)."""
    root = tmp_path_factory.mktemp("user") / "data"
    corrupt, empty = write_mixed_folder(root)
    return root, corrupt, empty


@pytest.fixture(scope="module")
def good_paths(messy):
    with pytest.warns(SkippedImagesWarning):
        return load_image_folder(messy[0], lazy=True, on_error="skip")


def fast(**params):
    return tiny_classifier(reader=ImageReader(size=16), validation_fraction=None,
                           max_epochs=1, **params)


# -- bad files: found before training, on every route ---------------------------------------
def test_in_memory_loader_lists_every_bad_file_in_one_error(messy):
    root, corrupt, empty = messy
    with pytest.raises(ImageReadError,
                       match=r"(?s)2 of 29 image files.*on_error='skip'") as info:
        load_image_folder(root, size=16)
    assert set(info.value.paths) == {str(corrupt), str(empty)}
    with pytest.warns(SkippedImagesWarning, match="Skipped 2 of 29") as caught:
        X, y = load_image_folder(root, size=16, on_error="skip")
    assert X.shape == (27, 16, 16, 3) and len(y) == 27
    assert caught[0].filename == __file__
    assert "pass on_error='skip'" not in str(caught[0].message)  # it was passed


def test_lazy_skip_finds_a_corrupt_file_behind_a_valid_header(messy, good_paths):
    root, corrupt, empty = messy
    paths, y = good_paths
    assert len(paths) == len(y) == 27
    assert str(corrupt) not in set(paths) and str(empty) not in set(paths)


def test_fit_on_paths_stops_before_training_and_lists_the_bad_files(messy):
    root, corrupt, empty = messy
    paths, y = load_image_folder(root, lazy=True)  # on_error='raise' opens nothing
    clf = fast()
    with pytest.raises(ImageReadError, match=r"(?s)2 of 29.*No training was started.*"
                       r"on_error='skip'") as info:
        clf.fit(paths, y)
    assert set(info.value.paths) == {str(corrupt), str(empty)}
    assert not hasattr(clf, "net_")  # nothing was built or trained


def test_data_parallel_fit_stops_before_training(messy):
    pytest.importorskip("accelerate")
    paths, y = load_image_folder(messy[0], lazy=True)
    clf = fast(accelerator={"cpu": True}, precision="auto")
    with pytest.raises(ImageReadError, match="No training was started"):
        clf.fit(paths, y)
    assert not hasattr(clf, "net_")


def test_a_dataloader_reraise_prints_as_one_line():
    text = ("Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback "
            "(most recent call last):\n  File \"x.py\", line 1, in f\n"
            "skimgcls._io.ImageReadError: Cannot read image file '/d/a.jpg': the file "
            "is corrupt or truncated (OSError: x).")
    error = ImageReadError(text)
    assert str(error).startswith("Cannot read image file '/d/a.jpg'")
    assert "\n" not in str(error) and error.path == "/d/a.jpg"


# -- the lazy route keeps decoded images in memory within its budget ------------------------
class CountingReader(ImageReader):
    calls = 0

    def read(self, paths):
        type(self).calls += len(paths)
        return super().read(paths)


@pytest.mark.parametrize("keep, decoded_once", [("auto", True), (False, False)])
def test_fit_on_paths_decodes_each_file_once_within_the_budget(good_paths, keep,
                                                               decoded_once, monkeypatch):
    paths, y = good_paths
    CountingReader.calls = 0
    reader = CountingReader(size=16, keep_in_memory=keep)
    clf = tiny_classifier(reader=reader, validation_fraction=None, max_epochs=3,
                          iterator_train__num_workers=0)
    clf.fit(paths, y)
    first_file_and_check = 1 + len(paths)
    if decoded_once:
        assert CountingReader.calls == first_file_and_check
    else:  # checked once, then decoded again in each of the 3 epochs
        assert CountingReader.calls == first_file_and_check + 3 * len(paths)


def test_in_memory_and_lazy_fits_give_the_same_model(messy, good_paths):
    paths, y = good_paths
    X = ImageReader(size=16).read(paths)
    from_arrays = tiny_classifier(validation_fraction=None).fit(X, y)
    from_paths = tiny_classifier(validation_fraction=None,
                                 reader=ImageReader(size=16)).fit(paths, y)
    np.testing.assert_allclose(from_paths.predict_proba(paths),
                               from_arrays.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_keep_in_memory_budget_in_bytes(good_paths, monkeypatch):
    paths, y = good_paths
    datasets = []
    original = ImagePathDataset.__init__

    def spy(self, *args, **kwargs):
        datasets.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ImagePathDataset, "__init__", spy)
    budget = len(paths) * 16 * 16 * 3 - 1  # one byte short
    tiny_classifier(reader=ImageReader(size=16, keep_in_memory=budget),
                    validation_fraction=None, max_epochs=1,
                    iterator_train__num_workers=0).fit(paths, y)
    assert datasets  # over the budget: decoded batch by batch
    datasets.clear()
    tiny_classifier(reader=ImageReader(size=16, keep_in_memory=budget + 1),
                    validation_fraction=None, max_epochs=1).fit(paths, y)
    assert not datasets


# -- pandas in ----------------------------------------------------------------------------------
def test_pandas_columns_of_paths_go_where_arrays_of_paths_go(good_paths):
    paths, y = good_paths
    df = pd.DataFrame({"path": paths, "label": y})
    clf = fast()
    for X in (df["path"], df[["path"]]):
        clf.fit(X, df["label"])
        assert clf.predict(X.iloc[:3]).shape == (3,)
    pipe = make_pipeline(ImageReader(size=16), Normalize(),
                         tiny_classifier(validation_fraction=None, max_epochs=1))
    scores = cross_val_score(pipe, df[["path"]], df["label"], cv=3)
    assert scores.shape == (3,)
    assert cross_val_score(fast(), df["path"], df["label"], cv=3).shape == (3,)


def test_load_image_dataframe(messy, good_paths):
    paths, y = good_paths
    root = messy[0]
    df = pd.DataFrame({"file": [str(Path(p).relative_to(root)) for p in paths],
                       "species": y})
    X, labels = load_image_dataframe(df, path_column="file", label_column="species",
                                     root=root, size=(16, 16))
    assert X.shape == (27, 16, 16, 3) and labels.tolist() == list(y)
    lazy, _ = load_image_dataframe(df, path_column="file", label_column="species",
                                   root=root, lazy=True)
    assert list(lazy) == list(paths)
    with pytest.raises(ValueError, match=r"Column 'path' not found in the DataFrame; "
                       r"its columns are \['file', 'species'\]"):
        load_image_dataframe(df)
    with pytest.raises(TypeError, match="takes a pandas DataFrame.*load_image_csv"):
        load_image_dataframe("files.csv")


def test_errors_for_string_columns_say_what_came_and_what_to_do(good_paths):
    paths, y = good_paths
    df = pd.DataFrame({"path": paths, "label": y})
    with pytest.raises(TypeError, match=r"Normalize needs images, but got a one-column "
                       r"DataFrame of 27 file paths \(an object column of strings.*"
                       r"ImageReader\(size="):
        Normalize().fit(df[["path"]])
    with pytest.raises(TypeError, match=r"Normalize needs images, but got a pandas Series"):
        Normalize().fit(df["path"])
    with pytest.raises(TypeError, match=r"DataFrame of 2 columns, of which \['path', "
                       r"'label'\] hold strings.*X = df\['path'\]"):
        fast().fit(df, y)


def test_numeric_dataframes_keep_their_behaviour(digits):
    X, y = digits
    df = pd.DataFrame(X[:60].reshape(60, -1))
    clf = tiny_classifier(max_epochs=1, validation_fraction=None).fit(df, y[:60])
    assert clf.image_shape_ == (8, 8, 1) and clf.predict(df.iloc[:2]).shape == (2,)


# -- shape errors with the right advice -------------------------------------------------------
def test_one_image_without_the_batch_axis(digits):
    X, y = digits
    rgb = np.repeat(X[:40, :, :, None], 3, axis=3)
    clf = tiny_classifier(max_epochs=1, validation_fraction=None).fit(rgb, y[:40])
    with pytest.raises(ValueError, match=r"X has shape \(8, 8, 3\): one image without "
                       r"the batch axis.*X\[np.newaxis\]") as info:
        clf.predict(rgb[0])
    assert "Resize" not in str(info.value)
    assert clf.predict(rgb[0][np.newaxis]).shape == (1,)
    gray = tiny_classifier(max_epochs=1, validation_fraction=None).fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="one image without the batch axis"):
        gray.predict(X[0])  # (8, 8)
    assert gray.predict(X[:1]).shape == (1,)  # (1, 8, 8) is a batch of one


def test_a_list_of_arrays_of_different_sizes_says_how_to_resize():
    images = [np.zeros((5, 5, 3)), np.zeros((6, 7, 3))]
    with pytest.raises(ValueError, match=r"(?s)list of 2 images of 2 different shapes "
                       r"\(e.g. \(5, 5, 3\), \(6, 7, 3\)\).*Resize\(size=.*"
                       r"ImageReader\(size="):
        tiny_classifier().fit(images, [0, 1])


# -- the command line on the same folder --------------------------------------------------------
def test_cli_train_runs_unchanged_on_a_messy_folder(messy, tmp_path, capsys):
    root = messy[0]
    out = tmp_path / "model"
    assert main(["train", str(root), "--out", str(out), "--epochs", "1",
                 "--verbose", "0"]) == 0
    captured = capsys.readouterr()
    assert "Reading the images at 48x48 in mode RGB" in captured.out
    assert "No images were held out" in captured.out
    err = captured.err.strip().splitlines()
    assert all(line.startswith("skimgcls train: warning: ") for line in err)
    assert any("corrupt.jpg" in line for line in err)
    assert any("empty.png" in line for line in err)
    summary = json.loads((out / "training.json").read_text())
    assert summary["n_images"] == 27 and summary["image_shape"] == [48, 48, 3]
    assert summary["reader"] == {"size": [48, 48], "mode": "RGB"}
    assert summary["validation_fraction"] is None and summary["valid_acc"] is None


def test_cli_on_error_raise_is_one_line_per_file_and_exit_2(messy, tmp_path, capsys):
    assert main(["train", str(messy[0]), "--out", str(tmp_path / "m"),
                 "--on-error", "raise", "--verbose", "0"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(li.startswith("skimgcls train: error: ") for li in lines)
    assert "--on-error skip" in lines[0] and "Traceback" not in captured.err
    assert not (tmp_path / "m").exists()


def test_cli_picks_gray_for_gray_files_and_keeps_given_options(tmp_path, digits, capsys):
    from PIL import Image

    X, y = digits
    for i in range(12):
        folder = tmp_path / "d" / f"c{y[i] % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i] * 255).astype(np.uint8)).resize((8 + (i % 4 == 3), 8)).save(
            folder / f"{i}.png")
    assert main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m"),
                 "--epochs", "1", "--verbose", "0"]) == 0
    assert "at 8x8 in mode L" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m2"),
                 "--epochs", "1", "--verbose", "0", "--size", "10", "--mode", "RGB"]) == 0
    assert "Reading the images" not in capsys.readouterr().out
    summary = json.loads((tmp_path / "m2" / "training.json").read_text())
    assert summary["image_shape"] == [10, 10, 3]


def test_python_dash_m_is_the_command():
    result = subprocess.run([sys.executable, "-m", "skimgcls", "train", "--help"],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ,
                                 "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "usage: skimgcls train" in result.stdout
    assert "held out" in result.stdout and "'auto'" in result.stdout
