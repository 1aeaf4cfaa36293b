"""The build's stages: each a function from the build context to a :class:`StageResult`, registered
once in :data:`STAGES` with what its output depends on.

The algorithms live in their own modules (``ingest``, ``images``, ``embed``, ``align``, ``classify``,
``project``, ``cluster``, ``sky``); the functions here only read a stage's inputs from the lake or from earlier
stages, call the algorithm and stage the outputs. Skipping, resuming, timing and publishing are the
runner's (:mod:`pipeline.runner`). Adding a stage: write ``def my_stage(ctx) -> StageResult`` and add
one ``Stage(...)`` line to :data:`STAGES`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from atlas.encoders import Encoder, build_encoder
from atlas.hashing import file_digest, sha1_file, sha1_json, sha1_text
from lake import atomic, vectors
from lake.galaxy_schema import IMAGE_KIND as GALAXY_IMAGE_KIND, MORPHOLOGY_KIND
from lake.schema import ALIGNED_KIND, EMBEDDING_KINDS, KEYWORD_KIND, SCHEMAS, VECTOR_KINDS, VECTOR_TABLES_VERSION
from pipeline import cluster, project, taxonomy
from pipeline.config import BUNDLED_ARCHIVE, BUNDLED_IMAGES, BUNDLED_VECTORS, RAY_ACTOR_CPUS, BuildConfig
from pipeline.embed import embed_entries, text_input
from pipeline.encoder_host import EncoderHost
from pipeline.executors import Executor, make_executor
from pipeline.images import ImageLimits, attach_images
from pipeline.ingest import ingest
from pipeline.neighbors import KnnGraph, cached_knn_graph, knn_graph
from pipeline.runner import BuildContext, BuildSummary, Runner, Stage, StageResult
from pipeline.sources import RawBatch, bundled, dump, nasa

log = logging.getLogger(__name__)


# -- shared resources (made on first use, so skipped stages cost nothing) ------------------------------
def encoder_spec(cfg: BuildConfig, *, published: str | None = None) -> dict[str, Any]:
    """Which encoder a build will use, decided without loading any weights. ``published``: the encoder
    the published lake was embedded with. ``auto`` keeps it (unless ``--force``): a lake built offline is
    not silently re-embedded, and its weights downloaded, the day OpenCLIP becomes reachable; only a new
    lake, ``--force`` or an explicit ``--encoder`` chooses afresh. An OpenCLIP lake whose weights are gone
    falls back to the offline encoder (re-embedding), as a new lake would."""
    name = cfg.encoder
    if name == "auto" and published == "offline" and not cfg.force:
        log.info("--encoder auto keeps this lake's offline encoder (--encoder openclip switches to OpenCLIP "
                 "where its weights load, re-embedding every entry)")
        name = "offline"
    if name == "auto":
        from atlas.encoders.openclip import cached_weights, hub_reachable

        usable = cfg.clip_checkpoint or cfg.clip_pretrained == "random"
        if not usable:
            try:  # weights already on disk, else (unless --offline) the hub if it answers
                usable = (cached_weights(cfg.clip_model, cfg.clip_pretrained) is not None
                          or (not cfg.offline and hub_reachable()))
            except Exception as exc:  # unknown model/tag: the offline encoder it is, said so (a typo shows)
                log.warning("--encoder auto: OpenCLIP %s/%s cannot be used (%s: %s); the offline encoder it is",
                            cfg.clip_model, cfg.clip_pretrained, type(exc).__name__, exc)
                usable = False
        name = "openclip" if usable else "offline"
    if name == "openclip":
        ckpt = cfg.clip_checkpoint
        return {"name": "openclip", "model": cfg.clip_model, "pretrained": cfg.clip_pretrained,
                "checkpoint": [str(ckpt), file_digest(ckpt)] if ckpt and ckpt.is_file() else None,
                "config": sha1_text(Path(cfg.clip_config).read_text()) if cfg.clip_config else None,
                "quantize": cfg.quantize}
    from atlas.encoders import efficientnet
    from atlas.encoders.offline import IMAGE_DIM

    return {"name": "offline", "quantize": cfg.quantize, "text_max_tokens": cfg.text_max_tokens,
            "image_weights": efficientnet.weights_sha256(), "image_dim": IMAGE_DIM}


def _spec(ctx: BuildContext) -> dict[str, Any]:
    def decide() -> dict[str, Any]:
        published = (ctx.live_manifest("embed").get("encoder", {}).get("name")  # a Galaxy Zoo-only lake's is gz2's
                     or ctx.live_manifest("gz2_galaxies").get("gz2", {}).get("encoder", {}).get("name"))
        return encoder_spec(ctx.cfg, published=published)
    return ctx.resource("encoder_spec", decide)


def _encoder(ctx: BuildContext) -> Encoder:
    """The build's encoder: in a process of its own with the local runner (:mod:`pipeline.encoder_host`,
    unless ``--no-background-stages`` or ``--threads 1`` keeps the build in one process), in this one with
    Ray's (whose actors load their own)."""
    def make() -> Encoder:
        from atlas.device import set_threads

        cfg = ctx.cfg
        set_threads(cfg.threads)
        build = functools.partial(
            build_encoder, _spec(ctx)["name"], quantize=cfg.quantize, text_max_tokens=cfg.text_max_tokens,
            clip_model=cfg.clip_model, clip_pretrained=cfg.clip_pretrained, clip_checkpoint=cfg.clip_checkpoint,
            clip_config=cfg.clip_config, trace_dir=ctx.layout.model_cache, allow_download=not cfg.offline)
        if _hosts_encoder(cfg):
            return EncoderHost(build, threads=cfg.threads)
        return build()

    return ctx.resource("encoder", make)


def _hosts_encoder(cfg: BuildConfig) -> bool:
    """Whether the encoder gets a process of its own: as the worker does, when a core is left for it."""
    return cfg.runner == "local" and cfg.helper_processes


def _load_encoder_ahead(ctx: BuildContext) -> None:
    """Start the encoder host as the build starts, so that it loads while the first stages run."""
    if _hosts_encoder(ctx.cfg):
        _encoder(ctx)


def _executor(ctx: BuildContext) -> Executor:
    """Where encoding and vector writes run (``--runner``): made on first use, closed by the runner."""
    cfg = ctx.cfg
    return ctx.resource("executor", lambda: make_executor(
        runner=cfg.runner, address=cfg.ray_address, threads=cfg.threads, actors=cfg.ray_actors,
        actor_cpus=cfg.ray_actor_cpus or RAY_ACTOR_CPUS, actor_gpus=cfg.ray_gpus_per_actor, trace_dir=ctx.layout.model_cache))


