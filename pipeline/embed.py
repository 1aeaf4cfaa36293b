"""Embed stage: the vectors each tower makes — title, text (title + explanation) and image.

``image`` vectors exist only for entries with an image and come from pixels alone. The ``multimodal``
vector is made later, by the alignment stage (:mod:`pipeline.align`), from the text vector and the
picture mapped into the text space.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lake.layout import LakeLayout
from pipeline.embed_cache import EmbeddingCache
from pipeline.executors import Executor, LocalExecutor
from atlas.encoders import Encoder, space
from atlas.hashing import sha1_json, sha1_text

log = logging.getLogger(__name__)


def text_input(title: str, explanation: str) -> str:
    return f"{title}. {explanation}".strip() if explanation else title


@dataclass
class Embeddings:
    """Vectors per kind, each with the ISO dates of its rows."""

    dates: dict[str, list[str]]
    vectors: dict[str, np.ndarray]
    image_space: dict[str, np.ndarray]
    computed: dict[str, int] = field(default_factory=dict)  # items actually encoded this run
    #: identifies what the space was fitted on: the picture tower, the fit's version, the pictures' keys in order
    image_space_fingerprint: str = ""
    image_space_kept: bool = False  # the last build's fitted space, reused: same pictures, same fit


def fill_cache(
    cache: EmbeddingCache,
    keys: list[str],
    inputs: list[Any],
    encode,
    *,
    chunk: int,
    desc: str,
    progress: bool,
    order_by_length: bool = False,
) -> int:
    from tqdm import tqdm

    todo_keys = cache.missing(keys)
    if not todo_keys:
        return 0
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [(k, inputs[first[k]]) for k in todo_keys]
    if order_by_length:  # similar lengths in a batch → less padding work
        todo.sort(key=lambda kv: len(kv[1]))
    with tqdm(total=len(todo), desc=desc, unit="item", disable=not progress, mininterval=1.0) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            vectors = encode([item for _, item in part])
            cache.add([k for k, _ in part], vectors)
            bar.update(len(part))
    return len(todo)


def embed_entries(
    rows: list[dict[str, Any]],
    encoder: Encoder,
    layout: LakeLayout,
    *,
    batch_size: int = 64,
    chunk: int = 512,
    progress: bool = True,
    executor: Executor | None = None,
    kept_space: Callable[[str], dict[str, np.ndarray] | None] | None = None,
) -> Embeddings:
    """Vectors of every entry, computing only what the content-addressed caches lack, on ``executor``
    (this process by default; a Ray cluster with ``--runner ray``).

    ``kept_space(fingerprint)``: the last build's fitted picture space when it was fitted on the same
    pictures (None otherwise). The fit is deterministic, so reusing it gives the same vectors; a day
    without a new picture then skips the SVD of every picture's features."""
    executor = executor or LocalExecutor()
    encode_texts = executor.encoding(encoder, "text", root=layout.root, batch_size=batch_size)
    encode_images = executor.encoding(encoder, "image", root=layout.root, batch_size=batch_size)
    text_fp, image_fp = encoder.info.tower_fingerprint("text"), encoder.info.tower_fingerprint("image")
    dates = [r["date"].isoformat() for r in rows]
    computed: dict[str, int] = {}

    titles = [r["title"] for r in rows]
    title_keys = [sha1_text(t) for t in titles]
    title_cache = EmbeddingCache(layout.embedding_cache(text_fp, kind="title"))
    computed["title"] = fill_cache(
        title_cache, title_keys, titles, encode_texts,
        chunk=chunk, desc="embed titles", progress=progress, order_by_length=True,
    )

    texts = [text_input(r["title"], r["explanation"]) for r in rows]
    text_keys = [sha1_text(t) for t in texts]
    text_cache = EmbeddingCache(layout.embedding_cache(text_fp, kind="text"))
    computed["text"] = fill_cache(
        text_cache, text_keys, texts, encode_texts,
        chunk=chunk, desc="embed texts", progress=progress, order_by_length=True,
    )

    with_image = [r for r in rows if r.get("has_image")]
    image_keys = [r["image_sha1"] for r in with_image]
    image_cache = EmbeddingCache(layout.embedding_cache(image_fp, kind="image"))
    computed["image"] = fill_cache(
        image_cache, image_keys, [r["image_path"] for r in with_image], encode_images,
        chunk=chunk, desc="embed images", progress=progress,
    )

    image_dates = [r["date"].isoformat() for r in with_image]
    space_fingerprint = sha1_json([image_fp, space.FIT_VERSION, image_keys])
    kept = kept_space(space_fingerprint) if kept_space is not None and with_image else None
    if with_image:
        features = image_cache.get(image_keys)
        fitted = kept if kept is not None else encoder.image_space(features)
        image_vecs = encoder.to_image_vectors(features, fitted)
    else:
        fitted, image_vecs = {}, np.zeros((0, encoder.info.image_dim), np.float32)

    return Embeddings(
        dates={"title": dates, "text": dates, "image": image_dates},
        vectors={"title": title_cache.get(title_keys), "text": text_cache.get(text_keys), "image": image_vecs},
        image_space=fitted,
        computed=computed,
        image_space_fingerprint=space_fingerprint,
        image_space_kept=kept is not None,
    )
