"""The build: run the stages in order, skip those whose inputs are unchanged, publish atomically.

Each stage has an input hash (content hashes of what it reads plus its parameters). A stage whose hash
matches the published manifest is skipped; one whose hash matches the staging manifest of an earlier,
interrupted build reuses the staged output. So a no-op re-run does nothing, and a re-run after a crash
resumes where the crash happened (the embed stage resumes inside itself, chunk by chunk).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lake import atomic
from lake.layout import LakeLayout
from lake.schema import EMBEDDING_KINDS, SCHEMAS, VECTOR_TABLES_VERSION
from lake.writer import LakeWriter
from pipeline import __version__, cluster, project, taxonomy
from pipeline.classify import classify, logit_scale
from pipeline.config import BUNDLED_ARCHIVE, BUNDLED_IMAGES, BuildConfig
from pipeline.embed import embed_entries, text_input
from pipeline.encoders import Encoder, build_encoder
from pipeline.hashing import sha1_json, sha1_text
from pipeline.images import ImageLimits, attach_images
from pipeline.ingest import ingest
from pipeline.metrics import RunMetrics
from pipeline.neighbors import KnnGraph, knn_graph
from pipeline.sky.online import OnlineResolver
from pipeline.sources import RawBatch, bundled, dump, nasa

log = logging.getLogger(__name__)

STAGES = ("ingest", "images", "embed", "classify", "project", "cluster", "sky")
METRIC_RUNS_KEPT = 20


@dataclass
class BuildSummary:
    run_id: str
    lake: Path
    counts: dict[str, int]
    stages: dict[str, dict[str, Any]]
    encoder: dict[str, Any]
    invalid: dict[str, int]
    wall_seconds: float
    embedded: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"lake: {self.lake}", f"encoder: {self.encoder.get('name')} "
               f"(text {self.encoder.get('text_model')}, image {self.encoder.get('image_model')}, "
               f"quantize {self.encoder.get('quantize')})"]
        out.append("counts: " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()))
        out.append("newly embedded: " + ", ".join(f"{k} {v:,}" for k, v in self.embedded.items()))
        if self.invalid:
            out.append("skipped rows: " + ", ".join(f"{n} × {r}" for r, n in self.invalid.items()))
        for name, st in self.stages.items():
            state = "reused" if st.get("skipped") else "ran"
            out.append(f"  {name:<9} {state:<6} {st['wall_seconds']:>7.1f}s"
                       + (f"  {st['items']:,} items" if st.get("items") else ""))
        out.append(f"total: {self.wall_seconds:.1f}s")
        return out


def encoder_spec(cfg: BuildConfig) -> dict[str, Any]:
    """Which encoder a build will use, decided without loading any weights."""
    name = cfg.encoder
    if name == "auto":
        from pipeline.encoders.openclip import cached_weights, hub_reachable

        usable = cfg.clip_checkpoint or cfg.clip_pretrained == "random"
        if not usable:
            try:
                usable = cached_weights(cfg.clip_model, cfg.clip_pretrained) is not None or hub_reachable()
            except Exception:  # unknown model/tag: the offline encoder it is
                usable = False
        name = "openclip" if usable else "offline"
    if name == "openclip":
        ckpt = cfg.clip_checkpoint
        return {"name": "openclip", "model": cfg.clip_model, "pretrained": cfg.clip_pretrained,
                "checkpoint": [str(ckpt), ckpt.stat().st_size] if ckpt and ckpt.is_file() else None,
                "config": sha1_text(Path(cfg.clip_config).read_text()) if cfg.clip_config else None,
                "quantize": cfg.quantize}
    from pipeline.encoders.visual import DESCRIPTOR_VERSION

    return {"name": "offline", "quantize": cfg.quantize, "text_max_tokens": cfg.text_max_tokens,
            "descriptors": DESCRIPTOR_VERSION}


def load_sources(cfg: BuildConfig) -> list[RawBatch]:
    batches = []
    for source in cfg.sources:
        if source == "bundled":
            batches.append(bundled.load(BUNDLED_ARCHIVE, BUNDLED_IMAGES))
        elif source == "nasa":
            client = nasa.NasaApodClient(api_url=cfg.nasa_api_url, api_key=cfg.nasa_api_key,
                                         cache_dir=cfg.lake.api_cache)
            batches.append(nasa.load(client, cfg.start, cfg.end))
        elif source == "dump":
            batches.extend(dump.load(p) for p in cfg.dump_paths)
        else:
            raise ValueError(f"unknown source {source!r}")
    if cfg.start or cfg.end:  # --start/--end bound every source, not only the API
        lo, hi = cfg.start or dt.date.min, cfg.end or dt.date.max
        for b in batches:
            b.records = [r for r in b.records if _in_range(r, lo, hi)]
    return batches


def _in_range(record: dict[str, Any], lo: dt.date, hi: dt.date) -> bool:
    try:
        day = dt.date.fromisoformat(str(record.get("date"))[:10])
    except ValueError:
        return True  # let ingest report it
    return lo <= day <= hi


def content_hash(row: dict[str, Any]) -> str:
    keys = ("title", "explanation", "credit", "copyright", "rights_note", "url", "hdurl", "media_type",
            "image_sha1", "source", "record_source")
    return sha1_json([row.get(k) for k in keys])


class Build:
    def __init__(self, cfg: BuildConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.layout: LakeLayout = cfg.lake
        self.writer = LakeWriter(self.layout)
        self.progress = progress
        self.run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        self.metrics = RunMetrics(self.run_id, interval=cfg.sample_interval)
        self._encoder: Encoder | None = None
        self._knn: dict[str, KnnGraph] = {}
        self.live: dict[str, Any] = {}
        self.staged: dict[str, Any] = {}
        self.stage_hashes: dict[str, str] = {}

    # -- helpers --------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from pipeline.device import set_threads

            set_threads(self.cfg.threads)
            spec = self.spec
            self._encoder = build_encoder(
                spec["name"], quantize=self.cfg.quantize, text_max_tokens=self.cfg.text_max_tokens,
                clip_model=self.cfg.clip_model, clip_pretrained=self.cfg.clip_pretrained,
                clip_checkpoint=self.cfg.clip_checkpoint, clip_config=self.cfg.clip_config,
            )
        return self._encoder

    def _fresh(self, stage: str, input_hash: str, outputs: list[Path]) -> bool:
        """True when this stage's output for ``input_hash`` exists (staged or published)."""
        self.stage_hashes[stage] = input_hash
        if self.cfg.force:
            return False
        staged = self.staged.get("stages", {}).get(stage, {})
        if staged.get("input_hash") == input_hash and all(p.is_file() for p in outputs):
            return True
        for p in outputs:  # stale leftovers of an interrupted build must not be published
            p.unlink(missing_ok=True)
        live = self.live.get("stages", {}).get(stage, {})
        return live.get("input_hash") == input_hash

    def _done(self, stage: str, **extra: Any) -> None:
        self.staged.setdefault("stages", {})[stage] = {"input_hash": self.stage_hashes[stage], **extra}
        self.writer.save_staged_manifest(self.staged)

    def _vector_counts(self) -> dict[str, int]:
        """Vectors per kind: from this run's embed stage, else from the build that made them."""
        if getattr(self, "vector_counts", None):
            return self.vector_counts
        staged = self.staged.get("stages", {}).get("embed", {})
        if staged.get("input_hash") == self.stage_hashes["embed"] and "vector_counts" in staged:
            return staged["vector_counts"]
        return {k: v for k, v in self.live.get("counts", {}).items() if k.startswith("vectors_")}

    def _knn_for(self, kind: str, k: int) -> KnnGraph:
        if kind not in self._knn:
            _, vecs = self.writer.read_vectors(kind)
            self._knn[kind] = knn_graph(vecs, k)
        return self._knn[kind]

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> BuildSummary:
        started = time.perf_counter()
        with self.writer.locked():
            self.live = self.writer.live_manifest() or {}
            self.staged = {} if self.cfg.force else self.writer.staged_manifest()
            if self.cfg.force:
                self.writer.discard_staging()
            self.metrics.start()
            try:
                rows, invalid = self._ingest_and_images()
                self.spec = encoder_spec(self.cfg)
                embedded = self._embed(rows)
                cats = self._classify(rows)
                self._project(rows)
                self._cluster(rows, cats)
                self._sky(rows)
            finally:
                self.metrics.stop()
            summary = self._publish(rows, invalid, embedded, time.perf_counter() - started)
        return summary

    def _ingest_and_images(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        with self.metrics.stage("ingest") as st:
            result = ingest(load_sources(self.cfg), limit=self.cfg.limit)
            st["items"] = len(result.rows)
        if not result.rows:
            raise ValueError("no valid entries to build from; check --source/--start/--end and the input files")
        self.invalid_rows = result.invalid
        with self.metrics.stage("images") as st:
            index_path = self.layout.thumbs_index
            index = json.loads(index_path.read_text()) if index_path.is_file() else {}
            limits = ImageLimits(self.cfg.max_image_bytes, self.cfg.max_image_pixels, self.cfg.thumb_size)
            new_index, report = attach_images(result.rows, self.layout, limits, index=index, progress=self.progress)
            atomic.write_json(index_path, index | new_index)
            st["items"] = report.thumbnails
            st["skipped"] = report.thumbnails == 0
            self.image_report = report
            if report.rejected:
                log.warning("images rejected: %s", dict(report.rejected))
        for row in result.rows:
            row["content_sha1"] = content_hash(row)
        entries_hash = sha1_json([(r["date"].isoformat(), r["content_sha1"]) for r in result.rows])
        entries_file = self.layout.staged_table("entries")
        if not self._fresh("entries", entries_hash, [entries_file]) or not self.layout.table("entries").is_file():
            cols = SCHEMAS["entries"].names
            self.writer.stage_table("entries", pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in result.rows]))
            self._done("entries")
        return result.rows, dict(result.invalid_by_reason)

    def _embed(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        inputs = [(r["date"].isoformat(), sha1_text(r["title"]), sha1_text(text_input(r["title"], r["explanation"])),
                   r.get("image_sha1")) for r in rows]
        outputs = [self.layout.staged_vectors(k) for k in ("title", "text", "multimodal")]
        outputs.append(self.layout.staged(self.layout.image_space))
        with self.metrics.stage("embed") as st:
            if self._fresh("embed", sha1_json([self.spec, inputs]), outputs):
                st["skipped"] = True
                return {k: 0 for k in EMBEDDING_KINDS}
            emb = embed_entries(rows, self.encoder, self.layout, batch_size=self.cfg.batch_size,
                                chunk=self.cfg.embed_chunk, progress=self.progress)
            for kind in EMBEDDING_KINDS:
                if emb.dates[kind]:
                    self.writer.stage_vectors(kind, emb.dates[kind], emb.vectors[kind])
            self.writer.stage_file(self.layout.image_space, lambda p: np.savez(open(p, "wb"), **emb.image_space))
            st["items"] = sum(emb.computed.values())
            self.vector_counts = {f"vectors_{k}": len(emb.dates[k]) for k in EMBEDDING_KINDS}
            self._done("embed", vector_counts=self.vector_counts)
            self.embed_ran = True
            return emb.computed

    def _classify(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        tax = taxonomy.load(self.cfg.taxonomy_path)
        self.taxonomy = tax
        out = self.layout.staged_table("categories")
        with self.metrics.stage("classify") as st:
            h = sha1_json([self.stage_hashes["embed"], tax.fingerprint(), "softmax-v1"])
            if not self._fresh("classify", h, [out]):
                text = self.writer.read_vectors("text")
                image = self.writer.read_vectors("image")
                results = classify(self.encoder, tax, text, image if image[0] else None)
                records = []
                for source, res in results.items():
                    for i, d in enumerate(res.dates):
                        records.append({
                            "date": dt.date.fromisoformat(d), "source": source, "category": res.category[i],
                            "confidence": float(res.confidence[i]), "top3_categories": res.top3[i],
                            "top3_scores": [float(s) for s in res.top3_scores[i]],
                        })
                self.writer.stage_table("categories", pa.Table.from_pylist(records))
                st["items"] = len(records)
                self._done("classify")
                self.classify_ran = True
            else:
                st["skipped"] = True
        cats = self.writer.read_table("categories").to_pandas()
        text = cats[cats.source == "text"]
        self.text_categories = text.set_index(text.date.astype(str))  # read once; publish and export use it
        return dict(zip(self.text_categories.index, self.text_categories.category))

    def _project(self, rows: list[dict[str, Any]]) -> None:
        params = project.ProjectionParams(self.cfg.umap_neighbors, self.cfg.umap_min_dist,
                                          self.cfg.tsne_perplexity, self.cfg.seed)
        out = self.layout.staged_table("projections")
        with self.metrics.stage("project") as st:
            if self._fresh("project", sha1_json([self.stage_hashes["embed"], params.as_dict()]), [out]):
                st["skipped"] = True
                return
            from pipeline.project_jobs import run_projections

            tables = run_projections(self.writer, params, threads=self.cfg.threads, progress=self.progress,
                                     knn=self._knn_for)
            self.writer.stage_table("projections", tables)
            st["items"] = tables.num_rows
            self.projection_params = params.as_dict()
            self._done("project")

    def _cluster(self, rows: list[dict[str, Any]], cats: dict[str, str]) -> None:
        out = self.layout.staged_table("clusters")
        n_clusters = self.cfg.n_clusters
        with self.metrics.stage("cluster") as st:
            h = sha1_json([self.stage_hashes["embed"], self.stage_hashes["classify"], n_clusters, "ward-knn15-v1"])
            if self._fresh("cluster", h, [out]):
                st["skipped"] = True
                return
            title_of = {r["date"].isoformat(): r["title"] for r in rows}
            records = []
            for kind in EMBEDDING_KINDS:
                dates, vecs = self.writer.read_vectors(kind)
                if len(dates) < 3:
                    continue
                k = n_clusters or cluster.default_cluster_count(len(dates))
                labels = cluster.ward_clusters(vecs, self._knn_for(kind, 90), k)
                names = cluster.cluster_labels(labels, [title_of[d] for d in dates], [cats.get(d, "?") for d in dates])
                records += [{"date": dt.date.fromisoformat(d), "embedding": kind, "cluster": int(c),
                             "label": names[int(c)]} for d, c in zip(dates, labels)]
            self.writer.stage_table("clusters", pa.Table.from_pylist(records, schema=SCHEMAS["clusters"]))
            st["items"] = len(records)
            self._done("cluster")

    def _sky(self, rows: list[dict[str, Any]]) -> None:
        from pipeline.sky.gazetteer import default, fingerprint
        from pipeline.sky.resolve import objects_for, place_online

        out = self.layout.staged_table("objects")
        with self.metrics.stage("sky") as st:
            texts = [(r["date"].isoformat(), r["title"], r["explanation"]) for r in rows]
            h = sha1_json([sha1_json(texts), fingerprint(), self.cfg.offline])
            if self._fresh("sky", h, [out]):
                st["skipped"] = True
                return
            gazetteer = default()
            per_entry = {r["date"]: objects_for(r["title"], r["explanation"], gazetteer) for r in rows}
            if not self.cfg.offline:
                per_entry = place_online(per_entry, OnlineResolver(
                    self.layout.names_cache, self.cfg.simbad_url, tuple(self.cfg.sesame_urls), progress=self.progress))
            keys = ("name", "canonical_id", "ra_deg", "dec_deg", "object_type", "resolver", "field",
                    "span_start", "span_end", "is_primary", "size_deg")
            records = [{"date": d, **{k: getattr(o, k) for k in keys}} for d, objs in per_entry.items() for o in objs]
            self.writer.stage_table("objects", pa.Table.from_pylist(records, schema=SCHEMAS["objects"]))
            st["items"] = len(records)
            log.info("sky: %d object mentions, %d placed on the sky", len(records),
                     sum(1 for r in records if r["ra_deg"] is not None))
            self._done("sky")

    # -- publish --------------------------------------------------------------------------------
    def _metrics_table(self) -> pa.Table:
        new = pa.Table.from_pylist(self.metrics.rows, schema=SCHEMAS["metrics"])
        old_path = self.layout.table("metrics")
        if not old_path.is_file():
            return new
        old = self.writer.read_table("metrics")
        runs = list(dict.fromkeys(old.column("run_id").to_pylist()))[-(METRIC_RUNS_KEPT - 1):]
        old = old.filter(pa.compute.is_in(old.column("run_id"), pa.array(runs)))
        return pa.concat_tables([old.cast(SCHEMAS["metrics"]), new])

    def _publish(self, rows, invalid, embedded, wall) -> BuildSummary:
        import pyarrow.csv as pacsv

        metrics = self._metrics_table()
        self.writer.stage_table("metrics", metrics)
        self.writer.stage_file(self.layout.metrics_csv, lambda p: pacsv.write_csv(metrics, p))
        if getattr(self, "classify_ran", False):
            self._stage_category_export(rows)
        counts = {"entries": len(rows), "with_image": sum(1 for r in rows if r.get("has_image"))}
        counts |= self._vector_counts()
        encoder_info = self._encoder.info.to_dict() if self._encoder else self.live.get("encoder", {})
        rewrite_vectors = (getattr(self, "embed_ran", False) or getattr(self, "classify_ran", False)
                           or not self.layout.vectors.is_dir()
                           or self.live.get("vector_tables_version") != VECTOR_TABLES_VERSION)
        stages = {name: dict(self.metrics.stages.get(name, {}), input_hash=self.stage_hashes.get(name))
                  for name in STAGES}
        stages["entries"] = {"input_hash": self.stage_hashes["entries"]}
        manifest = {
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_id": self.run_id,
            "pipeline_version": __version__,
            "sources": self.cfg.sources,
            "encoder": encoder_info,
            "taxonomy": {"source": self.taxonomy.source, "categories": self.taxonomy.names,
                         "fingerprint": self.taxonomy.fingerprint(),
                         "logit_scale": logit_scale(self._encoder) if self._encoder else
                         self.live.get("taxonomy", {}).get("logit_scale")},
            "projection": getattr(self, "projection_params", None) or self.live.get("projection"),
            "clustering": {"algorithm": "Ward agglomerative, k-NN (k=15) connectivity",
                           "n_clusters": self.cfg.n_clusters or "sqrt(n/8)",
                           "labels": "top category + class-TF-IDF title words"},
            "multimodal": "L2-normalised [text, image]; entries without an image get a zero image half",
            "counts": counts,
            "invalid_rows": {"by_reason": invalid, "examples": self.invalid_rows[:50]},
            "images": {"thumbnails_made": self.image_report.thumbnails, "reused": self.image_report.reused,
                       "rejected": dict(self.image_report.rejected)},
            "stages": stages,
            "newly_embedded": embedded,
            "vector_tables_version": VECTOR_TABLES_VERSION,
            "wall_seconds": round(wall, 2),
        }
        vector_columns = None
        if rewrite_vectors:
            vector_columns = {
                "title": {r["date"].isoformat(): r["title"] for r in rows},
                "category": self.text_categories.category.to_dict(),
                "has_image": {r["date"].isoformat(): r.get("has_image") for r in rows},
                "body": {r["date"].isoformat(): text_input(r["title"], r["explanation"]) for r in rows},
            }
        self.writer.publish(manifest, vector_columns=vector_columns)
        return BuildSummary(self.run_id, self.layout.root, counts, self.metrics.stages, encoder_info, invalid,
                            wall, embedded)

    def _stage_category_export(self, rows) -> None:
        import pyarrow.csv as pacsv

        text = self.text_categories
        out = []
        for r in rows:
            d = r["date"].isoformat()
            if d not in text.index:
                continue
            c = text.loc[d]
            out.append({"date": d, "title": r["title"], "broad_category": c.category,
                        "confidence": round(float(c.confidence), 4),
                        "top3": "; ".join(f"{n} ({s:.3f})" for n, s in zip(c.top3_categories, c.top3_scores)),
                        "media_type": r["media_type"], "url": r.get("url")})
        table = pa.Table.from_pylist(out)
        self.writer.stage_file(self.layout.categories_csv, lambda p: pacsv.write_csv(table, p))
