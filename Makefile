# Two commands do everything on a fresh machine with Python 3.11+ and Node.js 20+:
#   make run    install what is missing, start Carmenta, print its URL
#   make test   install what is missing, run the whole suite (unit, integration, e2e)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-unit test-integration test-e2e setup setup-test migrate worker lint

run: setup
	@$(PY) -m carmenta run

test: setup-test
	@$(PY) -m pytest tests/unit tests/integration tests/e2e

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

test-unit: setup-test
	@$(PY) -m pytest tests/unit

test-integration: setup-test
	@$(PY) -m pytest tests/integration

test-e2e: setup-test
	@$(PY) -m pytest tests/e2e

migrate: setup
	@$(PY) -m carmenta migrate

worker: setup
	@$(PY) -m carmenta worker

lint: setup-test
	@$(VENV)/bin/ruff check carmenta tests alembic bench rxconfig.py
	@$(VENV)/bin/ruff format --check carmenta tests alembic bench rxconfig.py
