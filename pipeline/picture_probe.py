"""Fitting the linear probe that offline picture categories blend with the look-alikes' vote.

The probe (:class:`atlas.encoders.align.PictureProbe`) is a multinomial logistic regression of the
alignment head's training pictures (centred, unit EfficientNet vectors) on their captions' categories
(the build's text categories): no hand label anywhere. Its inverse regularisation ``C`` and its share in
the blend are chosen by inner cross-validation over contiguous date blocks of the training pairs, as the
vote's own settings are (:func:`atlas.encoders.align.choose_vote`): the setting whose blend most often
names a held-out training picture's own caption class wins; a share of 0 (the vote alone) competes too.

Each training picture keeps the probabilities of the fold model that did not see it, so its stored
picture category never comes from its own caption; a picture outside the head's training set (excluded
with ``--align-exclude``, or an upload) gets the full probe, which never saw it. Later builds keep the
probe while its inputs are unchanged (:func:`probe_key`): a daily ingest without a new picture refits
nothing. A new picture refits it (≈ 7 s on the archive, 2 cores), as it refits the collection's picture
PCA and the alignment head.

Why sklearn's lbfgs: deterministic, a few seconds for 3,000 × 256 vectors on 2 cores; and the fitted
weights are plain arrays, so the app applies the probe with numpy alone.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np

from atlas.encoders.align import (INNER_FOLDS, AlignHead, CategoryVote, PictureProbe, date_blocks, softmax,
                                  vote_probabilities)
from atlas.topk import top_k

log = logging.getLogger(__name__)

#: Candidate inverse regularisations and blend shares; the inner cross-validation picks one pair. On the
#: archive C = 30 scored below C = 3 and 10 in every run and took the longest fit, so it is not tried.
C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0)
SHARE_GRID: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
#: Fewer training pictures than this: no probe (the vote alone). Above it the inner CV still decides the
#: probe's share, which may be 0.
MIN_PICTURES = 20
_RULED_OUT = -1e4  # the bias of a class no training caption had: its probability is 0
_VERSION = "probe-v2"


def probe_key(head: AlignHead, caption_probs: np.ndarray, *, names: list[str], vote: CategoryVote,
              c_grid: tuple[float, ...] = C_GRID, share_grid: tuple[float, ...] = SHARE_GRID,
              folds: int = INNER_FOLDS) -> str:
    """Fingerprint of everything a probe is fitted from: the head's picture vectors and dates (a new
    picture refits the collection's PCA, so every vector changes), its captions' class probabilities,
    the class names, the vote and the candidate settings. A later build with the same key keeps it."""
    h = hashlib.sha1(settings(c_grid=c_grid, share_grid=share_grid, folds=folds).encode())
    h.update(np.ascontiguousarray(head.pictures, np.float32).tobytes())
    h.update(np.ascontiguousarray(caption_probs, np.float32).tobytes())
    dates = None if head.dates is None else [str(d) for d in head.dates]
    h.update(repr((dates, list(names), vote.k, vote.tau)).encode())
    return h.hexdigest()


def fit_probe(head: AlignHead, caption_probs: np.ndarray, *, names: list[str], vote: CategoryVote,
              kept: PictureProbe | None = None, refit: bool = False, c_grid: tuple[float, ...] = C_GRID,
              share_grid: tuple[float, ...] = SHARE_GRID, folds: int = INNER_FOLDS) -> tuple[PictureProbe | None, dict]:
    """The probe for ``head`` (``caption_probs``: its training captions' probabilities of the classes
    ``names``, in its order; ``vote``: the look-alikes' vote it is blended with), and what the manifest
    records.

    ``kept`` (the published probe) is returned as it is when it was fitted on the same inputs
    (:func:`probe_key`), unless ``refit``. None: too few training pictures or caption classes to learn
    from (the vote alone)."""
    probs = np.asarray(caption_probs, np.float32)
    key = probe_key(head, probs, names=names, vote=vote, c_grid=c_grid, share_grid=share_grid, folds=folds)
    if kept is not None and kept.key == key and not refit:
        return kept, _report(kept, "kept from an earlier build (same pictures, captions and classes)")
    reason = "--refit" if refit and kept is not None else "no probe yet" if kept is None else "new inputs"
    n, classes = probs.shape
    target = probs.argmax(axis=1)
    blocks = [b for b in date_blocks(n, folds) if len(b)]
    if n < MIN_PICTURES or len(blocks) < 2 or any(
            len(np.unique(np.delete(target, held))) < 2 for held in blocks):
        return None, {"method": f"none (fewer than {MIN_PICTURES} training pictures, or one caption class)"}
    pictures = head.pictures
    held_out = {c: np.zeros((n, classes), np.float32) for c in c_grid}
    votes = np.zeros((n, classes), np.float32)
    for held in blocks:
        keep = np.setdiff1d(np.arange(n), held)
        nn, nearest = top_k(pictures[held] @ pictures[keep].T, min(vote.k, len(keep)))
        votes[held] = vote_probabilities(probs[keep], nn, nearest, vote.tau)
        for c in c_grid:
            weights, bias = _fit(pictures[keep], target[keep], classes, c)
            held_out[c][held] = softmax(pictures[held] @ weights + bias)
    hits = {(c, share): int((((1 - share) * votes + share * held_out[c]).argmax(axis=1) == target).sum())
            for c in c_grid for share in share_grid}
    # ties: the smaller share (the vote alone is the simpler rule), then the stronger regularisation
    best_c, share = max(hits, key=lambda cs: (hits[cs], -cs[1], -cs[0]))
    scores = {f"C={c} share={s}": round(h / n, 4) for (c, s), h in hits.items()}
    weights, bias = _fit(pictures, target, classes, best_c)
    probe = PictureProbe(weights=weights, bias=bias, share=float(share), C=float(best_c), key=key,
                         held_out=held_out[best_c])
    log.info("picture probe: C=%s share=%s (inner-CV caption-class agreement %.4f)", best_c, share,
             hits[(best_c, share)] / n)
    return probe, _report(probe, f"fitted ({reason})") | {"inner_cv_caption_class_agreement": scores}


def settings(*, c_grid: tuple[float, ...] = C_GRID, share_grid: tuple[float, ...] = SHARE_GRID,
             folds: int = INNER_FOLDS) -> str:
    """The fitting code's version and candidate settings (part of :func:`probe_key`; the classify stage
    re-runs when they change)."""
    return f"{_VERSION} C={c_grid} share={share_grid} folds={folds}"


def _report(probe: PictureProbe, how: str) -> dict:
    return {"method": "logistic regression on the training pictures' caption categories", "C": probe.C,
            "share": probe.share, "model": how}


def _fit(x: np.ndarray, y: np.ndarray, classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (dim × classes) and bias (classes) of a multinomial logistic regression; classes absent
    from ``y`` are ruled out by their bias."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter bounds the time; the fit is still usable
        model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    weights = np.zeros((x.shape[1], classes), np.float32)
    bias = np.full(classes, _RULED_OUT, np.float32)
    present = model.classes_
    if len(present) == 2:  # sklearn fits one logit for two classes: softmax over (0, logit) is the same
        weights[:, present[1]], bias[present[1]], bias[present[0]] = model.coef_[0], model.intercept_[0], 0.0
    else:
        weights[:, present], bias[present] = model.coef_.T, model.intercept_
    return weights, bias

