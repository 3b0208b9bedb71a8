# Two commands do all the set-up on a fresh machine:
#   make demo   # the main job end to end (creates .venv on first use)
#   make test   # ruff, mypy and the test suite
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

setup: $(STAMP)

# torch is pinned to the CPU build that pip finds locally; an unpinned torch pulls a multi-GB
# CUDA build. The project's own dependency range admits it, so nothing is re-resolved.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aisle demo --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check aisle tests bench
	$(BIN)/mypy aisle

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
