"""What only runs on a GPU (or several), checked on the CPU through mocks.

The ``cuda``-marked tests at the end run on a real GPU (``bench/gpu.sh``,
``pytest -m cuda``) and are skipped without one.
"""

import math
import types

import numpy as np
import pytest
import torch

from skimgcls import CNNClassifier, _accelerate, _build, _device
from skimgcls._callbacks import EpochProgressBar
from skimgcls._functional import to_float_nchw

from .conftest import digits_sample

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# -- device and precision ------------------------------------------------------
@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert _device.resolve_device("auto") == expected
    assert _device.resolve_device("cuda:1") == "cuda:1"  # explicit wins


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cuda_follows_bf16_support(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert _device.resolve_precision("auto", "cuda") == expected
    assert _device.resolve_precision("auto", "cuda:0") == expected
    assert _device.resolve_precision("fp32", "cuda") == "fp32"


# -- batches on their way to the GPU -------------------------------------------
def test_path_batches_are_pinned_for_cuda_only():
    cuda = _build.path_loader_options("cuda:0")
    assert cuda["iterator_train__pin_memory"] and cuda["iterator_valid__pin_memory"]
    cpu = _build.path_loader_options("cpu")
    assert "iterator_train__pin_memory" not in cpu
    assert cpu["iterator_train__num_workers"] == _build.default_workers()


def test_batches_are_copied_without_blocking(monkeypatch):
    calls = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    images = to_float_nchw(np.zeros((2, 4, 4, 1), np.uint8), "cpu")
    assert calls == [True] and images.shape == (2, 1, 4, 4)


def test_predict_batches_grow_on_an_accelerator():
    X, y = digits_sample(300)
    clf = CNNClassifier(module__width=4, max_epochs=1, batch_size=256,
                        precision="fp32", random_state=0).fit(X, y)
    sizes = []

    def fake_logits(batch, views=None, precision=None):  # no GPU here: record the batch only
        sizes.append(len(batch))
        return torch.zeros(len(batch), len(clf.classes_))

    clf.net_.predict_logits = fake_logits
    clf.predict(X)
    assert sizes == [128, 128, 44]  # CPU: PREDICT_BATCH_SIZE
    sizes.clear()
    clf.device_ = "cuda"
    clf.predict(X)
    assert sizes == [256, 44]  # a GPU takes the training batch size, if larger


# -- several GPUs --------------------------------------------------------------
def fake_net(num_processes):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return types.SimpleNamespace(
        accelerator=types.SimpleNamespace(num_processes=num_processes),
        optimizer_=optimizer, batch_size=32, max_epochs=3,
        get_params=lambda: {})


@pytest.mark.parametrize("num_processes", [1, 4, 8])
def test_one_cycle_counts_the_steps_of_one_of_n_processes(num_processes):
    params = dict(lr_schedule="onecycle", lr=0.01, max_epochs=3, batch_size=32)
    callback = _build.lr_scheduler(params, fake_net(num_processes), 1000, "train_loss")
    per_process = math.ceil(math.ceil(1000 / 32) / num_processes)  # 32 batches
    assert callback.kwargs["total_steps"] == 3 * per_process
    assert EpochProgressBar()._n_batches(fake_net(num_processes), range(1000),
                                         True) == per_process


def test_a_dict_accelerator_joins_a_cpu_launch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(_accelerate, "_has_device_accelerator", lambda: False)
    assert _accelerate.accelerator_kwargs({}) == {"cpu": True}
    assert _accelerate.accelerator_kwargs({"cpu": False}) == {"cpu": False}
    monkeypatch.setattr(_accelerate, "_has_device_accelerator", lambda: True)
    assert _accelerate.accelerator_kwargs({"mixed_precision": "bf16"}) == {
        "mixed_precision": "bf16"}  # GPUs: Accelerate picks them up
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(_accelerate, "_has_device_accelerator", lambda: False)
    assert _accelerate.accelerator_kwargs({}) == {}


def test_a_launch_that_runs_processes_alone_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    alone = types.SimpleNamespace(num_processes=1, distributed_type="NO")
    with pytest.raises(ValueError, match="started as 4 processes.*Accelerator\\(cpu=True\\)"):
        _accelerate.make_accelerator(alone, device="auto", precision="auto")


# -- on a real GPU (bench/gpu.sh) ----------------------------------------------
@pytest.mark.cuda
@needs_cuda
def test_auto_fit_runs_on_the_gpu():
    X, y = digits_sample(300)
    clf = CNNClassifier(module__width=8, max_epochs=2, random_state=0).fit(X, y)
    assert clf.device_ == "cuda"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert clf.precision_ == expected
    assert next(clf.module_.parameters()).device.type == "cuda"
    assert clf.score(X, y) > 0.5


@pytest.mark.cuda
@needs_cuda
def test_gpu_fit_uses_fused_adamw_and_torch_dropout():
    from skimgcls.networks import FastDropout

    X, y = digits_sample(300)
    clf = CNNClassifier(module="simple_cnn", max_epochs=1, random_state=0).fit(X, y)
    assert all(g["fused"] for g in clf.net_.optimizer_.param_groups)
    x = torch.ones(100_000, device="cuda")
    out = FastDropout(0.25).train()(x)  # torch's fused dropout on the GPU
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01


@pytest.mark.cuda
@needs_cuda
def test_gpu_and_cpu_fits_agree(tmp_path):
    X, y = digits_sample(300)
    params = dict(module__width=8, max_epochs=3, random_state=0, precision="fp32")
    gpu = CNNClassifier(device="cuda", **params).fit(X, y)
    cpu = CNNClassifier(device="cpu", **params).fit(X, y)
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.1


@pytest.mark.cuda
@needs_cuda
def test_path_batches_are_pinned_on_the_gpu(tmp_path):
    from PIL import Image

    X, y = digits_sample(64)
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"{i}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    clf = CNNClassifier(module__width=4, max_epochs=1, random_state=0,
                        iterator_train__num_workers=0, iterator_valid__num_workers=0)
    clf.fit(np.array(paths), y)
    assert clf.net_.iterator_train__pin_memory is True
    assert clf.predict(np.array(paths)).shape == (64,)
