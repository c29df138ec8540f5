# timeback-jupyter: `make lab` runs the product on its embedded default, `make test` runs the tests.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
# Everything the product writes during `make lab` stays in the checkout, never in ~/.
LAB_HOME := $(CURDIR)/.lab
LINT_DIRS := timeback_jupyter tests $(wildcard benchmarks)
# The JupyterLab extension: TypeScript in labextension/, built into timeback_jupyter/labextension
# (what the wheel ships); reinstalling the package puts it where JupyterLab finds it, as pip does.
LABEXT_SRC  := $(wildcard labextension/src/*.ts labextension/style/* labextension/schema/*) install.json \
               $(addprefix labextension/,package.json yarn.lock tsconfig.json .yarnrc.yml)
JLPM        := cd labextension && PATH=$(abspath $(BIN)):$$PATH jlpm

# tests/hub run a real JupyterHub: its proxy, configurable-http-proxy, comes from npm, cached here.
CHP := .cache/chp/node_modules/.bin/configurable-http-proxy

.PHONY: venv lab labext hub-deps test test-ts lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || { PY=$$(scripts/find-python) && echo "creating $(VENV) with $$PY" && $$PY -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

labext: $(VENV)/.labext

$(VENV)/.labext: $(VENV)/.installed $(LABEXT_SRC)
	$(JLPM) install --immutable
	$(JLPM) build:prod
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

hub-deps: $(CHP)

$(CHP):
	npm install --prefix .cache/chp --no-audit --no-fund configurable-http-proxy@5

lab: venv labext
	mkdir -p $(LAB_HOME)/data $(LAB_HOME)/runtime
	JUPYTER_DATA_DIR=$(LAB_HOME)/data JUPYTER_RUNTIME_DIR=$(LAB_HOME)/runtime \
	  $(BIN)/jupyter lab --allow-root --ServerApp.root_dir=notebooks --ip=127.0.0.1 --no-browser

lint: venv
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

# TypeScript: prettier, strict type check of sources and tests, vitest unit tests.
test-ts: labext
	$(JLPM) test

test: venv lint labext test-ts hub-deps
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(LAB_HOME) build dist *.egg-info .pytest_cache .ruff_cache .cache
	rm -rf timeback_jupyter/labextension labextension/lib labextension/tsconfig.tsbuildinfo
