# maild — the two commands of the quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/maild.toml

.PHONY: run test lint typecheck unit bench install services clean schema

$(BIN)/maild: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/maild

$(CONFIG):
	cp config/maild.example.toml $(CONFIG)

## run: install, initialise ./var from config/maild.toml, run the daemon in the foreground
run: install $(CONFIG)
	$(BIN)/maild --config $(CONFIG) init
	exec $(BIN)/maild --config $(CONFIG) run

## test: install what the tests need, then lint, type-check and run the whole suite
test: install services lint typecheck unit

services:
	@scripts/install-test-services

lint: install
	$(BIN)/ruff check maild tests bench

typecheck: install
	$(BIN)/mypy

## unit: the suite on SQLite, then every test of a Helpdesk again on PostgreSQL
unit: install
	$(BIN)/pytest
	MAILD_TEST_DATABASE=postgresql $(BIN)/pytest

## bench: the benchmarks (numbers, not a pass/fail); see bench/README.md
bench: install
	$(BIN)/python bench/ingest_bench.py
	$(BIN)/python bench/e2e_bench.py
	$(BIN)/python bench/sla_bench.py
	$(BIN)/python bench/web_bench.py

## schema: rewrite maild/schema.py (the tables' plain column shapes) after a change to maild/models.py
schema: install
	$(BIN)/python -m maild.schemagen

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
