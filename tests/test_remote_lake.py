"""A lake on object storage, against a real S3 server on 127.0.0.1 (moto's server, over HTTP): push and
pull of versions, the pointer written last, resumed pushes, server-side copies of unchanged files, the
app serving from the bucket, and a real build to ``s3://`` through the CLI."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.synthetic_lake import write_synthetic_lake
from lake import manifest as manifest_io
from lake import remote
from lake.layout import LakeLayout
from lake.manifest import LakeMissingError
from lake.reader import LakeReader
from lake.remote import POINTER, RemoteLake, RemoteLakeError
from pipeline.config import BuildConfig
from pipeline.runner import Runner, Stage, StageResult
from tests.conftest import local_http_server, republish_categories, run_cli, serve_dashboard

BUCKET = "atlas"


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free local port, with a bucket; the AWS settings that point at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "COSMIC_ATLAS_S3_ENDPOINT": f"http://127.0.0.1:{port}"}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for k, v in env.items():
                patch.setenv(k, v)
            client = boto3.client("s3", endpoint_url=env["COSMIC_ATLAS_S3_ENDPOINT"], region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield client, env
    finally:
        server.stop()


def _keys(client, prefix: str) -> dict[str, int]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _files(client, prefix: str) -> set[str]:
    """The objects under ``prefix``, relative to it (without the empty "folder/" markers pyarrow leaves
    where it deleted a folder's last object)."""
    return {k[len(prefix):] for k in _keys(client, prefix) if not k.endswith("/")}


def _pointer(client, prefix: str) -> str:
    return json.loads(client.get_object(Bucket=BUCKET, Key=f"{prefix}/{POINTER}")["Body"].read())["version"]


class ResetsOnFile:
    """The real S3 filesystem, whose connection resets on the ``nth`` file under ``under`` it reads,
    writes or copies to (a push or a pull dying part-way through a version)."""

    def __init__(self, fs, *, under: str, nth: int) -> None:
        self.fs, self.under, self.nth, self.files = fs, under, nth, []

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def _touch(self, key: str) -> None:
        if self.under in key:
            self.files.append(key)
            if len(self.files) == self.nth:
                raise OSError("connection reset (simulated)")

    def open_input_stream(self, key, *args, **kwargs):
        self._touch(key)
        return self.fs.open_input_stream(key, *args, **kwargs)

    def open_output_stream(self, key, *args, **kwargs):
        self._touch(key)
        return self.fs.open_output_stream(key, *args, **kwargs)

    def copy_file(self, src, dest):
        self._touch(dest)
        return self.fs.copy_file(src, dest)


class HeldDownloads:
    """An S3 file system whose downloads under ``under`` wait until ``release`` is set (a slow link);
    ``started`` says that the first one began."""

    def __init__(self, fs, *, under: str) -> None:
        self.fs, self.under = fs, under
        self.started, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open_input_stream(self, key, *args, **kwargs):
        if self.under in key:
            self.started.set()
            assert self.release.wait(60), "never released"
        return self.fs.open_input_stream(key, *args, **kwargs)


def _copy(tmp_path, name: str, prefix: str) -> LakeLayout:
    """A working copy of ``s3://atlas/<prefix>`` in its own folder (a machine of its own)."""
    return LakeLayout(tmp_path / name, remote=f"s3://{BUCKET}/{prefix}")


def _pushed_and_pulled(tmp_path, prefix: str, *, n: int) -> tuple[LakeLayout, LakeLayout, RemoteLake]:
    """A synthetic lake of ``n`` entries built and pushed on one machine, and pulled by an app's copy on
    another: the builder's layout, the app's layout and its :class:`RemoteLake`."""
    source = _copy(tmp_path, "builder", prefix)
    write_synthetic_lake(source.root, n=n)
    RemoteLake(source).push()
    server = _copy(tmp_path, "server", prefix)
    app = RemoteLake(server)
    app.pull()
    return source, server, app


def _versions_in_bucket(client, prefix: str) -> list[str]:
    # (deleting a folder, pyarrow writes an empty "versions/" marker so that the parent still exists)
    return sorted({key.split("/")[2] for key in _keys(client, f"{prefix}/versions/")} - {""})


def test_push_then_pull_on_another_machine_gives_the_same_lake(s3_server, tmp_path):
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "roundtrip")
    write_synthetic_lake(source.root, n=2_000)
    version = RemoteLake(source).push()
    keys = _keys(client, "roundtrip/")
    assert f"roundtrip/versions/{version}/manifest.json" in keys and f"roundtrip/versions/{version}/entries.parquet" in keys
    assert _pointer(client, "roundtrip") == version
    reader_copy = _copy(tmp_path, "server", "roundtrip")
    assert RemoteLake(reader_copy).pull() == version
    for table in ("entries", "projections", "categories", "clusters"):
        assert pq.read_table(reader_copy.table(table)).equals(pq.read_table(LakeLayout.at(source.root).table(table)))
    assert LakeReader(reader_copy).count("entries") == 2_000


