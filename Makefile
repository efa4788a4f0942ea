# make demo: set up and run a 10-node loopback testnet (private transactions through onion
# circuits, with the fast path measured in the same run) and print its report.
# make test: set up and run lint, the architecture contract, the type check and the whole test
# suite, then build the compiled copy and run the suite again on it.
# make compiled: the same sources compiled by mypyc into build/mypyc (run anything on it with
# PYTHONPATH=build/mypyc); about 1.5 x faster in the simulator, the same results bit for bit.
# make fuzz: every atheris harness in fuzz/ for FUZZ_SECONDS each (default 60), one after the
# other, growing a working corpus in build/fuzz/ from the checked-in one; a crash stops it and
# leaves the input as build/fuzz/<harness>-crash-*.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPILED := build/mypyc
# What a run spends its time in: the production node's layers, the symmetric crypto wrappers,
# and the simulator's engine, sockets and spy taps. Interpreted still: murmur.crypto's identity
# and kem (the simulator's crypto stand-in patches them), the diffusion and Dandelion++ baselines
# (mypyc cannot build their generic dataclasses), the rest of the simulator, the runtime and the
# interfaces.
MYPYC_SOURCES = $$(find murmur/base murmur/wire murmur/link murmur/overlay murmur/node -name '*.py' \
	! -name diffusion.py ! -name dandelion.py) \
	murmur/crypto/aead.py murmur/crypto/hashing.py murmur/crypto/kdf.py murmur/crypto/stream.py \
	murmur/sim/engine.py murmur/sim/node_host.py murmur/sim/spy.py murmur/sim/adversary.py

FUZZ_SECONDS ?= 60
FUZZ_HARNESSES := fuzz_wire fuzz_node fuzz_relay fuzz_control_api

.PHONY: setup demo test lint bench compiled fuzz clean

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
	$(BIN)/ruff check src tests benchmarks scripts fuzz
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint compiled
	$(BIN)/python -m pytest
	PYTHONPATH=$(COMPILED) $(BIN)/python -m pytest -p no:cacheprovider -m "not interpreted_only"

compiled: $(COMPILED)/.built

$(COMPILED)/.built: $(STAMP) $(shell find src/murmur -name '*.py')
	rm -rf $(COMPILED) && mkdir -p $(COMPILED) && cp -r src/murmur $(COMPILED)/
	cd $(COMPILED) && $(abspath $(BIN))/mypyc $(MYPYC_SOURCES) > mypyc.log
	PYTHONPATH=$(COMPILED) $(BIN)/python -c \
	  "import murmur.node.node as m; assert m.__file__.endswith('.so'), m.__file__"
	touch $@

fuzz: setup
	for harness in $(FUZZ_HARNESSES); do \
	  mkdir -p build/fuzz/$$harness && \
	  $(BIN)/python -m fuzz $$harness -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    -timeout=30 -artifact_prefix=build/fuzz/$$harness- build/fuzz/$$harness \
	    fuzz/corpus/$$harness || exit 1; \
	done

bench: setup
	$(BIN)/murmur bench

clean:
	rm -rf $(VENV) build reports .pytest_cache .ruff_cache .mypy_cache