def _knn(ctx: BuildContext, kind: str, k: int) -> KnnGraph:
    """One exact cosine k-NN graph per embedding kind, shared by the maps, the clustering and the
    anomaly detectors (a smaller ``k`` is a slice of the graph already made), and kept in the lake's
    cache between builds: a build that adds a day extends the kept graph instead of recomputing it
    (:func:`pipeline.neighbors.cached_knn_graph`). Every caller gets the graph made at the largest ``k``
    any of them uses, so the kept graph does not depend on which stage asks first: the anomaly stage may
    run in the worker process at the same time as the maps, both keeping the graph in the same file."""
    key = f"knn:{kind}"
    graph = ctx.resources.get(key)
    if graph is None or graph.k < k:
        need = max(k, _projection_params(ctx).knn_k, CLUSTER_KNN, _anomaly_params(ctx).graph_k)
        dates, vecs = ctx.writer.read_vectors(kind)
        graph = ctx.resources[key] = cached_knn_graph(vecs, need, keys=dates, store=ctx.layout.knn_cache(kind))
    return graph.truncated(k)


def _taxonomy(ctx: BuildContext) -> taxonomy.Taxonomy:
    """The taxonomy file read once per build: the classify stage's hash and the stage itself use it."""
    return ctx.resource("taxonomy", lambda: taxonomy.load(ctx.cfg.taxonomy_path))


def _rows(ctx: BuildContext) -> list[dict[str, Any]]:
    return ctx.value("images")


def _entries(ctx: BuildContext, columns: list[str]) -> list[dict[str, Any]]:
    """The entries' ``columns`` from the staged (else published) entries table: what a stage that may run
    in the worker process reads instead of the ingest's rows, which only the main process holds."""
    return ctx.writer.read_table("entries", columns=columns).to_pylist()


def _texts(ctx: BuildContext) -> dict[str, str]:
    """Each entry's ``title. explanation`` by ISO date, made once per build: the embed stage's input
    hash, the word classifier and the keyword index all read them."""
    return ctx.resource("texts", lambda: {r["date"].isoformat(): text_input(r["title"], r["explanation"])
                                          for r in _rows(ctx)})


def _text_categories(ctx: BuildContext) -> dict[str, Any]:
    """The text categories by ISO date, read once per build (cluster labels, vector columns, export)."""
    def make() -> dict[str, Any]:
        cats = ctx.writer.read_table("categories").to_pandas()
        text = cats[cats.source == "text"]
        return text.set_index(text.date.astype(str))

    return ctx.resource("text_categories", make)


# -- ingest and images: always run (they read the sources) ----------------------------------------------
def load_sources(cfg: BuildConfig) -> list[RawBatch]:
    """Every source's records, in the order of ``cfg.sources``. The API is asked from ``--start``, or,
    beside other sources, from the day after the latest they hold (``--source bundled --source nasa``
    adds the days since the bundled archive), else from the first APOD."""
    loaded: dict[int, list[RawBatch]] = {}
    for i, source in enumerate(cfg.sources):
        if source == "bundled":
            loaded[i] = [bundled.load(BUNDLED_ARCHIVE, BUNDLED_IMAGES)]
        elif source == "dump":
            loaded[i] = [dump.load(p) for p in cfg.dump_paths]
    for i, source in enumerate(cfg.sources):
        if source == "nasa":
            start = cfg.start or _day_after([b for part in loaded.values() for b in part])
            client = nasa.NasaApodClient(api_url=cfg.nasa_api_url, api_key=cfg.nasa_api_key,
                                         cache_dir=cfg.lake.api_cache)
            loaded[i] = [nasa.load(client, start, cfg.end, progress=cfg.progress)]
    batches = [b for i in sorted(loaded) for b in loaded[i]]
    if cfg.start or cfg.end:  # --start/--end bound every source, not only the API
        lo, hi = cfg.start or dt.date.min, cfg.end or dt.date.max
        for b in batches:
            inside = [_in_range(r, lo, hi) for r in b.records]
            b.outside_window = [r for r, keep in zip(b.records, inside) if not keep and isinstance(r, dict)]
            b.records = [r for r, keep in zip(b.records, inside) if keep]
    return batches


def _day_after(batches: list[RawBatch]) -> dt.date | None:
    """The day after the latest valid date in ``batches`` (None: they hold none)."""
    days = [day for b in batches for day in map(_record_day, b.records) if day is not None]
    if not days:
        return None
    log.info("NASA API: asking for the days after %s, the latest the other sources hold", max(days))
    return max(days) + dt.timedelta(days=1)


def _in_range(record: dict[str, Any], lo: dt.date, hi: dt.date) -> bool:
    day = _record_day(record)
    return day is None or lo <= day <= hi  # a record without a valid date: let ingest report it


def _record_day(record: dict[str, Any]) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(record.get("date"))[:10])
    except ValueError:
        return None


def content_hash(row: dict[str, Any]) -> str:
    keys = ("title", "explanation", "credit", "copyright", "rights_note", "url", "hdurl", "media_type",
            "image_sha1", "source", "record_source")
    return sha1_json([row.get(k) for k in keys])


def ingest_stage(ctx: BuildContext) -> StageResult:
    result = ingest(load_sources(ctx.cfg), limit=ctx.cfg.limit)
    if not result.rows:
        raise ValueError("no valid entries to build from; check --source/--start/--end and the input files")
    _warn_if_shrinking(ctx, len(result.rows))
    return StageResult(items=len(result.rows), value=result.rows, manifest={
        "sources": ctx.cfg.sources,
        "invalid_rows": {"by_reason": dict(result.invalid_by_reason), "examples": result.invalid[:50]},
        "restored_starts": {"count": len(result.restored_starts), "dates": result.restored_starts[:50]},
        "repaired_characters": {"entries": len(result.repaired_characters), "dates": result.repaired_characters[:50],
                                "characters_left": result.replaced_left},
        "separated_credits": {"entries": len(result.separated_credits), "dates": result.separated_credits[:50]},
    })


#: A build whose entries fall below this share of the published lake's says so before it goes on.
SHRINK_WARNING = 0.9


def _warn_if_shrinking(ctx: BuildContext, entries: int) -> None:
    """The lake holds what the sources give, not what it held plus them: ``--limit 300`` meant as a quick
    look, or ``--source nasa --start DAY`` meant as "add these days", publishes a small lake over the
    whole one (which stays only among the kept versions). Not refused (it may be meant), but said."""
    published = ctx.live_manifest("images").get("counts", {}).get("entries")
    if isinstance(published, int) and entries < SHRINK_WARNING * published:
        log.warning("this build keeps %s entries where the published lake at %s has %s (the sources and "
                    "--limit/--start/--end decide what a lake holds): for a quick look, give another --lake; "
                    "to add new days, keep the bundled source (--source bundled --source nasa)",
                    f"{entries:,}", ctx.cfg.lake.location, f"{published:,}")


