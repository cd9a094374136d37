"""Progress bars: silent at verbose=0, per-epoch loss/accuracy bars above."""

import pickle

import numpy as np
import pytest

from skimgcls.utils import _progress
from skimgcls.utils._progress import progress_bar, track

from .conftest import digits_sample, tiny_classifier


@pytest.fixture(scope="module")
def data():
    return digits_sample(200)


def tiny(**params):
    return tiny_classifier(**{"lr": 0.01, **params})


def test_verbose_0_is_silent(data, capsys):
    X, y = data
    clf = tiny(verbose=0).fit(X, y)
    clf.predict(X)
    clf.partial_fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_1_shows_epoch_bars_with_loss_and_accuracy(data, capsys):
    X, y = data
    clf = tiny(verbose=1).fit(X, y)
    out, err = capsys.readouterr()
    # skorch's per-epoch summary table on stdout ...
    assert "train_loss" in out and "valid_acc" in out
    # ... and one tqdm bar per epoch on stderr, with running loss and accuracy
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "loss=" in err and "acc=" in err and "valid_acc=" in err
    # a short predict stays quiet at verbose=1 (the bar appears after 2 s)
    clf.predict(X)
    out, err = capsys.readouterr()
    assert "predict" not in err


def test_verbose_2_shows_prediction_bar(data, capsys):
    X, y = data
    clf = tiny(verbose=2, max_epochs=1).fit(X, y)
    capsys.readouterr()
    clf.predict_proba(np.concatenate([X, X]))
    _, err = capsys.readouterr()
    assert "predict" in err and "/4 " in err  # 4 batches of 128 images


def test_partial_fit_counts_its_own_epochs(data, capsys):
    X, y = data
    clf = tiny(verbose=1).fit(X, y)
    capsys.readouterr()
    clf.partial_fit(X, y)
    _, err = capsys.readouterr()
    assert "epoch 1/1" in err


def test_verbose_fitted_estimator_pickles(data):
    X, y = data
    clf = tiny(verbose=1, max_epochs=1).fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict(X), clf.predict(X))


def test_track_and_progress_bar(capsys):
    assert list(track(range(3), desc="reading", verbose=0)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")
    assert list(track(iter(range(3)), total=3, desc="reading", unit="image",
                      verbose=1, leave=True)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "reading" in err and "3/3" in err
    with progress_bar(total=2, desc="work", verbose=1, leave=True) as bar:
        bar.update(2)
        bar.set_postfix(loss=0.5)
    assert "loss=0.5" in capsys.readouterr().err


def test_without_tqdm_bars_are_silent(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    bar = progress_bar(total=2, verbose=2)
    bar.update(2)
    bar.set_postfix(loss=1.0)
    bar.set_description("x")
    bar.close()
    assert bar.n == 2
    assert list(track([1, 2], verbose=2)) == [1, 2]
    assert capsys.readouterr() == ("", "")


def test_bars_on_terminals_only(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    with _progress.bars_on_terminals_only():  # pytest's captured stderr: no terminal
        assert isinstance(progress_bar(total=2), _progress._SilentBar)
        monkeypatch.setattr("sys.stderr.isatty", lambda: True)
        bar = progress_bar(total=2, desc="drawn")
        assert not isinstance(bar, _progress._SilentBar)
        bar.close()
        monkeypatch.undo()
    assert not isinstance(progress_bar(total=2), _progress._SilentBar)  # restored
    capsys.readouterr()
