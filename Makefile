# The two commands of the README:  make run  (build the default lake if needed, start the dashboard)
#                                  make test (install everything, run the whole test suite)
# Everything installs into a project virtual environment (.venv), never into the system Python, so both
# work where the system interpreter refuses pip (PEP 668 "externally-managed-environment").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LAKE ?=
PORT ?= 8050
LAKE_ARG := $(if $(LAKE),--lake $(LAKE),)
BUILD_ARGS ?=

.PHONY: run lake test test-fast bench install browser clean-venv

$(PY):
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu: apt-get install python3-venv; then re-run make." >&2; exit 1; }

$(VENV)/.deps: requirements.txt requirements-dev.txt requirements-ray.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

install: $(VENV)/.deps

lake: $(VENV)/.deps
	$(PY) -m pipeline build $(LAKE_ARG) $(BUILD_ARGS)

run: lake
	$(PY) app.py --port $(PORT) $(LAKE_ARG)

browser: $(VENV)/.deps
	@bash scripts/install_chromium.sh

test: $(VENV)/.deps browser
	$(PY) -m pytest

test-fast: $(VENV)/.deps
	$(PY) -m pytest -m "not slow and not browser"

bench: $(VENV)/.deps browser
	$(PY) bench/build.py
	$(PY) bench/quantization.py
	$(PY) -m pipeline build $(LAKE_ARG)
	$(PY) bench/quality.py $(LAKE_ARG)
	$(PY) bench/visual_descriptors.py $(LAKE_ARG)
	$(PY) bench/picture_meaning.py $(LAKE_ARG)
	$(PY) bench/anomaly.py $(LAKE_ARG)
	$(PY) bench/multimodal.py $(LAKE_ARG)
	$(PY) bench/galaxies.py
	$(PY) bench/search_quality.py $(LAKE_ARG)
	$(PY) bench/text_vectors.py $(LAKE_ARG)
	$(PY) bench/passages.py $(LAKE_ARG)
	$(PY) bench/search_latency.py $(LAKE_ARG)
	$(PY) bench/dashboard.py $(LAKE_ARG)
	$(PY) bench/webgl_floor.py --runs 9
	$(PY) bench/ann.py
	$(PY) bench/sky_quality.py
	$(PY) bench/report.py

clean-venv:
	rm -rf $(VENV)
