"""The Map page's server callbacks through Dash's real HTTP endpoint (``/_dash-update-component``), on
a real (synthetic) lake of 70,000 points: thinning, the zoom refinement, and the Parquet download."""

from __future__ import annotations

import base64
import io

import pyarrow.parquet as pq
import pytest

from bench.synthetic_lake import write_synthetic_lake
from lake.queries import MAX_MAP_POINTS
from pages.ids import Map

N = 70_000


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app import create_app

    lake = write_synthetic_lake(tmp_path_factory.mktemp("synthetic") / "lake", n=N)
    app = create_app(lake=lake.root)
    c = app.server.test_client()
    c.get("/")  # Dash registers page callbacks on the first request
    return c


def _callback(client, *, trigger: str) -> dict:
    """The dependency record of the callback that ``trigger`` (``id.property``) fires."""
    deps = client.get("/_dash-dependencies").get_json()
    return next(d for d in deps if any(f"{i['id']}.{i['property']}" == trigger for i in d["inputs"])
                and not d.get("clientside_function"))


def _post(client, trigger: str, values: dict[str, object]) -> dict:
    """Fire the callback of ``trigger`` with ``values`` (``id.property`` → value) as Dash's renderer does."""
    dep = _callback(client, trigger=trigger)

    def spec(items):
        return [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                for i in items]

    outputs = [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in dep["output"].strip(".").split("...")]
    payload = {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
               "inputs": spec(dep["inputs"]), "state": spec(dep["state"]), "changedPropIds": [trigger]}
    reply = client.post("/_dash-update-component", json=payload)
    assert reply.status_code == 200, reply.data[:500]
    return reply.get_json()["response"]


def _points(figure: dict) -> list[tuple[float, float]]:
    return [(x, y) for t in figure["data"] for x, y in zip(_values(t["x"]), _values(t["y"]))]


def _values(column) -> list[float]:
    """Plotly columns arrive as lists or as typed arrays ({"dtype", "bdata"}) — decode both."""
    if isinstance(column, dict):
        import numpy as np

        return np.frombuffer(base64.b64decode(column["bdata"]), dtype=column["dtype"]).tolist()
    return list(column)


def _state(years=(1000, 1200)) -> dict[str, object]:
    return {f"{Map.EMB}.value": "text", f"{Map.METHOD}.value": "umap", f"{Map.COLOR}.value": "category",
            f"{Map.CATS}.value": [], f"{Map.YEARS}.value": list(years)}


def test_large_maps_are_thinned_and_zoom_refines_to_every_point_in_view(client):
    first = _post(client, f"{Map.CATS}.value", _state())
    overview = _points(first[Map.GRAPH]["figure"])
    assert len(overview) == MAX_MAP_POINTS and first[Map.THINNED]["data"] is True
    assert f"{N:,} entries" in str(first[Map.COUNT]["children"])
    xs, ys = sorted(p[0] for p in overview), sorted(p[1] for p in overview)
    box = (xs[len(xs) // 3], xs[len(xs) // 2], ys[len(ys) // 3], ys[len(ys) // 2])
    relayout = {"xaxis.range[0]": box[0], "xaxis.range[1]": box[1], "yaxis.range[0]": box[2], "yaxis.range[1]": box[3]}
    zoomed = _post(client, f"{Map.GRAPH}.relayoutData",
                   {**_state(), f"{Map.GRAPH}.relayoutData": relayout, f"{Map.THINNED}.data": True})
    inside = _points(zoomed[Map.GRAPH]["figure"])
    in_overview = [p for p in overview if box[0] <= p[0] <= box[1] and box[2] <= p[1] <= box[3]]
    assert all(box[0] <= x <= box[1] and box[2] <= y <= box[3] for x, y in inside)
    assert len(in_overview) < len(inside) < MAX_MAP_POINTS  # every point of the view, more than the sample had
    assert str(zoomed[Map.COUNT]["children"]) == f"{len(inside):,} entries"  # all drawn: no longer thinned


def test_selection_downloads_as_parquet_with_credits_and_licence(client):
    dates = ["1000-01-01", "1000-01-05", "1000-03-01"]
    got = _post(client, f"{Map.DL_PARQUET}.n_clicks",
                {**_state(), f"{Map.DL_PARQUET}.n_clicks": 1, f"{Map.PAGE_SELECTION}.data": dates})
    download = got[Map.DOWNLOAD]["data"]
    assert download["filename"].endswith(".parquet") and download["base64"]
    table = pq.read_table(io.BytesIO(base64.b64decode(download["content"])))
    assert sorted(table.column("date").to_pylist()) == dates
    assert {"title", "credit", "copyright", "licence_note"} <= set(table.column_names)
    assert b"licence" in table.schema.metadata


def test_hover_card_and_selection_read_the_day_numbers(client):
    """Points carry day numbers; the hover card asks the server for the title and category, the lasso
    turns them back into dates."""
    from pages.figures import date_of, day_numbers

    first = _post(client, "map-emb.value", {"map-emb.value": "text", "map-method.value": "umap",
                                            "map-color.value": "category", "map-cats.value": [],
                                            "map-years.value": None})
    day = first["map-graph"]["figure"]["data"][0]["customdata"][0]
    assert isinstance(day, int)
    card = _post(client, "map-graph.hoverData", {"map-graph.hoverData": {"points": [
        {"customdata": day, "bbox": {"x0": 1, "x1": 2, "y0": 3, "y1": 4}}]}})
    assert card["map-tooltip"]["show"] is True
    assert date_of(day) in str(card["map-tooltip"]["children"])
    picked = _post(client, "map-graph.selectedData", {"map-graph.selectedData": {"points": [
        {"customdata": day}, {"customdata": int(day_numbers(["2001-01-01"])[0])}]}})
    assert picked["map-page-selection"]["data"] == sorted({date_of(day), "2001-01-01"})
