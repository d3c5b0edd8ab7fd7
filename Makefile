# Two commands on a fresh machine: `make up` runs the pipeline, `make test` runs the tests.
# Each creates .venv and installs the project into it when missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test lint typecheck check clean

$(BIN)/swdispatch: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

up: $(BIN)/swdispatch
	$(BIN)/swdispatch up

test: $(BIN)/swdispatch
	$(BIN)/python -m pytest

lint: $(BIN)/swdispatch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/swdispatch
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .swdispatch .pytest_cache .mypy_cache .ruff_cache
