"""Maps of 1M and 10M points in the dashboard: density raster + sample (lake/density.py) against the
previous code (a 60,000-point sample from DuckDB, refined on zoom), on the same synthetic lakes.

Per lake and code: first paint in headless Chromium (navigation → points laid out by Plotly), the map
callback's server time and payload for the whole map and for a filtered view, zoom refresh in the
browser (zoom to the central quarter → the view redrawn), and the lasso count (selection event → the
table callback that counts the polygon's points on the server). The app runs under gunicorn with its
warm-up (gunicorn.conf.py), as deployed; the worker's start-up time is reported too.

Usage: python bench/large_maps.py [--sizes 1000000 10000000] [--runs 7] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, save  # noqa: E402
from bench.dashboard import (browser, checkout, first_render, map_callback, navigate_until, renders, serve,  # noqa: E402
                             zoom_update)

#: A lasso around the middle of the synthetic map (map units; the synthetic clusters span about ±40).
LASSO = [[-20.0, -15.0], [25.0, -12.0], [18.0, 20.0], [-5.0, 24.0], [-24.0, 5.0]]


def _post(url: str, payload: dict) -> tuple[float, dict]:
    req = urllib.request.Request(url + "/_dash-update-component", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        body = resp.read()
    return time.perf_counter() - t0, json.loads(body)


def _dependency(url: str, writes: str, *, reads: str | None = None) -> dict:
    """The server's record of the (server-side) callback that writes ``writes`` (``id.property``) and, if
    given, reads ``reads``: its outputs differ between versions of the page."""
    with urllib.request.urlopen(url + "/_dash-dependencies", timeout=60) as resp:
        deps = json.loads(resp.read())
    return next(d for d in deps if writes in d["output"] and not d.get("clientside_function")
                and (reads is None or any(f"{i['id']}.{i['property']}" == reads for i in d["inputs"])))


def _outputs(output: str) -> list[dict[str, str]]:
    """A callback's ``outputs`` as Dash's renderer sends them, from its ``..a.b...c.d..`` output key."""
    return [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in output.strip(".").split("...")]


def lasso_count(url: str) -> tuple[float, float, str]:
    """(selection event s, table callback s, the selection's title): the lasso as the browser sends it."""
    state = [{"id": "map-emb", "property": "value", "value": "text"},
             {"id": "map-method", "property": "value", "value": "umap"}]
    selected = {"points": [], "lassoPoints": {"x": [p[0] for p in LASSO], "y": [p[1] for p in LASSO]}}
    t_select, reply = _post(url, {
        "output": "map-page-selection.data", "outputs": {"id": "map-page-selection", "property": "data"},
        "inputs": [{"id": "map-graph", "property": "selectedData", "value": selected},
                   {"id": "map-clear", "property": "n_clicks", "value": None}],
        "state": state, "changedPropIds": ["map-graph.selectedData"]})
    stored = reply["response"]["map-page-selection"]["data"]
    output = _dependency(url, "map-selection-title.children")["output"]
    t_table, reply = _post(url, {
        "output": output,
        "outputs": _outputs(output),
        "inputs": [{"id": "map-page-selection", "property": "data", "value": stored},
                   {"id": "map-cats", "property": "value", "value": []},
                   {"id": "map-years", "property": "value", "value": None}],
        "state": state, "changedPropIds": ["map-page-selection.data"]})
    return t_select, t_table, str(reply["response"]["map-selection-title"]["children"])


#: Views asked of the zoom callback over HTTP (x0, x1, y0, y1 in map units): quarters, eighths and
#: off-centre views of the synthetic map, each asked once, in this order.
ZOOM_VIEWS = [(-20.0, 20.0, -20.0, 20.0), (-10.0, 10.0, -10.0, 10.0), (-5.0, 5.0, -5.0, 5.0), (0.0, 20.0, 0.0, 20.0),
              (-30.0, 0.0, -10.0, 20.0), (-12.0, 12.0, -11.0, 11.0), (-3.0, 7.0, -3.0, 7.0), (5.0, 35.0, -25.0, 5.0),
              (-25.0, 25.0, -25.0, 25.0), (-8.0, 2.0, -2.0, 8.0), (10.0, 20.0, 10.0, 20.0), (-40.0, 40.0, -40.0, 40.0)]


def zoom_callbacks(url: str) -> list[float]:
    """Seconds of the zoom callback (the view's raster and sample) for each of :data:`ZOOM_VIEWS`, as the
    browser asks after a zoom: server time plus the local HTTP round trip, no drawing."""
    dep = _dependency(url, "map-note.children", reads="map-graph.relayoutData")
    values = {"map-thinned.data": True, "map-emb.value": "text", "map-method.value": "umap",
              "map-color.value": "category", "map-cats.value": [], "map-years.value": None}
    state = [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in dep["state"]]
    outputs = _outputs(dep["output"])
    times = []
    for x0, x1, y0, y1 in ZOOM_VIEWS:
        relayout = {"xaxis.range[0]": x0, "xaxis.range[1]": x1, "yaxis.range[0]": y0, "yaxis.range[1]": y1}
        seconds, _ = _post(url, {"output": dep["output"], "outputs": outputs, "state": state,
                                 "inputs": [{"id": "map-graph", "property": "relayoutData", "value": relayout}],
                                 "changedPropIds": ["map-graph.relayoutData"]})
        times.append(seconds)
    return times


#: Whether Plotly has laid out the map's WebGL sample (the first figure of this commit is SVG; the WebGL
#: figure replaces it once the page is idle).
WEBGL_LAID_OUT_JS = ("const gd = document.querySelector('#map-graph .js-plotly-plot');"
                     "return !!(gd && gd._fullData && gd._fullData.length && gd._fullData[0].type === 'scattergl');")


def webgl_sample_ready(driver, url: str) -> float:
    """Seconds from navigation to the map's WebGL sample laid out by Plotly."""
    return navigate_until(driver, url + "/", WEBGL_LAID_OUT_JS, what="the WebGL map")[0]


def measure(lake: Path, *, runs: int, label: str, repo: Path = REPO) -> dict:
    t0 = time.perf_counter()
    proc, url = serve(lake, repo=repo)
    started = time.perf_counter() - t0
    try:
        first = map_callback(url, [], None)
        whole = [map_callback(url, [], None) for _ in range(runs)]
        first_filtered = map_callback(url, ["Nebula", "Galaxy"], None)
        filtered = [map_callback(url, ["Nebula", "Galaxy"], None) for _ in range(runs)]
        zoom_server = zoom_callbacks(url)
        try:
            lassos = [lasso_count(url) for _ in range(3)]
        except urllib.error.HTTPError:  # earlier code: the selection holds only the points the browser has
            lassos = []
        driver = browser()
        try:
            first_render(driver, url)  # the browser's cache of the JS bundles
            drawn, pictures = renders(driver, url, runs)
            webgl = [webgl_sample_ready(driver, url) for _ in range(runs)]
            time.sleep(3)  # dcc.Graph binds its relayout handler a moment after the first draw
            zooms = []
            for _ in range(3):
                zooms.append(zoom_update(driver))
                # the count changes when the callback's reply lands; Plotly may still be drawing it (the
                # first zoom sets up WebGL): without a pause that work would be timed as the next zoom's
                time.sleep(1.5)
        finally:
            driver.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "lake": label,
        "server_ready_s": round(started, 1),
        "first_paint_s_median": round(median([r[0] for r in drawn]), 3),
        "first_paint_runs_s": [round(r[0], 3) for r in drawn],
        **pictures,
        "webgl_sample_s_median": round(median(webgl), 3),
        "webgl_sample_runs_s": [round(t, 3) for t in webgl],
        "points_drawn": drawn[0][1],
        "map_callback_first_ms": round(1000 * first[0], 1),
        "map_callback_ms_median": round(1000 * median([t for t, _ in whole]), 1),
        "payload_kb_whole_map": round(whole[0][1] / 1024, 1),
        "filter_callback_first_ms": round(1000 * first_filtered[0], 1),
        "filter_callback_ms_median": round(1000 * median([t for t, _ in filtered]), 1),
        "payload_kb_filtered": round(filtered[0][1] / 1024, 1),
        "zoom_refresh_s_median": round(median([z[0] for z in zooms]), 3),
        # three zooms in a row, each to the central quarter of the view before: the first one replaces
        # the page's first figure (in this commit, SVG → WebGL), the later ones redraw the zoomed view
        "zoom_refresh_runs_s": [round(z[0], 3) for z in zooms],
        "points_after_zoom": zooms[0][2],
        "zoom_callback_ms_median": round(1000 * median(zoom_server), 1),
        "zoom_callback_ms_max": round(1000 * max(zoom_server), 1),
        "zoom_callback_runs_ms": [round(1000 * t) for t in zoom_server],
    } | ({
        "lasso_select_ms_median": round(1000 * median([t for t, _, _ in lassos]), 1),
        "lasso_count_ms_first": round(1000 * lassos[0][1], 1),
        "lasso_count_ms_median": round(1000 * median([t for _, t, _ in lassos]), 1),
        "lasso_title": lassos[0][2],
    } if lassos else {"lasso_count": "not on the server (counts only the points the browser holds)"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", metavar="REV", help="also measure the code of this commit on the same lakes")
    ap.add_argument("--baseline-max", type=int, default=1_000_000,
                    help="largest lake the baseline is measured on (the synthetic 10M lake's dates run past "
                         "year 9999, which earlier code cannot show)")
    args = ap.parse_args()
    results: dict = {"sizes": {}}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="cosmic-atlas-large-") as tmp:
            subprocess.run([sys.executable, str(REPO / "bench" / "synthetic_lake.py"), tmp, "--n", str(n)], check=True)
            row = {"this": measure(Path(tmp), runs=args.runs, label=f"synthetic {n:,} points (this commit)")}
            print(json.dumps(row["this"], indent=2), flush=True)
            if args.baseline and n <= args.baseline_max:
                with checkout(args.baseline) as tree:
                    row["baseline"] = measure(Path(tmp), runs=args.runs, repo=tree,
                                              label=f"synthetic {n:,} points, code of {args.baseline}")
                    row["baseline"]["rev"] = args.baseline
                print(json.dumps(row["baseline"], indent=2), flush=True)
        results["sizes"][str(n)] = row
    results["targets"] = {"first_paint_s": {"1000000": 1.0, "10000000": 1.5}, "payload_kb": 1024}
    print("saved", save("large_maps", results))


if __name__ == "__main__":
    main()
