# Baton: `make run` starts the whole stack, `make test` runs every check.
# Both install what they need: uv (from PyPI, if not on PATH) and the locked dependencies.

SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen --no-sync
# Trust the machine's certificate store (corporate proxies add their CA there).
export UV_SYSTEM_CERTS ?= 1
# The environment's interpreter: the distribution's python3.11 where there is one, else
# the first python3.11 uv finds. Debian's links the interpreter statically and is built
# optimised, as the deployed image's is; a pyenv build (a shared libpython, no
# profile-guided optimisation) spent about a fifth more CPU per event scored
# (bench.scoring) and decoded an event about 1.5x slower. Override: make VENV_PYTHON=...
VENV_PYTHON ?= $(or $(wildcard /usr/bin/python3.11),3.11)
export UV_PYTHON ?= $(VENV_PYTHON)
PYTEST_ARGS ?=
# Tests run in one worker process per core (at most four, and none when BATON_DATABASE_URL
# or BATON_KAFKA_BOOTSTRAP_SERVERS name shared servers: tests/conftest.py), each with its
# own PostgreSQL and brokers. Most tests wait on those servers and on the stacks they
# start: a fresh clone's suite took 449 s on two workers, 746 s on one.
# PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto

.PHONY: run demo bench test test-quick lint schemas schemas-check deploy-check sync clean help

help:
	@echo "make run          the whole stack on embedded PostgreSQL and Kafka (Ctrl-C stops it)"
	@echo "make test         lint, contracts, unit, integration, end-to-end and deploy checks"
	@echo "make test-quick   the same without the tests marked slow"
	@echo "make lint         ruff and mypy"
	@echo "make schemas      regenerate JSON Schema and AsyncAPI files from the event models"
	@echo "make deploy-check render and validate the Kubernetes manifests and the Dockerfile"
	@echo "make demo         post realistic traffic to the running stack (after make run)"
	@echo "make bench        the benchmarks, each beside a baseline measured in the same run"
	@echo "make sync         install uv and the locked dependencies (run and test do it themselves)"
	@echo "make schemas-check fail if the generated schema files differ from the event models"
	@echo "make clean        remove the virtualenv, the tool directory and caches"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

sync: $(UV)
	$(UV) sync --frozen --quiet

run: sync
	$(RUN) baton run

demo: sync
	$(RUN) baton demo

bench: sync
	$(RUN) python -m bench

lint: sync
	$(RUN) ruff check .
	$(RUN) mypy

test: lint
	$(RUN) pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-quick: lint
	$(RUN) pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

schemas: sync
	$(RUN) python -m schemas.export

schemas-check: sync
	$(RUN) python -m schemas.export --check

deploy-check: sync
	bash deploy/check.sh

clean:
	rm -rf .tools .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis
