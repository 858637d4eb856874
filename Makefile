# Two commands for a newcomer: `make book` and `make test`. Both create .venv when it is missing and
# (re)install the project into it only when pyproject.toml changed, so they are safe to rerun.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch keeps CI and laptops light; on a GPU machine override it, e.g.
# `make test TORCH_SPEC=torch` (pip then picks the CUDA build that matches the platform).
TORCH_SPEC ?= torch==2.13.0
# Scale of the notebooks: ci (seconds), book (the rendered book, minutes), full (the papers' settings, GPU).
EBMLIB_SCALE ?= book
export EBMLIB_SCALE

STAMP := $(VENV)/.installed

.PHONY: help install book book-fresh profile test test-unit test-notebooks test-full-smoke sync lint clean

help:
	@echo "make book        execute the notebooks (cached) and build the HTML into _build/html"
	@echo "make book-fresh  the same, re-executing every notebook (after changing ebmlib)"
	@echo "make profile     re-execute every chapter and rewrite the table of the slowest cells in book/setup.md"
	@echo "make test        unit tests + notebooks at ci scale + pairing check + book build with -W"
	@echo "make test-full-smoke  every chapter with its full shapes but a handful of iterations (CPU)"
	@echo "make lint        ruff on ebmlib and tests"
	@echo "make sync        re-pair notebooks/*.md with notebooks/*.ipynb (jupytext --sync)"
	@echo "make clean       remove builds, caches and executed notebooks"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $@

install: $(STAMP)

# Chapters side by side: tests/execute_chapters.py executes every chapter missing from Jupyter Book's execution
# cache, BOOK_JOBS at a time (default: one per core), each kernel on cores / BOOK_JOBS threads, and stores it in
# that cache with its cell times (_build/profile); jupyter-book then finds every chapter cached and only renders.
# BOOK_JOBS=1 executes one chapter at a time on every core. jupyter-cache keys on code cells only: a change of
# scale must not reuse another scale's outputs. TQDM_DISABLE=1 keeps progress bars out of the pages.
BOOK_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
export BOOK_JOBS
book: $(STAMP)
	@start=$$(date +%s); \
	mkdir -p _build; \
	if [ "$$(cat _build/.scale 2>/dev/null)" != "$(EBMLIB_SCALE)" ]; then rm -rf _build/.jupyter_cache; fi; \
	echo "$(EBMLIB_SCALE)" > _build/.scale; \
	TQDM_DISABLE=1 $(BIN)/python tests/execute_chapters.py --jobs $(BOOK_JOBS); \
	TQDM_DISABLE=1 $(BIN)/jupyter-book build . --builder html -n -W --keep-going; \
	echo "Book built in $$(( $$(date +%s) - start )) s (EBMLIB_SCALE=$(EBMLIB_SCALE)): open _build/html/index.html"

# Re-execute every chapter (side by side, as make book does) and rewrite the table of the slowest cells in
# book/setup.md from the cell times just recorded.
profile: $(STAMP)
	@mkdir -p _build; \
	if [ "$$(cat _build/.scale 2>/dev/null)" != "$(EBMLIB_SCALE)" ]; then rm -rf _build/.jupyter_cache; fi; \
	echo "$(EBMLIB_SCALE)" > _build/.scale; \
	TQDM_DISABLE=1 $(BIN)/python tests/execute_chapters.py --jobs $(BOOK_JOBS) --profile --table book/setup.md

book-fresh: $(STAMP)
	rm -rf _build/.jupyter_cache
	$(MAKE) book

# One pytest run: unit tests; every chapter executed by papermill at `ci` scale (the primer as a Jupyter user
# runs it, SCALE read from the environment), the book built from the executed copies with -W and every page
# read in headless Chromium (tests/test_notebooks.py). --durations lists the slowest tests in the log.
test: $(STAMP)
	@start=$$(date +%s); \
	EBMLIB_SCALE=ci $(BIN)/python -m pytest tests --durations=30; \
	echo "make test passed in $$(( $$(date +%s) - start )) s"

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not notebooks"

test-notebooks: $(STAMP)
	EBMLIB_SCALE=ci $(BIN)/python -m pytest tests -m notebooks

# The full-shape smoke run: each chapter at SCALE=full with EBMLIB_SMOKE=1 (full dimensions, networks, batch,
# buffer and sample sizes; iterations and chain lengths capped; fixture files instead of downloads), with its
# time, peak memory and checkpoint sizes in a table and in _build/smoke/report.json. Two chapters at a time, one
# thread each (SMOKE_JOBS=1: one after the other, each on every core).
SMOKE_JOBS ?= 2
test-full-smoke: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/python tests/smoke.py --jobs $(SMOKE_JOBS); \
	echo "make test-full-smoke took $$(( $$(date +%s) - start )) s"

lint: $(STAMP)
	$(BIN)/ruff check ebmlib tests

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.md

clean:
	rm -rf _build .pytest_cache .hypothesis .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
