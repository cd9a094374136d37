"""Every Python snippet of README.md and docs/getting_started.rst runs as written.

The snippets of one page run in order in one namespace (as a reader pastes
them), in a temporary folder that holds ``data/``: a user's folder of photo
crops of mixed sizes and color modes with a corrupt and an empty file. To keep
this fast, every fit trains one epoch (skorch's ``partial_fit`` is capped) on
the first ``PER_CLASS`` images of each class, and searches run on threads, in
this process (so that these caps hold in them too).
"""

import re
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import skorch
from sklearn.utils import _safe_indexing

from skimgcls import CNNClassifier

from .conftest import write_mixed_folder

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 12  # a fit in a snippet trains on the first 12 images of each class


def few_per_class(y):
    """Indices of the first ``PER_CLASS`` images of each class, in order."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        return np.arange(min(len(labels), PER_CLASS * 10))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS]
                                   for c in np.unique(labels)]))

pytestmark = pytest.mark.slow


def readme_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def rst_blocks(text):
    """The bodies of ``.. code-block:: python`` directives, dedented."""
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)",
                             text, flags=re.M):
        lines = match.group(1).rstrip("\n").splitlines()
        blocks.append("\n".join(line[4:] for line in lines) + "\n")
    return blocks


def test_the_pages_have_snippets():
    assert len(readme_blocks((ROOT / "README.md").read_text())) >= 6
    assert len(rst_blocks((ROOT / "docs" / "getting_started.rst").read_text())) >= 5


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """Run in a folder with ``data/`` as a new user has it; fits train 1 epoch."""
    write_mixed_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    partial_fit = skorch.NeuralNet.partial_fit

    def one_epoch(self, X, y=None, classes=None, **fit_params):
        if fit_params.get("epochs"):
            fit_params["epochs"] = 1
        return partial_fit(self, X, y, classes, **fit_params)

    monkeypatch.setattr(skorch.NeuralNet, "partial_fit", one_epoch)
    fit = CNNClassifier.fit

    def on_few_images(self, X, y, **params):
        keep = few_per_class(y)
        return fit(self, _safe_indexing(X, keep), _safe_indexing(y, keep), **params)

    monkeypatch.setattr(CNNClassifier, "fit", on_few_images)
    return tmp_path


def run_snippets(blocks, source):
    namespace = {"__name__": "__snippets__"}
    with joblib.parallel_backend("threading"), warnings.catch_warnings():
        # the folder's two bad files are skipped with a warning, as documented
        warnings.filterwarnings("ignore", message="Skipped 2 of")
        for i, block in enumerate(blocks):
            code = compile(block, f"{source} snippet {i + 1}", "exec")
            exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace


def test_readme_snippets_run(user_folder):
    ns = run_snippets(readme_blocks((ROOT / "README.md").read_text()), "README.md")
    assert len(ns["X"]) == len(ns["y"]) == 27  # the folder's 29 files, 2 bad skipped
    assert ns["X"].shape[1:] == (64, 64, 3)
    assert ns["clf"].image_shape_ == (64, 64, 3)


def test_getting_started_snippets_run(user_folder):
    path = ROOT / "docs" / "getting_started.rst"
    ns = run_snippets(rst_blocks(path.read_text()), "getting_started.rst")
    assert "valid_acc" in ns["held_out"].history_[-1]
    assert ns["clf"].predict(ns["paths"][:3]).shape == (3,)
