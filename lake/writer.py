"""Build-side access to a lake: stage new outputs, read the newest version, publish atomically.

Outputs of a build go to ``.staging/`` first. :meth:`LakeWriter.publish` assembles them, with hard
links to the unchanged files of the live version, into a new version folder and then switches the
``current`` pointer with one atomic rename. Until then readers keep seeing the last good lake as a
whole, and a re-run after a crash picks up the staged outputs instead of recomputing them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake import atomic, vectors
from lake import manifest as manifest_io
from lake.layout import VERSION_ORIGINS, LakeLayout
from lake.schema import conform

log = logging.getLogger(__name__)


class LakeBusyError(RuntimeError):
    pass


#: Staged vector matrices up to this size stay in memory for the rest of the build (see
#: :meth:`LakeWriter.read_vectors`; with five kinds at most ≈ 1.3 GB besides the callers' own copies);
#: larger ones are read from their file each time.
VECTOR_MEMO_MAX_BYTES = 256 * 2**20


class LakeWriter:
    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout
        # kind -> (staged file's stat stamp, dates, read-only matrix): later stages read the same matrices
        # again and again (27 reads, ≈ 1 s of a daily build); the stamp catches a file changed underneath
        self._vectors: dict[str, tuple[tuple[int, int, int, int] | None, list[str], np.ndarray]] = {}
        #: the version :meth:`publish` made live (None until its switch is done)
        self.went_live: str | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One build per lake at a time (an advisory lock released even when the process dies)."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.lock, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusyError(f"another build is writing {self.layout.location}; wait for it to finish") from exc
            yield

    # -- manifests ------------------------------------------------------------------------------
    def live_manifest(self, *, replace_newer: bool = False) -> dict[str, Any] | None:
        """The published manifest; None for none, or for a lake of an older schema (rebuilt whole). A lake
        written by a newer Cosmic Atlas raises :class:`lake.manifest.LakeNewerError` unless
        ``replace_newer`` (``--force``): an upgrade's lake is not quietly replaced by an older kind."""
        try:
            return manifest_io.read_if_exists(self.layout.manifest, lake=self.layout.location)
        except manifest_io.LakeNewerError as exc:
            if not replace_newer:
                raise
            log.warning("%s Replacing it, as --force asks.", exc)
            return None
        except (ValueError, manifest_io.LakeMissingError) as exc:  # older schema, unreadable: rebuild everything
            log.warning("%s", exc)
            return None

    def staged_manifest(self) -> dict[str, Any]:
        try:
            return manifest_io.read_if_exists(self.layout.staged_manifest) or {}
        except (ValueError, manifest_io.LakeMissingError):
            return {}

    def save_staged_manifest(self, manifest: dict[str, Any]) -> None:
        manifest_io.write(self.layout.staged_manifest, manifest)

    def discard_staging(self) -> None:
        self._vectors.clear()
        atomic.remove_tree(self.layout.staging)

    # -- tables ---------------------------------------------------------------------------------
    def stage_table(self, name: str, table: pa.Table) -> None:
        atomic.write_parquet(self.layout.staged_table(name), conform(table, name))

    def read_table(self, name: str, *, columns: list[str] | None = None) -> pa.Table:
        """The staged version when this build made one, else the published one (only ``columns`` if given)."""
        staged = self.layout.staged_table(name)
        return pq.read_table(staged if staged.is_file() else self.layout.table(name), columns=columns)

    def stage_removal(self, published: Path) -> None:
        """Leave ``published`` (a file, or a LanceDB table's folder) out of the version this build
        publishes. The publish step carries over every file a build did not remake, which is right for the
        outputs of skipped stages, wrong for one a stage ran and had nothing for (its pictures all gone:
        the last version's picture table would stay, naming entries this version lacks)."""
        marker = removal_marker(self.layout.staged(published))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def stage_vectors(self, kind: str, dates: list[str], matrix: np.ndarray) -> None:
        """An APOD vector matrix for later stages of this build (published later as LanceDB tables)."""
        path = self.layout.staged_vectors(kind)
        matrix = np.array(matrix, dtype=np.float32, order="C")  # a copy: what reading the file back gives
        _write_keyed(path, "date", dates, matrix)
        self._remember(kind, atomic.file_stamp(path), dates, matrix)

    def _remember(self, kind: str, stamp: tuple[int, int, int, int] | None, dates: list[str],
                  matrix: np.ndarray) -> None:
        self._vectors.pop(kind, None)
        if len(dates) and matrix.ndim == 2 and matrix.shape[1] and matrix.nbytes <= VECTOR_MEMO_MAX_BYTES:
            matrix.flags.writeable = False
            self._vectors[kind] = (stamp, list(dates), matrix)

    def read_vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        """Staged APOD vectors of this build, else the published table, else nothing. A staged matrix
        comes from memory while its file is unchanged (written or read before by this writer; a build's
        worker process has a writer of its own), read-only: callers copy before changing it."""
        path = self.layout.staged_vectors(kind)
        stamp = atomic.file_stamp(path)  # taken before reading: a file replaced while read is read again
        memo = self._vectors.get(kind)
        if memo is not None and stamp is not None and memo[0] == stamp:
            return list(memo[1]), memo[2]
        dates, matrix = _read_keyed(path, "date", self.layout.vectors,
                                    lambda: vectors.read_vectors(self.layout.vectors, kind))
        if stamp is not None:
            self._remember(kind, stamp, dates, matrix)
        return dates, matrix

    def stage_galaxy_vectors(self, kind: str, objids: list[str], matrix: np.ndarray) -> None:
        """A galaxy vector matrix for later stages of this build (not published as a file)."""
        _write_keyed(self.layout.staged_galaxy_vectors(kind), "objid", objids, matrix)

    def read_galaxy_vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        """Staged galaxy vectors of this build, else the published table, else nothing."""
        return _read_keyed(self.layout.staged_galaxy_vectors(kind), "objid", self.layout.galaxy_vectors,
                           lambda: vectors.read_galaxy_vectors(self.layout.galaxy_vectors, kind))

    def stage_arrays(self, published: Path, arrays: dict[str, np.ndarray]) -> None:
        """Stage named arrays as one ``.npz`` (:func:`lake.atomic.write_npz`)."""
        atomic.write_npz(self.layout.staged(published), arrays)

    def stage_file(self, published: Path, writer: Callable[[Path], None]) -> None:
        atomic.write_with(self.layout.staged(published), writer)

    # -- publish --------------------------------------------------------------------------------
    def publish(self, manifest: dict[str, Any], *, version: str, keep_staging: bool = False) -> Path:
        """Make the staged build live as ``versions/<version>/`` and switch ``current`` to it.

        The new version folder gets hard links to the staged outputs, and to every file of the previous
        version that this build did not remake (unchanged tables cost no copy and no time). It is
        complete, manifest included, before the one atomic pointer switch; older versions beyond
        :data:`VERSIONS_KEPT` are removed afterwards (a reader pinned to one finishes its request on
        files that stay open, then reopens the new version). The staged files are linked, not moved:
        until the switch the staging area stays whole, resume records and all, so a build killed while
        publishing resumes from it (had they been moved, an emptied staged folder would still pass for
        a stage's output, and the previous version's table would be linked in its place).

        ``keep_staging``: the staging area outlives the switch too, for a build whose version is not
        safe yet once it is live here (a lake on object storage until its push is done: the next build
        pulls the bucket's version back, and would otherwise redo every stage); its caller discards it.
        """
        layout = self.layout
        staging, target = layout.staging, layout.version_dir(version)
        if target.exists():
            raise FileExistsError(f"lake version {version} already exists in {layout.versions}")
        work = layout.versions / f".tmp-{version}"
        atomic.remove_tree(work)
        work.mkdir(parents=True)
        remade: set[tuple[str, ...]] = set()
        for staged in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = staged.relative_to(staging)
            if rel.parts[0] == layout.staged_intermediate.name or rel == Path("manifest.json") \
                    or rel.name.startswith(".tmp-"):
                continue
            if rel.name.endswith(REMOVED_SUFFIX):  # stage_removal: neither linked nor carried over
                remade.add(_unit(rel.with_name(rel.name[:-len(REMOVED_SUFFIX)])))
                continue
            remade.add(_unit(rel))
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(staged, work / rel)
        previous = layout.current_version()
        if previous:
            old = layout.version_dir(previous)
            for path in (p for p in old.rglob("*") if p.is_file()):
                rel = path.relative_to(old)
                if rel not in (Path("manifest.json"), Path(VERSION_ORIGINS)) and _unit(rel) not in remade:
                    (work / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, work / rel)
        # its place in the lake's line of versions: prune keeps the newest by it (a folder's time stamp is
        # lost by a plain copy of the lake, and run ids are the start times of machines' clocks)
        sequence = (published_sequence(layout.version_dir(previous)) or 0) + 1 if previous else 1
        lake_id = (manifest_io.lake_id(_manifest_of(layout.version_dir(previous))) if previous else None) \
            or manifest_io.lake_id(manifest) or uuid.uuid4().hex
        manifest_io.write(work / "manifest.json", {**manifest, PUBLISHED_SEQUENCE: sequence, manifest_io.LAKE_ID: lake_id})
        atomic.fsync_tree(work)  # on disk before the switch makes it live...
        for shared in (layout.thumbs, layout.cutouts):  # ...with the pictures it names (their files were
            if shared.is_dir():                         # fsynced when written, their folders not)
                atomic.fsync_tree(shared, files=False)
        remove_never_live(layout)
        os.replace(work, target)
        os.utime(target)  # stamped as published: prune orders versions by it
        atomic.switch_symlink(layout.pointer, target)  # the switch: readers see the old version or the new one
        self.went_live = version
        if not keep_staging:
            self.discard_staging()
        self.prune(keep=VERSIONS_KEPT, grace_seconds=PRUNE_GRACE_SECONDS)
        return target

    def publish_tables(self, tables: dict[str, pa.Table], manifest: dict[str, Any], *, version: str) -> Path:
        """Publish tables made outside the pipeline (synthetic benchmark lakes, test fixtures, imports)
        through the same staging and atomic switch as a build."""
        with self.locked():
            for name, table in tables.items():
                self.stage_table(name, table)
            return self.publish(manifest, version=version)

    def prune(self, *, keep: int, grace_seconds: float = 0.0) -> list[str]:
        """:func:`prune_versions` of this lake."""
        return prune_versions(self.layout, keep=keep, grace_seconds=grace_seconds)


