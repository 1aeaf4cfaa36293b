"""What Plotly itself costs in this browser, without Dash or the app: the floor under the map's
"interactive" time in bench/dashboard.py.

A plain page loads the installed Plotly bundle (the one dcc.Graph serves) from a local server on
127.0.0.1 and plots, in the same headless Chromium as the dashboard benchmark (software WebGL:
SwiftShader): a 3-point WebGL scatter, a 3-point SVG scatter, and an archive-sized map (11,382 random
points in 22 traces, binary arrays, as the Map page sends) drawn in WebGL and in SVG. *Plot* = ``Plotly.newPlot`` until
its promise resolves; *drawn* = until two animation frames later (the first frame shown). *WebGL
context* = creating one ``webgl`` context on a map-sized canvas with the attributes Plotly asks for;
a WebGL plot makes three of them (drawing, focus, picking). Medians of ``--runs`` loads after a
warm-up load (browser cache and compiled script warm).

Usage: python bench/webgl_floor.py [--runs 7]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, save  # noqa: E402
from bench.dashboard import browser  # noqa: E402

PAGE = """<!doctype html><html><head><meta charset="utf-8"><script src="plotly.min.js"></script></head>
<body><div id="g" style="width:1380px;height:680px"></div><script>
const variant = location.hash.slice(1);
function context() {
  const c = document.createElement('canvas'); c.width = 1380; c.height = 680;
  const t = performance.now();
  c.getContext('webgl', {preserveDrawingBuffer: true, antialias: true});
  return performance.now() - t;
}
fetch(variant + '.json').then(r => r.json()).then(fig => {
  window.contextMs = context();
  const t0 = performance.now();
  Plotly.newPlot('g', fig.data, fig.layout, {displaylogo: false}).then(() => {
    window.plotMs = performance.now() - t0;
    requestAnimationFrame(() => requestAnimationFrame(() => { window.drawnMs = performance.now() - t0; }));
  });
});
</script></body></html>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def figures(n: int = 11_382, traces: int = 22, seed: int = 0) -> dict[str, dict]:
    """The plotted figures: tiny WebGL, tiny SVG, and a map of ``n`` points in ``traces`` traces (WebGL, SVG)."""
    import base64

    rng = np.random.default_rng(seed)

    def binary(values: np.ndarray) -> dict:
        return {"dtype": "f4", "bdata": base64.b64encode(values.astype(np.float32).tobytes()).decode("ascii")}

    layout = {"margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False}, "yaxis": {"visible": False},
              "dragmode": "lasso", "hovermode": "closest"}
    tiny = {"x": [1, 2, 3], "y": [1, 3, 2], "mode": "markers"}
    parts = np.array_split(np.arange(n), traces)
    xy = rng.normal(size=(n, 2))
    archive = [{"type": "scattergl", "mode": "markers", "name": f"category {i}", "x": binary(xy[p, 0]),
                "y": binary(xy[p, 1]), "customdata": p.tolist(), "hoverinfo": "none",
                "marker": {"size": 4, "color": f"hsl({15 * i}, 70%, 45%)"}} for i, p in enumerate(parts)]
    return {"webgl_3_points": {"data": [{**tiny, "type": "scattergl"}], "layout": layout},
            "svg_3_points": {"data": [{**tiny, "type": "scatter"}], "layout": layout},
            "webgl_archive_map": {"data": archive, "layout": layout},
            "svg_archive_map": {"data": [{**t, "type": "scatter"} for t in archive], "layout": layout}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    import plotly

    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    with tempfile.TemporaryDirectory(prefix="cosmic-atlas-webgl-") as tmp:
        root = Path(tmp)
        (root / "index.html").write_text(PAGE)
        (root / "plotly.min.js").write_bytes(bundle.read_bytes())
        names = []
        for name, fig in figures().items():
            names.append(name)
            (root / f"{name}.json").write_text(json.dumps(fig))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = browser()
        results: dict = {}
        try:
            renderer = None
            for name in names:
                runs = []
                for i in range(args.runs + 1):  # the first load warms the cache and the compiled script
                    driver.get("about:blank")
                    driver.get(f"http://127.0.0.1:{server.server_port}/index.html#{name}")
                    deadline = time.monotonic() + 60
                    while driver.execute_script("return window.drawnMs === undefined"):
                        if time.monotonic() > deadline:
                            raise SystemExit(f"{name}: never drawn")
                        time.sleep(0.01)
                    if i:
                        runs.append(driver.execute_script("return [window.plotMs, window.drawnMs, window.contextMs]"))
                    renderer = renderer or driver.execute_script(
                        "const g = document.createElement('canvas').getContext('webgl');"
                        "const e = g && g.getExtension('WEBGL_debug_renderer_info');"
                        "return e ? g.getParameter(e.UNMASKED_RENDERER_WEBGL) : (g ? g.getParameter(g.RENDERER) : null);")
                plot, drawn, ctx = (np.array(runs)[:, i] for i in range(3))
                results[name] = {"plot_ms_median": round(median(list(plot)), 1),
                                 "drawn_ms_median": round(median(list(drawn)), 1),
                                 "webgl_context_ms_median": round(median(list(ctx)), 1),
                                 "runs_drawn_ms": [round(float(x), 1) for x in drawn]}
                print(name, json.dumps(results[name]), flush=True)
        finally:
            driver.quit()
            server.shutdown()
    print("saved", save("webgl_floor", {"runs": args.runs, "webgl_renderer": renderer,
                                        "plotly_js": plotly_js_version(bundle), **results}))


def plotly_js_version(bundle: Path) -> str:
    head = bundle.read_text(errors="ignore")[:200]
    return head.split("plotly.js v", 1)[1].split()[0] if "plotly.js v" in head else "?"


if __name__ == "__main__":
    main()
