"""Cluster stage: Ward agglomerative clustering constrained to the shared k-NN graph, with labels.

Ward merges the pair of groups whose union adds the least within-group variance; the k-NN
connectivity lets it merge only groups that are neighbours, which keeps clusters contiguous on the map
and makes it fast (scikit-learn ``AgglomerativeClustering``). Each cluster is labelled with its most
common category and its most distinctive title words (class-based TF-IDF: word frequency in the
cluster, weighted by how rare the word is across clusters).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import sparse

from pipeline.neighbors import KnnGraph

EXTRA_STOP_WORDS = {
    "apod", "image", "images", "picture", "pictured", "featured", "view", "views", "seen", "taken",
    "light", "years", "year", "near", "sky", "across", "like", "just", "left", "right", "center",
    "new", "old", "day", "night", "time", "including", "known", "called", "appears", "shown", "shows",
}


def default_cluster_count(n: int) -> int:
    """About √(n/8): 38 clusters for the 11k-entry archive, fewer for small collections."""
    return max(2, min(n - 1, round(math.sqrt(n / 8)))) if n > 2 else 1


def ward_clusters(vectors: np.ndarray, graph: KnnGraph, n_clusters: int, k: int = 15) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    n = vectors.shape[0]
    if n < 3 or n_clusters <= 1:
        return np.zeros(n, dtype=np.int32)
    idx, _ = graph.without_self(k)
    rows = np.repeat(np.arange(n), idx.shape[1])
    conn = sparse.csr_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(n, n))
    conn = conn.maximum(conn.T)
    model = AgglomerativeClustering(n_clusters=min(n_clusters, n), linkage="ward", connectivity=conn)
    labels = model.fit_predict(vectors)
    # Number clusters by size, largest first, so ids are stable-ish and readable.
    order = [c for c, _ in Counter(labels.tolist()).most_common()]
    remap = {c: i for i, c in enumerate(order)}
    return np.array([remap[c] for c in labels], dtype=np.int32)


def cluster_labels(labels: np.ndarray, titles: list[str], categories: list[str], n_words: int = 3) -> dict[int, str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    clusters = sorted(set(labels.tolist()))
    docs = [" ".join(t for t, c in zip(titles, labels) if c == cl) for cl in clusters]
    stop = list(ENGLISH_STOP_WORDS | EXTRA_STOP_WORDS)
    try:
        vec = CountVectorizer(stop_words=stop, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9-]{2,}\b", lowercase=True)
        counts = vec.fit_transform(docs).toarray().astype(np.float64)
        words = vec.get_feature_names_out()
    except ValueError:  # no usable words at all
        counts, words = np.zeros((len(clusters), 0)), np.array([])
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    avg = counts.sum() / max(len(clusters), 1)
    idf = np.log(1 + avg / np.maximum(counts.sum(axis=0), 1))
    score = tf * idf
    out: dict[int, str] = {}
    for row, cl in enumerate(clusters):
        members = [c for c, lab in zip(categories, labels) if lab == cl]
        top_cat = Counter(members).most_common(1)[0][0] if members else "Mixed"
        best = [words[i] for i in np.argsort(-score[row])[:n_words] if score[row, i] > 0] if words.size else []
        out[cl] = f"{top_cat}: {', '.join(best)}" if best else top_cat
    return out


def join_clusters(fitted_vectors: np.ndarray, fitted_labels: np.ndarray, new_vectors: np.ndarray,
                  k: int = 15) -> np.ndarray:
    """Clusters for new entries without re-clustering: the similarity-weighted majority cluster of each
    new entry's ``k`` nearest clustered neighbours (existing entries keep theirs)."""
    from pipeline.neighbors import nearest_fitted

    if not len(new_vectors):
        return np.zeros(0, np.int64)
    idx, sims = nearest_fitted(fitted_vectors, new_vectors, k)
    labels = np.asarray(fitted_labels)[idx]
    weights = np.maximum(sims, 0.0) + 1e-6
    out = np.empty(len(new_vectors), np.int64)
    for i, (row, w) in enumerate(zip(labels, weights)):
        votes: Counter = Counter()
        for label, weight in zip(row, w):
            votes[int(label)] += float(weight)
        out[i] = votes.most_common(1)[0][0]
    return out
