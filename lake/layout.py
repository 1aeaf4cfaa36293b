"""File layout of a lake directory. Nothing else in the project spells out a lake file name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lake.schema import EMBEDDING_KINDS, TABLES

#: Environment variable that points every command and the app at a lake directory.
LAKE_ENV = "COSMIC_ATLAS_LAKE"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_lake_dir() -> Path:
    """The lake used when no ``--lake`` is given: ``$COSMIC_ATLAS_LAKE`` or ``lake/data`` in the repo."""
    env = os.environ.get(LAKE_ENV)
    return Path(env).expanduser().resolve() if env else _REPO_ROOT / "lake" / "data"


@dataclass(frozen=True)
class LakeLayout:
    """Paths inside one lake directory.

    ``root`` holds the published lake (what readers see). ``staging`` holds the outputs of a build in
    progress; they are moved into ``root`` only when every stage has finished, so a failed or killed
    build never leaves readers with a half-written lake.
    """

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None) -> "LakeLayout":
        return cls(Path(path).expanduser().resolve() if path else default_lake_dir())

    # -- published lake -------------------------------------------------------------------------
    def table(self, name: str) -> Path:
        if name not in TABLES:
            raise KeyError(f"unknown lake table {name!r}; known: {', '.join(TABLES)}")
        return self.root / f"{name}.parquet"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def vectors(self) -> Path:
        """LanceDB database directory with one table per embedding kind."""
        return self.root / "vectors"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    def thumb(self, date: str) -> Path:
        return self.thumbs / f"{date}.jpg"

    @property
    def image_space(self) -> Path:
        """Fitted map from image features to stored image vectors (offline encoder), for query time."""
        return self.root / "models" / "image_space.npz"

    @property
    def exports(self) -> Path:
        """CSV exports kept for compatibility with the seed project's files."""
        return self.root / "exports"

    @property
    def categories_csv(self) -> Path:
        return self.exports / "apod_broad_categorization.csv"

    @property
    def metrics_csv(self) -> Path:
        return self.exports / "pipeline_metrics.csv"

    # -- build-time state -----------------------------------------------------------------------
    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    def staged(self, published: Path) -> Path:
        """Where a build keeps the new version of a published file until it publishes."""
        return self.staging / published.relative_to(self.root)

    def staged_table(self, name: str) -> Path:
        return self.staged(self.table(name))

    def staged_vectors(self, kind: str) -> Path:
        if kind not in EMBEDDING_KINDS:
            raise KeyError(f"unknown embedding kind {kind!r}; known: {', '.join(EMBEDDING_KINDS)}")
        return self.staging / f"vectors_{kind}.parquet"

    @property
    def staged_manifest(self) -> Path:
        return self.staging / "manifest.json"

    @property
    def cache(self) -> Path:
        """Content-addressed caches that outlive builds (embeddings, downloads, API pages)."""
        return self.root / "cache"

    def embedding_cache(self, encoder_fingerprint: str, kind: str) -> Path:
        return self.cache / "embeddings" / encoder_fingerprint / kind

    @property
    def download_cache(self) -> Path:
        return self.cache / "downloads"

    @property
    def api_cache(self) -> Path:
        return self.cache / "nasa_api"

    @property
    def names_cache(self) -> Path:
        """Names already sent to the online resolvers (SIMBAD, Sesame) and their answers (null = unknown)."""
        return self.cache / "names.json"

    @property
    def thumbs_index(self) -> Path:
        """What each thumbnail was made from, so unchanged images are not decoded again."""
        return self.cache / "thumbs_index.json"

    @property
    def lock(self) -> Path:
        return self.root / ".build.lock"

    def exists(self) -> bool:
        """A lake is there when a build has published its manifest."""
        return self.manifest.is_file()