def test_a_pull_that_dies_is_resumed_not_restarted(s3_server, tmp_path, caplog):
    """An app worker killed mid-download (gunicorn's timeout during its warm-up, on a large version)
    used to leave its successor everything to fetch again, in a fresh temporary folder."""
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "pull-resume")
    write_synthetic_lake(source.root, n=2_000)
    version = RemoteLake(source).push()
    server = _copy(tmp_path, "server", "pull-resume")
    dying = RemoteLake(server)
    dying._fs = ResetsOnFile(dying._fs, under=f"/versions/{version}/", nth=3)
    with pytest.raises(RemoteLakeError, match="connection reset"):
        dying.pull()
    assert not server.version_dir(version).exists()  # nothing half-published
    with caplog.at_level(logging.INFO, logger="lake.remote"):
        assert RemoteLake(server).pull() == version
    files = len([k for k in _keys(client, f"pull-resume/versions/{version}/") if not k.endswith("/")])
    line = next(r.getMessage() for r in caplog.records if f"of versions/{version} downloaded" in r.getMessage())
    assert int(re.search(r"(\d+) files of", line).group(1)) == files - 2  # the two the dead pull finished
    assert LakeReader(server).count("entries") == 2_000
    assert not list(server.versions.glob(".tmp-pull-*")) and not list(server.versions.glob(".pull-*"))


def test_a_new_version_downloads_only_what_changed(s3_server, tmp_path, caplog):
    """An app's copy takes the next version's unchanged files from the version it serves (hard links,
    found by the versions' records of where each file's content was first uploaded) and downloads only
    the changed ones; before, every new version was downloaded whole (at scale, gigabytes of unchanged
    vectors a day). (The files' ETags could not tell: a copy of a multipart upload gets another.)"""
    source, server, app = _pushed_and_pulled(tmp_path, "delta", n=2_000)
    first = server.current_version()
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")
    RemoteLake(source).push()
    new, old = source.version_dir("v2"), source.version_dir(first)
    files = [p.relative_to(new) for p in new.rglob("*") if p.is_file()]
    changed = {rel for rel in files if not ((old / rel).is_file() and os.path.samestat((new / rel).stat(),
                                                                                        (old / rel).stat()))}
    assert {"categories.parquet", "manifest.json", ".origins.json"} <= {r.as_posix() for r in changed}
    assert len(changed) < len(files)
    with caplog.at_level(logging.INFO, logger="lake.remote"):
        assert app.pull() == "v2"
    line = next(r.getMessage() for r in caplog.records if "of versions/v2 downloaded" in r.getMessage())
    assert int(re.search(r"(\d+) files of", line).group(1)) == len(changed)  # the version's record among them
    for rel in files:
        same = os.path.samestat((server.version_dir("v2") / rel).stat(), (server.version_dir(first) / rel).stat())
        assert same == (rel not in changed), rel
        assert (server.version_dir("v2") / rel).read_bytes() == (new / rel).read_bytes(), rel
    assert set(LakeReader(server).query("SELECT DISTINCT category FROM categories").category) == {"Galaxy"}


def test_requests_are_answered_from_the_copy_while_a_new_version_downloads(s3_server, tmp_path, monkeypatch):
    """The request that finds the pointer moved downloads the new version (minutes, for a large one); the
    worker's other requests meanwhile answer from the version its copy has, instead of queueing behind
    that download (the call below would wait for ever if they still did: the download is held)."""
    from concurrent.futures import ThreadPoolExecutor

    source, server, app = _pushed_and_pulled(tmp_path, "busy", n=300)
    first = server.current_version()
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")
    RemoteLake(source).push()
    monkeypatch.setattr(remote, "POLL_SECONDS", 0.0)
    app._fs = held = HeldDownloads(app._fs, under="/versions/v2/")
    with ThreadPoolExecutor(1) as pool:
        pulling = pool.submit(app.pull_if_stale)
        assert held.started.wait(30)
        assert app.pull_if_stale() == first  # not blocked by the download under way
        held.release.set()
        assert pulling.result(timeout=60) == "v2"
    assert app.pull_if_stale() == "v2" and server.current_version() == "v2"


def test_a_worker_answers_from_its_copy_while_another_worker_downloads(s3_server, tmp_path, monkeypatch):
    """Another worker of the app (another process) holds the version's download lock: this worker does
    not wait for its download (minutes, for a large version) but answers from the version its copy has,
    and takes the new one once it is there."""
    import fcntl

    source, server, app = _pushed_and_pulled(tmp_path, "workers", n=300)
    first = server.current_version()
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")
    RemoteLake(source).push()
    monkeypatch.setattr(remote, "POLL_SECONDS", 0.0)
    with open(remote.pull_lock(server.versions, "v2"), "a") as other_worker:
        fcntl.flock(other_worker, fcntl.LOCK_EX)  # a lock of another open file: as another process's
        assert app.pull_if_stale() == first
    assert app.pull_if_stale() == "v2" and server.current_version() == "v2"


def _builder_with_chunks(tmp_path, prefix: str, *, n: int) -> tuple[LakeLayout, Path]:
    """A builder's working copy of a synthetic lake of ``n`` entries with two embedding-cache chunks; the
    layout and the chunks' folder."""
    source = _copy(tmp_path, "builder", prefix)
    write_synthetic_lake(source.root, n=n)
    chunks = source.root / "cache" / "embeddings" / "abc" / "text"
    chunks.mkdir(parents=True)
    for name in ("chunk-1.npz", "chunk-2.npz"):
        (chunks / name).write_bytes(b"vectors " + name.encode())
    return source, chunks


