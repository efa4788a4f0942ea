# make demo: set up and run a 10-node loopback testnet (private transactions through onion
# circuits, with the fast path measured in the same run) and print its report.
# make test: set up and run lint, the architecture contract and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/murmur testnet --nodes 10 --messages 100 --tx 100 --path private --report reports/testnet
	@echo "report: reports/testnet/report.md"

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/murmur bench

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
