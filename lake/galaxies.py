"""The questions the app asks of the Galaxy Zoo collection: look-alikes of a picture, morphology
neighbours, the neighbourhood's statistics beside their random baselines, maps and selections.

Like :mod:`lake.queries`, pages never see SQL or files: every user value is a query parameter, table
and column names come from :mod:`lake.galaxy_schema`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from atlas import galaxy_stats
from lake import vectors
from lake.galaxy_schema import (ANSWERS, GZ2_LICENCE_NOTE, IMAGE_KIND, MORPHOLOGY_KIND, REACH, SUMMARY, is_objid,
                                summary_values)
from lake.reader import LakeReader

if TYPE_CHECKING:
    from PIL import Image

#: Most neighbours one request may ask for.
MAX_K = 100
#: Galaxies in one download (API and Galaxies page): a lasso over the whole map is 19,761 in GZ2's sample.
MAX_SELECTION = 25_000
#: Columns of a galaxy listing (results, selections, downloads), besides the answer fractions.
LISTING = ("objid", "ra", "dec", "gz_class", "total_votes", "has_image")
#: Where the app serves a galaxy's cutout (the lake keeps them beside its versions).
CUTOUT_ROUTE = "/cutouts/gz2"
SDSS_NAVIGATE = "https://skyserver.sdss.org/dr18/VisualTools/navi?ra={ra:.5f}&dec={dec:.5f}&scale=0.2"


#: Why rows picked on a galaxy map drawn from another build name no galaxy (:meth:`GalaxyQueries.objids_at`).
MAP_CHANGED = ("the map was drawn from another build of the lake than this server's (a new build changed it): "
               "reload the page and select again")


class GalaxyError(ValueError):
    """A request the collection cannot answer; the message says what to do."""


class GalaxiesMissing(GalaxyError):
    """What was asked needs a part of the collection this lake lacks (the collection, or its pictures):
    the lake's limit, not the request's fault (the API answers 503, as for a lake without APOD)."""


class UnknownGalaxy(LookupError):
    """No galaxy (or no picture of it) under that objid in this lake."""


@dataclass(frozen=True)
class Neighbourhood:
    """Galaxies found for one query, with their morphology and sky statistics against chance."""

    galaxies: pd.DataFrame  # LISTING columns + p_* + distance (+ cutout flag)
    morphology: list[dict[str, Any]]  # per SUMMARY answer: neighbours' mean [CI], base rate, random range
    sky: dict[str, float]
    query: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        from lake.records import records

        return {"query": self.query, "galaxies": records(self.galaxies), "morphology": self.morphology,
                "sky_dispersion": self.sky}


class GalaxyQueries:
    """Galaxy Zoo 2 side of one lake version (thread-safe; arrays are loaded once per version)."""

    def __init__(self, reader: LakeReader, encoder_factory: Callable[[dict[str, Any]], Any]) -> None:
        self.reader = reader
        self._encoder_factory = encoder_factory
        self._lock = threading.Lock()
        self._tables: dict[str, Any] = {}
        self._baselines: dict[tuple[str, int], tuple[list[galaxy_stats.Interval], np.ndarray]] = {}
        self._map_points: dict[str, pd.DataFrame] = {}
        self._map_keys: dict[str, str] = {}

    # -- what is there ---------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return "galaxies" in self.reader.tables

    def _require(self) -> None:
        if not self.available:
            raise GalaxiesMissing("This lake has no Galaxy Zoo collection. Build it with: "
                              "python -m pipeline build --collection gz2")

    @cached_property
    def _arrays(self) -> dict[str, Any]:
        """Unit sky vectors, summary fractions and their weights (:func:`summary_values`) and which
        galaxies have a picture, of every galaxy, for the baselines (one read)."""
        self._require()
        answers = dict.fromkeys([*SUMMARY, *(a for via in REACH.values() for a in via)])
        cols = ", ".join(f"p_{n}" for n in answers)
        df = self.reader.query(f"SELECT ra, dec, has_image, {cols} FROM galaxies ORDER BY objid")
        values, weights = summary_values(lambda n: df[f"p_{n}"])
        return {"xyz": galaxy_stats.unit_vectors(df.ra, df.dec), "summary": values, "weights": weights,
                "has_image": df.has_image.to_numpy(bool)}

    def _random_baselines(self, size: int, *, space: str) -> tuple[list[galaxy_stats.Interval], np.ndarray]:
        """Means of random sets of ``size`` galaxies and their sky dispersions, drawn from the galaxies a
        search in ``space`` can return: every galaxy by morphology, those with a picture by picture (a
        lake holding the cutouts of one stretch of sky only compared look-alikes with random sets from
        the whole catalogue, and found every set "tighter on the sky than chance"). They depend on the
        space and the size only (fixed seeds): each is drawn once per lake version, not on every query."""
        with self._lock:
            known = self._baselines.get((space, size))
        if known is None:  # drawn outside the lock the tables and maps take (up to ≈ 0.3 s at k = 100): two
            arrays = self._arrays  # requests may both draw it, with the same seeds, so the same numbers
            rows = arrays["has_image"] if space == IMAGE_KIND else slice(None)
            known = (galaxy_stats.random_mean_range(arrays["summary"][rows], size, weights=arrays["weights"][rows]),
                     galaxy_stats.random_dispersions(arrays["xyz"][rows], size))
            with self._lock:
                known = self._baselines.setdefault((space, size), known)
        return known

    def summary(self) -> dict[str, Any]:
        """Counts, classes and base rates of the collection (what the page shows before any query)."""
        self._require()
        counts = self.reader.query("SELECT count(*) AS n, count(*) FILTER (WHERE has_image) AS pictures "
                                   "FROM galaxies").iloc[0]
        classes = self.reader.query("SELECT gz_class, count(*) AS n FROM galaxies GROUP BY 1 ORDER BY 2 DESC")
        base = galaxy_stats.weighted_means(self._arrays["summary"], self._arrays["weights"])
        return {"galaxies": int(counts.n), "with_picture": int(counts.pictures),
                "classes": dict(zip(classes.gz_class, classes.n.astype(int))),
                "base_rates": {n: None if np.isnan(v) else round(float(v), 4) for n, v in zip(SUMMARY, base)},
                "picture_search": self.has_pictures}

    @property
    def has_pictures(self) -> bool:
        return self.available and self._has_vector_table(IMAGE_KIND)

    def _has_vector_table(self, kind: str) -> bool:
        try:
            self._table(kind)
            return True
        except (KeyError, FileNotFoundError, ValueError):  # GalaxiesMissing is a ValueError
            return False

    def _table(self, kind: str):
        with self._lock:
            if kind not in self._tables:
                if not self.reader.layout.galaxy_vectors.is_dir():  # connecting would create it
                    raise GalaxiesMissing(f"This lake has no galaxy vectors ({kind}); rebuild it with "
                                          "python -m pipeline build --collection gz2")
                self._tables[kind] = vectors.open_table(self.reader.layout.galaxy_vectors, kind)
            return self._tables[kind]

    # -- listings --------------------------------------------------------------------------------
    def galaxies(self, objids: Sequence[str]) -> pd.DataFrame:
        """Rows of the given galaxies in the given order (unknown ids are left out)."""
        self._require()
        ids = [str(o) for o in objids]
        if not ids:
            return _with_links(self.reader.query(f"SELECT {self._listing()} FROM galaxies LIMIT 0"))
        df = self.reader.query(f"SELECT {self._listing()} FROM galaxies WHERE objid IN (SELECT unnest($ids))",
                               {"ids": ids})
        order = {o: i for i, o in enumerate(ids)}
        df = df.assign(_o=df.objid.map(order)).sort_values("_o").drop(columns="_o").reset_index(drop=True)
        return _with_links(df)

    @staticmethod
    def _listing() -> str:
        return ", ".join([*LISTING, *(f"p_{n}" for n in ANSWERS)])

    def galaxy(self, objid: str) -> dict[str, Any]:
        df = self.galaxies([objid])
        if df.empty:
            raise UnknownGalaxy(f"no galaxy with objid {objid!r} in this collection")
        return df.iloc[0].to_dict()

    def sample(self, n: int = 12, *, seed: int = 0) -> pd.DataFrame:
        """A few galaxies to start from (with pictures first when the lake has them)."""
        self._require()
        return _with_links(self.reader.query(
            f"SELECT {self._listing()} FROM galaxies ORDER BY has_image DESC, hash(objid || $seed) LIMIT $n",
            {"n": int(n), "seed": str(seed)}))

    def map_points(self, space: str = MORPHOLOGY_KIND) -> pd.DataFrame:
        """One map's galaxies in objid order: the row number is how the page's map refers to a galaxy
        (a small integer ``customdata`` instead of a 19-digit string per point; :meth:`objids_at`).
        Read once per lake version and space; treat it as read-only."""
        self._require()
        if "galaxy_maps" not in self.reader.tables:
            return pd.DataFrame(columns=["objid", "x", "y", "cluster", "cluster_label", "gz_class", "has_image"])
        with self._lock:
            cached = self._map_points.get(space)
        if cached is None and space not in self.map_spaces():  # a name from a client: not cached
            return pd.DataFrame(columns=["objid", "x", "y", "cluster", "cluster_label", "gz_class", "has_image"])
        if cached is None:
            cached = self.reader.query(
                "SELECT m.objid, m.x, m.y, m.cluster, m.cluster_label, g.gz_class, g.has_image "
                "FROM galaxy_maps m JOIN galaxies g USING (objid) WHERE m.space = $space ORDER BY m.objid",
                {"space": space})
            with self._lock:
                self._map_points[space] = cached
        return cached

    def map_key(self, space: str) -> str:
        """What one map's row numbers mean: a digest of its galaxies and their places, in row order. A
        page keeps the key of the map it drew and hands it back with the rows a click or lasso picked
        (:meth:`objids_at`): a new build that changed the map would otherwise turn them into other
        galaxies; one that left the map as it was (an APOD-only daily build) keeps them good."""
        with self._lock:
            key = self._map_keys.get(space)
        if key is None:
            import hashlib

            points = self.map_points(space)
            digest = hashlib.sha256("\n".join(points.objid.astype(str)).encode())
            digest.update(points[["x", "y"]].to_numpy(np.float64).tobytes())
            key = digest.hexdigest()[:16]
            with self._lock:
                self._map_keys[space] = key
        return key

    def objids_at(self, space: str, rows: Sequence[int], *, drawn: str | None) -> list[str]:
        """The objids of rows of :meth:`map_points` (what a click or a lasso on the map sends back), for a
        map drawn with :meth:`map_key` ``drawn``; a map that has changed since is a :class:`GalaxyError`."""
        if drawn != self.map_key(space):
            raise GalaxyError(MAP_CHANGED)
        points = self.map_points(space)
        picked = [int(r) for r in rows]
        if any(r < 0 or r >= len(points) for r in picked):
            raise GalaxyError(f"the {space} map has no galaxy number {max(picked)}: reload the page")
        return points.objid.iloc[picked].tolist()

    def map_spaces(self) -> list[str]:
        if "galaxy_maps" not in self.reader.tables:
            return []
        return self.reader.query("SELECT DISTINCT space FROM galaxy_maps ORDER BY 1").space.tolist()

    # -- neighbours ------------------------------------------------------------------------------
    def morphology_neighbours(self, objid: str, *, k: int = 10) -> Neighbourhood:
        """The ``k`` galaxies closest to ``objid`` in morphology space (itself excluded)."""
        self._require()
        return self._neighbours_of(objid, MORPHOLOGY_KIND, k, missing=f"no galaxy with objid {objid!r} in this collection")

    def similar_to_picture(self, image: "Image.Image", *, k: int = 10) -> Neighbourhood:
        """The ``k`` galaxies whose pictures look most like ``image`` (a decoded RGB PIL image)."""
        k = _check_k(k)
        self._require()
        if not self.has_pictures:
            raise GalaxiesMissing("This lake has no galaxy pictures to compare with. With internet, fetch them: "
                              "python -m pipeline build --collection gz2 --fetch-cutouts")
        return self._neighbourhood(self._search(IMAGE_KIND, self._picture_vector(image), k), {"space": IMAGE_KIND, "k": k})

    def similar_to_galaxy_picture(self, objid: str, *, k: int = 10) -> Neighbourhood:
        """Look-alikes of a catalogue galaxy's own picture (itself excluded)."""
        self._require()
        if not self.has_pictures:
            raise GalaxiesMissing("This lake has no galaxy pictures; neighbours by morphology are available.")
        return self._neighbours_of(objid, IMAGE_KIND, k, missing=f"galaxy {objid} has no picture in this lake")

    def _neighbours_of(self, objid: str, kind: str, k: int, *, missing: str) -> Neighbourhood:
        k = _check_k(k)
        objid = str(objid).strip()  # as _quote reads it: " 123" is galaxy 123, never its own neighbour
        own = self._table(kind).search().where(f"objid = {_quote(objid)}").limit(1).to_arrow()
        if own.num_rows == 0:
            raise UnknownGalaxy(missing)
        pairs = [(o, d) for o, d in self._search(kind, vectors.matrix(own.column("vector"))[0], k + 1) if o != objid]
        return self._neighbourhood(pairs[:k], {"objid": objid, "space": kind, "k": k})

    def _search(self, kind: str, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(objid, distance) of the ``n`` nearest: Euclidean in morphology space, cosine for pictures."""
        metric = "l2" if kind == MORPHOLOGY_KIND else "cosine"
        hits = self._table(kind).search(vector).metric(metric).limit(n).select(["objid", "_distance"]).to_arrow()
        dist = [float(d) for d in hits.column("_distance").to_pylist()]
        if metric == "l2":  # LanceDB reports squared distances
            dist = [d ** 0.5 for d in dist]
        return list(zip(hits.column("objid").to_pylist(), dist))

    def warm(self) -> None:
        """Load the picture encoder and the galaxy picture space before the first upload needs them."""
        from PIL import Image

        self._picture_vector(Image.new("RGB", (64, 64)))

    def _picture_vector(self, image) -> np.ndarray:
        info = self.reader.manifest.get("gz2", {}).get("encoder")
        if not info:
            raise GalaxiesMissing("This lake's galaxy pictures were embedded by an older build; rebuild with "
                                  "python -m pipeline build --collection gz2")
        encoder = self._encoder_factory(info)
        features = encoder.encode_images([image])
        try:
            return encoder.to_image_vectors(features, self._image_space)[0]
        except KeyError:  # the picture space the build fitted is not in this lake version
            raise GalaxiesMissing("This lake's galaxy picture space is missing; rebuild with "
                                  "python -m pipeline build --collection gz2 --fetch-cutouts") from None

    @cached_property
    def _image_space(self) -> dict[str, np.ndarray]:
        path = self.reader.layout.galaxy_image_space
        return dict(np.load(path)) if path.is_file() else {}

    def _neighbourhood(self, pairs: list[tuple[str, float]], query: dict[str, Any]) -> Neighbourhood:
        df = self.galaxies([o for o, _ in pairs])
        df["distance"] = df.objid.map(dict(pairs))  # by objid: a hit missing from the table shifts nothing
        values, weights = summary_values(lambda n: df[f"p_{n}"])
        morphology, sky = [], {}
        if len(df):
            means = galaxy_stats.bootstrap_means(values, weights=weights)
            randoms, dispersions = self._random_baselines(len(df), space=query["space"])
            morphology = [{"answer": name, "label": label, "neighbours": m.as_dict(), "collection": r["value"],
                           "random": {"low": r["low"], "high": r["high"]}}
                          for (name, label), m, r in zip(SUMMARY.items(), means, (x.as_dict() for x in randoms))]
        if len(df) >= 2:
            sky = galaxy_stats.compare_dispersion(galaxy_stats.unit_vectors(df.ra, df.dec), dispersions).as_dict()
        return Neighbourhood(df, morphology, sky, query | {"found": len(df)})

    def selection(self, objids: Sequence[str]) -> pd.DataFrame:
        """Rows for a download (lasso on the morphology map), in the catalogue's terms; at most
        :data:`MAX_SELECTION` galaxies (a GalaxyError says so beyond)."""
        return self.galaxies(downloadable(objids)).assign(licence_note=GZ2_LICENCE_NOTE)


def downloadable(objids: Sequence[str]) -> list[str]:
    """``objids`` once each, in order, when one download may hold them: at most :data:`MAX_SELECTION`
    (beyond, a GalaxyError says so)."""
    ids = list(dict.fromkeys(str(o) for o in objids))
    if len(ids) > MAX_SELECTION:
        raise GalaxyError(f"{len(ids):,} galaxies selected; at most {MAX_SELECTION:,} per download")
    return ids


def _with_links(df: pd.DataFrame) -> pd.DataFrame:
    """The app's picture URL (where a cutout exists) and the galaxy's page in SDSS's navigator."""
    df["picture"] = [f"{CUTOUT_ROUTE}/{o}.jpg" if pic else None for o, pic in zip(df.objid, df.has_image)]
    df["sdss"] = [SDSS_NAVIGATE.format(ra=ra, dec=dec) for ra, dec in zip(df.ra, df.dec)]
    return df


def _check_k(k: int) -> int:
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise GalaxyError(f"k must be between 1 and {MAX_K}")
    return k


def _quote(objid: str) -> str:
    """An objid as a SQL literal for LanceDB's filter (digits only: anything else is refused)."""
    text = str(objid).strip()
    if not is_objid(text):
        raise GalaxyError(f"{objid!r} is not a Galaxy Zoo objid (up to 20 digits)")
    return f"'{text}'"
