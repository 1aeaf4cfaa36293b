"""Versioned publishing: a reader sees one whole build, the server follows new builds, old or foreign
lakes get a message that says what to do. Real Parquet files, real DuckDB, real Flask app; no builds."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from lake.layout import LakeLayout
from lake.manifest import LakeMissingError, LakeNewerError
from lake.reader import LakeReader
from lake.schema import SCHEMAS
from lake.writer import LakeBusyError, LakeWriter
from tests.conftest import in_threads

DAYS = [dt.date(2001, 1, 1) + dt.timedelta(days=i) for i in range(5)]


def _tables(tag: str) -> dict[str, pa.Table]:
    """Entries and categories that both carry ``tag``: a reader mixing two builds would see two tags."""
    entries = [{"date": d, "title": f"{tag} entry {i}", "explanation": tag, "media_type": "image", "has_image": False,
                "year": d.year, "source": "test", "content_sha1": tag} for i, d in enumerate(DAYS)]
    cats = [{"date": d, "source": "text", "category": tag, "confidence": 0.9, "top3_categories": [tag] * 3,
             "top3_scores": [0.9, 0.05, 0.05]} for d in DAYS]
    return {"entries": pa.Table.from_pylist(entries, schema=SCHEMAS["entries"]),
            "categories": pa.Table.from_pylist(cats, schema=SCHEMAS["categories"]),
            "objects": SCHEMAS["objects"].empty_table()}


def _publish(layout: LakeLayout, tag: str) -> None:
    LakeWriter(layout).publish_tables(_tables(tag), {"taxonomy": {"categories": [tag]}, "tag": tag}, version=tag)


def _tags(reader: LakeReader) -> set[str]:
    got = reader.query("SELECT DISTINCT e.explanation AS t FROM entries e UNION SELECT DISTINCT category FROM categories")
    return set(got.t) | {reader.manifest["tag"]}


def test_publish_switches_whole_versions_and_pinned_readers_keep_theirs(tmp_path):
    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "v1")
    first = LakeReader(layout)
    _publish(layout, "v2")
    assert _tags(first) == {"v1"}  # pinned: the old reader still answers from its own build, whole
    assert _tags(LakeReader(layout)) == {"v2"} and layout.current_version() == "v2"
    assert (layout.root / "current").is_symlink()


def test_a_reader_during_publishes_never_sees_two_builds(tmp_path):
    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "v00")
    seen: list[set[str]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(_tags(LakeReader(layout)))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(1, 25):
        _publish(layout, f"v{i:02d}")
        # the reader keeps reading while the next publish runs; this wait only makes sure it got a turn
        # since this one (without it, how many versions it saw depended on the thread scheduler)
        read_so_far, deadline = len(seen), time.monotonic() + 30
        while len(seen) == read_so_far and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
    done.set()
    reader.join(timeout=30)
    assert not errors, errors[:1]
    assert all(len(tags) == 1 for tags in seen), [t for t in seen if len(t) != 1][:3]
    assert len({next(iter(t)) for t in seen}) >= 20  # it really read across the publishes


def test_old_versions_are_pruned_and_unchanged_files_are_hard_links(tmp_path):
    layout = LakeLayout.at(tmp_path / "lake")
    for tag in ("a1", "a2", "a3", "a4", "a5"):
        _publish(layout, tag)
    names = sorted(p.name for p in layout.versions.iterdir())
    assert names == ["a1", "a2", "a3", "a4", "a5"]  # superseded moments ago: still readable (grace period)
    assert LakeWriter(layout).prune(keep=3, grace_seconds=0) == ["a1", "a2"]
    assert sorted(p.name for p in layout.versions.iterdir()) == ["a3", "a4", "a5"]
    writer = LakeWriter(layout)
    with writer.locked():  # a build that remakes only the entries table
        writer.stage_table("entries", _tables("a6")["entries"])
        writer.publish({"tag": "a6"}, version="a6")
    new, old = layout.version_dir("a6"), layout.version_dir("a5")
    assert (new / "categories.parquet").stat().st_ino == (old / "categories.parquet").stat().st_ino
    assert (new / "entries.parquet").stat().st_ino != (old / "entries.parquet").stat().st_ino



def test_versions_are_pruned_in_the_order_they_were_published_not_by_name(tmp_path):
    """Run ids are start times on the builder's clock: a version from a machine whose clock is behind
    sorts before older ones. Ordered by name, the version live until a moment ago counted as superseded
    by one published long ago and went at once; ordered as published, it stays for the grace period."""
    import os
    import time

    layout = LakeLayout.at(tmp_path / "lake")
    for tag in ("v1", "v2", "v3", "v4"):
        _publish(layout, tag)
    for i, tag in enumerate(("v1", "v2", "v3", "v4")):  # published an hour ago, a minute apart
        when = time.time() - 3600 + 60 * i
        os.utime(layout.version_dir(tag), (when, when))
    _publish(layout, "a0")  # a clock behind: the newest version sorts first
    _publish(layout, "v5")  # (each publish prunes, with the 5-minute grace)
    # the newest three as published. By name, a0, live until a moment ago, was the oldest and went at
    # once (its "successor" v2 an hour old), and v3 stayed as one of the "newest"
    assert sorted(p.name for p in layout.versions.iterdir()) == ["a0", "v4", "v5"]
    _publish(layout, "v6")
    assert sorted(p.name for p in layout.versions.iterdir()) == ["a0", "v4", "v5", "v6"]  # v4: a0 is new
    assert LakeWriter(layout).prune(keep=3, grace_seconds=0) == ["v4"]
    assert layout.current_version() == "v6"

def test_a_replaced_picture_gets_a_thumbnail_of_its_own_and_the_old_one_goes_with_its_last_version(tmp_path):
    """Thumbnails are named by their content: a build meeting a picture NASA replaced writes a new file,
    so the live version shows its own picture until the switch (before, the new picture overwrote the
    old one in place, beside the old picture's vectors); a file goes once no kept version names it."""
    from PIL import Image

    from atlas.images import ImageLimits
    from pipeline.images import attach_images

    layout, picture, index = LakeLayout.at(tmp_path / "lake"), tmp_path / "p.png", {}

    def images(colour: tuple[int, int, int]) -> dict:
        nonlocal index
        Image.new("RGB", (64, 48), colour).save(picture)
        rows = [{"date": DAYS[0], "media_type": "image", "image_file": str(picture), "source": "bundled"}]
        index, _ = attach_images(rows, layout, ImageLimits(thumb_size=32), index=index, progress=False)
        return rows[0]

    def publish(tag: str, row: dict) -> None:
        tables = _tables(tag)
        entries = tables["entries"].to_pylist()
        entries[0] |= {k: row[k] for k in ("has_image", "image_path", "image_width", "image_height", "image_sha1")}
        tables["entries"] = pa.Table.from_pylist(entries, schema=SCHEMAS["entries"])
        LakeWriter(layout).publish_tables(tables, {"tag": tag}, version=tag)

    legacy = layout.thumbs / f"{DAYS[0]}.jpg"  # a thumbnail named by its date, from before, which no version names
    red = images((200, 0, 0))
    legacy.write_bytes((layout.root / red["image_path"]).read_bytes())
    publish("b1", red)
    assert not legacy.exists()
    shown = (layout.root / red["image_path"]).read_bytes()
    blue = images((0, 0, 200))  # the next build meets the replaced picture...
    assert blue["image_path"] != red["image_path"] and blue["image_sha1"] != red["image_sha1"]
    live = LakeReader.open(layout.root).query("SELECT image_path FROM entries WHERE has_image").image_path[0]
    assert (layout.root / live).read_bytes() == shown  # ...and the live version still shows its own
    for tag in ("b2", "b3", "b4"):
        publish(tag, images((0, 0, 200)))  # the same picture: the same file
    assert sorted(p.name for p in layout.thumbs.iterdir()) == sorted(
        [Path(red["image_path"]).name, Path(blue["image_path"]).name])  # b1 is in its grace period
    assert LakeWriter(layout).prune(keep=3, grace_seconds=0) == ["b1"]
    assert [p.name for p in layout.thumbs.iterdir()] == [Path(blue["image_path"]).name]


def test_a_staged_removal_leaves_a_file_or_vector_table_out_of_the_next_version(tmp_path):
    """The publish step carries over what a build did not remake; a stage that ran and had nothing for a
    file or a LanceDB table (no picture left) marks it removed, and the new version has none of it."""
    import numpy as np

    from lake import vectors

    layout = LakeLayout.at(tmp_path / "lake")
    writer = LakeWriter(layout)
    with writer.locked():
        writer.stage_table("entries", _tables("r1")["entries"])
        writer.stage_table("categories", _tables("r1")["categories"])
        writer.stage_arrays(layout.align_head, {"w": np.eye(2, dtype=np.float32)})
        vectors.write_table(layout.staged(layout.vectors), "image", [d.isoformat() for d in DAYS],
                            np.eye(5, 4, dtype=np.float32), titles=["t"] * 5, years=[2001] * 5,
                            categories=[None] * 5, has_image=[True] * 5)
        writer.publish({"tag": "r1"}, version="r1")
    image = Path(vectors.table_uri(layout.version_dir("r1") / "vectors", "image"))
    assert image.is_dir() and (layout.version_dir("r1") / "models" / "align_head.npz").is_file()
    with writer.locked():
        writer.stage_table("entries", _tables("r2")["entries"])
        writer.stage_removal(layout.align_head)
        writer.stage_removal(Path(vectors.table_uri(layout.vectors, "image")))
        writer.publish({"tag": "r2"}, version="r2")
    r2 = layout.version_dir("r2")
    assert not (r2 / "models" / "align_head.npz").exists() and not (r2 / "vectors").exists()
    assert (r2 / "categories.parquet").is_file()  # what nothing remade or removed is carried over as before
    assert not any(p.name.endswith(".removed-by-build") for p in r2.rglob("*"))


def test_a_lake_copied_without_its_time_stamps_prunes_its_versions_in_the_order_they_were_published(tmp_path):
    """A plain ``cp -r`` stamps every folder with the time of the copy, in whatever order it copied them:
    ordered by that, prune removed the versions copied last, whichever they were. Each version's
    manifest carries its place in the lake's line of versions, which the copy keeps."""
    import os
    import shutil

    from lake.writer import published_sequence

    layout = LakeLayout.at(tmp_path / "lake")
    for tag in ("c1", "c2", "c3", "c4"):
        _publish(layout, tag)
    assert [published_sequence(layout.version_dir(t)) for t in ("c1", "c2", "c3", "c4")] == [1, 2, 3, 4]
    copy = LakeLayout.at(tmp_path / "copy")
    shutil.copytree(layout.root, copy.root, symlinks=True)  # what cp -r does to the times: the copy's
    for i, tag in enumerate(("c4", "c3", "c2", "c1")):  # copied newest first: c1 looks the newest
        when = time.time() - 600 + 60 * i
        os.utime(copy.version_dir(tag), (when, when))
    _publish(copy, "c5")  # which prunes what has been superseded for 5 minutes: by their stamps, c4 and c3
    assert published_sequence(copy.version_dir("c5")) == 5
    assert sorted(p.name for p in copy.versions.iterdir()) == ["c3", "c4", "c5"]


def test_a_build_killed_while_publishing_keeps_its_staged_work(tmp_path, monkeypatch):
    """Killed after the new version's files were gathered but before the switch: the old version stays
    live, and the staging area stays whole (its tables and resume records), so the next publish makes
    the staged tables live, not the previous version's."""
    from lake import atomic

    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "b1")
    writer = LakeWriter(layout)
    with writer.locked():
        writer.stage_table("entries", _tables("b2")["entries"])
        writer.save_staged_manifest({"stages": {"entries": {"input_hash": "h2"}}})

        def killed(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(atomic, "fsync_tree", killed)
        with pytest.raises(KeyboardInterrupt):
            writer.publish({"tag": "b2"}, version="b2")
        monkeypatch.undo()
        assert layout.current_version() == "b1"
        assert layout.staged_table("entries").is_file()
        assert writer.staged_manifest()["stages"] == {"entries": {"input_hash": "h2"}}
        writer.publish({"tag": "b2"}, version="b2b")
    got = LakeReader(layout).query("SELECT DISTINCT explanation AS t FROM entries")
    assert got.t.tolist() == ["b2"] and not layout.staging.exists()


def test_a_version_killed_before_its_switch_is_removed_and_takes_no_kept_place(tmp_path, monkeypatch):
    """Killed between naming its version folder and switching ``current``: no reader ever saw that
    version. Left in place it counted as one of the three kept versions, so the lake kept one version
    fewer to roll back to; the next publish removes it."""
    from lake import atomic

    layout = LakeLayout.at(tmp_path / "lake")
    for tag in ("k1", "k2", "k3"):
        _publish(layout, tag)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "switch_symlink", killed)
    with pytest.raises(KeyboardInterrupt):
        _publish(layout, "k4")
    monkeypatch.undo()
    assert layout.version_dir("k4").is_dir() and layout.current_version() == "k3"
    _publish(layout, "k5")
    assert sorted(p.name for p in layout.versions.iterdir()) == ["k1", "k2", "k3", "k5"]
    assert LakeWriter(layout).prune(keep=3, grace_seconds=0) == ["k1"]  # k2 and k3 stay, to roll back to
    assert _tags(LakeReader(layout)) == {"k5"}