def images_stage(ctx: BuildContext) -> StageResult:
    rows = ctx.value("ingest")
    layout, cfg = ctx.layout, ctx.cfg
    index = json.loads(layout.thumbs_index.read_text()) if layout.thumbs_index.is_file() else {}
    limits = ImageLimits(cfg.max_image_bytes, cfg.max_image_pixels, cfg.thumb_size)
    fetched = {}
    if cfg.fetch_images:
        from pipeline.fetch import PoliteFetcher

        urls = [r["url"] for r in rows if r["media_type"] == "image" and not r.get("image_file") and r.get("url")]
        fetch = PoliteFetcher(layout.download_cache, limits).fetch_all(urls, progress=cfg.progress)
        fetched = {"fetch": {"downloaded": fetch.fetched, "already_cached": fetch.cached,
                             "failed": dict(fetch.failed)}}
    new_index, report = attach_images(rows, layout, limits, index=index, allow_download=not cfg.offline,
                                      progress=cfg.progress)
    atomic.write_json(layout.thumbs_index, index | new_index)
    if report.rejected:
        log.warning("images rejected: %s", dict(report.rejected))
    for row in rows:
        row["content_sha1"] = content_hash(row)
    # the thumbnail's name too: the entries table must name the file this build's pictures are in (a
    # lake from before thumbnails were named by content gets them renamed, and its old files swept)
    fingerprint = sha1_json([(r["date"].isoformat(), r["content_sha1"], r.get("image_path")) for r in rows])
    return StageResult(items=report.thumbnails, value=rows, fingerprint=fingerprint, manifest={
        "counts": {"entries": len(rows), "with_image": sum(1 for r in rows if r.get("has_image"))},
        "images": {"thumbnails_made": report.thumbnails, "reused": report.reused, "rejected": dict(report.rejected),
                   **fetched},
    })


def entries_stage(ctx: BuildContext) -> StageResult:
    cols = SCHEMAS["entries"].names
    rows = _rows(ctx)
    ctx.writer.stage_table("entries", pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]))
    return StageResult(items=len(rows))


# -- meaning ------------------------------------------------------------------------------------------
def _embed_inputs(ctx: BuildContext) -> Any:
    texts = _texts(ctx)
    items = [(r["date"].isoformat(), sha1_text(r["title"]), sha1_text(texts[r["date"].isoformat()]),
              r.get("image_sha1")) for r in _rows(ctx)]
    # without the shipped seeds the stage computes other vectors (this machine's own), so it must run again;
    # with them (the default) the inputs stay as they were, and so do lakes built before this was an input
    return [_spec(ctx), items, *([] if ctx.cfg.shipped_vectors else ["no shipped vectors"])]


def embed_stage(ctx: BuildContext) -> StageResult:
    encoder = _encoder(ctx)
    emb = embed_entries(_rows(ctx), encoder, ctx.layout, batch_size=ctx.cfg.batch_size, chunk=ctx.cfg.embed_chunk,
                        progress=ctx.cfg.progress, executor=_executor(ctx),
                        kept_space=lambda: _kept_space(ctx),
                        seeds=BUNDLED_VECTORS if ctx.cfg.shipped_vectors else None)
    for kind, dates in emb.dates.items():  # empty ones too: later stages must not read the last version's
        ctx.writer.stage_vectors(kind, dates, emb.vectors[kind])
    ctx.writer.stage_arrays(ctx.layout.image_space, emb.image_space)
    # the encoder's process (loaded ahead for this stage) works for it: its CPU, loading included, is the stage's
    return StageResult(items=sum(emb.computed.values()), summary={"embedded": emb.computed},
                       cpu_elsewhere=encoder.cpu_seconds() if isinstance(encoder, EncoderHost) else 0.0, manifest={
        "encoder": encoder.info.to_dict(),
        "counts": {f"vectors_{k}": len(d) for k, d in emb.dates.items()},
        "image_space": {"fingerprint": emb.image_space_fingerprint,
                        "fit": ("fitted" if not emb.image_space_kept else "kept from the last build"
                                + (f" ({emb.image_space_new} new pictures mapped into it)" if emb.image_space_new else ""))},
    })


def _refit_asked(ctx: BuildContext) -> bool:
    """``rerun`` of the stages that keep fitted models (anomaly, classify, project): ``--refit`` runs them
    again though their inputs are unchanged. Not an input: the plain build after a ``--refit`` build
    re-ran those stages, and the ones after them, only because the flag was gone again."""
    return bool(ctx.cfg.refit)


def _refits(ctx: BuildContext) -> bool:
    """Whether what a build may keep of the published one (maps, word classifier, picture probe, isolation
    forests, picture space) is fitted anew: under ``--refit``, and under ``--force``, which promises to
    recompute every stage (before, it re-fitted the picture space and the alignment head but kept the rest)."""
    return bool(ctx.cfg.refit or ctx.cfg.force)


