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
    if (ROOT / "bench" / "results").exists():  # tables the guide includes
        shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
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


CHANGELOG = """\
# Changelog

All notable changes are documented here; the format follows
[Keep a Changelog](https://keepachangelog.com/en/1.1.0/).

## [Unreleased]

### Added
- `CNNClassifier`s take `tta` and routed `module__width`, e.g. iterator_train__ and
  callbacks__ parameters; **bold** *x, 5*3 and a_b_ words.
  - A nested item with a [link](https://example.org/a_b).
- `Resize` (see `skimgcls.Resize`).

### Changed
- Text with | pipes and <angle> brackets.

[Unreleased]: https://example.org/compare
"""


def test_changelog_markdown_becomes_clean_rst():
    docutils = pytest.importorskip("docutils.core")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from _changelog import markdown_to_rst
    finally:
        sys.path.remove(str(ROOT / "docs"))
    rst = markdown_to_rst(CHANGELOG)
    assert "Unreleased\n----------" in rst and "Added\n~~~~~" in rst
    assert "* ``CNNClassifier``\\ s take ``tta``" in rst
    assert "`link <https://example.org/a_b>`__" in rst
    assert "compare" not in rst  # link definitions are dropped
    # halt_level=2: any docutils warning (stray markup, bad nesting) raises
    doctree = docutils.publish_doctree(rst, settings_overrides={
        "halt_level": 2, "report_level": 2, "warning_stream": False})
    text = doctree.astext()
    assert "iterator_train__ and callbacks__ parameters" in text
    assert "*x, 5*3 and a_b_ words" in text
    assert "| pipes and <angle>" in text
