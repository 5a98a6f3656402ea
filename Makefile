# Two set-up commands for a new user: `make demo` and `make test`. Both create the environment.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
# Not exported: `ventureloop` is the one loader of ./.env (the repository's when run elsewhere),
# resolves the home from the repository when VENTURELOOP_HOME is unset and derives DAGSTER_HOME
# from it, so `make demo`, `make dev` and the Dagster CLI agree on one instance and warehouse.
# Here it only tells `make clean` what to remove.
VENTURELOOP_HOME ?= $(CURDIR)/.ventureloop

.PHONY: env demo lint format test test-thorough dev lock bench clean

# uv installs the locked set exactly (--frozen: never re-resolve); it lives in its own tool venv
# so that syncing the project environment cannot uninstall it.
$(BIN)/dagster: pyproject.toml uv.lock
# Not --quiet: the first install takes a while, and uv shows its progress (packages prepared, installed).
	@test -x .tools/bin/uv || (echo "installing uv $(UV_VERSION) into .tools/" && $(PYTHON) -m venv .tools && .tools/bin/pip install -q uv==$(UV_VERSION))
	@echo "installing the locked environment (uv.lock) into $(VENV)/"
	UV_PROJECT_ENVIRONMENT=$(VENV) .tools/bin/uv sync --frozen --python $(PYTHON)
	@touch $@

# The dbt manifest the marts code location reads (assets/ledger_marts/project.py), prepared by
# dagster-dbt's preparer (`dbt parse`) whenever a file of the project is newer than it.
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_PREPARE := $(BIN)/dagster-dbt project prepare-and-package --file assets/ledger_marts/project.py
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -path dbt_project/logs -prune -o -type f -print)

$(DBT_MANIFEST): $(BIN)/dagster $(DBT_SOURCES)
	@$(DBT_PREPARE) || (echo "dbt parse failed (its errors are above); after fixing them, run: $(DBT_PREPARE)" && exit 1)
	@touch $@

env: $(DBT_MANIFEST)

demo: env
	$(BIN)/ventureloop demo

# Two workers: the suite waits on dbt, PostgreSQL and subprocesses more than on one core.
# Hypothesis runs its `ci` profile (tests/conftest.py) unless HYPOTHESIS_PROFILE names another.
PYTEST_WORKERS ?= 2
# ruff: lint and format check (configured in pyproject.toml); `make format` applies both.
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: env lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The same suite with the `thorough` Hypothesis profile (tests/conftest.py): twenty times the
# examples of `make test`, random rather than derandomized. Run it before a release or after
# touching a fast path; narrow it with PYTEST_ARGS, e.g. PYTEST_ARGS=tests/unit.
test-thorough: env
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

dev: env
	$(BIN)/ventureloop dev

lock:
	.tools/bin/uv lock

bench: env
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .tools $(VENTURELOOP_HOME)
