# The two commands a new machine needs: `make demo` and `make test`.
# Both install from requirements.lock, so every machine gets exactly the versions CI tested.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
LOCKED := $(VENV)/.locked-stamp
STAMP := $(VENV)/.installed-stamp
# `make lock` and `make test-latest` work in throwaway environments of their own.
UV_VERSION := 0.13.9
TOOLS := .venv-tools
LATEST := .venv-latest

.PHONY: demo test lint bench contract lock lock-upgrade test-latest clean

# A changed lock rebuilds the environment from nothing: pip installs but never removes, and a
# package the lock dropped must not linger where the tests would still find it. A changed
# pyproject.toml (entry points, packages) only reinstalls smartbrum itself.
$(LOCKED): $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "smartbrum needs Python 3.11 or newer")'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	@touch $(LOCKED)

$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/smartbrum demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/clear.py

# The API's contract, large: schemathesis as household, operator and nobody on SQLite and
# PostgreSQL, over 20,000 cases each (make test runs the same with a few examples an operation).
# Ends with a table of cases, server errors and answers outside the schema per role and backend;
# each run draws new cases (make test's are seeded, the same every time).
CONTRACT_EXAMPLES ?= 750
contract: $(STAMP)
	SMARTBRUM_CONTRACT_EXAMPLES=$(CONTRACT_EXAMPLES) SMARTBRUM_CONTRACT_MIN_CASES=20000 SMARTBRUM_CONTRACT_SEED= \
		$(BIN)/pytest tests/api/test_api_contract.py -k keeps_the_contract -p no:cacheprovider

# The lock, for every platform and for Python 3.11 and newer, each file with its hash. `make lock`
# keeps every pin it can and adds what pyproject.toml newly asks for; `make lock-upgrade` moves
# everything to the newest releases pyproject.toml allows. The build backend is locked too: the
# editable install runs without build isolation, so nothing unlocked is fetched to build it.
COMPILE = echo 'setuptools>=77' | $(TOOLS)/bin/uv pip compile pyproject.toml - --extra test \
	--universal --python-version 3.11 --generate-hashes --no-header --quiet -o $(LOCK)

lock: $(TOOLS)/bin/uv
	$(COMPILE)

lock-upgrade: $(TOOLS)/bin/uv
	$(COMPILE) --upgrade

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

# The suite against the newest releases pyproject.toml allows, in a throwaway environment: an
# upstream change shows here before a user meets it. Not part of CI (it is not reproducible).
test-latest: $(STAMP)
	@echo 'The locked releases that have newer ones:' >&2
	$(BIN)/python -m pip list --disable-pip-version-check --outdated >&2
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -e '.[test]'
	$(LATEST)/bin/pytest -p no:cacheprovider

clean:
	rm -rf $(VENV) $(TOOLS) $(LATEST) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
