"""Fitting the linear probe that offline picture categories blend with the look-alikes' vote.

The probe (:class:`atlas.encoders.align.PictureProbe`) is a multinomial logistic regression of the
alignment head's training pictures (centred, unit EfficientNet vectors) on their captions' categories
(the build's text categories): no hand label anywhere. Its inverse regularisation ``C`` and its share in
the blend are chosen by inner cross-validation over contiguous date blocks of the training pairs, as the
vote's own settings are (:func:`atlas.encoders.align.choose_vote`): the setting whose blend most often
names a held-out training picture's own caption class wins; a share of 0 (the vote alone) competes too.

Each training picture keeps the probabilities of the fold model that did not see it, so its stored
picture category never comes from its own caption, even after it has left the head (``--align-exclude``);
a picture it was not fitted on (a newer one, an upload) gets the full probe, which never saw it. Later
builds keep the probe while the picture space is the same and few of its training pictures changed
(:func:`refit_reason`): a daily ingest, with or without a new picture, refits nothing (the picture space
is kept too, :data:`pipeline.embed.SPACE_REFIT_SHARE`).

Why sklearn's lbfgs: deterministic, a few seconds for 3,000 × 256 vectors on 2 cores; and the fitted
weights are plain arrays, so the app applies the probe with numpy alone.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from atlas.encoders.align import (INNER_FOLDS, AlignHead, CategoryVote, PictureProbe, date_blocks, softmax,
                                  vote_probabilities)
from atlas.hashing import sha1_json
from atlas.topk import top_k

log = logging.getLogger(__name__)

#: Candidate inverse regularisations and blend shares; the inner cross-validation picks one pair. On the
#: archive C = 30 scored below C = 3 and 10 in every run and took the longest fit, so it is not tried.
C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0)
SHARE_GRID: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
#: Fewer training pictures than this: no probe (the vote alone). Above it the inner CV still decides the
#: probe's share, which may be 0.
MIN_PICTURES = 20
#: The published probe is kept while at most this share of its training pictures changed (as the word
#: classifier's :data:`pipeline.text_classifier.REFIT_SHARE`).
REFIT_SHARE = 0.05
_RULED_OUT = -1e4  # the bias of a class no training caption had: its probability is 0
_VERSION = "probe-v3"


def fit_probe(head: AlignHead, caption_probs: np.ndarray, *, names: list[str], vote: CategoryVote, space: str,
              kept: PictureProbe | None = None, refit: bool = False, c_grid: tuple[float, ...] = C_GRID,
              share_grid: tuple[float, ...] = SHARE_GRID, folds: int = INNER_FOLDS) -> tuple[PictureProbe | None, dict]:
    """The probe for ``head`` (``caption_probs``: its training captions' probabilities of the classes
    ``names``, in its order; ``vote``: the look-alikes' vote it is blended with; ``space``: the
    fingerprint of the picture space its vectors live in), and what the manifest records.

    ``kept`` (the published probe) is returned as it is unless :func:`refit_reason` gives a reason (or
    ``refit``). None: too few training pictures or caption classes to learn from (the vote alone)."""
    probs = np.asarray(caption_probs, np.float32)
    n, classes = probs.shape
    target = probs.argmax(axis=1)
    version = settings(names=names, c_grid=c_grid, share_grid=share_grid, folds=folds)
    reason = "--refit" if refit else refit_reason(kept, head, target, space=space, version=version)
    if reason is None:
        new = len(set(map(str, head.dates)) - set(map(str, kept.dates)))
        return kept, _report(kept, f"kept from an earlier build ({new} newer training pictures get the full probe)")
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
    dates = head.dates if head.dates is not None else [f"row {i}" for i in range(n)]
    probe = PictureProbe(weights=weights, bias=bias, mean=head.mean, share=float(share), C=float(best_c),
                         space=space, version=version, dates=np.asarray(dates, dtype=str), targets=target,
                         held_out=held_out[best_c])
    log.info("picture probe: C=%s share=%s (inner-CV caption-class agreement %.4f)", best_c, share,
             hits[(best_c, share)] / n)
    return probe, _report(probe, f"fitted ({reason})") | {"inner_cv_caption_class_agreement": scores}


def settings(*, names: list[str], c_grid: tuple[float, ...] = C_GRID, share_grid: tuple[float, ...] = SHARE_GRID,
             folds: int = INNER_FOLDS) -> str:
    """The fitting code's version, candidate settings and classes (a probe fitted under others is
    fitted anew; the classify stage re-runs when they change)."""
    return f"{_VERSION} C={c_grid} share={share_grid} folds={folds} classes={sha1_json(list(names))[:12]}"


def refit_reason(kept: PictureProbe | None, head: AlignHead, targets: np.ndarray, *, space: str,
                 version: str) -> str | None:
    """Why the published probe ``kept`` cannot serve ``head`` (whose training captions' classes are
    ``targets``), or None: it can while its picture space and settings are this build's and at most
    :data:`REFIT_SHARE` of its training pictures are new, gone or of another caption class (newer
    pictures get the full probe, which never saw them; pictures it was fitted on keep their held-out
    probabilities even when they have left the head)."""
    if kept is None:
        return "no probe yet"
    if kept.space != space:
        return "another picture space"
    if kept.version != version or kept.weights.shape[0] != head.pictures.shape[1]:
        return "other settings or classes"
    if head.dates is None:
        return "a head without dates"
    now = dict(zip(map(str, head.dates), targets.tolist()))
    then = dict(zip(map(str, kept.dates), kept.targets.tolist()))
    shared = now.keys() & then.keys()
    changed = len(now) + len(then) - 2 * len(shared) + sum(now[d] != then[d] for d in shared)
    if changed > REFIT_SHARE * len(then):
        return f"{changed} training pictures new, gone or of another caption class"
    return None


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

