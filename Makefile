# The two commands a newcomer needs (see README.md):
#   make demo    runs the chat example on an embedded in-process Phoenix-protocol server
#   make check   runs the whole check: ruff, ruff format --check, mypy --strict, the docs site
#                (warnings as errors), pytest (+ coverage);
#                with CI set it installs Elixir (apt-get) and builds the real Phoenix app of
#                tests/phoenix_app, whose scenarios then must run
# Both create .venv themselves; `make check` also installs the npm packages of tests/js.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
JS := tests/js

.PHONY: demo check test lint docs bench soak clean

$(VENV)/.stamp-install: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(JS)/node_modules/.stamp-install: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.stamp-install
	$(BIN)/python examples/chat.py

lint: $(VENV)/.stamp-install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(VENV)/.stamp-install $(JS)/node_modules/.stamp-install
	$(BIN)/python tests/scenarios/real_phoenix.py prepare
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report --include='trio_phoenix/proto/*' --fail-under=100

# The documentation site, warnings as errors (its samples run in the test suite).
docs: $(VENV)/.stamp-install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

check: lint docs test

bench: $(VENV)/.stamp-install $(JS)/node_modules/.stamp-install
	$(BIN)/python -m benchmarks

soak: $(VENV)/.stamp-install
	$(BIN)/python tests/system/soak.py --minutes $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) docs/_build $(JS)/node_modules tests/phoenix_app/_build tests/phoenix_app/_deps-src .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache .hypothesis