def test_temporary_files_that_killed_writers_left_are_swept_once_they_are_old(tmp_path):
    """An atomic write cut short leaves its ``.tmp-*`` file beside the lake's caches, thumbnails or
    cutouts, which outlive versions: nothing read or removed them. A build sweeps those older than an
    hour; younger ones may be another writer's, still being filled."""
    import os

    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "t1")
    old = [layout.cache / "embeddings" / "tower" / "text" / ".tmp-chunk-0001.npy-x1",
           layout.thumbs / ".tmp-2001-01-01-abc.jpg-y2",
           layout.cutouts / ".tmp-587722981741363294.jpg-z3",
           layout.cache / "models" / ".trash-trace-1a2b" / "model.pt"]
    fresh = layout.thumbs / ".tmp-2001-01-02-def.jpg-w4"
    kept = [layout.cutouts / "587722981741363294.jpg", layout.cache / "embeddings" / "tower" / "text" / "chunk.npy"]
    for path in [*old, fresh, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    hour_ago = time.time() - 3700
    for path in [*old, old[-1].parent, *kept]:
        os.utime(path, (hour_ago, hour_ago))
    _publish(layout, "t2")
    assert not any(p.exists() for p in old) and not old[-1].parent.exists()
    assert fresh.exists() and all(p.exists() for p in kept)


def test_one_writer_at_a_time(tmp_path):
    layout = LakeLayout.at(tmp_path / "lake")
    with LakeWriter(layout).locked():
        with pytest.raises(LakeBusyError, match="another build is writing"):
            with LakeWriter(layout).locked():
                pass


def test_missing_old_and_foreign_schema_lakes_say_what_to_do(tmp_path):
    layout = LakeLayout.at(tmp_path / "none")
    with pytest.raises(LakeMissingError, match="python -m pipeline build --lake"):
        LakeReader(layout)
    legacy = LakeLayout.at(tmp_path / "legacy")
    legacy.root.mkdir()
    (legacy.root / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(LakeMissingError, match="older Cosmic Atlas"):
        LakeReader(legacy)
    other = LakeLayout.at(tmp_path / "other")
    _publish(other, "s1")
    manifest = other.manifest
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"schema_version": 999}))
    with pytest.raises(LakeNewerError, match=r"newer Cosmic Atlas \(schema version 999.*upgrade Cosmic Atlas"):
        LakeReader(other)  # a lake from a newer release: this code is what must change, not the lake
    with pytest.raises(LakeNewerError, match="--force"):
        LakeWriter(other).live_manifest()  # a build of this version would replace it with an older kind
    assert LakeWriter(other).live_manifest(replace_newer=True) is None  # --force: rebuilt whole
    manifest.write_text('{"schema_version": 3, "torn')  # not written by a build (they write atomically)
    with pytest.raises(LakeMissingError, match="unreadable manifest"):
        LakeReader(other)
    assert LakeWriter(other).live_manifest() is None  # a build rebuilds it whole


