"""Preprocessing transformers: values, dtypes, layouts, torch modules, pipelines."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skimgcls import (
    CenterCrop,
    CNNClassifier,
    ImageReader,
    Normalize,
    Resize,
    ToFloat,
    ToGrayscale,
    ToRGB,
)
from skimgcls.datasets import ImageReadError
from skimgcls.exceptions import MixedImageShapesError


def rng_images(n=4, h=6, w=10, c=3, dtype=np.uint8, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(n, h, w, c))
    return X.astype(dtype) if dtype == np.uint8 else (X / 255).astype(dtype)


# -- Resize ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_resize_keeps_dtype_and_shape(dtype):
    X = rng_images().astype(dtype)
    out = Resize((3, 5)).fit_transform(X)
    assert out.shape == (4, 3, 5, 3) and out.dtype == dtype


def test_resize_matches_torchvision_and_pil():
    X = rng_images(dtype=np.float32)
    ours = Resize((3, 5)).fit_transform(X)
    theirs = TF.resize(torch.from_numpy(X).permute(0, 3, 1, 2), [3, 5], antialias=True)
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    img = rng_images(n=1, h=20, w=20)
    ours = Resize(10).fit_transform(img)[0]
    pil = np.asarray(Image.fromarray(img[0]).resize((10, 10), Image.Resampling.BILINEAR))
    assert np.abs(ours.astype(int) - pil).max() <= 2


def test_resize_constant_image_stays_constant():
    X = np.full((2, 7, 9, 1), 77, np.uint8)
    for interpolation in ["nearest", "bilinear", "bicubic", "area"]:
        out = Resize((4, 4), interpolation=interpolation).fit_transform(X)
        assert (out == 77).all()


def test_resize_keep_aspect_ratio_pad_and_crop():
    X = np.full((1, 10, 20, 1), 200, np.uint8)
    padded = Resize(10, keep_aspect_ratio="pad", fill=0).fit_transform(X)[0, :, :, 0]
    assert padded.shape == (10, 10)
    assert (padded[:2] == 0).all() and (padded[-2:] == 0).all()
    assert (padded[3:7] == 200).all()
    X = np.zeros((1, 10, 20, 1), np.uint8)
    X[0, :, 4:16] = 255  # a centered 10x12 white box
    cropped = Resize(5, keep_aspect_ratio="crop",
                     interpolation="nearest").fit_transform(X)[0, :, :, 0]
    assert cropped.shape == (5, 5) and (cropped == 255).all()


def test_resize_list_of_different_sizes():
    images = [np.zeros((6, 6)), np.ones((8, 9)), np.full((5, 3), 0.5)]
    out = Resize(4).fit_transform(images)
    assert out.shape == (3, 4, 4, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], 1.0, rtol=1e-6)
    pil = [Image.new("L", (5, 3), 255), Image.new("L", (2, 2), 0)]
    assert Resize(4).fit_transform(pil)[0].min() == 255
    with pytest.raises(ValueError, match="different dtypes"):
        Resize(4).fit_transform([np.zeros((2, 2)), Image.new("L", (5, 3))])


def test_accepts_every_input_kind_and_returns_nhwc():
    X = rng_images(n=2, h=4, w=5)
    nchw = X.transpose(0, 3, 1, 2)
    tensor = torch.from_numpy(nchw.copy())
    pil = [Image.fromarray(img) for img in X]
    for data in [X, nchw, tensor, pil]:
        np.testing.assert_array_equal(Resize((4, 5)).fit_transform(data), X)
    flat = X[..., 0].reshape(2, -1)
    out = Resize(2, image_shape=(4, 5)).fit_transform(flat)
    assert out.shape == (2, 2, 2, 1)


def test_non_image_arrays_are_refused_with_their_shape():
    with pytest.raises(ValueError, match=r"\(3, 5, 7, 9\)"):
        Resize(4).fit_transform(np.zeros((3, 5, 7, 9)))
    with pytest.raises(ValueError, match="15 features"):
        Resize(4).fit_transform(np.zeros((3, 15)))
    with pytest.raises(TypeError, match="bool"):
        ToFloat().fit_transform(np.zeros((2, 4, 4), dtype=bool))


# -- CenterCrop -------------------------------------------------------------------------
def test_center_crop_values_and_padding():
    X = np.arange(36, dtype=np.uint8).reshape(1, 6, 6)
    out = CenterCrop((2, 4)).fit_transform(X)[0, :, :, 0]
    np.testing.assert_array_equal(out, X[0, 2:4, 1:5])
    out = CenterCrop(8, fill=9).fit_transform(X)[0, :, :, 0]
    assert out.shape == (8, 8) and (out[0] == 9).all()
    np.testing.assert_array_equal(out[1:7, 1:7], X[0])


# -- Normalize ----------------------------------------------------------------------------
def test_normalize_learns_per_channel_stats():
    X = rng_images(n=10)
    norm = Normalize().fit(X)
    flat = X.reshape(-1, 3) / 255
    np.testing.assert_allclose(norm.mean_, flat.mean(0))
    np.testing.assert_allclose(norm.std_, flat.std(0))
    out = norm.transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.reshape(-1, 3).std(0), 1, atol=1e-4)


def test_normalize_imagenet_given_and_constant_channels():
    X = rng_images()
    norm = Normalize(mean="imagenet", std="imagenet").fit(X)
    np.testing.assert_allclose(norm.mean_, [0.485, 0.456, 0.406])
    expected = (X / 255 - norm.mean_) / norm.std_
    np.testing.assert_allclose(norm.transform(X), expected, rtol=1e-5, atol=1e-6)
    norm = Normalize(mean=0.5, std=[0.1, 0.2, 0.3]).fit(X)
    np.testing.assert_allclose(norm.std_, [0.1, 0.2, 0.3])
    gray = Normalize(mean="imagenet", std="imagenet").fit(X[..., :1])
    assert gray.mean_.shape == (1,)
    constant = Normalize().fit(np.full((3, 4, 4), 7.0))
    assert constant.std_[0] == 1.0
    with pytest.raises(ValueError, match="one value per channel"):
        Normalize(mean=[0.1, 0.2]).fit(X)


def test_normalize_channel_mismatch_is_explained():
    norm = Normalize().fit(rng_images())
    with pytest.raises(ValueError, match="1 channel.*3 channel.*ToRGB"):
        norm.transform(rng_images(c=1))


# -- conversions ---------------------------------------------------------------------------
def test_to_rgb_and_to_grayscale():
    gray = rng_images(c=1)
    rgb = ToRGB().fit_transform(gray)
    assert rgb.shape[-1] == 3 and (rgb == gray).all()
    rgba = rng_images(c=4)
    np.testing.assert_array_equal(ToRGB().fit_transform(rgba), rgba[..., :3])
    X = rng_images()
    ours = ToGrayscale().fit_transform(X)[..., 0]
    pil = np.stack([np.asarray(Image.fromarray(img).convert("L")) for img in X])
    assert np.abs(ours.astype(int) - pil).max() <= 1
    assert ToGrayscale(n_channels=3).fit_transform(X).shape[-1] == 3
    np.testing.assert_array_equal(ToGrayscale().fit_transform(gray), gray)


def test_to_float():
    X = np.array([[[0, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(ToFloat().fit_transform(X).ravel(), [0, 1])
    X16 = np.array([[[0, 65535]]], dtype=np.uint16)
    np.testing.assert_array_equal(ToFloat().fit_transform(X16).ravel(), [0, 1])


# -- torch modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("transformer", [
    Resize((4, 6)),
    Resize(5, keep_aspect_ratio="pad", interpolation="bicubic", fill=0.5),
    Resize(5, keep_aspect_ratio="crop", interpolation="nearest"),
    CenterCrop((3, 12), fill=0.25),
    Normalize(),
    Normalize(mean="imagenet", std="imagenet"),
    ToRGB(),
    ToGrayscale(),
    ToGrayscale(n_channels=3),
    ToFloat(),
], ids=repr)
def test_as_torch_module_matches_transform(transformer):
    X = rng_images(n=3, h=7, w=10, dtype=np.float32)
    if isinstance(transformer, ToRGB):
        X = X[..., :1]
    expected = transformer.fit_transform(X)
    module = transformer.as_torch_module()
    assert isinstance(module, torch.nn.Module)
    got = module(torch.from_numpy(X).permute(0, 3, 1, 2))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected,
                               rtol=1e-5, atol=1e-6)


# -- ImageReader -------------------------------------------------------------------------------
@pytest.fixture
def mixed_size_files(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(6, 6), (8, 10), (6, 6)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((h, w, 3), 50 * i, np.uint8)).save(path)
        paths.append(str(path))
    return np.array(paths, dtype=object)


def test_image_reader_reads_paths(mixed_size_files):
    out = ImageReader(size=(4, 4)).fit_transform(mixed_size_files)
    assert out.shape == (3, 4, 4, 3) and out.dtype == np.uint8
    assert (out[2] == 100).all()
    gray = ImageReader(mode="L", size=4).fit_transform(list(mixed_size_files))
    assert gray.shape == (3, 4, 4, 1)


def test_image_reader_mixed_sizes_suggest_a_size(mixed_size_files):
    with pytest.raises(MixedImageShapesError, match=r"2 different shapes.*size=\(224, 224\)"):
        ImageReader().fit_transform(mixed_size_files)


def test_pil_images_of_two_sizes_name_both_shapes():
    images = [Image.new("L", (4, 4)), Image.new("L", (5, 4))]
    with pytest.raises(MixedImageShapesError, match=r"2 different shapes \(image 0 is "
                       r"4x4 with 1 channel\(s\); image 1 is 4x5 .*Resize them first"):
        ToFloat().fit_transform(images)


def test_image_reader_names_a_bad_file(tmp_path, mixed_size_files):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ImageReader(size=4).fit_transform(np.append(mixed_size_files, str(bad)))


def test_image_reader_converts_in_memory_images():
    X = rng_images(c=1)
    out = ImageReader(mode="RGB", size=3).fit_transform(X)
    assert out.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(ImageReader(mode="L").fit_transform(X), X)
    assert ImageReader(mode="RGBA").fit_transform(X)[..., 3].min() == 255
    ragged = ImageReader(mode="L", size=2).fit_transform([np.zeros((3, 3)),
                                                          np.zeros((4, 5))])
    assert ragged.shape == (2, 2, 2, 1)


# -- in pipelines and searches -----------------------------------------------------------------------
def test_grid_search_over_preprocessing_params():
    X, y = load_digits(return_X_y=True)
    X = (X[:120] * 16).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    pipe = make_pipeline(
        Resize(8), Normalize(),
        CNNClassifier(module__width=4, max_epochs=1, validation_fraction=None,
                      precision="fp32", random_state=0))
    search = GridSearchCV(pipe, {"resize__size": [6, 8]}, cv=2).fit(X, y[:120])
    assert search.best_params_["resize__size"] in (6, 8)
    assert search.predict(X[:5]).shape == (5,)
    assert search.best_estimator_[-1].image_shape_[:2] == (search.best_params_[
        "resize__size"],) * 2
