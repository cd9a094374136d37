"""Training faults: divergence, interruption, and checkpoint/resume after a kill."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch.callbacks import Callback

from skimgcls import CNNClassifier
from skimgcls.exceptions import NonFiniteLossError

#: 180 training images in batches of 32: 6 batches per epoch.
PARAMS = dict(module__width=4, batch_size=32, precision="fp32", random_state=0,
              image_shape=(8, 8), validation_fraction=0.1, update_bn=False,
              n_threads=1,  # bit-identical results need the same thread count
              augment=None)  # the faults are injected by augmentations (NaNAt)


def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:200] / 16).astype(np.float32), y[:200]


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def one_epoch(data):
    """What the first epoch of a constant-learning-rate fit gives."""
    return CNNClassifier(max_epochs=1, lr_schedule=None, **PARAMS).fit(*data)


def same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class NaNAt:
    """An augmentation that poisons the n-th training batch with NaN."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, images):
        self.calls += 1
        return images * float("nan") if self.calls == self.n else images


class At(Callback):
    """Run ``action(net)`` at training batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch, batch, action):
        self.epoch, self.batch, self.action = epoch, batch, action

    def on_batch_end(self, net, training=False, **kwargs):
        if (training and len(net.history) == self.epoch
                and len(net.history[-1]["batches"]) == self.batch):
            self.action(net)


def interrupt(net):
    raise KeyboardInterrupt


def poison_weights(net):
    with torch.no_grad():
        next(net.module_.parameters()).fill_(float("inf"))


def test_non_finite_loss_names_epoch_and_batch_and_keeps_last_epoch(data, one_epoch):
    clf = CNNClassifier(max_epochs=3, lr_schedule=None,
                        **{**PARAMS, "augment": NaNAt(6 + 3)})
    with pytest.raises(NonFiniteLossError, match="nan at epoch 2, batch 3") as info:
        clf.fit(*data)
    assert "weights of epoch 1" in str(info.value)
    assert len(clf.history_) == 1
    assert same_weights(clf, one_epoch)
    np.testing.assert_array_equal(clf.predict_proba(data[0]),
                                  one_epoch.predict_proba(data[0]))


def test_non_finite_loss_in_first_epoch_keeps_initial_weights(data):
    clf = CNNClassifier(max_epochs=2, **{**PARAMS, "augment": NaNAt(1)})
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1.*initial weights"):
        clf.fit(*data)
    assert len(clf.history_) == 0
    assert np.isfinite(clf.predict_proba(data[0][:5])).all()


def test_weights_that_become_infinite_are_caught_at_epoch_end(data, one_epoch):
    clf = CNNClassifier(max_epochs=3, lr_schedule=None,
                        callbacks=[At(2, 6, poison_weights)], **PARAMS)
    with pytest.raises(NonFiniteLossError, match="weights became non-finite.*epoch 2, "
                                                 "batch 6"):
        clf.fit(*data)
    assert same_weights(clf, one_epoch)


def test_keyboard_interrupt_keeps_the_last_full_epoch(data, one_epoch):
    clf = CNNClassifier(max_epochs=3, lr_schedule=None,
                        callbacks=[At(2, 2, interrupt)], **PARAMS)
    with pytest.raises(KeyboardInterrupt, match="during epoch 2.*1 complete epoch"):
        clf.fit(*data)
    assert len(clf.history_) == 1
    assert same_weights(clf, one_epoch)
    assert clf.score(*data) == one_epoch.score(*data)
    # The optimizer was rolled back too: continuing gives a sane second epoch.
    clf.set_params(warm_start=True, max_epochs=1, callbacks=None).fit(*data)
    assert len(clf.history_) == 2


def test_stop_signal_from_a_callback_at_epoch_end_ends_fit_normally(data):
    class StopAfter(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    clf = CNNClassifier(max_epochs=4, callbacks=[StopAfter()], **PARAMS).fit(*data)
    assert len(clf.history_) == 2


# -- checkpoints ---------------------------------------------------------------
def checkpoint_epochs(directory):
    state = torch.load(os.path.join(directory, "checkpoint.pt"), weights_only=True)
    return state["epochs"]


@pytest.fixture(scope="module")
def uninterrupted(data):
    """A full fit with one-cycle schedule and early stopping bookkeeping."""
    return CNNClassifier(max_epochs=5, early_stopping=True, patience=3,
                         **PARAMS).fit(*data)


KILLED_FIT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from sklearn.datasets import load_digits
    from skorch.callbacks import Callback
    from skimgcls import CNNClassifier

    class KillAt(Callback):
        def on_batch_end(self, net, training=False, **kwargs):
            if training and len(net.history) == 3 and len(net.history[-1]["batches"]) == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    X, y = load_digits(return_X_y=True)
    X, y = (X[:200] / 16).astype(np.float32), y[:200]
    CNNClassifier(max_epochs=5, early_stopping=True, patience=3, checkpoint=sys.argv[1],
                  callbacks=[KillAt()], **{params!r}).fit(X, y)
    print("not killed")
""")


