"""The Galaxy Zoo 2 collection: catalogue → ``galaxies`` table, morphology vectors, picture vectors, maps.

The catalogue (Willett et al. 2013, table 5, Stripe 82 coadd) holds vote fractions but no pictures;
pictures come from a cutout service (:mod:`pipeline.cutouts`) for users with internet. Everything here
is a plain function of tables and arrays, called by the ``gz2_*`` stages in :mod:`pipeline.stages`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atlas import galaxy_stats
from lake.galaxy_schema import ANSWERS, CLASS_THRESHOLD, GALAXIES, GALAXY_MAPS, SUMMARY, summary_values
from pipeline.neighbors import KnnGraph

log = logging.getLogger(__name__)

#: Morphology neighbours per galaxy in the graph behind the map and the clusters.
MORPHOLOGY_K = 15

#: For each question of the GZ2 decision tree, the answers that lead to it: its probability of being
#: asked is the product of the debiased fractions along that path (Willett et al. 2013, fig. 1).
#: ``odd`` (t06) is asked of every galaxy that is not a star or artefact.
_PATH_TO_TASK: dict[str, tuple[str, ...]] = {
    "t01": (),
    "t07": ("smooth",),
    "t02": ("features",),
    "t09": ("features", "edge_on"),
    "t03": ("features", "not_edge_on"),
    "t04": ("features", "not_edge_on"),
    "t05": ("features", "not_edge_on"),
    "t10": ("features", "not_edge_on", "spiral"),
    "t11": ("features", "not_edge_on", "spiral"),
    "t06": (),
    "t08": ("odd",),
}


def read_catalogue(path: Path, *, limit: int | None = None) -> pa.Table:
    """The catalogue as the lake's ``galaxies`` table (readable answer names, objid as text).

    A missing column or an unreadable file fails here with the file named, before any other work.
    """
    import pyarrow.csv as pacsv

    stems = list(ANSWERS.values())
    wanted = ["objid", "ra", "dec", "total_votes", "total_classifications"] + \
             [f"{s}_debiased" for s in stems] + [f"{s}_flag" for s in stems]
    try:
        raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            include_columns=wanted, column_types={"objid": pa.string()}))
    except (OSError, pa.ArrowInvalid, KeyError) as exc:  # ArrowKeyError: a column the table lacks
        raise ValueError(f"cannot read the Galaxy Zoo catalogue {path}: {exc}") from None
    if limit is not None:
        raw = raw.slice(0, limit)
    p = {name: pc.fill_null(raw.column(f"{stem}_debiased").cast(pa.float32()), 0.0) for name, stem in ANSWERS.items()}
    smooth, features, star = (np.asarray(p[k]) for k in ("smooth", "features", "star_or_artifact"))
    gz_class = np.where(smooth >= CLASS_THRESHOLD, "smooth",
                        np.where(features >= CLASS_THRESHOLD, "featured",
                                 np.where(star >= CLASS_THRESHOLD, "star_or_artifact", "uncertain")))
    columns = {
        "objid": raw.column("objid"),
        "ra": raw.column("ra").cast(pa.float64()),
        "dec": raw.column("dec").cast(pa.float64()),
        "total_votes": raw.column("total_votes").cast(pa.int32()),
        "total_classifications": raw.column("total_classifications").cast(pa.int32()),
        "gz_class": pa.array(gz_class.tolist(), pa.string()),
        "has_image": pa.array(np.zeros(raw.num_rows, bool)),
        **{f"p_{name}": p[name] for name in ANSWERS},
        **{f"flag_{name}": pc.not_equal(raw.column(f"{stem}_flag"), 0) for name, stem in ANSWERS.items()},
    }
    table = pa.table(columns).select(GALAXIES.names).cast(GALAXIES)
    duplicates = table.num_rows - len(set(table.column("objid").to_pylist()))
    if duplicates:
        raise ValueError(f"the Galaxy Zoo catalogue {path} repeats {duplicates} objid(s)")
    return table


def fractions(table: pa.Table) -> np.ndarray:
    """The debiased fractions (galaxies × 37 answers, in :data:`ANSWERS` order)."""
    return np.column_stack([table.column(f"p_{name}").to_numpy(zero_copy_only=False) for name in ANSWERS]
                           ).astype(np.float32)


def morphology_vectors(table: pa.Table) -> np.ndarray:
    """Debiased fractions, each weighted by the probability that its question was asked at all.

    Why weighted: GZ2 fractions are conditional. A smooth galaxy whose "bar?" question two volunteers
    answered has a bar fraction of 0 or 1 that says almost nothing; multiplied by the probability of
    reaching the question (features × not edge-on ≈ 0.05) it stops dominating the distance. This is the
    cumulative form used for the Galaxy Zoo Kaggle challenge. Euclidean distances between these vectors
    are the morphology neighbours.
    """
    p = {name: table.column(f"p_{name}").to_numpy(zero_copy_only=False).astype(np.float32) for name in ANSWERS}
    not_star = 1.0 - p["star_or_artifact"]
    columns = []
    for name, stem in ANSWERS.items():
        task = stem[:3]
        reach = np.ones(table.num_rows, np.float32) if task != "t06" else not_star
        for step in _PATH_TO_TASK[task]:
            reach = reach * p[step]
        if task == "t08":
            reach = reach * not_star
        columns.append(p[name] * reach)
    return np.column_stack(columns).astype(np.float32)


def euclidean_graph(vectors: np.ndarray, k: int = MORPHOLOGY_K) -> KnnGraph:
    """Exact Euclidean k-NN graph (self first), the shape the maps and the clustering take."""
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    k = max(1, min(k, n - 1))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(vectors).kneighbors(vectors)
    # duplicates can put another row first: force self into column 0
    for i in np.flatnonzero(idx[:, 0] != np.arange(n)):
        row = [i] + [j for j in idx[i] if j != i][:k]
        idx[i], dist[i] = row, [0.0] + [float(np.linalg.norm(vectors[i] - vectors[j])) for j in row[1:]]
    return KnnGraph(idx.astype(np.int64), dist.astype(np.float32))


def umap_2d(vectors: np.ndarray, graph: KnnGraph, *, metric: str, seed: int, min_dist: float = 0.1) -> np.ndarray:
    import umap

    idx, dist = graph.with_self(graph.k)
    reducer = umap.UMAP(n_components=2, n_neighbors=idx.shape[1], min_dist=min_dist, metric=metric,
                        random_state=seed, precomputed_knn=(idx, dist, None), init="pca")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        return reducer.fit_transform(vectors).astype(np.float32)


def morphology_labels(labels: np.ndarray, table: pa.Table) -> dict[int, str]:
    """Each cluster named by its most common class and the summary answer most above the collection's
    mean (e.g. "featured · bar"), so the legend reads as morphology rather than numbers."""
    names = list(SUMMARY)
    # "bar" and "spiral" as the fractions of those asked (smooth galaxies, never asked, do not count)
    values, weights = summary_values(lambda n: table.column(f"p_{n}").to_numpy(zero_copy_only=False))
    overall = galaxy_stats.weighted_means(values, weights)
    classes = np.asarray(table.column("gz_class").to_pylist())
    out = {}
    for c in sorted(set(labels.tolist())):
        members = labels == c
        kinds, counts = np.unique(classes[members], return_counts=True)
        lift = np.nan_to_num(galaxy_stats.weighted_means(values[members], weights[members]) - overall, nan=-np.inf)
        best = names[int(np.argmax(lift))]
        out[int(c)] = f"{kinds[np.argmax(counts)]} · {SUMMARY[best].split(' (')[0].lower()}"
    return out


def map_table(objids: Sequence[str], xy: np.ndarray, labels: np.ndarray, names: dict[int, str],
              *, space: str) -> pa.Table:
    return pa.table({
        "objid": pa.array(list(objids), pa.string()),
        "space": pa.array([space] * len(objids), pa.string()),
        "x": pa.array(xy[:, 0], pa.float32()), "y": pa.array(xy[:, 1], pa.float32()),
        "cluster": pa.array(labels, pa.int32()),
        "cluster_label": pa.array([names[int(c)] for c in labels], pa.string()),
    }, schema=GALAXY_MAPS)
