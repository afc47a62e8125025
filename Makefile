PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the runtime only; `make test`/`lint` add the dev tools to the same
# venv. Two stamps, so that neither reinstalls what the other already did.
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: run check-ports rotate-dev-key test lint bench demo format clean lock image-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Dependencies come from the locks (exact versions, every hash checked), the project itself
# as an editable install on top. `make lock` re-resolves them after pyproject.toml changes.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
BUILD_LOCK := requirements-build.lock
UV_COMPILE = $(BIN)/uv pip compile --universal --generate-hashes --python-version 3.11 --no-header --quiet

$(RUNTIME): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(RUNTIME) $(STAMP)

lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml -o $(LOCK)
	$(UV_COMPILE) pyproject.toml --extra dev -o $(DEV_LOCK)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(UV_COMPILE) - -o $(BUILD_LOCK)

# Build the image and smoke-test it (read-only root, *_FILE secrets, exec, drain) with
# podman or docker when one is present; says so when none is. Not part of `make test`.
image-check:
	$(PYTHON) docker/image_check.py

# Before anything is installed or created: both ports free, or one line saying what to set.
check-ports:
	@PYTHONPATH=. $(PYTHON) -m reconciler.entrypoints.devrun --check-ports

run: check-ports $(RUNTIME)
	$(BIN)/python -m reconciler.entrypoints.devrun

rotate-dev-key: $(RUNTIME)
	$(BIN)/python -m reconciler.entrypoints.devrun --rotate-key

test: $(STAMP) browser
	$(BIN)/pytest -q -p no:cacheprovider

# Refresh the committed screenshots in docs/img (a plain `make test` writes them to build/).
.PHONY: screenshots
screenshots: $(STAMP) browser
	SCREENSHOTS_DIR=docs/img $(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_admin_ui.py tests/e2e/test_reliability_panel.py

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
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff check --fix reconciler tests bench migrations
	$(BIN)/ruff format reconciler tests bench migrations

bench: $(STAMP)
	$(BIN)/python -m bench --quick

demo: $(STAMP)
	$(BIN)/reconciler demo

clean:
	rm -rf $(VENV) reconciler.db reconciler.db-wal reconciler.db-shm reconciler.db.make-run.lock .reconciler-dev.json .reconciler-dev-secrets-key
