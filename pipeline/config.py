"""Build settings in one place: each field of :class:`BuildConfig` carries its default, help text,
choices and CLI group, and ``python -m pipeline build``'s flags are generated from them (see
:func:`add_build_arguments`), so the CLI, the defaults and ``--help`` cannot disagree.

Environment variables are read through :mod:`atlas.environment` when a config is made, never at import.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from atlas import environment
from lake.filters import iso_day
from lake.layout import LakeLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DIR = REPO_ROOT / "data" / "apod"
BUNDLED_ARCHIVE = BUNDLED_DIR / "apod_archive.parquet"
BUNDLED_IMAGES = BUNDLED_DIR / "images"
#: The bundled archive's text vectors from the default offline encoder, made by ``python -m pipeline
#: export-vectors`` (pipeline.embed_cache: seeds); a build uses those whose encoder and text match.
BUNDLED_VECTORS = BUNDLED_DIR / "vectors"
#: Kinds of vectors a lake can export as seeds (``export-vectors --kind``); picture features are keyed by
#: the picture's bytes, which the entries table does not hold.
SEED_KINDS = ("text", "title")
BUNDLED_GZ2 = REPO_ROOT / "data" / "galaxy_zoo2" / "gz2_willett13_table5_stripe82_coadd.csv.gz"

SOURCE_CHOICES = ("bundled", "nasa", "dump")
COLLECTION_CHOICES = ("apod", "gz2")
ENCODER_CHOICES = ("auto", "offline", "openclip")
QUANTIZE_CHOICES = ("int8", "none")
RUNNER_CHOICES = ("local", "ray")
PLACEMENT_CHOICES = ("auto", "interpolate", "transform")
RAY_ACTOR_CPUS = 0.5
CLIP_MODEL = "ViT-B-32"
CLIP_PRETRAINED = "laion2b_s34b_b79k"


def parse_date(value: str) -> dt.date:
    """YYYY-MM-DD only, as the API takes it (:func:`lake.filters.iso_day`): Python 3.11's
    ``fromisoformat`` also took 20240131 and 2024-W05-3."""
    try:
        return iso_day(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from exc
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def read_date_list(path: Path) -> list[str]:
    """Dates from a text file, one per line; blank lines and ``#`` comments are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the date list {path}: {exc.strerror or exc}") from None
    dates = set()
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            dates.add(iso_day(text).isoformat())
        except ValueError:  # YYYY-MM-DD only, as on the command line (parse_date)
            raise ValueError(f"{path}, line {number}: {text!r} is not a date like 2024-01-31") from None
    return sorted(dates)


