#!/usr/bin/env bash
# Headless Chromium + ChromeDriver for the browser tests and benchmarks. Any installed pair is used
# (bench/common.py: chromium_paths — Debian's chromium/chromedriver, Ubuntu's snap, Google Chrome, or
# $CHROMIUM/$CHROMEDRIVER); without one, Debian's packages are installed (no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if "$PY" -c "import sys; sys.path.insert(0, '.'); from bench.common import chromium_paths; sys.exit(chromium_paths() is None)"; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "No headless Chromium found and no apt-get to install one: install Chromium and ChromeDriver," >&2
  echo "then set CHROMIUM and CHROMEDRIVER if they are not on PATH as chromium/chromedriver." >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian: chromium + chromium-driver; Ubuntu: chromium-browser (a snap that brings its chromedriver)
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
  || $SUDO apt-get install -y -qq chromium-browser >/dev/null
"$PY" -c "import sys; sys.path.insert(0, '.'); from bench.common import chromium_paths; found = chromium_paths(); print(*found) if found else sys.exit('installed, but no Chromium + ChromeDriver pair found: set CHROMIUM and CHROMEDRIVER')"