def test_a_folder_removal_cut_short_never_leaves_a_half_folder_under_its_name(tmp_path, monkeypatch):
    """A resumed build takes a staged folder that exists for finished output: removal renames it aside
    first, so a removal killed midway leaves only a hidden leftover, deleted by the next removal."""
    import shutil

    from lake import atomic

    staged = tmp_path / "vectors"
    (staged / "data").mkdir(parents=True)
    for i in range(5):
        (staged / "data" / f"{i}.lance").write_bytes(b"x")
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):  # the process dies after deleting one file
        next(Path(path).rglob("*.lance")).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic.remove_tree(staged)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert not staged.exists()  # never half there under its own name
    leftovers = list(tmp_path.glob(".trash-vectors-*"))
    assert len(leftovers) == 1 and len(list(leftovers[0].rglob("*.lance"))) == 4
    staged.mkdir()
    atomic.remove_tree(staged)
    assert list(tmp_path.iterdir()) == []


def test_the_server_follows_a_newly_published_lake(tmp_path):
    from app import create_app

    layout = LakeLayout.at(tmp_path / "lake")
    client = create_app(lake=layout.root).server.test_client()
    missing = client.get(f"/api/entry/{DAYS[0]}")
    assert missing.status_code == 503 and "python -m pipeline build" in missing.get_json()["error"]
    assert str(tmp_path) not in missing.get_json()["error"]  # no server paths to clients: named by its setting
    assert "$COSMIC_ATLAS_LAKE" in missing.get_json()["error"]
    _publish(layout, "first")
    assert client.get(f"/api/entry/{DAYS[0]}").get_json()["title"] == "first entry 0"
    _publish(layout, "second")
    assert client.get(f"/api/entry/{DAYS[0]}").get_json()["title"] == "second entry 0"
    manifest = layout.manifest
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"schema_version": 0}))
    _publish(layout, "third")  # a good build after a bad one: served again
    assert client.get(f"/api/entry/{DAYS[1]}").get_json()["title"] == "third entry 1"