def prune_versions(layout: LakeLayout, *, keep: int, grace_seconds: float = 0.0, temporaries: bool = True) -> list[str]:
    """Remove all but the newest ``keep`` versions and (``temporaries``) stray temporary folders, never
    the live one.

    A version is removed only once its successor has been live for ``grace_seconds``: a reader that
    pinned it just before a publish finishes its request on it, however fast builds follow. Used by
    builds after publishing and by the app's working copy of a lake on object storage after a pull.
    """
    live = layout.current_version()
    if not layout.versions.is_dir():
        return []
    names = sorted(p.name for p in layout.versions.iterdir() if p.is_dir())
    # left by a build that died mid-publish (a build holds the lake's lock; an app's pulls do not, so
    # they leave temporaries alone: another worker may be filling one)
    # and the hidden leftovers of a removal cut short (atomic.remove_tree), which are never versions
    stale = [n for n in names if n.startswith((".tmp-", ".trash-"))] if temporaries else []
    now = time.time()
    # in the order they were published: by their place in the lake's line of versions (in the manifest),
    # then, for versions published before it was recorded, by the time their folder was stamped as it was
    # published or pulled; not by name: run ids are start times on the clocks of the machines that built them
    published = {n: when for n in names
                 if not n.startswith(".") and (when := _mtime(layout.version_dir(n))) is not None}
    place = {n: published_sequence(layout.version_dir(n)) for n in published}
    order = sorted(published, key=lambda n: (place[n] is not None, place[n] or 0, published[n], n))
    stale += versions_to_prune(
        order, live=live, keep=keep, grace_seconds=grace_seconds,
        superseded_for=lambda successor: now - published[successor] if successor else 0.0)
    for name in stale:
        atomic.remove_tree(layout.version_dir(name))
    if temporaries:
        sweep_temporaries(layout)
    # a build, holding the lock: no other build is writing thumbnails no version names yet. Not in the
    # working copy of a lake on object storage: the bucket's other versions may name what this copy's
    # do not, and each build would pull those files again only to remove them
    if temporaries and layout.remote is None:
        sweep_thumbnails(layout)
    return stale


