# kassa — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test browser lint unit integration e2e infra-test fuzz demo bench bench-usage bench-scale bench-imports synth deploy layer clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The storefront's browser test drives Debian's chromium (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the storefront browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

## make run: start the local stack (moto + localstripe + gateway + pollers + virtual clock)
run: $(STAMP)
	$(BIN)/kassa run

## make test: lint (ruff, mypy, import-linter) and the whole suite
test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check layers functions
	$(BIN)/mypy layers/kassa/python/kassa kassa_local infra app.py
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP) browser
	$(BIN)/python -m pytest -q tests/e2e

infra-test: $(STAMP)
	$(BIN)/python -m pytest -q tests/infra

## make fuzz: the schemathesis run of tests/e2e/test_fuzz.py with many more examples per operation
## (KASSA_FUZZ_POSITIVE, KASSA_FUZZ_NEGATIVE, KASSA_FUZZ_NO_KEY; `make test` keeps 10, 14 and 4)
fuzz: $(STAMP)
	KASSA_FUZZ_POSITIVE=$${KASSA_FUZZ_POSITIVE:-180} KASSA_FUZZ_NEGATIVE=$${KASSA_FUZZ_NEGATIVE:-180} \
	KASSA_FUZZ_NO_KEY=$${KASSA_FUZZ_NO_KEY:-20} \
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -W ignore::DeprecationWarning tests/e2e/test_fuzz.py

## make demo: a scripted lifecycle on a fresh local stack
demo: $(STAMP)
	$(BIN)/kassa demo

## make bench: renew N subscriptions on the local stack and print per-renewal cost figures
bench: $(STAMP)
	$(BIN)/kassa bench --subscriptions $${N:-200}

## make bench-scale: N (default 100000) subscriptions due in one hour, renewed against a rate-limited fake Stripe
bench-scale: $(STAMP)
	$(BIN)/kassa bench --scenario scale --subscriptions $${N:-100000}

## make bench-imports: each function's import time (cold start) from source and from compiled layers, median of 9
bench-imports: $(STAMP)
	$(BIN)/python -m kassa_local.coldstart --runs $${RUNS:-9}

## make bench-usage: N hybrid subscriptions ingest events (batches of 100 and 1), then renew: cost per million events
bench-usage: $(STAMP)
	$(BIN)/kassa bench --scenario usage --subscriptions $${N:-4}

## make synth / deploy: the CDK app (deploy needs AWS credentials; see docs/infrastructure.md)
synth: $(STAMP) node_modules/.installed
	npx cdk synth -q

layer: $(STAMP)
	$(BIN)/python infra/build_layer.py

deploy: $(STAMP) node_modules/.installed layer
	npx cdk deploy --require-approval broadening

clean:
	rm -rf cdk.out .kassa .mypy_cache .ruff_cache .pytest_cache
