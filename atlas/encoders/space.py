"""The collection-fitted map from picture features to stored picture vectors: PCA, half-whitened.

Fitted on the archive's own pictures at build time (no captions, no labels) and saved in the lake, so
query-time uploads land in the same space. Half-whitening flattens the spectrum without blowing up
noise; for EfficientNet-Lite0 features, 256 half-whitened components beat the raw features, 128, 512
and unwhitened variants on held-out caption → picture retrieval (bench/picture_meaning.py).
"""

from __future__ import annotations

import numpy as np

#: Version of :func:`fit_space`'s method: part of the fingerprint under which a build reuses a fitted
#: space, so a change here fits again.
FIT_VERSION = 1
#: The arrays a fitted space holds.
FIELDS = ("mean", "components", "scale")


def fit_space(features: np.ndarray, dim: int = 128) -> dict[str, np.ndarray]:
    """PCA whitening fitted on the collection's own images (kept to ``dim`` components)."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = int(min(dim, vt.shape[0], max(1, x.shape[0] - 1)))
    components = np.zeros((dim, x.shape[1]), dtype=np.float32)  # zero rows pad a tiny collection
    components[:k] = vt[:k]
    scale = np.ones(dim, dtype=np.float32)
    scale[:k] = np.maximum(s[:k] / np.sqrt(max(x.shape[0] - 1, 1)), 1e-6)
    return {"mean": mean.astype(np.float32), "components": components, "scale": scale}


def apply_space(features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """Picture vectors (float32, unit rows) of raw ``features``.

    Computed in float64 and rounded once: in float32 a row's last bit depended on the rows beside it and
    on where the array lay in memory (BLAS picks its kernels by both), so a build that added one picture
    moved the others' vectors by 1e-7, and the k-NN cache, which keeps a graph's rows while their vectors'
    bytes are unchanged, recomputed them all."""
    z = (np.asarray(features, dtype=np.float64) - state["mean"]) @ state["components"].T.astype(np.float64)
    z = z / np.sqrt(state["scale"].astype(np.float64))  # half-whitening: flattens the spectrum without blowing up noise
    return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)
