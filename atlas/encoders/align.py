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

**Categories from a picture** (offline lakes) are a vote, not the aligned vector's nearest prompt: the
picture's ``k`` most similar training pictures each bring their caption's class probabilities (the
build's text categories, :mod:`pipeline.text_classifier`), weighted by
``exp((similarity − best similarity) / τ)``. Averaging the neighbours' caption *vectors* first blurred
a picture between classes. On the archive's 358 hand-labelled pictures held out of training, top-1 rose
from 0.506 to 0.573 (``bench/picture_meaning.py``, one run); in its 5-fold runs the vote was as good or
better on every picture feature tried (+0.00 to +0.03). ``k`` and ``τ`` are chosen per build without
any labels (:func:`choose_vote`): by inner cross-validation of how often a held-out picture's vote
names its own caption's most likely class.

The vote is blended with a **linear probe** (:class:`PictureProbe`, fitted by
:mod:`pipeline.picture_probe`): a softmax classifier of the same picture vectors trained on the training
pictures' caption categories. A vote reads a few look-alikes; the probe reads the whole training set's
direction for each class, and the two err on different pictures. On the archive's 358 hand-labelled
pictures held out of training, top-1 went from 0.595 (the vote alone) to 0.615 (the probe alone: 0.575)
in one run — within one standard error (≈ 0.026) — and in the 5-fold runs of ``bench/picture_meaning.py``
by +0.00 to +0.04 per picture feature, never down. Its
regularisation and share are again chosen without labels, by the same inner cross-validation; a share of
0 (the vote alone) is among the candidates.

Fitting is deterministic (no random state at all). Pictures in the training set are mapped
*leave-one-out* (their own caption never contributes to their aligned vector or their vote), so a
picture's stored aligned vector and its image category never come from its own text: a training
picture's probe probabilities are those of the inner cross-validation model that did not see it.

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
#: Candidate neighbour counts and temperatures of the category vote; :func:`choose_vote` picks one pair.
VOTE_K_GRID: tuple[int, ...] = (10, 20, 40, 80)
VOTE_TAU_GRID: tuple[float, ...] = (0.05, 0.1, 0.2)
_CHUNK = 2048  # query rows per similarity block: bounds memory at ~2048 × training pairs floats


@dataclass(frozen=True)
class CategoryVote:
    """How a picture's neighbours vote on its category (see the module docstring)."""

    k: int
    tau: float


def class_probabilities(vectors: np.ndarray, classes: np.ndarray, scale: float) -> np.ndarray:
    """Zero-shot class probabilities of text-space vectors (captions, aligned pictures): softmax of
    ``scale`` × cosine to each class."""
    return softmax(scale * (np.asarray(vectors, np.float32) @ np.asarray(classes, np.float32).T))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class AlignHead:
    """Training pictures and their captions; applying the head needs nothing else."""

    pictures: np.ndarray  # (n, picture dim), unit rows, centred by ``mean`` before normalising
    captions: np.ndarray  # (n, text dim), unit rows
    mean: np.ndarray  # training pictures' mean, removed before cosine similarity
    k: int
    dates: np.ndarray | None = None  # training pairs' dates (str), so a build can leave each one's own out

    def own_rows(self, dates: list[str]) -> np.ndarray:
        """Each date's training row, or -1 (for :meth:`apply`'s ``own_rows``)."""
        row = {str(d): i for i, d in enumerate(self.dates if self.dates is not None else [])}
        return np.array([row.get(d, -1) for d in dates], np.int64)

    @property
    def text_dim(self) -> int:
        return int(self.captions.shape[1])

    def apply(self, pictures: np.ndarray, *, own_rows: np.ndarray | None = None) -> np.ndarray:
        """Aligned (text-space, unit) vectors of ``pictures``.

        ``own_rows[i]`` is the training row of query ``i`` (or -1): that row is left out of its own
        neighbours, so a training picture's aligned vector never uses its own caption.
        """
        out = np.zeros((len(pictures), self.text_dim), np.float32)
        for start, nn, nearest in self._neighbours(pictures, self.k, own_rows):
            weights = np.maximum(nearest, 0.0)[..., None]
            out[start:start + len(nn)] = (self.captions[nn] * weights).sum(axis=1)
        return l2_normalise(out)

    def category_votes(self, pictures: np.ndarray, caption_probs: np.ndarray, *, vote: CategoryVote,
                       dates: list[str] | None = None, probe: "PictureProbe | None" = None) -> np.ndarray:
        """Class probabilities of ``pictures`` (rows sum to 1): their neighbours' caption class
        probabilities ``caption_probs`` (one row per training caption, in the head's order), weighted by
        similarity, blended with ``probe`` where given. ``dates``: the pictures' dates (None for uploads):
        a training picture is left out of its own neighbours, and a picture the probe was fitted on gets
        its held-out probabilities. With no training pictures every class is equally likely."""
        probs = np.asarray(caption_probs, np.float32)
        out = np.full((len(pictures), probs.shape[1]), 1.0 / max(probs.shape[1], 1), np.float32)
        own_rows = None if dates is None else self.own_rows(dates)
        for start, nn, nearest in self._neighbours(pictures, vote.k, own_rows):
            out[start:start + len(nn)] = vote_probabilities(probs, nn, nearest, vote.tau)
        if probe is None or probe.share == 0 or not len(pictures):
            return out
        return (1 - probe.share) * out + probe.share * probe.probabilities(pictures, dates=dates)

    def centred(self, pictures: np.ndarray) -> np.ndarray:
        """Pictures as the head compares them: the training mean removed, unit length."""
        return l2_normalise(np.asarray(pictures, np.float32) - self.mean)

    def _neighbours(self, pictures: np.ndarray, k: int, own_rows: np.ndarray | None):
        """Per block of query rows: (first row, indices, similarities) of the ``k`` most similar training
        pictures, most similar first; a query's own training row (``own_rows``) is never among them."""
        x = np.asarray(pictures, np.float32)
        k = min(k, len(self.pictures) - (1 if own_rows is not None else 0))
        if len(x) == 0 or k < 1:
            return
        for start in range(0, len(x), _CHUNK):
            sims = self.centred(x[start:start + _CHUNK]) @ self.pictures.T
            if own_rows is not None:
                rows = np.asarray(own_rows[start:start + _CHUNK])
                hit = rows >= 0
                sims[np.flatnonzero(hit), rows[hit]] = -np.inf
            yield (start, *top_k(sims, k))

    # -- persistence (the lake's models/align_head.npz) ------------------------------------------
    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, pictures=self.pictures, captions=self.captions, mean=self.mean, k=np.int64(self.k),
                     **({"dates": np.asarray(self.dates, dtype=str)} if self.dates is not None else {}))

    @classmethod
    def load(cls, path: Path) -> "AlignHead":
        with np.load(path) as z:
            return cls(pictures=z["pictures"], captions=z["captions"], mean=z["mean"], k=int(z["k"]),
                       dates=z["dates"] if "dates" in z.files else None)


