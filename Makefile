# hesgate: one command to test, one to run the demo. Needs only python3, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[validator,depot,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# The whole system on this machine with a live table, then a summary (DURATION=seconds).
demo: $(STAMP)
	$(BIN)/python -m deploy.demo $(if $(DURATION),--duration $(DURATION))

# The benchmark suite (not part of `make test`): about 10 minutes, a table on stdout.
# ARGS="--quick" for a smoke run; ARGS="--only ingest" and the rest: python -m bench --help.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
