"""Anomaly scores: entries that do not fit, per embedding kind and across modalities.

Single-modality detectors, per embedding kind (scikit-learn): mean cosine distance to the k nearest
neighbours (``knn``), local outlier factor (``lof``) and isolation forest (``iforest``, on a PCA-32
of the vectors). They find rare subjects, but a picture whose caption describes something else looks
ordinary to each of them on its own.

Cross-modal detectors (entries with a picture) compare an entry's two sides:

* ``picture_vs_text_neighbours``: how unlike its picture is to the pictures of its k text neighbours;
* ``text_vs_picture_neighbours``: how unlike its text is to the texts of its k picture neighbours;
* ``caption_mismatch``: 1 − cosine(text, picture in the text space) (the alignment stage's space);
* ``cross_modal``: the mean of the three, each as a percentile (so no scale dominates).

The isolation forest (and the PCA it reads) is the one detector fitted on the rows rather than read
from their k-NN graph. A build that only adds a few entries keeps the forest an earlier build fitted
(:func:`kept_isolation`), with the scores it gave, and scores only the new and changed rows with it, as
the maps place a new entry instead of re-fitting: re-fitting 4 × 200 trees cost a daily build ≈ 2 s, and
moved every entry's score.

Entries whose explanation is missing from the archive (113 of the bundled 11,382: NASA's records hold
only page boilerplate for them) have a ``text`` vector of their title alone. Every text-reading
detector would flag them for the missing words (before this rule they were 5 of the top 20), so those
detectors do not score them (null, as picture detectors are for entries without a picture); their
title and picture detectors still do.

``combined`` ranks everything, each group by its own percentile so that no group crowds the others out
of the top: the cross-modal score among entries with a picture and an explanation, the text k-NN score
among the other entries with an explanation, the title k-NN score among entries without one. Every
score is "higher = odder"; percentiles are in (0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atlas.encoders import l2_normalise
from pipeline.neighbors import KnnGraph, kept_rows, knn_graph, row_digests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnomalyParams:
    k: int = 10  # neighbours for k-NN distance and the cross-modal neighbourhoods
    lof_neighbours: int = 20
    iforest_trees: int = 200
    iforest_dims: int = 32
    seed: int = 42

    @property
    def graph_k(self) -> int:
        """Neighbours the single-modality detectors read from one k-NN graph (k-NN distance and LOF)."""
        return max(self.k, self.lof_neighbours)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


CROSS_MODAL = ("picture_vs_text_neighbours", "text_vs_picture_neighbours", "caption_mismatch")


def percentile(x: np.ndarray) -> np.ndarray:
    """Rank of each value in (0, 1]; ties share their mean rank; NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = ~np.isnan(x)
    out[ok] = pd.Series(x[ok]).rank(method="average").to_numpy() / max(int(ok.sum()), 1)
    return out


#: ``knn(name, keys, unit_vectors, k)``: the exact cosine k-NN graph of a matrix whose rows ``keys`` name,
#: with at least ``k`` neighbours. ``name`` is an embedding kind (the matrix is that kind's vectors) or
#: one of :data:`CROSS_MODAL_GRAPHS`. The build passes one that keeps the graphs between builds.
GraphSource = Callable[[str, list[str], np.ndarray, int], KnnGraph]

#: The cross-modal detectors' graphs: text and pictures of the entries with a picture.
CROSS_MODAL_GRAPHS = ("pictured_text", "pictured_image")


def _fresh_graph(name: str, keys: list[str], vectors: np.ndarray, k: int) -> KnnGraph:
    return knn_graph(vectors, k)


def _lof(graph: KnnGraph, n_neighbors: int) -> np.ndarray:
    """Local outlier factor from the k-NN graph already computed for the k-NN score.

    scikit-learn's LOF takes a precomputed sparse neighbour graph (self first at distance 0, the format
    of ``KNeighborsTransformer``); Euclidean distance between unit vectors is √(2·cosine distance), the
    metric the dense LOF used. Fitting on the graph instead of the vectors spares a second all-pairs
    search (1.3 s of 1.4 s per 11k × 384 kind)."""
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import LocalOutlierFactor

    indices, distances = graph.with_self(n_neighbors)
    n, width = indices.shape
    euclidean = np.sqrt(2.0 * distances.astype(np.float64))
    euclidean[:, 0] = 0.0
    matrix = csr_matrix((euclidean.ravel(), indices.ravel(), np.arange(0, n * width + 1, width)), shape=(n, n))
    lof = LocalOutlierFactor(n_neighbors=width - 1, metric="precomputed").fit(matrix)
    return -lof.negative_outlier_factor_.astype(np.float64)


