# The two set-up commands work on a bare machine with Python 3.11+:
# `make dev` starts the service with an embedded Redis, `make test` runs
# every test. Both install uv (into ~/.local/bin) when it is missing.

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTHON ?= python3

.PHONY: dev test lint fmt check-deploy uv

# Try pip (a user install), then pip past PEP 668's guard, then uv's own
# installer; all three put uv into ~/.local/bin.
$(UV):
	@echo "uv not found: installing it into $(HOME)/.local/bin"
	$(PYTHON) -m pip install --user --quiet uv 2>/dev/null || \
	$(PYTHON) -m pip install --user --quiet --break-system-packages uv \
		2>/dev/null || \
	curl -LsSf https://astral.sh/uv/install.sh | sh

uv: $(UV)

dev: $(UV)
	$(UV) sync --locked
	$(UV) run timer-wheel dev

test: $(UV)
	$(UV) sync --locked
	$(UV) run pytest

lint: $(UV)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

fmt: $(UV)
	$(UV) run ruff check --fix .
	$(UV) run ruff format .
