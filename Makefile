# The two commands of the README. Both set up everything they need on a fresh machine.
#   make demo   run the main job on the bundled real sample (SQLite by default)
#   make test   ruff + the whole pytest suite, on SQLite and a real PostgreSQL+PostGIS server

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/urbansec demo

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	bash scripts/run-tests.sh

lint: $(BIN)/python
	$(BIN)/ruff check .

bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	bash scripts/run-tests.sh --bench

clean:
	rm -rf $(VENV) urbansec-demo .pytest_cache .ruff_cache
