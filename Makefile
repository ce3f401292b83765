# Myko developer entry points. On a fresh clone, `make run` and `make test` do
# everything needed first (`make setup`), so nothing else has to be installed by hand
# beyond Python 3.11+, Node 20+, a JDK 17+ and Maven.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Interpreter used only to create .venv; everything else runs inside .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Extra arguments: `make run ARGS=--fresh`, `make test PYTEST_ARGS='-k procs -x'`.
ARGS ?=
PYTEST_ARGS ?=

# Stamps live inside what they describe, so deleting .venv or node_modules also
# forgets that it was set up; each is redone only when its inputs change.
STAMP_PY := $(VENV)/.myko-setup
STAMP_NPM := node_modules/.myko-setup
STAMP_JARS := kafka/target/.myko-setup
# Kafka's jars for this checkout: where the Kafka image is built from (kafka/Dockerfile),
# and what the local Kafka of `make run` and the tests runs on (myko/local/kafka.py).
export MYKO_KAFKA_JARS ?= $(CURDIR)/kafka/target/lib
NPM_INPUTS := package.json $(wildcard package-lock.json) $(wildcard ui/package.json) $(wildcard client-ts/package.json) \
	$(wildcard idp/package.json)

.PHONY: help setup gen gen-check lint format typecheck pytest test test-py test-ui \
	client-pack ui-build chromium prometheus alerts screenshot run run-cluster bench clean distclean \
	images swarm-up swarm-down test-swarm

help:
	@echo "make setup        create .venv, install Python and npm deps, fetch Kafka jars (idempotent)"
	@echo "make run          start Kafka, the identity provider, every service and the gateway; Ctrl-C stops all (ARGS=--fresh)"
	@echo "                  ARGS=--prometheus also starts Prometheus scraping them (docs/observability.md)"
	@echo "make run-cluster  3 Kafka nodes and two replicas of every service"
	@echo "make test         lint, typecheck, generated-code check, Python tests, UI tests, live swarm"
	@echo "make gen          regenerate generated code from the .proto files"
	@echo "make client-pack  pack @myko/client (client-ts/) into myko/_ts/, which the wheel ships"
	@echo "make images       build the Myko and Kafka images (official bases, or Debian ones without a registry)"
	@echo "make swarm-up     deploy the stack on this machine's Docker (single-node swarm); swarm-down removes it"
	@echo "make alerts       check and unit-test the Prometheus alert rules with promtool"
	@echo "make lint | format | typecheck | pytest | test-swarm | bench | clean | distclean"

setup: $(STAMP_PY) $(STAMP_NPM) $(STAMP_JARS)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The framework (editable, with the dev tools) and the example app, which
# depends on it the way any application does.
$(STAMP_PY): pyproject.toml examples/targets/pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e examples/targets
	touch $@

# CI (and a first install) get the exact lock file; on a dev machine `npm install`
# keeps an existing node_modules (and ui/'s) instead of wiping it.
$(STAMP_NPM): $(NPM_INPUTS)
	if [ -f package-lock.json ] && { [ "$${CI:-}" = true ] || [ ! -d node_modules ]; }; then \
		npm ci --no-audit --no-fund; \
	else \
		npm install --no-audit --no-fund; \
	fi
	touch $@

$(STAMP_JARS): kafka/pom.xml $(STAMP_PY)
	$(PY) -m myko.local.kafka --resolve-only
	touch $@

gen: setup
	$(PY) -m devtools.gen

gen-check: setup
	$(PY) -m devtools.gen --check

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Strict mypy over the `files` listed in pyproject.toml.
typecheck: setup
	$(VENV)/bin/mypy

# The @myko/client npm tarball the wheel ships (myko new vendors it into a UI);
# rebuilt when the package changes.
CLIENT_TARBALL := myko/_ts/myko-client.tgz
$(CLIENT_TARBALL): $(shell find client-ts/src -type f) client-ts/package.json client-ts/svelte.config.js pyproject.toml | setup
	$(PY) -m devtools.pack_client --out $@

client-pack: $(CLIENT_TARBALL)

# pytest's own exit codes stand: 5 (no tests collected) fails the build. The
# wheel-and-scaffold tests need the client tarball.
pytest: setup $(CLIENT_TARBALL)
	$(PY) -m pytest $(PYTEST_ARGS)

