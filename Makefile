# timeback-jupyter: `make lab` runs the product on its embedded default, `make test` runs the tests.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
# Everything the product writes during `make lab` stays in the checkout, never in ~/.
LAB_HOME := $(CURDIR)/.lab
LINT_DIRS := timeback_jupyter tests $(wildcard benchmarks)

.PHONY: venv lab test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || { PY=$$(scripts/find-python) && echo "creating $(VENV) with $$PY" && $$PY -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lab: venv
	mkdir -p $(LAB_HOME)/data $(LAB_HOME)/runtime
	JUPYTER_DATA_DIR=$(LAB_HOME)/data JUPYTER_RUNTIME_DIR=$(LAB_HOME)/runtime \
	  $(BIN)/jupyter lab --allow-root --ServerApp.root_dir=notebooks --ip=127.0.0.1 --no-browser

lint: venv
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

test: venv lint
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(LAB_HOME) build dist *.egg-info .pytest_cache .ruff_cache