def test_one_request_reads_one_version_while_a_build_publishes(tmp_path):
    """Everything a request reads comes from the version its first call got: a view cached under a
    version was made from that version (it was cached under the old version's key with the new one's
    content when a publish fell between the key and the view), and pages that ask twice see one build."""
    from app import create_app
    from pages._common import atlas, by_lake_version, galaxies
    from services import EXTENSION

    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "v1")
    app = create_app(lake=layout.root)
    service = app.server.extensions[EXTENSION]
    built: list[str] = []

    @by_lake_version()
    def view(n: int) -> tuple[str, str]:
        if not built:
            _publish(layout, "v2")  # a build publishes while the view is made
        built.append(atlas().reader.version)
        return atlas().reader.version, galaxies().reader.version

    with app.server.test_request_context():
        assert view(1) == ("v1", "v1") and service.version == "v1"
        assert service.atlas().reader.version == "v1"
    with app.server.test_request_context():
        assert view(1) == ("v2", "v2")  # the next request: the new version, and its own cache entry
        assert view(1) == ("v2", "v2") and built == ["v1", "v2"]
        assert view.cache_info().currsize == 1  # the version before's view is let go at once
    assert service.atlas().reader.version == "v2" == service.version  # outside a request: the live one


def test_the_served_version_is_read_under_the_lock(tmp_path):
    """A request waiting for the service's lock reads the pointer once it has it: read before, one that
    read the old version and got the lock after another request opened the new one switched the worker
    back to the old version."""
    from concurrent.futures import ThreadPoolExecutor

    from app import create_app
    from services import EXTENSION

    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "v1")
    service = create_app(lake=layout.root).server.extensions[EXTENSION]
    assert service.atlas().reader.version == "v1"
    with ThreadPoolExecutor(1) as pool:
        with service._lock:
            waiting = pool.submit(lambda: service.atlas().reader.version)
            time.sleep(0.3)  # it is waiting for the lock now
            _publish(layout, "v2")
        assert waiting.result(timeout=30) == "v2" == service.version


