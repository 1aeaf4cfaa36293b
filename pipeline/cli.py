"""``python -m pipeline``: build the lake (and, later, query it) from the shell."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from lake.layout import LAKE_ENV, LakeLayout

log = logging.getLogger("pipeline")


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2024-01-31") from exc


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Cosmic Atlas build pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "build",
        help="build or update the data lake",
        description="Build the data lake: ingest → images → embed → classify → project → cluster. "
        "Stages whose inputs did not change are skipped; outputs are published only when every stage "
        "has finished, so a failed or killed build leaves the last good lake readable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("--lake", type=Path, default=None,
                   help=f"lake directory (default: ${LAKE_ENV} or lake/data in the repo)")
    g = b.add_argument_group("sources")
    g.add_argument("--source", action="append", choices=["bundled", "nasa", "dump"], dest="sources",
                   help="where entries come from; repeat to merge (later sources win per date). "
                   "Default: bundled (the archive shipped in data/apod)")
    g.add_argument("--dump", action="append", type=Path, default=[], dest="dump_paths",
                   help="a local JSON/JSONL(.gz)/Parquet dump (implies --source dump)")
    g.add_argument("--start", type=_date, help="first date (YYYY-MM-DD) to take from every source")
    g.add_argument("--end", type=_date, help="last date (YYYY-MM-DD) to take from every source")
    g.add_argument("--nasa-url", default=None, help="APOD API endpoint (env NASA_APOD_URL)")
    g.add_argument("--limit", type=_positive, help="keep only the first N entries by date (quick looks)")
    e = b.add_argument_group("embedding")
    e.add_argument("--encoder", choices=["auto", "offline", "openclip"], default="auto",
                   help="auto = OpenCLIP when its weights load, else offline (MiniLM + pixel descriptors)")
    e.add_argument("--clip-model", default="ViT-B-32", help="OpenCLIP architecture")
    e.add_argument("--clip-pretrained", default="laion2b_s34b_b79k",
                   help="OpenCLIP pretrained tag ('random' = untrained weights, for tests only)")
    e.add_argument("--clip-checkpoint", type=Path, help="local OpenCLIP weights file")
    e.add_argument("--clip-config", type=Path, help="OpenCLIP model config JSON to register (custom models)")
    e.add_argument("--quantize", choices=["int8", "none"], default="int8",
                   help="dynamic int8 quantisation of linear layers (CPU); 'none' keeps fp32")
    e.add_argument("--text-max-tokens", type=_positive, default=128,
                   help="truncate explanations to this many word pieces (MiniLM was trained on 128)")
    e.add_argument("--batch-size", type=_positive, default=64)
    e.add_argument("--embed-chunk", type=_positive, default=512, help="items per resumable checkpoint")
    c = b.add_argument_group("classify, project, cluster")
    c.add_argument("--taxonomy", type=Path, dest="taxonomy_path", help="JSON taxonomy replacing the 22 defaults")
    c.add_argument("--umap-neighbors", type=_positive, default=15)
    c.add_argument("--umap-min-dist", type=float, default=0.1)
    c.add_argument("--tsne-perplexity", type=float, default=30.0)
    c.add_argument("--clusters", type=_positive, dest="n_clusters", help="clusters per embedding (default √(n/8))")
    c.add_argument("--seed", type=int, default=42)
    k = b.add_argument_group("sky positions")
    k.add_argument("--offline", action="store_true",
                   help="resolve object names with the bundled OpenNGC only; never touch the network")
    k.add_argument("--simbad-url", help="SIMBAD TAP endpoint asked first, in batches (env SIMBAD_TAP_URL)")
    k.add_argument("--sesame-url", action="append", dest="sesame_urls",
                   help="Sesame name-resolver base URL (repeatable; env SESAME_URL, comma-separated)")
    o = b.add_argument_group("other")
    o.add_argument("--threads", type=_positive, default=max(1, os.cpu_count() or 1))
    o.add_argument("--force", action="store_true", help="recompute every stage (embedding cache still used)")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    s = sub.add_parser("search", help="search a built lake from the shell",
                       description="Search a built lake: dense, keyword (BM25) or hybrid (reciprocal rank fusion).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("query", help="free text, e.g. 'stellar nursery'")
    s.add_argument("--lake", type=Path, default=None, help=f"lake directory (default: ${LAKE_ENV} or lake/data)")
    s.add_argument("--k", type=int, default=10, help="number of results (1-100)")
    s.add_argument("--kind", choices=["text", "title", "image", "multimodal"], default="text")
    s.add_argument("--mode", choices=["hybrid", "dense", "keyword"], default="hybrid")
    s.add_argument("--category", action="append", default=[], help="only these categories (repeatable)")
    s.add_argument("--from", dest="start", type=_date, help="first date")
    s.add_argument("--to", dest="end", type=_date, help="last date")
    s.add_argument("--has-image", choices=["true", "false"], help="only entries with (or without) a picture")
    s.add_argument("--ra", type=float, help="sky cone centre, right ascension in degrees (with --dec, --radius)")
    s.add_argument("--dec", type=float, help="sky cone centre, declination in degrees")
    s.add_argument("--radius", type=float, default=1.0, help="sky cone radius in degrees")
    s.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from lake.manifest import LakeMissingError
    from lake.reader import LakeReader
    from lake.search import SearchEngine, SearchError, SearchFilters
    from pipeline.encoders import encoder_from_manifest

    try:
        engine = SearchEngine(LakeReader.open(args.lake), encoder_from_manifest)
        has_image = None if args.has_image is None else args.has_image == "true"
        if (args.ra is None) != (args.dec is None):
            raise SearchError("a sky cone needs both --ra and --dec")
        cone = (args.ra, args.dec, args.radius) if args.ra is not None else None
        hits = engine.search(args.query, k=args.k, kind=args.kind, mode=args.mode,
                             filters=SearchFilters(tuple(args.category), args.start, args.end, has_image, cone=cone))
    except (SearchError, LakeMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{k: h[k] for k in ("date", "title", "score", "category", "snippet")} for h in hits],
                         indent=2, ensure_ascii=False))
    else:
        for h in hits:
            print(f"{h['date']}  {h['score']:>8.4f}  {h['category'] or '':<20} {h['title']}")
    return 0


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("numba", "urllib3", "httpx", "sentence_transformers", "openTSNE", "PIL", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_build(args: argparse.Namespace) -> int:
    from pipeline.build import Build
    from pipeline.config import NASA_API_URL, BuildConfig
    from pipeline.encoders import EncoderUnavailable
    from pipeline.sources import SourceError

    sources = args.sources or (["dump"] if args.dump_paths else ["bundled"])
    if args.dump_paths and "dump" not in sources:
        sources.append("dump")
    if "dump" in sources and not args.dump_paths:
        print("error: --source dump needs at least one --dump FILE", file=sys.stderr)
        return 2
    try:
        cfg = BuildConfig(
            lake=LakeLayout.at(args.lake), sources=sources, dump_paths=args.dump_paths, start=args.start,
            end=args.end, nasa_api_url=args.nasa_url or NASA_API_URL, limit=args.limit, encoder=args.encoder,
            clip_model=args.clip_model, clip_pretrained=args.clip_pretrained, clip_checkpoint=args.clip_checkpoint,
            clip_config=args.clip_config, quantize=args.quantize, text_max_tokens=args.text_max_tokens,
            batch_size=args.batch_size, embed_chunk=args.embed_chunk, taxonomy_path=args.taxonomy_path,
            umap_neighbors=args.umap_neighbors, umap_min_dist=args.umap_min_dist,
            tsne_perplexity=args.tsne_perplexity, n_clusters=args.n_clusters, seed=args.seed,
            threads=args.threads, force=args.force, offline=args.offline,
            **({"sesame_urls": args.sesame_urls} if args.sesame_urls else {}),
            **({"simbad_url": args.simbad_url} if args.simbad_url else {}),
        )
        summary = Build(cfg, progress=not args.no_progress).run()
    except (ValueError, SourceError, EncoderUnavailable, RuntimeError, OSError) as exc:
        log.error("build failed: %s", exc)
        log.error("the last published lake (if any) is unchanged; fix the cause and re-run to resume")
        return 1
    for line in summary.lines():
        log.info("%s", line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.command == "build":
        return cmd_build(args)
    if args.command == "search":
        return cmd_search(args)
    return 2
