# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-unit test-broker test-faults lint bench clean

install: $(STAMP)

# Both extras: dev (tests, linters) and bench (the load test's plots and progress bar, which
# `make test` exercises too and `make bench` needs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stream demo

test: $(STAMP)
	$(BIN)/ruff check stream tests loadtest
	$(BIN)/mypy stream loadtest
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest -m "not broker"

test-broker: $(STAMP)
	$(BIN)/pytest -m broker

# Fault injection (workers killed mid-stream, duplicates, garbage input); also part of `make test`.
test-faults: $(STAMP)
	$(BIN)/pytest -m faults

# The standard load-test profile (under five minutes): report and plots in loadtest/results/.
bench: $(STAMP)
	$(BIN)/python -m loadtest --out loadtest/results

lint: $(STAMP)
	$(BIN)/ruff check stream tests loadtest
	$(BIN)/ruff format --check stream tests loadtest
	$(BIN)/mypy stream loadtest

clean:
	rm -rf $(VENV) .stream-data .pytest_cache .mypy_cache
