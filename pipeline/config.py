"""Build settings in one place: defaults, environment variables, and the CLI flags that set them."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from lake.layout import LakeLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DIR = REPO_ROOT / "data" / "apod"
BUNDLED_ARCHIVE = BUNDLED_DIR / "apod_archive.parquet"
BUNDLED_IMAGES = BUNDLED_DIR / "images"

NASA_API_URL = os.environ.get("NASA_APOD_URL", "https://api.nasa.gov/planetary/apod")

SIMBAD_TAP_URL = os.environ.get("SIMBAD_TAP_URL", "https://simbad.cds.unistra.fr/simbad/sim-tap")
SESAME_URLS = tuple(u for u in os.environ.get("SESAME_URL", "").split(",") if u) or (
    "https://cds.unistra.fr/cgi-bin/nph-sesame/", "http://vizier.cfa.harvard.edu/viz-bin/nph-sesame/")
ENCODER_CHOICES = ("auto", "offline", "openclip")
CLIP_MODEL = "ViT-B-32"
CLIP_PRETRAINED = "laion2b_s34b_b79k"


@dataclass
class BuildConfig:
    """Everything a build depends on. Stage input hashes include the fields each stage uses."""

    lake: LakeLayout = field(default_factory=LakeLayout.at)
    sources: list[str] = field(default_factory=lambda: ["bundled"])
    dump_paths: list[Path] = field(default_factory=list)
    start: dt.date | None = None
    end: dt.date | None = None
    nasa_api_key: str = field(default_factory=lambda: os.environ.get("NASA_API_KEY", "DEMO_KEY"))
    nasa_api_url: str = NASA_API_URL
    limit: int | None = None  # keep only the first N entries (by date); for quick looks and tests
    encoder: str = "auto"
    clip_model: str = CLIP_MODEL
    clip_pretrained: str = CLIP_PRETRAINED
    clip_checkpoint: Path | None = None
    clip_config: Path | None = None  # JSON architecture to register with open_clip (custom/tiny models)
    quantize: str = "int8"  # int8 | none
    text_max_tokens: int = 128
    batch_size: int = 64
    embed_chunk: int = 512  # items per embedding-cache checkpoint
    taxonomy_path: Path | None = None
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    tsne_perplexity: float = 30.0
    n_clusters: int | None = None  # default: grows with the square root of the entry count
    seed: int = 42
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 60_000_000
    thumb_size: int = 256
    offline: bool = False  # never use the network for name resolution
    simbad_url: str = SIMBAD_TAP_URL
    sesame_urls: list[str] = field(default_factory=lambda: list(SESAME_URLS))
    force: bool = False
    sample_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_CHOICES:
            raise ValueError(f"--encoder must be one of {ENCODER_CHOICES}, not {self.encoder!r}")
        if self.quantize not in ("int8", "none"):
            raise ValueError(f"--quantize must be int8 or none, not {self.quantize!r}")
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"--start {self.start} is after --end {self.end}")
