"""Embed stage: the vectors each tower makes — title, text (title + explanation) and image.

``image`` vectors exist only for entries with an image and come from pixels alone. The ``multimodal``
vector is made later, by the alignment stage (:mod:`pipeline.align`), from the text vector and the
picture mapped into the text space.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lake.layout import LakeLayout
from pipeline.config import SEED_KINDS
from pipeline.embed_cache import EmbeddingCache, write_seed
from pipeline.executors import EncodeChunks, Executor, LocalExecutor
from atlas.encoders import Encoder, space
from atlas.hashing import sha1_json, sha1_text

log = logging.getLogger(__name__)

#: The published picture space is kept while at most this share of the pictures it was fitted on are new
#: to it (as the word classifier's and the maps' 5 %); ``--refit`` or ``--force`` fit it anew.
SPACE_REFIT_SHARE = 0.05


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
    image_space_fingerprint: str = ""  # of the pictures the space was fitted on (kept: the last build's)
    image_space_kept: bool = False  # the last build's fitted space, reused (see embed_entries)
    image_space_new: int = 0  # pictures the kept space was not fitted on (placed in it as uploads are)


def seed_file(seeds: Path | None, tower_fingerprint: str, kind: str) -> Path | None:
    """Where a folder of seeds keeps one kind's vectors from one tower: ``<seeds>/<fingerprint>/<kind>.npz``
    (the fingerprint names the model and its settings, so another encoder never reads them)."""
    return None if seeds is None else seeds / tower_fingerprint / f"{kind}.npz"


def fill_cache(
    cache: EmbeddingCache,
    keys: list[str],
    inputs: list[Any],
    encode: EncodeChunks,
    *,
    chunk: int,
    desc: str,
    progress: bool,
    order_by_length: bool = False,
) -> int:
    """Encode the inputs whose keys ``cache`` lacks, in chunks of ``chunk`` (an executor's
    :meth:`~pipeline.executors.Executor.encoding`), each chunk added to the cache as it is done: a build
    that dies keeps every finished chunk. Returns how many inputs were encoded."""
    from tqdm import tqdm

    todo_keys = cache.missing(keys)
    if not todo_keys:
        return 0
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [(k, inputs[first[k]]) for k in todo_keys]
    if order_by_length:  # similar lengths in a batch → less padding work
        todo.sort(key=lambda kv: len(kv[1]))
    with tqdm(total=len(todo), desc=desc, unit="item", disable=not progress, mininterval=1.0) as bar:
        parts = [todo[start : start + chunk] for start in range(0, len(todo), chunk)]
        for i, vectors in encode([[item for _, item in part] for part in parts]):
            cache.add([k for k, _ in parts[i]], vectors)
            bar.update(len(parts[i]))
    return len(todo)


def chunk_by_chunk(encode: Callable[[list[Any]], np.ndarray]) -> EncodeChunks:
    """:func:`fill_cache`'s encoder from a function of one chunk, run here, one chunk after another."""
    return lambda chunks: ((i, encode(inputs)) for i, inputs in enumerate(chunks))


