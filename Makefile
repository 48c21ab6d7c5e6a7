# `make test` and `make demo` each create .venv when missing and install the package into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-runs

.PHONY: test lint demo bench wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change. The exact versions come from constraints.txt (pyproject.toml
# declares ranges). INSTALL=wheel (CI) builds the wheel and installs it, not the source tree, so the tests run
# against what users get; the default is an editable install for development.
INSTALL ?= editable
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
ifeq ($(INSTALL),wheel)
	rm -rf dist && $(BIN)/pip wheel --quiet --no-deps -c constraints.txt -w dist .
	$(BIN)/pip install --quiet -c constraints.txt "$$(ls dist/pneumocam-*.whl)[dev]"
else
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
endif
	touch $(STAMP)

# Two workers (pytest-xdist), a test file's tests kept together on one: on 2 cores the suite's subprocesses, waits and
# single-threaded parts overlap.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The house rules (pyproject.toml [tool.ruff]): lint and formatting, checked, never rewritten here.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

# What a user's install must give: the command, its version and help, and the viewer's static files in the package
# (CI runs it on the wheel install; it names the install it checked).
wheel-check: $(STAMP)
	$(BIN)/pneumocam --version
	$(BIN)/pneumocam demo --help > /dev/null
	$(BIN)/python scripts/check_install.py

demo: $(STAMP)
	$(BIN)/pneumocam demo --out $(DEMO_OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache dist build
