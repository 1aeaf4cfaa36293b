"""File layout of a lake directory. Nothing else in the project spells out a lake file name."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from atlas.environment import cache_dir
from lake.schema import TABLES, VECTOR_KINDS

_REPO_ROOT = Path(__file__).resolve().parent.parent

#: A thumbnail's file name without ``.jpg``: its entry's date and the first 12 hex digits of the JPEG's
#: sha1 (lakes built before thumbnails were named by content: the date alone).
THUMB_STEM = re.compile(r"\d{4}-\d{2}-\d{2}(?:-[0-9a-f]{12})?")


def default_lake_dir() -> Path:
    """The lake used when neither ``--lake`` nor ``$COSMIC_ATLAS_LAKE`` names one: ``lake/data`` in the repo."""
    return _REPO_ROOT / "lake" / "data"


def _inside_version(root: Path) -> Path | None:
    """The lake whose ``versions`` folder ``root`` is, or whose published version ``root`` is or lies
    in; else None. Pointed at ``lake/data/current`` or ``versions/<run>`` (a path easily copied from a
    listing), a reader would say there is no lake there and advise building one, and a build would write
    a lake inside a published version; both are told the lake's own folder instead. A version is a
    folder with a manifest in a ``versions`` folder beside a ``current`` link (a release layout such as
    ``/srv/app/versions/<rev>`` with ``/srv/app/current`` holds no manifest: not a lake's)."""
    if root.name == "versions" and (root.parent / "current").is_symlink() and any(root.glob("*/manifest.json")):
        return root.parent
    for folder in (root, *root.parents):
        if (folder.parent.name == "versions" and (folder.parent.parent / "current").is_symlink()
                and (folder / "manifest.json").is_file()):
            return folder.parent.parent
    return None


#: In a version pulled from object storage: for each of its files, the version that first uploaded
#: that content (written by ``lake.remote``'s push, read by its pull to keep unchanged files). A
#: local publish does not carry it into the next version: that version's push writes its own.
VERSION_ORIGINS = ".origins.json"


@dataclass(frozen=True)
class LakeLayout:
    """Paths inside one lake directory.

    Each build publishes a complete, immutable version in ``versions/<run id>/``; the symlink
    ``current`` names the live one and is switched with one atomic rename, so a reader sees one whole
    build or the next, never a mix. A layout with ``version`` set is *pinned* to that version (readers
    pin once per open); without it, paths go through ``current``. ``staging`` holds the outputs of a
    build in progress; caches, thumbnails and the build lock live beside the versions and outlive them.
    """

    root: Path
    version: str | None = None
    #: ``s3://bucket/prefix`` when ``root`` is the local working copy of a lake on object storage
    #: (see :mod:`lake.remote`); None for a plain local lake.
    remote: str | None = None

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None, *, building: bool = False) -> "LakeLayout":
        """The lake at a directory, or at ``s3://bucket/prefix``: then its working copy under the cache,
        one for builds (``building``) and one for readers (the app, the CLI's search). A build publishes
        into its copy before it pushes; an app sharing that copy on the same machine switched its
        ``current`` back to the bucket's version in between, and the build then pushed the old one."""
        if isinstance(path, str) and path.startswith("s3://"):
            parsed = urlparse(path)
            if not parsed.netloc:
                raise ValueError(f"{path!r} names no bucket; expected s3://bucket/prefix")
            url = f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
            copies = cache_dir() / ("builds" if building else "lakes")
            return cls(copies / parsed.netloc / (parsed.path.strip("/") or "_root"), remote=url)
        root = Path(path).expanduser().resolve() if path else default_lake_dir()
        inside = _inside_version(root)
        if inside is not None:
            raise ValueError(f"{root} is inside the published versions of the lake at {inside}, not a lake: "
                             f"give the lake's own folder ({inside})")
        return cls(root)

    @property
    def location(self) -> str:
        """The lake as its users name it, in messages and advice: the ``s3://`` URL of a lake on object
        storage (not its working copy under the cache, which no build is pointed at), else its folder."""
        return self.remote or str(self.root)

    # -- versions -------------------------------------------------------------------------------
    @property
    def pointer(self) -> Path:
        """Symlink to the live version folder (relative, so the lake can be moved or mounted elsewhere)."""
        return self.root / "current"

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def current_version(self) -> str | None:
        """The live version's name, or None when nothing was published yet."""
        try:
            return Path(os.readlink(self.pointer)).name
        except (FileNotFoundError, OSError):
            return None

    def pinned(self) -> "LakeLayout":
        """This lake pinned to the version live right now: later publishes do not change its paths."""
        return replace(self, version=self.current_version())

    @property
    def published(self) -> Path:
        """The folder of the published lake this layout reads."""
        return self.version_dir(self.version) if self.version else self.pointer

    @property
    def legacy_manifest(self) -> Path:
        """Where lakes made before versioned publishing kept their manifest (detected to say: rebuild)."""
        return self.root / "manifest.json"

    # -- published lake -------------------------------------------------------------------------
    def table(self, name: str) -> Path:
        if name not in TABLES:
            raise KeyError(f"unknown lake table {name!r}; known: {', '.join(TABLES)}")
        return self.published / f"{name}.parquet"

    @property
    def manifest(self) -> Path:
        return self.published / "manifest.json"

    @property
    def vectors(self) -> Path:
        """LanceDB database directory with one table per embedding kind."""
        return self.published / "vectors"

    @property
    def galaxy_vectors(self) -> Path:
        """LanceDB database of the Galaxy Zoo collection (morphology and picture vectors, keyed by objid)."""
        return self.published / "galaxy_vectors"

    @property
    def galaxy_image_space(self) -> Path:
        """Fitted map from picture features to galaxy picture vectors (offline encoder), for uploads."""
        return self.published / "models" / "galaxy_image_space.npz"

    @property
    def cutouts(self) -> Path:
        """Galaxy cutouts fetched from the survey's cutout service; like thumbnails, they outlive builds."""
        return self.root / "cutouts" / "gz2"

    def cutout(self, objid: str) -> Path:
        return self.cutouts / f"{objid}.jpg"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    def thumb(self, date: str, sha1: str) -> Path:
        """The thumbnail of ``date`` whose JPEG bytes hash to ``sha1``: named by its content, so a picture
        NASA replaces gets a new file and each version keeps showing its own (never a new picture beside
        the old picture's vectors); files no kept version names are swept after a publish."""
        return self.thumbs / f"{date}-{sha1[:12]}.jpg"

    def thumb_file(self, stem: str) -> Path | None:
        """The thumbnail a URL names by its file stem (:data:`THUMB_STEM`), None when ``stem`` is not one."""
        return self.thumbs / f"{stem}.jpg" if THUMB_STEM.fullmatch(stem) else None

    @property
    def image_space(self) -> Path:
        """Fitted map from image features to stored image vectors (offline encoder), for query time."""
        return self.published / "models" / "image_space.npz"

    @property
    def align_head(self) -> Path:
        """The learned picture → text-space head (offline encoder), for query-time uploads."""
        return self.published / "models" / "align_head.npz"

    @property
    def class_vectors(self) -> Path:
        """The taxonomy's prompt vectors (for text and for pictures), so the app can classify uploads."""
        return self.published / "models" / "class_vectors.npz"

    @property
    def text_classifier(self) -> Path:
        """The word classifier behind the text categories; later builds that only add entries reuse it."""
        return self.published / "models" / "text_classifier.npz"

    @property
    def exports(self) -> Path:
        """CSV exports kept for compatibility with the seed project's files."""
        return self.published / "exports"

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
        return self.staging / published.relative_to(self.published)

    def staged_table(self, name: str) -> Path:
        return self.staged(self.table(name))

    def staged_vectors(self, kind: str) -> Path:
        """The embed stage's matrix of one kind (an intermediate: it is not published as a file; an Arrow
        IPC file, :func:`lake.atomic.write_arrow`)."""
        if kind not in VECTOR_KINDS:
            raise KeyError(f"unknown vector kind {kind!r}; known: {', '.join(VECTOR_KINDS)}")
        return self.staged_intermediate / f"vectors_{kind}.arrow"

    def staged_galaxy_vectors(self, kind: str) -> Path:
        """The galaxy stages' matrix of one kind (intermediate, like :meth:`staged_vectors`)."""
        return self.staged_intermediate / f"galaxy_vectors_{kind}.arrow"

    @property
    def staged_intermediate(self) -> Path:
        """Staged files that later stages read but that are not part of the published lake."""
        return self.staging / "intermediate"

    @property
    def staged_manifest(self) -> Path:
        return self.staging / "manifest.json"

    @property
    def cache(self) -> Path:
        """Content-addressed caches that outlive builds (embeddings, downloads, API pages)."""
        return self.root / "cache"

    def embedding_cache(self, tower_fingerprint: str, *, kind: str) -> Path:
        """Vectors (or picture features) of one kind, keyed by the fingerprint of the tower that made them."""
        return self.cache / "embeddings" / tower_fingerprint / kind

    def knn_cache(self, kind: str) -> Path:
        """The last build's exact k-NN graph of one embedding kind (rows named by date, with digests of
        their vectors), which the next build extends when it only adds entries."""
        return self.cache / "knn" / f"{kind}.npz"

    def anomaly_cache(self, kind: str) -> Path:
        """The isolation forest (and its PCA) an earlier build fitted on one embedding kind, which the
        next build keeps while it only adds a few entries."""
        return self.cache / "anomaly" / f"{kind}.pickle"

    @property
    def model_cache(self) -> Path:
        """Models saved by earlier builds in a form that loads fast (the offline towers' traces)."""
        return self.cache / "models"

    @property
    def download_cache(self) -> Path:
        return self.cache / "downloads"

    @property
    def api_cache(self) -> Path:
        return self.cache / "nasa_api"

    @property
    def names_cache(self) -> Path:
        """Names already sent to the online resolvers (SIMBAD, Sesame) and their answers, per resolver
        setting (:mod:`pipeline.sky.online`; the first format's ``names.json`` beside it is carried over)."""
        return self.cache / "names-v2.json"

    @property
    def cutout_sources(self) -> Path:
        """Which cutout service (address, scale, size) each galaxy cutout came from, so a build pointed at
        another service replaces the cutouts instead of mixing two surveys' pictures."""
        return self.cache / "cutout_sources.json"

    @property
    def thumbs_index(self) -> Path:
        """What each thumbnail was made from, so unchanged images are not decoded again."""
        return self.cache / "thumbs_index.json"

    @property
    def lock(self) -> Path:
        return self.root / ".build.lock"

    def sync_record(self, folder: str) -> Path:
        """What a working copy's shared ``folder`` (thumbs, cutouts, cache) held the last time it was in
        step with the bucket, file by file (:class:`lake.remote.SyncRecord`)."""
        return self.root / ".sync" / f"{folder}.json"

    def exists(self) -> bool:
        """A lake is there when a build has published a version with its manifest."""
        return self.manifest.is_file()