def embed_entries(
    rows: list[dict[str, Any]],
    encoder: Encoder,
    layout: LakeLayout,
    *,
    batch_size: int = 64,
    chunk: int = 512,
    progress: bool = True,
    executor: Executor | None = None,
    kept_space: Callable[[], tuple[dict[str, np.ndarray], str] | None] | None = None,
    seeds: Path | None = None,
) -> Embeddings:
    """Vectors of every entry, computing only what the content-addressed caches lack, on ``executor``
    (this process by default; a Ray cluster with ``--runner ray``).

    ``kept_space()``: the last build's fitted picture space and its fit fingerprint (None: none, or a
    re-fit is asked for). It is reused while it was fitted by this picture tower and fit version and at
    most :data:`SPACE_REFIT_SHARE` of today's pictures are new to it: the new ones are mapped into it as
    an upload is. A PCA re-fitted for one new picture would move every picture's vector (an SVD's signs
    and order are arbitrary), and with them every picture map, the alignment and the categories.

    ``seeds``: a folder of seed files (:func:`seed_file`), such as the bundled archive's shipped text
    vectors; the text and title vectors they hold for this encoder are not encoded again."""
    executor = executor or LocalExecutor()
    encode_texts = executor.encoding(encoder, "text", root=layout.root, batch_size=batch_size)
    encode_images = executor.encoding(encoder, "image", root=layout.root, batch_size=batch_size)
    text_fp, image_fp = encoder.info.tower_fingerprint("text"), encoder.info.tower_fingerprint("image")
    dates = [r["date"].isoformat() for r in rows]
    computed: dict[str, int] = {}

    titles = [r["title"] for r in rows]
    title_keys = [sha1_text(t) for t in titles]
    title_cache = EmbeddingCache(layout.embedding_cache(text_fp, kind="title"), seed=seed_file(seeds, text_fp, "title"))
    computed["title"] = fill_cache(
        title_cache, title_keys, titles, encode_texts,
        chunk=chunk, desc="embed titles", progress=progress, order_by_length=True,
    )

    texts = [text_input(r["title"], r["explanation"]) for r in rows]
    text_keys = [sha1_text(t) for t in texts]
    text_cache = EmbeddingCache(layout.embedding_cache(text_fp, kind="text"), seed=seed_file(seeds, text_fp, "text"))
    if text_cache.seeded:
        log.info("text vectors: %d shipped with the archive (%s) for this encoder", text_cache.seeded, seeds)
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
    kept, new_to_space = None, 0
    if kept_space is not None and with_image and (last := kept_space()) is not None:
        state, fitted_on = last
        fitted_keys = [str(k) for k in state["keys"]]
        new_to_space = len(set(image_keys) - set(fitted_keys))
        if (fitted_on == sha1_json([image_fp, space.FIT_VERSION, fitted_keys])
                and new_to_space <= SPACE_REFIT_SHARE * len(fitted_keys)):
            kept, space_fingerprint = state, fitted_on
    if with_image:
        features = image_cache.get(image_keys)
        fitted = kept if kept is not None else encoder.image_space(features)
        if kept is None and fitted:  # the pictures it was fitted on, so a later build can keep it
            fitted = {**fitted, "keys": np.asarray(image_keys, dtype=str)}
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
        image_space_new=new_to_space if kept is not None else 0,
    )


def export_seeds(*, layout: LakeLayout, out: Path, kinds: tuple[str, ...] = SEED_KINDS,
                 keep_seed: bool = False) -> dict[str, Path]:
    """Write the published lake's cached vectors of ``kinds`` for its current entries as seed files under
    ``out`` (:func:`seed_file`), from the lake's own embedding cache: exactly what its build computed,
    never re-encoded or edited. This is how ``data/apod/vectors`` is made: build the bundled archive with
    ``--no-shipped-vectors`` so that every vector is computed here, then export.

    ``keep_seed``: the vectors the build took from the seed already in ``out`` count too, so a build
    after a few texts changed (a repair of the archive's texts) updates the seed: the changed texts'
    vectors are this build's, every other one stays as it was, bit for bit, and the texts no entry has
    any more leave it. Raises ValueError when the cache lacks a vector (a lake built elsewhere, or its
    cache cleaned)."""
    from atlas.encoders import EncoderInfo
    from lake.reader import LakeReader

    unknown = sorted(set(kinds) - set(SEED_KINDS))
    if unknown:
        raise ValueError(f"cannot export {', '.join(unknown)}: seeds are made of {', '.join(SEED_KINDS)}")
    reader = LakeReader.open(layout.root)
    if "encoder" not in reader.manifest or "entries" not in reader.tables:
        raise ValueError(f"the lake at {layout.location} has no APOD collection to export vectors of")
    recorded = dict(reader.manifest["encoder"])
    recorded.pop("fingerprint", None)
    text_fp = EncoderInfo(**recorded).tower_fingerprint("text")
    rows = reader.query("SELECT title, explanation FROM entries ORDER BY date")
    inputs = {"title": list(rows.title),
              "text": [text_input(t, x) for t, x in zip(rows.title, rows.explanation)]}
    written = {}
    for kind in kinds:
        keys = list(dict.fromkeys(sha1_text(t) for t in inputs[kind]))
        path = seed_file(out, text_fp, kind)
        cache = EmbeddingCache(layout.embedding_cache(text_fp, kind=kind), seed=path if keep_seed else None)
        missing = cache.missing(keys)
        if missing:
            raise ValueError(f"the lake's embedding cache lacks {len(missing):,} of its {len(keys):,} {kind} "
                             "vectors; build it here first (python -m pipeline build --no-shipped-vectors, or a "
                             "build with the shipped vectors and --keep-seed)")
        write_seed(path, keys, cache.get(keys))
        log.info("%s: %d %s vectors", path, len(keys), kind)
        written[kind] = path
    return written
