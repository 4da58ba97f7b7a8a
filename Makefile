# The two commands of the README. Both set up everything they need on a fresh machine.
#   make demo   run the main job on the bundled real sample (SQLite by default), then serve
#               the dashboard on http://127.0.0.1:8000/
#   make test   ruff + the whole pytest suite, on SQLite and a real PostgreSQL+PostGIS server,
#               browser tests in Debian's headless Chromium

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean web system-web system-browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the dashboard's pinned front-end libraries (web/package-lock.json) -> static/vendor/
web: system-web
	bash scripts/build-web.sh

system-web:
	bash scripts/ensure-debian-packages.sh npm:npm

# the browser tests drive Debian's Chromium through Playwright (no browser download)
system-browser:
	bash scripts/ensure-debian-packages.sh /usr/bin/chromium:chromium

demo: $(BIN)/python web
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/urbansec demo

test: $(BIN)/python web system-browser
	$(BIN)/python -m pip install --quiet -e ".[test]"
	bash scripts/run-tests.sh

lint: $(BIN)/python
	$(BIN)/ruff check .

bench: $(BIN)/python web
	$(BIN)/python -m pip install --quiet -e ".[test]"
	bash scripts/run-tests.sh --bench

clean:
	rm -rf $(VENV) urbansec-demo .pytest_cache .ruff_cache web/node_modules \
	       src/urbansec/web/static/vendor
