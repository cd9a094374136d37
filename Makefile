# Two commands: `make demo` and `make test`. Each creates .venv and installs
# what it needs on first use, so a fresh clone needs only Python and pip.
# `make test-lowest` (run by CI after `make test`) runs the core tests at the
# lowest versions pyproject.toml admits.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

LOWEST := .venv-lowest
LOWEST_TESTS := tests/test_common.py tests/test_classifier.py tests/test_persistence.py

.PHONY: demo test test-lowest bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-progress
	$(BIN)/skimgcls demo --out model-digits

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# A second venv holds numpy, scikit-learn, skorch, Pillow and safetensors at the
# lowest versions pyproject.toml admits (.ci/lowest_requirements.py reads them)
# with what they need; a .pth file written after pip has finished lets it
# import the rest (torch, torchvision, pytest...) from .venv, behind its own
# packages: no second copy of torch, and pip never sees .venv. Left out: the
# tests marked slow (training mechanics that `make test` covers; the fast
# entries run the same checks) and the ONNX tests (onnx and onnxruntime in
# .venv are built for numpy 2).
$(LOWEST)/.installed: pyproject.toml .ci/lowest_requirements.py $(VENV)/.installed-test
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install $$($(BIN)/python .ci/lowest_requirements.py)
	$(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))' \
		> "$$($(LOWEST)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/zz-skimgcls-main-venv.pth"
	touch $@

test-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/python -c 'import numpy, sklearn, skorch, PIL, safetensors, torch; \
		print("lowest versions:", "numpy", numpy.__version__, "scikit-learn", \
		sklearn.__version__, "skorch", skorch.__version__, "Pillow", PIL.__version__, \
		"safetensors", safetensors.__version__, "torch", torch.__version__)'
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider -m "not slow" -k "not onnx" $(LOWEST_TESTS)

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/accuracy.py

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(LOWEST) docs/_build docs/auto_examples model-digits
