# Two commands: `make up` and `make test`. Everything else is what they call.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test e2e chromium install lint fmt clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/python -m starter.devstack

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The real-browser check: the stack, a request in review, the Temporal UI in headless Chromium.
e2e: $(STAMP)
	@command -v chromium >/dev/null || $(MAKE) chromium
	$(VENV)/bin/python -m pytest e2e -p no:cacheprovider

# Debian's chromium package (Playwright's browser download is not available here).
chromium:
	$$(command -v sudo || true) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $$(command -v sudo || true) apt-get install -y -q chromium

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .data
