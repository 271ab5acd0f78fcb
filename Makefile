# War Tiket Engine: `make run` serves the app, `make test` checks it. `make help` lists every target.
# Both need only Python 3.11+: PostgreSQL and Redis are embedded unless DATABASE_URL / REDIS_URL are set
# (see docs/setup.md).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall only when a requirements file changed since the last install.
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := $(wildcard requirements*.txt)
# Newest first would pick a Python our pinned wheels (pgserver) may not support: prefer the one we test on.
PYTHON_CANDIDATES := python3.11 python3.12 python3.13 python3.14 python3
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help run prod test test-only lint format migrations-check venv

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

run: venv ## Serve the app at http://127.0.0.1:8000 (embedded PostgreSQL + Redis unless DATABASE_URL/REDIS_URL)
	$(PY) -m wartiket.devrun run

prod: venv ## The production processes of docs/deploy.md from the environment (ARGS=web|ws|worker|beat|live|all)
	$(PY) -m wartiket.serve $(ARGS)

test: venv lint migrations-check ## Lint, check migrations, then run pytest (pass pytest options as ARGS="-k war -x")
	$(PY) -m wartiket.devrun test $(ARGS)

test-only: venv ## Run pytest only, without lint and the migrations check (ARGS as for test)
	$(PY) -m wartiket.devrun test $(ARGS)

lint: venv ## ruff check + ruff format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv ## Apply ruff's formatting and safe fixes
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Compares models with migration files; with no database reachable (a fresh machine) Django only warns
# that it could not also check the applied history, which is not what this target is about.
migrations-check: venv ## Fail if a model change has no migration
	$(PY) -W "ignore:Got an error checking a consistent migration history:RuntimeWarning" \
		manage.py makemigrations --check --dry-run

venv: $(STAMP) ## Create .venv (Python 3.11+) and install requirements-dev.txt when they changed

$(PY):
	@py=""; \
	for candidate in $(PYTHON_CANDIDATES); do \
	  if command -v $$candidate >/dev/null 2>&1 && \
	     $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    py=$$candidate; break; \
	  fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "error: Python 3.11 or newer is required; none of '$(PYTHON_CANDIDATES)' on PATH is" >&2; \
	  exit 1; \
	fi; \
	echo "Creating $(VENV) with $$($$py --version)"; \
	$$py -m venv $(VENV)

$(STAMP): $(REQUIREMENTS) | $(PY)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(VENV) runs Python $$($(PY) -c 'import platform; print(platform.python_version())'), 3.11+ is required: rm -rf $(VENV) and retry" >&2; \
	  exit 1; }
	@echo "Installing requirements-dev.txt into $(VENV) (again only when requirements*.txt change)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# The engineering benchmark (docs/benchmarks.md): the production configuration of docs/deploy.md with
# its own PostgreSQL and Redis as for `make test`, traffic only to 127.0.0.1, at most ~10 minutes on 2 cores.
.PHONY: bench bench-smoke

bench: venv ## Benchmark the production configuration and append a dated entry to docs/benchmarks.md
	$(PY) -m bench $(ARGS)

bench-smoke: venv ## The benchmark with tiny numbers, only to prove it works (make test runs it too)
	$(PY) -m bench --smoke $(ARGS)