def test_a_serving_worker_warms_each_new_version_and_lets_go_of_what_it_no_longer_uses(demo_lake, tmp_path):
    """A worker that warmed up (as gunicorn's do) warms a new version in the background as soon as it
    sees it: a version built with the same model takes the loaded encoders over (no second load), and the
    encoders of a model the new version does not use are let go (they were kept for the process's life).
    The objects the warm-up froze out of the collector's reach are let back and frozen again, so the
    version before's are collected, not kept for good."""
    import gc
    import os
    import shutil
    import weakref

    from PIL import Image

    from app import create_app
    from services import EXTENSION, freeze_warm_objects
    from tests.conftest import republish_categories

    shutil.copytree(demo_lake, tmp_path / "lake", symlinks=True, copy_function=os.link)
    layout = LakeLayout.at(tmp_path / "lake")
    service = create_app(lake=layout.root).server.extensions[EXTENSION]
    service.warm()
    first = weakref.ref(service.atlas())
    freeze_warm_objects()  # as services.prepare_worker leaves a worker
    try:
        loaded = dict(service._encoders)
        assert loaded  # the text query encoder (the galaxy pictures' too: one model here)

        republish_categories(layout, "same-model")
        assert service.atlas().reader.version == "same-model"
        assert service.settle(300)
        assert {k: id(v) for k, v in service._encoders.items()} == {k: id(v) for k, v in loaded.items()}
        assert not service._encoders_before
        assert first() is None and gc.get_freeze_count() > 0  # gone, and the new version frozen
        gc.unfreeze()  # what stayed frozen as garbage: 3,500–4,500 objects of the demo lake's version before
        assert gc.collect() < 100  # when the warm-up's thread froze the new version over the old one's
        gc.freeze()

        gone = [weakref.ref(encoder) for encoder in loaded.values()]
        del loaded
        still_on_it = service.galaxies()  # a request on this version, still running after the next switch
        manifest = json.loads(layout.manifest.read_text())
        other = {"encoder": manifest["encoder"] | {"fingerprint": "another-model"},
                 "gz2": manifest["gz2"] | {"encoder": manifest["gz2"]["encoder"] | {"fingerprint": "another-model"}}}
        republish_categories(layout, "another-model", manifest=other)
        assert service.engine().reader.version == "another-model"
        assert service.settle(300)
        assert not service._encoders and not service._encoders_before  # that model does not load here: none kept
        assert all(ref() is None for ref in gone)
        # the request on the version before finishes: served by a model loaded for it alone, which does not
        # come back into the new version's set (it stayed there for the new version's life)
        assert len(still_on_it.similar_to_picture(Image.new("RGB", (64, 64)), k=3).galaxies) == 3
        assert not service._encoders and not service._encoders_before
    finally:
        gc.unfreeze()


def test_the_app_reports_a_lake_of_another_schema_version(tmp_path):
    from app import create_app

    layout = LakeLayout.at(tmp_path / "lake")
    _publish(layout, "v1")
    manifest = layout.manifest
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"schema_version": 0}))
    reply = create_app(lake=layout.root).server.test_client().get(f"/api/entry/{DAYS[0]}")
    assert reply.status_code == 503 and "must be rebuilt" in reply.get_json()["error"]


def test_staged_vectors_are_read_from_memory_until_their_file_changes(tmp_path):
    """Later stages read a staged matrix many times: from memory, read-only, and never a stale copy."""
    import numpy as np

    layout = LakeLayout.at(tmp_path / "lake")
    writer, other = LakeWriter(layout), LakeWriter(layout)
    dates = [d.isoformat() for d in DAYS]
    first = np.arange(20, dtype=np.float64).reshape(5, 4)
    writer.stage_vectors("text", dates, first)
    got_dates, got = writer.read_vectors("text")
    assert got_dates == dates and got.dtype == np.float32 and np.array_equal(got, first)
    assert writer.read_vectors("text")[1] is got and not got.flags.writeable
    with pytest.raises(ValueError):
        got[0, 0] = 1.0
    other.stage_vectors("text", dates[:2], np.ones((2, 4)))  # the file replaced by someone else
    assert writer.read_vectors("text")[0] == dates[:2] and np.array_equal(writer.read_vectors("text")[1], np.ones((2, 4)))
    writer.discard_staging()  # nothing staged: nothing published either
    assert writer.read_vectors("text")[0] == []


