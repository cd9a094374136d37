"""Loading folders and CSV files, decoding formats, bad files, lazy paths in fit."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skimgcls import (
    CNNClassifier,
    ImageReader,
    Normalize,
    load_image_csv,
    load_image_folder,
)
from skimgcls.datasets import ImagePathDataset, ImageReadError, read_image
from skimgcls.exceptions import IgnoredFilesWarning, SkippedImagesWarning


def digit_images(n=120):
    X, y = load_digits(return_X_y=True)
    return (X[:n] * 16).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8), y[:n]


def write_folder(root, X, y, ext="png"):
    for i, (img, label) in enumerate(zip(X, y)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.{ext}")
    return root


@pytest.fixture(scope="module")
def digits():
    return digit_images()


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, digits):
    return write_folder(tmp_path_factory.mktemp("png"), *digits)


@pytest.fixture(scope="module")
def fitted_from_paths(png_folder):
    paths, y = load_image_folder(png_folder, lazy=True)
    clf = CNNClassifier(module__width=4, max_epochs=2, batch_size=32, precision="fp32",
                        reader=ImageReader(mode="L"), random_state=0)
    return clf.fit(paths, y), paths, y


def tiny(**params):
    defaults = dict(module__width=4, max_epochs=1, batch_size=32, precision="fp32",
                    random_state=0)
    defaults.update(params)
    return CNNClassifier(**defaults)


# -- folders ---------------------------------------------------------------------------------
def test_load_image_folder_png(png_folder, digits):
    X, y = load_image_folder(png_folder, mode="L")
    assert X.shape == (120, 8, 8, 1) and X.dtype == np.uint8
    order = np.argsort([f"digit{label}" for label in digits[1]], kind="stable")
    np.testing.assert_array_equal(X[..., 0], digits[0][order])
    np.testing.assert_array_equal(y, [f"digit{label}" for label in digits[1][order]])
    rgb, _ = load_image_folder(png_folder)
    assert rgb.shape == (120, 8, 8, 3)
    resized, _ = load_image_folder(png_folder, mode="L", size=(16, 12), n_jobs=2)
    assert resized.shape == (120, 16, 12, 1)


def test_load_image_folder_jpeg_and_lazy(tmp_path, digits):
    X, y = digits
    write_folder(tmp_path, X[:20], y[:20], ext="jpg")
    (tmp_path / "digit0" / "notes.txt").write_text("not an image")
    with pytest.warns(IgnoredFilesWarning, match=r"1 \.txt"):
        images, labels = load_image_folder(tmp_path, mode="L")
    assert images.shape == (20, 8, 8, 1)
    with pytest.warns(IgnoredFilesWarning):
        paths, lazy_labels = load_image_folder(tmp_path, lazy=True)
    assert paths.dtype == object and paths.shape == (20,)
    assert all(p.endswith(".jpg") for p in paths)
    np.testing.assert_array_equal(labels, lazy_labels)
    np.testing.assert_array_equal(ImageReader(mode="L").transform(paths), images)


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"root/<class>/<image file>"):
        load_image_folder(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "IMG_1.HEIC").write_bytes(b"ftypheic")
    with pytest.raises(ValueError, match=r"(?s)1 image files directly in it.*'a.png'.*"
                       r"subfolders hold 1 other files \(\.heic\)"):
        load_image_folder(tmp_path)


def test_files_not_read_are_counted_in_one_warning(tmp_path, digits):
    X, y = digits
    write_folder(tmp_path, X[:6], y[:6])
    cls = sorted(p for p in tmp_path.iterdir())[0]
    image = next(cls.glob("*.png"))
    heic, notes = cls / "IMG_0001.HEIC", cls / "sub" / "notes.txt"
    notes.parent.mkdir()
    heic.write_bytes(b"ftypheic")
    notes.write_text("to do")
    loose = tmp_path / "stray.png"
    loose.write_bytes(image.read_bytes())
    (tmp_path / "README.md").write_text("digits")  # beside the classes: not data
    # What operating systems and tools leave: never read, never reported.
    (cls / ".DS_Store").write_bytes(b"Bud1")
    (cls / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata
    (cls / "Thumbs.db").write_bytes(b"")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a.png").write_bytes(image.read_bytes())
    with pytest.warns(IgnoredFilesWarning) as caught:
        paths, labels = load_image_folder(tmp_path, lazy=True)
    assert len(caught) == 1 and caught[0].filename == __file__
    warning = caught[0].message
    assert sorted(warning.paths) == sorted(map(str, (heic, notes, loose)))
    assert "Ignored 3 file(s)" in str(warning)
    assert "1 .heic, 1 .txt" in str(warning) and "stray.png" in str(warning)
    assert "outside the class subfolders" in str(warning)
    assert len(paths) == 6 and set(labels) == {f"digit{label}" for label in y[:6]}
    for extra in (heic, notes, loose):
        extra.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_image_folder(tmp_path, lazy=True)[0]) == 6


def test_mixed_sizes_need_a_size(tmp_path):
    for name, shape in [("a/0.png", (4, 4)), ("b/0.png", (6, 5))]:
        (tmp_path / name).parent.mkdir()
        Image.fromarray(np.zeros(shape, np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=r"different shapes.*size="):
        load_image_folder(tmp_path)
    X, _ = load_image_folder(tmp_path, size=5, keep_aspect_ratio="pad")
    assert X.shape == (2, 5, 5, 3)


# -- bad files -----------------------------------------------------------------------------------
@pytest.fixture
def folder_with_bad_files(tmp_path, digits):
    X, y = digits
    write_folder(tmp_path, X[:12], y[:12])
    (tmp_path / "digit1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "digit2" / "fake.jpg").write_text("hello")
    with Image.open(tmp_path / "digit3" / "0003.png") as im:
        good = np.asarray(im)
    Image.fromarray(good).save(tmp_path / "digit3" / "truncated.png")
    data = (tmp_path / "digit3" / "truncated.png").read_bytes()
    (tmp_path / "digit3" / "truncated.png").write_bytes(data[: len(data) // 2])
    return tmp_path


def test_bad_file_error_names_the_file(folder_with_bad_files):
    with pytest.raises(ImageReadError, match=r"corrupt\.png|fake\.jpg|truncated\.png"):
        load_image_folder(folder_with_bad_files)
    with pytest.raises(ImageReadError, match="missing.png.*no such file"):
        read_image(folder_with_bad_files / "missing.png")


def test_on_error_skip_keeps_x_and_y_aligned(folder_with_bad_files, digits):
    with pytest.warns(UserWarning, match=r"(?s)Skipped 3 of 15.*corrupt\.png"):
        X, y = load_image_folder(folder_with_bad_files, mode="L", on_error="skip")
    assert len(X) == len(y) == 12
    for img, label in zip(X[..., 0], y):
        matches = [i for i in range(12) if np.array_equal(digits[0][i], img)]
        assert matches and all(label == f"digit{digits[1][i]}" for i in matches)
    with pytest.warns(SkippedImagesWarning, match="Skipped 3 of 15") as caught:
        paths, y_lazy = load_image_folder(folder_with_bad_files, lazy=True,
                                          on_error="skip")
    # lazy loading decodes each file too: a valid header with cut data is found
    assert len(paths) == len(y_lazy) == 12
    assert {Path(p).name for p in caught[0].message.paths} == {
        "corrupt.png", "fake.jpg", "truncated.png"}
    assert caught[0].filename == __file__  # points at the caller's line


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    for limit_hit in (500, 1000):  # the warning band and the error band
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit_hit)
        with pytest.raises(ImageReadError, match=r"big\.png.*decompression-bomb limit"):
            read_image(path)


# -- formats and modes -------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "tif", "webp", "gif"])
def test_formats(tmp_path, ext):
    img = np.zeros((6, 8, 3), np.uint8)
    img[:, :4] = (200, 30, 60)
    path = tmp_path / f"x.{ext}"
    Image.fromarray(img).save(path, **({"quality": 95} if ext == "jpg" else {}))
    out = read_image(path)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    tolerance = {"jpg": 40, "webp": 40, "gif": 40}.get(ext, 0)
    assert np.abs(out.astype(int) - img).max() <= tolerance


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)).convert("P")
              for v in (0, 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as im:
        assert im.n_frames == 2
    assert read_image(path, mode="L").max() == 0


def test_modes_gray_rgba_palette_16bit(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((3, 5), 100, np.uint8)).save(gray)
    assert read_image(gray, mode=None).shape == (3, 5, 1)
    assert (read_image(gray) == 100).all() and read_image(gray).shape == (3, 5, 3)

    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((3, 5, 4), 7, np.uint8)).save(rgba)
    assert read_image(rgba, mode=None).shape == (3, 5, 4)
    assert read_image(rgba).shape == (3, 5, 3)
    assert read_image(rgba, mode="L").shape == (3, 5, 1)

    palette = tmp_path / "palette.png"
    Image.fromarray(np.full((3, 5, 3), (255, 0, 0), np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE).save(palette)
    with Image.open(palette) as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(read_image(palette)[0, 0], [255, 0, 0])
    assert read_image(palette, mode=None).shape == (3, 5, 3)
    assert read_image(palette, mode="L")[0, 0, 0] == 76

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((3, 5), 65535, np.uint16)).save(deep)
    native = read_image(deep, mode=None)
    assert native.dtype == np.uint16 and native.max() == 65535
    assert read_image(deep, mode="L").max() == 255
    assert read_image(deep).shape == (3, 5, 3)
    assert read_image(deep, mode=None, size=(2, 2)).dtype == np.uint16


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((2, 4, 3), np.uint8)
    img[0, 0] = 255  # a white top-left pixel
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
    path = tmp_path / "photo.jpg"
    im.save(path, exif=exif, quality=100)
    out = read_image(path)
    assert out.shape == (4, 2, 3)
    assert out[0, -1].min() > 200  # top-left pixel moved to top-right


# -- CSV and DataFrame --------------------------------------------------------------------------------
def test_load_image_csv_and_dataframe(png_folder):
    pd = pytest.importorskip("pandas")
    paths, y = load_image_folder(png_folder, lazy=True)
    relative = [str(p).replace(str(png_folder) + "/", "") for p in paths]
    csv_path = png_folder / "labels.csv"
    pd.DataFrame({"file": relative, "digit": y}).to_csv(csv_path, index=False)
    X, y_csv = load_image_csv(csv_path, path_column="file", label_column="digit",
                              mode="L")
    assert X.shape == (120, 8, 8, 1)
    np.testing.assert_array_equal(y_csv, y)
    frame = pd.DataFrame({"path": list(paths), "label": y})
    lazy, y_df = load_image_csv(frame, lazy=True)
    np.testing.assert_array_equal(lazy, paths)
    X_new, none = load_image_csv(frame, label_column=None, mode="L")
    assert none is None and X_new.shape == X.shape
    with pytest.raises(ValueError, match=r"Column 'path' not found.*\['file', 'digit'\]"):
        load_image_csv(csv_path)


# -- lazy paths in CNNClassifier ------------------------------------------------------------------------
def test_fit_and_predict_from_paths(fitted_from_paths, png_folder):
    clf, paths, y = fitted_from_paths
    assert clf.image_shape_ == (8, 8, 1) and clf.n_features_in_ == 64
    X, _ = load_image_folder(png_folder, mode="L")
    np.testing.assert_allclose(clf.predict_proba(paths), clf.predict_proba(X),
                               atol=1e-6)
    np.testing.assert_array_equal(clf.predict(paths[:7]), clf.predict(X[:7]))
    assert clf.score(paths, y) == clf.score(X, y)
    assert set(clf.predict(paths)) <= set(clf.classes_)


def test_paths_and_arrays_train_the_same_model(fitted_from_paths, png_folder):
    clf, _, y = fitted_from_paths
    X, _ = load_image_folder(png_folder, mode="L")
    in_memory = clone(clf).fit(X, y)
    np.testing.assert_allclose(in_memory.predict_proba(X), clf.predict_proba(X),
                               atol=1e-5)


def test_path_dataset_batches_like_the_tensor_dataset(fitted_from_paths):
    _, paths, _ = fitted_from_paths
    ds = ImagePathDataset(paths[:10], np.arange(10), reader=ImageReader(mode="L"))
    Xb, yb = ds.__getitems__([3, 1, 4])
    assert set(Xb) == {"X", "sample_weight"}
    assert tuple(Xb["X"].shape) == (3, 8, 8, 1) and yb.tolist() == [3, 1, 4]
    assert Xb["sample_weight"].tolist() == [1, 1, 1]


def test_paths_in_worker_processes_report_bad_files(tmp_path, digits):
    X, y = digits
    write_folder(tmp_path, X[:40], y[:40])
    paths, labels = load_image_folder(tmp_path, lazy=True)
    (tmp_path / "digit0" / "0000.png").write_bytes(b"broken")
    clf = tiny(validation_fraction=None, iterator_train__num_workers=1)
    with pytest.raises(ImageReadError, match=r"0000\.png"):
        clf.fit(paths[1:].tolist() + [paths[0]], np.append(labels[1:], labels[0]))


def test_predict_paths_of_another_size_is_explained(fitted_from_paths, tmp_path):
    clf = fitted_from_paths[0]
    other = tmp_path / "big.png"
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(other)
    with pytest.raises(ValueError, match=r"big\.png.*\(9, 9, 1\).*\(8, 8, 1\).*size="):
        clf.set_params(iterator_valid__num_workers=0)
        try:
            clf.predict([str(other)])
        finally:
            del clf._routed["iterator_valid__num_workers"]


# -- folder -> search ------------------------------------------------------------------------------------
def test_folder_to_grid_searched_pipeline(png_folder):
    paths, y = load_image_folder(png_folder, lazy=True)
    pipe = make_pipeline(ImageReader(mode="L"), Normalize(),
                         tiny(validation_fraction=None))
    search = GridSearchCV(pipe, {"imagereader__size": [6, 8],
                                 "cnnclassifier__lr": [0.01]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search.fit(paths, y)
    assert set(search.cv_results_["param_imagereader__size"]) == {6, 8}
    assert search.predict(paths[:4]).shape == (4,)


def test_grid_search_on_paths_directly(png_folder):
    paths, y = load_image_folder(png_folder, lazy=True)
    clf = tiny(validation_fraction=None, reader=ImageReader(mode="L"),
               iterator_train__num_workers=0, iterator_valid__num_workers=0)
    search = GridSearchCV(clf, {"reader__size": [(6, 6), (8, 8)]}, cv=2).fit(paths, y)
    assert search.best_estimator_.image_shape_[:2] == search.best_params_["reader__size"]


def test_loading_shows_progress_only_when_verbose(png_folder, capsys):
    load_image_folder(png_folder, mode="L")
    assert "reading images" not in capsys.readouterr().err
    X, y = load_image_folder(png_folder, mode="L", verbose=1)
    err = capsys.readouterr().err
    assert "reading images" in err and f"/{len(X)}" in err
