# Two entry points: `make demo` (set up, build the demo world, serve) and `make test`.
# Every step runs only when its inputs changed, so re-running is safe and fast.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The venv's feast, bentoml and creditflow come first, activated or not.
export PATH := $(BIN):$(PATH)
# See creditflow/__init__.py: spinning OpenMP threads make XGBoost much slower on 2 cores.
export OMP_WAIT_POLICY ?= PASSIVE
# `make demo PORT=8080 LOANS=5000 CREDITFLOW_HOME=/tmp/cf`: the service's port, the demo world's
# size, and the home of its data, stores, models and database (default: .creditflow/ here).
PORT ?= 3000
# `make demo` listens on this machine only; SERVE_HOST=0.0.0.0 exposes it deliberately (not
# HOST: some shells export that one, set to the machine's name).
SERVE_HOST ?= 127.0.0.1
LOANS ?= 30000
export CREDITFLOW_HOME ?= $(CURDIR)/.creditflow
STAMPS := $(CREDITFLOW_HOME)/.stamps
# Exports the home, BentoML's store and the Feast profile for the plain feast/bentoml CLIs.
ENV := eval "$$($(BIN)/creditflow env)" &&

FEATURE_DEFS := $(wildcard feature_repo/*.py feature_repo/*.yaml) creditflow/contract.py
# The package's code: every stage folder (their list lives in pyproject.toml alone).
CODE := $(filter-out tests/% benchmarks/% build/%,$(wildcard */*.py */*/*.py))

.PHONY: demo serve test lint lint-imports install bento bench clean
.DEFAULT_GOAL := demo

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e '.[dev]'
	touch $@

# Two locks, both compiled from pyproject.toml: requirements.lock (every extra: the constraints of
# the dev install) and requirements-serving.lock (the base install at the same versions: what the
# bento installs). `make locks` rewrites both, keeping every pin that still fits; `make
# check-locks` fails when pyproject.toml has changed and they have not (tests/code/test_locks.py).
LOCKS_OUT ?= .
UV_COMPILE := $(BIN)/uv pip compile --quiet --python-version 3.11 --custom-compile-command "make locks"
.PHONY: locks check-locks wheel
locks:
	$(UV_COMPILE) pyproject.toml --all-extras -o $(LOCKS_OUT)/requirements.lock
	$(UV_COMPILE) pyproject.toml -c requirements.lock -o $(LOCKS_OUT)/requirements-serving.lock
check-locks:
	tmp=$$(mktemp -d) && cp requirements.lock requirements-serving.lock $$tmp/ && \
	  $(MAKE) --no-print-directory locks LOCKS_OUT=$$tmp && \
	  diff -u requirements.lock $$tmp/requirements.lock && \
	  diff -u requirements-serving.lock $$tmp/requirements-serving.lock; \
	  status=$$?; rm -rf $$tmp; \
	  [ $$status -eq 0 ] || echo "requirements*.lock are stale: run 'make locks'" >&2; exit $$status

$(STAMPS)/generated: $(VENV)/.installed demo_world/generator.py creditflow/contract.py
	$(BIN)/creditflow generate --loans $(LOANS)
	mkdir -p $(STAMPS) && touch $@

# Our tables at the newest migration (creditflow/migrations/); the service is not ready before.
$(STAMPS)/migrated: $(VENV)/.installed $(wildcard creditflow/migrations/versions/*.py)
	$(BIN)/creditflow db upgrade
	mkdir -p $(STAMPS) && touch $@

# The demo world enters like any user data: validated, dirty rows to quarantine.
$(STAMPS)/ingested: $(STAMPS)/generated | $(STAMPS)/migrated
	for raw in $(CREDITFLOW_HOME)/raw/*.parquet; do \
	  $(BIN)/creditflow ingest $$raw --table $$(basename $$raw .parquet) || exit 1; \
	done  # one file per contract table, named after it (creditflow generate)
	touch $@

$(STAMPS)/applied: $(STAMPS)/ingested $(FEATURE_DEFS)
	$(ENV) cd feature_repo && feast apply
	touch $@

$(STAMPS)/materialized: $(STAMPS)/applied
	$(ENV) cd feature_repo && feast materialize-incremental $$(date -u +%Y-%m-%dT%H:%M:%S)
	touch $@

# Train a candidate; promote it if it beats the champion (the first model always does).
$(STAMPS)/trained: $(STAMPS)/materialized $(CODE)
	$(BIN)/creditflow train
	$(BIN)/creditflow promote || [ $$? -eq 3 ]  # 3: refused, the champion stays
	touch $@

# The bearer token of the write endpoints (/feedback), made once per home and kept in it.
TOKEN_FILE := $(CREDITFLOW_HOME)/api_token
$(TOKEN_FILE): | $(VENV)/.installed
	mkdir -p $(CREDITFLOW_HOME)
	umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(32))" > $@

demo: $(STAMPS)/trained $(STAMPS)/migrated $(TOKEN_FILE)
	@echo
	@echo "Scoring service starting on http://127.0.0.1:$(PORT) (Ctrl-C stops it). Try:"
	@echo
	@$(BIN)/creditflow sample-request --curl --port $(PORT)
	@echo
	@echo "Report an outcome (POST /feedback needs the token; in another shell, paste all three):"
	@echo
	@echo "export CREDITFLOW_API_TOKEN=$$(cat $(TOKEN_FILE))"
	@$(BIN)/creditflow sample-request --feedback --port $(PORT)
	@echo
	@echo "Then: CREDITFLOW_HOME=$(CREDITFLOW_HOME) $(BIN)/creditflow monitor   # exit 4 on an alert"
	@echo
	export CREDITFLOW_API_TOKEN=$$(cat $(TOKEN_FILE)) && $(ENV) bentoml serve \
	  creditflow.bento.service:CreditScorer --host $(SERVE_HOST) --port $(PORT)

# The package as a wheel (built from its sdist, so stale in-tree build files cannot slip in):
# the bento installs it over requirements-serving.lock and carries no source of its own.
# tests/service/test_http.py builds its bento with this target too. Built aside and then renamed
# into place, so that a bento build running meanwhile never sees half a wheel.
WHEEL_DIR := build/wheel
wheel:
	mkdir -p $(WHEEL_DIR) && tmp=$$(mktemp -d build/wheel-XXXXXX) && \
	  $(BIN)/uv build --quiet --out-dir $$tmp . && mv $$tmp/*.whl $(WHEEL_DIR)/ && rm -rf $$tmp

# A deployable bento (the package, the serving lock, the model); `bentoml serve <tag>` or
# containerize it.
bento: $(STAMPS)/trained wheel
	$(ENV) bentoml build -f bento/bentofile.yaml .

# Speed targets, side by side in one run (see benchmarks/run.py); saved to reports/bench.json.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory lint-imports

# The layers declared in pyproject.toml ([tool.importlinter]), checked over a plain install of
# the package: an editable install hides the mapped stage folders from import-linter.
LINT_TREE := build/lint-imports
lint-imports: $(VENV)/.installed
	rm -rf $(LINT_TREE)
	$(BIN)/uv pip install --quiet --no-deps --target $(LINT_TREE) --python $(BIN)/python .
	cd $(LINT_TREE) && $(BIN)/lint-imports --no-cache --config $(CURDIR)/pyproject.toml

# Every test (CI: .ci/run), with the machine's PostgreSQL and Redis and the trained demo home.
test: $(VENV)/.installed lint
	$(BIN)/python -m pytest

# The fast lane, under a minute: ruff and the tests that need no PostgreSQL, Redis, trained demo
# home or server (tests/conftest.py marks those `integration`).
.PHONY: test-fast
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -m "not integration"

clean:
	rm -rf $(CREDITFLOW_HOME)
