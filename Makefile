# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test install install-dev assets lint format bench bench-ingest bench-detect bench-pages soak browser-deps clean

# `make run` installs what the platform needs; `make test` adds the test and lint tools.
$(BIN)/.installed: pyproject.toml setup.py apps/ingest/_otlpwire.pyx apps/ingest/_nativeblock.pyx
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

frontend/static/vendor/.built: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p frontend/static/vendor
	cp frontend/node_modules/htmx.org/dist/htmx.min.js frontend/static/vendor/htmx.min.js
	@touch $@

install: $(BIN)/.installed assets
install-dev: $(BIN)/.installed-dev assets
assets: frontend/static/vendor/.built

## make run: migrate (Django + ClickHouse) and serve the embedded platform on http://127.0.0.1:$(PORT)
run: install
	$(BIN)/python manage.py serve --port $(PORT)

## make test: the whole suite (PostgreSQL, Redis, chDB, a real Celery worker, headless chromium)
test: install-dev browser-deps
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest

browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test (apt-get)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get install -y chromium; fi; }

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks (not part of `make test`): results go to docs/performance.md
bench: bench-ingest bench-detect bench-pages
bench-ingest: install-dev
	$(BIN)/python tests/bench/bench_ingest.py
bench-detect: install-dev
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python tests/bench/bench_detect.py
bench-pages: install-dev
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python tests/bench/bench_pages.py
SOAK_SECONDS ?= 300
soak: install-dev
	$(BIN)/python tests/bench/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) frontend/node_modules frontend/static/vendor
