# Two commands do everything on a fresh machine:
#   make demo   - venv, Kafka, a worker, simulated listeners, live recommendation lists
#   make test   - venv, then every test (unit, doctests, integration against a real broker)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m stream demo

test: $(STAMP) chromium
	$(PY) -m pytest

# The dashboard's browser test drives Debian's headless Chromium (no browser download).
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	$(VENV)/bin/encore kafka stop 2>/dev/null || true
	rm -rf .encore .pytest_cache
