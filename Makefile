# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check lint chaos chaos-smoke bench race peers clean-data

$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./client -e '.[test,bench]'
	@touch $(STAMP)

## make run: start a local 3-node cluster (data under ./data, HTTP on 127.0.0.1:8001-8003). Ctrl-C stops it.
run: $(STAMP)
	$(PY) -m raft_queue dev-cluster --data-dir ./data

## make test: lint, type-check, import contracts, then every test (the chaos smoke of every nemesis and a short
## race against NATS included, so the peers' Debian packages are installed first).
test: $(STAMP) lint peers
	$(PY) -m pytest -q -p no:cacheprovider

## make check: the fast loop, with no peers and no cluster: lint, types, import contracts and the unit tests (on two
## workers). Under 2 minutes on a 2-core machine; make test is still the whole suite.
check: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 tests/unit

## make chaos: the long suite (5 nodes, every scenario, 3 seeds, 40 s each, about an hour; results in ./chaos-results).
## Override with e.g. make chaos CHAOS_SEEDS=1,2 CHAOS_DURATION=45. Needs root for the power-loss scenarios.
CHAOS_SEEDS ?= 1,2,3
CHAOS_DURATION ?= 40
CHAOS_OUT ?= chaos-results
chaos: $(STAMP)
	$(PY) -m chaos suite --out $(CHAOS_OUT) --nodes 5 --seeds $(CHAOS_SEEDS) --duration $(CHAOS_DURATION)

## make chaos-smoke: only the chaos smoke of make test: every nemesis for ~8 s with all checkers.
chaos-smoke: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/chaos

lint: $(STAMP)
	$(VENV)/bin/ruff check raft_queue api state_machine chaos bench client tests examples
	$(VENV)/bin/ruff format --check raft_queue api state_machine chaos bench client tests examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples
	$(VENV)/bin/lint-imports

## make bench: raft-queue alone (publish at 1/64/256 in flight, batch, end-to-end, consume + ack, transactions).
bench: $(STAMP)
	$(PY) -m bench solo

## make race: raft-queue, RabbitMQ (quorum queue) and NATS JetStream (R3), each a 3-node cluster on 127.0.0.1,
## through the same harness; prints one table with ratios (about 5 minutes). RACE_ARGS adds options.
race: $(STAMP) peers
	$(PY) -m bench race $(RACE_ARGS)

## the peers of the race, from Debian's packages (their services are kept from starting)
peers:
	bash bench/install.sh

clean-data:
	rm -rf ./data
