"""One image path: the reader protocol, one conversion, one decode, one label check."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from skimgcls import BackboneFeatures, CNNClassifier, ImageReader, RandomAugment
from skimgcls._functional import from_float_nchw, max_value, to_float_nchw
from skimgcls.inspection import MisclassifiedImagesDisplay
from skimgcls.utils import check_images, read_images

from .conftest import digits_sample, tiny_classifier


class GrayReader:
    """A user's reader: only ``read``, returning (n, H, W) gray uint8 images."""

    def __init__(self):
        self.calls = 0

    def read(self, paths):
        self.calls += 1
        return np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])


@pytest.fixture
def folder(tmp_path):
    X, y = digits_sample(60)
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"{i}.png"
        Image.fromarray((image * 255 / image.max()).astype(np.uint8)).save(path)
        paths.append(str(path))
    return np.array(paths, dtype=object), y


def test_a_reader_with_only_read_trains_and_predicts(folder):
    paths, y = folder
    reader = GrayReader()
    clf = tiny_classifier(reader=reader, max_epochs=1, validation_fraction=None).fit(paths, y)
    assert clf.image_shape_ == (8, 8, 1)
    assert clf.n_features_in_ == 64
    assert clf.predict(paths[:5]).shape == (5,)
    # The in-memory images give the same predictions as their files.
    in_memory = GrayReader().read(paths)
    np.testing.assert_array_equal(clf.predict(paths), clf.predict(in_memory))


class CountingReader:
    def read(self, paths):
        return np.zeros((len(paths) + 1, 4, 4, 1), np.uint8)


class TextReader:
    def read(self, paths):
        return ["not", "images"][:len(paths)]


@pytest.mark.parametrize("reader, match", [
    (CountingReader(), r"returned 2 images for 1 paths; a reader must return exactly"),
    (TextReader(), r"TextReader.read\(paths\) must return images"),
])
def test_a_reader_that_breaks_the_protocol_gets_a_clear_error(folder, reader, match):
    paths, _ = folder
    with pytest.raises(ValueError, match=match):
        read_images(reader, paths[:1])


def test_check_images_probes_the_first_file(folder):
    paths, _ = folder

    class Estimator:
        pass

    est = Estimator()
    X, shape = check_images(paths, estimator=est, allow_paths=True,
                            reader=ImageReader(mode="L"), return_image_shape=True)
    assert X.dtype == object and shape == (8, 8, 1) and est.n_features_in_ == 64
    with pytest.raises(ValueError, match=r"decodes to shape \(8, 8, 3\).*\(8, 8, 1\)"):
        check_images(paths, allow_paths=True, reader=ImageReader(mode="RGB"),
                     fitted_shape=(8, 8, 1))


def test_predict_on_files_of_another_shape_fails_before_the_first_batch(folder):
    paths, y = folder
    clf = CNNClassifier(module="simple_cnn", max_epochs=1, validation_fraction=None,
                        reader=ImageReader(mode="L"), random_state=0).fit(paths, y)
    clf.set_params(reader=ImageReader(mode="RGB"))
    with pytest.raises(ValueError, match=r"\(8, 8, 3\).*\(8, 8, 1\).*ImageReader\(size"):
        clf.predict(paths)


# -- the one conversion -----------------------------------------------------------
@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_to_float_nchw_scales_integers_and_inverts(dtype, top):
    X = np.random.RandomState(0).randint(0, top + 1, size=(3, 5, 4, 2)).astype(dtype)
    x = to_float_nchw(X)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 5, 4)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), X / top, rtol=1e-6)
    assert max_value(X.dtype) == max_value(torch.from_numpy(X).dtype) == top
    np.testing.assert_array_equal(from_float_nchw(x, dtype), X)


def test_to_float_nchw_keeps_float_values():
    X = np.random.RandomState(0).randn(2, 3, 3, 1).astype(np.float32) * 7
    np.testing.assert_array_equal(to_float_nchw(X).permute(0, 2, 3, 1).numpy(), X)


def test_augmentation_keeps_integer_dtypes_through_the_one_conversion():
    X = np.random.RandomState(0).randint(0, 65536, size=(4, 8, 8, 1)).astype(np.uint16)
    identity = RandomAugment(degrees=0, translate=0, zoom=0)
    np.testing.assert_array_equal(identity.fit_transform(X), X)


# -- one decode: EXIF orientation everywhere ----------------------------------------
@pytest.fixture
def rotated_jpeg(tmp_path):
    """A 6x10 photo stored sideways (10x6) with EXIF orientation 6 (rotate 270)."""
    upright = np.zeros((6, 10, 3), np.uint8)
    upright[:, :5] = 255
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # 10x6 on disk
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif, quality=100)
    return str(path), upright


def test_backbone_features_read_files_upright(rotated_jpeg):
    path, upright = rotated_jpeg
    net = nn.Sequential(nn.Flatten())  # features = the pixels themselves
    features = BackboneFeatures(backbone=net, input_size=None, pretrained=False)
    from_file = features.fit(np.array([path], dtype=object)).transform(
        np.array([path], dtype=object))
    expected = to_float_nchw(upright[np.newaxis]).flatten().numpy()
    np.testing.assert_allclose(from_file[0], expected, atol=0.05)  # upright, not 10x6


def test_misclassified_display_reads_files_upright_and_closes_them(rotated_jpeg):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    path, upright = rotated_jpeg
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        display = MisclassifiedImagesDisplay.from_predictions(
            np.array([path], dtype=object), [0], [1])
    shown = display.axes_.ravel()[0].images[0].get_array()
    assert shown.shape[:2] == (6, 10)
