"""The documentation builds with warnings as errors, examples included."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import skimgcls

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _missing_docs_tools():
    for module in ("sphinx", "sphinx_gallery", "numpydoc", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            return module
    return None


@pytest.mark.skipif(not (ROOT / "docs" / "conf.py").exists(),
                    reason="no docs/ folder next to the tests")
def test_docs_build_without_warnings(tmp_path):
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(f"{missing} is not installed (pip install 'skimgcls[docs]')")
    # Build a copy, so that generated pages never land in the checkout.
    for name in ("docs", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("_build", "auto_examples",
                                                      "generated", "gen_modules"))
    if (ROOT / "CHANGELOG.md").exists():
        shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    package_root = str(Path(skimgcls.__file__).resolve().parents[1])
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(
                   [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(tmp_path / "docs"),
         str(tmp_path / "html")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-5000:] or result.stdout[-5000:]
    html = tmp_path / "html"
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in skimgcls.__all__:
        if name != "__version__":
            assert (html / "generated" / f"skimgcls.{name}.html").exists(), name
            assert f"skimgcls.{name}" in api
    # every example ran and produced its page
    for example in (ROOT / "examples").glob("plot_*.py"):
        assert (html / "auto_examples" / f"{example.stem}.html").exists()
    assert (html / "changelog.html").exists()
    assert (html / "user_guide" / "scaling.html").exists()
