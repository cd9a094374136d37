"""The decode cache of ImageReader(cache=...): same images, fresh after changes,
shared by processes, used by a fit on paths."""

import json
import multiprocessing
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from skimgcls import CNNClassifier, ImageReader
from skimgcls import _cache
from skimgcls.datasets import ImageReadError, read_image


def write_jpegs(folder, n=40, size=(20, 16)):
    """``n`` small RGB JPEG files of digits; their paths and labels."""
    digits = load_digits()
    rng = np.random.RandomState(0)
    paths = []
    for i in range(n):
        gray = Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8))
        gray = np.asarray(gray.resize(size[::-1], Image.Resampling.BILINEAR), np.float32)
        rgb = gray[..., None] * rng.uniform(0.5, 1, 3) + rng.normal(0, 5, (*size, 3))
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return np.array(paths, dtype=object), digits.target[:n]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_jpegs(tmp_path_factory.mktemp("jpegs"))


def decoded(paths, **kwargs):
    return np.stack([read_image(p, **kwargs) for p in paths])


def no_decoding(*args, **kwargs):
    raise AssertionError("the cache decoded a file it holds")


def cache_folder(directory):
    (folder,) = [p for p in directory.iterdir() if p.is_dir()]
    return folder


def test_cached_images_equal_decoded_ones_and_are_not_decoded_again(
        jpegs, tmp_path, monkeypatch):
    paths, _ = jpegs
    reader = ImageReader(size=(12, 10), cache=tmp_path)
    expected = decoded(paths, size=(12, 10))
    first = reader.read(paths[:15])  # fills 15 entries
    both = reader.read(paths)  # 15 from the cache, 25 decoded
    np.testing.assert_array_equal(first, expected[:15])
    np.testing.assert_array_equal(both, expected)
    monkeypatch.setattr(_cache, "read_all", no_decoding)
    again = reader.read(paths[::-1])
    np.testing.assert_array_equal(again, expected[::-1])
    assert again.dtype == np.uint8 and again.shape == (40, 12, 10, 3)
    # through transform (a Pipeline step) too
    np.testing.assert_array_equal(reader.fit_transform(paths), expected)


def test_each_reader_configuration_has_its_own_entries(jpegs, tmp_path):
    paths, _ = jpegs
    gray = ImageReader(size=8, mode="L", cache=tmp_path).read(paths[:5])
    rgb = ImageReader(size=8, cache=tmp_path).read(paths[:5])
    crop = ImageReader(size=8, keep_aspect_ratio="crop", cache=tmp_path).read(paths[:5])
    np.testing.assert_array_equal(gray, decoded(paths[:5], size=8, mode="L"))
    np.testing.assert_array_equal(rgb, decoded(paths[:5], size=8))
    np.testing.assert_array_equal(crop, decoded(paths[:5], size=8, keep_aspect_ratio="crop"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "8x8-L-bilinear-stretch-v1", "8x8-RGB-bilinear-crop-v1",
        "8x8-RGB-bilinear-stretch-v1"]


def test_a_file_changed_on_disk_is_decoded_again(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((6, 6, 3), 10, np.uint8)).save(path)
    reader = ImageReader(size=4, cache=tmp_path / "cache")
    assert (reader.read([str(path)]) == 10).all()
    Image.fromarray(np.full((6, 6, 3), 200, np.uint8)).save(path)
    # the same size in bytes: only the modification time tells them apart
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert (reader.read([str(path)]) == 200).all()
    assert (reader.read([str(path)]) == 200).all()  # and that one is cached


def test_an_unfilled_entry_is_decoded_and_a_damaged_index_line_is_skipped(
        jpegs, tmp_path):
    paths, _ = jpegs
    reader = ImageReader(size=8, cache=tmp_path)
    expected = decoded(paths[:6], size=8)
    reader.read(paths[:3])
    folder = cache_folder(tmp_path)
    # A writer that died: a slot without its flag, and half an index line.
    flags = bytearray((folder / "filled.u8").read_bytes())
    flags[1] = 0
    (folder / "filled.u8").write_bytes(bytes(flags))
    with open(folder / "index.jsonl", "ab") as f:
        f.write(b'["/half/a/li')
    kwargs = dict(mode="RGB", size=8, interpolation="bilinear", keep_aspect_ratio=None)
    _cache.open_cache(tmp_path, kwargs).close()  # as if in a new process
    np.testing.assert_array_equal(reader.read(paths[:6]), expected)
    lines = (folder / "index.jsonl").read_bytes().splitlines()
    assert len(lines) == 3 + 1 + 3 and lines[3] == b'["/half/a/li'
    assert (folder / "filled.u8").read_bytes()[:7] == b"\x01\x01\x01\x00\x01\x01\x01"


def test_missing_files_and_readers_without_a_size_raise(jpegs, tmp_path):
    paths, _ = jpegs
    reader = ImageReader(size=8, cache=tmp_path)
    with pytest.raises(ImageReadError, match="no such file"):
        reader.read([paths[0], str(tmp_path / "gone.jpg")])
    with pytest.raises(ValueError, match=r"stores every image at one size.*size=None"):
        ImageReader(cache=tmp_path).read(paths[:2])
    with pytest.raises(ValueError, match=r"mode=None"):
        ImageReader(size=8, mode=None, cache=tmp_path).read(paths[:2])


def fill(directory, paths, seed, queue):
    order = np.random.RandomState(seed).permutation(len(paths))
    reader = ImageReader(size=(12, 10), cache=directory)
    out = np.empty((len(paths), 12, 10, 3), np.uint8)
    for batch in np.array_split(order, 8):
        out[batch] = reader.read(paths[batch])
    queue.put((seed, out))


def test_two_processes_filling_one_cache_get_the_decoded_images(jpegs, tmp_path,
                                                                 monkeypatch):
    paths, _ = jpegs
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    procs = [ctx.Process(target=fill, args=(str(tmp_path), paths, seed, queue))
             for seed in (1, 2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = decoded(paths, size=(12, 10))
    for out in results.values():
        np.testing.assert_array_equal(out, expected)
    folder = cache_folder(tmp_path)
    entries = [json.loads(line)[0] for line in
               (folder / "index.jsonl").read_bytes().splitlines()]
    assert sorted(entries) == sorted(os.path.abspath(p) for p in paths)  # once each
    assert (folder / "filled.u8").read_bytes()[:len(paths)] == b"\x01" * len(paths)
    monkeypatch.setattr(_cache, "read_all", no_decoding)
    np.testing.assert_array_equal(ImageReader(size=(12, 10), cache=tmp_path).read(paths),
                                  expected)


def test_a_fit_on_paths_fills_and_reads_the_cache(jpegs, tmp_path):
    paths, y = jpegs
    params = dict(module__width=4, max_epochs=2, batch_size=16, precision="fp32",
                  validation_fraction=None, random_state=0)
    plain = CNNClassifier(reader=ImageReader(size=8, mode="L"), **params).fit(paths, y)
    cached = CNNClassifier(reader=ImageReader(size=8, mode="L", cache=tmp_path),
                           **params).fit(paths, y)
    folder = cache_folder(tmp_path)
    assert len((folder / "index.jsonl").read_bytes().splitlines()) == len(paths)
    assert (folder / "filled.u8").read_bytes()[:len(paths)] == b"\x01" * len(paths)
    # the same bytes in, the same model out
    np.testing.assert_allclose(cached.predict_proba(paths), plain.predict_proba(paths),
                               rtol=1e-5, atol=1e-6)
