"""A lake on object storage (Amazon S3 or anything that speaks its API: MinIO, Ceph, moto): published
versions mirrored between a bucket prefix and a local working copy.

Why a mirror rather than reading and writing the bucket directly: DuckDB and LanceDB read local files
fast, while LanceDB's flat search was ≈ 4× slower on S3 than on local disk at 100k vectors, and every
request would pay round trips; and the build's atomic publish (staging, hard links, one ``rename`` of
the ``current`` symlink) has no object-store equivalent. So:

* a **build** pulls the live version and the build state (caches, thumbnails, cutouts) into the working
  copy, runs as on a local lake, then pushes the new version: every file under
  ``<prefix>/versions/<id>/`` (never overwritten; a file the local publish hard-linked from the previous
  version is copied server-side, not uploaded again), and **last** the pointer object
  ``<prefix>/CURRENT`` in one PUT. A reader sees the old version or the new one, never a mix; a push
  that dies half-way leaves the old pointer live (its half-uploaded version is never named; the next
  build pulls the live version again and pushes a version of its own). That PUT is conditional
  (``If-Match`` on the pointer's ETag at pull time, ``If-None-Match: *`` on an empty prefix): when two
  builders race, the store lets one pointer through and refuses the other, instead of the last writer
  silently dropping the first one's version;
* the **app** pulls the version the pointer names into its working copy (checked at most every
  :data:`POLL_SECONDS`, in the background: its requests go on answering from the copy meanwhile) and
  reads that local copy, so queries run at local-disk speed. A pull downloads only the files the new
  version does not share with the version the copy holds (each push records where each file's content
  was first uploaded: :data:`lake.layout.VERSION_ORIGINS`).

The working copies live under ``$COSMIC_ATLAS_CACHE/builds/<bucket>/<prefix>`` (builds) and
``$COSMIC_ATLAS_CACHE/lakes/<bucket>/<prefix>`` (the app and other readers; default cache
``~/.cache/cosmic-atlas``), apart, so a build and an app on one machine never switch each other's
``current``; credentials come from the usual AWS variables or files, the endpoint of an
S3-compatible server from ``$COSMIC_ATLAS_S3_ENDPOINT`` (or ``$AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from atlas.environment import aws_region, s3_endpoint
from lake import atomic
from lake.layout import VERSION_ORIGINS, LakeLayout
from lake.writer import PRUNE_GRACE_SECONDS, VERSIONS_KEPT, prune_versions, versions_to_prune

log = logging.getLogger(__name__)

#: Object naming the live version (JSON ``{"version": …}``), written after all of the version's files.
POINTER: Final = "CURRENT"
#: Folders beside the versions that builds and the app share: pictures the app serves, and caches that
#: make the next build incremental wherever it runs.
SHARED_FOR_APP: Final = ("thumbs", "cutouts")
SHARED_FOR_BUILD: Final = ("thumbs", "cutouts", "cache")
#: How often a serving app looks at the bucket: a GET of the pointer and a listing of the shared picture
#: folders (new thumbnails are fetched; a new version is pulled whole).
POLL_SECONDS: Final = 30.0


#: Bytes read and written at a time when a file goes to or comes from the bucket.
COPY_CHUNK: Final = 8 << 20
#: Shared folders mirrored both ways: a file one builder removed (embedding chunks merged by a compaction,
#: a stale trace) leaves the bucket, and then the other working copies. Pictures are never deleted.
MIRRORED: Final = ("cache",)
#: A file on disk: (size in bytes, modification time in ns).
DiskStamp = tuple[int, int]


@dataclass(frozen=True)
class BucketObject:
    """An object of a shared folder as the bucket lists it: its size, and its ETag, which names its
    content (the MD5 of a single PUT's body), not when it was written."""

    size: int
    etag: str


class SyncRecord:
    """For one shared folder of a working copy, each file's ETag in the bucket and its stamp on disk
    the last time the two held the same file (it was pulled, or pushed: the ETag the PUT itself
    answered, so another builder's write of the same key just after is never taken for this one).

    Sizes alone cannot tell a changed file from the same one (an index rewritten with other dates, a
    cutout replaced by another survey's of the same size): with the record, a file changed on disk since
    is pushed, one changed in the bucket since is pulled, and one another builder deleted since (the
    chunks a compaction merged) is deleted here too, rather than uploaded again by the next push. Kept
    in the working copy (:meth:`lake.layout.LakeLayout.sync_record`); a file it does not list (a copy
    made before the record, or a record lost) is compared by size. An app's workers share one copy and
    may each rewrite the record: the last write wins, which costs at most a file fetched again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        self.files: dict[str, tuple[str, DiskStamp]] = {}  # relative path → (ETag, disk stamp)
        for rel, v in (raw.get("files") or {}).items() if isinstance(raw, dict) and raw.get("format") == 2 else ():
            try:
                self.files[rel] = (str(v[0]), (int(v[1]), int(v[2])))
            except (TypeError, ValueError, IndexError):
                continue

    def save(self) -> None:
        body = {"format": 2, "files": {rel: [etag, *here] for rel, (etag, here) in sorted(self.files.items())}}
        atomic.write_text(self.path, json.dumps(body, separators=(",", ":")))


def _disk_stamp(path: Path) -> DiskStamp | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size, st.st_mtime_ns


#: A pull's temporary folder untouched this long was left by a worker that died mid-pull (gunicorn kills
#: a worker after its 120 s timeout, and a killed process runs no cleanup); a live pull writes files
#: into it all along.
ABANDONED_PULL_SECONDS = 3600


def pull_lock(versions: Path, version: str) -> Path:
    """The lock file a process holds while it pulls ``version`` into ``.tmp-pull-<version>``."""
    return versions / f".pull-{version}.lock"


@contextmanager
def holding(lock: Path, *, wait: bool) -> Iterator[bool]:
    """Hold ``lock`` (an exclusive ``flock`` on that path) for the ``with`` block; yields False at once
    when ``wait`` is False and another process holds it. The holder unlinks the file when done, so a
    lock taken on a file the path no longer names (unlinked between this process's open and its lock)
    is let go and taken again on the path's file: else a process that waited on the old file and one
    that came after the unlink, on a new file, would both hold "the" lock and fill one folder at once."""
    while True:
        with open(lock, "a") as held:
            try:  # released when the file closes, or the process dies
                fcntl.flock(held, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(lock).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(held.fileno()).st_ino:
                yield True
                return


def remove_abandoned_pulls(versions: Path, *, older_than: float = ABANDONED_PULL_SECONDS) -> list[str]:
    """Remove the ``.tmp-pull-*`` folders under ``versions`` not modified for ``older_than`` seconds and
    not being pulled into now (their version's lock is taken, without waiting, before they are judged)."""
    now, removed = time.time(), []
    for folder in versions.glob(".tmp-pull-*"):
        version = folder.name[len(".tmp-pull-"):]
        with holding(pull_lock(versions, version), wait=False) as held:
            if not held:  # a pull is filling it
                continue
            try:
                idle = now - max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
            except OSError:  # another process removed it meanwhile
                continue
            if idle > older_than:
                atomic.remove_tree(folder)
                pull_lock(versions, version).unlink(missing_ok=True)  # held: a waiter then finds no folder
                removed.append(folder.name)
    if removed:
        log.info("removed %d abandoned pull folders: %s", len(removed), ", ".join(removed))
    return removed


class RemoteLakeError(OSError):
    """The object store refused or could not be reached; the message says which lake and what to check."""


def _split(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an object-store lake; expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.strip("/")


def _endpoint_url(endpoint: str) -> str:
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def filesystem(endpoint: str | None = None):
    """A pyarrow S3 filesystem; ``endpoint`` (``http://host:port``) for S3-compatible servers."""
    from pyarrow import fs

    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(_endpoint_url(endpoint))
        kwargs |= {"endpoint_override": parsed.netloc, "scheme": parsed.scheme or "http"}
    region = aws_region()
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs)


def object_client(endpoint: str | None = None):
    """A boto3 S3 client for the pointer object: pyarrow's filesystem returns no ETag and sends no
    ``If-Match``, which the pointer's conditional PUT needs. Same endpoint, region and credentials as
    :func:`filesystem` (both read the usual AWS variables and files)."""
    import boto3

    kwargs: dict = {}
    if endpoint:
        kwargs["endpoint_url"] = _endpoint_url(endpoint)
    region = aws_region()
    if region:
        kwargs["region_name"] = region
    return boto3.client("s3", **kwargs)


@dataclass
class RemoteLake:
    """The bucket side of a lake whose working copy is ``layout`` (``layout.remote`` is its URL)."""

    layout: LakeLayout
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if not self.layout.remote:
            raise ValueError(f"the lake at {self.layout.root} is not mirrored from object storage")
        self.bucket, self.prefix = _split(self.layout.remote)
        self._fs = filesystem(self.endpoint or s3_endpoint())
        self._client = object_client(self.endpoint or s3_endpoint())
        self._checked_at = float("-inf")  # never looked yet
        self._lock = threading.RLock()  # pull_if_stale holds it around pull()
        self._puller: threading.Thread | None = None  # pull_if_stale's background pull, while one runs
        self._puller_lock = threading.Lock()
        #: the bucket's live version when this object last pulled ("" for an empty bucket; None: never
        #: pulled), and the pointer object's ETag then (None: there was none): a push replaces exactly
        #: that pointer or nothing (see :meth:`push`)
        self._pulled: str | None = None
        self._pulled_tag: str | None = None
        #: the version this object's last :meth:`push` made live (None until a pointer write succeeds)
        self.pushed: str | None = None
        #: the version whose shared folders this object last brought in: a version's thumbnails and
        #: cutouts are pushed before its pointer, so while the pointer stays, the folders are not listed
        #: again (an app looks every 30 s, and a folder of 100k thumbnails is a long listing)
        self._shared_for: dict[tuple[str, ...], str] = {}

    @classmethod
    def of(cls, layout: LakeLayout, *, endpoint: str | None = None) -> "RemoteLake | None":
        """The remote side of ``layout``, or None for a plain local lake."""
        return cls(layout, endpoint) if layout.remote else None

    # -- keys -------------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        """An object's path as pyarrow's file system names it (bucket first)."""
        return f"{self.bucket}/{self._object_key(*parts)}"

    def _object_key(self, *parts: str) -> str:
        """An object's key in the bucket, as S3's own API (boto3) names it."""
        return "/".join([*([self.prefix] if self.prefix else []), *parts])

    def _error(self, action: str, exc: Exception) -> RemoteLakeError:
        return RemoteLakeError(f"could not {action} the lake at {self.layout.remote}: {exc} "
                               "(check the bucket, the credentials and $COSMIC_ATLAS_S3_ENDPOINT)")

    def _listing(self, *parts: str) -> dict[str, int]:
        """Relative path → size of every object under ``parts``."""
        from pyarrow import fs

        base = self._key(*parts)
        try:
            infos = self._fs.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self._error("list", exc) from exc
        return {i.path[len(base) + 1:]: i.size for i in infos if i.type == fs.FileType.File}

    def _objects(self, folder: str) -> dict[str, BucketObject]:
        """Relative path → size and ETag of every object under a shared ``folder``."""
        from botocore.exceptions import BotoCoreError, ClientError

        head = self._object_key(folder) + "/"
        out = {}
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=head):
                for o in page.get("Contents", []):
                    if not o["Key"].endswith("/"):  # the empty "folder/" markers pyarrow leaves
                        out[o["Key"][len(head):]] = BucketObject(int(o["Size"]), o["ETag"])
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", exc) from exc
        return out

    # -- pointer ----------------------------------------------------------------------------------
    def current_version(self) -> str | None:
        """The version the bucket's pointer names (None when nothing was pushed yet)."""
        return self._read_pointer()[0]

    def _pointer_key(self) -> str:
        return self._object_key(POINTER)

    def _read_pointer(self) -> tuple[str | None, str | None]:
        """The live version and the pointer object's ETag; (None, None) when nothing was pushed yet."""
        body, tag = self._pointer_record()
        return (None if body is None else str(body["version"])), tag

    def _pointer_record(self) -> tuple[dict[str, Any] | None, str | None]:
        """The pointer object's record and ETag; (None, None) when nothing was pushed yet."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self._client.get_object(Bucket=self.bucket, Key=self._pointer_key())
            body = json.loads(got["Body"].read())
            if not isinstance(body, dict) or "version" not in body:
                raise ValueError("the pointer names no version")
            return body, got["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise self._error("read the pointer of", exc) from exc
        except (BotoCoreError, ValueError, KeyError) as exc:
            raise self._error("read the pointer of", exc) from exc

    def _write_pointer(self, version: str) -> str:
        """PUT the pointer naming ``version`` on the condition that it is still the pointer this object
        pulled, and return the new pointer's ETag. The store checks and writes in one step, so of two
        builders that pulled the same version only the first to get here goes live; the other is
        refused (:meth:`_overtaken`)."""
        from botocore.exceptions import BotoCoreError, ClientError

        push = uuid.uuid4().hex  # this write's own mark: a retry of it finds it there
        body = json.dumps({"version": version, "pushed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                           "push": push}).encode()
        condition = {} if self._pulled is None else \
            {"IfMatch": self._pulled_tag} if self._pulled_tag else {"IfNoneMatch": "*"}

        def put(**headers: str) -> str:
            return self._client.put_object(Bucket=self.bucket, Key=self._pointer_key(), Body=body,
                                           ContentType="application/json", **headers)["ETag"]

        try:
            try:
                return put(**condition)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                    record, tag = self._pointer_record()
                    if record is not None and record.get("push") == push and tag:  # the client retried a PUT
                        return tag  # that had gone through: the pointer is this write's
                    raise self._overtaken(None if record is None else str(record["version"])) from None
                if error.get("Code") != "NotImplemented" or not condition:
                    raise
                # an S3-compatible server without conditional writes: push()'s check stands alone
                log.warning("lake %s: the object store cannot write conditionally (%s); the pointer is "
                            "written after a plain check", self.layout.remote, error.get("Message"))
                return put()
        except (ClientError, BotoCoreError) as exc:
            raise self._error("write the pointer of", exc) from exc

    def _overtaken(self, live: str | None) -> RemoteLakeError:
        return RemoteLakeError(
            f"the live version of {self.layout.remote} changed from {self._pulled or 'nothing'} to "
            f"{live or 'nothing'} while this build ran (another builder pushed); this build's "
            "version was not pushed: re-run it to build on top of the new one")

    # -- pull -------------------------------------------------------------------------------------
    def pull(self, *, shared: tuple[str, ...] = SHARED_FOR_APP, wait: bool = True) -> str | None:
        """Bring the live version (and the ``shared`` folders' new files) into the working copy and
        point its ``current`` at it. Returns the version; files already there are not fetched again.
        ``wait`` False: when another process is downloading that version, return the version the copy
        has instead of waiting for the download (an app's other workers keep answering)."""
        with self._lock:
            version, self._pulled_tag = self._read_pointer()
            self._checked_at = time.monotonic()
            self._pulled = version or ""
            if version is None:
                return None
            if self._shared_for.get(shared) != version:
                for folder in shared:
                    self._pull_shared(folder)
                self._shared_for[shared] = version
            target = self.layout.version_dir(version)
            if not target.is_dir() and not self._pull_version(version, target, wait=wait):
                log.info("lake %s: another process is downloading version %s; serving version %s meanwhile",
                         self.layout.remote, version, self.layout.current_version())
                return self.layout.current_version()
            if self.layout.current_version() != version:
                atomic.switch_symlink(self.layout.pointer, target)
                prune_versions(self.layout, keep=VERSIONS_KEPT, grace_seconds=PRUNE_GRACE_SECONDS, temporaries=False)
            log.info("lake %s: version %s in the working copy %s", self.layout.remote, version, self.layout.root)
            return version

    def _pull_version(self, version: str, target: Path, *, wait: bool = True) -> bool:
        """Download one version into ``.tmp-pull-<version>`` and publish it as ``target``. One process at
        a time per version (an app's workers start together: the others wait, then find it pulled, or
        with ``wait`` False return False at once), and resumable: files a killed pull finished are kept,
        so a worker that gunicorn killed mid-download (a large version, a slow link) leaves its
        successor less to fetch, not all of it again. True once the version is there."""
        self.layout.versions.mkdir(parents=True, exist_ok=True)
        remove_abandoned_pulls(self.layout.versions)
        lock = pull_lock(self.layout.versions, version)
        with holding(lock, wait=wait) as held:
            if not held:
                return False
            if target.is_dir():
                log.info("lake %s: version %s was pulled by another worker", self.layout.remote, version)
                lock.unlink(missing_ok=True)  # (a waiter that took it again made the file anew)
                return True
            work = self.layout.versions / f".tmp-pull-{version}"
            work.mkdir(exist_ok=True)  # plain mkdir: the mode a built version's folder has
            os.utime(work)  # resumed: not idle
            for partial in work.rglob(".tmp-*"):  # a file a killed pull was writing
                partial.unlink(missing_ok=True)
            listing = self._listing("versions", version)
            if "manifest.json" not in listing:  # its push sends the manifest last: half-pushed, or emptied
                raise RemoteLakeError(f"version {version} of {self.layout.remote} has no manifest.json in the "
                                      "bucket (a push that did not finish, or files removed by hand): it cannot be "
                                      "pulled; push a build again")
            self._link_unchanged(version, listing, work)
            self._download(listing, ("versions", version), work)
            short = [rel for rel, size in listing.items()
                     if not ((work / rel).is_file() and (work / rel).stat().st_size == size)]
            if short:
                raise RemoteLakeError(f"version {version} of {self.layout.remote} pulled without {len(short)} of "
                                      f"its files ({short[0]}, …); the next pull completes it")
            if atomic.publish_tree(work, target):
                os.utime(target)  # stamped as pulled: the copy's prune orders versions by it
            lock.unlink(missing_ok=True)  # a process waiting on it finds the version there
            return True

    def _read_origins(self, version: str) -> dict[str, str]:
        """The bucket's :data:`~lake.layout.VERSION_ORIGINS` record of ``version`` ({} when it has none:
        pushed before the record existed, or half-pushed)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._object_key("versions", version, VERSION_ORIGINS)
        try:
            record = json.loads(self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return {}
            raise self._error("read the file record of", exc) from exc
        except (BotoCoreError, ValueError) as exc:
            raise self._error("read the file record of", exc) from exc
        return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}

    def _write_origins(self, version: str, previous: str | None, *, copied: set[str]) -> None:
        """Record, for every file of ``version``, the version that first uploaded its content: its own
        for a file sent now, the previous version's origin for a file copied inside the bucket. Two
        versions name the same origin for a path only when the file is the same (version names are
        never reused), which is what lets a pull take unchanged files from the version it has. (ETags
        cannot tell: a copy of a multipart upload gets another one.)"""
        before = self._read_origins(previous) if previous else {}
        folder = self.layout.version_dir(version)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and not p.name.startswith(".tmp-") and p.name != VERSION_ORIGINS)
        origins = {rel: before.get(rel, str(previous)) if rel in copied else version for rel in files}
        key = self._object_key("versions", version, VERSION_ORIGINS)
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps(origins, sort_keys=True).encode()
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        except (BotoCoreError, ClientError) as exc:  # the version is not complete without it
            raise self._error("write the file record of", exc) from exc
        # the working copy's version has it too (as a pull would bring it): this builder's next pull
        # keeps the unchanged files
        atomic.write_bytes(folder / VERSION_ORIGINS, body)

    def _link_unchanged(self, version: str, listing: dict[str, int], work: Path) -> None:
        """Hard-link into ``work`` the files of the version this copy serves that ``version`` holds
        unchanged (the same origin in both versions' records, :meth:`_write_origins`): a daily version
        differs from the one before in a few tables and a vector fragment, and the rest (at scale,
        gigabytes of vectors) was downloaded again for every version."""
        previous = self.layout.current_version()
        if not previous or previous == version:
            return
        old_dir = self.layout.version_dir(previous)
        try:  # only a saving is at stake: whatever goes wrong, the files are downloaded
            had = json.loads((old_dir / VERSION_ORIGINS).read_text())
            origins = self._read_origins(version)
        except (OSError, ValueError, RemoteLakeError) as exc:  # built here, pulled before records, …
            log.debug("version %s: no unchanged files taken from %s (%s)", version, previous, exc)
            return
        if not isinstance(had, dict):
            return
        linked = 0
        for rel, size in listing.items():
            src, dst = old_dir / rel, work / rel
            if origins.get(rel) is None or had.get(rel) != origins[rel] or dst.exists():
                continue
            try:
                if not src.is_file() or src.stat().st_size != size:
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
            except OSError:  # pruned meanwhile, another file system, no links there: it is downloaded
                continue
            linked += 1
        if linked:
            log.info("lake %s: %d unchanged files of version %s taken from version %s", self.layout.remote,
                     linked, version, previous)

    def pull_if_stale(self, *, background: bool = False, then: Callable[[], object] | None = None) -> str | None:
        """:meth:`pull` when :data:`POLL_SECONDS` have passed since the last look at the pointer (the
        app calls this per request; all but one call in ``POLL_SECONDS`` return at once). Returns the
        version the working copy serves now.

        ``background``: a copy that already serves a version is refreshed in a thread of its own, and
        this call returns at once (a new version may take minutes to download: the request that noticed
        it should not wait for it); ``then`` runs in that thread after a pull that changed the version
        (the app opens it, and warms it in a thread of its own). A copy with nothing to serve yet is
        pulled here, as without."""
        if time.monotonic() - self._checked_at < POLL_SECONDS:
            return self.layout.current_version()
        serving = self.layout.current_version()
        if background and serving is not None:
            with self._puller_lock:
                if self._puller is None or not self._puller.is_alive():
                    self._puller = threading.Thread(target=self._refresh_in_background, args=(serving, then),
                                                    name="lake-pull", daemon=True)
                    self._puller.start()
            return serving
        return self._refresh(serving)

    def join_pull(self, timeout: float | None = None) -> bool:
        """Wait for a background pull (:meth:`pull_if_stale`) to finish; False if it still runs."""
        puller = self._puller
        if puller is not None:
            puller.join(timeout)
        return puller is None or not puller.is_alive()

    def _refresh_in_background(self, serving: str, then: Callable[[], object] | None) -> None:
        # a thread of its own: its failures reach nobody but the log
        try:
            version = self._refresh(serving)
        except Exception:  # noqa: BLE001
            log.exception("lake %s: pulling its new version failed; serving version %s", self.layout.remote,
                          self.layout.current_version())
            return
        if then is not None and version != serving:
            try:
                then()
            except Exception:  # noqa: BLE001 (the next request reports what is wrong)
                log.warning("lake %s: opening version %s after its pull failed", self.layout.remote, version,
                            exc_info=True)

    def _refresh(self, serving: str | None) -> str | None:
        # another request of this process, or another worker, is pulling (a new version may take minutes
        # to download): serve the copy there is rather than wait; only an app with no copy yet waits
        if not self._lock.acquire(blocking=serving is None):
            return serving
        try:
            if time.monotonic() - self._checked_at < POLL_SECONDS:  # pulled while this one waited
                return self.layout.current_version()
            return self.pull(wait=serving is None)
        except RemoteLakeError as exc:  # keep serving the copy we have
            log.warning("%s; serving version %s", exc, self.layout.current_version())
            self._checked_at = time.monotonic()
            return self.layout.current_version()
        finally:
            self._lock.release()

    def _download(self, objects: dict[str, int], parts: tuple[str, ...], into: Path) -> None:
        missing = [rel for rel, size in objects.items()
                   if not ((into / rel).is_file() and (into / rel).stat().st_size == size)]
        for rel in missing:
            self._fetch(self._key(*parts, rel), into / rel)
        if missing:
            log.info("lake %s: %d files of %s downloaded", self.layout.remote, len(missing), "/".join(parts))

    def _fetch(self, key: str, path: Path) -> None:
        """Download one object to ``path`` (atomically: a killed download leaves no half file)."""
        try:
            with self._fs.open_input_stream(key) as stream:
                atomic.write_with(path, lambda tmp: _copy_to(stream, tmp))
        except OSError as exc:
            raise self._error(f"download {path.name} of", exc) from exc

    def _pull_shared(self, folder: str) -> None:
        """Bring a shared folder in step with the bucket (:class:`SyncRecord`). Downloaded: files missing
        here that this copy never had, and files the bucket changed since this copy was last in step (the
        bucket's wins over a change here not pushed yet, as the push's wins over the bucket's when it is
        the one to find both changed). Left for the next push: files changed here since, and, in a
        :data:`MIRRORED` folder, files deleted here since (a build's compaction that was not pushed: its
        merged chunks must not come back). Deleted here, in a mirrored folder: files another builder
        deleted from the bucket since, unless changed here since."""
        into = self.layout.root / folder
        there = self._objects(folder)
        record = SyncRecord(self.layout.sync_record(folder))
        mirrored = folder in MIRRORED
        fetch = []
        for rel, obj in there.items():
            here, seen = _disk_stamp(into / rel), record.files.get(rel)
            if seen is not None and seen[0] != obj.etag:
                fetch.append(rel)  # changed in the bucket since
            elif here is None and not (seen is not None and mirrored):
                fetch.append(rel)  # (a mirrored file this copy had and deleted: the push deletes it there)
            elif seen is None and here is not None:
                if here[0] != obj.size:
                    fetch.append(rel)
                else:  # same size, no record: taken as the same file (as before the record)
                    record.files[rel] = (obj.etag, here)
        removed = 0
        try:
            for rel in fetch:
                self._fetch(self._key(folder, rel), into / rel)
                record.files[rel] = (there[rel].etag, _disk_stamp(into / rel) or (0, 0))
            for rel in [r for r in record.files if r not in there]:
                _, here_then = record.files.pop(rel)
                if mirrored and _disk_stamp(into / rel) == here_then:
                    (into / rel).unlink(missing_ok=True)
                    removed += 1
        finally:
            record.save()
        if fetch or removed:
            log.info("lake %s: %s: %d files downloaded, %d that other builders deleted from the bucket deleted here",
                     self.layout.remote, folder, len(fetch), removed)

    # -- push -------------------------------------------------------------------------------------
    def push(self, *, shared: tuple[str, ...] = SHARED_FOR_BUILD) -> str:
        """Upload the working copy's live version and the ``shared`` folders' new and changed files (see
        :meth:`_push_shared`), then write the pointer (last). A version's files already in the bucket are
        not sent again; files the local publish hard-linked from the version before are copied inside the
        bucket."""
        version = self.layout.current_version()
        if version is None:
            raise RemoteLakeError(f"nothing to push: the working copy {self.layout.root} has no published version")
        with self._lock:
            for folder in shared:
                # sent before the check below on purpose: an overtaken build's new embedding chunks and
                # pictures are kept for its re-run and for every other builder, only its version is refused
                self._push_shared(folder)
            previous = self.current_version()
            if self._pulled is not None and (previous or "") != self._pulled:
                # another builder pushed since this build pulled: pushing now would drop its version.
                # Checked here to spare the version's upload; the pointer's conditional PUT closes the
                # window between this check and that write
                raise self._overtaken(previous)
            same_as = self._hard_links(version, previous) if previous and previous != version else {}
            if previous != version:  # (pushed again: its record is there)
                self._write_origins(version, previous, copied=same_as)
            # the version's files, its manifest last (a version without one is known to be half-pushed)
            self._upload(self.layout.version_dir(version), ("versions", version), copy_from=same_as,
                         previous=previous)
            # a second push from this working copy builds on this one
            self._pulled, self._pulled_tag = version, self._write_pointer(version)
            self.pushed = version
            log.info("lake %s: version %s is live", self.layout.remote, version)
            try:
                self.prune()
            except RemoteLakeError as exc:  # the new version is live; old ones wait for the next push
                log.warning("%s", exc)
            return version

    def prune(self, *, keep: int = VERSIONS_KEPT, grace_seconds: float | None = None) -> list[str]:
        """Delete all but the newest ``keep`` versions from the bucket (never the live one), as a local
        lake keeps its versions: without it every push would stay in the bucket for good. A version goes
        once its successor has been there ``grace_seconds`` (its manifest's modification time), so an app
        still pulling it finishes first. Returns the versions deleted.

        Versions are ordered by the store's clock (when each manifest arrived), not by name: a run id is
        the build's start time on its own machine, and a builder whose clock is behind would name a
        version that went live today as if it were older than last week's, which then counted as its
        successor and let it go while apps still pulled it."""
        from pyarrow import fs

        grace = PRUNE_GRACE_SECONDS if grace_seconds is None else grace_seconds
        live = self.current_version()
        try:
            infos = self._fs.get_file_info(fs.FileSelector(self._key("versions"), allow_not_found=True))
            names = sorted(i.base_name for i in infos if i.type == fs.FileType.Directory)
            made = {name: _utc(self._fs.get_file_info(self._key("versions", name, "manifest.json")).mtime)
                    for name in names}
            now = self._store_now(newest=max((t for t in made.values() if t is not None), default=None))

            def age(name: str | None) -> float:
                """Seconds since ``name``'s manifest was written (no version: long ago)."""
                when = made.get(name) if name else None
                return float("inf") if when is None else (now - when).total_seconds()

            # a version's manifest is the last file its push sends: one without is a push that died (or
            # one under way). It is no successor (counted as one "superseded long ago", it let its
            # predecessor go at once, while apps could still be pulling it), and it goes itself once a
            # version whose manifest arrived after its first file has been there for the grace period:
            # that push had pulled an older live version, so its pointer write would be refused
            complete = sorted((name for name in names if made[name] is not None), key=lambda n: (made[n], n))
            gone = versions_to_prune(complete, live=live, keep=keep, grace_seconds=grace, superseded_for=age)
            settled = [made[name] for name in complete if age(name) >= grace]
            for name in names:
                if made[name] is None and name != live and settled:
                    started = self._first_written(name)
                    if started is None or any(started <= when for when in settled):
                        gone.append(name)
            for name in gone:
                self._fs.delete_dir(self._key("versions", name))
        except OSError as exc:
            raise self._error("prune old versions of", exc) from exc
        if gone:
            log.info("lake %s: %d old versions deleted from the bucket", self.layout.remote, len(gone))
        return gone

    def _store_now(self, *, newest: dt.datetime | None) -> dt.datetime:
        """The store's clock now (the Date of its reply): a version's age is measured against the time
        the store gave its manifest, and this machine's clock may be minutes off (ahead, every version
        looked past its grace the moment it was pushed). A refused request's reply is dated too (a
        policy may allow listing under the lake's prefix only). With no date at all, the earlier of this
        machine's clock and ``newest``, the newest manifest's time (which the store's clock has passed):
        ages are then never overstated, and a version waits for a later push rather than going early."""
        from email.utils import parsedate_to_datetime

        from botocore.exceptions import BotoCoreError, ClientError

        try:
            headers = self._client.head_bucket(Bucket=self.bucket)["ResponseMetadata"]["HTTPHeaders"]
        except ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        except BotoCoreError:
            headers = {}
        try:
            return _utc(parsedate_to_datetime(headers["date"]))
        except (KeyError, TypeError, ValueError):
            local = dt.datetime.now(dt.timezone.utc)
            log.warning("lake %s: the object store's replies carry no date; old versions are aged by the "
                        "newest one's time instead", self.layout.remote)
            return min(local, newest) if newest is not None else local

    def _first_written(self, version: str) -> dt.datetime | None:
        """When the first file of ``version`` that is still there arrived (None: it holds no file)."""
        from pyarrow import fs

        infos = self._fs.get_file_info(fs.FileSelector(self._key("versions", version), recursive=True,
                                                       allow_not_found=True))
        times = [_utc(i.mtime) for i in infos if i.type == fs.FileType.File and i.mtime is not None]
        return min(times) if times else None

    def _hard_links(self, version: str, previous: str) -> set[str]:
        """Files of ``version`` that are the very files (same inode) of ``previous`` in the working copy."""
        new, old = self.layout.version_dir(version), self.layout.version_dir(previous)
        if not old.is_dir():
            return set()
        same = set()
        for path in (p for p in new.rglob("*") if p.is_file()):
            rel = path.relative_to(new)
            twin = old / rel
            if twin.is_file() and os.path.samestat(path.stat(), twin.stat()):
                same.add(rel.as_posix())
        return same

    def _upload(self, folder: Path, parts: tuple[str, ...], *, copy_from: set[str] = frozenset(),
                previous: str | None = None) -> None:
        """Send a version folder's files the bucket lacks under ``parts`` (``copy_from``: copy these from
        the ``previous`` version inside the bucket instead). A version's files never change, so a file
        there with the same size is that file."""
        if not folder.is_dir():
            return
        there = self._listing(*parts)
        sent = copied = 0
        # a version's record is sent by push itself (before the files); its manifest goes last, so a
        # version without one is known to be half-pushed (see prune)
        local = sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
                        and p.name != VERSION_ORIGINS), key=lambda p: (p == folder / "manifest.json", p))
        for path in local:
            rel = path.relative_to(folder).as_posix()
            if there.get(rel) == path.stat().st_size:
                continue
            try:
                if rel in copy_from:
                    self._fs.copy_file(self._key("versions", str(previous), rel), self._key(*parts, rel))
                    copied += 1
                else:
                    with self._fs.open_output_stream(self._key(*parts, rel)) as out, path.open("rb") as src:
                        shutil.copyfileobj(src, out, COPY_CHUNK)
                    sent += 1
            except OSError as exc:
                raise self._error(f"upload {rel} to", exc) from exc
        if sent or copied:
            log.info("lake %s: %s: %d files uploaded, %d copied in the bucket", self.layout.remote,
                     "/".join(parts), sent, copied)

    def _put(self, path: Path, folder: str, rel: str) -> str:
        """Upload a shared file in one PUT; its ETag, as the store answered that PUT."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._object_key(folder, rel)
        try:
            with path.open("rb") as body:
                return self._client.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
        except (OSError, BotoCoreError, ClientError) as exc:
            raise self._error(f"upload {rel} to", exc) from exc

    def _push_shared(self, folder: str) -> None:
        """Send a shared folder's new files, and those changed here since this copy was last in step with
        the bucket (:class:`SyncRecord`), whether or not the bucket's changed too (the push's copy wins,
        as the bucket's wins in a pull). A file the bucket changed since, and this copy did not, is left
        to the next pull; one another builder deleted since (its compaction holds the vectors), left out.
        In a :data:`MIRRORED` folder, what this copy deleted since (the chunks its compaction merged)
        leaves the bucket, unless another builder changed it since; objects another builder added after
        this copy looked stay. Deletions come after the uploads: a push that dies between never leaves the
        bucket with less."""
        root = self.layout.root / folder
        if not root.is_dir():
            return
        there = self._objects(folder)
        record = SyncRecord(self.layout.sync_record(folder))
        mirrored = folder in MIRRORED
        here = {p.relative_to(root).as_posix(): stamp for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-") and (stamp := _disk_stamp(p)) is not None}
        send = []
        for rel, stamp in sorted(here.items()):
            seen, obj = record.files.get(rel), there.get(rel)
            unchanged = seen is not None and seen[1] == stamp
            if obj is not None and (unchanged or (seen is None and obj.size == stamp[0])):
                if seen is None:  # same size, no record: taken as the same file (as before the record)
                    record.files[rel] = (obj.etag, stamp)
                continue
            if obj is None and unchanged and mirrored:
                continue  # another builder deleted it since: the next pull deletes it here
            send.append(rel)
        gone: list[str] = []
        try:
            for rel in send:
                record.files[rel] = (self._put(root / rel, folder, rel), here[rel])
            gone = [rel for rel, (etag, _) in record.files.items()
                    if mirrored and rel not in here and rel in there and there[rel].etag == etag]
            for rel in gone:
                try:
                    self._fs.delete_file(self._key(folder, rel))
                except OSError as exc:
                    raise self._error(f"delete {rel} from", exc) from exc
                del record.files[rel]
            for rel in [r for r in record.files if r not in here and r not in there]:
                del record.files[rel]  # gone from both
        finally:
            record.save()
        if send or gone:
            log.info("lake %s: %s: %d files uploaded, %d the working copy no longer holds deleted from the bucket",
                     self.layout.remote, folder, len(send), len(gone))


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    """A store's modification time as an aware UTC time (pyarrow gives naive UTC for some stores)."""
    return None if when is None else when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _copy_to(stream, path: Path) -> None:
    """An object's bytes to ``path`` in :data:`COPY_CHUNK` pieces, as uploads are sent (a LanceDB fragment
    or an embedding cache chunk need not fit in memory whole)."""
    with path.open("wb") as out:
        shutil.copyfileobj(stream, out, COPY_CHUNK)
