# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8765

.PHONY: demo test install system-deps js-test bench conformance soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The benchmark harness (bench/, distribution staywire-bench) after the server it measures;
# the suite imports it too (its port picker).
$(STAMP): pyproject.toml bench/pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q -e bench/
	touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "Staywire demo: open http://$(HOST):$(PORT)/ (metrics on http://127.0.0.1:9765/metrics)"
	$(VENV)/bin/staywire serve --host $(HOST) --port $(PORT) --allow-anonymous --demo \
		--allowed-origin http://$(HOST):$(PORT) --allowed-origin http://localhost:$(PORT)

# System packages the tests use for real (redis-server, nginx, chromium), installed through
# apt only when missing; idempotent and non-interactive.
system-deps:
	@bash scripts/install-system-deps.sh

test: install system-deps
	@bash scripts/run-tests.sh

js-test:
	node --test js/test/
	bash scripts/check-types.sh

bench: install
	$(VENV)/bin/staywire bench

# 5,000 connections with traffic and churn for 30 minutes; RSS and descriptors must stay flat.
soak: install
	$(PY) scripts/soak.py --connections 5000 --minutes 30 --json soak-result.json

# Autobahn|Testsuite (cases 1-10) against the echo endpoint; writes docs/conformance.md.
conformance: install
	@bash scripts/conformance.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info bench/src/*.egg-info
