# The two commands a newcomer needs: `make demo` and `make test`.
# Everything else (`setup`, `lint`, `typecheck`, `bench`) is what they call.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
INTEGRATIONS := $(patsubst %/pyproject.toml,%,$(wildcard integrations/*/pyproject.toml))
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: setup demo-setup demo test lint gen-sync typecheck pytest docs bench reliability redis-server chromium clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard integrations/*/pyproject.toml)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]' $(foreach d,$(INTEGRATIONS),-e '$(d)[dev]')
	touch $(STAMP)

# The demo gets only what `promptcache demo` imports: the core, the LangChain and LangGraph
# integrations and the two chat models (langgraph's `demo` extra), not the dev extras (~830 MB).
# Same venv: `make test` later installs dev on top.
demo-setup: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml integrations/langchain/pyproject.toml integrations/langgraph/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e . -e integrations/langchain -e 'integrations/langgraph[demo]'
	touch $(DEMO_STAMP)

# Later issues need a real redis-server for the store tests; install it from
# Debian packages when the machine does not have one.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server from Debian packages"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	  || echo "WARNING: could not install redis-server; Redis tests will be skipped"; }

# The HTML report is checked in headless Chromium (Debian's package); the test
# skips with a reason where it cannot be installed.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian packages"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium; the report's browser check will be skipped"; }

demo: demo-setup
	$(BIN)/promptcache demo

lint: setup
	$(BIN)/ruff check src tests benchmarks examples docs_hooks $(INTEGRATIONS)
	$(BIN)/ruff format --check src tests benchmarks examples docs_hooks $(INTEGRATIONS)
	$(BIN)/ruff check scripts && $(BIN)/ruff format --check scripts
	# the sync forms generated from the async-first sources are current (regenerate: make gen-sync)
	$(BIN)/python scripts/gen_sync.py --check

gen-sync: setup
	$(BIN)/python scripts/gen_sync.py

typecheck: setup
	$(BIN)/mypy src $(foreach d,$(INTEGRATIONS),$(d)/src) docs_hooks

pytest: setup redis-server chromium
	# A throwaway cache directory: tests never share state with each other or the user.
	PROMPTCACHE_CACHE_DIR=$$(mktemp -d) $(BIN)/pytest -q

# Built strictly so a broken link or a missing page fails the build. The policy
# reference is generated from the pydantic models by an mkdocs hook
# (docs_hooks/policy_reference.py), so a plain `mkdocs build` works too.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d site

test: lint typecheck pytest docs

bench: setup
	$(BIN)/python -m benchmarks.run --out bench-results.json

# Fault, freshness, isolation, injection, secrets, bad-input and load figures
# (issue 9); bounded in time and count, loopback only.
reliability: setup redis-server
	$(BIN)/python -m benchmarks.reliability --out reliability-results.json

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
