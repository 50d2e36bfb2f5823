# Two commands on a fresh machine with Python 3.11 and make: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Quix Streams, the bench's main peer, pins other versions of uee's dependencies
# (confluent-kafka, pydantic): it gets a virtual environment of its own.
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(QUIX_STAMP): bench/requirements-quix.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/python -m pip install --quiet -r bench/requirements-quix.txt
	touch $(QUIX_STAMP)

demo: $(STAMP)
	$(BIN)/uee run examples/quickstart.yaml --until-idle 2

# The test suite runs a small bench that checks every contender's output, Quix Streams too.
test: $(STAMP) $(QUIX_STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check dsl streams connectors bench tests
	$(BIN)/mypy

# Options go in ARGS, e.g. make bench ARGS="--records 1000000 --bootstrap HOST:PORT"
bench: $(STAMP) $(QUIX_STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
