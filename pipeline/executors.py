"""Where a build's heavy per-item work runs: in this process (``--runner local``) or on Ray Data
(``--runner ray``).

The stage functions do not change between the two: they ask the build's executor to encode a list of
texts or pictures, to write a vector table, or to run a function over fixed batches of rows (placing
points on a map), and the executor decides where that happens. Locally it
calls the encoder and LanceDB directly. On Ray, encoding is a ``map_batches`` over an actor pool (each
actor rebuilds the build's encoder once from its manifest record, which also checks that the actor's
model is the same one: fingerprints must match; pictures are shipped as bytes, so actors on other
nodes need no access to the lake) and vector tables are written with ``lance_ray`` (Ray's own
``write_lance`` breaks against current pylance) when the workers share the driver's disk. Joined to a
remote cluster, the build's staging folder lives on the driver only, so the driver writes the tables.

Ray on small machines: actors take :attr:`RayExecutor.actor_cpus` CPUs each (fractional by default).
With the default one CPU per actor, a 2-core machine deadlocked when the read stage was
backpressured while every CPU was held by an idle actor. GPU actors (``--ray-gpus-per-actor``) are
scheduled only on nodes that have GPUs; the encoder then runs on CUDA there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from atlas.encoders import Encoder
from pipeline.background import process_pool
from pipeline.encoder_host import EncoderHost
from pipeline.encoding import encode_with

log = logging.getLogger(__name__)

#: What :meth:`Executor.encoding` returns: chunks of inputs in, ``(chunk index, vectors)`` out as done.
EncodeChunks = Callable[[list[list[Any]]], Iterator[tuple[int, np.ndarray]]]

#: Chunks per Ray Data job of :meth:`RayExecutor.encoding`, by input kind: one actor pool (and one model
#: load per actor) for up to 64 × 512 texts; pictures travel as bytes from the driver, which holds one
#: job's worth at a time, so their jobs are smaller (8 × 512 thumbnails of ≈ 20 kB: ≈ 80 MB).
RAY_CHUNKS_PER_JOB = {"text": 64, "image": 8}


class Executor(Protocol):
    """What the stages need from the runner's engine."""

    name: str

    def encoding(self, encoder: Encoder, kind: str, *, root: Path, batch_size: int) -> EncodeChunks:
        """A function that encodes chunks of inputs of ``kind`` (``text``: strings; ``image``: picture
        paths relative to ``root``) and yields ``(chunk index, float32 matrix)`` as each chunk is done, in
        any order: one row per input of the chunk, in order. Each chunk is encoded by one call of
        :func:`pipeline.encoding.encode_with`, on any runner, so a chunk's vectors do not depend on where
        it ran (int8 activations are scaled per batch: the batches must be the same)."""

    def write_vectors(self, db: Path, kind: str, table: pa.Table) -> None:
        """Write ``table`` as the Lance table ``kind`` of the LanceDB database ``db`` (replacing it)."""

    def map_batches(self, fn: Callable[[np.ndarray, int], np.ndarray], rows: np.ndarray,
                    parts: list[slice]) -> np.ndarray:
        """``fn(rows[part], i)`` for each ``i, part`` of ``parts``, concatenated in order. ``fn`` must
        pickle and its result may depend only on its arguments: batches run in parallel, anywhere."""

    def close(self) -> None:
        """Release what the executor started (a local Ray instance)."""


#: Batches in flight per worker in :meth:`Executor.map_batches` (more only fill memory: every batch
#: in flight holds a copy of its rows).
BATCHES_IN_FLIGHT = 2


def _bounded(submit: Callable[[int], Any], count: int, wait: Callable[[list[Any]], list[Any]], window: int) -> list[Any]:
    """Run ``submit(i)`` for ``i < count`` keeping at most ``window`` unfinished handles; returns the
    handles in order. ``wait(handles)`` blocks until at least one of them finished and returns those."""
    handles: list[Any] = []
    pending: list[Any] = []
    for i in range(count):
        if len(pending) >= window:
            done = wait(pending)
            pending = [h for h in pending if h not in done]
        handles.append(submit(i))
        pending.append(handles[-1])
    return handles


_HELD: Any = None


def _hold(payload: bytes) -> None:
    """Worker-process initialiser: one thread per library (the workers already fill the CPUs, as Ray's
    tasks do), then keep the pickled function (sent once per worker, not once per batch). The cap comes
    first: unpickling may load numba (an NN-descent index) and a batch may load torch (top-k), and both
    read their thread counts from the environment when they load."""
    import pickle

    from atlas.device import cap_thread_pools, keep_freed_memory

    cap_thread_pools(1)
    keep_freed_memory()
    global _HELD
    _HELD = pickle.loads(payload)


def _apply_held(rows: np.ndarray, i: int) -> np.ndarray:
    return _HELD(rows, i)


def _apply(fn: Callable[[np.ndarray, int], np.ndarray], rows: np.ndarray, i: int) -> np.ndarray:
    return fn(rows, i)