def parse_fraction(value: str) -> float:
    """A positive number of CPUs (fractions allowed)."""
    number = parse_non_negative(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return number


def parse_non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from exc
    if not number >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def parse_lake_location(value: str) -> str:
    """A ``--lake`` value as given; `--lake "$UNSET"` must not quietly mean the repository's own lake."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder or s3://bucket/prefix (or leave --lake out)")
    return value


def parse_lake(value: str) -> LakeLayout:
    value = parse_lake_location(value)
    try:
        return LakeLayout.at(value, building=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def option(
    help: str,
    *,
    group: str,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    repeat: bool = False,
    metavar: str | None = None,
    cli: bool = True,
) -> dict[str, Any]:
    """Field metadata from which the CLI flag is generated (``cli=False``: settable from code only)."""
    return {"help": help, "group": group, "flag": flag, "parse": parse, "choices": choices, "repeat": repeat,
            "metavar": metavar, "cli": cli}


def _default_lake() -> LakeLayout:
    return LakeLayout.at(environment.lake_dir(), building=True)


@dataclass
class BuildConfig:
    """Everything a build depends on. Stage input hashes include the fields each stage uses."""

    lake: LakeLayout = field(default_factory=_default_lake, metadata=option(
        "lake directory, or s3://bucket/prefix for a lake on object storage (built in a local working copy "
        "and pushed; see README) (default: $COSMIC_ATLAS_LAKE, else lake/data in the repo)", group="lake",
        parse=parse_lake, metavar="DIR|s3://BUCKET/PREFIX"))
    collections: list[str] = field(default_factory=lambda: list(COLLECTION_CHOICES), metadata=option(
        "collection(s) to build; repeat for several (default: all). Collections not named keep what "
        "the lake already has: apod = Astronomy Picture of the Day, gz2 = Galaxy Zoo 2 (Stripe 82)",
        group="lake", flag="--collection", choices=COLLECTION_CHOICES, repeat=True))
    sources: list[str] = field(default_factory=lambda: ["bundled"], metadata=option(
        "where entries come from; repeat to merge (later sources win per date): bundled = the archive shipped "
        "in data/apod, nasa = the APOD API (one request per 30 days asked; its key is env NASA_API_KEY, else "
        "DEMO_KEY: 30 requests an hour; fetched pages are kept, so a re-run goes on), dump = files given with "
        "--dump. The lake holds what its sources give: to add new days to the archive, keep bundled beside nasa",
        group="sources", flag="--source",
        choices=SOURCE_CHOICES, repeat=True))
    dump_paths: list[Path] = field(default_factory=list, metadata=option(
        "a local JSON/JSONL(.gz)/Parquet dump of records with a date (YYYY-MM-DD) and a title or explanation, "
        "and optionally the APOD API's other fields and image_file (a local picture; README, Input files); "
        "repeatable. Alone it is the only source; with --source bundled (or nasa) it is merged with them",
        group="sources",
        flag="--dump", parse=Path, repeat=True, metavar="FILE"))
    start: dt.date | None = field(default=None, metadata=option(
        "first date (YYYY-MM-DD) to take from every source (without it, --source nasa beside other sources asks "
        "the API for the days after their latest)", group="sources", parse=parse_date))
    end: dt.date | None = field(default=None, metadata=option(
        "last date (YYYY-MM-DD) to take from every source", group="sources", parse=parse_date))
    nasa_api_url: str = field(default_factory=environment.nasa_api_url, metadata=option(
        "APOD API endpoint (env NASA_APOD_URL)", group="sources", flag="--nasa-url", metavar="URL"))
    nasa_api_key: str = field(default_factory=environment.nasa_api_key, metadata=option(
        "APOD API key (env NASA_API_KEY; never printed)", group="sources", cli=False))
    limit: int | None = field(default=None, metadata=option(
        "keep only the first N entries by date, and the Galaxy Zoo catalogue's first N galaxies (quick looks "
        "and tests: give them their own --lake, or the small lake replaces the published one)", group="sources",
        parse=parse_positive))
    encoder: str = field(default="auto", metadata=option(
        "auto = OpenCLIP when its weights load, else offline (MiniLM text + EfficientNet-Lite0 pictures)",
        group="embedding",
        choices=ENCODER_CHOICES))
    clip_model: str = field(default=CLIP_MODEL, metadata=option("OpenCLIP architecture", group="embedding"))
    clip_pretrained: str = field(default=CLIP_PRETRAINED, metadata=option(
        "OpenCLIP pretrained tag ('random' = untrained weights, for tests only)", group="embedding"))
    clip_checkpoint: Path | None = field(default=None, metadata=option(
        "local OpenCLIP weights file", group="embedding", parse=Path, metavar="FILE"))
    clip_config: Path | None = field(default=None, metadata=option(
        "OpenCLIP model config JSON to register (custom models)", group="embedding", parse=Path, metavar="FILE"))
    quantize: str = field(default="int8", metadata=option(
        "dynamic int8 quantisation of linear layers (CPU); 'none' keeps fp32", group="embedding",
        choices=QUANTIZE_CHOICES))
    text_max_tokens: int = field(default=128, metadata=option(
        "truncate explanations to this many word pieces (MiniLM was trained on 128)", group="embedding",
        parse=parse_positive))
    batch_size: int = field(default=64, metadata=option(
        "texts or pictures per encoder call", group="embedding", parse=parse_positive))
    embed_chunk: int = field(default=512, metadata=option(
        "items per resumable embedding checkpoint", group="embedding", parse=parse_positive))
    shipped_vectors: bool = field(default=True, metadata=option(
        "encode every text and title (by default, texts and titles of the bundled archive take the vectors shipped in "
        "data/apod/vectors where they were made by this encoder with these settings: the cold build's "
        "longest step; see README)", group="embedding"))
    align_exclude: Path | None = field(default=None, metadata=option(
        "file of dates (YYYY-MM-DD, one per line, # comments) kept out of the text–picture alignment's "
        "training, to evaluate it on pictures it never saw", group="alignment", parse=Path, metavar="FILE"))
    taxonomy_path: Path | None = field(default=None, metadata=option(
        "JSON taxonomy replacing the 22 default categories: {\"categories\": [{\"name\": ..., \"prompts\": [...]}, ...]}, "
        "at least 2, names without commas (README, Input files)", group="classify, project, cluster", flag="--taxonomy",
        parse=Path, metavar="FILE"))
    word_classifier_min: int = field(default=6000, metadata=option(
        "fewest texts for the text categories' self-trained word classifier; smaller collections keep the "
        "dense zero-shot categories (scored on the tuning labels, it was worse on samples of 4,000 texts or fewer "
        "and better at 8,000)",
        group="classify, project, cluster", parse=parse_positive, metavar="N"))
    umap_neighbors: int = field(default=15, metadata=option(
        "UMAP n_neighbors (its neighbours are read from the build's shared k-NN graph, made at the largest k "
        "any stage needs)", group="classify, project, cluster",
        parse=parse_positive))
    umap_min_dist: float = field(default=0.1, metadata=option(
        "UMAP min_dist", group="classify, project, cluster", parse=float))
    tsne_perplexity: float = field(default=30.0, metadata=option(
        "t-SNE perplexity", group="classify, project, cluster", parse=float))
    map_sample: int = field(default=200_000, metadata=option(
        "fit each map on at most N entries (a stable random sample) and place the rest on it, as new days "
        "are placed; the archive's 11k entries are all fitted", group="classify, project, cluster",
        parse=parse_positive))
    map_placement: str = field(default="auto", metadata=option(
        "how points are put on a fitted UMAP map (entries beyond --map-sample, new days): interpolate = the "
        "weighted mean of the 15 nearest fitted points' positions (milliseconds); transform = umap-learn's "
        "transform (that, then UMAP's layout for the new points), in batches on the runner's workers; auto = "
        "transform from 1,000 points, else interpolate. t-SNE maps always interpolate",
        group="classify, project, cluster", choices=PLACEMENT_CHOICES))
    n_clusters: int | None = field(default=None, metadata=option(
        "clusters per embedding (default √(n/8))", group="classify, project, cluster", flag="--clusters",
        parse=parse_positive))
    seed: int = field(default=42, metadata=option(
        "random seed of every map and clustering", group="classify, project, cluster", parse=int))
    offline: bool = field(default=False, metadata=option(
        "never touch the network: object names from the bundled catalogues only, OpenCLIP only from weights "
        "already on disk (--encoder auto does not probe the hub), no APOD API, no picture downloads",
        group="sky positions"))
    simbad_url: str = field(default_factory=environment.simbad_url, metadata=option(
        "SIMBAD TAP endpoint asked first, in batches (env SIMBAD_TAP_URL)", group="sky positions", metavar="URL"))
    sesame_urls: list[str] = field(default_factory=environment.sesame_urls, metadata=option(
        "Sesame name-resolver base URL, repeatable (env SESAME_URL, comma-separated)", group="sky positions",
        flag="--sesame-url", repeat=True, metavar="URL"))
    threads: int = field(default_factory=environment.usable_cpus, metadata=option(
        "CPU threads for torch, BLAS and the map workers (the CPUs this process may use)",
        group="other", parse=parse_positive))
    runner: str = field(default="local", metadata=option(
        "where encoding and vector writes run: local = this process; ray = a Ray Data actor pool "
        "(a local Ray instance, or the cluster at --ray-address), vectors written with lance_ray",
        group="scale-out", choices=RUNNER_CHOICES))
    ray_address: str | None = field(default=None, metadata=option(
        "join this Ray cluster (auto, or ray://head:10001) instead of starting a local one with --threads CPUs",
        group="scale-out", metavar="ADDRESS"))
    ray_actors: int | None = field(default=None, metadata=option(
        "encoder actors at most (default: --threads)", group="scale-out", parse=parse_positive))
    ray_actor_cpus: float | None = field(default=None, metadata=option(
        f"CPUs reserved per encoder actor (default: {RAY_ACTOR_CPUS}; fractional, as whole CPUs per actor "
        "deadlocked a 2-core machine while Ray Data's read stage was backpressured)", group="scale-out",
        parse=parse_fraction, metavar="CPUS"))
    ray_gpus_per_actor: float = field(default=0.0, metadata=option(
        "GPUs per encoder actor (0 = CPU actors; e.g. 1 or 0.5 on GPU nodes)", group="scale-out",
        parse=parse_non_negative, metavar="GPUS"))
    refit: bool = field(default=False, metadata=option(
        "re-fit every map, the text categories' word classifier, the picture categories' probe, the anomaly "
        "detectors' isolation forests and (when the build embeds) the picture space; by default "
        "a build that only adds entries places them on the published maps and gives them text categories "
        "with the published word classifier "
        "(existing points and text categories stay put) until they reach 5%% of the fitted ones or the vectors drift",
        group="classify, project, cluster"))
    background_stages: bool = field(default=True, metadata=option(
        "run every stage and the encoder in this process, one after another (by default, with --threads 2 or "
        "more, the anomaly detectors, the clusters, the sky positions and, with the local runner, the vector "
        "tables run in a worker process beside the stages after them, and the local runner's encoder loads "
        "in a process of its own while the first stages run)", group="other"))
    force: bool = field(default=False, metadata=option(
        "recompute every stage and re-fit what --refit re-fits (the embedding cache is still used)", group="other"))
    progress: bool = field(default=True, metadata=option(
        "no progress bars (logs only)", group="other"))
    fetch_images: bool = field(default=False, metadata=option(
        "download the pictures the archive only links to (NASA URLs; at most 4 at once, retries with backoff, "
        "resumable; an answer that is not a whole picture is asked again after a day) and keep their "
        "thumbnails in the lake; later builds embed only the new pictures",
        group="images"))
    gz2_catalogue: Path = field(default=BUNDLED_GZ2, metadata=option(
        "Galaxy Zoo 2 vote table (Willett et al. 2013 table 5 layout, CSV or CSV.gz)", group="galaxies",
        parse=Path, metavar="FILE"))
    fetch_cutouts: bool = field(default=False, metadata=option(
        "download a picture of every galaxy from the cutout service (at most 4 at once, retries with "
        "backoff, resumable) and keep it in the lake; later builds embed only the new pictures",
        group="galaxies"))
    cutout_url: str = field(default_factory=environment.gz2_cutout_url, metadata=option(
        "cutout service answering ?ra=&dec=&scale=&width=&height= with a JPEG (env GZ2_CUTOUT_URL)",
        group="galaxies", metavar="URL"))
    cutout_limit: int | None = field(default=None, metadata=option(
        "fetch cutouts for at most N galaxies in this build: the first N (catalogue order) without one yet",
        group="galaxies",
        parse=parse_positive))
    max_image_bytes: int = field(default=20 * 1024 * 1024, metadata=option(
        "largest picture file accepted", group="images", parse=parse_positive, cli=False))
    max_image_pixels: int = field(default=60_000_000, metadata=option(
        "largest picture (pixels) decoded; more is treated as a decompression bomb", group="images",
        parse=parse_positive, cli=False))
    thumb_size: int = field(default=256, metadata=option(
        "longest side of the thumbnails", group="images", parse=parse_positive, cli=False))
    sample_interval: float = field(default=0.5, metadata=option(
        "seconds between resource samples (CPU, RSS, GPU)", group="other", parse=float, cli=False))

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_CHOICES:
            raise ValueError(f"--encoder must be one of {', '.join(ENCODER_CHOICES)}, not {self.encoder!r}")
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {self.quantize!r}")
        if self.runner not in RUNNER_CHOICES:
            raise ValueError(f"--runner must be one of {', '.join(RUNNER_CHOICES)}, not {self.runner!r}")
        if self.runner != "ray" and (self.ray_address or self.ray_actors or self.ray_gpus_per_actor
                                     or self.ray_actor_cpus is not None):
            raise ValueError("--ray-address, --ray-actors, --ray-actor-cpus and --ray-gpus-per-actor need --runner ray")
        unknown = [s for s in self.sources if s not in SOURCE_CHOICES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCE_CHOICES)}")
        if self.dump_paths and "dump" not in self.sources:
            self.sources = [*self.sources, "dump"]
        if "dump" in self.sources and not self.dump_paths:
            raise ValueError("--source dump needs at least one --dump FILE")
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"--start {self.start} is after --end {self.end}")
        if "nasa" in self.sources and self.offline:
            raise ValueError("--source nasa asks the APOD API and --offline forbids the network; choose one")
        if self.fetch_images and self.offline:
            raise ValueError("--fetch-images downloads pictures and --offline forbids the network; choose one")
        if self.fetch_cutouts and self.offline:
            raise ValueError("--fetch-cutouts downloads pictures and --offline forbids the network; choose one")
        unknown = [c for c in self.collections if c not in COLLECTION_CHOICES]
        if unknown or not self.collections:
            raise ValueError(f"--collection must be one of {', '.join(COLLECTION_CHOICES)}")
        self.collections = list(dict.fromkeys(self.collections))
        if self.align_exclude is not None:
            self.excluded_from_alignment()  # a missing file or a bad line fails before any work
        # files and numbers a stage would refuse minutes into a cold build, refused before any work
        for flag, path in (("--taxonomy", self.taxonomy_path), ("--gz2-catalogue", self.gz2_catalogue
                                                                  if "gz2" in self.collections else None),
                           ("--clip-checkpoint", self.clip_checkpoint), ("--clip-config", self.clip_config),
                           *(("--dump", d) for d in self.dump_paths)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{flag} {path}: no such file")
        if self.taxonomy_path is not None:  # read whole now, not when the classify stage hashes it (after embed)
            from pipeline.taxonomy import load

            load(self.taxonomy_path)
        if self.umap_neighbors < 2:
            raise ValueError("--umap-neighbors must be at least 2 (a point and one neighbour)")
        if not 0 <= self.umap_min_dist <= 1:
            raise ValueError("--umap-min-dist must be between 0 and 1")
        if not self.tsne_perplexity > 0:
            raise ValueError("--tsne-perplexity must be more than 0")

    @property
    def helper_processes(self) -> bool:
        """Whether the build may run work in processes beside its own (the background worker, the
        encoder's process): unless ``--no-background-stages``, and only with a core to spare for them."""
        return self.background_stages and self.threads >= 2

    def excluded_from_alignment(self) -> list[str]:
        """The ISO dates of ``--align-exclude`` (sorted, unique); empty without the option."""
        if self.align_exclude is None:
            return []
        return read_date_list(self.align_exclude)

    def public(self) -> dict[str, Any]:
        """The settings as recorded in the manifest (no secrets, paths as strings)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "nasa_api_key":
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value.root) if isinstance(value, LakeLayout) else value
        return out


def _shown_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    value = f.default_factory()  # type: ignore[misc]
    return None if isinstance(value, LakeLayout) else value  # the help text says where the lake defaults to


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per CLI-visible field of :class:`BuildConfig`, grouped, with help and the real default.

    Defaults are not passed to argparse (they are ``SUPPRESS``ed): an absent flag leaves the field to
    the dataclass, so code and CLI builds get the same defaults, environment-derived ones included.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(BuildConfig):
        meta = f.metadata
        if not meta.get("cli"):
            continue
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        shown = _shown_default(f)
        if f.type in ("bool", bool):  # a switch: --name turns a False default on, --no-name a True one off
            flag = meta["flag"] or ("--no-" if shown else "--") + f.name.replace("_", "-")
            group.add_argument(flag, dest=f.name, help=meta["help"], default=argparse.SUPPRESS,
                               action="store_false" if shown else "store_true")
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        help_text = meta["help"] + ("" if shown in (None, []) else f" (default: {_display(shown)})")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text, "default": argparse.SUPPRESS}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["parse"]:
            kwargs["type"] = meta["parse"]
        metavar = meta["metavar"] or _METAVARS.get(meta["parse"])
        if metavar:
            kwargs["metavar"] = metavar
        group.add_argument(flag, action="append" if meta["repeat"] else "store", **kwargs)


_METAVARS: dict[Any, str] = {parse_positive: "N", int: "N", float: "X", parse_date: "YYYY-MM-DD"}


def _display(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> BuildConfig:
    """A :class:`BuildConfig` from parsed flags; fields whose flag was not given keep their defaults."""
    names = {f.name for f in dataclasses.fields(BuildConfig)}
    given = {k: v for k, v in vars(args).items() if k in names} | overrides
    if given.get("dump_paths") and "sources" not in given:  # `--dump F` alone means: build from F only
        given["sources"] = ["dump"]
    return BuildConfig(**given)
