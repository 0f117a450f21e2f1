# Two commands on a fresh machine with python3 and make: `make run`, `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Debian packages are installed as root (CI) or through sudo (a developer's machine).
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format install clean browser clients bench faults

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: migrate, seed the demo and start daphne, a worker cluster and the simulator
run: install
	$(PY) manage.py run

## browser: Debian's headless Chromium for the browser tests (Playwright drives it; no
## browser is downloaded)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'; }

## clients: the third-party clients the live tests drive (LangChain, litellm, instructor,
## pydantic-ai) in a venv of their own, since they pin an openai SDK of their own
CLIENTS_VENV  := var/clients-venv
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed-stamp
$(CLIENTS_STAMP): tests/clients/requirements.txt
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

clients: $(CLIENTS_STAMP)

## test: the whole pytest suite (the slowest tests listed at the end: CI has 90 minutes)
PYTEST_ARGS ?= --durations=25
test: install browser clients
	LLMOPS_DATA_DIR=var/test $(PY) -m pytest $(PYTEST_ARGS)

## faults: the fault suite (tests/faults, tests/security) on SQLite, then on PostgreSQL + Redis
## (throwaway servers unless DATABASE_URL/REDIS_URL are set; installs them from Debian when
## missing), and RELIABILITY.md rewritten from what it measured. 15 to 25 minutes here.
faults: install browser
	$(PY) tests/faults/run.py

## lint: ruff (lint + format check), the import-layering contracts (pyproject.toml) and missing
## migrations
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

## bench: every benchmark in bench/ (a few minutes; installs the LiteLLM proxy once into
## var/bench/litellm-venv for comparison) and BENCHMARKS.md rewritten from that run
bench: install
	$(PY) bench/run.py

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
