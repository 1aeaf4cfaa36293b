"""A text–picture space learned from the collection's own picture–caption pairs.

The offline encoder's text vectors (MiniLM) and picture vectors (EfficientNet-Lite0, PCA-256) live in
different spaces. The *alignment head* maps a picture into the text space, so a text query can find
pictures, a picture gets zero-shot categories from the taxonomy's text prompts, and an upload can be
compared with captions.

The head kept is **neighbour captions**: a picture's aligned vector is the similarity-weighted mean of
the caption vectors of its ``k`` most similar training pictures. It was chosen by measurement against a
closed-form ridge map and a contrastive (InfoNCE, LiT-style locked towers) linear head, all scored on
held-out date blocks of the archive (``bench/picture_meaning.py``): it gave the best caption → picture
recall and the best picture zero-shot accuracy. ``k`` is chosen by inner cross-validation of caption →
picture R@10 over contiguous date blocks of the training pairs only (APOD re-uses pictures of one event
on nearby days; blocks keep those on one side).

Fitting is deterministic (no random state at all). Pictures in the training set are mapped
*leave-one-out* (their own caption never contributes to their aligned vector), so a picture's stored
aligned vector and its image category never come from its own text.

Shared by the pipeline (fitting, stored vectors) and the app (uploads), so it lives in ``atlas``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlas.encoders.base import l2_normalise
from atlas.topk import top_k

HEAD_NAME = "neighbour captions"
#: Candidate neighbour counts; the inner cross-validation picks one per build.
K_GRID: tuple[int, ...] = (5, 10, 20, 40)
INNER_FOLDS = 3
_CHUNK = 2048  # query rows per similarity block: bounds memory at ~2048 × training pairs floats


@dataclass(frozen=True)
class AlignHead:
    """Training pictures and their captions; applying the head needs nothing else."""

    pictures: np.ndarray  # (n, picture dim), unit rows, centred by ``mean`` before normalising
    captions: np.ndarray  # (n, text dim), unit rows
    mean: np.ndarray  # training pictures' mean, removed before cosine similarity
    k: int

    @property
    def text_dim(self) -> int:
        return int(self.captions.shape[1])

    def apply(self, pictures: np.ndarray, *, own_rows: np.ndarray | None = None) -> np.ndarray:
        """Aligned (text-space, unit) vectors of ``pictures``.

        ``own_rows[i]`` is the training row of query ``i`` (or -1): that row is left out of its own
        neighbours, so a training picture's aligned vector never uses its own caption.
        """
        x = np.asarray(pictures, np.float32)
        out = np.zeros((len(x), self.text_dim), np.float32)
        if len(x) == 0 or len(self.pictures) == 0:
            return out
        k = min(self.k, len(self.pictures) - (1 if own_rows is not None else 0))
        if k < 1:
            return out
        for start in range(0, len(x), _CHUNK):
            sims = l2_normalise(x[start:start + _CHUNK] - self.mean) @ self.pictures.T
            if own_rows is not None:
                rows = np.asarray(own_rows[start:start + _CHUNK])
                hit = rows >= 0
                sims[np.flatnonzero(hit), rows[hit]] = -np.inf
            nn, nearest = top_k(sims, k)
            weights = np.maximum(nearest, 0.0)[..., None]
            weights[~np.isfinite(weights)] = 0.0
            out[start:start + _CHUNK] = (self.captions[nn] * weights).sum(axis=1)
        return l2_normalise(out)

    # -- persistence (the lake's models/align_head.npz) ------------------------------------------
    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, pictures=self.pictures, captions=self.captions, mean=self.mean, k=np.int64(self.k))

    @classmethod
    def load(cls, path: Path) -> "AlignHead":
        with np.load(path) as z:
            return cls(pictures=z["pictures"], captions=z["captions"], mean=z["mean"], k=int(z["k"]))


def make_head(pictures: np.ndarray, captions: np.ndarray, k: int) -> AlignHead:
    x = np.asarray(pictures, np.float32)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    return AlignHead(pictures=l2_normalise(x - mean), captions=l2_normalise(captions), mean=mean.astype(np.float32),
                     k=int(k))


def recall_at(k: int, captions: np.ndarray, aligned: np.ndarray) -> float:
    """Caption → picture R@k: how often a caption's own picture is among the k nearest aligned pictures."""
    sims = l2_normalise(captions) @ l2_normalise(aligned).T
    own = np.diag(sims)
    return float(np.mean((sims > own[:, None]).sum(axis=1) < k))


def date_blocks(n: int, folds: int) -> list[np.ndarray]:
    """Contiguous blocks of row indices (rows are in date order), so near-duplicate days stay together."""
    return [np.arange(n)[i * n // folds:(i + 1) * n // folds] for i in range(folds)]


def choose_k(pictures: np.ndarray, captions: np.ndarray, *, grid: tuple[int, ...] = K_GRID,
             folds: int = INNER_FOLDS) -> tuple[int, dict[int, float]]:
    """The ``k`` with the best inner cross-validated caption → picture R@10 (ties: the smaller k)."""
    scores: dict[int, float] = {}
    n = len(pictures)
    for k in grid:
        recalls = []
        for held in date_blocks(n, folds):
            keep = np.setdiff1d(np.arange(n), held)
            if len(held) < 2 or len(keep) < k:
                continue
            head = make_head(pictures[keep], captions[keep], k)
            recalls.append(recall_at(10, captions[held], head.apply(pictures[held])))
        if recalls:
            scores[k] = round(float(np.mean(recalls)), 4)
    if not scores:
        return min(grid[0], max(n - 1, 1)), {}
    return max(scores, key=lambda k: (scores[k], -k)), scores


def fit_head(pictures: np.ndarray, captions: np.ndarray) -> tuple[AlignHead, dict[int, float]]:
    """Fit the head on picture–caption pairs given in date order; also returns the inner-CV scores."""
    k, scores = choose_k(pictures, captions)
    return make_head(pictures, captions, k), scores