def test_the_bucket_keeps_only_the_caches_the_working_copy_holds(s3_server, tmp_path):
    """A build pulls every cache first, so what its working copy dropped since (embedding chunks merged by a
    compaction, a stale trace) leaves the bucket with its push; pictures are never deleted."""
    client, _ = s3_server
    source, chunks = _builder_with_chunks(tmp_path, "mirror", n=500)
    (source.root / "thumbs").mkdir(exist_ok=True)
    (source.root / "thumbs" / "2001-01-01.jpg").write_bytes(b"jpeg")
    RemoteLake(source).push()
    assert {"mirror/cache/embeddings/abc/text/chunk-1.npz", "mirror/thumbs/2001-01-01.jpg"} <= set(_keys(client, "mirror/"))
    next_build = RemoteLake(source)  # a new build pulls first, as the runner does
    next_build.pull(shared=remote.SHARED_FOR_BUILD)
    for name in ("chunk-1.npz", "chunk-2.npz"):  # a compaction merged them
        (chunks / name).unlink()
    (chunks / "chunk-all.npz").write_bytes(b"all vectors")
    (source.root / "thumbs" / "2001-01-01.jpg").unlink()
    next_build.push()
    assert _files(client, "mirror/cache/embeddings/") == {"abc/text/chunk-all.npz"}
    assert "mirror/thumbs/2001-01-01.jpg" in _keys(client, "mirror/")


def test_two_builders_compacting_and_adding_cache_chunks_keep_each_others_chunks(s3_server, tmp_path):
    """Two machines pull the same caches. One compacts its embedding chunks into one and pushes; the other
    adds a chunk of its own and pushes after it. Each push deletes only chunks its builder had seen, so the
    bucket ends with both new chunks (before, the second push deleted the first one's compacted chunk, and
    every builder after it embedded those vectors again)."""
    client, _ = s3_server
    first = _copy(tmp_path, "first", "chunks")
    write_synthetic_lake(first.root, n=300)
    folder = ("cache", "embeddings", "abc", "text")
    (first.root.joinpath(*folder)).mkdir(parents=True)
    for name in ("chunk-1.parquet", "chunk-2.parquet"):
        first.root.joinpath(*folder, name).write_bytes(b"vectors " + name.encode())
    RemoteLake(first).push()
    machine_a, machine_b = _copy(tmp_path, "a", "chunks"), _copy(tmp_path, "b", "chunks")
    remote_a, remote_b = RemoteLake(machine_a), RemoteLake(machine_b)
    remote_a.pull(shared=remote.SHARED_FOR_BUILD)
    remote_b.pull(shared=remote.SHARED_FOR_BUILD)
    chunks_a, chunks_b = machine_a.root.joinpath(*folder), machine_b.root.joinpath(*folder)
    for name in ("chunk-1.parquet", "chunk-2.parquet"):  # machine a's compaction merged them
        (chunks_a / name).unlink()
    (chunks_a / "chunk-3-all.parquet").write_bytes(b"all vectors of a")
    (chunks_b / "chunk-4.parquet").write_bytes(b"new vectors of b")
    republish_categories(machine_a, "a1")
    republish_categories(machine_b, "b1")
    remote_a.push()
    with pytest.raises(RemoteLakeError, match="re-run it"):  # b was overtaken: its version is refused...
        remote_b.push()
    prefix = "chunks/" + "/".join(folder) + "/"
    assert _files(client, prefix) == {"chunk-3-all.parquet", "chunk-4.parquet"}  # ...but no chunk is lost
    # b's re-run starts from every chunk there is, without the two a's compaction merged (they would
    # go back to the bucket with b's next push, and be pulled and merged by every builder after it)
    remote_b.pull(shared=remote.SHARED_FOR_BUILD)
    assert sorted(p.name for p in chunks_b.iterdir()) == ["chunk-3-all.parquet", "chunk-4.parquet"]
    republish_categories(machine_b, "b2")
    remote_b.push()
    assert _files(client, prefix) == {"chunk-3-all.parquet", "chunk-4.parquet"}
    for name in ("chunk-3-all.parquet", "chunk-4.parquet"):  # b compacts in turn
        (chunks_b / name).unlink()
    (chunks_b / "chunk-5-all.parquet").write_bytes(b"all vectors of b")
    republish_categories(machine_b, "b3")
    remote_b.push()
    assert _files(client, prefix) == {"chunk-5-all.parquet"}


def test_chunks_a_build_merged_and_did_not_push_are_not_pulled_back(s3_server, tmp_path):
    """A build compacts its embedding chunks, then fails before its push: the next build's pull must not
    bring the merged chunks back (their vectors would be merged in again, and a forgotten key return);
    its push deletes them from the bucket."""
    client, _ = s3_server
    builder, chunks = _builder_with_chunks(tmp_path, "unpushed", n=200)
    RemoteLake(builder).push()
    for name in ("chunk-1.npz", "chunk-2.npz"):  # a compaction, and then the build failed
        (chunks / name).unlink()
    (chunks / "chunk-all.npz").write_bytes(b"all vectors")
    retry = RemoteLake(builder)
    retry.pull(shared=remote.SHARED_FOR_BUILD)  # the next build pulls first
    assert sorted(p.name for p in chunks.iterdir()) == ["chunk-all.npz"]
    republish_categories(builder, "v2")
    retry.push()
    assert _files(client, "unpushed/cache/embeddings/") == {"abc/text/chunk-all.npz"}


