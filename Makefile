# Every target creates .venv on first use; nothing is installed outside it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-tools lint format bench bench-smoke bench-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed

# The OpenAPI client generators tests/test_generated_clients.py runs, axe-core for
# tests/test_page_a11y.py and tus-js-client for tests/test_tus_js.py, @tus/server for tests/test_tus_interop.py, pinned in tests/clients/
# and kept in .cache/. openapi-python-client has a venv of its own: it pins httpx below the
# version the project uses. Without npm the npm tools are left out and the tests that need
# them skip.
NODE_TOOLS := .cache/node/.installed
PY_GENERATOR := .cache/openapi-python-client

$(NODE_TOOLS): tests/clients/package.json tests/clients/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  echo "test-tools: npm not found, so the TypeScript client, axe-core and tus-js-client" \
	    "tests will skip; install Node.js 20+ with npm to run them" >&2; \
	else \
	  set -e; mkdir -p $(@D); \
	  cp tests/clients/package.json tests/clients/package-lock.json $(@D)/; \
	  echo "npm ci --prefix $(@D)"; \
	  npm ci --prefix $(@D) --no-audit --no-fund --loglevel=error; \
	  touch $@; \
	fi

$(PY_GENERATOR)/.installed: tests/clients/requirements.txt
	$(PYTHON) -m venv $(PY_GENERATOR)
	$(PY_GENERATOR)/bin/pip install -q -r tests/clients/requirements.txt
	touch $@

test-tools: $(NODE_TOOLS) $(PY_GENERATOR)/.installed

serve: $(VENV)/.installed
	$(BIN)/uploads-api serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check uploads_api tests bench
	$(BIN)/ruff format --check uploads_api tests bench
	$(BIN)/mypy uploads_api tests bench

format: $(VENV)/.installed-test
	$(BIN)/ruff format uploads_api tests bench
	$(BIN)/ruff check --fix uploads_api tests bench

# nginx, vipsthumbnail, ffmpeg and pdftoppm are baselines (bench.run, bench.media);
# installed with apt-get when missing (as root).
bench-deps:
	@missing=""; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || missing="$$missing nginx"; \
	command -v vipsthumbnail >/dev/null || missing="$$missing libvips-tools"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "bench: missing$$missing; install them with: sudo apt-get install$$missing" >&2; \
	    exit 1; \
	  fi; \
	fi

# Every system on loopback, alternated run by run; writes bench/results/latest.md. The node
# tools are @tus/server's (S9's baseline); without npm that baseline reads n/a.
bench: $(VENV)/.installed-bench bench-deps $(NODE_TOOLS)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Seconds, tiny inputs: checks the suite still runs (CI runs it via tests/test_bench_smoke.py).
bench-smoke: $(VENV)/.installed-bench bench-deps $(NODE_TOOLS)
	$(BIN)/python -m bench.run --smoke --out bench/results/raw/smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache test-artifacts
