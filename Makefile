# vaultd — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VAULT  ?= ./vault

.PHONY: run test lint bench install dev clean

$(BIN)/vaultd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: $(BIN)/vaultd
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/vaultd

dev: $(VENV)/.dev-installed

## make run: create .venv, create ./vault from vault_template/ if missing, run the daemon (dry-run)
run: install
	@[ -d "$(VAULT)" ] || $(BIN)/vaultd init "$(VAULT)"
	$(BIN)/vaultd run --vault "$(VAULT)"

## make test: lint, type-check and the whole test suite
test: dev lint
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