@dataclass(frozen=True)
class IsolationModel:
    """A kind's isolation forest and the PCA of the unit vectors it reads; ``fitted_rows``: how many
    rows it was fitted on; ``note``: fitted now or kept from an earlier build (for the manifest);
    ``known``: the rows' scores already known (from the build that kept the model, for rows whose vector
    has not changed since), NaN where a row must be scored."""

    pca: Any
    forest: Any
    fitted_rows: int
    note: str = "fitted"
    known: np.ndarray | None = None

    def scores(self, unit: np.ndarray) -> np.ndarray:
        """Higher = odder: minus the forest's score of each row (the rows ``known`` describes)."""
        out = np.full(len(unit), np.nan) if self.known is None else np.array(self.known, np.float64)
        todo = np.flatnonzero(np.isnan(out))
        if len(todo):
            out[todo] = -self.forest.score_samples(self.pca.transform(unit[todo])).astype(np.float64)
        return out


def fit_isolation(unit: np.ndarray, params: AnomalyParams) -> IsolationModel:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest

    dims = min(params.iforest_dims, unit.shape[1], len(unit))
    pca = PCA(n_components=dims, random_state=params.seed).fit(unit)
    forest = IsolationForest(n_estimators=params.iforest_trees, random_state=params.seed).fit(pca.transform(unit))
    return IsolationModel(pca, forest, len(unit))


#: ``forest(name, keys, unit_vectors)``: the isolation model to score a kind's rows with. The build
#: passes one that keeps the model between builds (:func:`kept_isolation`).
ForestSource = Callable[[str, list[str], np.ndarray], IsolationModel]

#: A kept isolation forest serves while at most this share of the rows is new or changed since it was
#: fitted (as the maps' placement does; ``--refit`` fits it anew).
FOREST_KEEP_SHARE = 0.05
#: Version of the kept file's layout and of what it holds.
_FOREST_FORMAT = "iforest-v2"


def kept_isolation(unit: np.ndarray, params: AnomalyParams, *, keys: list[str], store: Path,
                   refit: bool = False) -> IsolationModel:
    """The isolation model kept at ``store`` by an earlier build when it still fits these rows (the same
    parameters, scikit-learn version and width, no fitted row gone, and at most
    :data:`FOREST_KEEP_SHARE` of the rows new or changed since it was fitted), else one fitted on them
    and kept there, with the fitted rows' scores: a kept model scores only the rows new or changed since
    (a forest's score of an unchanged vector does not change; 4 × 11k rows took ≈ 0.5 s). The kept file
    is a pickle signed with this machine's key (:mod:`pipeline.local_pickle`: a lake on object storage
    shares its cache with other builders); one that does not load or verify is fitted anew."""
    import sklearn

    from pipeline import local_pickle

    stamp = {"format": _FOREST_FORMAT, "params": params.as_dict(), "sklearn": sklearn.__version__,
             "dim": int(unit.shape[1])}
    digests = row_digests(unit)
    if not refit and store.is_file():
        try:
            kept = local_pickle.load(store)
            if kept["stamp"] == stamp:
                rows = kept_rows(kept["keys"], keys)
                if rows is not None:
                    same = digests[rows] == kept["digests"]
                    fresh = len(keys) - int(same.sum())
                    if fresh <= FOREST_KEEP_SHARE * len(keys):
                        known = np.full(len(keys), np.nan)
                        known[rows[same]] = kept["scores"][same]
                        note = f"kept from an earlier build ({fresh} rows new or changed since its fit)"
                        return IsolationModel(kept["pca"], kept["forest"], len(rows), note, known)
        except local_pickle.UntrustedPickle as exc:
            log.warning("%s; the isolation forest is fitted anew", exc)
        except Exception as exc:  # noqa: BLE001 (a torn or foreign cache file: fit anew)
            log.info("kept isolation forest %s unreadable (%s); fitting it anew", store.name, exc)
    model = fit_isolation(unit, params)
    model = replace(model, known=model.scores(unit))
    record = {"stamp": stamp, "keys": list(keys), "digests": digests, "scores": model.known, "pca": model.pca,
              "forest": model.forest}
    local_pickle.dump(record, store)
    return model


def single_modal(vectors: np.ndarray, params: AnomalyParams, *, graph: KnnGraph | None = None,
                 isolation: IsolationModel | None = None) -> dict[str, np.ndarray]:
    """k-NN distance, LOF and isolation forest scores of one embedding kind (higher = odder).

    ``graph``: the kind's cosine k-NN graph with at least ``max(k, lof_neighbours)`` neighbours when the
    caller has it (the build's shared, incrementally kept graph); else computed here. ``isolation``: the
    kind's isolation model when the caller has one (kept by an earlier build); else fitted here."""
    n = len(vectors)
    if n < 3:
        return {name: np.zeros(n) for name in ("knn", "lof", "iforest")}
    v = l2_normalise(vectors)
    need = min(params.graph_k, n - 1)
    graph = knn_graph(v, need) if graph is None or graph.k < need else graph.truncated(need)
    _, distances = graph.without_self(params.k)
    knn = distances.astype(np.float64).mean(axis=1)
    isolation = isolation if isolation is not None else fit_isolation(v, params)
    return {"knn": knn, "lof": _lof(graph, min(params.lof_neighbours, n - 1)), "iforest": isolation.scores(v)}