def test_a_shared_file_changed_without_changing_size_is_pushed_and_pulled(s3_server, tmp_path):
    """Shared files were compared by size alone: an index rewritten with other dates, or a cutout replaced
    by another survey's, of the same size, never left the machine that changed it, and a copy that had
    the old one never took the new one. Each copy records what it last had in step with the bucket, so
    a file changed on either side since goes the right way, and a change on neither side sends nothing.
    Changes are told by the objects' ETags (their content), not by their times."""
    client, _ = s3_server
    builder = _copy(tmp_path, "builder", "stamps")
    write_synthetic_lake(builder.root, n=200)
    names = builder.root / "cache" / "names.json"
    names.parent.mkdir(parents=True, exist_ok=True)
    names.write_text('{"Abell 39": {"unknown_since": 1000000000.0}}')
    (builder.root / "cutouts" / "gz2").mkdir(parents=True)
    cutout = builder.root / "cutouts" / "gz2" / "587722981741363294.jpg"
    cutout.write_bytes(b"sdss picture")
    RemoteLake(builder).push()
    written = names.stat().st_mtime_ns
    RemoteLake(builder).pull(shared=remote.SHARED_FOR_BUILD)  # the next build's pull: in step, nothing to fetch
    assert names.stat().st_mtime_ns == written
    app = _copy(tmp_path, "app", "stamps")
    RemoteLake(app).pull(shared=remote.SHARED_FOR_BUILD)
    assert (app.root / "cache" / "names.json").read_text() == names.read_text()

    names.write_text('{"Abell 39": {"unknown_since": 1000086400.0}}')  # a re-ask: same size, new date
    cutout.write_bytes(b"legs picture")  # another survey's cutout, of the same size
    again = RemoteLake(builder)
    again.pull(shared=remote.SHARED_FOR_BUILD)  # as a build does first: nothing newer in the bucket
    assert names.read_text().endswith('1000086400.0}}')  # its own change is not overwritten
    republish_categories(builder, "v2")
    again.push()
    got = client.get_object(Bucket=BUCKET, Key="stamps/cache/names.json")["Body"].read().decode()
    assert got.endswith('1000086400.0}}')
    assert client.get_object(Bucket=BUCKET, Key="stamps/cutouts/gz2/587722981741363294.jpg")["Body"].read() == b"legs picture"
    RemoteLake(app).pull(shared=remote.SHARED_FOR_BUILD)
    assert (app.root / "cache" / "names.json").read_text().endswith('1000086400.0}}')
    assert (app.root / "cutouts" / "gz2" / "587722981741363294.jpg").read_bytes() == b"legs picture"
    republish_categories(builder, "v3")
    quiet, sent = RemoteLake(builder), []
    put = quiet._client.put_object
    quiet._client.put_object = lambda **request: sent.append(request["Key"]) or put(**request)
    quiet.push()
    # nothing changed on either side: no shared file sent again (the version's record and the pointer
    # are PUTs of their own)
    assert [k for k in sent if k.split("/")[1] in remote.SHARED_FOR_BUILD] == []


def test_a_build_that_another_builder_overtook_is_refused_not_lost(s3_server, tmp_path):
    """Two machines pull the same live version and build; the first pushes. The second push is refused
    with a message that says what happened and what to do: the first machine's version stays live."""
    client, _ = s3_server
    first = _copy(tmp_path, "first", "race")
    write_synthetic_lake(first.root, n=500)
    base = RemoteLake(first).push()
    machine_a, machine_b = _copy(tmp_path, "a", "race"), _copy(tmp_path, "b", "race")
    remote_a, remote_b = RemoteLake(machine_a), RemoteLake(machine_b)
    assert remote_a.pull(shared=remote.SHARED_FOR_BUILD) == remote_b.pull(shared=remote.SHARED_FOR_BUILD) == base
    republish_categories(machine_a, "a1")
    republish_categories(machine_b, "b1")
    assert remote_a.push() == "a1"
    with pytest.raises(RemoteLakeError, match=f"changed from {base} to a1 .*re-run it"):
        remote_b.push()
    assert _pointer(client, "race") == "a1"
    assert remote_b.pull(shared=remote.SHARED_FOR_BUILD) == "a1"  # the re-run builds on top of it
    republish_categories(machine_b, "b2")
    assert remote_b.push() == "b2"


def test_the_pointer_write_itself_refuses_a_builder_that_was_overtaken(s3_server, tmp_path):
    """The race push()'s check cannot see: another builder's pointer lands between that check and this
    builder's PUT. The PUT is conditional on the pointer this builder pulled (If-Match on its ETag;
    If-None-Match on an empty prefix), so the store refuses it and the other version stays live."""
    client, _ = s3_server
    for prefix, seed in (("window", True), ("window-empty", False)):
        if seed:
            first = _copy(tmp_path, f"{prefix}-first", prefix)
            write_synthetic_lake(first.root, n=300)
            RemoteLake(first).push()
        machine_a, machine_b = _copy(tmp_path, f"{prefix}-a", prefix), _copy(tmp_path, f"{prefix}-b", prefix)
        remote_a, remote_b = RemoteLake(machine_a), RemoteLake(machine_b)
        pulled = remote_a.pull(shared=remote.SHARED_FOR_BUILD)
        assert remote_b.pull(shared=remote.SHARED_FOR_BUILD) == pulled
        for layout, version in ((machine_a, "a1"), (machine_b, "b1")):
            if seed:
                republish_categories(layout, version)
            else:
                write_synthetic_lake(layout.root, n=300)
        assert remote_a.push() == machine_a.current_version()
        with pytest.raises(RemoteLakeError, match=f"changed from {pulled or 'nothing'} to .*re-run it"):
            remote_b._write_pointer(machine_b.current_version())  # the step after push()'s check
        assert _pointer(client, prefix) == machine_a.current_version()
    # a working copy that pushed pushes again on top of its own version without pulling
    republish_categories(machine_a, "a2")
    assert remote_a.push() == "a2" and _pointer(client, "window-empty") == "a2"