#: Fewer batches than this run in this process: a spawned worker takes seconds to start (Python, numpy,
#: umap-learn, compiling its layout loop), as long as ≈ 15 placement batches of 4,096 rows take.
LOCAL_POOL_MIN_BATCHES = 16


class LocalExecutor:
    """Everything on this machine (the default): encoding in this process; batches of
    :meth:`map_batches` in up to ``threads`` worker processes (spawned: this process holds torch's pools)
    when there are at least ``pool_min_batches`` of them."""

    name = "local"

    def __init__(self, *, threads: int = 1, pool_min_batches: int = LOCAL_POOL_MIN_BATCHES) -> None:
        self.threads, self.pool_min_batches = threads, pool_min_batches

    def map_batches(self, fn: Callable[[np.ndarray, int], np.ndarray], rows: np.ndarray,
                    parts: list[slice]) -> np.ndarray:
        if self.threads < 2 or len(parts) < max(2, self.pool_min_batches):
            return _concatenate([fn(rows[part], i) for i, part in enumerate(parts)], rows)
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        import pickle

        workers = min(self.threads, len(parts))
        with process_pool(workers, initializer=_hold, initargs=(pickle.dumps(fn),)) as pool:
            futures = _bounded(lambda i: pool.submit(_apply_held, rows[parts[i]], i), len(parts),
                               lambda fs: wait_futures(fs, return_when=FIRST_COMPLETED).done,
                               BATCHES_IN_FLIGHT * workers)
            return _concatenate([f.result() for f in futures], rows)

    def encoding(self, encoder: Encoder, kind: str, *, root: Path, batch_size: int) -> EncodeChunks:
        def encode(chunks: list[list[Any]]) -> Iterator[tuple[int, np.ndarray]]:
            for i, inputs in enumerate(chunks):
                if isinstance(encoder, EncoderHost):  # the encoder's own process reads the pictures
                    yield i, encoder.encode_inputs(kind, inputs, root=root, batch_size=batch_size)
                else:
                    yield i, encode_with(encoder, kind, inputs, root=root, batch_size=batch_size)

        return encode

    def write_vectors(self, db: Path, kind: str, table: pa.Table) -> None:
        from lake.vectors import write_arrow

        write_arrow(db, kind, table)

    def close(self) -> None:
        pass


