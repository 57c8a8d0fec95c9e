# Every target sets itself up: `make run` and `make test` work on a fresh clone with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck pytest bench bench-relay bench-recorder bench-evidence bench-cluster clean

venv: $(STAMP)

# Re-installs only when pyproject.toml changes, so `make venv` is idempotent and cheap.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	$(BIN)/commandcenter serve

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

test: lint typecheck pytest

# Benchmarks print JSON lines, the last a summary with pass/fail per goal. Run them on a
# quiet machine: each reports whether other processes took CPU while it ran.
bench: venv
	$(BIN)/python -m bench.signalling

bench-relay: venv
	$(BIN)/python -m bench.relay

bench-recorder: venv
	$(BIN)/python -m bench.recorder

bench-evidence: venv
	$(BIN)/python -m bench.evidence

# A redis-server of its own, so that redis_ops_per_call counts the nodes' commands alone.
bench-cluster: venv
	$(BIN)/python -m bench.cluster --private-redis

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
