# Two commands matter: `make demo` and `make test`. Both create and use .venv at the repo root.
SHELL := /bin/bash
# Python 3.12 where pyenv has it (the Lambda runtime), else python3.12, else python3.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) $(shell command -v python3.12) $(shell command -v python3))
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean deploy setup destroy deploy-check si-help
STAGE ?= dev
ARCH ?= x86_64
# The fargate engine: FARGATE=off for a stage without it, SUBNETS=a,b for subnets other than the
# default VPC's, SPOT=1 for Fargate Spot (docs/deploy.md).
FARGATE ?= on
SUBNETS ?=
SPOT ?=
ENGINE_FLAGS = $(if $(filter off,$(FARGATE)),--no-fargate) $(if $(SUBNETS),--subnets $(SUBNETS)) $(if $(SPOT),--spot)
# Scramjet's own CLI, which the tests drive against the embedded hub (installed once, then cached).
SCRAMJET_CLI := .cache/scramjet-cli/node_modules/.bin/si
# What the Node runtime host loads (scramjet's streams, Scramjet's HostClient), as its lock file says.
HOST_MODULES := chalicelib/runner/hosts/node_modules/.package-lock.json

# pip byte-compiles what it installs, but not the sources of an editable install: without this, every
# `si` command compiles its modules again wherever PYTHONDONTWRITEBYTECODE is set (~20 ms a command).
BYTECODE = $(BIN)/python -m compileall -q si

# Both parts, editable: the client (si/, with AWS signing) and the server with the embedded hub.
# "compat" editables are a path in a .pth file: setuptools' default import hooks cost every Python
# start in the venv ~15 ms (pathlib, re, enum at startup), more than `si --help` does itself. The
# mode is deprecated: where a newer setuptools has dropped it, the default editables are installed.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml si/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt --config-settings editable_mode=compat \
		-e './si[aws]' -e '.[local]' 2>/dev/null \
		|| $(BIN)/pip install --quiet -r requirements-dev.txt -e './si[aws]' -e '.[local]'
	$(BYTECODE)
	touch $@

$(HOST_MODULES): chalicelib/runner/hosts/package.json chalicelib/runner/hosts/package-lock.json
	npm ci --prefix chalicelib/runner/hosts --no-audit --no-fund --silent

demo: $(BIN)/.installed $(HOST_MODULES)
	@bash examples/demo.sh

# ruff (config in pyproject.toml), mypy --strict on chalicelib/ and si/ (app.py checked too), cfn-lint.
lint: $(BIN)/.installed
	$(BIN)/ruff check app.py chalicelib si infra bench tests
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/template.yaml infra/fargate.yaml

# After changing si's options or groups: write again the help texts `si --help` says without click.
si-help: $(BIN)/.installed
	$(BIN)/python -c 'from si.cli import write_help_texts; write_help_texts()'

$(SCRAMJET_CLI):
	mkdir -p .cache/scramjet-cli
	npm install --prefix .cache/scramjet-cli --no-audit --no-fund --silent @scramjet/cli@0.26.1

test: $(BIN)/.installed $(HOST_MODULES) $(SCRAMJET_CLI) lint
	$(BIN)/pytest
	$(MAKE) deploy-check

# Ops: deploy a stage to the AWS account of your credentials (safe to re-run), or remove it.
# `setup` alone is the one-time step after which `chalice deploy --stage $(STAGE)` works by itself.
deploy: $(BIN)/.installed $(HOST_MODULES)
	$(BIN)/python -m infra.wire deploy --stage $(STAGE) --arch $(ARCH) $(ENGINE_FLAGS)

setup: $(BIN)/.installed $(HOST_MODULES)
	$(BIN)/python -m infra.wire setup --stage $(STAGE) --arch $(ARCH) $(ENGINE_FLAGS)

destroy: $(BIN)/.installed
	$(BIN)/python -m infra.wire destroy --stage $(STAGE)

# The ops path rehearsed against a moto server it starts itself: deploy, check, re-deploy, destroy.
deploy-check: $(BIN)/.installed $(HOST_MODULES)
	$(BIN)/python -m infra.rehearse

bench: $(BIN)/.installed $(HOST_MODULES)
	$(BYTECODE)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) examples/*.tar.gz .pytest_cache .cache