def test_publish_tree_keeps_the_first_complete_copy_and_switch_symlink_races(tmp_path):
    """Two processes publishing one folder (each from its own copy): the first rename publishes it and
    the second copy is dropped; two workers switching `current` at once both succeed."""
    from lake import atomic

    target = tmp_path / "versions" / "v1"
    target.parent.mkdir()
    copies = []
    for worker in ("a", "b"):
        staged = tmp_path / "versions" / f".tmp-pull-v1-{worker}"
        staged.mkdir()
        (staged / "manifest.json").write_text(worker)
        copies.append(staged)
    assert [atomic.publish_tree(c, target) for c in copies] == [True, False]
    assert (target / "manifest.json").read_text() == "a" and not any(c.exists() for c in copies)
    link = tmp_path / "current"

    def switch(_: int) -> None:
        for _ in range(200):
            atomic.switch_symlink(link, target)

    errors = in_threads(switch, 4)
    assert errors == [] and link.resolve() == target.resolve()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_abandoned_pull_folders_are_removed_and_live_ones_kept(tmp_path):
    """A worker killed mid-pull leaves its temporary folder; the next pull removes it once it has been
    idle an hour, and never a folder another worker is still filling."""
    import os
    import time

    import fcntl

    from lake.remote import ABANDONED_PULL_SECONDS, pull_lock, remove_abandoned_pulls

    old, live = tmp_path / ".tmp-pull-v1-dead", tmp_path / ".tmp-pull-v1-busy"
    for folder in (old, live):
        (folder / "vectors").mkdir(parents=True)
        (folder / "vectors" / "part.lance").write_bytes(b"x")
    stale = time.time() - ABANDONED_PULL_SECONDS - 60
    for p in (old, old / "vectors", old / "vectors" / "part.lance"):
        os.utime(p, (stale, stale))
    os.utime(live, (stale, stale))  # an old folder with a file written just now is still being filled
    (tmp_path / "20260101T000000Z").mkdir()  # a published version is never touched
    resumed = tmp_path / ".tmp-pull-v2"  # idle for an hour, but a pull holds its lock: it is resuming it
    resumed.mkdir()
    os.utime(resumed, (stale, stale))
    with open(pull_lock(tmp_path, "v2"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_abandoned_pulls(tmp_path) == [old.name]
    assert live.is_dir() and not old.exists() and (tmp_path / "20260101T000000Z").is_dir() and resumed.is_dir()
    assert remove_abandoned_pulls(tmp_path) == [resumed.name]  # the lock released: abandoned after all
    locks = {p.name for p in tmp_path.glob(".pull-*.lock")}
    assert locks == {".pull-v1-busy.lock"}  # the removed folders' lock files went with them


def test_a_pull_lock_unlinked_by_its_holder_is_held_by_one_process_at_a_time(tmp_path, monkeypatch):
    """The holder of a pull lock unlinks its file when done. A worker that was waiting on that file
    then held a lock on a file no path names, while a worker that came after the unlink locked a new
    file at the same path: both "held" the lock and would fill one folder at once. The waiter now
    takes the lock again on the path's file, so the latecomer finds it held."""
    import fcntl

    from lake.remote import holding, pull_lock

    lock = pull_lock(tmp_path, "v1")
    about_to_wait, holds, done = threading.Event(), threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd, operation):  # the waiter has opened the file when it asks for the lock
        if threading.current_thread().name == "waiter":
            about_to_wait.set()
        return real_flock(fd, operation)

    def waiter() -> None:
        with holding(lock, wait=True) as held:
            assert held
            holds.set()
            done.wait(30)

    monkeypatch.setattr(fcntl, "flock", flock)
    with holding(lock, wait=True) as first:
        assert first
        worker = threading.Thread(target=waiter, name="waiter")
        worker.start()
        assert about_to_wait.wait(30)
        time.sleep(0.2)
        assert not holds.is_set()  # it waits on the file it opened
        lock.unlink()  # as a finished pull does, still holding it
    assert holds.wait(30)
    with holding(lock, wait=False) as latecomer:
        assert not latecomer  # the waiter holds the path's lock, not a lock on an unlinked file
    done.set()
    worker.join(30)
    with holding(lock, wait=False) as after:
        assert after


def test_whole_vector_tables_are_read_as_lancedb_reads_them(tmp_path):
    """A build reads a local vector table with pylance, not LanceDB (whose import costs ≈ 1 s): the same
    rows in the same order, also after the table was replaced by a later commit."""
    import numpy as np

    from lake import vectors

    rng = np.random.default_rng(4)
    db = tmp_path / "vectors"
    for n in (5, 7):  # the second write replaces the table in a new version
        dates = [f"2001-02-{i + 1:02d}" for i in range(n)][::-1]
        matrix = rng.standard_normal((n, 6)).astype(np.float32)
        vectors.write_table(db, "image", dates, matrix, titles=["t"] * n, years=[2001] * n,
                            categories=[None] * n, has_image=[True] * n)
    got_dates, got = vectors.read_vectors(db, "image")
    want = vectors.open_table(db, "image").to_arrow()
    assert got_dates == want.column("date").to_pylist() == dates
    assert np.array_equal(got, vectors.matrix(want.column("vector"))) and np.array_equal(got, matrix)
    with pytest.raises(KeyError, match="not in"):
        vectors.read_vectors(db, "title")


def _archive_table(kind: str, n: int, *, seed: int = 5, bodies: bool = False) -> pa.Table:
    """A vector table of ``n`` days with distinct, word-rich texts (so BM25 has statistics to get wrong)."""
    import numpy as np

    from lake import vectors

    rng = np.random.default_rng(seed)
    words = ["nebula", "comet", "aurora", "eclipse", "galaxy", "saturn", "rings", "moon", "dust", "star"]
    dates = [(dt.date(2001, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(n)]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 30)))) for _ in range(n)]
    return vectors.vector_table(kind, dates, rng.standard_normal((n, 16)).astype(np.float32), titles=texts,
                                years=[2001] * n, categories=[words[i % 3] for i in range(n)],
                                has_image=[i % 2 == 0 for i in range(n)], bodies=texts if bodies else None)


