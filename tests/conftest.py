"""Shared fixtures: small real datasets cut from the bundled archive, temporary lakes, a local HTTP
server, and the tiny OpenCLIP architecture used instead of downloadable weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY_CLIP = DATA / "tiny-clip-test.json"
ARCHIVE = REPO / "data" / "apod" / "apod_archive.parquet"
IMAGES = REPO / "data" / "apod" / "images"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub by accident
os.environ.setdefault("SIMBAD_TAP_URL", "http://127.0.0.1:9/simbad/sim-tap")
os.environ.setdefault("SESAME_URL", "http://127.0.0.1:9/")  # nor the CDS name resolver (closed local port)
os.environ.setdefault("GZ2_CUTOUT_URL", "http://127.0.0.1:9/cutout")  # nor SDSS's cutout service
# people's feedback labels go to a throw-away directory, never to the tester's own state directory
STATE_DIR = tempfile.mkdtemp(prefix="cosmic-atlas-state-")
os.environ["COSMIC_ATLAS_STATE"] = STATE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    """The throw-away state directory goes when the session ends (servers and builds have stopped)."""
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def archive_rows(start: str, end: str) -> list[dict]:
    """Real APOD rows (JSON-ready) between two dates, with bundled images referenced by path."""
    df = pd.read_parquet(ARCHIVE)
    df = df[(df.date.astype(str) >= start) & (df.date.astype(str) <= end)]
    rows = []
    for rec in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in rec.items()}
        rec["date"] = str(rec["date"])
        img = IMAGES / f"{rec['date']}.jpg"
        if img.is_file():
            rec["image_file"] = str(img)
        rows.append(rec)
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, default=str)) + "\n")
    return path


@contextmanager
def serve_dashboard(lake: str | Path, *, log: Path, env: dict | None = None, workers: int = 1,
                    start_timeout: float = 90) -> Iterator[str]:
    """The dashboard served by gunicorn as the Procfile serves it (``gunicorn.conf.py``, preloaded app,
    forked workers) over ``lake``, on a free local port; yields its base URL and stops it on leaving.
    The server's output goes to ``log`` (a file: a pipe nobody reads fills up and stalls the server),
    and its tail is the error when it does not start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:server", "-c", "gunicorn.conf.py", "--workers", str(workers),
             "--bind", f"127.0.0.1:{port}"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "COSMIC_ATLAS_LAKE": str(lake), **(env or {})}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start in {start_timeout:.0f} s:\n"
                                       + log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.3)
        yield url
    finally:  # the whole process group: a worker still warming up is not left behind
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)  # gunicorn's graceful timeout is 30 s
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline`` for real, in a subprocess, from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def component_with_id(layout, component_id: str):
    """The component of a Dash layout tree whose id is ``component_id`` (what a page's layout function
    returned, walked as Dash would serialise it)."""
    stack = [layout]
    while stack:
        component = stack.pop()
        if getattr(component, "id", None) == component_id:
            return component
        children = getattr(component, "children", None)
        stack += [c for c in (children if isinstance(children, (list, tuple)) else [children]) if hasattr(c, "to_plotly_json")]
    raise LookupError(f"no component with id {component_id!r} in the layout")


def dash_dependency(client, *, trigger: str, output: str = "") -> dict:
    """The dependency record of the callback that ``trigger`` (``id.property``) fires (the one whose
    outputs include ``output``, where several do)."""
    deps = client.get("/_dash-dependencies").get_json()
    return next(d for d in deps if any(f"{i['id']}.{i['property']}" == trigger for i in d["inputs"])
                and not d.get("clientside_function") and output in d["output"])


def fire_callback(client, trigger: str, values: dict[str, object], *, status: int = 200, output: str = "") -> dict | None:
    """Fire the callback of ``trigger`` (the one writing ``output``, where several are fired) with
    ``values`` (``id.property`` → value) as Dash's renderer does; its response (None for ``status`` 204:
    the callback prevented the update)."""
    dep = dash_dependency(client, trigger=trigger, output=output)

    def spec(items):
        return [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                for i in items]

    outputs = [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in dep["output"].strip(".").split("...")]
    payload = {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
               "inputs": spec(dep["inputs"]), "state": spec(dep["state"]), "changedPropIds": [trigger]}
    reply = client.post("/_dash-update-component", json=payload)
    assert reply.status_code == status, reply.data[:500]
    return reply.get_json()["response"] if status == 200 else None


