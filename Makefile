# The two set-up commands of the README are `make run` and `make test`; both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned to the CPU wheel that lies on this disk; GPU machines install their CUDA build first.
TORCH ?= torch==2.13.0

.PHONY: run demo test test-fast lint typecheck bench browser nginx systemd clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: service + one local worker + MLflow UI on the embedded default (SQLite under var/).
run: $(STAMP)
	$(BIN)/registry db upgrade
	$(BIN)/python -m registry.cli.devstack

demo: $(STAMP)
	$(BIN)/registry demo

## Browser tests need Debian's chromium (Playwright drives it; it cannot download its own).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

## The deployment tests put Debian's nginx (deploy/nginx) in front of registry serve.
nginx:
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null)

## The deployment tests check the units of deploy/systemd with Debian's systemd-analyze.
systemd:
	@command -v systemd-analyze >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null)

## The whole test suite, on SQLite and PostgreSQL.
test: $(STAMP) browser nginx systemd lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## ruff (lint and format), mypy and the import contracts (the architecture's arrows).
lint: $(STAMP)
	$(BIN)/ruff check registry worker tests benchmarks
	$(BIN)/ruff format --check registry worker tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## Every benchmark; ARGS go to run_all (`make bench ARGS=--quick`, `ARGS=bench_pages.py`).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all $(ARGS)

clean:
	rm -rf var test-output .pytest_cache