def cross_modal(text: np.ndarray, picture: np.ndarray, picture_in_text: np.ndarray | None,
                params: AnomalyParams, *, keys: list[str] | None = None,
                knn: GraphSource = _fresh_graph) -> dict[str, np.ndarray]:
    """Cross-modal scores for entries with a picture (rows aligned across the three matrices, named by
    ``keys``, e.g. dates, for ``knn``)."""
    t, p = l2_normalise(text), l2_normalise(picture)
    keys = list(keys) if keys is not None else [str(i) for i in range(len(t))]
    text_nn, _ = knn(CROSS_MODAL_GRAPHS[0], keys, t, params.k).without_self(params.k)
    picture_nn, _ = knn(CROSS_MODAL_GRAPHS[1], keys, p, params.k).without_self(params.k)
    out = {
        "picture_vs_text_neighbours": 1.0 - np.einsum("id,ikd->i", p, p[text_nn]) / text_nn.shape[1],
        "text_vs_picture_neighbours": 1.0 - np.einsum("id,ikd->i", t, t[picture_nn]) / picture_nn.shape[1],
    }
    if picture_in_text is not None:
        out["caption_mismatch"] = 1.0 - np.einsum("id,id->i", t, l2_normalise(picture_in_text))
    pcts = [percentile(out[name]) for name in CROSS_MODAL if name in out]
    out["cross_modal"] = np.mean(pcts, axis=0)
    return {k: v.astype(np.float64) for k, v in out.items()}


def _member(dates: list[str], among: Collection[str]) -> np.ndarray:
    """Which ``dates`` are in ``among``, by set lookup (``np.isin`` on these string arrays sorts objects:
    ≈ 0.4 s for the archive's 11k dates against its 3k pictures, a daily build's whole margin)."""
    among = set(among)
    return np.fromiter((d in among for d in dates), dtype=bool, count=len(dates))


#: Embedding kinds whose vectors read an entry's explanation (not scored where it is missing).
EXPLANATION_KINDS = ("text", "multimodal")


def score_entries(vectors: dict[str, tuple[list[str], np.ndarray]], params: AnomalyParams, *,
                  knn: GraphSource = _fresh_graph, forest: ForestSource | None = None,
                  without_explanation: Collection[str] = ()) -> pd.DataFrame:
    """One row per entry (the ``text`` kind's dates): every detector's score and percentile, the
    combined score and rank. ``vectors`` maps kind → (dates, matrix); ``aligned`` is optional.
    ``knn`` and ``forest``: where the k-NN graphs and the isolation models come from (the build keeps
    both between builds; see :data:`GraphSource`, :data:`ForestSource`; by default made here).
    ``without_explanation``: dates whose explanation is empty; the detectors that read it do not score
    them (see the module's docstring)."""
    dates = list(vectors["text"][0])
    row = {d: i for i, d in enumerate(dates)}
    untexted = _member(dates, without_explanation)
    df = pd.DataFrame({"date": dates})
    for kind in ("title", "text", "image", "multimodal"):
        if kind not in vectors or len(vectors[kind][0]) < 3:
            continue
        kdates, matrix = vectors[kind]
        where = np.array([row[d] for d in kdates])
        unit = l2_normalise(matrix)
        graph = knn(kind, list(kdates), unit, params.graph_k)
        isolation = forest(kind, list(kdates), unit) if forest is not None else None
        for name, score in single_modal(matrix, params, graph=graph, isolation=isolation).items():
            col = np.full(len(dates), np.nan)
            col[where] = score
            if kind in EXPLANATION_KINDS:
                col[untexted] = np.nan
            df[f"{kind}_{name}"] = col
    image_dates, pictures = vectors.get("image", ([], np.zeros((0, 0))))
    has_picture = _member(dates, image_dates)
    with_text = [i for i, d in enumerate(image_dates) if d in row and not untexted[row[d]]]
    if len(with_text) >= params.k + 2:
        pd_dates = [image_dates[i] for i in with_text]
        text = vectors["text"][1][[row[d] for d in pd_dates]]
        aligned = None
        if "aligned" in vectors and len(vectors["aligned"][0]):
            apos = {d: i for i, d in enumerate(vectors["aligned"][0])}
            if all(d in apos for d in pd_dates):
                aligned = vectors["aligned"][1][[apos[d] for d in pd_dates]]
        where = np.array([row[d] for d in pd_dates])
        for name, score in cross_modal(text, pictures[with_text], aligned, params, keys=pd_dates, knn=knn).items():
            col = np.full(len(dates), np.nan)
            col[where] = score
            df[name] = col
    cross = df["cross_modal"].notna().to_numpy() if "cross_modal" in df else np.zeros(len(df), bool)
    combined = np.zeros(len(df))
    # each group as a percentile of its own, so that none crowds the others out of the top
    for group, column in ((cross, "cross_modal"), (~cross & ~untexted, "text_knn"), (untexted, "title_knn")):
        if group.any() and column in df:
            combined[group] = percentile(df[column].to_numpy()[group])
    df["has_picture"] = has_picture
    df["combined"] = combined
    df["rank"] = pd.Series(-combined).rank(method="first").astype(int).to_numpy()
    return df