@dataclass(frozen=True)
class PictureProbe:
    """A softmax classifier of centred, unit picture vectors, trained on an alignment head's training
    pictures with their captions' categories as targets, and its share in the blend with the
    look-alikes' vote (see the module docstring; fitted by :mod:`pipeline.picture_probe`)."""

    weights: np.ndarray  # (picture dim, classes)
    bias: np.ndarray  # (classes,); classes no training caption had get a bias that rules them out
    mean: np.ndarray  # (picture dim,): the training pictures' mean, removed before normalising (as the head does)
    share: float  # the probe's weight in the blend; the vote has 1 − share
    C: float  # the logistic regression's inverse regularisation it was fitted with (for the manifest)
    space: str  # fingerprint of the picture space its vectors live in: another space fits it anew
    version: str  # the fitting code, candidate settings and class names: others fit it anew
    dates: np.ndarray  # (training pictures,) str: the pictures it was fitted on
    targets: np.ndarray  # (training pictures,) int: their captions' classes it learned
    held_out: np.ndarray  # (training pictures, classes): from the fold model that did not see each

    def probabilities(self, pictures: np.ndarray, *, dates: list[str] | None = None) -> np.ndarray:
        """Class probabilities of picture vectors; a picture whose date it was fitted on gets the
        probabilities of the fold model that did not see its caption (any other never taught it)."""
        out = softmax(l2_normalise(np.asarray(pictures, np.float32) - self.mean) @ self.weights + self.bias)
        if dates is not None:
            row = {str(d): i for i, d in enumerate(self.dates)}
            at = [i for i, d in enumerate(dates) if str(d) in row]
            out[at] = self.held_out[[row[str(dates[i])] for i in at]]
        return out

    def fields(self) -> dict[str, np.ndarray]:
        """Its arrays for the lake's ``class_vectors.npz`` (read back by :meth:`from_fields`)."""
        return {"probe_weights": self.weights, "probe_bias": self.bias, "probe_mean": self.mean,
                "probe_share": np.float32(self.share), "probe_C": np.float32(self.C),
                "probe_space": np.array(self.space), "probe_version": np.array(self.version),
                "probe_dates": np.asarray(self.dates, dtype=str), "probe_targets": np.asarray(self.targets, np.int16),
                "probe_held_out": self.held_out}

    @classmethod
    def from_fields(cls, z) -> "PictureProbe | None":
        """The probe stored in an opened ``class_vectors.npz`` (None: lakes without one)."""
        if "probe_space" not in z.files:  # lakes built without one (or by an earlier form of it)
            return None
        return cls(weights=z["probe_weights"], bias=z["probe_bias"], mean=z["probe_mean"],
                   share=round(float(z["probe_share"]), 6), C=round(float(z["probe_C"]), 6),
                   space=str(z["probe_space"]), version=str(z["probe_version"]), dates=z["probe_dates"],
                   targets=z["probe_targets"].astype(np.int64), held_out=z["probe_held_out"])


