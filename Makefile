# nbray developer tasks.
#
#   make demo    create .venv, install nbray[demo] (no test tools, no Ray), open JupyterLab
#   make test    install what the tests need and run the whole suite
#   make hub-proxy  JupyterHub's configurable-http-proxy (npm) into .venv/node, for tests/hub
#   make test-unit  the fast inner loop: tests/unit only (no browser, ssh, Ray or kernels)
#   make lint    ruff (lint + format check), mypy, the layers' import contract; eslint,
#                prettier, tsc for frontend/ and its events.ts current
#   make soak    the fault-injection suite at soak size (~30 min); figures in test-artifacts/chaos/
#   make bench   install the peers (Ray, Dask, ...) and run the benchmark suite (~30 min);
#                bench-quick is a smoke run of it (~3 min)
#   make clean   remove build outputs and caches (distclean also removes .venv)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Extras per purpose (pyproject.toml): `demo` is what the demo notebooks use; `test` and the
# others add the test, browser and lint tool chain and Ray. EXTRAS overrides the full set.
DEMO_EXTRAS := demo
EXTRAS ?= demo,test,browser,lint,ray
comma := ,
# Written after a successful install of one set of extras (its name says which); a change
# of pyproject.toml, this Makefile or the panel's sources installs again.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
DEMO_STAMP := $(VENV)/.installed-$(DEMO_EXTRAS)
# Written after the benchmark peers are installed; reinstall when their pins change.
BENCH_STAMP := $(VENV)/.bench-installed

PYTEST_ARGS ?=
LINT_PATHS ?= nbray tests benchmarks
# e.g. BENCH_ARGS="--engines nbray,ray --workloads throughput,latency --repeats 5"
BENCH_ARGS ?=
DEMO_DIR ?= demo_notebooks

JUPYTER_ARGS := --notebook-dir=$(DEMO_DIR) --LabApp.news_url=None
ifeq ($(shell id -u),0)
# jupyter lab / jupyter server exit at once as root without this.
JUPYTER_ARGS += --allow-root
endif

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help

.PHONY: help install $(VENV) system-deps hub-proxy test test-unit soak lint demo bench bench-quick clean distclean

help:
	@echo "make demo       create $(VENV), install nbray[demo], open JupyterLab on $(DEMO_DIR)/"
	@echo "make test       install test dependencies and run the whole suite"
	@echo "make test-unit  tests/unit only: the fast inner loop"
	@echo "make soak       the fault-injection suite at soak size"
	@echo "make lint       ruff, mypy; eslint, prettier, tsc --noEmit on frontend/"
	@echo "make bench      benchmarks: nbray against Ray, Dask, ipyparallel, loky, pools"
	@echo "make bench-quick  a quick smoke run of the benchmarks"
	@echo "make clean      remove build outputs and caches"
	@echo "make distclean  clean, and remove $(VENV)"

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

# The side panel's and dashboard's sources: the install rebuilds them only when the build
# output is missing (hatch-jupyter-builder's skip-if-exists), so a change drops the old build.
FRONTEND_SRC := $(shell find frontend/src frontend/style -type f 2>/dev/null) \
	frontend/package.json frontend/tsconfig.json
LABEXT := nbray/labextension
DASHBOARD_BUILD := nbray/server_ext/static

$(VENV)/.installed-%: $(VENV_PY) pyproject.toml Makefile $(FRONTEND_SRC)
	if [ -d $(LABEXT) ] && [ -n "$$(find $(FRONTEND_SRC) -newer $(LABEXT)/package.json)" ]; then \
		rm -rf $(LABEXT) $(DASHBOARD_BUILD); fi
	$(VENV_PY) -m pip install -q --upgrade pip
	$(VENV_PY) -m pip install -e ".[$(subst -,$(comma),$*)]"
	touch $@

install: $(STAMP)

$(VENV): $(STAMP)

# Debian's chromium and openssh-server, which the browser and SSH tests drive for real.
system-deps:
	scripts/system-deps.sh

# JupyterHub's proxy (npm's configurable-http-proxy) for tests/hub, in the venv: nothing global
CHP_VERSION := 5.3.0
CHP := $(VENV)/node/node_modules/.bin/configurable-http-proxy

$(CHP): Makefile
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "hub-proxy: npm is missing: tests/hub skip (with CI=true they fail)" >&2; exit 0; fi; \
	mkdir -p $(VENV)/node && \
	npm install --prefix $(VENV)/node --no-save --no-audit --no-fund --loglevel=error \
		configurable-http-proxy@$(CHP_VERSION) && \
	touch $@

hub-proxy: $(CHP)

test: install system-deps hub-proxy
	$(VENV_PY) -m pytest tests $(PYTEST_ARGS)

# pure functions and in-process objects: seconds, no processes, browser, ssh or Ray
test-unit: install
	$(VENV_PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# tests/chaos at soak size: many more kills, clients and kernel restarts than in make test
soak: install system-deps
	rm -f test-artifacts/chaos/figures.jsonl
	NBRAY_SOAK=1 $(VENV_PY) -m pytest tests/chaos -v -o faulthandler_timeout=3600 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy -p nbray
	$(VENV)/bin/lint-imports --no-cache
	$(VENV_PY) scripts/gen_events_ts.py --check
	cd frontend && ../$(VENV)/bin/jlpm lint

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt
	$(VENV_PY) -m pip install -r benchmarks/requirements.txt
	touch $@

bench: install $(BENCH_STAMP)
	$(VENV_PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: install $(BENCH_STAMP)
	$(VENV_PY) -m benchmarks.run --quick $(BENCH_ARGS)

# Only what the demo uses; a venv that already holds the full set is good enough.
demo: $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))
	$(VENV)/bin/jupyter lab $(JUPYTER_ARGS)

clean:
	rm -rf build dist test-artifacts .pytest_cache .mypy_cache .ruff_cache
	find . \( -path ./$(VENV) -o -path ./.git -o -name node_modules \) -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' -o -name .ipynb_checkpoints \) \
		-type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
