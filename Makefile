# zeroclick: the two commands a fresh machine needs are `make demo` and `make test`.
# Both create .venv on first use and reuse it afterwards (a stamp file tracks setup.cfg/pyproject.toml).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ZC     := $(VENV)/bin/zeroclick
STAMP  := $(VENV)/.zeroclick-installed
DEMO   ?= demo-out
# CPU machines take the local CPU wheel of torch; a machine with an NVIDIA driver takes the CUDA build from PyPI.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
PYTEST_ARGS ?=

.PHONY: demo test install lint clean-venv weights

weights: $(STAMP)
	$(ZC) weights fetch

install: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,pacs,dev]"
	touch $(STAMP)

# jemalloc (Debian libjemalloc2) roughly halves CPU inference time; it must be preloaded at process start.
, := ,
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
JEMALLOC_ENV := $(if $(JEMALLOC),LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1$(,)muzzy_decay_ms:-1$(,)retain:true,)

demo: $(STAMP)
	$(JEMALLOC_ENV) $(PY) -m zeroclick.pipelines.demo --out $(DEMO)

# The real-weight tests need the fetched, SHA-256-verified weights; tests themselves never download.
test: $(STAMP)
	$(ZC) weights fetch
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check imaging pipelines weights benchmarks tests
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
