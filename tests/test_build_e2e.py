"""End-to-end builds through the real CLI: offline encoder, tiny OpenCLIP, re-runs, crashes, failures."""

from __future__ import annotations

import importlib.util

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lake.layout import LakeLayout
from lake.queries import AtlasQueries
from lake.reader import LakeReader
from lake.schema import EMBEDDING_KINDS
from pipeline.project import umap_backend
from tests.conftest import REPO, TINY_CLIP, archive_rows, run_cli, write_jsonl

pytestmark = pytest.mark.slow

# the text categories' word classifier needs 6,000 texts by default; these lakes of 59–90 entries use it
# anyway, so its path (fit, kept, refit, two classes) runs here. They encode every text (no shipped
# vectors): what they test is what the build embeds, caches and resumes.
BASE = ["build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--word-classifier-min", "50",
        "--no-shipped-vectors", "--start", "2014-01-01"]


def manifest(lake: Path) -> dict:
    return json.loads((lake / "current" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A lake of the bundled archive's January–February 2014 (59 entries), built offline."""
    lake = tmp_path_factory.mktemp("e2e") / "lake"
    proc = run_cli(*BASE, "--end", "2014-02-28", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return lake


def copy_lake(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)  # `current` stays a link to its version folder
    return dst


def test_offline_build_writes_the_lake_contract(built):
    reader = LakeReader.open(built)
    n = reader.count("entries")
    assert n == 59
    m = reader.manifest
    assert m["encoder"]["name"] == "offline" and m["encoder"]["text_model"].endswith("all-MiniLM-L6-v2")
    assert m["counts"]["entries"] == n and m["counts"]["with_image"] > 5
    # categories: one text row per entry, top-3 ordered, confidences in (0, 1]
    cats = reader.query("SELECT * FROM categories WHERE source = 'text'")
    assert len(cats) == n and cats.confidence.between(0, 1).all()
    assert all(len(t) == 3 and t[0] == c for t, c in zip(cats.top3_categories, cats.category))
    # 8 two-dimensional maps + a 3-D UMAP of multimodal
    maps = reader.query("SELECT embedding, method, count(*) AS n, count(z) AS nz FROM projections GROUP BY ALL")
    got = {(r.embedding, r.method): (r.n, r.nz) for r in maps.itertuples()}
    images = m["counts"]["with_image"]
    for kind in EMBEDDING_KINDS:
        for method in ("umap", "tsne"):
            assert got[(kind, method)] == (images if kind == "image" else n, 0)
    assert got[("multimodal", "umap3d")] == (n, n)
    clusters = reader.query("SELECT embedding, count(DISTINCT cluster) AS k, min(label) AS l FROM clusters GROUP BY ALL")
    assert set(clusters.embedding) == set(EMBEDDING_KINDS) and (clusters.k >= 2).all()
    # vectors in LanceDB, keyed by date, with the filter columns search needs
    dates, vecs = reader.vectors("multimodal")
    assert len(dates) == n and vecs.shape[1] == 384 + 384  # [text, picture in the text space]
    # 15 pictures are too few to learn a text–picture space from: no picture categories, said why
    assert m["alignment"]["method"].startswith("none (fewer than")
    assert set(reader.query("SELECT DISTINCT source FROM categories").source) == {"text"}
    assert reader.vector_table("image").count_rows() == images
    row = reader.vector_table("text").search(vecs[0][:384]).limit(1).to_list()[0]
    assert row["date"] == dates[0] and row["category"] and row["title"]
    # thumbnails and exports
    paths = reader.query("SELECT image_path FROM entries WHERE has_image").image_path
    assert all((built / p).is_file() for p in paths)
    assert (built / "current" / "exports" / "apod_broad_categorization.csv").read_text().startswith("\"date\"")
    # run metrics: a row per stage and resource samples with the seed's columns
    stages = set(reader.query("SELECT process FROM metrics WHERE record = 'stage'").process)
    assert stages >= {"ingest", "images", "embed", "align", "classify", "project", "cluster"}
    samples = reader.query("SELECT * FROM metrics WHERE record = 'sample'")
    assert len(samples) > 0 and (samples.rss_bytes > 0).all()
    for col in ("gpu_name", "gpu_utilization_percent", "gpu_memory_used_bytes", "gpu_memory_total_bytes"):
        assert col in samples.columns
    assert not (built / ".staging").exists()
    # sky positions: objects with RA/Dec in range, one primary target per entry at most
    objs = reader.query("SELECT * FROM objects")
    sidereal = objs[objs.ra_deg.notna()]
    assert len(sidereal) > 10 and sidereal.ra_deg.between(0, 360).all() and sidereal.dec_deg.between(-90, 90).all()
    assert reader.query("SELECT max(n) AS m FROM (SELECT count(*) AS n FROM objects WHERE is_primary GROUP BY date)").m[0] == 1
    assert set(objs.resolver.dropna()) <= {"openngc", "bright-stars", "solar-system"}  # offline: never "sesame"


def test_noop_rerun_embeds_nothing(built, tmp_path):
    lake = copy_lake(built, tmp_path / "lake")
    before = manifest(lake)
    proc = run_cli(*BASE, "--end", "2014-02-28", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = manifest(lake)
    assert after["run_id"] != before["run_id"]
    assert set(after["newly_embedded"].values()) == {0}
    for stage in ("embed", "classify", "project", "cluster"):
        assert after["stages"][stage]["skipped"] is True
    assert after["stages"]["embed"]["input_hash"] == before["stages"]["embed"]["input_hash"]
    assert re.search(r"embed +reused", proc.stderr)


def test_shipped_vectors_or_not_is_an_input_of_embedding(built, tmp_path):
    """Starting from the shipped vectors or not makes other text vectors, so switching re-runs the embed
    stage (before, ``--no-shipped-vectors`` on a lake built with them skipped it and encoded nothing, and
    ``export-vectors`` then kept asking for that build). Here the switch goes the other way on a lake
    that encoded its own: they win over the shipped ones, so nothing is encoded again."""
    lake = copy_lake(built, tmp_path / "lake")
    before = manifest(lake)
    proc = run_cli(*[a for a in BASE if a != "--no-shipped-vectors"], "--end", "2014-02-28", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = manifest(lake)
    assert after["stages"]["embed"]["skipped"] is False
    assert after["stages"]["embed"]["input_hash"] != before["stages"]["embed"]["input_hash"]
    assert after["newly_embedded"]["text"] == 0 and after["newly_embedded"]["title"] == 0


def test_export_keep_seed_updates_a_seed_after_a_few_texts_changed(built, tmp_path):
    """``export-vectors --keep-seed``: vectors the build took from the seed count too, so the seed of a
    lake whose cache computed only a few texts (the rest came from the seed) is updated, not refused; the
    other vectors stay bit for bit, and keys no entry has any more leave the seed."""
    from atlas.encoders import EncoderInfo
    from pipeline import cli
    from pipeline.embed import seed_file
    from pipeline.embed_cache import EmbeddingCache, read_seed, write_seed

    lake = copy_lake(built, tmp_path / "lake")
    seeds = tmp_path / "seeds"
    assert cli.main(["export-vectors", "--lake", str(lake), "--out", str(seeds), "--kind", "text"]) == 0
    recorded = dict(manifest(lake)["encoder"])
    recorded.pop("fingerprint", None)
    fingerprint = EncoderInfo(**recorded).tower_fingerprint("text")
    path = seed_file(seeds, fingerprint, "text")
    first = read_seed(path)
    keys = sorted(first)
    write_seed(path, [*keys, "0" * 40], np.stack([*(first[k] for k in keys), first[keys[0]]]))  # a text gone since
    cache = EmbeddingCache(LakeLayout.at(lake, building=True).embedding_cache(fingerprint, kind="text"))
    assert cache.forget(keys[:40]) == 40  # as if these came from the seed: the lake's cache has only the others
    assert cli.main(["export-vectors", "--lake", str(lake), "--out", str(seeds), "--kind", "text"]) == 1
    assert cli.main(["export-vectors", "--lake", str(lake), "--out", str(seeds), "--kind", "text", "--keep-seed"]) == 0
    again = read_seed(path)
    assert sorted(again) == keys
    assert all(np.array_equal(again[k], first[k]) for k in keys)


def test_auto_keeps_an_offline_lake_offline(built, tmp_path):
    """``--encoder auto`` on a lake built offline, where OpenCLIP could load (here: untrained weights,
    always available), keeps the offline encoder: a no-op, not a re-embedding of every entry."""
    lake = copy_lake(built, tmp_path / "lake")
    args = [a if a != "offline" else "auto" for a in BASE]
    proc = run_cli(*args, "--clip-pretrained", "random", "--end", "2014-02-28", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = manifest(lake)
    assert m["encoder"]["name"] == "offline" and set(m["newly_embedded"].values()) == {0}
    assert m["stages"]["embed"]["skipped"] is True
    assert "keeps this lake's offline encoder" in proc.stderr


def test_new_entries_do_not_reembed_old_ones(built, tmp_path):
    lake = copy_lake(built, tmp_path / "lake")
    proc = run_cli(*BASE, "--end", "2014-03-10", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the encoder's process, stopped as the build ends, left no process-shared lock behind (tqdm's)
    assert "leaked semaphore" not in proc.stderr
    m = manifest(lake)
    assert m["counts"]["entries"] == 59 + 10
    assert m["newly_embedded"]["text"] == 10 and m["newly_embedded"]["title"] <= 10


def _text_chunks(lake: Path) -> int:
    return len(list((lake / "cache" / "embeddings").glob("*/text/chunk-*.parquet")))


def test_killed_build_leaves_last_good_lake_and_rerun_completes(built, tmp_path):
    lake = copy_lake(built, tmp_path / "lake")
    before = manifest(lake)
    chunks_before = _text_chunks(lake)
    cmd = [sys.executable, "-m", "pipeline", *BASE, "--end", "2014-06-30", "--lake", str(lake), "--embed-chunk", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _text_chunks(lake) < chunks_before + 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the published lake is the old one, complete and readable
    reader = LakeReader.open(lake)
    assert reader.manifest["run_id"] == before["run_id"]
    assert reader.count("entries") == 59 and reader.count("projections") > 0
    assert len(reader.vectors("text")[0]) == 59
    # re-run: resumes, embedding only what the killed run had not cached
    done = run_cli(*BASE, "--end", "2014-06-30", "--lake", str(lake))
    assert done.returncode == 0, done.stderr[-2000:]
    m = manifest(lake)
    new_entries = m["counts"]["entries"] - 59
    assert new_entries > 100
    assert 0 < m["newly_embedded"]["text"] <= new_entries - 12  # ≥ 3 chunks of 4 survived the kill
    assert LakeReader.open(lake).count("entries") == m["counts"]["entries"]


def test_failed_stage_keeps_lake_and_rerun_reuses_staged_work(built, tmp_path):
    """A stage fails after the embeddings were made (a file stands where the build stages its exports,
    as disk trouble would): the published lake stays, and the next build resumes from the staged work."""
    lake = copy_lake(built, tmp_path / "lake")
    before = manifest(lake)
    taxonomy = tmp_path / "taxonomy.json"  # two categories with prompt ensembles
    taxonomy.write_text(json.dumps({"categories": [
        {"name": "Sky", "prompts": ["stars and galaxies in the night sky", "a nebula"]},
        {"name": "Ground", "prompts": ["a landscape on Earth", "a rocket launch"]}]}))
    blocker = lake / ".staging" / "exports"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the categories' export folder goes")
    failed = run_cli(*BASE, "--end", "2014-03-10", "--lake", str(lake), "--taxonomy", str(taxonomy))
    assert failed.returncode == 1
    assert "exports" in failed.stderr and "last published lake" in failed.stderr
    assert manifest(lake)["run_id"] == before["run_id"]
    assert LakeReader.open(lake).count("entries") == 59
    assert "embed" in json.loads((lake / ".staging" / "manifest.json").read_text())["stages"]
    blocker.unlink()  # the trouble gone, the build resumes from the staged embeddings
    ok = run_cli(*BASE, "--end", "2014-03-10", "--lake", str(lake), "--taxonomy", str(taxonomy))
    assert ok.returncode == 0, ok.stderr[-2000:]
    m = manifest(lake)
    assert m["stages"]["embed"]["skipped"] is True and set(m["newly_embedded"].values()) == {0}
    assert m["taxonomy"]["categories"] == ["Sky", "Ground"]
    cats = LakeReader.open(lake).query("SELECT category, top3_scores FROM categories WHERE source = 'text'")
    assert len(cats) == LakeReader.open(lake).count("entries") == 69 and set(cats.category) <= {"Sky", "Ground"}
    # two classes: each row's scores are both classes' probabilities, which sum to 1
    assert all(len(s) == 2 and abs(sum(s) - 1) < 1e-4 for s in cats.top3_scores)


def test_tiny_openclip_end_to_end(tmp_path, small_dump):
    lake = tmp_path / "lake"
    proc = run_cli("build", "--collection", "apod", "--no-progress", "--encoder", "openclip", "--clip-model", "tiny-clip-test",
                   "--clip-config", str(TINY_CLIP), "--clip-pretrained", "random", "--dump", str(small_dump),
                   "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    reader = LakeReader.open(lake)
    enc = reader.manifest["encoder"]
    assert enc["name"] == "openclip" and enc["shared_space"] and enc["settings"]["pretrained"] == "random"
    assert set(reader.query("SELECT DISTINCT source FROM categories").source) == {"text", "image"}
    n_img = reader.count("categories") - reader.count("entries")
    assert n_img == reader.manifest["counts"]["with_image"] > 0
    assert reader.vectors("text")[1].shape[1] == 32 and reader.vectors("multimodal")[1].shape[1] == 64
    assert reader.manifest["sources"] == ["dump"]


def test_offline_build_loads_openclip_weights_from_the_hugging_face_cache(tmp_path, small_dump):
    """``--offline`` with a named OpenCLIP model whose weights a machine downloaded before: they load from
    the local Hugging Face cache, and nothing asks the network (the hub's address is a closed local
    port). Real CLIP weights cannot be had here, so the cached file holds random weights of the real
    architecture, in the cache's real layout; without it the build stops and says how to get weights."""
    import torch
    import open_clip

    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--timm--resnet50_clip.openai" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--timm--resnet50_clip.openai" / "refs").mkdir()
    (cache / "models--timm--resnet50_clip.openai" / "refs" / "main").write_text("0" * 40)
    model = open_clip.create_model("RN50")
    torch.save({k: v.half() for k, v in model.state_dict().items()}, snapshot / "open_clip_pytorch_model.bin")
    del model
    args = ("build", "--collection", "apod", "--no-progress", "--offline", "--encoder", "openclip",
            "--clip-model", "RN50", "--clip-pretrained", "openai", "--dump", str(small_dump))
    closed = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}  # --offline must set it itself
    proc = run_cli(*args, "--lake", str(tmp_path / "lake"), env={**closed, "HF_HUB_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    enc = LakeReader.open(tmp_path / "lake").manifest["encoder"]
    assert enc["name"] == "openclip" and enc["text_model"] == "open_clip:RN50"
    assert enc["settings"]["pretrained"] == "openai" and enc["text_dim"] == 1024
    empty = run_cli(*args, "--lake", str(tmp_path / "none"), env={**closed, "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert empty.returncode == 1 and "OpenCLIP weights for RN50/openai are not available" in empty.stderr
    assert "--encoder offline" in empty.stderr and not LakeLayout.at(tmp_path / "none").exists()


def test_a_url_only_correction_reaches_the_categories_export(tmp_path):
    """The archive corrects an entry's picture address and nothing else: its words are the same, so no
    vector is made again, but the categories CSV (which carries each entry's url) gets the new address."""
    import csv

    rows = archive_rows("2014-01-01", "2014-01-31")
    lake, dump = tmp_path / "lake", tmp_path / "apod.jsonl"
    args = ("build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--word-classifier-min", "50",
            "--no-shipped-vectors", "--dump", str(dump), "--lake", str(lake))
    write_jsonl(dump, rows)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fixed = next(r for r in rows if "image_file" not in r and r.get("media_type") == "image")
    fixed["url"] = fixed["hdurl"] = "https://apod.nasa.gov/apod/image/1401/corrected_address.jpg"
    write_jsonl(dump, rows)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = manifest(lake)
    assert set(after["newly_embedded"].values()) == {0} and after["stages"]["embed"]["skipped"] is True
    assert after["stages"]["classify"]["skipped"] is False
    with open(lake / "current" / "exports" / "apod_broad_categorization.csv", newline="", encoding="utf-8") as fh:
        exported = {r["date"]: r for r in csv.DictReader(fh)}
    assert exported[fixed["date"]]["url"] == fixed["url"]


def test_a_build_left_without_pictures_keeps_none_of_the_last_ones(built, tmp_path):
    """A lake built with pictures is rebuilt from a dump whose pictures cannot be had (``--offline``: links
    only). Every stage sees no picture, and the new version holds none of the last one's picture, aligned
    or picture-space files (before, the last version's picture vectors were read back as this build's,
    and the anomaly stage failed with a KeyError on their dates)."""
    lake = copy_lake(built, tmp_path / "lake")
    assert (lake / "current" / "vectors" / "image.lance").is_dir() and manifest(lake)["counts"]["with_image"] > 5
    rows = [{k: v for k, v in r.items() if k != "image_file"} for r in archive_rows("2014-03-01", "2014-03-20")]
    dump = write_jsonl(tmp_path / "links.jsonl", rows)
    proc = run_cli("build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--word-classifier-min", "50",
                   "--no-shipped-vectors", "--source", "dump", "--dump", str(dump), "--offline", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(lake)
    assert m["counts"]["entries"] == 20 and m["counts"]["with_image"] == 0
    current = lake / "current"
    assert sorted(p.name for p in (current / "vectors").iterdir()) == ["multimodal.lance", "text.lance", "title.lance"]
    assert not (current / "models" / "align_head.npz").exists()
    reader = LakeReader.open(lake)
    assert set(reader.query("SELECT DISTINCT embedding FROM projections").embedding) == {"text", "title", "multimodal"}
    assert reader.query("SELECT count(*) AS n FROM categories WHERE source = 'image'").n[0] == 0


def test_bad_arguments_are_clear_errors(tmp_path):
    proc = run_cli("build", "--start", "2014-02-30")
    assert proc.returncode == 2 and "not a date like" in proc.stderr
    proc = run_cli("build", "--source", "dump", "--lake", str(tmp_path / "l"))
    assert proc.returncode == 2 and "--dump FILE" in proc.stderr
    proc = run_cli("build", "--encoder", "openclip", "--clip-checkpoint", str(tmp_path / "none.bin"),
                   "--lake", str(tmp_path / "l"), "--limit", "3")
    assert proc.returncode == 2 and "--clip-checkpoint" in proc.stderr and "no such file" in proc.stderr
    bad = tmp_path / "taxonomy.json"  # read whole before any work, not when classify comes (after embedding)
    bad.write_text('{"categories": [{"name": "Only one", "prompts": ["a lonely category"]}]}')
    proc = run_cli("build", "--taxonomy", str(bad), "--lake", str(tmp_path / "l"), "--limit", "3")
    assert proc.returncode == 2 and "≥ 2 categories" in proc.stderr
    assert not LakeLayout.at(tmp_path / "l").exists()


def test_help_documents_the_options():
    out = run_cli("build", "--help").stdout
    for flag in ("--lake", "--source", "--dump", "--start", "--encoder", "--clip-checkpoint", "--quantize",
                 "--taxonomy", "--force", "--embed-chunk"):
        assert flag in out


def test_nasa_source_downloads_and_thumbnails_new_images(http_server, tmp_path):
    """--source nasa end to end: API pages and image downloads from a local server on 127.0.0.1."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 40, 40)).save(buf, format="PNG")
    png = buf.getvalue()
    entries = [
        {"date": "2026-09-01", "title": "A Red Nebula", "explanation": "Glowing hydrogen gas in a stellar nursery.",
         "media_type": "image", "url": f"{http_server.url}/img/red.png", "copyright": "Jane Doe"},
        {"date": "2026-09-02", "title": "Not Really an Image", "explanation": "The server answers with a web page.",
         "media_type": "image", "url": f"{http_server.url}/img/page.html"},
        {"date": "2026-09-03", "title": "A Video of the Sun", "explanation": "Solar flares in motion.",
         "media_type": "video", "url": "https://www.youtube.com/embed/abc"},
        {"date": "2026-09-04", "title": "Comet Tail", "explanation": "A comet near the Sun.",
         "media_type": "image", "url": f"{http_server.url}/img/red.png"},
    ]
    http_server.routes["/planetary/apod"] = lambda h: h.reply(200, json.dumps(entries).encode())
    http_server.routes["/img/red.png"] = lambda h: h.reply(200, png, "image/png")
    http_server.routes["/img/page.html"] = lambda h: h.reply(200, b"<html>nope</html>", "text/html")
    lake = tmp_path / "lake"
    proc = run_cli("build", "--collection", "apod", "--no-progress", "--encoder", "offline", "--source", "nasa", "--nasa-url",
                   f"{http_server.url}/planetary/apod", "--start", "2026-09-01", "--end", "2026-09-04",
                   "--lake", str(lake), env={"NASA_API_KEY": "TESTKEY"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    reader = LakeReader.open(lake)
    rows = reader.query("SELECT strftime(date, '%Y-%m-%d') AS d, has_image, media_type, copyright, image_width "
                        "FROM entries ORDER BY date")
    assert rows.d.tolist() == ["2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"]
    assert rows.has_image.tolist() == [True, False, False, True]
    assert rows.image_width.iloc[0] == 256 and rows.copyright.iloc[0] == "Jane Doe"
    m = reader.manifest
    assert m["images"]["rejected"] and "not an image" in next(iter(m["images"]["rejected"]))
    assert any("api_key=TESTKEY" in r for r in http_server.requests)
    assert sum(r.startswith("/img/red.png") for r in http_server.requests) == 1  # downloads are cached by URL
    assert reader.vector_table("image").count_rows() == 2


def test_concurrent_builds_one_waits_out_and_force_recomputes(built, tmp_path):
    """Two builds of one lake: the second is refused with a clear message while the first holds the
    lake, and leaves it alone; --force then recomputes every stage (from the embedding cache)."""
    lake = copy_lake(built, tmp_path / "lake")
    before = manifest(lake)
    cmd = [sys.executable, "-m", "pipeline", *BASE, "--end", "2014-03-31", "--lake", str(lake)]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # wait until the first build really holds the lock, seen in /proc/locks: taking the lock to test it
    # could make the first build's own (non-blocking) attempt fail
    lock = lake / ".build.lock"
    lock.touch()
    inode = f":{lock.stat().st_ino} "
    deadline = time.monotonic() + 60
    while not any(f" {first.pid} " in line and inode in line for line in Path("/proc/locks").read_text().splitlines()):
        if time.monotonic() > deadline or first.poll() is not None:
            pytest.fail("the first build never held the lake's lock")
        time.sleep(0.05)
    second = run_cli(*BASE, "--end", "2014-02-28", "--lake", str(lake))
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert second.returncode == 1 and "another build is writing" in second.stderr
    after = manifest(lake)
    assert after["run_id"] != before["run_id"] and after["counts"]["entries"] == 90  # Jan–Mar 2014
    forced = run_cli(*BASE, "--end", "2014-03-31", "--lake", str(lake), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    m = manifest(lake)
    assert all(not m["stages"][s]["skipped"] for s in ("entries", "embed", "classify", "project", "cluster", "sky"))
    assert set(m["newly_embedded"].values()) == {0}  # recomputed from the embedding cache, not re-encoded
    # and fitted anew, as --refit would: no map placed on the published ones, no isolation forest kept
    assert m["projection"]["mode"] == "fitted" and m["clustering"]["mode"] == "clustered"
    assert all(note.startswith("fitted") for note in m["anomaly"]["isolation_forests"].values())
    assert LakeReader.open(lake).count("entries") == 90


def test_alignment_in_the_demo_lake_excludes_the_holdout(demo_lake):
    """The demo lake is built with --align-exclude: those pictures are mapped but never trained on."""
    from atlas.encoders.align import AlignHead
    from tests.conftest import ALIGN_HOLDOUT

    reader = LakeReader.open(demo_lake)
    m = reader.manifest
    pictures = m["counts"]["with_image"]
    align = m["alignment"]
    assert align["method"] == "neighbour captions" and align["excluded_pictures"] == len(ALIGN_HOLDOUT)
    assert align["pairs"] == pictures - len(ALIGN_HOLDOUT) and align["training_fingerprint"]
    head = AlignHead.load(reader.layout.align_head)
    text_dates, text_vecs = reader.vectors("text")
    held = {d: text_vecs[i] for i, d in enumerate(text_dates) if d in ALIGN_HOLDOUT}
    assert len(held) == len(ALIGN_HOLDOUT) and len(head.captions) == align["pairs"]
    for caption in held.values():  # no held-out caption is among the head's training captions
        assert np.max(head.captions @ caption) < 0.9999
    aligned_dates, _ = reader.vectors("aligned")
    assert set(ALIGN_HOLDOUT) <= set(aligned_dates) and len(aligned_dates) == pictures
    image_cats = reader.query("SELECT count(*) AS n FROM categories WHERE source = 'image'").n[0]
    assert image_cats == pictures
    # pictures' categories are their look-alikes' vote, its settings chosen without labels, kept for uploads
    # ≈ 120 texts, fewer than the word classifier's default 6,000: the text categories are the dense zero-shot's
    assert reader.manifest["taxonomy"]["text_categories"]["method"].startswith("dense zero-shot (fewer than 6000")
    assert not (demo_lake / "current" / "models" / "text_classifier.npz").exists()
    rule = reader.manifest["taxonomy"]["picture_categories"]
    assert rule["method"].startswith("vote") and f"k={rule['k']} tau={rule['tau']}" in rule["inner_cv_caption_class_agreement"]
    assert list(head.dates) == sorted(set(aligned_dates) - set(ALIGN_HOLDOUT))
    with np.load(reader.layout.class_vectors) as z:
        assert (int(z["vote_k"]), float(z["vote_tau"])) == (rule["k"], pytest.approx(rule["tau"]))


def test_fetched_pictures_are_kept_and_only_they_are_embedded(built, tmp_path):
    """After `--fetch-images` filled the download cache (as it does from NASA; here the cache is filled
    from bundled pictures of other days, since no test may reach NASA), the next build makes their
    thumbnails and embeds those pictures only: no text is embedded again."""
    import io

    from PIL import Image

    from atlas.hashing import sha1_text

    lake = copy_lake(built, tmp_path / "lake")
    reader = LakeReader.open(lake)
    before = reader.manifest["counts"]["with_image"]
    missing = reader.query("SELECT strftime(date, '%Y-%m-%d') AS d, url FROM entries "
                           "WHERE media_type = 'image' AND NOT has_image ORDER BY date LIMIT 3")
    cache = LakeLayout(lake).download_cache
    cache.mkdir(parents=True, exist_ok=True)
    for i, url in enumerate(missing.url):
        buf = io.BytesIO()
        Image.new("RGB", (300, 200), (40 * i, 90, 200 - 40 * i)).save(buf, format="JPEG")
        (cache / sha1_text(url)).write_bytes(buf.getvalue())
    proc = run_cli(*BASE, "--end", "2014-02-28", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(lake)
    assert m["counts"]["with_image"] == before + 3
    assert m["newly_embedded"] == {"title": 0, "text": 0, "image": 3}
    after = LakeReader.open(lake)
    got = after.query("SELECT strftime(date, '%Y-%m-%d') AS d, image_path FROM entries WHERE has_image")
    assert set(missing.d) <= set(got.d) and all((lake / p).is_file() for p in got.image_path)


def test_fetch_images_downloads_the_linked_pictures_and_embeds_only_them(built, tmp_path, http_server):
    """``build --fetch-images`` end to end, from a picture server on 127.0.0.1 (no test may reach NASA:
    a dump source points every link-only day of the built range there). The pictures that come are
    downloaded, kept as thumbnails and embedded, and nothing else is encoded; a 404, an HTML page and
    a corrupt JPEG are reported by reason and fail nothing; the next build asks the server nothing (the
    refusals are remembered for a day, and the images stage after the fetch did not ask again either)."""
    import io

    from PIL import Image

    lake = copy_lake(built, tmp_path / "lake")
    before = LakeReader.open(lake)
    linked = [r for r in archive_rows("2014-01-01", "2014-02-28")
              if r["media_type"] == "image" and not r.get("image_file") and r.get("url")]
    assert len(linked) >= 8 and before.query(
        "SELECT count(*) AS n FROM entries WHERE media_type = 'image' AND NOT has_image").n[0] == len(linked)
    bad = {linked[0]["date"]: "missing", linked[1]["date"]: "html", linked[2]["date"]: "corrupt"}
    for i, row in enumerate(linked):
        path = f"/apod/image/{row['date']}.jpg"
        row["url"], row["hdurl"] = http_server.url + path, None
        kind = bad.get(row["date"])
        if kind == "html":
            http_server.routes[path] = lambda h: h.reply(200, b"<html><body>Not a picture</body></html>", "text/html")
        elif kind == "corrupt":
            http_server.routes[path] = lambda h: h.reply(200, b"\xff\xd8\xff\xe0 torn off", "image/jpeg")
        elif kind is None:
            buf = io.BytesIO()
            Image.new("RGB", (320, 240), (20 * i % 256, 120, 255 - 20 * i % 256)).save(buf, format="JPEG")
            picture = buf.getvalue()
            http_server.routes[path] = lambda h, body=picture: h.reply(200, body, "image/jpeg")
    dump = write_jsonl(tmp_path / "linked.jsonl", linked)
    good = len(linked) - len(bad)

    def build() -> dict:
        proc = run_cli(*BASE, "--end", "2014-02-28", "--source", "bundled", "--dump", str(dump), "--fetch-images",
                       "--lake", str(lake))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return manifest(lake)

    m = build()
    fetch = m["stages"]["images"]["manifest"]["images"]["fetch"]
    assert fetch["downloaded"] == good and fetch["already_cached"] == 0, fetch
    assert sorted(fetch["failed"].values()) == [1, 1, 1], fetch  # one reason each: 404, not a picture, corrupt
    assert m["newly_embedded"] == {"title": 0, "text": 0, "image": good}
    assert m["counts"]["with_image"] == before.manifest["counts"]["with_image"] + good
    after = LakeReader.open(lake)
    got = after.query("SELECT strftime(date, '%Y-%m-%d') AS d, has_image, image_path FROM entries")
    pictured = dict(zip(got.d, got.has_image))
    assert all(pictured[r["date"]] == (r["date"] not in bad) for r in linked)
    assert all((lake / p).is_file() for p in got.image_path.dropna())
    assert set(after.vectors("image")[0]) >= {r["date"] for r in linked if r["date"] not in bad}
    assert len(http_server.requests) == len(linked)  # one request each: the images stage asked nothing again
    m = build()  # nothing new: the pictures that came are in the download cache, the refusals remembered
    fetch = m["stages"]["images"]["manifest"]["images"]["fetch"]
    assert fetch["downloaded"] == 0 and fetch["already_cached"] == good, fetch
    assert sorted(fetch["failed"].values()) == [1, 1, 1], fetch
    assert len(http_server.requests) == len(linked)
    assert set(m["newly_embedded"].values()) == {0}


def test_a_new_picture_keeps_the_picture_space_and_the_probe(demo_lake, tmp_path):
    """A day's new picture (1 beside the demo lake's 35, under 5 %) is mapped into the published picture
    space: every other picture's vector stays bit for bit, and the picture probe is kept (the new
    picture gets the full probe, which never saw it). (The maps are re-fitted here all the same: on
    120 entries one new picture moves the multimodal vectors by ≈ 0.013 on average, past the 0.01 drift
    bound; on the archive they are placed, see bench/add_one_day.py --day.)"""
    import io

    from PIL import Image

    from atlas.hashing import sha1_text

    lake = copy_lake(demo_lake, tmp_path / "lake")
    before = LakeReader.open(lake)
    pictures_before = before.vectors("image")
    space_before = before.manifest["stages"]["embed"]["manifest"]["image_space"]["fingerprint"]
    probe_before = before.manifest["taxonomy"]["picture_categories"]["probe"]
    assert probe_before["model"].startswith("fitted")
    day, url = before.query("SELECT strftime(date, '%Y-%m-%d') AS d, url FROM entries "
                            "WHERE media_type = 'image' AND NOT has_image ORDER BY date LIMIT 1").iloc[0]
    cache = LakeLayout(lake).download_cache
    cache.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 90, 60)).save(buf, format="JPEG")
    (cache / sha1_text(url)).write_bytes(buf.getvalue())
    proc = run_cli("build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--start", "2014-01-01",
                   "--end", "2014-04-30", "--align-exclude", str(demo_lake.parent / "align_holdout.txt"),
                   "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(lake)
    space = m["stages"]["embed"]["manifest"]["image_space"]
    assert space == {"fingerprint": space_before, "fit": "kept from the last build (1 new pictures mapped into it)"}
    after = LakeReader.open(lake)
    dates, vectors = after.vectors("image")
    row = {d: i for i, d in enumerate(dates)}
    assert set(dates) == set(pictures_before[0]) | {day}
    assert np.array_equal(vectors[[row[d] for d in pictures_before[0]]], pictures_before[1])
    probe = m["taxonomy"]["picture_categories"]["probe"]
    assert probe["model"] == "kept from an earlier build (1 newer training pictures get the full probe)", probe


def test_collections_build_apart_and_keep_each_other(built, tmp_path):
    """``--collection gz2`` adds the galaxies to an APOD lake without touching APOD; a later APOD-only
    build carries the galaxies (files and manifest records) over unchanged."""
    from tests.conftest import gz2_subset

    lake = copy_lake(built, tmp_path / "lake")
    apod_before = LakeReader.open(lake).query("SELECT * FROM entries ORDER BY date")
    catalogue = gz2_subset(tmp_path / "gz2.csv", 120)
    gz = run_cli("build", "--collection", "gz2", "--no-progress", "--offline", "--gz2-catalogue", str(catalogue),
                 "--lake", str(lake))
    assert gz.returncode == 0, gz.stderr[-3000:]
    reader = LakeReader.open(lake)
    assert reader.count("galaxies") == 120 and reader.count("entries") == len(apod_before)
    assert reader.query("SELECT * FROM entries ORDER BY date").equals(apod_before)
    assert not reader.query("SELECT count(*) AS n FROM galaxies WHERE has_image").n[0]  # offline: no cutouts
    galaxy_hash = manifest(lake)["stages"]["gz2_galaxies"]["input_hash"]
    # what an interrupted Galaxy Zoo build left staged must not be published by an APOD-only build
    layout = LakeLayout.at(lake)
    galaxies_before = reader.query("SELECT * FROM galaxies ORDER BY objid")
    for leftover in (layout.staged(layout.galaxy_image_space), layout.staged_table("galaxies")):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"left by an interrupted build")
    again = run_cli(*BASE, "--end", "2014-03-10", "--lake", str(lake))  # APOD grows, galaxies left alone
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept (collection not in this build)" in again.stderr
    m = manifest(lake)
    assert m["counts"]["galaxies"] == 120 and m["stages"]["gz2_galaxies"]["input_hash"] == galaxy_hash
    reader = LakeReader.open(lake)
    assert reader.count("galaxies") == 120 and reader.count("entries") > len(apod_before)
    assert reader.query("SELECT * FROM galaxies ORDER BY objid").equals(galaxies_before)
    assert not LakeLayout.at(lake).galaxy_image_space.exists()  # offline: no cutouts, so no picture space
    assert len(reader.query("SELECT * FROM galaxy_maps")) == 120
    from lake.galaxies import GalaxyQueries

    found = GalaxyQueries(reader, lambda info: None).morphology_neighbours("8647474690312307154", k=5)
    assert len(found.galaxies) == 5


def test_galaxy_pictures_are_recognised_by_content_not_by_file_times(demo_lake, tmp_path):
    """A working copy whose cutouts carry new file times (pulled from a bucket, copied without times)
    re-embeds no galaxy; a cutout whose bytes changed makes the galaxy stage run again."""
    import os

    lake = copy_lake(demo_lake, tmp_path / "lake")
    cutouts = sorted(LakeLayout.at(lake).cutouts.glob("*.jpg"))
    assert len(cutouts) > 100
    for path in cutouts:
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 7_000_000_000))
    args = ("build", "--collection", "gz2", "--no-progress", "--offline",
            "--gz2-catalogue", str(demo_lake.parent / "gz2_subset.csv"), "--lake", str(lake))
    same = run_cli(*args)
    assert same.returncode == 0, same.stderr[-3000:]
    stages = manifest(lake)["stages"]
    assert stages["gz2_cutouts"]["manifest"]["gz2_cutouts"]["present"] == len(cutouts)
    assert stages["gz2_galaxies"].get("skipped") is True, stages["gz2_galaxies"]
    before = stages["gz2_galaxies"]["input_hash"]
    from PIL import Image

    with Image.open(cutouts[0]) as picture:
        picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(cutouts[0], quality=90)
    changed = run_cli(*args)
    assert changed.returncode == 0, changed.stderr[-3000:]
    stages = manifest(lake)["stages"]
    assert not stages["gz2_galaxies"].get("skipped") and stages["gz2_galaxies"]["input_hash"] != before


def test_added_days_are_placed_on_the_maps_and_nothing_moves(built, tmp_path):
    """A build that adds two days places them on the published maps (no re-fit); --refit fits again."""
    lake = copy_lake(built, tmp_path / "lake")
    old_lake = LakeReader.open(lake)
    before = old_lake.query("SELECT * FROM projections")
    clusters_before = old_lake.query("SELECT * FROM clusters")
    categories_before = old_lake.query("SELECT * FROM categories WHERE source = 'text'")
    objects_before = old_lake.query("SELECT * FROM objects")
    anomalies_before = old_lake.query("SELECT * FROM anomalies").assign(date=lambda d: d.date.astype(str))
    pictures_before = old_lake.vectors("image")
    assert list((lake / "cache" / "models").glob("minilm-int8-*.pt"))  # the first build traced its text tower
    proc = run_cli(*BASE, "--end", "2014-03-02", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # neither day has a picture: the picture space is the last build's, and so is every picture vector
    assert manifest(lake)["stages"]["embed"]["manifest"]["image_space"]["fit"] == "kept from the last build"
    pictures = LakeReader.open(lake).vectors("image")
    assert pictures[0] == pictures_before[0] and np.array_equal(pictures[1], pictures_before[1])
    projection = manifest(lake)["stages"]["project"]["manifest"]["projection"]
    assert projection["mode"] == "placed" and projection["placed_this_build"] == 2, projection
    # the new days joined the existing clusters; the old entries kept theirs, and their sky objects
    assert manifest(lake)["stages"]["cluster"]["manifest"]["clustering"]["mode"] == "joined"
    clusters = LakeReader.open(lake).query("SELECT * FROM clusters")
    kept = clusters.merge(clusters_before, on=["date", "embedding"], suffixes=("", "_before"))
    assert len(kept) == len(clusters_before) and (kept.cluster == kept.cluster_before).all()
    assert set(clusters[clusters.date >= pd.Timestamp("2014-03-01")].cluster) <= set(clusters_before.cluster)
    assert "2 entries read, 59 kept from the last build" in proc.stderr
    # the published word classifier gave the new days their text categories; the old entries kept theirs
    rule = manifest(lake)["stages"]["classify"]["manifest"]["taxonomy"]["text_categories"]
    assert rule["model"] == "kept from an earlier build (2 new texts read)" and rule["fitted_on"] == 59, rule
    categories = LakeReader.open(lake).query("SELECT * FROM categories WHERE source = 'text'")
    assert len(categories) == 61
    pd.testing.assert_frame_equal(categories[categories.date < pd.Timestamp("2014-03-01")].reset_index(drop=True),
                                  categories_before.reset_index(drop=True))
    objects = LakeReader.open(lake).query("SELECT * FROM objects WHERE date < DATE '2014-03-01'")
    pd.testing.assert_frame_equal(objects.reset_index(drop=True), objects_before.reset_index(drop=True))
    after = LakeReader.open(lake).query("SELECT * FROM projections")
    old = after.merge(before, on=["date", "embedding", "method"], suffixes=("", "_before"))
    assert len(old) == len(before)  # every existing point is still there...
    assert (old.x == old.x_before).all() and (old.y == old.y_before).all()  # ...exactly where it was
    added = after[after.date >= pd.Timestamp("2014-03-01")]
    reader = LakeReader.open(lake)
    new_per_kind = {k: sum(d >= "2014-03-01" for d in reader.vectors(k)[0]) for k in set(before.embedding)}
    assert new_per_kind["text"] == 2  # both days; only those with a picture are on the picture maps
    assert len(added) == sum(new_per_kind[emb] for emb, _ in before.groupby(["embedding", "method"]).groups)
    # placed among the points, not at the origin or off the map
    for (emb, method), group in after.groupby(["embedding", "method"]):
        new, fitted = group[group.date >= pd.Timestamp("2014-03-01")], group[group.date < pd.Timestamp("2014-03-01")]
        for axis in ("x", "y"):
            assert ((fitted[axis].min() <= new[axis]) & (new[axis] <= fitted[axis].max())).all(), (emb, method)
    # the anomaly detectors ran on the k-NN graphs kept by the last build, extended by the two days:
    # their scores are those of scoring the same vectors from scratch
    from pipeline.anomaly import AnomalyParams, score_entries

    assert all((lake / "cache" / "knn" / f"{kind}.npz").is_file() for kind in EMBEDDING_KINDS)
    vectors = {k: reader.vectors(k) for k in EMBEDDING_KINDS}  # the single-modality detectors' inputs
    untexted = AtlasQueries(reader).dates_without_explanation()
    fresh = score_entries({k: v for k, v in vectors.items() if v[0]}, AnomalyParams(),
                          without_explanation=untexted).set_index("date")
    stored = reader.query("SELECT * FROM anomalies").assign(date=lambda d: d.date.astype(str)).set_index("date")
    graph_based = [c for c in fresh.columns if c.endswith(("_knn", "_lof"))]
    assert len(graph_based) >= 6
    pd.testing.assert_frame_equal(stored.loc[fresh.index, graph_based], fresh[graph_based], check_dtype=False,
                                  atol=1e-5)
    # the isolation forests were kept (2 new texts of 61): the old entries' forest scores did not move
    forests = manifest(lake)["stages"]["anomaly"]["manifest"]["anomaly"]["isolation_forests"]
    assert forests["text"].startswith("kept from an earlier build (2 rows new"), forests
    iforest = [c for c in fresh.columns if c.endswith("_iforest")]
    old_days = anomalies_before.set_index("date").index
    pd.testing.assert_frame_equal(stored.loc[old_days, iforest], anomalies_before.set_index("date")[iforest])
    assert stored.loc[["2014-03-01", "2014-03-02"], "text_iforest"].notna().all()
    # another number of clusters is honoured although the maps were placed: the clusters are made again
    three = run_cli(*BASE, "--end", "2014-03-02", "--lake", str(lake), "--clusters", "3")
    assert three.returncode == 0, three.stderr[-3000:]
    assert manifest(lake)["stages"]["cluster"]["manifest"]["clustering"]["mode"] == "clustered"
    per_kind = LakeReader.open(lake).query("SELECT embedding, count(DISTINCT cluster) AS n FROM clusters GROUP BY 1")
    assert set(per_kind.n) == {3}, per_kind
    refit = run_cli(*BASE, "--end", "2014-03-02", "--lake", str(lake), "--refit")
    assert refit.returncode == 0, refit.stderr[-3000:]
    fitted = manifest(lake)["stages"]["project"]["manifest"]["projection"]
    assert fitted["mode"] == "fitted" and fitted["fit"]["entries"] == 61
    rule = manifest(lake)["stages"]["classify"]["manifest"]["taxonomy"]["text_categories"]
    assert rule["model"] == "fitted (--refit)" and rule["fitted_on"] == 61, rule
    forests = manifest(lake)["stages"]["anomaly"]["manifest"]["anomaly"]["isolation_forests"]
    assert forests["text"] == "fitted on 61 rows", forests
    # the plain build after it has nothing to redo (--refit was an input: five stages ran again for it)
    plain = run_cli(*BASE, "--end", "2014-03-02", "--lake", str(lake))
    assert plain.returncode == 0, plain.stderr[-3000:]
    stages = manifest(lake)["stages"]
    assert all(stages[s]["skipped"] for s in ("anomaly", "classify", "vectors", "project", "cluster")), \
        {s: stages[s].get("skipped") for s in stages}
    assert stages["project"]["manifest"]["projection"]["fit"] == fitted["fit"]


def test_maps_fitted_on_a_sample_place_every_other_entry(built, tmp_path):
    """--map-sample N fits each map on N entries and places the rest on it (the mechanism for maps of
    millions of points); its size is in the manifest."""
    lake = copy_lake(built, tmp_path / "lake")
    proc = run_cli(*BASE, "--end", "2014-02-28", "--lake", str(lake), "--map-sample", "30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "text umap: fitted on 30 points, 29 placed (interpolate)" in proc.stderr  # auto: < 1,000 points
    projection = manifest(lake)["stages"]["project"]["manifest"]["projection"]
    assert projection["fit_sample"] == 30 and projection["mode"] == "fitted" and projection["placement"] == "auto"
    # which UMAP fitted the maps is on record: umap-learn here (no cuML); cuML on a GPU machine that has it
    assert projection["fit"]["umap_backend"] == umap_backend()
    if importlib.util.find_spec("cuml") is None:
        assert umap_backend() == "umap-learn"
    query = "SELECT embedding, method, strftime(date, '%Y-%m-%d') AS date, x, y FROM projections"
    maps = LakeReader.open(lake).query(query)
    assert maps.x.notna().all() and set(maps[maps.embedding == "text"].groupby("method").size()) == {59}
    # the next day is placed by UMAP's transform on the published maps (which do not move)
    proc = run_cli(*BASE, "--end", "2014-03-01", "--lake", str(lake), "--map-sample", "30", "--map-placement", "transform")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "umap: 1 points placed by UMAP transform, batches: 1, runner: local" in proc.stderr
    projection = manifest(lake)["stages"]["project"]["manifest"]["projection"]
    assert projection["mode"] == "placed" and projection["placement"] == "transform"
    after = LakeReader.open(lake).query(query)
    kept = after.merge(maps, on=["embedding", "method", "date"], suffixes=("", "_before"))
    assert len(kept) == len(maps) and (kept.x == kept.x_before).all() and (kept.y == kept.y_before).all()
    assert set(after[after.embedding == "text"].groupby("method").size()) == {60} and after.x.notna().all()


def test_a_galaxy_zoo_only_lake_serves_every_page(tmp_path):
    """A lake built with ``--collection gz2`` alone: the Galaxies page works, and every APOD page (the
    navbar's search box included) says the lake has no APOD collection instead of failing."""
    from app import create_app
    from tests.conftest import gz2_subset

    lake = tmp_path / "lake"
    gz = run_cli("build", "--collection", "gz2", "--no-progress", "--offline",
                 "--gz2-catalogue", str(gz2_subset(tmp_path / "gz2.csv", 60)), "--lake", str(lake))
    assert gz.returncode == 0, gz.stderr[-3000:]
    client = create_app(lake=lake).server.test_client()
    client.get("/")
    for path, search in [("/", ""), ("/search", "?q=galaxy"), ("/categories", ""), ("/sky", ""),
                         ("/oddities", ""), ("/metrics", ""), ("/galaxies", "")]:
        reply = client.post("/_dash-update-component", json={
            "output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                       {"id": "_pages_location", "property": "search", "value": search}],
            "state": [], "changedPropIds": ["_pages_location.pathname"]})
        assert reply.status_code == 200, (path, reply.data[-500:])
        page = json.dumps(reply.get_json()["response"])
        assert ("no APOD collection" in page) == (path not in ("/galaxies", "/metrics")), path
    assert LakeReader.open(lake).count("galaxy_maps") == 60  # the morphology map (no pictures offline)
    # a rebuild with too few galaxies for a map publishes no map: not the previous build's
    fewer = run_cli("build", "--collection", "gz2", "--no-progress", "--offline",
                    "--gz2-catalogue", str(gz2_subset(tmp_path / "gz2-20.csv", 20)), "--lake", str(lake))
    assert fewer.returncode == 0, fewer.stderr[-3000:]
    assert LakeReader.open(lake).count("galaxy_maps") == 0
    assert manifest(lake)["stages"]["gz2_maps"]["manifest"]["gz2_maps"]["spaces"] == []
