PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-browser test-compose lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/taskmesh demo

# Tests in parallel (pytest-xdist): most of them wait on real processes and sockets,
# so 4 at once keep 2 cores busy; `make test TEST_JOBS=1` or `.venv/bin/pytest` runs serially.
TEST_JOBS ?= 4
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS)

# The manager's status page rendered in headless Chromium (tests/browser; `make test`
# deselects them: pyproject's addopts say -m 'not browser'). Fails, saying so, where
# Chromium is not found: Debian `apt-get install chromium`, or CHROMIUM=/path/to/it.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
test-browser: $(STAMP)
	@test -x "$(CHROMIUM)" || { echo "make test-browser: Chromium not found (Debian: apt-get install chromium; or make test-browser CHROMIUM=/path/to/chromium)" >&2; exit 1; }
	CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest -m browser -s tests/browser

# The docker-compose cluster, built and tested for real (root, Debian; see .ci/compose/test.sh).
test-compose: $(STAMP)
	bash .ci/compose/test.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