def remove_never_live(layout: LakeLayout) -> list[str]:
    """Remove the version folders made after the live version that never went live: a build killed
    between naming its version folder and switching ``current`` to it leaves one. No reader ever saw it,
    and left in place it would count as one of the :data:`VERSIONS_KEPT` versions, so the lake would keep
    one version fewer to roll back to. Only for the build holding the lake's lock, as it publishes.

    A folder goes only when it is newer than the live version both by its run id (a start time) and by
    the time it was stamped: a lake copied with ``cp -r`` (every folder stamped with the time of the
    copy) keeps its older versions."""
    live = layout.current_version()
    live_at = _mtime(layout.version_dir(live)) if live else None
    if live is None or live_at is None or not layout.versions.is_dir():
        return []
    gone = []
    for folder in layout.versions.iterdir():
        name = folder.name
        if folder.is_dir() and not name.startswith(".") and name > live \
                and (stamped := _mtime(folder)) is not None and stamped > live_at:
            log.warning("removing lake version %s: it was made after the live version %s but never went "
                        "live (a build stopped while publishing it)", name, live)
            atomic.remove_tree(folder)
            gone.append(name)
    return gone


#: Temporary files younger than this are left alone by :func:`sweep_temporaries`: a writer may still be
#: filling one (an app's process, or a build's own worker, writing beside the lake's caches).
TEMPORARY_GRACE_SECONDS = 3600.0