def _concatenate(results: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    out = np.concatenate(results) if results else np.zeros((0, 0), np.float32)
    if len(out) != len(rows):
        raise RuntimeError(f"the batches returned {len(out)} rows for {len(rows)}")
    return out


class _EncodeActor:
    """A Ray actor holding one copy of the build's encoder."""

    def __init__(self, info: dict[str, Any], kind: str, root: str, batch_size: int, threads: int,
                 trace_dir: str | None) -> None:
        from atlas.device import keep_freed_memory, set_threads
        from atlas.encoders import encoder_from_manifest

        keep_freed_memory()  # the actor only encodes: its attention blocks are what the setting is for
        set_threads(threads)
        # raises when this node's model differs from the build's; the build's saved traces, where this node
        # sees them, load in a fraction of the models' time (only read; a trace is filed under the versions
        # of the packages that shape its numbers, so a node with other versions loads the models instead)
        self.encoder = encoder_from_manifest(info, trace_dir=Path(trace_dir) if trace_dir else None)
        self.kind, self.root, self.batch_size = kind, Path(root), batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One row in: a whole chunk (its index and its inputs); one row out per input, with its place."""
        (chunk,), (inputs,) = batch["chunk"], batch["inputs"]
        inputs = [bytes(x) for x in inputs] if self.kind == "image" else [str(x) for x in inputs]
        vectors = encode_with(self.encoder, self.kind, inputs, root=self.root, batch_size=self.batch_size)
        return {"chunk": np.full(len(inputs), chunk), "at": np.arange(len(inputs)), "vector": vectors}


class RayExecutor:
    """Encoding on a Ray Data actor pool and Lance writes through ``lance_ray``.

    ``address`` None starts a local Ray instance with ``threads`` CPUs (stopped by :meth:`close`);
    ``auto`` or ``ray://host:10001`` joins an existing cluster (a KubeRay ``RayCluster``: see deploy/).
    ``trace_dir``: the lake's model cache, whose saved encoder traces the actors of a local instance load
    (on a cluster the other nodes do not see it, and load the models themselves).
    """

    name = "ray"

    def __init__(self, *, address: str | None, threads: int, actors: int, actor_cpus: float,
                 actor_gpus: float, trace_dir: Path | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # the runner is optional: say how to get it
            raise RuntimeError("--runner ray needs Ray Data and lance-ray: pip install -r requirements-ray.txt") from exc
        self._started = not ray.is_initialized()
        self._shared_disk = address is None  # a local instance: its workers see the staging folder
        self._trace_dir = str(trace_dir) if trace_dir is not None and self._shared_disk else None
        if self._started:
            ray.init(address=address, num_cpus=threads if address is None else None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        self.actors, self.actor_cpus, self.actor_gpus = max(1, actors), actor_cpus, actor_gpus
        # torch threads per actor = the build's --threads, not the actor's CPU share: kernels split work by
        # thread count, and the same count gives the local runner's vectors bit for bit (1 thread moved
        # picture features by ≈ 2e-6, enough to move a UMAP of a handful of pictures)
        self.threads_per_actor = threads
        log.info("ray: %s, %d actors × %.2g CPU%s", ray.cluster_resources(), self.actors, actor_cpus,
                 f" × {actor_gpus:g} GPU" if actor_gpus else "")

    def encoding(self, encoder: Encoder, kind: str, *, root: Path, batch_size: int) -> EncodeChunks:
        """Up to :data:`RAY_CHUNKS_PER_JOB` chunks at a time as one Ray Dataset (a chunk per row and per
        block) mapped over one actor pool, so each actor loads the model once per job (before, each
        chunk of 512 made a dataset and a pool of its own, and every actor loaded the model again for
        it). Chunks are yielded as they complete, so the embedding cache still checkpoints every chunk."""
        info = encoder.info.to_dict()
        per_job = RAY_CHUNKS_PER_JOB[kind]

        def encode(chunks: list[list[Any]]) -> Iterator[tuple[int, np.ndarray]]:
            for first in range(0, len(chunks), per_job):
                for i, vectors in self._encode_job(chunks[first : first + per_job], info=info,
                                                   kind=kind, root=root, batch_size=batch_size):
                    yield first + i, vectors

        return encode

    def _encode_job(self, chunks: list[list[Any]], *, info: dict[str, Any], kind: str, root: Path,
                    batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        import ray

        # pictures travel as bytes: on a cluster the actors do not see this machine's lake
        items = [{"chunk": i, "inputs": [(root / x).read_bytes() for x in inputs] if kind == "image" else inputs}
                 for i, inputs in enumerate(chunks)]
        actors = min(self.actors, len(items))
        out = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _EncodeActor, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs={"info": info, "kind": kind, "root": str(root), "batch_size": batch_size,
                                   "threads": self.threads_per_actor, "trace_dir": self._trace_dir},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_cpus=self.actor_cpus, num_gpus=self.actor_gpus or None,
        )
        log.info("ray: %d %s chunks on one pool of at most %d actors", len(items), kind, actors)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        have: dict[int, int] = {}
        for batch in out.iter_batches(batch_format="numpy", batch_size=None):
            for chunk in np.unique(batch["chunk"]):
                c, mine = int(chunk), batch["chunk"] == chunk
                parts.setdefault(c, []).append((batch["at"][mine], np.asarray(batch["vector"][mine], np.float32)))
                have[c] = have.get(c, 0) + int(mine.sum())
                if have[c] == len(chunks[c]):
                    at, vectors = (np.concatenate(x) for x in zip(*parts.pop(c)))
                    yield c, vectors[np.argsort(at, kind="stable")]
        if parts or len(have) != len(chunks):
            raise RuntimeError(f"the Ray encoding returned {len(have) - len(parts)} of {len(chunks)} chunks whole")

    def map_batches(self, fn: Callable[[np.ndarray, int], np.ndarray], rows: np.ndarray,
                    parts: list[slice]) -> np.ndarray:
        """One Ray task per batch, one CPU each (the work is CPU-bound: Ray then gives the task one
        OpenMP thread), ``fn`` put in the object store once; at most :data:`BATCHES_IN_FLIGHT` batches
        per CPU of the cluster are submitted at a time. A failed batch raises once the submitted ones ran."""
        import ray

        shared = ray.put(fn)
        task = ray.remote(_apply).options(num_cpus=1)
        window = max(1, int(BATCHES_IN_FLIGHT * ray.cluster_resources().get("CPU", 1)))
        refs = _bounded(lambda i: task.remote(shared, rows[parts[i]], i), len(parts),
                        lambda pending: ray.wait(pending, num_returns=1)[0], window)
        return _concatenate(ray.get(refs), rows)

    def write_vectors(self, db: Path, kind: str, table: pa.Table) -> None:
        """With lance_ray when the Ray workers share this machine's disk (a local Ray instance); joined to a
        cluster, the build's staging folder is on the driver only, so the driver writes (as locally)."""
        import lance_ray
        import ray

        from lake.vectors import finish_table, table_uri, write_arrow

        if not self._shared_disk:
            write_arrow(db, kind, table)
            return
        lance_ray.write_lance(ray.data.from_arrow(table), table_uri(db, kind), schema=table.schema, mode="overwrite")
        finish_table(db, kind, table)

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()


def make_executor(*, runner: str, address: str | None, threads: int, actors: int | None, actor_cpus: float,
                  actor_gpus: float, trace_dir: Path | None = None) -> Executor:
    if runner == "local":
        return LocalExecutor(threads=threads)
    if runner == "ray":
        return RayExecutor(address=address, threads=threads, actors=actors or threads, actor_cpus=actor_cpus,
                           actor_gpus=actor_gpus, trace_dir=trace_dir)
    raise ValueError(f"unknown runner {runner!r}; expected local or ray")
