# Everything a person runs. `make run` and `make test` work from a fresh clone
# on a machine with only Python (3.12 found via pyenv or PATH).
SHELL := /bin/bash
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := .venv/bin/python
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test lint typecheck migrations-check audit check bench chaos screenshots venv browsers clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

venv: $(UV)
	$(UV) sync --frozen --quiet

## Start the whole product with demo data (Ctrl-C stops it).
run: venv
	$(PY) -m config.stack

## The whole suite (lint, types, migrations check, tests) against real PostgreSQL.
# pytest: 4 xdist workers (each its own test database; tests mostly wait on processes and
# I/O, so more than the 2 cores pays); bytecode caches on, even where the environment turns
# them off (every worker, server and qcluster would compile the project again: ~1.3 s CPU
# each); coverage through sys.monitoring (much cheaper than the tracer). Serially:
# make test PYTEST_ARGS="-n 0".
test: venv browsers
	$(MAKE) --no-print-directory check
	PYTHONDONTWRITEBYTECODE= COVERAGE_CORE=sysmon $(PY) -m pytest -n 4 --dist worksteal \
	  --cov=orchestration --cov-report=term:skip-covered $(PYTEST_ARGS)

check: lint typecheck migrations-check audit

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-cache

# django-stubs imports the settings; a DATABASE_URL keeps it from starting the embedded
# PostgreSQL (mypy exits without running atexit handlers, so it could not stop it).
typecheck: venv
	DATABASE_URL=postgresql://mypy@127.0.0.1:1/unused .venv/bin/mypy config tenants orchestration marketplaces api uploads webhooks planning audit scheduler operations

migrations-check: venv
	$(PY) manage.py makemigrations --check --dry-run

## Known vulnerabilities in the locked packages (uv audit, OSV). Fails on one; an
## unreachable service is a loud SKIPPED unless AUDIT_REQUIRED=1 (docs/security.md).
audit: venv
	$(PY) scripts/audit_dependencies.py

## Debian's chromium for the browser tests (Playwright cannot download browsers here).
browsers:
	@command -v chromium >/dev/null || { \
	  echo "» installing chromium (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## The UI guide's pictures (docs/ui/*.png), taken in Chromium at 1400 px.
screenshots: venv browsers
	$(PY) -m pytest tests/e2e/ui_screenshots.py -p no:cacheprovider --no-cov -q

## Benchmarks: write JSON figures under bench/results/.
bench: venv
	$(PY) -m bench.run_all

## Chaos: kill -9 storm, PostgreSQL restart, ASGI restart (~5 min; bench/results/chaos.json).
chaos: venv browsers
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
