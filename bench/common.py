"""Shared helpers for benchmarks: machine description, result files, and the headless Chromium that the
benchmarks and the browser tests drive."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import psutil

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parent / "data"
#: The hand-labelled category sets of ``bench/data`` (see its README): the tuning labels may choose
#: settings, the other set (what each *picture* shows) never does.
LABEL_SETS = {"tuning": "labelled_categories.csv", "never_tuned": "labelled_pictures.csv"}


#: Names a headless Chromium and its ChromeDriver go by: Debian's packages (``scripts/install_chromium.sh``),
#: Ubuntu's snap, Google's builds. ``$CHROMIUM`` / ``$CHROMEDRIVER`` (a path or a name) come first.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER_NAMES = ("chromedriver", "chromium.chromedriver")


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) executables for the browser tests and benchmarks, or None when either is missing."""
    def find(env: str, names: tuple[str, ...]) -> str | None:
        wanted = os.environ.get(env, "").strip()
        return shutil.which(wanted) if wanted else next(filter(None, map(shutil.which, names)), None)

    browser, driver = find("CHROMIUM", CHROMIUM_NAMES), find("CHROMEDRIVER", CHROMEDRIVER_NAMES)
    return (browser, driver) if browser and driver else None


#: Options every headless Chromium of the tests and benchmarks runs with (software WebGL: SwiftShader).
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-component-update", "--no-first-run", "--window-size=1400,1000")


class ChromiumMissing(RuntimeError):
    """No headless Chromium and ChromeDriver pair was found; the message says how to get one."""


def chromium(*, extra_args: tuple[str, ...] = (), prefs: dict[str, Any] | None = None,
             capabilities: dict[str, Any] | None = None):
    """A Selenium driver of headless Chromium with :data:`CHROMIUM_ARGS` (and ``extra_args``, Chrome
    ``prefs``, WebDriver ``capabilities``): the one set-up of the browser tests and the benchmarks."""
    found = chromium_paths()
    if found is None:
        raise ChromiumMissing("headless Chromium is missing: run scripts/install_chromium.sh (make test and make "
                              "bench do), or set CHROMIUM and CHROMEDRIVER to the browser's and its driver's "
                              "executables")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in (*CHROMIUM_ARGS, *extra_args):
        opts.add_argument(arg)
    for name, value in (capabilities or {}).items():
        opts.set_capability(name, value)
    if prefs:
        opts.add_experimental_option("prefs", prefs)
    return webdriver.Chrome(service=Service(found[1]), options=opts)


def cpu() -> str:
    """The processor's model and its widest vector extension (AVX-512, AVX2, …): 2-core machines of the
    same kind differ by these, and the int8 and BLAS kernels with them, so a number says where it came from."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, value in fields.items()}  # one CPU's (all of them are alike)
    model, flags = fields.get("model name", platform.machine()), set(fields.get("flags", "").split())
    widest = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
                   if flag in flags), None)
    return f"{model}, {widest}" if widest else model


def machine() -> dict[str, Any]:
    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": v("torch"),
        "umap-learn": v("umap-learn"),
        "openTSNE": v("openTSNE"),
        "lancedb": v("lancedb"),
        "duckdb": v("duckdb"),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "run_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def lake_label(path: Path | str) -> str:
    """How a lake is named in committed results: relative to the repository, never a machine's path."""
    path, repo = Path(path).resolve(), RESULTS.parent.parent
    try:
        return str(path.relative_to(repo))
    except ValueError:
        return f"<temporary>/{path.name}"


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and max in milliseconds of a list of request times in seconds, and how many."""
    import numpy as np

    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1), "n": len(seconds)}


def labelled_rows(pos: dict[str, int]) -> dict[str, tuple[Any, Any]]:
    """Per label set (:data:`LABEL_SETS`): the rows of its entries that ``pos`` (date → row) holds, in the
    file's order, and their categories, as two arrays."""
    import numpy as np
    import pandas as pd

    out = {}
    for name, file in LABEL_SETS.items():
        lab = pd.read_csv(DATA / file, dtype=str)
        lab = lab[lab.date.isin(pos)]
        out[name] = (np.array([pos[d] for d in lab.date]), lab.category.to_numpy())
    return out


def peak_rss(fn: Callable[[], Any], *, every: float = 0.2) -> tuple[Any, float, int, int]:
    """Run ``fn``; return (result, seconds, RSS before in bytes, peak RSS during in bytes, sampled every
    ``every`` seconds and once as ``fn`` returns)."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        out = fn()
        peak[0] = max(peak[0], proc.memory_info().rss)
    finally:
        done.set()
        sampler.join()
    return out, time.perf_counter() - t0, before, peak[0]