def test_a_pointer_put_that_went_through_and_was_retried_is_a_success(s3_server, tmp_path):
    """botocore retries a PUT that got a 5xx: when the first try had gone through, the retry's condition
    fails on this very write's pointer (412). That said "another builder pushed" while this build's
    version was live. A proxy lets the first conditional PUT of the pointer through and answers 500."""
    client, env = s3_server
    first = _copy(tmp_path, "retry-first", "retried")
    write_synthetic_lake(first.root, n=300)
    RemoteLake(first).push()
    lost: list[int] = []

    def intercept(request, body) -> bool:
        if request.command == "PUT" and request.path.split("?")[0].endswith(f"/retried/{POINTER}") \
                and "if-match" in {h.lower() for h in request.headers} and not lost:
            lost.append(request.forward(body)[0])  # through to the store; its answer lost on the way back
            request.answer(500, b"<Error><Code>InternalError</Code><Message>lost</Message></Error>",
                           [("Content-Type", "application/xml")])
            return True
        return False

    with _proxy(env["COSMIC_ATLAS_S3_ENDPOINT"], intercept) as proxy:
        builder = _copy(tmp_path, "retry-builder", "retried")
        remote_b = RemoteLake(builder, endpoint=proxy.url)
        remote_b.pull(shared=remote.SHARED_FOR_BUILD)
        republish_categories(builder, "r1")
        assert remote_b.push() == "r1"
    assert lost == [200] and _pointer(client, "retried") == "r1"


def test_a_version_without_its_manifest_in_the_bucket_is_not_pulled(s3_server, tmp_path):
    """A pull published whatever the bucket listed under the version the pointer names: with its manifest
    gone (files removed by hand, a copy that missed some), an app's copy published a version without one,
    and never pulled it again."""
    client, _ = s3_server
    source = _copy(tmp_path, "nomanifest-builder", "nomanifest")
    write_synthetic_lake(source.root, n=300)
    version = RemoteLake(source).push()
    client.delete_object(Bucket=BUCKET, Key=f"nomanifest/versions/{version}/manifest.json")
    server = _copy(tmp_path, "nomanifest-server", "nomanifest")
    with pytest.raises(RemoteLakeError, match="no manifest.json"):
        RemoteLake(server).pull()
    assert not server.version_dir(version).exists()


