"""``--runner ray``: the same small build on the local runner and on a local Ray cluster (Ray Data actor
pool for encoding, Ray tasks for map placement, lance_ray for the vector tables) gives the same vectors
and the same lake tables."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from lake.digest import rows_digest
from lake.layout import LakeLayout
from lake.reader import LakeReader
from lake.schema import EMBEDDING_KINDS
from lake.vectors import ROWS_DIGEST_KEY
from tests.conftest import run_cli

# every text encoded on each runner (no shipped vectors), so the two runners' encoders are compared
BASE = ["build", "--collection", "apod", "--encoder", "offline", "--no-progress", "--no-shipped-vectors",
        "--start", "2014-01-01", "--end", "2014-01-20"]


@pytest.mark.slow
def test_local_and_ray_runners_build_the_same_lake(tmp_path):
    # maps fitted on 12 of the 20 entries, the other 8 placed by UMAP transform: on Ray, as Ray tasks;
    # chunks of 6 (4 per kind): each is encoded whole on one actor of the kind's one pool, as locally
    maps = ["--map-sample", "12", "--map-placement", "transform", "--embed-chunk", "6"]
    local = run_cli(*BASE, *maps, "--lake", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = run_cli(*BASE, *maps, "--lake", str(tmp_path / "ray"), "--runner", "ray", "--ray-actors", "2")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "ray: " in on_ray.stderr and "2 actors × 0.5 CPU" in on_ray.stderr  # it did run on Ray
    assert on_ray.stderr.count("ray: 4 text chunks on one pool of at most 2 actors") == 2  # titles, texts
    assert "text umap: fitted on 12 points, 8 placed (transform)" in local.stderr
    assert "umap: 8 points placed by UMAP transform, batches: 1, runner: ray" in on_ray.stderr
    assert "runner: local" in local.stderr
    a, b = LakeReader.open(tmp_path / "local"), LakeReader.open(tmp_path / "ray")
    for kind in EMBEDDING_KINDS:
        (dates_a, va), (dates_b, vb) = a.vectors(kind), b.vectors(kind)
        assert dates_a == dates_b
        assert np.array_equal(va, vb), kind  # the same batches and threads: bit for bit
    for table in ("entries", "categories", "projections", "clusters", "anomalies", "objects"):
        assert pq.read_table(a.layout.table(table)).equals(pq.read_table(b.layout.table(table))), table
    # the tables lance_ray wrote are ordinary LanceDB tables: keyword index and vector search work
    text = b.vector_table("text")
    assert text.count_rows() == 20
    assert text.search("comet", query_type="fts").limit(3).to_list()
    # with the digest of its rows, so the next daily build appends to it (lake/vectors.py append_to_previous)
    assert text.to_lance().config()[ROWS_DIGEST_KEY] == rows_digest(text.to_arrow())
    manifest = json.loads(LakeLayout.at(tmp_path / "ray").manifest.read_text())
    assert manifest["newly_embedded"] == json.loads(LakeLayout.at(tmp_path / "local").manifest.read_text())["newly_embedded"]



@pytest.mark.slow
def test_ray_splits_many_picture_chunks_into_jobs_and_returns_each_chunk_whole(caplog):
    """Pictures travel from the driver as bytes, so a Ray picture job holds at most
    ``RAY_CHUNKS_PER_JOB["image"]`` chunks: 10 chunks make two jobs, and every chunk comes back once,
    under its own index, with the vectors the local runner gives it (no test build has that many)."""
    import torch

    from atlas.encoders import build_encoder
    from pipeline.executors import RAY_CHUNKS_PER_JOB, LocalExecutor, RayExecutor
    from tests.conftest import IMAGES

    per_job = RAY_CHUNKS_PER_JOB["image"]
    names = [p.name for p in sorted(IMAGES.glob("*.jpg"))[:per_job + 5]]
    chunks = [names[i:i + 1] for i in range(per_job)] + [names[per_job:per_job + 2], names[per_job + 2:per_job + 5]]
    assert len(chunks) > per_job
    encoder = build_encoder("offline", quantize="int8")
    threads = torch.get_num_threads()  # an actor's torch threads are the build's: the same kernels
    local = dict(LocalExecutor().encoding(encoder, "image", root=IMAGES, batch_size=8)(chunks))
    ray_runner = RayExecutor(address=None, threads=threads, actors=2, actor_cpus=0.5, actor_gpus=0)
    try:
        with caplog.at_level("INFO", logger="pipeline.executors"):
            got = list(ray_runner.encoding(encoder, "image", root=IMAGES, batch_size=8)(chunks))
    finally:
        ray_runner.close()
    assert sorted(i for i, _ in got) == list(range(len(chunks)))
    for i, vectors in got:
        assert vectors.shape[0] == len(chunks[i])
        assert np.array_equal(vectors, local[i]), i
    jobs = [r.getMessage() for r in caplog.records if "image chunks on one pool" in r.getMessage()]
    assert jobs == [f"ray: {per_job} image chunks on one pool of at most 2 actors",
                    f"ray: {len(chunks) - per_job} image chunks on one pool of at most 2 actors"]

def test_ray_settings_need_the_ray_runner(tmp_path):
    proc = run_cli(*BASE, "--lake", str(tmp_path / "l"), "--ray-address", "auto")
    assert proc.returncode == 2 and "need --runner ray" in proc.stderr
    proc = run_cli(*BASE, "--lake", str(tmp_path / "l"), "--runner", "ray", "--ray-actor-cpus", "0")
    assert proc.returncode == 2 and "must be more than 0" in proc.stderr
