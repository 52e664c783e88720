# Two entry points: `make demo` (set up, build the demo world, serve) and `make test`.
# Every step runs only when its inputs changed, so re-running is safe and fast.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The venv's feast, bentoml and creditflow come first, activated or not.
export PATH := $(BIN):$(PATH)
# See creditflow/__init__.py: spinning OpenMP threads make XGBoost 40x slower here.
export OMP_WAIT_POLICY ?= PASSIVE
PORT ?= 3000
LOANS ?= 30000
export CREDITFLOW_HOME ?= $(CURDIR)/.creditflow
STAMPS := $(CREDITFLOW_HOME)/.stamps
# Exports the home, BentoML's store and the Feast profile for the plain feast/bentoml CLIs.
ENV := eval "$$($(BIN)/creditflow env)" &&

FEATURE_DEFS := $(wildcard feature_repo/*.py feature_repo/*.yaml) ingestion/contract.py
CODE := $(wildcard creditflow/*.py training/*.py ingestion/*.py monitoring/*.py)
TABLES := loans zipcodes credit_history

.PHONY: demo serve test lint install bento bench clean
.DEFAULT_GOAL := demo

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e '.[dev]'
	touch $@

$(STAMPS)/generated: $(VENV)/.installed ingestion/demo_world.py ingestion/contract.py
	$(BIN)/creditflow generate --loans $(LOANS)
	mkdir -p $(STAMPS) && touch $@

# The demo world enters like any user data: validated, dirty rows to quarantine.
$(STAMPS)/ingested: $(STAMPS)/generated
	for table in $(TABLES); do \
	  $(BIN)/creditflow ingest $(CREDITFLOW_HOME)/raw/$$table.parquet --table $$table || exit 1; \
	done
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

demo: $(STAMPS)/trained
	@echo
	@echo "Scoring service starting on http://127.0.0.1:$(PORT) (Ctrl-C stops it). Try:"
	@echo
	@$(BIN)/creditflow sample-request --curl --port $(PORT)
	@echo
	$(ENV) bentoml serve bento.service:CreditScorer --host 127.0.0.1 --port $(PORT)

# A deployable bento (service, feature repo, model); `bentoml serve <tag>` or containerize it.
bento: $(STAMPS)/trained
	$(ENV) bentoml build -f bento/bentofile.yaml .

# Speed targets, side by side in one run (see benchmarks/run.py); saved to reports/bench.json.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(CREDITFLOW_HOME)
