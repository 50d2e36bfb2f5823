# Two commands on a fresh machine with Python 3.11 and make: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Quix Streams, the bench's main peer, pins other versions of uee's dependencies
# (confluent-kafka, pydantic): it gets a virtual environment of its own.
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed

.PHONY: demo test faults bench bench-quota kafka lint clean

# The folders too: the strict editable install links files, so a module added or removed is
# seen after the next install (a folder's time changes when its entries do).
$(STAMP): pyproject.toml core dsl streams connectors schemas testing
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Strict editable mode: a link tree that maps the folders to `uee.*` the way the wheel
	# does (mypy and every import see the same package).
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=strict
	touch $(STAMP)

$(QUIX_STAMP): bench/requirements-quix.txt
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/python -m pip install --quiet -r bench/requirements-quix.txt
	touch $(QUIX_STAMP)

demo: $(STAMP)
	$(BIN)/uee run examples/quickstart.yaml --until-idle 2

# The whole suite on the embedded broker, then every test that uses the session's broker on
# Apache Kafka 3.9 from Maven Central (when Java and Maven are here); the last line names both
# tiers and their counts. The suite runs a small bench: every contender's output, Quix too.
test: $(STAMP) $(QUIX_STAMP) lint
	$(BIN)/python -m tests.tiers

# Faults injected into real processes (tests/faults): every scenario counts what was lost (0)
# and duplicated; the report is printed and written to build/faults-report-<tier>.md.
faults: $(STAMP)
	$(BIN)/python -m tests.tiers --faults $(ARGS)

# Apache Kafka 3.9 (KRaft, one node; PLAINTEXT, SSL and SASL_SSL listeners) until Ctrl-C.
kafka: $(STAMP)
	$(BIN)/python -m tests.apache_kafka

lint: $(STAMP)
	$(BIN)/ruff check core dsl streams connectors testing bench tests
	$(BIN)/mypy

# Options go in ARGS, e.g. make bench ARGS="--records 1000000 --bootstrap HOST:PORT"
bench: $(STAMP) $(QUIX_STAMP)
	$(BIN)/python -m bench $(ARGS)

# fixed, step and adaptive permits, and the bound no policy can pass, on two scenarios (a
# high-priority pipeline that needs little CPU, and one that needs 0.6 of a core;
# bench/quota.py; about 25 minutes), e.g.
# make bench-quota ARGS="--phases 20 30 10 --rate 2000 --high-load 0.6"
bench-quota: $(STAMP)
	$(BIN)/python -m bench.quota $(ARGS)

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build
