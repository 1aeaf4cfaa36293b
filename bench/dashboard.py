"""Dashboard speed: map page first render in headless Chromium (warm cache, and a first visit over an
emulated home connection), payload size, filter callback time, optionally a synthetic lake
(--synthetic N; maps past 200,000 points: bench/large_maps.py).

The app runs under gunicorn with gunicorn.conf.py (its warm-up and 4 threads), in 1 worker (the
Procfile runs 2). "Server time" is the wall time of the real HTTP request to Dash's callback endpoint
(``/_dash-update-component``) from this process.

Usage: python bench/dashboard.py [--lake DIR] [--runs 5] [--synthetic N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import ChromiumMissing, chromium, lake_label, median, save  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(lake: Path, *, config: bool = True, repo: Path = REPO, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """gunicorn as in the Procfile (``config=False``: without gunicorn.conf.py, i.e. no worker warm-up);
    ``repo``: the code to serve (a checkout of an earlier commit, for a before/after in one run);
    ``workers``: one by default, so that every request meets the same warm process (the Procfile's
    config runs two)."""
    port = free_port()
    # gunicorn reads ./gunicorn.conf.py by itself: the baseline names an empty config instead
    conf = ["-c", "gunicorn.conf.py"] if config else ["-c", "/dev/null", "--threads", "4", "--timeout", "300"]
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "app:server", *conf, "--workers", str(workers),
                             "--bind", f"127.0.0.1:{port}"], cwd=repo,
                            env={**os.environ, "COSMIC_ATLAS_LAKE": str(lake)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise SystemExit("server did not start")


def stop(*procs: subprocess.Popen) -> None:
    """Stop servers: every one asked first, then each waited for (killed after 30 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def checkout(rev: str):
    """The repository at ``rev`` in a temporary git worktree (removed afterwards)."""
    tmp = Path(tempfile.mkdtemp(prefix="cosmic-atlas-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tmp), rev], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield tmp
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tmp)], cwd=REPO, check=False)


#: The map callback's inputs as the benchmark sets them, by component id (categories and years per call).
MAP_INPUTS = {"map-emb": "text", "map-method": "umap", "map-color": "category"}


@functools.lru_cache(maxsize=None)
def map_callback_spec(url: str) -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The served map callback as Dash names it: its output string (``..map-graph.figure...``), its
    outputs (id, property) and its inputs' ids, in order. Asked of the app itself: the code of a
    baseline commit may have other outputs or inputs than this one's, and a request naming others is
    refused (HTTP 500)."""
    with urllib.request.urlopen(url + "/_dash-dependencies", timeout=60) as resp:
        callbacks = json.loads(resp.read())
    for cb in callbacks:
        output = cb["output"]
        if output.strip(".").startswith("map-graph.figure") and any(i["id"] == "map-cats" for i in cb["inputs"]):
            parts = output[2:-2].split("...") if output.startswith("..") else [output]
            return (output, tuple(tuple(part.rsplit(".", 1)) for part in parts),
                    tuple(i["id"] for i in cb["inputs"]))
    raise SystemExit(f"{url} has no map callback (map-graph.figure from map-cats)")


def map_callback(url: str, cats: list[str], years: list[int]) -> tuple[float, int]:
    """One real POST of the map callback; returns (seconds, response bytes)."""
    output, outputs, input_ids = map_callback_spec(url)
    values = MAP_INPUTS | {"map-cats": cats, "map-years": years}
    unknown = [i for i in input_ids if i not in values]
    if unknown:
        raise SystemExit(f"{url}'s map callback has inputs this benchmark does not set: {', '.join(unknown)}")
    payload = {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": "value", "value": values[i]} for i in input_ids],
        "changedPropIds": ["map-cats.value"],
        "state": [],
    }
    req = urllib.request.Request(url + "/_dash-update-component", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as resp:
        body = resp.read()
    return time.perf_counter() - t0, len(body)


def browser():
    """The benchmarks' headless Chromium; a clear exit when there is none."""
    try:
        return chromium()
    except ChromiumMissing as exc:
        raise SystemExit(str(exc)) from None


#: Points Plotly has laid out, from ``_fullData`` (filled by the plot call, binary arrays decoded), the
#: same moment for JSON-list and binary payloads.
POINTS_JS = ("const gd = document.querySelector('#map-graph .js-plotly-plot');"
             "return gd && gd._fullData ? gd._fullData.reduce((s, t) => s + (t.customdata && t.customdata.length"
             " ? t.customdata.length : 0), 0) : 0;")