def _assert_same_bm25_ranking(got_table, want_table, query: str) -> None:
    """Every BM25 match of ``query`` in the same order (ties in date order) with the same scores."""
    import numpy as np

    def ranking(table) -> list[tuple[float, str]]:
        hits = table.search(query, query_type="fts").limit(table.count_rows()).to_arrow()
        return sorted(zip((-s for s in hits.column("_score").to_pylist()), hits.column("date").to_pylist()))

    want, got = ranking(want_table), ranking(got_table)
    assert len(want) > 100 and [d for _, d in got] == [d for _, d in want]
    assert np.allclose([s for s, _ in got], [s for s, _ in want], rtol=1e-6)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_daily_build_appends_its_rows_to_the_last_versions_vector_tables(tmp_path):
    """The day's rows are appended to a hard-linked copy of the last version's table: the same rows in
    the same order as a table written whole, the same BM25 scores, and the last version's files
    unchanged (its readers go on reading them)."""
    import lance

    from lake import vectors
    from lake.digest import rows_digest

    more = _archive_table("text", 402, bodies=True)
    full = more.slice(0, 400)
    last, whole, staged = tmp_path / "last", tmp_path / "whole", tmp_path / "staged"
    vectors.write_arrow(last, "text", full.slice(0, 397))
    vectors.write_arrow(whole, "text", full)
    before = _files(last)

    assert vectors.append_to_previous(staged, "text", full, previous=last) == 3
    assert _files(last) == before
    appended = vectors.open_table(staged, "text")
    assert appended.to_arrow().equals(full)
    assert len(appended.list_versions()) == 1  # the copy does not carry the last version's history
    # the copy holds the digest of all its rows, so the next day appends to it in turn
    stored = lance.dataset(vectors.table_uri(staged, "text")).config()[vectors.ROWS_DIGEST_KEY]
    assert stored == rows_digest(full) == rows_digest(appended.to_arrow())
    assert vectors.append_to_previous(tmp_path / "next", "text", more, previous=staged) == 2
    for query in ("comet aurora", "saturn rings", "dust"):
        _assert_same_bm25_ranking(appended, vectors.open_table(whole, "text"), query)
    # the same table again: nothing to append, the copy is the last version's files
    assert vectors.append_to_previous(tmp_path / "again", "text", full.slice(0, 397), previous=last) == 0
    assert _files(tmp_path / "again") == before


def test_appended_days_are_compacted_once_a_table_has_enough_fragments(tmp_path):
    """Each day's rows are a fragment of their own (no rewrite of the table) until the table would have
    ``compact_at_fragments``; then the last version's fragments are compacted before the day is added,
    and every version's rows are in the order of the table written whole (compacting after the insert,
    as before, put the newest rows first from the second day on) with the same BM25 ranking."""
    import lance

    from lake import vectors

    days = _archive_table("text", 406, bodies=True)
    last = tmp_path / "v0"
    vectors.write_arrow(last, "text", days.slice(0, 400))
    counts = []
    for i in range(1, 7):
        staged = tmp_path / f"v{i}"
        assert vectors.append_to_previous(staged, "text", days.slice(0, 400 + i), previous=last,
                                          compact_at_fragments=4) == 1
        counts.append(len(lance.dataset(vectors.table_uri(staged, "text")).get_fragments()))
        assert vectors.open_table(staged, "text").to_arrow().equals(days.slice(0, 400 + i))
        last = staged
    assert counts[:2] == [2, 3] and max(counts) < 4  # without compaction: 2, 3, …, 7
    appended = vectors.open_table(last, "text")
    vectors.write_arrow(tmp_path / "whole", "text", days)
    for query in ("comet aurora", "saturn rings"):
        _assert_same_bm25_ranking(appended, vectors.open_table(tmp_path / "whole", "text"), query)


def test_a_table_whose_rows_are_out_of_place_is_written_whole(tmp_path):
    """Appends by code before 30681ea compacted after the insert, which from the second day on put the
    day's rows first while the stored digest still described the written order: such a last version
    is not appended to (its rows are not where the digest says), so the next build writes it whole."""
    import lance

    from lake import vectors
    from lake.digest import rows_digest

    days = _archive_table("text", 403, bodies=True)
    last = tmp_path / "old"
    vectors.write_arrow(last, "text", days.slice(0, 400))
    dataset = lance.dataset(vectors.table_uri(last, "text"))
    for n in (401, 402):  # what the old append did: insert, digest of the intended rows, compact, index
        dataset.insert(days.slice(n - 1, 1), mode="append")
        dataset.update_config({vectors.ROWS_DIGEST_KEY: rows_digest(days.slice(0, n))})
        dataset.optimize.compact_files()
        dataset.optimize.optimize_indices()
    kept = vectors.open_table(last, "text").to_arrow()
    assert kept.sort_by("date").equals(days.slice(0, 402)) and not kept.equals(days.slice(0, 402))
    assert vectors.append_to_previous(tmp_path / "staged", "text", days, previous=last) is None
    assert not (tmp_path / "staged").exists()