test: test-py test-ui test-swarm

test-py: setup
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) gen-check
	$(MAKE) alerts
	$(MAKE) pytest

# The alert rules every Prometheus of a Myko stack loads: valid, and firing when
# they should (tests/prometheus/alerts_test.yml). promtool comes with Debian's
# prometheus, which the Prometheus tests (tests/test_prometheus.py) run too.
alerts: prometheus
	promtool check rules myko/metrics/alerts.yml
	promtool test rules tests/prometheus/alerts_test.yml

# The TypeScript client package (client-ts/, @myko/client) and the UI: type check,
# unit/component tests, production build, then the browser tests, which start
# their own stack (Kafka + services + gateway on free ports, devtools/ui_stack.py)
# and stop it afterwards. E2E_ARGS: e.g. `--grep wall`.
E2E_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

test-ui: setup chromium
	cd client-ts && npx svelte-check --tsconfig ./tsconfig.json --fail-on-warnings
	cd client-ts && npx vitest run
	cd ui && npx svelte-check --tsconfig ./tsconfig.json --fail-on-warnings
	cd ui && npx vitest run
	$(MAKE) ui-build
	cd ui && MYKO_CHROMIUM=$(CHROMIUM) npx playwright test $(E2E_ARGS)

# Retakes docs/screenshot.png (shown in the README) from a freshly seeded stack.
screenshot: setup chromium ui-build
	cd ui && MYKO_UPDATE_SCREENSHOT=1 MYKO_CHROMIUM=$(CHROMIUM) npx playwright test --grep screenshot

# Debian's Chromium for the browser tests (Playwright never downloads a browser here).
chromium:
	if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium: $(CHROMIUM) is missing; install Debian's chromium package (or set CHROMIUM=)" >&2; exit 1; \
		fi; \
	fi

# Images and the Swarm stack (docs/deploy.md); they need a Docker engine. The UI
# is built first: on Debian bases the image takes ui/dist from the host.
images: setup ui-build
	$(PY) -m devtools.images $(ARGS)

swarm-up: setup ui-build
	$(PY) -m devtools.swarm up $(ARGS)

swarm-down: setup
	$(PY) -m devtools.swarm down

# The stack deployed on a live swarm, under faults (tests/test_swarm_live.py).
# Without a Docker engine it is skipped, and says so (-rs).
test-swarm: setup ui-build chromium
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -m swarm -rs -p no:cacheprovider tests/test_swarm_live.py $(PYTEST_ARGS)

# Debian's Prometheus (2.42, with promtool), as .ci/run installs it. The package's
# service is not started here: tests and `myko run --prometheus` run their own.
prometheus:
	if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "prometheus: installing Debian's package (its service is not started)"; \
			apt-get update -qq; \
			if [ -e /usr/sbin/policy-rc.d ]; then added=; else printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added=1; fi; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
			if [ -n "$$added" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		else \
			echo "prometheus: install Debian's prometheus package (it brings promtool)" >&2; exit 1; \
		fi; \
	fi

# The gateway serves ui/dist.
ui-build: setup
	cd ui && npx vite build --logLevel warn

# `myko run` for the example application (examples/targets, whose UI is ui/), with
# its data and logs in .run/, behind the local identity provider (idp/).
MYKO_RUN := $(PY) -m myko run --project examples/targets --run-dir .run --idp idp

run: setup ui-build
	$(MYKO_RUN) $(ARGS)

run-cluster: setup ui-build
	$(MYKO_RUN) --cluster $(ARGS)

bench: setup ui-build chromium
	MYKO_CHROMIUM=$(CHROMIUM) $(PY) -m bench $(ARGS)

# Build and test leftovers, and .run/ (local Kafka data and service logs).
clean:
	rm -rf .run build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis test-results playwright-report ui/dist \
		client-ts/dist client-ts/.svelte-kit myko/_ts
	find . -path ./.venv -prune -o -path ./node_modules -prune -o -path ./ui/node_modules -prune \
		-o -type d -name __pycache__ -exec rm -rf {} +

# Also everything `make setup` installed.
distclean: clean
	rm -rf $(VENV) node_modules ui/node_modules client-ts/node_modules kafka/target