def in_threads(work: Callable[[int], None], n: int) -> list[BaseException]:
    """Run ``work(i)`` for i in 0..n-1, each in its own thread, all at once (a barrier starts them
    together); the exceptions they raised."""
    barrier, errors = threading.Barrier(n), []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which asserts there are none
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def republish_categories(layout, version: str, *, manifest: dict | None = None) -> None:
    """A new version of the lake at ``layout`` in which only the categories table changed (every one
    "Galaxy"; the rest is hard-linked), its manifest updated with ``manifest``'s top-level sections."""
    import pyarrow as pa

    from lake.reader import LakeReader
    from lake.writer import LakeWriter

    cats = LakeReader(layout).query("SELECT * FROM categories")
    cats["category"] = "Galaxy"
    published = json.loads(layout.manifest.read_text()) | (manifest or {})
    LakeWriter(layout).publish_tables({"categories": pa.Table.from_pandas(cats, preserve_index=False)}, published,
                                      version=version)


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture(scope="session")
def small_dump(tmp_path_factory) -> Path:
    """About 60 real entries from early 2014 (a fifth with bundled images)."""
    path = tmp_path_factory.mktemp("dump") / "apod_2014q1.jsonl"
    return write_jsonl(path, archive_rows("2014-01-01", "2014-02-28"))


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Callable[["_Handler"], None]] = {}

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        handler = self.server.routes.get(path)  # type: ignore[attr-defined]
        if handler is None:
            self.send_error(404)
            return
        handler(self)

    def do_POST(self) -> None:  # noqa: N802
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 (a free port) answering with ``handler`` from a thread of its own,
    its address in ``server.url``; shut down on leaving."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1; tests add handlers to ``server.routes``."""
    with local_http_server(_Handler) as server:
        server.routes = {}  # type: ignore[attr-defined]
        server.requests = []  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items) -> None:
    """A test that uses the built demo lake is an end-to-end test: marked ``slow`` so the fast tier
    (``make test-fast``) never builds a lake, whatever its author remembered to mark."""
    no_gpu = None
    for item in items:
        if "demo_lake" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu"):
            if no_gpu is None:
                import torch

                no_gpu = not torch.cuda.is_available()
            if no_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none here"))


@pytest.fixture(scope="session")
def demo_app(demo_lake):
    """The dashboard (Dash app made by the app factory) over the demo lake, shared by the session."""
    from app import create_app

    app = create_app(lake=demo_lake)
    app.server.config["TESTING"] = True
    return app


@pytest.fixture(scope="session")
def demo_client(demo_app):
    return demo_app.server.test_client()


#: Demo-lake pictures kept out of the alignment's training (``--align-exclude``).
ALIGN_HOLDOUT = ("2014-01-13", "2014-02-18", "2014-03-15", "2014-04-05")


#: Galaxies of the demo lake's Galaxy Zoo collection (the bundled catalogue's first rows).
DEMO_GALAXIES = 300
#: The cutout service of the demo lake has no picture of every tenth of them (as SDSS has none outside
#: its footprint): the lake has galaxies without pictures, as a real one does.
DEMO_MISSING_EVERY = 10
DEMO_PICTURED = DEMO_GALAXIES - DEMO_GALAXIES // DEMO_MISSING_EVERY


def gz2_subset(path: Path, n: int) -> Path:
    """The first ``n`` galaxies of the bundled Galaxy Zoo catalogue, same columns, as a CSV file."""
    import pyarrow.csv as pacsv

    from pipeline.config import BUNDLED_GZ2

    table = pacsv.read_csv(BUNDLED_GZ2, convert_options=pacsv.ConvertOptions(
        column_types={"objid": "string"})).slice(0, n)
    pacsv.write_csv(table, path)
    return path


class CutoutServer:
    """A local stand-in for SDSS's cutout service: a synthetic spiral for each featured galaxy of the
    catalogue, an elliptical for the others (tests/galaxy_pictures.py), looked up by ra/dec; with
    ``missing_every`` n, a 404 for every n-th galaxy of the catalogue."""

    def __init__(self, catalogue: Path, *, missing_every: int | None = None) -> None:
        from urllib.parse import parse_qs, urlsplit

        from pipeline.galaxies import read_catalogue
        from tests.galaxy_pictures import render

        table = read_catalogue(catalogue)
        # keyed as the fetcher writes positions into the URL (6 decimals), so every galaxy is found
        rows = zip(*(table.column(c).to_pylist() for c in ("objid", "ra", "dec", "gz_class")))
        self.kinds = {(f"{ra:.6f}", f"{dec:.6f}"): ("spiral" if cls == "featured" else "smooth", int(o[-6:]))
                      for i, (o, ra, dec, cls) in enumerate(rows, 1) if not missing_every or i % missing_every}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                q = parse_qs(urlsplit(self.path).query)
                found = outer.kinds.get((q["ra"][0], q["dec"][0]))
                if found is None:
                    self.send_error(404)
                    return
                body = render(found[0], seed=found[1], size=int(q["width"][0]))
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._stack = ExitStack()
        self.url = self._stack.enter_context(local_http_server(Handler)).url + "/cutout"

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory) -> Path:
    """A real lake built through the CLI: the bundled archive's January–April 2014 (offline encoder) and
    the first 300 Galaxy Zoo galaxies, 270 with pictures fetched from a local cutout service."""
    lake = tmp_path_factory.mktemp("demo") / "lake"
    holdout = lake.parent / "align_holdout.txt"
    holdout.write_text("# pictures the text–picture space must never train on\n" + "\n".join(ALIGN_HOLDOUT) + "\n")
    catalogue = gz2_subset(lake.parent / "gz2_subset.csv", DEMO_GALAXIES)
    cutouts = CutoutServer(catalogue, missing_every=DEMO_MISSING_EVERY)
    try:
        proc = run_cli("build", "--encoder", "offline", "--no-progress", "--start", "2014-01-01", "--end", "2014-04-30",
                       "--align-exclude", str(holdout), "--lake", str(lake), "--gz2-catalogue", str(catalogue),
                       "--fetch-cutouts", "--cutout-url", cutouts.url)
    finally:
        cutouts.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return lake
