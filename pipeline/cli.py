"""``python -m pipeline``: build the lake (and, later, query it) from the shell."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from atlas import environment
from atlas.environment import LAKE_ENV, STATE_ENV
from pipeline.config import SEED_KINDS, add_build_arguments, config_from_args, parse_date, parse_lake_location

if TYPE_CHECKING:
    from atlas.encoders import Encoder
    from lake.reader import LakeReader

log = logging.getLogger("pipeline")


LAKE_HELP = f"lake directory or s3://bucket/prefix (default: ${LAKE_ENV} or lake/data)"
STATE_NOTE = (f"Marks are kept outside the read-only lake, in a small database per lake under ${STATE_ENV} "
              "(default: $XDG_STATE_HOME/cosmic-atlas, else ~/.local/state/cosmic-atlas), so they survive rebuilds.")


def _lake_option(command: argparse.ArgumentParser) -> None:
    """The query commands' ``--lake`` (an empty value is refused: it would mean the repository's lake)."""
    command.add_argument("--lake", type=parse_lake_location, default=None, metavar="DIR|s3://BUCKET/PREFIX",
                         help=LAKE_HELP)


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (``None``: the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Cosmic Atlas build pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "build",
        help="build or update the data lake",
        description="Build the data lake: " + " → ".join(s.name for s in _stages()) + ". Stages whose inputs "
        "did not change are skipped; the new version is published in one atomic switch when every stage has "
        "finished, so a failed or killed build leaves the last good lake readable, and a re-run resumes.",
    )
    add_build_arguments(b)
    s = sub.add_parser("search", help="search a built lake from the shell",
                       description="Search a built lake: dense, keyword (BM25) or hybrid (reciprocal rank fusion); "
                       "--kind image finds pictures that match the words. With --image FILE instead of a query: "
                       "the picture's zero-shot categories and the entries like it.",
                       formatter_class=_Defaults)
    s.add_argument("query", nargs="?", help="free text, e.g. 'stellar nursery'")
    s.add_argument("--image", type=Path, metavar="FILE",
                   help="search with a picture (JPEG/PNG/GIF/WebP) instead of words; --kind image (default here) "
                        "finds look-alike pictures, text finds matching texts")
    _lake_option(s)
    s.add_argument("-k", "--k", "--limit", dest="k", type=int, default=10, help="number of results (1-100)")
    s.add_argument("--kind", choices=["text", "title", "image", "multimodal"], default=None,
                   help="which vectors to search (default: text; with --image: image)")
    s.add_argument("--mode", choices=["hybrid", "dense", "keyword"], default="hybrid",
                   help="hybrid fuses the dense (meaning) and keyword (BM25) rankings")
    s.add_argument("--category", action="append", default=[], help="only these categories (repeatable)")
    s.add_argument("--from", dest="start", type=parse_date, help="first date")
    s.add_argument("--to", dest="end", type=parse_date, help="last date")
    s.add_argument("--has-image", choices=["true", "false"], help="only entries with (or without) a picture")
    s.add_argument("--ra", type=float, help="sky cone centre, right ascension in degrees (with --dec, --radius)")
    s.add_argument("--dec", type=float, help="sky cone centre, declination in degrees")
    s.add_argument("--radius", type=float, default=1.0, help="sky cone radius in degrees")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table: a list of results, or "
                   "with --image an object of the picture's categories and the results")
    o = sub.add_parser("oddities", help="entries ranked by how odd they are (anomaly scores), re-ranked by your labels",
                       description="The lake's entries ranked by its anomaly detectors (the Oddities page's list), "
                       "re-ranked by the marks given with `feedback` or on the page. " + STATE_NOTE,
                       formatter_class=_Defaults)
    _lake_option(o)
    o.add_argument("--detector", default="combined", help="combined, or one detector (see the lake's manifest)")
    o.add_argument("-k", "--k", "--limit", dest="k", type=int, default=20, help="how many to list")
    o.add_argument("--user", default=None, help="whose labels re-rank the list (default: everyone's latest)")
    o.add_argument("--export", type=Path, metavar="FILE", help="write the whole ranked list (.csv or .parquet)")
    o.add_argument("--json", action="store_true", help="print JSON instead of a table")
    f = sub.add_parser("feedback", help="mark an entry interesting or not (stored outside the lake)",
                       description="Mark an entry interesting or not interesting (or clear the mark): `oddities` "
                       "and the Oddities page re-rank their list by the marks. " + STATE_NOTE)
    f.add_argument("date", type=parse_date, help="the entry, YYYY-MM-DD")
    f.add_argument("label", choices=["interesting", "not", "clear"],
                   help="interesting, not interesting, or clear your earlier label")
    _lake_option(f)
    f.add_argument("--user", default="anonymous", help="whose label this is (default: anonymous)")
    g = sub.add_parser("galaxies", help="Galaxy Zoo 2: look-alikes of a picture, or a galaxy's morphology neighbours",
                       description="With --image FILE: the galaxies whose pictures look most like it (needs cutouts: "
                       "build with --collection gz2 --fetch-cutouts). With --objid: a catalogue galaxy's nearest "
                       "neighbours in morphology space (or --space image). Either way, the neighbourhood's morphology "
                       "with 90% bootstrap intervals beside the collection's base rates and random sets, and its sky "
                       "dispersion beside random sets of the same size. Without either: the collection's summary.",
                       formatter_class=_Defaults)
    g.add_argument("--image", type=Path, metavar="FILE", help="a galaxy picture (JPEG/PNG/GIF/WebP)")
    g.add_argument("--objid", help="a Galaxy Zoo 2 objid")
    g.add_argument("--space", choices=["morphology", "image"], default="morphology",
                   help="neighbours of --objid by volunteer votes or by picture")
    g.add_argument("-k", "--k", "--limit", dest="k", type=int, default=10, help="number of neighbours (1-100)")
    _lake_option(g)
    g.add_argument("--json", action="store_true", help="print JSON instead of tables")
    x = sub.add_parser("export-vectors", help="write a lake's text and title vectors as seeds a later build starts from",
                       description="Write the published lake's text and title vectors, from its own embedding cache, as seed "
                       "files (float16 arrays in .npz, keyed by the text's hash, in a folder named for the encoder and its "
                       "settings). Builds read the seeds in data/apod/vectors unless given --no-shipped-vectors: "
                       "this is how that folder is made, after a build with --no-shipped-vectors.",
                       formatter_class=_Defaults)
    x.add_argument("--lake", type=parse_lake_location, default=None, metavar="DIR", help="a local lake (default: $COSMIC_ATLAS_LAKE, "
                   "else lake/data in the repo)")
    x.add_argument("--out", type=Path, default=None, metavar="DIR", help="seed folder (default: data/apod/vectors)")
    x.add_argument("--kind", action="append", choices=SEED_KINDS, default=None,
                   help="which vectors; repeatable (default: both)")
    x.add_argument("--keep-seed", action="store_true",
                   help="also export the vectors the build took from the seed already in --out: after a few texts "
                   "changed, their new vectors replace the old ones and every other vector stays as it was")
    return parser


def cmd_export_vectors(args: argparse.Namespace) -> int:
    from lake.layout import LakeLayout
    from lake.manifest import LakeMissingError
    from pipeline.config import BUNDLED_VECTORS
    from pipeline.embed import export_seeds

    try:
        layout = LakeLayout.at(args.lake or environment.lake_dir(), building=True)  # the build's caches
        export_seeds(layout=layout, out=args.out or BUNDLED_VECTORS, kinds=tuple(args.kind or SEED_KINDS),
                     keep_seed=args.keep_seed)
    except (LakeMissingError, ValueError, OSError) as exc:
        log.error("export failed: %s", exc)
        return 1
    return 0


def _query_errors() -> tuple[type[BaseException], ...]:
    """What a query command (search, galaxies, oddities, feedback) answers with a one-line error: a
    missing, unreadable or newer lake, a bad argument, an unknown entry, a lake on object storage that
    cannot be pulled, a feedback store that cannot be written, a lake's encoder that cannot be loaded
    here (all named by their messages). Called in
    the ``except`` clause, so a command that succeeds never imports what these live in."""
    from atlas.encoders import EncoderUnavailable
    from atlas.userstate import FeedbackUnavailable
    from lake.manifest import LakeMissingError

    return LakeMissingError, LookupError, ValueError, OSError, FeedbackUnavailable, EncoderUnavailable


def _query_encoders(reader: LakeReader) -> Callable[[dict[str, Any]], Encoder]:
    """The query encoder of a lake's manifest, loaded as the app loads it: from the text tower the build
    saved in the lake's model cache where there is one, not through sentence-transformers, whose import
    alone took several seconds of every shell search (a search from the shell: median 4.7 s against
    10.0 s, 2.2 s of it loading torch and the tower; README, *Search*)."""
    from atlas.encoders import encoder_from_manifest

    return functools.partial(encoder_from_manifest, trace_dir=reader.layout.model_cache)


def cmd_galaxies(args: argparse.Namespace) -> int:
    import json

    from atlas.images import ImageRejected, decode_image, upload_limits
    from lake.galaxies import GalaxyError, GalaxyQueries
    from lake.reader import LakeReader

    try:
        reader = LakeReader.open(args.lake or environment.lake_dir())
        g = GalaxyQueries(reader, _query_encoders(reader))
        if args.image is not None and args.objid:
            raise GalaxyError("give --image or --objid, not both")
        if args.image is None and not args.objid:
            print(json.dumps(g.summary(), indent=2))
            return 0
        if args.image is not None:
            try:
                image = decode_image(args.image.read_bytes(), upload_limits())
            except (OSError, ImageRejected) as exc:
                raise GalaxyError(f"cannot use {args.image} as a picture: {exc}") from None
            found = g.similar_to_picture(image, k=args.k)
        elif args.space == "image":
            found = g.similar_to_galaxy_picture(args.objid, k=args.k)
        else:
            found = g.morphology_neighbours(args.objid, k=args.k)
    except _query_errors() as exc:  # GalaxyError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
        return 0
    for r in found.galaxies.itertuples():
        print(f"{r.objid}  {r.distance:7.4f}  {r.gz_class:<16} RA {r.ra:9.4f} Dec {r.dec:+8.4f}  "
              f"smooth {r.p_smooth:.2f} featured {r.p_features:.2f}")
    n = found.query["found"]
    print(f"\nmorphology of these {n} (90% bootstrap) | collection | random {n} (90% range)")
    for m in found.morphology:
        own, rnd = m["neighbours"], m["random"]
        print(f"  {m['label']:<30} {own['value']:.2f} ({own['low']:.2f}-{own['high']:.2f}) | "
              f"{m['collection']:.2f} | {rnd['low']:.2f}-{rnd['high']:.2f}")
    if found.sky:
        s = found.sky
        print(f"sky dispersion {s['dispersion_deg']:.2f} deg; random sets {s['random_median_deg']:.2f} deg "
              f"(90% {s['random_low_deg']:.2f}-{s['random_high_deg']:.2f}); {s['percentile']:.0f}% of random sets as tight")
    return 0


def cmd_oddities(args: argparse.Namespace) -> int:
    import json

    from atlas.userstate import FeedbackStore, FeedbackUnavailable, default_path
    from lake.oddities import ranked
    from lake.queries import AtlasQueries
    from lake.reader import LakeReader

    if args.command == "oddities" and args.k < 1:
        print("error: -k must be 1 or more", file=sys.stderr)
        return 2
    try:
        reader = LakeReader.open(args.lake or environment.lake_dir())
        labels_file = default_path(reader.layout.root, lake_id=reader.lake_id)
        if args.command == "feedback":
            if AtlasQueries(reader).entry(args.date.isoformat()) is None:
                raise LookupError(f"no entry for {args.date}")
            FeedbackStore(labels_file).add(date=args.date.isoformat(), user=args.user,
                                           interesting={"interesting": True, "not": False}.get(args.label))
            print(f"{args.date}: {args.label} (user {args.user})")
            return 0
        try:
            labels = FeedbackStore(labels_file).labels(user=args.user)
        except FeedbackUnavailable as exc:  # as the API: without the marks, the detectors' own order
            log.warning("the list without your marks: %s", exc)
            labels = {}
        df = ranked(AtlasQueries(reader).anomaly_scores(), labels, detector=args.detector)
    except _query_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.export:
        from atlas.files import write_bytes
        from lake.exports import table_bytes

        if args.export.suffix not in (".csv", ".parquet"):
            print("error: --export needs a .csv or .parquet file name", file=sys.stderr)
            return 2
        from lake.queries import LICENCE_NOTE

        out = df.drop(columns=["url", "media_type"], errors="ignore")
        try:  # as the API writes it (CSV cells a spreadsheet would run, made inert; the licence note), whole;
            # atomically: an export that fails half-way leaves the file of the last one as it was
            write_bytes(args.export, table_bytes(out, fmt=args.export.suffix[1:], licence=LICENCE_NOTE)[0])
        except OSError as exc:
            print(f"error: cannot write {args.export}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {len(out):,} rows to {args.export}")
        return 0
    top = df.head(args.k)
    if args.json:
        print(json.dumps([{"date": r.date, "title": r.title, "score": round(float(r.score), 4), "why": r.why}
                          for r in top.itertuples()], indent=2, ensure_ascii=False))
    else:
        for r in top.itertuples():
            print(f"{r.date}  {r.score:6.3f}  {r.title[:50]:<50}  {r.why}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from lake.filters import Filters
    from lake.reader import LakeReader
    from lake.search import SearchEngine, SearchError

    try:
        reader = LakeReader.open(args.lake or environment.lake_dir())
        engine = SearchEngine(reader, _query_encoders(reader))
        has_image = None if args.has_image is None else args.has_image == "true"
        if (args.ra is None) != (args.dec is None):
            raise SearchError("a sky cone needs both --ra and --dec")
        cone = (args.ra, args.dec, args.radius) if args.ra is not None else None
        filters = Filters(categories=tuple(args.category), start=args.start, end=args.end, has_image=has_image,
                          cone=cone)
        categories = []
        if (args.query is None) == (args.image is None):
            raise SearchError("give either a query or --image FILE")
        if args.image is not None:
            from atlas.images import ImageRejected, decode_image, upload_limits

            try:
                image = decode_image(args.image.read_bytes(), upload_limits())
            except (OSError, ImageRejected) as exc:
                raise SearchError(f"cannot use {args.image} as a picture: {exc}") from None
            hits, categories = engine.picture_search(image, k=args.k, kind=args.kind or "image", filters=filters)
            if not categories:
                log.warning("no picture categories: this lake has no text–picture space")
        else:
            hits = engine.search(args.query, k=args.k, kind=args.kind or "text", mode=args.mode, filters=filters)
    except _query_errors() as exc:  # SearchError and FilterError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json and args.image is not None:
        print(json.dumps({"categories": categories,
                          "results": [{k: h[k] for k in ("date", "title", "score", "category")} for h in hits]},
                         indent=2, ensure_ascii=False))
        return 0
    if args.json:
        print(json.dumps([{k: h[k] for k in ("date", "title", "score", "category", "snippet")} for h in hits],
                         indent=2, ensure_ascii=False))
    else:
        if categories:
            print("picture categories: " + ", ".join(f"{c['category']} {c['probability']:.0%}" for c in categories))
        for h in hits:
            print(f"{h['date']}  {h['score']:>8.4f}  {h['category'] or '':<20} {h['title']}")
    return 0


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("numba", "urllib3", "httpx", "sentence_transformers", "openTSNE", "PIL", "huggingface_hub", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``docker stop``, systemd, Kubernetes ending a pod) stops a build as Ctrl-C does:
    the background stages that finished are recorded, the worker, the encoder's process and a local Ray
    are stopped, and the message says what became of the lake. Without it the process just died."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _resume_advice(cfg: Any) -> str:
    """How to go on after a build that stopped: ``--force`` clears the staging area as it starts, so the
    same command with it starts over; without it, the finished stages are reused."""
    if cfg.force:
        return ("a re-run with --force starts over; without it, a re-run keeps the stages this build finished "
                "(and reuses the published output of those whose inputs are unchanged)")
    return "the same command resumes from the finished stages"


def cmd_build(args: argparse.Namespace) -> int:
    from atlas.encoders import EncoderUnavailable
    from pipeline.runner import BuildInterrupted
    from pipeline.sources import SourceError
    from pipeline.stages import build

    try:
        cfg = config_from_args(args)
    except ValueError as exc:  # settings that contradict each other: a usage error, like argparse's own
        print(f"python -m pipeline build: error: {exc}", file=sys.stderr)
        return 2
    if cfg.offline:  # OpenCLIP's weights from the local cache only: no revision check against the hub
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with terminate_as_interrupt():
            summary = build(cfg)
    except BuildInterrupted as exc:
        if exc.live is None:
            log.warning("interrupted; the published lake is unchanged, and %s", _resume_advice(cfg))
        else:
            log.warning("interrupted after this build's version %s went live: %s holds it whole", exc.live,
                        cfg.lake.location)
        return 130
    except (ValueError, SourceError, EncoderUnavailable, RuntimeError, OSError) as exc:
        log.error("build failed: %s", exc)
        log.error("the last published lake (if any) is unchanged; fix the cause, and %s", _resume_advice(cfg))
        return 1
    for line in summary.lines():
        log.info("%s", line)
    return 0


def _stages():
    from pipeline.stages import STAGES

    return STAGES


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        if args.command == "build":
            log.warning("interrupted; the published lake is unchanged, and the same command resumes a build "
                        "from its finished stages")
        elif args.command == "export-vectors":  # each seed file is written whole or not at all
            log.warning("interrupted; the seed files already written are whole, and the same command writes them all")
        else:  # a query, or a mark (one transaction): nothing to resume, nothing half-done
            log.warning("interrupted; nothing was changed")
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "build":
        return cmd_build(args)
    if args.command == "search":
        return cmd_search(args)
    if args.command in ("oddities", "feedback"):
        return cmd_oddities(args)
    if args.command == "galaxies":
        return cmd_galaxies(args)
    if args.command == "export-vectors":
        return cmd_export_vectors(args)
    return 2


def run() -> None:
    """The command-line entry point (``python -m pipeline``, ``cosmic-atlas``): :func:`main`, then the end
    of the process without the interpreter's teardown.

    When a command returns, the exit handlers run (log flushing, Ray's shutdown: what the interpreter
    runs at exit) and the process ends. What is skipped is Python dismantling every imported module one
    by one: with torch, LanceDB and scikit-learn loaded that alone took about 1 s of an 11 s daily build,
    and it frees nothing the operating system does not free anyway. Every file a command writes is
    closed (and fsynced) before it returns. Errors and ``--help`` leave the normal way.
    """
    import atexit

    code = main()
    atexit._run_exitfuncs()  # noqa: SLF001 (the interpreter's own exit step, without the module teardown)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