def test_fit_killed_with_sigkill_resumes_to_the_same_model(data, uninterrupted,
                                                           tmp_path):
    directory = tmp_path / "ckpt"
    script = KILLED_FIT.format(params=PARAMS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script, str(directory)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # Killed inside epoch 3: epochs 1 and 2 are safe, only the epoch in
    # progress is lost.
    assert checkpoint_epochs(directory) == 2

    resumed = CNNClassifier(max_epochs=5, early_stopping=True, patience=3,
                            checkpoint=directory, **PARAMS).fit(*data)
    assert len(resumed.history_) == 5
    assert resumed.history_[:, "epoch"] == [1, 2, 3, 4, 5]
    assert same_weights(resumed, uninterrupted)
    np.testing.assert_array_equal(resumed.predict_proba(data[0]),
                                  uninterrupted.predict_proba(data[0]))
    assert checkpoint_epochs(directory) == 5


def test_interrupted_fit_resumes_in_process(data, uninterrupted, tmp_path):
    clf = CNNClassifier(max_epochs=5, early_stopping=True, patience=3,
                        checkpoint=tmp_path, callbacks=[At(4, 1, interrupt)], **PARAMS)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(*data)
    assert checkpoint_epochs(tmp_path) == 3
    # callbacks do not change what is computed, so they may differ on resume
    clf.set_params(callbacks=None).fit(*data)
    assert same_weights(clf, uninterrupted)


def test_finished_checkpoint_loads_without_training(data, tmp_path):
    first = CNNClassifier(max_epochs=2, checkpoint=tmp_path, **PARAMS).fit(*data)
    again = CNNClassifier(max_epochs=2, checkpoint=tmp_path, **PARAMS).fit(*data)
    assert [row["dur"] for row in again.history_] == [row["dur"] for row in first.history_]
    assert same_weights(first, again)


def test_checkpoint_of_an_early_stopped_fit_is_not_continued(data, tmp_path):
    class StopAfter(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    CNNClassifier(max_epochs=4, checkpoint=tmp_path, callbacks=[StopAfter()],
                  **PARAMS).fit(*data)
    again = CNNClassifier(max_epochs=4, checkpoint=tmp_path, **PARAMS).fit(*data)
    assert len(again.history_) == 2


def test_checkpoint_of_another_fit_is_refused(data, tmp_path):
    CNNClassifier(max_epochs=1, checkpoint=tmp_path, **PARAMS).fit(*data)
    with pytest.raises(ValueError, match=r"different fit: lr \(0.005 in the checkpoint, "
                                         r"0.01 now\)"):
        CNNClassifier(max_epochs=1, checkpoint=tmp_path, **{**PARAMS, "lr": 0.01}).fit(
            *data)
    X, y = data
    with pytest.raises(ValueError, match="the training data"):
        CNNClassifier(max_epochs=1, checkpoint=tmp_path, **PARAMS).fit(X[::-1], y[::-1])


def test_unreadable_checkpoint_is_refused(data, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot read the checkpoint"):
        CNNClassifier(max_epochs=1, checkpoint=tmp_path, **PARAMS).fit(*data)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        CNNClassifier(max_epochs=1, checkpoint=file, **PARAMS).fit(*data)
