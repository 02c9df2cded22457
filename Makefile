# batchq — make run (the whole stack and a demo batch), make test (the whole suite).
.DEFAULT_GOAL := all
sources = batchq workers tests scripts
VENV ?= .venv
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed

.PHONY: install
install: $(STAMP) redis-server

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server; }

.PHONY: format
format: install
	$(VENV)/bin/ruff check --fix $(sources)
	$(VENV)/bin/ruff format $(sources)

.PHONY: lint
lint: install
	$(VENV)/bin/ruff check $(sources)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: test
test: install
	$(VENV)/bin/pytest -m "not bench" -q $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: install
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

.PHONY: run
run: install
	$(PY) scripts/run_stack.py

.PHONY: bench
bench: install
	$(PY) -m bench $(BENCH_ARGS)

.PHONY: api
api: install
	BATCHQ_LOCAL_MODE=$${BATCHQ_LOCAL_MODE:-true} $(VENV)/bin/batchq api

.PHONY: worker
worker: install
	$(VENV)/bin/celery -A workers worker -Q intake,requests,finalize -l INFO

# Loopback only; read-only (Flower's API is off) unless FLOWER_BASIC_AUTH=user:password is set.
FLOWER_ADDRESS ?= 127.0.0.1
.PHONY: flower
flower: install
	$(VENV)/bin/celery -A workers flower --address=$(FLOWER_ADDRESS) --port=5555

.PHONY: sim
sim: install
	$(VENV)/bin/batchq sim --port 9000 --latency-ms 200

.PHONY: all
all: lint test
