# The two commands a newcomer runs (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean native

$(STAMP): pyproject.toml setup.py tollway/native.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## The main job: a full canary release through the mesh, live.
## `make demo DEMO_ARGS=--keep` keeps the mesh up afterwards, until Ctrl-C.
demo: $(STAMP)
	$(BIN)/tollway demo $(DEMO_ARGS)

## The whole test suite: ruff, mypy, import contracts, pytest; then the proxy's tests once
## more on the pure-Python build (TOLLWAY_PURE=1; the first run uses the compiled hot path
## that `pip install` built, see tollway/native.py).
## `make test TESTS=tests/cli` runs the same tools with fewer pytest files.
## The dev-cluster tests (marker `cluster`) run in a pytest of their own, one at a time: their
## session-scoped cluster holds a host-wide lock until the session ends, so a cluster test that
## xdist handed to the other worker waited for it until its timeout (exit 5: none selected).
TESTS ?=
PURE_TESTS ?= $(if $(TESTS),$(filter tests/proxy%,$(TESTS)),tests/proxy)
test: $(STAMP)
	$(BIN)/ruff check tollway tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -c 'import tollway.native as n; print("hot path:", n.describe())'
	$(BIN)/pytest -n 2 -q -m "not cluster" $(TESTS)
	$(BIN)/pytest -n 0 -q -m cluster $(TESTS); code=$$?; [ $$code -eq 0 ] || [ $$code -eq 5 ]
	$(if $(PURE_TESTS),TOLLWAY_PURE=1 $(BIN)/pytest -n 2 -q $(PURE_TESTS))

## Compile the hot path again after editing its modules (until then they run as Python).
native: $(STAMP)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -c 'import tollway.native as n; print("hot path:", n.describe())'

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build tollway/native.json
	find tollway -name '*.so' -delete