#: When the map's preview picture was painted (seconds after navigation start; None without one): its
#: largest-contentful-paint entry, the browser's own paint time for the element.
PICTURE_PAINT_JS = """
    const done = arguments[arguments.length - 1];
    new PerformanceObserver(list => {
        const hit = list.getEntries().find(e => e.element && e.element.classList.contains('atlas-map-preview'));
        done(hit ? hit.startTime / 1000 : null);
    }).observe({type: 'largest-contentful-paint', buffered: true});
    setTimeout(() => done(null), 2000);"""


def picture_paint(driver) -> float | None:
    """Seconds from navigation start to the paint of the map's preview picture (None: no picture)."""
    return driver.execute_async_script(PICTURE_PAINT_JS)


def renders(driver, url: str, runs: int) -> tuple[list[tuple[float, int, int]], dict]:
    """``runs`` first renders (:func:`first_render`) and, as result fields, when the map's picture was
    painted in each (:func:`picture_paint`)."""
    out, pictures = [], []
    for _ in range(runs):
        out.append(first_render(driver, url))
        pictures.append(picture_paint(driver))
    return out, picture_fields(pictures)


def picture_fields(pictures: list[float | None]) -> dict:
    """The result fields of when the map's picture was painted in each run (None: no picture)."""
    return {"picture_paint_s_median": round(median(pictures), 3) if None not in pictures else None,
            "picture_paint_runs_s": [None if p is None else round(p, 3) for p in pictures]}


def navigate_until(driver, url: str, condition_js: str, *, what: str, timeout: float = 120.0) -> tuple[float, object]:
    """Navigate to ``url`` from a blank page and poll ``condition_js`` until it returns something truthy:
    (seconds from navigation, that value). Stops the benchmark, naming ``what``, after ``timeout``."""
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(url)
    while not (value := driver.execute_script(condition_js)):
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{what} never came ({url})")
        time.sleep(0.01)
    return time.perf_counter() - t0, value


def first_render(driver, url: str, query: str = "") -> tuple[float, int, int]:
    """Seconds from navigation to the first drawn points, points drawn, bytes transferred (the picture
    painted before them: :func:`picture_paint`)."""
    elapsed, n = navigate_until(driver, url + "/" + query, POINTS_JS, what="the map's points")
    transferred = driver.execute_script(
        "return performance.getEntriesByType('resource').reduce((s, e) => s + (e.transferSize || 0), 0)"
        " + performance.getEntriesByType('navigation')[0].transferSize;")
    return elapsed, n, transferred


#: The link of a first visit (Chrome's network emulation, which holds for 127.0.0.1 too): a home connection
#: of 20 Mbit/s down, 5 Mbit/s up, 40 ms round trip.
HOME_LINK = {"offline": False, "latency": 40, "downloadThroughput": 20e6 / 8, "uploadThroughput": 5e6 / 8}
NO_EMULATION = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}


#: The encoding the server chose for this browser (a HEAD request for the page, as the browser sends it;
#: "identity" where the reply is not compressed).
ENCODING_JS = """
    const done = arguments[arguments.length - 1];
    fetch(location.href, {method: 'HEAD', cache: 'no-store'})
        .then(r => done(r.headers.get('content-encoding') || 'identity'), e => done('error: ' + e));"""


def first_visit(driver, url: str) -> tuple[float, float | None, int, str]:
    """A first visit to the map over :data:`HOME_LINK`, the browser's cache (and the compiled code kept with
    it) emptied first: (seconds to the interactive map, to the map's picture, bytes transferred, the
    encoding the server chose). Chromium offers zstd and Brotli to 127.0.0.1 as to HTTPS sites, gzip and
    deflate only to other plain-HTTP ones."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", HOME_LINK)
    try:
        elapsed, _, transferred = first_render(driver, url)
        picture = picture_paint(driver)
    finally:
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", NO_EMULATION)
    return elapsed, picture, transferred, driver.execute_async_script(ENCODING_JS)


#: Pages whose callbacks are timed on load (server time of every ``_dash-update-component`` request).
PAGES = ("/", "/?color=cluster", "/?emb=image&method=tsne", "/categories", "/entry/2014-01-07", "/entry/2021-07-04",
         "/search?q=dust+lanes+in+spiral+galaxies", "/sky", "/oddities", "/galaxies", "/metrics")

CALLBACKS_JS = ("return performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update-component'))"
                ".map(e => e.responseStart - e.requestStart);")


def page_loads(driver, url: str) -> dict[str, list[float]]:
    """One load of every page: its callbacks' server times (request sent → first byte), in ms."""
    out = {}
    for page in PAGES:
        driver.get("about:blank")
        driver.get(url + page)
        time.sleep(2.5)  # late callbacks (hover cards are not triggered)
        out[page] = driver.execute_script(CALLBACKS_JS)
    return out


