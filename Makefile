# Every target sets up what it needs; a second run skips installs already done.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: test demo lint typecheck bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ('$(PYTHON)' not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch first and exactly pinned: a looser requirement pulls gigabytes of CUDA packages.
$(VENV)/.torch-installed: | $(BIN)/python
	$(PIP) install --quiet torch==2.13.0 numpy
	touch $@

$(VENV)/.project-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

test: $(VENV)/.project-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain grid_common grid_cli
	$(BIN)/pytest

demo: $(VENV)/.project-installed
	$(BIN)/grid demo

typecheck: $(VENV)/.project-installed
	$(BIN)/mypy domain grid_common grid_cli

bench: $(VENV)/.project-installed
	$(BIN)/python bench/domain_api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
