# The two commands a newcomer runs (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## The main job: a full canary release through the mesh, live.
## `make demo DEMO_ARGS=--keep` keeps the mesh up afterwards, until Ctrl-C.
demo: $(STAMP)
	$(BIN)/tollway demo $(DEMO_ARGS)

## The whole test suite: ruff, mypy, import contracts, pytest.
## `make test TESTS=tests/cli` runs the same tools with fewer pytest files.
TESTS ?=
test: $(STAMP)
	$(BIN)/ruff check tollway tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 -q $(TESTS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
