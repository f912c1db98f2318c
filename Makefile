# Every target sets up what it needs; a second run skips installs already done.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: test test-load demo lint typecheck bench contracts clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ('$(PYTHON)' not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch first and exactly pinned: a looser requirement pulls gigabytes of CUDA packages.
$(VENV)/.torch-installed: | $(BIN)/python
	$(PIP) install --quiet torch==2.13.0 numpy
	touch $@

$(VENV)/.project-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install --quiet -e '.[node,test]'
	touch $@

# The registry's tools, pinned exactly in package.json: solc compiles the contract, anvil runs
# the local chain. Installed once; a changed package.json or lock file installs again.
NODE_STAMP := node_modules/.grid-installed
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is required: the registry's compiler and local chain come from the npm registry"; exit 1; }
	npm install --no-audit --no-fund
	touch $@

contracts: $(NODE_STAMP)
	node registry/compile.mjs registry/contracts/GridRegistry.sol GridRegistry registry/GridRegistry.json

# The console tests drive Debian's Chromium through Playwright's Python package; Playwright
# never downloads a browser of its own. Installed once (as root, as on CI).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "The console tests need Chromium at $(CHROMIUM): install Debian's chromium package"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(VENV)/.project-installed $(NODE_STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain grid_common grid_cli registry network worker
	$(BIN)/lint-imports
	$(BIN)/pytest

# The live tests (pytest marker `live`: real node processes, whole grids) while two CPU hogs
# keep the machine busy, as a user's CI or a hospital's server would. The hogs stop with the
# target, whether the tests pass, fail or are interrupted. PYTEST_ARGS adds pytest options.
test-load: $(VENV)/.project-installed $(NODE_STAMP) $(CHROMIUM)
	@yes > /dev/null & hog1=$$!; yes > /dev/null & hog2=$$!; \
	trap 'kill $$hog1 $$hog2 2>/dev/null' EXIT INT TERM; \
	echo "test-load: two CPU hogs running (pids $$hog1 $$hog2)"; \
	$(BIN)/pytest -m live $(PYTEST_ARGS)

# The whole system on this machine: a chain with the registry (anvil from npm), a network,
# three domains with workers, and a federated job with CKKS from search to on-chain proof.
demo: $(VENV)/.project-installed $(NODE_STAMP)
	$(BIN)/grid demo

typecheck: $(VENV)/.project-installed
	$(BIN)/mypy domain grid_common grid_cli registry network worker

bench: $(VENV)/.project-installed
	$(BIN)/python bench/domain_api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
