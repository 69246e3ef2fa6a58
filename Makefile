# PriorDepth: `make test` and (once inference lands) `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=
# The fast subset runs everywhere (CI included); `make test-all` adds the checks marked slow.
PYTEST_MARKERS ?= not slow

.PHONY: install test test-all lint bench clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall when the declared dependencies change.
$(VENV)/.installed: setup.py pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev,export]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -m "$(PYTEST_MARKERS)" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/solvers.py

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