def test_vector_tables_that_are_not_the_last_plus_new_rows_are_written_whole(tmp_path):
    """Appending is only for a table that starts with the last version's rows as they were: a changed
    row, another schema, rows gone, no last table at all, or one whose digest is missing (written before
    digests) or is not its rows' leave the staged table to a whole write."""
    import lance
    import pyarrow.compute as pc

    from lake import vectors

    full = _archive_table("title", 50)
    last = tmp_path / "last"
    vectors.write_arrow(last, "title", full.slice(0, 40))
    changed = full.set_column(4, "category", pc.if_else(pc.equal(full["date"], "2001-01-03"), "other",
                                                        full["category"]))
    for table in (changed, full.slice(0, 30), _archive_table("title", 50, bodies=True)):
        assert vectors.append_to_previous(tmp_path / "staged", "title", table, previous=last) is None
    assert vectors.append_to_previous(tmp_path / "staged", "image", _archive_table("image", 50), previous=last) is None
    assert not (tmp_path / "staged").exists()
    dataset = lance.dataset(vectors.table_uri(last, "title"))
    assert vectors.append_to_previous(tmp_path / "staged", "title", full, previous=last) == 10  # as written
    stored = dataset.config()[vectors.ROWS_DIGEST_KEY]
    dataset.update_config({vectors.ROWS_DIGEST_KEY: stored[::-1]})
    assert vectors.append_to_previous(tmp_path / "other", "title", full, previous=last) is None
    dataset.delete_config_keys([vectors.ROWS_DIGEST_KEY])
    assert vectors.append_to_previous(tmp_path / "other", "title", full, previous=last) is None
    assert not (tmp_path / "other").exists()


def test_an_appended_table_keeps_its_ann_index_and_merges_new_rows_in_batches(tmp_path):
    """Above the ANN threshold the index of the last version is kept, not rebuilt: the new rows stay
    outside it (searched exactly beside it) until ``unindexed_max_rows`` are, then are merged into it; a
    table that crosses a threshold (no index yet, or another index type due) is written whole."""
    import lance
    import numpy as np

    from lake import vectors

    full = _archive_table("image", 700)
    last = tmp_path / "last"
    vectors.write_arrow(last, "image", full.slice(0, 690), ann_min_rows=600, hnsw_min_rows=10**9)
    for batch, unindexed in ((11, 10), (10, 0)):
        staged = tmp_path / f"staged-{batch}"
        assert vectors.append_to_previous(staged, "image", full, previous=last, ann_min_rows=600,
                                          hnsw_min_rows=10**9, unindexed_max_rows=batch) == 10
        dataset = lance.dataset(vectors.table_uri(staged, "image"))
        for index in ("vector_idx", *(f"{column}_idx" for column in vectors.SCALAR_INDEXES)):  # the scalar ones alike
            stats = dataset.index_statistics(index)
            assert (stats["num_indexed_rows"], stats["num_unindexed_rows"]) == (700 - unindexed, unindexed)
        table = vectors.open_table(staged, "image")
        assert table.to_arrow().equals(full)
        for row in (3, 695):  # an indexed row and a new one: each its own nearest neighbour, with a filter too
            query = vectors.matrix(full.column("vector").slice(row, 1))[0]
            day, category = full.column("date")[row].as_py(), full.column("category")[row].as_py()
            for where in (None, f"date >= '{day}' AND category IN ('{category}')"):
                search = table.search(query).distance_type("cosine").nprobes(100).refine_factor(40).limit(1)
                hit = (search.where(where, prefilter=True) if where else search).to_arrow()
                assert hit.column("date")[0].as_py() == day
                assert np.isclose(hit.column("_distance")[0].as_py(), 0, atol=1e-5)
    without_scalar = tmp_path / "without-scalar"  # published before the filter columns had indexes
    vectors.write_arrow(without_scalar, "image", full.slice(0, 690), ann_min_rows=600, hnsw_min_rows=10**9)
    for column in vectors.SCALAR_INDEXES:
        lance.dataset(vectors.table_uri(without_scalar, "image")).drop_index(f"{column}_idx")
    assert vectors.append_to_previous(tmp_path / "other", "image", full, previous=without_scalar, ann_min_rows=600,
                                      hnsw_min_rows=10**9) is None  # written whole once, with them
    unindexed = tmp_path / "unindexed"  # written below the threshold the new rows cross
    vectors.write_arrow(unindexed, "image", full.slice(0, 690), ann_min_rows=695)
    assert vectors.append_to_previous(tmp_path / "other", "image", full, previous=unindexed, ann_min_rows=695) is None
    assert vectors.append_to_previous(tmp_path / "other", "image", full, previous=last, ann_min_rows=600,
                                      hnsw_min_rows=695) is None  # IVF_HNSW_SQ due from 695 rows


def test_published_files_are_as_readable_as_plainly_written_ones(tmp_path):
    """Atomic writes go through mkstemp (owner-only, 0600): a lake built by one user was unreadable to a
    server running as another. They now get the mode a plain write gets (the umask's: 0640 here)."""
    import os
    import stat

    from atlas import files

    before = os.umask(0o027)
    try:
        assert files.umask() == 0o027
        layout = LakeLayout.at(tmp_path / "lake")
        _publish(layout, "v1")
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(before)
    for table in ("entries.parquet", "manifest.json"):
        mode = stat.S_IMODE((layout.version_dir("v1") / table).stat().st_mode)
        assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o640, (table, oct(mode))