def sweep_temporaries(layout: LakeLayout, *, older_than: float = TEMPORARY_GRACE_SECONDS) -> list[Path]:
    """Remove the temporary files and folders (``.tmp-*``, ``.trash-*``) that killed writers left in the
    lake's shared folders (the caches, thumbnails and cutouts, which outlive versions): an atomic write
    cut short leaves its temporary file, which nothing reads and nothing else would ever remove; a
    killed download of a large model or a run of embeddings can leave hundreds of megabytes."""
    cutoff = time.time() - older_than
    removed: list[Path] = []
    for shared in (layout.cache, layout.thumbs, layout.cutouts):
        if not shared.is_dir():
            continue
        leftovers = sorted(p for pattern in (".tmp-*", ".trash-*") for p in shared.rglob(pattern))
        for path in leftovers:
            if any(parent in removed for parent in path.parents):
                continue  # inside a leftover folder already removed
            stamped = _mtime(path)
            if stamped is None or stamped > cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary files that stopped writers left in %s", len(removed), layout.root)
    return removed


def sweep_thumbnails(layout: LakeLayout) -> list[str]:
    """Remove the thumbnails no remaining version names (pictures NASA replaced, entries that left):
    thumbnails are named by their content and shared by the versions, so each goes with the last
    version that shows it. Nothing is removed when a version's entries cannot be read."""
    if not layout.thumbs.is_dir() or not layout.versions.is_dir():
        return []
    named: set[str] = set()
    for version in (p for p in layout.versions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = version / layout.table("entries").name
        if not entries.is_file():
            continue
        try:
            paths = pq.read_table(entries, columns=["image_path"]).column("image_path").to_pylist()
        except (OSError, KeyError, pa.ArrowException) as exc:
            log.warning("thumbnails not swept: the entries of version %s cannot be read (%s)", version.name, exc)
            return []
        named.update(Path(p).name for p in paths if p)
    removed = [p.name for p in layout.thumbs.glob("*.jpg") if p.name not in named]
    for name in removed:
        (layout.thumbs / name).unlink(missing_ok=True)
    if removed:
        log.info("removed %d thumbnails no version shows any more", len(removed))
    return removed


#: The manifest key of a version's place in its lake's line of published versions (1, 2, …): each
#: publish gives the live version's plus one, so the order survives copies that lose time stamps.
PUBLISHED_SEQUENCE = "published_sequence"


def published_sequence(version: Path) -> int | None:
    """A published version's :data:`PUBLISHED_SEQUENCE`; None for one published before it was recorded
    (or whose manifest cannot be read: a version being removed)."""
    value = _manifest_of(version).get(PUBLISHED_SEQUENCE)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _manifest_of(version: Path) -> dict[str, Any]:
    """A version's manifest as it is ({} when it cannot be read)."""
    try:
        with open(version / "manifest.json", encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _mtime(path: Path) -> float | None:
    """``path``'s modification time; None when it is gone (another process pruned it meanwhile)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def versions_to_prune(names: list[str], *, live: str | None, keep: int, grace_seconds: float,
                      superseded_for: Callable[[str | None], float]) -> list[str]:
    """The pruning policy, wherever the versions are stored (this disk, a bucket: ``lake.remote``): of
    ``names`` (oldest first) all but the newest ``keep``, never ``live``, each once its successor has
    been there ``grace_seconds``. ``superseded_for(successor)`` says for how long (``None``: the version
    has no successor); it is asked only about versions that may go."""
    out = []
    for i, name in enumerate(names[:-keep] if keep > 0 else names):
        if name != live and superseded_for(names[i + 1] if i + 1 < len(names) else None) >= grace_seconds:
            out.append(name)
    return out


#: What :meth:`LakeWriter.stage_removal` appends to a published path's name, in the staging area.
REMOVED_SUFFIX = ".removed-by-build"


def removal_marker(staged: Path) -> Path:
    """The marker :meth:`LakeWriter.stage_removal` leaves for a staged path: a stage's output either way
    (made, or marked removed), and removed with it when the output is stale."""
    return staged.with_name(staged.name + REMOVED_SUFFIX)


#: Published versions kept on disk: the live one and the two before it (readers mid-request, rollbacks).
VERSIONS_KEPT = 3
#: Seconds a superseded version stays readable beyond :data:`VERSIONS_KEPT` (requests in flight).
PRUNE_GRACE_SECONDS = 300.0


def _write_keyed(path: Path, key: str, keys: list[str], matrix: np.ndarray) -> None:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    dim = matrix.shape[1] if matrix.ndim == 2 and matrix.shape[1] else 1
    atomic.write_arrow(path, pa.table({
        key: pa.array(keys, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim),
    }))


def _read_keyed(staged: Path, key: str, database: Path,
                published: Callable[[], tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    if staged.is_file():
        table = atomic.read_arrow(staged)
        return table.column(key).to_pylist(), vectors.matrix(table.column("vector"))
    if not database.is_dir():  # nothing published (and connecting would create the folder)
        return [], np.zeros((0, 0), np.float32)
    try:
        return published()
    except (KeyError, FileNotFoundError, ValueError):  # e.g. no entry had an image
        return [], np.zeros((0, 0), np.float32)


#: Top-level folders of a version that are LanceDB databases (one folder per table inside).
LANCE_DATABASES = ("vectors", "galaxy_vectors")


def _unit(rel: Path) -> tuple[str, ...]:
    """What a build replaces as a whole: a LanceDB table folder, or a single file."""
    return rel.parts[:2] if rel.parts[0] in LANCE_DATABASES else rel.parts
