# vaultd — the two commands a new user needs are `make run` and `make test`.
# Installs come from the lock in requirements/ (hashes checked), never from whatever is
# newest today; `make lock` refreshes it from the ranges in pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VAULT  ?= ./vault
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check
PIP_TOOLS := pip-tools==7.6.2
COMPILE = $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --all-build-deps \
          --no-emit-index-url --no-emit-find-links --upgrade

.PHONY: run test lint bench install dev lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock first (--no-deps: every package is pinned there), then vaultd itself, built with
# the locked hatchling.
$(VENV)/.installed-main: requirements/main.txt pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes --no-deps -r requirements/main.txt
	$(PIP) --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.installed-dev: requirements/dev.txt pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes --no-deps -r requirements/dev.txt
	$(PIP) --no-deps --no-build-isolation -e .
	@touch $@

install: $(VENV)/.installed-main

dev: $(VENV)/.installed-dev

## make run: create .venv, create ./vault from vault_template/ if missing, run the daemon (dry-run)
run: install
	@[ -d "$(VAULT)" ] || $(BIN)/vaultd init "$(VAULT)"
	$(BIN)/vaultd run --vault "$(VAULT)"

## make test: lint, type-check and the whole test suite, on all cores
# One pytest worker more than there are cores: a third of the suite's time is spent waiting
# on daemons it started (and their sleeps), and a third worker fills that time (197 s
# instead of 234 s on 2 cores, measured 2026-12-01).
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: dev lint
	$(BIN)/python -m pytest -n $(WORKERS) --dist worksteal

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: dev
	$(BIN)/python -m bench

## make lock: re-resolve pyproject.toml's ranges to the newest versions, with hashes
lock: | $(BIN)/python
	$(PIP) $(PIP_TOOLS)
	$(COMPILE) -o requirements/main.txt pyproject.toml
	$(COMPILE) --extra dev -o requirements/dev.txt pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
