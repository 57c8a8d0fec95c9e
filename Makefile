# Every target sets itself up: `make run` and `make test` work on a fresh clone with only python3
# (and node with npm, for the console's build).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The C fan-out (media/fanout.c, docs/media.md "Forwarding"), compiled with cffi into
# media/_fanout*.so (not committed), so it needs a C compiler and Python's headers (Debian's
# python3-dev, for Debian's python3), and setuptools, through which cffi compiles (venvs of
# Python 3.12 and later leave it out).
FANOUT := $(VENV)/.fanout-built
FANOUT_NEEDS := gcc:gcc $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h:python3-dev

.PHONY: venv system console console-typecheck run test test-fast lint typecheck pytest bench bench-relay bench-conference bench-conference-300 bench-recorder bench-evidence bench-names bench-cluster bench-province bench-soak bench-chaos bench-workers clean

venv: $(STAMP) $(FANOUT)

# Re-installs only when pyproject.toml changes, so `make venv` is idempotent and cheap.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(FANOUT): $(STAMP) media/fanout.c media/fanout.h media/fanout_build.py
	@sh tools/need-packages.sh $(FANOUT_NEEDS)
	$(BIN)/python -c 'import setuptools' 2>/dev/null || $(BIN)/python -m pip install --quiet setuptools
	$(BIN)/python -m media.fanout_build
	touch $@

# Debian packages the tests drive for real, as `what-is-run:package`: Chromium (the browser
# tests, through Playwright's Python package, never a downloaded browser), Janus (the relay
# benchmark's comparison, smoke-tested), unshare and ip (the network namespaces those run in).
# The paths are the ones tests/browser.py and bench/janus.py run.
# A CJK font, so that the Chinese pages render (and their screenshots show) real characters.
SYSTEM_NEEDS := /usr/bin/chromium:chromium /usr/bin/janus:janus unshare:util-linux ip:iproute2 \
	/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc:fonts-wqy-zenhei

# Installs only what is missing: when everything is there it costs a check per need.
system:
	@sh tools/need-packages.sh $(SYSTEM_NEEDS)

# Node.js and npm build the console: Debian's, if the machine has none.
NODE_NEEDS := npm:npm node:nodejs

# The operator console (console/, TypeScript + Vite + Leaflet, docs/console.md), built into
# the directory the server serves at /app/console/; the build is not committed. npm ci installs
# exactly package-lock.json's packages, once per change of it; the build reruns only when a
# source changes (the stamp).
CONSOLE_OUT := commandcenter/static/console
CONSOLE_STAMP := $(CONSOLE_OUT)/.built
CONSOLE_MODULES := console/node_modules/.installed
CONSOLE_SOURCES := $(shell find console/src -type f) console/index.html console/admin.html console/vite.config.ts \
	console/tsconfig.json

$(CONSOLE_MODULES): console/package.json console/package-lock.json
	@sh tools/need-packages.sh $(NODE_NEEDS)
	cd console && npm ci --no-audit --no-fund
	touch $@

$(CONSOLE_STAMP): $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	cd console && npx --no-install tsc --noEmit && npx --no-install vite build --logLevel warn
	touch $@

console: $(CONSOLE_STAMP)

console-typecheck: $(CONSOLE_MODULES)
	cd console && npx --no-install tsc --noEmit

# The server needs nothing beyond the virtualenv (one node: no Redis, SQLite trace) and the
# console's build.
run: venv console
	$(BIN)/commandcenter serve

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

pytest: venv system console
	$(BIN)/pytest

test: lint typecheck console-typecheck pytest

# The pure and single-node tests (no Chromium, no Redis cluster, no PostgreSQL, nothing
# slow): under a minute, for the edit-test loop. `make test` still runs everything.
test-fast: venv
	$(BIN)/pytest -m "not browser and not cluster and not postgres and not slow"

# Benchmarks print JSON lines, the last a summary with pass/fail per goal. Run them on a
# quiet machine: each reports whether other processes took CPU while it ran.
bench: venv
	$(BIN)/python -m bench.signalling

bench-relay: venv
	$(BIN)/python -m bench.relay

# One speaker and 16, 32, 64 receive-only sites in a conference, against Janus's VideoRoom.
bench-conference: venv
	$(BIN)/python -m bench.conference

# One conference of 300 sites (32 real aiortc clients, the rest pre-keyed SRTP sinks): join
# storm, CPU per added site, a worker killed, Janus's slope (docs/media.md, *300 sites*).
bench-conference-300: venv
	$(BIN)/python -m bench.conference --sites 300

# Media in worker processes: offer round trip in process and through workers, calls spread
# over workers, a killed worker's call back to video (docs/media.md, *Worker processes*).
bench-workers: venv
	$(BIN)/python -m bench.workers

bench-recorder: venv
	$(BIN)/python -m bench.recorder

bench-evidence: venv
	$(BIN)/python -m bench.evidence

# The records views' names of users who are not accounts: the trace lookups of one request.
bench-names: venv
	$(BIN)/python -m bench.names

# A province of 181 courts holds the seed article's 224 conferences; `stats` must count them.
bench-province: venv
	$(BIN)/python -m bench.province

# A redis-server of its own, so that redis_ops_per_call counts the nodes' commands alone.
bench-cluster: venv
	$(BIN)/python -m bench.cluster --private-redis

# 30 minutes of 1,000 officers (5 calls/s, a position each 10 s) on one node: RSS slope,
# ring p99 over time, events lost (must be 0), the trace checked after a clean stop.
bench-soak: venv
	$(BIN)/python -m bench.soak --minutes 30

# 10 minutes of the same load on three nodes with a private Redis and PostgreSQL: a node
# SIGKILLed and started again, Redis restarted, PostgreSQL restarted; what each client saw
# and what the trace holds, per fault. The machine's own Redis and PostgreSQL are not touched.
bench-chaos: venv
	$(BIN)/python -m bench.soak --minutes 10 --chaos

clean:
	rm -rf $(VENV) media/_fanout*.so var .mypy_cache .pytest_cache .ruff_cache console/node_modules $(CONSOLE_OUT)
