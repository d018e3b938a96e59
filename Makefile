# Two entry points: `make setup demo` (everything, then the main job) and `make test` (the test suite).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export VECBRIDGE_HOME ?= $(CURDIR)/.cache/vecbridge

.PHONY: setup setup-dev demo test lint bench

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch pinned first: an unpinned resolve would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[dev,scale]'
	touch $@

$(VENV)/.full: pyproject.toml $(VENV)/.dev
	$(PIP) install -q -e '.[dev,models,scale]'
	touch $@

setup-dev: $(VENV)/.dev

setup: $(VENV)/.full
	$(VENV)/bin/vecbridge data fetch

demo: setup
	bash scripts/demo.sh

test: setup-dev
	$(PY) -m pytest -q

lint: setup-dev
	$(VENV)/bin/ruff check .