def _proxy(upstream_endpoint: str, intercept: Callable[[BaseHTTPRequestHandler, bytes], bool]):
    """An S3 proxy on 127.0.0.1 that forwards every request to ``upstream_endpoint`` unless ``intercept``
    (the request, its body) answers it itself and returns True."""
    import http.client
    from urllib.parse import urlsplit

    upstream = urlsplit(upstream_endpoint)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []  # pyarrow's uploads come chunked
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)

        def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding")}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            reply = conn.getresponse()
            answer = (reply.status, reply.getheaders(), reply.read())
            conn.close()
            return answer

        def answer(self, status: int, data: bytes, headers: list[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            length = str(len(data))
            for k, v in headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
                elif k.lower() == "content-length" and self.command == "HEAD":
                    length = v  # a HEAD's reply has no body but tells the object's size
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(data)

        def _forward(self) -> None:
            body = self._body()
            if not intercept(self, body):
                status, headers, data = self.forward(body)
                self.answer(status, data, headers)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        def log_message(self, *args) -> None:  # quiet, as moto's server is
            pass

    return local_http_server(Proxy)


@pytest.fixture
def store_without_conditional_writes(s3_server):
    """An S3 server that cannot write conditionally, as some S3-compatible stores cannot: a proxy that
    forwards every request to moto's server, except a PUT with ``If-Match`` or ``If-None-Match``, which it
    answers as those stores do (501 NotImplemented). Yields its endpoint and the list of the requests it
    refused."""
    refused: list[str] = []

    def intercept(request, _body) -> bool:
        if request.command == "PUT" and ({"if-match", "if-none-match"} & {h.lower() for h in request.headers}):
            refused.append(request.path)
            request.answer(501, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A '
                                b"header you provided implies functionality that is not implemented</Message></Error>",
                           [("Content-Type", "application/xml")])
            return True
        return False

    with _proxy(s3_server[1]["COSMIC_ATLAS_S3_ENDPOINT"], intercept) as server:
        yield server.url, refused


def test_a_store_without_conditional_writes_still_gets_the_pointer_after_the_check(
        store_without_conditional_writes, s3_server, tmp_path, caplog):
    """Where the store answers a conditional PUT with NotImplemented, the pointer is written plainly, with
    a warning that says so, and push()'s own check still refuses a builder that was overtaken."""
    endpoint, refused = store_without_conditional_writes
    client, _ = s3_server
    first = _copy(tmp_path, "first", "plain")
    remote_first = RemoteLake(first, endpoint=endpoint)
    assert remote_first.pull(shared=remote.SHARED_FOR_BUILD) is None  # an empty prefix
    write_synthetic_lake(first.root, n=300)
    with caplog.at_level(logging.WARNING, logger="lake.remote"):
        base = remote_first.push()
    assert _pointer(client, "plain") == base and len(refused) == 1  # If-None-Match, refused, then plain
    assert "cannot write conditionally" in caplog.text
    machine_a, machine_b = _copy(tmp_path, "a", "plain"), _copy(tmp_path, "b", "plain")
    remote_a, remote_b = RemoteLake(machine_a, endpoint=endpoint), RemoteLake(machine_b, endpoint=endpoint)
    assert remote_a.pull(shared=remote.SHARED_FOR_BUILD) == remote_b.pull(shared=remote.SHARED_FOR_BUILD) == base
    republish_categories(machine_a, "a1")
    republish_categories(machine_b, "b1")
    assert remote_a.push() == "a1" and len(refused) == 2  # If-Match on the pulled ETag, refused, then plain
    with pytest.raises(RemoteLakeError, match=f"changed from {base} to a1 .*re-run it"):
        remote_b.push()
    assert _pointer(client, "plain") == "a1"


def test_a_push_that_dies_leaves_the_old_version_live_and_the_next_one_resumes(s3_server, tmp_path, caplog):
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "resume")
    write_synthetic_lake(source.root, n=2_000)
    first = RemoteLake(source).push()
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")

    dying = RemoteLake(source)
    dying._fs = flaky = ResetsOnFile(dying._fs, under="/versions/v2/", nth=2)
    with pytest.raises(RemoteLakeError, match="connection reset"):
        dying.push()
    assert len(flaky.files) == 2 and _pointer(client, "resume") == first  # readers still get the whole old version
    other = _copy(tmp_path, "server", "resume")
    assert RemoteLake(other).pull() == first
    with caplog.at_level(logging.INFO, logger="lake.remote"):
        assert RemoteLake(source).push() == "v2"
    assert _pointer(client, "resume") == "v2"
    # five files in the new version: the categories table and the manifest remade (uploaded), the
    # hard-linked rest copied inside the bucket; the one the dead push finished is not sent again
    line = next(r.getMessage() for r in caplog.records if "versions/v2" in r.getMessage())
    sent, copied = map(int, re.search(r"(\d+) files uploaded, (\d+) copied in the bucket$", line).groups())
    assert sent + copied == 4 and sent <= 2 and copied <= 3, line
    assert RemoteLake(other).pull() == "v2"
    assert set(LakeReader(other).query("SELECT DISTINCT category FROM categories").category) == {"Galaxy"}
    assert other.current_version() == "v2" and other.version_dir(first).is_dir()  # the old one still readable


#: the seeds :func:`writes_its_seed` ran with, in order
SEEDS_RUN: list[int] = []


def writes_its_seed(ctx) -> StageResult:
    SEEDS_RUN.append(ctx.cfg.seed)
    ctx.writer.stage_file(ctx.layout.published / "made-by.txt", lambda p: p.write_text(str(ctx.cfg.seed)))
    return StageResult(items=1, manifest={"made_by": ctx.cfg.seed})


def test_a_build_whose_push_fails_keeps_its_stages_for_the_next_build(s3_server, tmp_path):
    """The build publishes into its working copy, then its push dies: the bucket keeps the old version,
    and the next build pulls that back. Its stages are not lost with it: the staging area outlives a
    failed push, so the next build reuses them, pushes, and only then lets the staging area go."""
    client, _ = s3_server
    layout = _copy(tmp_path, "builder", "kept")
    runner = Runner([Stage("made", writes_its_seed, lambda ctx: ctx.cfg.seed,
                           outputs=lambda lake: [lake.staged(lake.published / "made-by.txt")])])

    def settings(seed: int) -> BuildConfig:
        return BuildConfig(lake=layout, collections=["apod"], threads=1, progress=False, seed=seed)

    SEEDS_RUN.clear()
    first = runner.run(settings(1)).version
    assert _pointer(client, "kept") == first and not layout.staging.exists()
    real_of = RemoteLake.of.__func__

    def dies_pushing(cls, lake, **kwargs):
        remote_lake = real_of(cls, lake, **kwargs)
        remote_lake._fs = ResetsOnFile(remote_lake._fs, under="/versions/", nth=1)
        return remote_lake

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RemoteLake, "of", classmethod(dies_pushing))
        with pytest.raises(RemoteLakeError, match="connection reset.*stages are kept"):
            runner.run(settings(2))
    assert _pointer(client, "kept") == first and SEEDS_RUN == [1, 2]
    again = runner.run(settings(2))
    assert SEEDS_RUN == [1, 2] and again.stages["made"]["skipped"]  # reused, not run a third time
    assert _pointer(client, "kept") == again.version != first and not layout.staging.exists()
    reader = _copy(tmp_path, "reader", "kept")
    assert RemoteLake(reader).pull() == again.version
    assert (reader.published / "made-by.txt").read_text() == "2"
    assert manifest_io.read_if_exists(reader.manifest)["made_by"] == 2


def test_old_versions_leave_the_bucket_and_the_apps_copy_once_their_grace_is_over(s3_server, tmp_path, monkeypatch):
    """Pushes and pulls keep the newest three versions, as a local lake does; a version superseded less
    than the grace period ago stays (an app may still be pulling it)."""
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "prune")
    server = _copy(tmp_path, "server", "prune")
    write_synthetic_lake(source.root, n=500)
    pushed = [RemoteLake(source).push()]
    RemoteLake(server).pull()
    for version in ("v2", "v3", "v4"):
        republish_categories(source, version)
        pushed.append(RemoteLake(source).push())
        RemoteLake(server).pull()

    assert _versions_in_bucket(client, "prune") == sorted(pushed)  # all within the grace period
    monkeypatch.setattr(remote, "PRUNE_GRACE_SECONDS", 0.0)
    republish_categories(source, "v5")
    assert RemoteLake(source).push() == "v5"
    assert _versions_in_bucket(client, "prune") == ["v3", "v4", "v5"] and _pointer(client, "prune") == "v5"
    assert RemoteLake(server).pull() == "v5"
    assert sorted(p.name for p in server.versions.iterdir()) == ["v3", "v4", "v5"]
    assert set(LakeReader(server).query("SELECT DISTINCT category FROM categories").category) == {"Galaxy"}