def _kept_space(ctx: BuildContext) -> tuple[dict[str, np.ndarray], str] | None:
    """The published picture space (with the keys of the pictures it was fitted on) and its fit
    fingerprint, for :func:`pipeline.embed.embed_entries` to keep while few pictures are new to it; None
    under ``--force`` or ``--refit``, or when the saved arrays are unreadable, lack their keys (lakes
    before spaces were kept across new pictures) or are not a space of the encoder's size."""
    from atlas.encoders.space import FIELDS

    live = ctx.live_manifest("embed").get("image_space", {})
    if _refits(ctx) or not live.get("fingerprint") or not ctx.layout.image_space.is_file():
        return None
    try:
        with np.load(ctx.layout.image_space) as saved:
            kept = {name: saved[name] for name in (*FIELDS, "keys")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # unreadable: fit again
        return None
    dim = int(_encoder(ctx).info.image_dim)
    ok = kept["components"].ndim == 2 and kept["components"].shape[0] == dim
    return (kept, str(live["fingerprint"])) if ok else None


def _align_inputs(ctx: BuildContext) -> Any:
    return [ctx.hash("embed"), _spec(ctx), ctx.cfg.excluded_from_alignment(), "neighbour-captions-v2"]


def align_stage(ctx: BuildContext) -> StageResult:
    """Pictures in the text space (a head learned from the archive's picture–caption pairs unless the
    encoder already shares one) and the multimodal vectors made from the two halves."""
    from pipeline.align import align

    exclude = set(ctx.cfg.excluded_from_alignment())
    result = align(text=ctx.writer.read_vectors("text"), image=ctx.writer.read_vectors("image"),
                   shared_space=bool(_spec(ctx)["name"] == "openclip"), exclude=exclude,
                   kept=lambda fingerprint: _kept_head(ctx, fingerprint))
    ctx.writer.stage_vectors(ALIGNED_KIND, result.dates, result.aligned)  # empty too (no picture: none)
    ctx.writer.stage_vectors("multimodal", result.multimodal_dates, result.multimodal)
    if result.head is not None:
        ctx.writer.stage_file(ctx.layout.align_head, result.head.save)
    else:  # no head this build (no picture, or a shared space): not the last version's either
        ctx.writer.stage_removal(ctx.layout.align_head)
    unknown = len(exclude - set(result.multimodal_dates))
    if unknown:
        log.warning("--align-exclude: %d of its %d dates are not entries of this build", unknown, len(exclude))
    return StageResult(items=len(result.dates), manifest={
        "alignment": result.report | {"exclude_file_dates": len(exclude)},
        "counts": {f"vectors_{ALIGNED_KIND}": len(result.dates), "vectors_multimodal": len(result.multimodal_dates)},
        "multimodal": "unit [text, picture in the text space] / √2; an entry without a picture repeats its text",
    })


def _kept_head(ctx: BuildContext, fingerprint: str):
    """The published head, its inner-CV scores and whether it was trained on pairs with this fingerprint
    (:data:`pipeline.align.KeptHead`): also when they differ, while its pictures' space is this build's
    and no re-fit is asked for, so that a day's new picture extends it."""
    from atlas.encoders.align import AlignHead

    live = ctx.live_manifest("align").get("alignment", {})
    exact = live.get("training_fingerprint") == fingerprint
    space = _space_fingerprint(ctx)
    same_space = bool(space) and space == ctx.live_manifest("embed").get("image_space", {}).get("fingerprint")
    if not exact and (_refits(ctx) or not same_space):
        return None
    if not ctx.layout.align_head.is_file():
        return None
    try:
        head = AlignHead.load(ctx.layout.align_head)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return head, {int(k): float(v) for k, v in live.get("inner_cv_caption_to_picture_r10", {}).items()}, exact


def classify_stage(ctx: BuildContext) -> StageResult:
    import pyarrow.csv as pacsv

    from pipeline.classify import ADAPT, ClassVectors, classify, text_probabilities, text_templates

    tax = _taxonomy(ctx)
    text, pictures = ctx.writer.read_vectors("text"), ctx.writer.read_vectors(ALIGNED_KIND)
    head = _align_head(ctx)
    encoder = _encoder(ctx)
    classes = ClassVectors.make(encoder, tax, texts=text[1], pictures=pictures[1] if pictures[0] else None,
                                cache=ctx.layout.model_cache)
    words = [_texts(ctx)[d] for d in text[0]]
    probs, model, text_rule = text_probabilities(
        texts=words, vectors=text[1], classes=classes, kept=_kept_text_classifier(ctx),
        key=f"{tax.fingerprint()}:{encoder.info.fingerprint()}:{text_templates(encoder)}:words-v1", refit=_refits(ctx),
        min_texts=ctx.cfg.word_classifier_min)
    if model is not None:
        ctx.writer.stage_file(ctx.layout.text_classifier, model.save)
    else:  # the dense zero-shot alone: the last version's word classifier must not be kept for later builds
        ctx.writer.stage_removal(ctx.layout.text_classifier)
    if head is not None:  # offline: pictures' look-alikes vote with their captions' categories
        row = {d: i for i, d in enumerate(text[0])}
        classes = classes.voting(head, probs[[row[str(d)] for d in head.dates]], space=_space_fingerprint(ctx),
                                 kept_probe=_kept_probe(ctx), refit=_refits(ctx))
        pictures = ctx.writer.read_vectors("image")
    ctx.writer.stage_file(ctx.layout.class_vectors, classes.save)
    results = classify(classes, (text[0], probs), pictures if pictures[0] else None, head=head)
    categories = pa.concat_tables([_category_table(source, res) for source, res in results.items()])
    ctx.writer.stage_table("categories", categories)
    export = _category_export(_rows(ctx), results["text"])
    ctx.writer.stage_file(ctx.layout.categories_csv, lambda p: pacsv.write_csv(export, p))
    blended = ", blended with a linear probe" if classes.probe is not None and classes.probe.share else ""
    picture_rule = ({"method": f"vote of the look-alikes' caption categories{blended}", "k": classes.vote.k,
                     "tau": classes.vote.tau, "inner_cv_caption_class_agreement": classes.vote_scores,
                     "probe": classes.probe_report}
                    if classes.vote else {"method": "nearest prompt to the picture's text-space vector"})
    return StageResult(items=categories.num_rows, manifest={"taxonomy": {
        "source": tax.source, "categories": tax.names, "fingerprint": tax.fingerprint(),
        "logit_scale": classes.scale, "adaptation": ADAPT, "text_templates": list(text_templates(encoder)),
        "text_categories": text_rule,
        "picture_categories": picture_rule}})


def _class_templates() -> list[tuple[str, ...]]:
    """The templates text classes are encoded through (both towers'): the categories change with them."""
    from pipeline.classify import OFFLINE_TEXT_TEMPLATES, TEXT_TEMPLATES

    return [TEXT_TEMPLATES, OFFLINE_TEXT_TEMPLATES]


def _probe_settings(ctx: BuildContext) -> str:
    from pipeline.picture_probe import settings

    return settings(names=_taxonomy(ctx).names)


def _space_fingerprint(ctx: BuildContext) -> str:
    """This build's picture space's fingerprint (the embed stage's, run or reused)."""
    return str(ctx.results["embed"].manifest.get("image_space", {}).get("fingerprint", ""))


def _kept_probe(ctx: BuildContext):
    """The published picture probe, or None (none yet, or unreadable: then it is fitted anew)."""
    from atlas.encoders.align import PictureProbe

    path = ctx.layout.class_vectors
    try:
        with np.load(path) as z:
            return PictureProbe.from_fields(z)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if path.exists():
            log.warning("class vectors %s unreadable (%s); fitting a new picture probe", path, exc)
        return None


def _kept_text_classifier(ctx: BuildContext):
    """The published word classifier, or None (none yet, or unreadable: then it is fitted anew)."""
    from pipeline.text_classifier import TextClassifier

    path = ctx.layout.text_classifier
    try:
        return TextClassifier.load(path) if path.is_file() else None
    except (OSError, KeyError, ValueError) as exc:
        log.warning("text classifier %s unreadable (%s); fitting a new one", path, exc)
        return None


def _align_head(ctx: BuildContext):
    """This build's learned alignment head (its staged file, or the live one when the align stage was
    reused), or None: CLIP's shared space, or too few pairs to learn one."""
    from atlas.encoders.align import HEAD_NAME, AlignHead

    if ctx.results["align"].manifest.get("alignment", {}).get("method") != HEAD_NAME:
        return None
    for path in (ctx.layout.staged(ctx.layout.align_head), ctx.layout.align_head):
        if path.is_file():
            return AlignHead.load(path)
    return None


def _category_table(source: str, res) -> pa.Table:
    """One source's categories (a :class:`pipeline.classify.Classification`: float32 scores, the top
    ``k`` per row) as rows of the lake's ``categories`` table, built by column (11k text rows, ≈ 3k picture rows)."""
    scores = np.asarray(res.top3_scores, np.float32)
    return pa.table({
        "date": pa.array(res.dates, pa.string()).cast(pa.date32()),
        "source": pa.array([source] * len(res.dates), pa.string()),
        "category": pa.array(res.category, pa.string()),
        "confidence": pa.array(np.asarray(res.confidence, np.float32)),
        "top3_categories": pa.array(res.top3, pa.list_(pa.string())),
        # fixed-size rows; stage_table casts them to the schema's list type
        "top3_scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), scores.shape[1]),
    })


def _category_export(rows: list[dict[str, Any]], text) -> pa.Table:
    """The seed project's ``apod_broad_categorization.csv``: one row per entry with its text category
    (``text``: the text :class:`pipeline.classify.Classification`)."""
    pos = {d: i for i, d in enumerate(text.dates)}
    out = []
    for r in rows:
        i = pos.get(r["date"].isoformat())
        if i is None:
            continue
        out.append({"date": r["date"].isoformat(), "title": r["title"], "broad_category": text.category[i],
                    "confidence": round(float(text.confidence[i]), 4),
                    "top3": "; ".join(f"{n} ({float(s):.3f})" for n, s in zip(text.top3[i], text.top3_scores[i])),
                    "media_type": r["media_type"], "url": r.get("url")})
    return pa.Table.from_pylist(out)


def _projection_params(ctx: BuildContext) -> project.ProjectionParams:
    cfg = ctx.cfg
    return project.ProjectionParams(cfg.umap_neighbors, cfg.umap_min_dist, cfg.tsne_perplexity, cfg.seed,
                                    fit_sample=cfg.map_sample, placement=cfg.map_placement)


def project_stage(ctx: BuildContext) -> StageResult:
    """The maps. A build that only adds entries places them on the published maps (nothing moves; a
    day's entry costs milliseconds instead of re-fitting ≈ 100 s of UMAP and t-SNE) until ``--refit``,
    vector drift or the share of placed points calls for a new fit (:func:`place_on_previous`)."""
    from pipeline.project_jobs import place_on_previous, run_projections

    params = _projection_params(ctx)
    previous = ctx.live_manifest("project").get("projection", {})
    executor = lambda: _executor(ctx)  # noqa: E731  (made only if a placement runs in batches)
    placed = None if _refits(ctx) else place_on_previous(ctx.writer, params, previous, executor=executor)
    if placed is not None:
        tables, report = placed
        log.info("maps: %d new entries placed on the published maps (fitted on %d entries)",
                 report["placed_this_build"], report["fit"]["entries"])
    else:
        backend = project.umap_backend()
        tables = run_projections(ctx.writer, params, threads=ctx.cfg.threads, progress=ctx.cfg.progress,
                                 knn=lambda kind, k: _knn(ctx, kind, k), executor=executor, backend=backend)
        fitted = len(ctx.writer.read_vectors("text")[0])
        report = {"mode": "fitted", "fit": {"entries": fitted, "run_id": ctx.run_id, "umap_backend": backend},
                  "placed_since_fit": 0}
    ctx.writer.stage_table("projections", tables)
    return StageResult(items=tables.num_rows, manifest={"projection": params.as_dict() | report})


CLUSTER_KNN = 90


def _published_clusters(ctx: BuildContext) -> dict[str, dict[str, tuple[int, str]]] | None:
    """The published clusters per kind (date → (cluster, label)) when this build's maps were placed, not
    re-fitted, and the clusters were made with this build's settings (new entries then join the existing
    clusters); else None (cluster again: ``--clusters N`` or another taxonomy must not be ignored)."""
    if ctx.manifest_of("project").get("projection", {}).get("mode") != "placed":
        return None
    live = ctx.live_manifest("cluster").get("clustering", {})
    if live.get("settings") != _cluster_settings(ctx):
        return None
    if not ctx.layout.table("clusters").is_file():
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(ctx.layout.table("clusters"))
    out: dict[str, dict[str, tuple[int, str]]] = {}
    # by column, dates as ISO strings by Arrow: row dicts with date objects took 0.24 s for 37k rows, this 0.06 s
    for kind, day, number, label in zip(table.column("embedding").to_pylist(),
                                        table.column("date").cast(pa.string()).to_pylist(),
                                        table.column("cluster").to_pylist(), table.column("label").to_pylist()):
        out.setdefault(kind, {})[day] = (int(number), label)
    return out


def _cluster_settings(ctx: BuildContext) -> dict[str, Any]:
    """What the published clusters must have been made with for new entries to join them: the number of
    clusters asked for, and the taxonomy their labels name."""
    return {"n_clusters": ctx.cfg.n_clusters, "taxonomy": _taxonomy(ctx).fingerprint()}


def cluster_stage(ctx: BuildContext) -> StageResult:
    """Clusters of each embedding; a build whose maps were placed (only new entries) joins the new
    entries to the existing clusters instead (:func:`pipeline.cluster.join_clusters`)."""
    cats = _text_categories(ctx).category.to_dict()
    title_of = {r["date"].isoformat(): r["title"] for r in _entries(ctx, ["date", "title"])}
    records = []
    published = _published_clusters(ctx)
    joined = 0
    for kind in EMBEDDING_KINDS:
        dates, vecs = ctx.writer.read_vectors(kind)
        if len(dates) < 3:
            continue
        old = (published or {}).get(kind)
        if old and set(old) <= set(dates):
            known = [i for i, d in enumerate(dates) if d in old]
            new = [i for i, d in enumerate(dates) if d not in old]
            labels = cluster.join_clusters(vecs[known], np.array([old[dates[i]][0] for i in known]), vecs[new])
            names = {c: label for c, label in old.values()}
            assigned = {dates[i]: old[dates[i]][0] for i in known} | {dates[i]: int(c) for i, c in zip(new, labels)}
            records += [{"date": dt.date.fromisoformat(d), "embedding": kind, "cluster": assigned[d],
                         "label": names[assigned[d]]} for d in dates]
            joined = max(joined, len(new))
            continue
        k = ctx.cfg.n_clusters or cluster.default_cluster_count(len(dates))
        labels = cluster.ward_clusters(vecs, _knn(ctx, kind, CLUSTER_KNN), k)
        names = cluster.cluster_labels(labels, [title_of[d] for d in dates], [cats.get(d, "?") for d in dates])
        records += [{"date": dt.date.fromisoformat(d), "embedding": kind, "cluster": int(c),
                     "label": names[int(c)]} for d, c in zip(dates, labels)]
    ctx.writer.stage_table("clusters", pa.Table.from_pylist(records, schema=SCHEMAS["clusters"]))
    return StageResult(items=len(records), manifest={"clustering": {
        "algorithm": "Ward agglomerative, k-NN (k=15) connectivity",
        "n_clusters": ctx.cfg.n_clusters or "sqrt(n/8)", "labels": "top category + class-TF-IDF title words",
        "mode": "joined" if published is not None else "clustered", "joined_this_build": joined,
        "settings": _cluster_settings(ctx)}})


def _sky_inputs(ctx: BuildContext) -> Any:
    from atlas.sky.resolve import fingerprint

    texts = [(r["date"].isoformat(), r["title"], r["explanation"]) for r in _rows(ctx)]
    return [sha1_json(texts), fingerprint(), ctx.cfg.offline]


def _sky_rerun(ctx: BuildContext) -> bool:
    """Whether the sky stage runs though its inputs are unchanged: the published build left names no
    resolver answered (both were down) and one takes a connection now; looked at most once an hour."""
    if ctx.cfg.offline or not ctx.live_manifest("sky").get("sky", {}).get("unanswered_names"):
        return False
    from pipeline.sky.online import any_reachable, retry_due

    return retry_due(ctx.layout.names_cache) and any_reachable(ctx.cfg.simbad_url, tuple(ctx.cfg.sesame_urls))


def _unanswered(rows: list[dict], resolver) -> list[str]:
    """The names of object rows the gazetteer could not place and no online resolver has answered yet."""
    from atlas.sky.resolve import query_name

    if resolver is None:
        return []
    return resolver.unanswered([query_name(r["name"], r["canonical_id"]) for r in rows if r["resolver"] is None])


def _published_sky(ctx: BuildContext) -> tuple[dict[dt.date, str], dict[dt.date, list[dict]]] | None:
    """The published entries' content hashes and object rows, when they were made by the same resolver
    settings as this build (their rows can be kept for unchanged entries); else None."""
    import pyarrow.parquet as pq

    from atlas.sky.resolve import fingerprint

    made_by = ctx.live_manifest("sky").get("sky", {})
    if (made_by.get("resolver"), made_by.get("offline")) != (fingerprint(), ctx.cfg.offline):
        return None
    if not (ctx.layout.table("entries").is_file() and ctx.layout.table("objects").is_file()):
        return None
    entries = pq.read_table(ctx.layout.table("entries"), columns=["date", "content_sha1"]).to_pydict()
    objects: dict[dt.date, list[dict]] = {}
    for row in pq.read_table(ctx.layout.table("objects")).to_pylist():
        objects.setdefault(row["date"], []).append(row)
    return dict(zip(entries["date"], entries["content_sha1"])), objects


def sky_stage(ctx: BuildContext) -> StageResult:
    """Object names in each entry's text, placed on the sky. Entries whose record is unchanged since the
    published build (same content hash, same resolver settings) keep their object rows; only new or
    changed entries are read again (the daily ingest reads one text instead of 11k: ≈ 15 s saved)."""
    from atlas.sky.gazetteer import default
    from atlas.sky.resolve import fingerprint, objects_for, place_online

    rows = _entries(ctx, ["date", "title", "explanation", "content_sha1"])
    published = _published_sky(ctx)
    hashes, kept = published or ({}, {})
    resolver = None
    if not ctx.cfg.offline:
        from pipeline.sky.online import OnlineResolver

        resolver = OnlineResolver(ctx.layout.names_cache, ctx.cfg.simbad_url, tuple(ctx.cfg.sesame_urls),
                                  progress=ctx.cfg.progress)
    # new or changed entries, and (when a resolver takes a connection) kept ones with names no resolver
    # answered yet: asked again
    waiting = {d for d, objs in kept.items() if _unanswered(objs, resolver)}
    if waiting:
        from pipeline.sky.online import any_reachable

        if not any_reachable(ctx.cfg.simbad_url, tuple(ctx.cfg.sesame_urls)):
            waiting = set()
    todo = [r for r in rows if hashes.get(r["date"]) != r["content_sha1"] or r["date"] in waiting]
    gazetteer = default() if todo else None
    per_entry = {r["date"]: objects_for(r["title"], r["explanation"], gazetteer) for r in todo}
    if resolver is not None and per_entry:
        per_entry = place_online(per_entry, resolver)
    keys = ("name", "canonical_id", "ra_deg", "dec_deg", "object_type", "resolver", "field",
            "span_start", "span_end", "is_primary", "size_deg")
    records = []
    for r in rows:
        d = r["date"]
        if d in per_entry:
            records += [{"date": d, **{k: getattr(o, k) for k in keys}} for o in per_entry[d]]
        else:
            records += kept.get(d, [])
    ctx.writer.stage_table("objects", pa.Table.from_pylist(records, schema=SCHEMAS["objects"]))
    placed = sum(1 for r in records if r["ra_deg"] is not None)
    unanswered = len(set(_unanswered(records, resolver)))
    log.info("sky: %d object mentions, %d placed on the sky (%d entries read, %d kept from the last build)",
             len(records), placed, len(todo), len(rows) - len(todo))
    if unanswered:
        log.warning("sky: %d names wait for a name resolver (none answered); a later build asks them again "
                    "once one does (--offline skips the network)", unanswered)
    return StageResult(items=len(records), manifest={
        "counts": {"object_mentions": len(records), "objects_placed": placed},
        "sky": {"resolver": fingerprint(), "offline": ctx.cfg.offline, "unanswered_names": unanswered}})


def vectors_stage(ctx: BuildContext) -> StageResult:
    """LanceDB tables (one per kind) with the columns search filters on, and BM25 over the texts.

    No later stage reads them, so with the local runner the stage runs in the build's worker process,
    beside the maps (importing LanceDB alone costs ≈ 1 s): it reads the entries from the staged table,
    not from the ingest's rows in memory."""
    entries = _entries(ctx, ["date", "title", "explanation", "has_image"])
    title = {r["date"].isoformat(): r["title"] for r in entries}
    has_image = {r["date"].isoformat(): bool(r["has_image"]) for r in entries}
    body = {r["date"].isoformat(): text_input(r["title"], r["explanation"]) for r in entries}
    category = _text_categories(ctx).category.to_dict()
    db = ctx.layout.staged(ctx.layout.vectors)
    written, how = 0, {}
    for kind in VECTOR_KINDS:
        dates, matrix = ctx.writer.read_vectors(kind)
        if not dates:  # none this build (e.g. no picture left): no table, not the last version's either
            ctx.writer.stage_removal(Path(vectors.table_uri(ctx.layout.vectors, kind)))
            continue
        table = vectors.vector_table(kind, dates, matrix, titles=[title.get(d) for d in dates],
                                     years=[int(d[:4]) for d in dates], categories=[category.get(d) for d in dates],
                                     has_image=[has_image.get(d, False) for d in dates],
                                     bodies=[body.get(d, "") for d in dates] if kind == KEYWORD_KIND else None)
        # a daily build's tables are the last version's plus the day: appended, not rewritten
        appended = vectors.append_to_previous(db, kind, table, previous=ctx.layout.vectors)
        if appended is None:
            _executor(ctx).write_vectors(db, kind, table)
        how[kind] = ("written whole" if appended is None else "the last version's, unchanged" if not appended
                     else f"the last version's + {appended} rows")
        written += len(dates)
    log.info("vector tables: %s", "; ".join(f"{kind} {note}" for kind, note in how.items()))
    return StageResult(items=written, manifest={"vector_tables": how})


def _anomaly_params(ctx: BuildContext):
    from pipeline.anomaly import AnomalyParams

    return AnomalyParams(seed=ctx.cfg.seed)


def anomaly_stage(ctx: BuildContext) -> StageResult:
    """Per-entry anomaly scores: single-modality detectors per kind and text-vs-picture disagreement."""
    import pyarrow.compute as pc

    from lake.schema import ANOMALY_DETECTORS, EXPLANATION_TEXT
    from pipeline.anomaly import IsolationModel, kept_isolation, score_entries

    params = _anomaly_params(ctx)
    vectors = {k: ctx.writer.read_vectors(k) for k in (*EMBEDDING_KINDS, ALIGNED_KIND)}
    def graph(name: str, keys: list[str], unit: np.ndarray, k: int) -> KnnGraph:
        if name in EMBEDDING_KINDS:  # the graph the maps and clusters share
            return _knn(ctx, name, k)
        return cached_knn_graph(unit, k, keys=keys, store=ctx.layout.knn_cache(name))

    forests: dict[str, str] = {}

    def forest(name: str, keys: list[str], unit: np.ndarray) -> IsolationModel:
        model = kept_isolation(unit, params, keys=keys, store=ctx.layout.anomaly_cache(name), refit=_refits(ctx))
        forests[name] = f"{model.note} on {model.fitted_rows:,} rows"
        return model

    entries = ctx.writer.read_table("entries", columns=["date", "explanation"])
    texted = pc.match_substring_regex(entries["explanation"], EXPLANATION_TEXT)
    untexted = [d.isoformat() for d in entries.filter(pc.invert(texted))["date"].to_pylist()]
    df = score_entries({k: v for k, v in vectors.items() if v[0]}, params, knn=graph, forest=forest,
                       without_explanation=untexted)
    for name in ANOMALY_DETECTORS:
        if name not in df:
            df[name] = np.nan
    df["date"] = [dt.date.fromisoformat(d) for d in df.date]
    table = pa.Table.from_pandas(df, preserve_index=False)
    ctx.writer.stage_table("anomalies", table)
    return StageResult(items=len(df), manifest={"anomaly": params.as_dict() | {
        "detectors": [n for n in ANOMALY_DETECTORS if df[n].notna().any()], "isolation_forests": forests,
        "without_explanation": len(untexted),
        "combined": "cross_modal percentile for entries with a picture and an explanation, text k-NN percentile "
                    "for the others with an explanation, title k-NN percentile for those without"}})


# -- Galaxy Zoo 2 collection ----------------------------------------------------------------------------
def gz2_cutouts_stage(ctx: BuildContext) -> StageResult:
    """Fetch missing galaxy cutouts, and replace those another cutout service made, when asked
    (``--fetch-cutouts``); always report which exist (and which service made them), so the later stages
    re-embed only when the set of pictures changed."""
    from pipeline.cutouts import cutout_sources
    from pipeline.galaxies import read_catalogue

    cfg, layout = ctx.cfg, ctx.layout
    table = ctx.resource("gz2_catalogue", lambda: read_catalogue(cfg.gz2_catalogue, limit=cfg.limit))
    objids = table.column("objid").to_pylist()
    report = None
    if cfg.fetch_cutouts:
        from pipeline.cutouts import CutoutService, fetch_cutouts
        from pipeline.fetch import PoliteFetcher

        wanted = list(zip(objids, table.column("ra").to_pylist(), table.column("dec").to_pylist()))
        limits = ImageLimits(cfg.max_image_bytes, cfg.max_image_pixels, cfg.thumb_size)
        report = fetch_cutouts(wanted, layout, service=CutoutService(cfg.cutout_url),
                               fetcher=PoliteFetcher(layout.download_cache, limits), limits=limits,
                               limit=cfg.cutout_limit, progress=cfg.progress)
    # the cutouts in the lake and which service made each (the manifest says; a fetch replaces others'):
    # one listing of the folder, the fetch's where it ran
    made_by = report.sources if report is not None else cutout_sources(layout)
    present = {o: layout.cutout(o) for o in objids if o in made_by}
    # by content, not by file times: a working copy pulled from object storage (or copied without its
    # times) holds the same pictures with new times, and must not re-embed every galaxy
    stamp = [(o, sha1_file(p)) for o, p in present.items()]
    sources = Counter(made_by[o] for o in present)
    return StageResult(items=len(present), value=present, fingerprint=sha1_json(stamp),
                       manifest={"gz2_cutouts": {"present": len(present), "sources": dict(sources),
                                                 **({"last_fetch": report.as_dict()} if report else {})}})


def _gz2_inputs(ctx: BuildContext) -> Any:
    return [sha1_file(ctx.cfg.gz2_catalogue), ctx.cfg.limit, ctx.hash("gz2_cutouts"), _spec(ctx), "gz2-v1"]


def gz2_galaxies_stage(ctx: BuildContext) -> StageResult:
    """The ``galaxies`` table and the collection's vector tables: morphology for every galaxy, pictures
    (through the build's image encoder, in a space fitted on the galaxy pictures) where cutouts exist."""
    from pipeline.embed import chunk_by_chunk, fill_cache
    from pipeline.embed_cache import EmbeddingCache
    from pipeline.galaxies import morphology_vectors, read_catalogue

    cfg, layout = ctx.cfg, ctx.layout
    table = ctx.resource("gz2_catalogue", lambda: read_catalogue(cfg.gz2_catalogue, limit=cfg.limit))
    cutouts: dict[str, Path] = ctx.value("gz2_cutouts")
    has_image = pa.array([o in cutouts for o in table.column("objid").to_pylist()])
    table = table.set_column(table.schema.get_field_index("has_image"), "has_image", has_image)
    ctx.writer.stage_table("galaxies", table)
    db = layout.staged(layout.galaxy_vectors)
    morphology = morphology_vectors(table)
    vectors.write_galaxy_table(db, MORPHOLOGY_KIND, table, morphology)
    ctx.writer.stage_galaxy_vectors(MORPHOLOGY_KIND, table.column("objid").to_pylist(), morphology)
    pictured = table.filter(has_image)
    embedded = 0
    if pictured.num_rows:
        from pipeline.encoding import load_rgb

        encoder = _encoder(ctx)
        paths = [cutouts[o] for o in pictured.column("objid").to_pylist()]
        keys = [sha1_file(p) for p in paths]
        cache = EmbeddingCache(layout.embedding_cache(encoder.info.tower_fingerprint("image"), kind="image"))
        def encode(batch: list[Path]) -> np.ndarray:
            return encoder.encode_images([load_rgb(p) for p in batch], batch_size=cfg.batch_size)

        embedded = fill_cache(cache, keys, paths, chunk_by_chunk(encode), chunk=cfg.embed_chunk,
                              desc="embed galaxy pictures", progress=cfg.progress)
        features = cache.get(keys)
        space = encoder.image_space(features)
        image_vecs = encoder.to_image_vectors(features, space)
        vectors.write_galaxy_table(db, GALAXY_IMAGE_KIND, pictured, image_vecs)
        ctx.writer.stage_galaxy_vectors(GALAXY_IMAGE_KIND, pictured.column("objid").to_pylist(), image_vecs)
        if space:
            ctx.writer.stage_arrays(layout.galaxy_image_space, space)
        picture_encoder = {"encoder": encoder.info.to_dict()}  # what uploads must be encoded with
    else:  # no cutout this build: later stages and the next version see no galaxy pictures, not the last's
        ctx.writer.stage_galaxy_vectors(GALAXY_IMAGE_KIND, [], np.zeros((0, 0), np.float32))
        ctx.writer.stage_removal(Path(vectors.table_uri(layout.galaxy_vectors, GALAXY_IMAGE_KIND)))
        ctx.writer.stage_removal(layout.galaxy_image_space)
        picture_encoder = {}
    classes = dict(zip(*np.unique(table.column("gz_class").to_pylist(), return_counts=True)))
    log.info("gz2: %d galaxies (%d with a picture, %d newly embedded)", table.num_rows, pictured.num_rows, embedded)
    return StageResult(items=table.num_rows, manifest={
        "counts": {"galaxies": table.num_rows, "galaxies_with_picture": pictured.num_rows},
        "gz2": {"catalogue": cfg.gz2_catalogue.name, "classes": {k: int(v) for k, v in classes.items()},
                "morphology_vector": "debiased fractions × probability of reaching each question (37-d)",
                "picture_vectors": pictured.num_rows, **picture_encoder}})


def gz2_maps_stage(ctx: BuildContext) -> StageResult:
    """UMAP maps and Ward clusters of the morphology space (and of the picture space, with ≥ 30 pictures)."""
    from lake.galaxy_schema import GALAXY_SPACES
    from pipeline.galaxies import euclidean_graph, map_table, morphology_labels, umap_2d

    galaxies = ctx.writer.read_table("galaxies")
    by_id = {o: i for i, o in enumerate(galaxies.column("objid").to_pylist())}
    parts = []
    for space in GALAXY_SPACES:
        objids, vecs = ctx.writer.read_galaxy_vectors(space)
        if len(objids) < 30:
            continue
        graph = euclidean_graph(vecs) if space == "morphology" else knn_graph(vecs, 15)
        xy = umap_2d(vecs, graph, metric="euclidean" if space == "morphology" else "cosine", seed=ctx.cfg.seed)
        k = ctx.cfg.n_clusters or cluster.default_cluster_count(len(objids))
        labels = cluster.ward_clusters(vecs, graph, k)
        names = morphology_labels(labels, galaxies.take([by_id[o] for o in objids]))
        parts.append(map_table(objids, xy, labels, names, space=space))
    # always staged, empty when no space has 30 galaxies: left out, the publish step would carry the
    # previous version's maps over while the manifest lists none
    ctx.writer.stage_table("galaxy_maps", pa.concat_tables(parts) if parts else SCHEMAS["galaxy_maps"].empty_table())
    return StageResult(items=sum(p.num_rows for p in parts), manifest={"gz2_maps": {
        "method": "UMAP (min_dist 0.1) on an exact 15-NN graph; Ward clusters on the same graph",
        "spaces": [p.column("space")[0].as_py() for p in parts], "seed": ctx.cfg.seed}})


def _staged(*names: str):
    return lambda layout: [layout.staged_table(n) for n in names]


#: The build, in order. Each line: name, function, what its output depends on, what it stages.
STAGES: list[Stage] = [
    Stage("ingest", ingest_stage, None),
    Stage("images", images_stage, None),
    Stage("entries", entries_stage, lambda ctx: ctx.hash("images"), _staged("entries")),
    Stage("embed", embed_stage, _embed_inputs,
          lambda lo: [*(lo.staged_vectors(k) for k in ("title", "text", "image")), lo.staged(lo.image_space)],
          ahead=_load_encoder_ahead),
    Stage("align", align_stage, _align_inputs,
          lambda lo: [lo.staged_vectors(k) for k in (ALIGNED_KIND, "multimodal")] + [lo.staged(lo.align_head)]),
    # only the app reads the anomaly scores: they are computed in the worker process beside the stages below
    Stage("anomaly", anomaly_stage,
          lambda ctx: [ctx.hash("embed"), ctx.hash("align"), _anomaly_params(ctx).as_dict(), "anomaly-v5"],
          _staged("anomalies"), background=True, rerun=_refit_asked,
          warm=("pipeline.anomaly", "sklearn.decomposition", "sklearn.ensemble", "sklearn.neighbors")),
    Stage("classify", classify_stage,
          # the entries' hash too: the categories CSV export carries each entry's url and media type
          lambda ctx: [ctx.hash("embed"), ctx.hash("align"), _taxonomy(ctx).fingerprint(),
                       ctx.cfg.word_classifier_min, "self-trained-words-v7", _class_templates(),
                       _probe_settings(ctx),
                       ctx.hash("entries")],
          lambda lo: [lo.staged_table("categories"), lo.staged(lo.categories_csv), lo.staged(lo.class_vectors),
                      lo.staged(lo.text_classifier)], rerun=_refit_asked),
    # only the app reads the vector tables: with the local runner they are written in the worker process
    # too (after the anomaly scores); Ray's executor belongs to the main process. The worker loads
    # pylance ahead, not LanceDB: a daily build appends with pylance alone, and LanceDB (≈ 2 s of
    # imports on a slow machine) is loaded only by a build that writes a table whole
    Stage("vectors", vectors_stage,
          lambda ctx: [ctx.hash("embed"), ctx.hash("align"), ctx.hash("classify"), ctx.hash("entries"),
                       VECTOR_TABLES_VERSION],
          lambda lo: [lo.staged(lo.vectors)], background=lambda cfg: cfg.runner == "local", warm=("lance",)),
    Stage("project", project_stage,
          lambda ctx: [ctx.hash("embed"), ctx.hash("align"), _projection_params(ctx).as_dict()],
          _staged("projections"), rerun=_refit_asked),
    # no later stage reads the clusters or the sky positions either: the worker takes them once it has
    # written the vector tables, beside the Galaxy Zoo stages here (each of the four is single-threaded:
    # one after the other they left a core idle for ≈ 40 s of a cold build on a slow 2-core machine)
    Stage("cluster", cluster_stage,
          lambda ctx: [ctx.hash("embed"), ctx.hash("align"), ctx.hash("classify"), ctx.cfg.n_clusters,
                       "ward-knn15-v1"],
          _staged("clusters"), background=True, warm=("pipeline.cluster",)),
    Stage("sky", sky_stage, _sky_inputs, _staged("objects"), background=True, rerun=_sky_rerun,
          warm=("atlas.sky.gazetteer", "atlas.sky.resolve")),
    Stage("gz2_cutouts", gz2_cutouts_stage, None, collection="gz2"),
    Stage("gz2_galaxies", gz2_galaxies_stage, _gz2_inputs,
          # every staged file it may write: a leftover of an interrupted build (the picture space of
          # another run, say) must be removed, never published or read by gz2_maps
          lambda lo: [lo.staged_table("galaxies"), lo.staged(lo.galaxy_vectors), lo.staged(lo.galaxy_image_space),
                      *(lo.staged_galaxy_vectors(k) for k in (MORPHOLOGY_KIND, GALAXY_IMAGE_KIND))], collection="gz2"),
    Stage("gz2_maps", gz2_maps_stage,
          lambda ctx: [ctx.hash("gz2_galaxies"), ctx.cfg.seed, ctx.cfg.n_clusters, "gz2-maps-v1"],
          _staged("galaxy_maps"), collection="gz2"),
]


def build(cfg: BuildConfig) -> BuildSummary:
    """Build or update the lake ``cfg.lake``: the registered stages, then an atomic publish."""
    return Runner(STAGES).run(cfg)