def vote_probabilities(probs: np.ndarray, nn: np.ndarray, nearest: np.ndarray, tau: float) -> np.ndarray:
    """Neighbours' caption probabilities ``probs[nn]`` weighted by ``exp((sim − best) / tau)``."""
    weights = np.exp((nearest - nearest[:, :1]) / tau)
    weights /= weights.sum(axis=1, keepdims=True)
    return (probs[nn] * weights[..., None]).sum(axis=1)


def choose_vote(head: AlignHead, caption_probs: np.ndarray, *, k_grid: tuple[int, ...] = VOTE_K_GRID,
                tau_grid: tuple[float, ...] = VOTE_TAU_GRID,
                folds: int = INNER_FOLDS) -> tuple[CategoryVote, dict[str, float]]:
    """The vote that best names held-out training pictures' *caption* classes (no labels needed).

    ``caption_probs``: the class probabilities of the head's training captions, in its order. Inner
    cross-validation over contiguous date blocks of the head's training pairs: each held-out picture
    votes among the other blocks' pictures, and scores when its winner is its own caption's most likely
    class. Ties: the smaller ``k``, then the smaller ``τ``."""
    probs = np.asarray(caption_probs, np.float32)
    own_class = probs.argmax(axis=1)
    n = len(head.pictures)
    hits = {(k, tau): 0 for k in k_grid for tau in tau_grid}
    scored = 0
    for held in date_blocks(n, folds):
        keep = np.setdiff1d(np.arange(n), held)
        if len(held) == 0 or len(keep) == 0:
            continue
        # the head's pictures are centred already: a sub-head over them needs no mean
        sims = head.pictures[held] @ head.pictures[keep].T
        nn, nearest = top_k(sims, max(k_grid))
        for k, tau in hits:
            winner = vote_probabilities(probs[keep], nn[:, :k], nearest[:, :k], tau).argmax(axis=1)
            hits[(k, tau)] += int((winner == own_class[held]).sum())
        scored += len(held)
    if not scored:
        return CategoryVote(k=min(k_grid), tau=min(tau_grid)), {}
    scores = {f"k={k} tau={tau}": round(h / scored, 4) for (k, tau), h in hits.items()}
    k, tau = max(hits, key=lambda kt: (hits[kt], -kt[0], -kt[1]))
    return CategoryVote(k=k, tau=tau), scores


def make_head(pictures: np.ndarray, captions: np.ndarray, k: int, *, dates: list[str] | None = None,
              mean: np.ndarray | None = None) -> AlignHead:
    """A head of these pairs; ``mean``: the centring to use (default: the pictures' own mean)."""
    x = np.asarray(pictures, np.float32)
    if mean is None:
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    return AlignHead(pictures=l2_normalise(x - mean), captions=l2_normalise(captions), mean=mean.astype(np.float32),
                     k=int(k), dates=None if dates is None else np.asarray(dates, dtype=str))


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


def fit_head(pictures: np.ndarray, captions: np.ndarray, *,
             dates: list[str] | None = None) -> tuple[AlignHead, dict[int, float]]:
    """Fit the head on picture–caption pairs given in date order (``dates``: theirs, kept in the head);
    also returns the inner-CV scores."""
    k, scores = choose_k(pictures, captions)
    return make_head(pictures, captions, k, dates=dates), scores
