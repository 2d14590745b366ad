# GSA-Nets book + gsa_tutorial: the two commands are `make book` and `make test`
# (plus `make lint`, which `make test` runs first, and `make check-book`, the built book in a browser).
#
# Each target creates .venv (python3 -m venv) if it is missing and installs what it needs.
# The install is recorded in a stamp file inside .venv that depends on pyproject.toml, so a
# second run skips pip entirely until pyproject.toml changes.
#
# torch is pinned here and ONLY here (pyproject keeps `torch>=2.3` so Colab keeps its own
# CUDA build). TORCH may list several requirements: CI's lowest-torch job runs
#     make test TORCH="torch==2.3.1 numpy<2" LINT=
# On a machine without a GPU, export
#     PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# before `make` to get the small CPU wheel instead of the CUDA one (the CI workflows do).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
# Each requirement of TORCH quoted for the shell (`numpy<2` is not a redirection).
TORCH_REQS = $(foreach r,$(TORCH),'$(r)')
# What `make test` runs before the tests; `make test LINT=` skips it (the lowest-torch CI job:
# mypy reads torch's own type hints, and the pinned torch is the one the package is checked with).
LINT ?= lint

# Chapter notebooks: top level of book/ only (never book/_build or checkpoint folders).
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
# The student edition (`make student`, committed): the same notebooks without their solutions.
STUDENT_NOTEBOOKS := $(patsubst book/%,student/%,$(NOTEBOOKS))

# Quick mode (small offline data, few epochs) for the notebooks, the tests and the online book.
export GSA_QUICK := 1
# The kernels that execute notebooks use this venv's `python3` kernelspec, even when the user
# has another `python3` kernelspec in ~/.local/share/jupyter.
export JUPYTER_PATH := $(abspath $(VENV))/share/jupyter

.PHONY: help venv install-book install-test install-browser book test lint student check-book results gpu-run clean distclean

help:
	@echo "make book       build the Jupyter Book into book/_build/html (warnings are errors)"
	@echo "make test       make lint, then unit tests (tests/) + every chapter notebook (nbval-lax), quick mode:"
	@echo "                the full edition (book/, every checker must pass) and the student edition (student/)"
	@echo "make student    write the student edition student/NN_*.ipynb (solutions removed) from book/"
	@echo "make lint       ruff (package, tests, benchmarks, tools) and mypy (package); seconds"
	@echo "make check-book make book, then open every page in headless Chromium (screenshots in book/_build/screenshots)"
	@echo "make results    copy the benchmark JSON the book draws from into the package"
	@echo "make gpu-run    the prepared GPU run (benchmarks/gpu_run.py) with the machine's own python3 and torch"
	@echo "make clean      remove book/_build and caches (keeps .venv)"
	@echo "make distclean  clean + remove .venv"

# ---------------------------------------------------------------- environment

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

$(VENV)/.book-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(TORCH_REQS) -e ".[book]"
	touch $@

$(VENV)/.test-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(TORCH_REQS) -e ".[test]"
	touch $@

# selenium from pyproject's [browser] extra; Chromium and its chromedriver from the system:
# Debian's packages where no chromedriver is found (GitHub's runners bring one, in
# $$CHROMEWEBDRIVER, with Google Chrome).
$(VENV)/.browser-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(TORCH_REQS) -e ".[browser]"
	@if ! command -v chromedriver >/dev/null && [ ! -x "$${CHROMEWEBDRIVER:-/nonexistent}/chromedriver" ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing chromium and chromium-driver with apt-get"; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	touch $@

install-book: $(VENV)/.book-stamp
install-test: $(VENV)/.test-stamp
install-browser: $(VENV)/.browser-stamp

# ---------------------------------------------------------------- the two commands

# MPLBACKEND is removed for the book on purpose: with MPLBACKEND=Agg the Jupyter kernel does
# not use the inline backend and every figure would be missing from the HTML.
# --all re-reads every page (Sphinx otherwise skips unchanged pages and forgets their
# warnings, so a second run would pass); notebook outputs still come from the execution cache.
# GSA_EXERCISES_STRICT=1: a hidden solution that fails its checker fails the build.
book: export GSA_EXERCISES_STRICT := 1
book: $(VENV)/.book-stamp
	env -u MPLBACKEND $(BIN)/jupyter-book build book --all -W -n --keep-going

lint: $(VENV)/.test-stamp
	$(BIN)/ruff check .
	$(BIN)/mypy

test: export MPLBACKEND := Agg
test: $(VENV)/.test-stamp $(LINT)
	$(BIN)/python -m pytest tests
ifeq ($(NOTEBOOKS),)
	@echo "No chapter notebooks in book/ yet: nothing for nbval to run."
else
	GSA_EXERCISES_STRICT=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 $(NOTEBOOKS)
	env -u GSA_EXERCISES_STRICT $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 $(STUDENT_NOTEBOOKS)
endif

# The student edition from the chapter notebooks (tools/make_student.py); commit student/ with
# the chapters: tests/test_student_edition.py checks that it is up to date.
student: $(VENV)/.test-stamp
	$(BIN)/python tools/make_student.py

# The built book in a real browser, offline: no JavaScript errors, every figure loaded, no
# tracebacks, warnings or machine paths in the outputs, math typeset, internal links resolve.
check-book: book $(VENV)/.browser-stamp
	$(BIN)/python tools/check_book.py --html book/_build/html --screenshots book/_build/screenshots

# The measured results the book draws from, copied into the package (gsa_tutorial/stored.py).
STORED := official_fidelity encodings cpu-variants cpu
results:
	mkdir -p gsa_tutorial/results
	for name in $(STORED); do cp benchmarks/results/$$name.json gsa_tutorial/results/; done
# ---------------------------------------------------------------- GPU run

# The machine's own python3 and CUDA torch, the package used in place (PYTHONPATH), nothing
# installed: see benchmarks/gpu_run.py for the device call. Results go to $OUT (else gpu-run-out/).
GPU_PYTHON ?= python3
GPU_RUN_ARGS ?=
gpu-run:
	PYTHONPATH=$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m benchmarks.gpu_run $(GPU_RUN_ARGS)

# ---------------------------------------------------------------- cleaning

clean:
	rm -rf book/_build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
		-type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 \
		| xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) gsa_tutorial.egg-info build dist
