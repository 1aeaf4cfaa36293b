# The two commands of the README:  make run  (build the default lake if needed, start the dashboard)
#                                  make test (install everything, run the whole test suite)
PYTHON ?= python3
LAKE ?=
PORT ?= 8050
LAKE_ARG := $(if $(LAKE),--lake $(LAKE),)

.PHONY: run lake test test-fast bench install browser

.deps: requirements.txt requirements-dev.txt
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	@touch .deps

install: .deps

lake: .deps
	$(PYTHON) -m pipeline build $(LAKE_ARG)

run: lake
	$(PYTHON) app.py --port $(PORT) $(LAKE_ARG)

browser:
	@bash scripts/install_chromium.sh

test: .deps browser
	$(PYTHON) -m pytest

test-fast: .deps
	$(PYTHON) -m pytest -m "not slow and not browser"

bench: .deps browser
	$(PYTHON) bench/build.py
	$(PYTHON) bench/quantization.py
	$(PYTHON) -m pipeline build $(LAKE_ARG)
	$(PYTHON) bench/quality.py $(LAKE_ARG)
	$(PYTHON) bench/visual_descriptors.py $(LAKE_ARG)
	$(PYTHON) bench/search_quality.py $(LAKE_ARG)
	$(PYTHON) bench/search_latency.py $(LAKE_ARG)
	$(PYTHON) bench/dashboard.py $(LAKE_ARG)
	$(PYTHON) bench/ann.py
	$(PYTHON) bench/sky_quality.py
	$(PYTHON) bench/report.py
