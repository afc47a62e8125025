PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the runtime only; `make test`/`lint` add the dev tools to the same
# venv. Two stamps, so that neither reinstalls what the other already did.
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: run check-ports rotate-dev-key test lint bench demo format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(RUNTIME) $(STAMP)

# Before anything is installed or created: both ports free, or one line saying what to set.
check-ports:
	@PYTHONPATH=. $(PYTHON) -m reconciler.entrypoints.devrun --check-ports

run: check-ports $(RUNTIME)
	$(BIN)/python -m reconciler.entrypoints.devrun

rotate-dev-key: $(RUNTIME)
	$(BIN)/python -m reconciler.entrypoints.devrun --rotate-key

test: $(STAMP) browser
	$(BIN)/pytest -q -p no:cacheprovider

# Debian's chromium for the browser tests (tests/e2e/test_admin_ui.py): installed when root
# (as CI runs); otherwise those tests skip and say how to install it.
.PHONY: browser
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "chromium missing: browser tests will skip (as root: apt-get install -y chromium)"; fi

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench migrations
	$(BIN)/ruff format --check reconciler tests bench migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix reconciler tests bench migrations
	$(BIN)/ruff format reconciler tests bench migrations

bench: $(STAMP)
	$(BIN)/python -m bench --quick

demo: $(STAMP)
	$(BIN)/reconciler demo

clean:
	rm -rf $(VENV) reconciler.db reconciler.db-wal reconciler.db-shm reconciler.db.make-run.lock .reconciler-dev.json
