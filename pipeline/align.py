"""Alignment stage's algorithm: pictures in the text space, and the multimodal vector made from them.

* With a shared text–image space (OpenCLIP) the picture vectors already are text-comparable; they are
  used as they are.
* Otherwise (the offline encoder) a head learned from the collection's own picture–caption pairs maps
  each picture into the text space (:mod:`atlas.encoders.align`). Dates listed with
  ``--align-exclude`` never enter training; training pictures are mapped leave-one-out.

``multimodal`` is ``[text, picture-in-text-space] / √2`` (then unit length): both halves live in one
space, so a text query ``[q, q]`` scores an entry by the mean of how well its text and its picture
match, and an uploaded picture ``[p, p]`` does the same from the other side. An entry without a picture
uses its text vector for both halves: it is found by its text alone, never penalised for lacking a
picture, and never looks like any picture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atlas.encoders import l2_normalise
from atlas.encoders.align import HEAD_NAME, K_GRID, AlignHead, fit_head, make_head
from atlas.hashing import sha1_bytes, sha1_json

log = logging.getLogger(__name__)

#: Fewer training pairs than this and no head is fitted (too few to choose k or to mean anything).
MIN_PAIRS = 20


@dataclass
class Alignment:
    dates: list[str]  # pictures' dates, in the order of ``aligned``
    aligned: np.ndarray  # pictures in the text space (unit rows)
    multimodal_dates: list[str]
    multimodal: np.ndarray
    head: AlignHead | None
    report: dict[str, Any] = field(default_factory=dict)


def multimodal_vectors(text: np.ndarray, picture_half: np.ndarray) -> np.ndarray:
    return l2_normalise(np.hstack([text, picture_half]))


#: ``kept(fingerprint)``: the last build's head, its inner-CV scores and whether it was trained on exactly
#: the pairs with this fingerprint; None when there is none, or when its pairs differ and its pictures'
#: space is not this build's (or a re-fit is asked for).
KeptHead = Callable[[str], "tuple[AlignHead, dict[int, float], bool] | None"]
#: A last head whose training pairs are all still here is extended (its ``k`` and centring kept) while
#: the new pairs are at most this share of its own; above it, or when a pair left, the head is trained anew.
EXTEND_SHARE = 0.05


def align(*, text: tuple[list[str], np.ndarray], image: tuple[list[str], np.ndarray], shared_space: bool,
          exclude: set[str], kept: KeptHead | None = None) -> Alignment:
    """Pictures mapped into the text space (learning the map when the encoder has no shared space).

    ``kept``: the last build's head, reused when the training pairs are unchanged (a day without a
    picture adds none): training is deterministic, so the head would be the same, and its inner CV is
    most of the stage's time. A day's new picture extends it instead (:data:`EXTEND_SHARE`): the new pair
    joins with the same ``k`` and centring, so an old picture's aligned vector changes only where the new
    picture becomes one of its look-alikes (a re-trained head would move every one by its new mean, and
    with them every multimodal vector, map drift and k-NN graph)."""
    text_dates, text_vecs = text
    image_dates, image_vecs = image
    text_row = {d: i for i, d in enumerate(text_dates)}
    head, report = None, {}
    if not image_dates:
        aligned = np.zeros((0, text_vecs.shape[1]), np.float32)
        report = {"method": "none (no pictures)"}
    elif shared_space:
        aligned = l2_normalise(image_vecs)
        report = {"method": "shared encoder space (no head)"}
    else:
        train = [i for i, d in enumerate(image_dates) if d in text_row and d not in exclude]
        order = sorted(train, key=lambda i: image_dates[i])  # date order: the inner CV uses date blocks
        train_dates = [image_dates[i] for i in order]
        excluded = sum(1 for d in image_dates if d in exclude)
        if len(order) < MIN_PAIRS:
            log.warning("alignment: %d picture–caption pairs (< %d); no text–picture space", len(order), MIN_PAIRS)
            return Alignment([], np.zeros((0, text_vecs.shape[1]), np.float32), list(text_dates),
                             multimodal_vectors(text_vecs, text_vecs), None, {"method": f"none (fewer than {MIN_PAIRS} training pairs)", "pairs": len(order)})
        captions = text_vecs[[text_row[d] for d in train_dates]]
        fingerprint = sha1_json([train_dates, sha1_bytes(np.ascontiguousarray(captions).tobytes()),
                                 sha1_bytes(np.ascontiguousarray(image_vecs[order]).tobytes())])[:16]
        last = kept(fingerprint) if kept is not None else None
        last_dates = set() if last is None or last[0].dates is None else {str(d) for d in last[0].dates}
        new_pairs = len(set(train_dates) - last_dates)
        if last is not None and last[2] and last[0].dates is not None and list(last[0].dates) == train_dates:
            (head, inner, _), how = last, "kept from the last build (same training pairs)"
        elif last is not None and last_dates and last_dates <= set(train_dates) and new_pairs <= EXTEND_SHARE * len(last_dates):
            head = make_head(image_vecs[order], captions, last[0].k, dates=train_dates, mean=last[0].mean)
            inner, how = last[1], f"extended from the last build ({new_pairs} new pairs; its k and centring kept)"
        else:
            head, inner = fit_head(image_vecs[order], captions, dates=train_dates)
            how = "trained"
        aligned = head.apply(image_vecs, own_rows=head.own_rows(list(image_dates)))
        report = {"method": HEAD_NAME, "k": head.k, "k_grid": list(K_GRID),
                  "inner_cv_caption_to_picture_r10": {str(k): v for k, v in inner.items()},
                  "pairs": len(order), "excluded_pictures": excluded, "training_fingerprint": fingerprint,
                  "head": how,
                  "training_pictures": "leave-one-out (a picture's own caption never shapes its aligned vector)"}
        log.info("alignment: %s head, k=%d from %d pairs (%d excluded), %s", HEAD_NAME, head.k, len(order), excluded,
                 how)
    aligned_row = {d: i for i, d in enumerate(image_dates)}
    half = np.array(text_vecs, np.float32, copy=True)
    for d, i in text_row.items():
        if d in aligned_row:
            half[i] = aligned[aligned_row[d]]
    return Alignment(list(image_dates), aligned, list(text_dates), multimodal_vectors(text_vecs, half), head, report)