def test_a_half_pushed_version_is_no_successor_and_leaves_after_the_grace(s3_server, tmp_path, monkeypatch):
    """A push that died leaves a version without its manifest (sent last). It used to count as a successor
    pushed "long ago", so the version before it left the bucket at once, seconds after it stopped being
    live; now it is skipped, and deleted itself once a later build's version has been there for the
    grace period, however new the live one is."""
    import time
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "half")
    write_synthetic_lake(source.root, n=300)
    first = RemoteLake(source).push()
    republish_categories(source, "v2")
    RemoteLake(source).push()
    client.put_object(Bucket=BUCKET, Key="half/versions/v3/entries.parquet", Body=b"half of a push that died")
    # and one from a builder whose clock is ahead: by name it came after every later version, and stayed
    client.put_object(Bucket=BUCKET, Key="half/versions/z9/entries.parquet", Body=b"another push that died")
    for version in ("v4", "v5"):
        republish_categories(source, version)
        RemoteLake(source).push()
    assert _versions_in_bucket(client, "half") == [first, "v2", "v3", "v4", "v5", "z9"]  # v2 was live seconds ago
    monkeypatch.setattr(remote, "PRUNE_GRACE_SECONDS", 2.0)
    time.sleep(3.5)  # v4 and v5 past the grace (the store's times are whole seconds); v6 will not be
    republish_categories(source, "v6")
    RemoteLake(source).push()
    assert _versions_in_bucket(client, "half") == ["v4", "v5", "v6"]  # the newest three whole ones



def test_versions_leave_the_bucket_in_the_order_they_went_live_not_by_name(s3_server, tmp_path, monkeypatch):
    """Run ids are start times on each builder's own clock. A version from a builder whose clock is
    behind (``a1``) sorts before last hour's; ordered by name, it was deleted the moment the next version
    went live (its "successor" long settled), while apps could still be pulling it. Ordered by the
    store's clock (when each manifest arrived), it stays, and the newest three as pushed are kept."""
    import time
    client, _ = s3_server
    source = _copy(tmp_path, "builder", "skew")
    write_synthetic_lake(source.root, n=300)
    monkeypatch.setattr(remote, "PRUNE_GRACE_SECONDS", 2.0)
    RemoteLake(source).push()
    for version in ("v2", "v3", "v4"):
        republish_categories(source, version)
        RemoteLake(source).push()
    time.sleep(3.5)  # all past the grace (the store's times are whole seconds)
    for version in ("a1", "v5"):
        republish_categories(source, version)
        assert RemoteLake(source).push() == version
    assert _versions_in_bucket(client, "skew") == ["a1", "v4", "v5"]


