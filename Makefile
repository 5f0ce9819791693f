# Two commands: `make run` (set up, migrate SQLite, start API + app) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint fuzz clean

run: $(STAMP)
	$(BIN)/cei demo
	$(BIN)/cei up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

fuzz: $(STAMP)  # the long fuzzing mode (a nightly job): 1,000 positive and 1,000 negative cases per operation, counts printed
	CEI_FUZZ_EXAMPLES=1000 CEI_FUZZ_NEGATIVE_EXAMPLES=1000 $(BIN)/pytest -q -s -p no:cacheprovider tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "CEI needs Python 3.11 or newer (set PYTHON=python3.12 for example)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