def callback_stats(loads: list[dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per page: p50/p95/max of its callbacks' server time over ``loads`` (:func:`page_loads`), and how many
    callbacks a load fires."""
    out = {}
    for page in PAGES:
        ms = sorted(t for load in loads for t in load[page])
        out[page] = {"p50_ms": round(ms[len(ms) // 2], 1) if ms else 0.0,
                     "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1) if ms else 0.0,
                     "max_ms": round(max(ms), 1) if ms else 0.0,
                     "callbacks_per_load": max(len(load[page]) for load in loads)}
    return out


def zoom_update(driver) -> tuple[float, int, int]:
    """Zoom to the central quarter and wait until the thinned map is refined with the view's points."""
    before = driver.execute_script(POINTS_JS)
    count = driver.find_element("id", "map-count").text  # before the zoom: a fast reply can land first
    t0 = time.perf_counter()
    driver.execute_script("""
        const gd = document.querySelector('#map-graph .js-plotly-plot');
        const xr = gd._fullLayout.xaxis.range, yr = gd._fullLayout.yaxis.range;
        const cx = (xr[0] + xr[1]) / 2, cy = (yr[0] + yr[1]) / 2, dx = (xr[1] - xr[0]) / 8, dy = (yr[1] - yr[0]) / 8;
        Plotly.relayout(gd, {'xaxis.range[0]': cx - dx, 'xaxis.range[1]': cx + dx,
                             'yaxis.range[0]': cy - dy, 'yaxis.range[1]': cy + dy});
    """)
    while driver.find_element("id", "map-count").text == count:
        if time.perf_counter() - t0 > 120:
            raise SystemExit("zoom never refined")
        time.sleep(0.01)
    return time.perf_counter() - t0, before, driver.execute_script(POINTS_JS)


def measure(lake: Path, runs: int, label: str, zoom: bool, repo: Path = REPO) -> dict:
    """One code version (``repo``) serving ``lake``: :func:`measure_in_turns` of it alone."""
    return measure_in_turns(lake, runs, {"this": (label, repo)}, zoom=zoom)["this"]


def measure_in_turns(lake: Path, runs: int, versions: dict[str, tuple[str, Path]], zoom: bool = False) -> dict:
    """Each code version of ``versions`` (key → (label, repo)) serving ``lake`` at once, measured in turns:
    run after run, every version once, so that a drift of the machine or the browser over the minutes of
    a benchmark (the interactive map's times here fall in two groups, ≈ 1.1 s and ≈ 1.9 s, by the
    software renderer's mood) touches them alike. Returns key → the version's results."""
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for key, (_, repo) in versions.items():
            servers[key] = serve(lake, repo=repo)
        return _measure_served({key: url for key, (_, url) in servers.items()}, runs, versions, zoom=zoom)
    finally:
        stop(*(proc for proc, _ in servers.values()))


def _measure_served(urls: dict[str, str], runs: int, versions: dict[str, tuple[str, Path]], *, zoom: bool) -> dict:
    """:func:`measure_in_turns` once the servers answer (``urls``: key → its server's address)."""
    whole, chosen = ([], [1000, 3999]), (["Nebula", "Galaxy"], [2000, 2020])  # (categories, years)
    acc = {key: {"unfiltered": [], "filtered": [], "drawn": [], "pictures": [], "loads": [], "zooms": [], "visits": []}
           for key in urls}
    for key, url in urls.items():
        acc[key]["first_unfiltered"] = map_callback(url, *whole)  # also warms the worker
    for _ in range(runs):
        for key, url in urls.items():
            acc[key]["unfiltered"].append(map_callback(url, *whole))
    for key, url in urls.items():
        acc[key]["first_filtered"] = map_callback(url, *chosen)  # a view nobody asked for yet
    for _ in range(runs):
        for key, url in urls.items():
            acc[key]["filtered"].append(map_callback(url, *chosen))
    driver = browser()
    try:
        for url in urls.values():
            first_render(driver, url)  # warm browser cache of the JS bundles
        for _ in range(runs):
            for key, url in urls.items():
                acc[key]["drawn"].append(first_render(driver, url))
                acc[key]["pictures"].append(picture_paint(driver))
        for _ in range(runs):
            for key, url in urls.items():
                acc[key]["visits"].append(first_visit(driver, url))
        for url in urls.values():
            first_render(driver, url)  # each version's bundles back in the cache for the page loads below
        if zoom:
            for key, url in urls.items():
                first_render(driver, url)
                time.sleep(3)  # dcc.Graph binds its relayout handler after the first draw completes
                acc[key]["zooms"] = [zoom_update(driver) for _ in range(min(runs, 3))]
        else:
            for _ in range(3):
                for key, url in urls.items():
                    acc[key]["loads"].append(page_loads(driver, url))
    finally:
        driver.quit()
    return {key: _results(versions[key][0], a) for key, a in acc.items()}


def _results(label: str, a: dict) -> dict:
    drawn, pictures = a["drawn"], a["pictures"]
    out = {
        "lake": label,
        "filter_callback_ms_median": round(1000 * median([t for t, _ in a["filtered"]]), 1),
        "filter_callback_first_ms": round(1000 * a["first_filtered"][0], 1),
        "map_callback_first_ms": round(1000 * a["first_unfiltered"][0], 1),
        "page_callbacks": callback_stats(a["loads"]) if a["loads"] else {},
        "map_callback_ms_median": round(1000 * median([t for t, _ in a["unfiltered"]]), 1),
        "map_callback_payload_kb": round(a["unfiltered"][0][1] / 1024, 1),
        "first_render_s_median": round(median([r[0] for r in drawn]), 3),
        "first_render_runs_s": [round(r[0], 3) for r in drawn],
        **picture_fields(pictures),
        "points_drawn": drawn[0][1],
        "page_transfer_kb_warm_cache": round(drawn[0][2] / 1024, 1),
        "in_turns": True,
    }
    if a["visits"]:
        visits = a["visits"]
        out |= {"first_visit_interactive_s_median": round(median([v[0] for v in visits]), 3),
                "first_visit_picture_s_median": round(median([v[1] for v in visits]), 3) if all(v[1] for v in visits)
                else None,
                "first_visit_transfer_kb_median": round(median([v[2] for v in visits]) / 1024, 1),
                "first_visit_encodings": sorted({v[3] for v in visits}),
                "first_visit_runs_s": [[round(v[0], 3), v[1] and round(v[1], 3)] for v in visits]}
    if a["zooms"]:
        zooms = a["zooms"]
        out |= {"zoom_refine_s_median": round(median([z[0] for z in zooms]), 3),
                "points_before_zoom": zooms[0][1], "points_after_zoom": zooms[0][2]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--synthetic", type=int, default=0,
                    help="also a synthetic lake of N points (maps past 200,000 points: bench/large_maps.py)")
    ap.add_argument("--baseline", metavar="REV", help="also measure the code of this commit on the archive")
    args = ap.parse_args()
    lake = LakeLayout.at(args.lake).root
    this = (f"built lake ({lake_label(lake)})", REPO)
    if args.baseline:  # both served at once and measured in turns
        with checkout(args.baseline) as tree:
            both = measure_in_turns(lake, args.runs, {"archive": this,
                                                      "archive_baseline": (f"built lake, code of {args.baseline}", tree)})
        results = {"archive": both["archive"], "archive_baseline": both["archive_baseline"] | {"rev": args.baseline}}
    else:
        results = {"archive": measure(lake, args.runs, this[0], zoom=False)}
    print(json.dumps(results, indent=2), flush=True)
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, str(REPO / "bench" / "synthetic_lake.py"), tmp, "--n", str(args.synthetic)],
                           check=True)
            results["synthetic"] = measure(Path(tmp), args.runs, f"synthetic {args.synthetic:,} points", zoom=True)
        print(json.dumps(results["synthetic"], indent=2))
    results["targets"] = {"first_render_s": 1.5, "filter_callback_ms": 150}
    results["runs"] = args.runs
    print("saved", save("dashboard", results))


if __name__ == "__main__":
    main()