def test_a_builder_whose_clock_is_ahead_does_not_prune_what_apps_may_still_pull(s3_server, tmp_path, monkeypatch):
    """A version's age is measured on the store's clock, which dated its manifest: measured on a
    builder's clock an hour ahead, every version looked past its grace the moment it was pushed, and the
    version live until then left the bucket at once."""
    import datetime as dt
    import types

    class AnHourAhead(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) + dt.timedelta(hours=1)

    client, _ = s3_server
    source = _copy(tmp_path, "builder", "ahead")
    write_synthetic_lake(source.root, n=300)
    versions = [RemoteLake(source).push()]
    monkeypatch.setattr(remote, "dt", types.SimpleNamespace(datetime=AnHourAhead, timezone=dt.timezone))
    for version in ("v2", "v3", "v4"):
        republish_categories(source, version)
        versions.append(RemoteLake(source).push())
    assert _versions_in_bucket(client, "ahead") == sorted(versions)  # pushed seconds ago: all stay

    # a refused request's reply is dated by the store too (here: a bucket that is not there)
    store_now = RemoteLake(LakeLayout(tmp_path / "x", remote="s3://no-such-bucket/lake"))._store_now(newest=None)
    assert abs((store_now - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60
    # no reply at all: the newest manifest's time, never this machine's clock an hour ahead
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def head_bucket(self, **kwargs):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    lake = RemoteLake(source)
    monkeypatch.setattr(lake, "_client", Unreachable())
    newest = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert lake._store_now(newest=newest) == newest


def test_the_app_serves_a_lake_from_the_bucket(s3_server, tmp_path, monkeypatch):
    from app import create_app
    from services import EXTENSION

    source = _copy(tmp_path, "builder", "served")
    write_synthetic_lake(source.root, n=2_000)
    RemoteLake(source).push()
    monkeypatch.setenv("COSMIC_ATLAS_CACHE", str(tmp_path / "app-cache"))
    monkeypatch.setattr(remote, "POLL_SECONDS", 0.0)
    client = create_app(lake=f"s3://{BUCKET}/served").server.test_client()
    reply = client.get("/api/entry/1000-01-05")
    assert reply.status_code == 200, reply.data[:300]
    assert reply.get_json()["title"] == "Synthetic entry 4"
    assert (tmp_path / "app-cache" / "lakes" / BUCKET / "served" / "current" / "entries.parquet").is_file()
    # a new version pushed by a build elsewhere is picked up by the running app: downloaded in the
    # background (held here, as on a slow link) while the request that noticed it answers from the copy
    service = client.application.extensions[EXTENSION]
    service._remote._fs = held = HeldDownloads(service._remote._fs, under="/versions/v2/")
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")
    RemoteLake(source).push()
    assert client.get("/api/entry/1000-01-05").get_json()["categories"][0]["category"] == "Supernova"
    assert held.started.wait(30) and not service._remote.join_pull(0.1)
    held.release.set()
    assert service._remote.join_pull(60)
    assert service.version == "v2"  # opened by the pull's thread, before any request asked
    assert client.get("/api/entry/1000-01-05").get_json()["categories"][0]["category"] == "Galaxy"
    assert service.settle(60)  # the look that request started (POLL_SECONDS 0) ends with the test


def test_a_bad_bucket_is_a_clear_error(s3_server, tmp_path, monkeypatch):
    layout = LakeLayout(tmp_path / "x", remote="s3://no-such-bucket/lake")
    write_synthetic_lake(layout.root, n=10)
    with pytest.raises(RemoteLakeError, match="no-such-bucket.*COSMIC_ATLAS_S3_ENDPOINT"):
        RemoteLake(layout).push()
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        LakeLayout.at("s3://")
    # a bucket with no lake yet: the advice names the lake as the user does, not its working copy
    monkeypatch.setenv("COSMIC_ATLAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LakeMissingError, match=f"No Cosmic Atlas lake at s3://{BUCKET}/nothing-yet. Build it with "
                                               f"`python -m pipeline build --lake s3://{BUCKET}/nothing-yet`"):
        LakeReader.open(f"s3://{BUCKET}/nothing-yet")


@pytest.mark.slow
def test_a_real_build_to_s3_is_served_from_it_and_a_rebuild_elsewhere_reuses_the_bucket(s3_server, tmp_path,
                                                                                          monkeypatch):
    """The CLI builds into s3://; the dashboard, served by gunicorn as the Procfile serves it (two
    forked workers) on a third machine's cache, answers from that lake: search, an entry, a thumbnail;
    a second machine (empty cache) rebuilds with nothing to redo."""
    client, env = s3_server
    base = ["build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--start", "2014-01-01",
            "--end", "2014-01-20", "--lake", f"s3://{BUCKET}/apod"]
    first = run_cli(*base, env=env | {"COSMIC_ATLAS_CACHE": str(tmp_path / "machine-a")})
    assert first.returncode == 0, first.stderr[-3000:]
    version = _pointer(client, "apod")
    keys = _keys(client, f"apod/versions/{version}/")
    assert any(k.endswith("entries.parquet") for k in keys) and any("/vectors/" in k for k in keys)
    assert any(k.startswith("apod/cache/") for k in _keys(client, "apod/cache/"))  # embeddings travel too
    # served on the builder's machine, from a working copy of its own (a build publishes into its copy
    # before it pushes: an app sharing it switched `current` back under the build)
    with serve_dashboard(f"s3://{BUCKET}/apod", log=tmp_path / "server.log", workers=2,
                         env={"COSMIC_ATLAS_CACHE": str(tmp_path / "machine-a")}) as url:
        def get(path: str) -> bytes:
            with urllib.request.urlopen(url + path, timeout=30) as reply:
                return reply.read()

        for _ in range(4):  # several requests, answered by either forked worker
            hits = json.loads(get("/api/search?q=comet+in+the+night+sky&has_image=true&k=3"))["results"]
            assert len(hits) == 3 and all(h["picture"]["kind"] == "lake" for h in hits)
        entry = json.loads(get(f"/api/entry/{hits[0]['date']}"))
        assert entry["title"] == hits[0]["title"] and entry["categories"]
        thumb = hits[0]["picture"]["src"]
        assert get(thumb) == client.get_object(Bucket=BUCKET, Key=f"apod{thumb}")["Body"].read()
        assert b"Cosmic Atlas" in get("/")
    for copy in ("builds", "lakes"):  # the build's working copy and the app's, apart
        assert (tmp_path / "machine-a" / copy / BUCKET / "apod" / "current" / "manifest.json").is_file(), copy
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    second = run_cli(*base, env=env | {"COSMIC_ATLAS_CACHE": str(tmp_path / "machine-b")})
    assert second.returncode == 0, second.stderr[-3000:]
    copy_b = tmp_path / "machine-b" / "builds" / BUCKET / "apod" / "current" / "manifest.json"
    rebuilt = json.loads(copy_b.read_text())
    assert set(rebuilt["newly_embedded"].values()) == {0}  # the pulled caches made it a no-op
    assert all(rebuilt["stages"][s]["skipped"] for s in ("embed", "project", "cluster"))
    assert _pointer(client, "apod") == rebuilt["run_id"] != version
    monkeypatch.setenv("COSMIC_ATLAS_CACHE", str(tmp_path / "reader"))
    assert LakeReader.open(f"s3://{BUCKET}/apod").count("entries") == 20


def test_the_app_lists_the_shared_folders_again_only_when_the_pointer_moves(s3_server, tmp_path):
    """A version's thumbnails are pushed before its pointer: while the pointer stays, an app's look every
    30 s does not list the thumbnail folder again (100k objects at scale); a new version brings new ones."""
    client, _ = s3_server
    source, server, app = _pushed_and_pulled(tmp_path, "shared-poll", n=500)
    client.put_object(Bucket=BUCKET, Key="shared-poll/thumbs/1000-01-01.jpg", Body=b"a thumbnail")
    app.pull()
    assert not (server.root / "thumbs" / "1000-01-01.jpg").exists()  # the pointer did not move
    republish_categories(LakeLayout(source.root, remote=source.remote), "v2")
    RemoteLake(source).push()
    assert app.pull() == "v2"
    assert (server.root / "thumbs" / "1000-01-01.jpg").read_bytes() == b"a thumbnail"
