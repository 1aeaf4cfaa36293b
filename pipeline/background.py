"""A worker process for the stages that may run beside the rest of the build.

A stage whose output no later stage reads (the anomaly detectors, the vector tables, the clusters, the
sky positions: only the app reads them) need not hold up the stages after it. On a 2-core machine the
build's main process mostly uses one core while it imports, encodes a day's text and places points on
the maps; a worker process on the other core can import scikit-learn and LanceDB, score the anomalies
and write the vector tables meanwhile. When
this was written a daily build spent 2.6 s of its 10 s in the anomaly stage, 0.8 s of it importing
(11.7 s without the worker against 9.4 s with it in the latest run); the vector tables followed when a
day with a new picture still took ≈ 10 s (see BENCHMARKS.md, "Daily ingest").

The worker is spawned (not forked: the main process holds torch's and BLAS's thread pools) once the
build has real work to do, and imports the stages' modules (:attr:`pipeline.runner.Stage.warm`) while
the main process works. It runs at the lowest priority, and dies with the build. A stage
sent to it gets a :class:`~pipeline.runner.BuildContext` of its own (same settings, lake and run id;
:func:`pipeline.runner.run_in_worker`): it shares files with the main process, not memory, so it reads
its inputs from the staged and published lake as any stage does. Its log records are forwarded to the
main process's handlers. One worker, given one stage at a time, in registration order, the moment it
finishes the last (:class:`Handoff`);
a stage it has not been given when the main process runs out of stages of its own, the main process
runs itself (:meth:`pipeline.runner.Runner._run_here`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import importlib
import logging
import logging.handlers
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1

#: The worker's nice value: the lowest priority an ordinary process can take.
WORKER_NICENESS = 19

#: How long closing waits for the last forwarded log records.
LISTENER_JOIN_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    """What a call run in the worker hands back: its result and what it cost there."""

    result: Any
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


def die_with(parent: int) -> None:
    """Have the kernel kill this worker when the build process dies (Linux; elsewhere a no-op). A build
    killed mid-stage must not leave a worker that goes on writing into the staging area, where the next
    build (free to start once the dead one's lock is gone) could publish its stale output."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def process_pool(workers: int, *, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of spawned processes (not forked: the build holds torch's and BLAS's thread pools) that die
    with this one (:func:`die_with`): a killed build must leave no UMAP fit or point placement running
    for minutes, nor a pool worker waiting for work that never comes. ``initializer`` runs after that."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_tied_to, initargs=(os.getpid(), initializer, initargs))


def _tied_to(parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    die_with(parent)
    if initializer is not None:
        initializer(*initargs)


def thread_only_progress_lock() -> None:
    """Give tqdm a lock of threads only, in a helper process. tqdm otherwise makes a process-shared lock
    (a named semaphore) for its first bar, even a disabled one; a helper stopped by :func:`terminate`
    never releases it, and the multiprocessing resource tracker warns of a "leaked semaphore" as the
    build ends. Bars of one helper never share a terminal line with another's."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's processes now, whatever they are doing (its ``shutdown`` would wait for them)."""
    stop = getattr(pool, "terminate_workers", None)  # Python ≥ 3.14
    if stop is not None:
        stop()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()


def _yield_to_the_build() -> None:
    """The lowest ordinary priority (nice 19; Linux: also the batch class, no wake-up preference). The
    worker takes the core a daily build's main process leaves idle, and only a sliver of the cores a
    cold build's encoder and maps keep busy (at nice 0 the maps lost ≈ 5 s to it). Not the idle class:
    that starves it behind any other busy process on the machine while the build waits for it."""
    os.nice(WORKER_NICENESS)
    if hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _start_worker(parent: int, modules: Sequence[str], records: Any, level: int, threads: int) -> None:
    """Worker start-up: tie its life to the build's, yield the CPU to it, cap its thread pools (before
    the stages' modules load theirs), log through the main process, then import what the stages need."""
    from atlas.device import cap_thread_pools, keep_freed_memory

    die_with(parent)
    _yield_to_the_build()
    thread_only_progress_lock()
    cap_thread_pools(threads)
    keep_freed_memory()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)
    for name in modules:  # ahead of need only: a module that fails here fails again, with its stage
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            log.warning("the worker could not import %s ahead: %s", name, exc)


def _timed(call: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
    started, cpu = time.perf_counter(), os.times()
    result = call(*args)
    used = os.times()
    return Outcome(result, time.perf_counter() - started, used.user + used.system - cpu.user - cpu.system,
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class _Forward(logging.Handler):
    """Hands a worker's log record to the logger of the same name here (so to this process's handlers)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):  # this process's levels (the CLI quietens some loggers)
            logger.handle(record)


class BackgroundWorker:
    """The build's one worker process, started on demand; ``enabled=False`` runs everything in line."""

    def __init__(self, *, threads: int, warm: Sequence[str], enabled: bool) -> None:
        self.warm, self.enabled = tuple(dict.fromkeys(warm)), enabled
        # the main process keeps its threads (it is the critical path); the worker takes the CPUs left,
        # at least one: two BLAS pools of --threads each on the same cores made the stage 3× slower
        self.threads = max(1, threads - 1)
        self._pool: ProcessPoolExecutor | None = None
        self._listener: logging.handlers.QueueListener | None = None
        self._records: Any = None
        self._submitted = False

    def start(self) -> None:
        """Spawn the worker now (it imports while the build goes on); no-op when disabled or running."""
        if not self.enabled or self._pool is not None:
            return
        context = multiprocessing.get_context("spawn")
        records = self._records = context.Queue()
        self._listener = logging.handlers.QueueListener(records, _Forward())
        self._listener.start()
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_start_worker,
            initargs=(os.getpid(), self.warm, records, logging.getLogger().getEffectiveLevel(), self.threads))
        self._pool.submit(int)  # the pool spawns its process on the first task
        log.debug("background worker started (importing %s)", ", ".join(self.warm))

    def submit(self, call: Callable[..., Any], *args: Any) -> Future[Outcome]:
        """``call(*args)`` in the worker (both pickled: a module-level function, plain values)."""
        self.start()
        if self._pool is None:
            raise RuntimeError("background stages are disabled for this build")
        self._submitted = True
        return self._pool.submit(_timed, call, args)

    def close(self, *, failed: bool = False) -> None:
        """Stop the worker and the log forwarding. After a failure (``failed``) a stage still running
        there is stopped rather than waited for: its output would not be published anyway; so is a
        worker that got no stage (its background stages were reused), rather than waited for to import."""
        if self._pool is not None:
            if failed or not self._submitted:
                terminate(self._pool)
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._listener is not None:
            # not QueueListener.stop(): its stop message shares the queue's lock with a worker that
            # may have been killed holding it; the listener thread is a daemon and ends with the process
            self._listener.enqueue_sentinel()
            thread = self._listener._thread  # noqa: SLF001
            if thread is not None:
                thread.join(timeout=LISTENER_JOIN_SECONDS)
            self._records.cancel_join_thread()  # nor may exiting wait for a queue a dead worker locked
            self._records.close()
            self._listener = None


class Handoff(Generic[T]):
    """The background stages of one build on their way to the worker, one at a time.

    Stages queue in registration order. The worker gets the next one the moment it finishes one (from
    that future's done-callback), not when the build's own thread next looks: that thread may be inside
    a long stage of its own, and the worker sat idle meanwhile (a cold build's clusters were done after
    20 s of a 37 s Galaxy Zoo map, and the sky positions then waited for the map). A stage the worker has
    not started stays here, and the build's thread takes it back (:meth:`take`) once it has run its own.
    Results are collected by the build's thread alone (:meth:`finished`, :meth:`wait`), in the order the
    stages were handed over. After a failure (a stage raised, or :meth:`stop`), nothing more is
    handed over. ``on_finished`` is called, from the done-callback, with each stage the worker finished
    and its outcome: what must not wait for the build's thread to collect it (the resume record: a build
    killed while its thread is inside a long stage would otherwise lose a stage the worker had done)."""

    def __init__(self, submit: Callable[[T], Future[Outcome]], *,
                 on_finished: Callable[[T, Outcome], None] | None = None) -> None:
        self._submit = submit
        self._on_finished = on_finished
        self._lock = threading.RLock()  # re-entrant: a future already done runs its callback at once
        self._queue: list[T] = []
        self._sent: list[tuple[T, Future[Outcome]]] = []  # handed over, not yet collected
        self._stopped = False

    def add(self, item: T) -> None:
        with self._lock:
            self._queue.append(item)
            self._hand_over()

    def take(self) -> T | None:
        """The next stage the worker has not been given (None: none left), for the caller to run itself."""
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    def finished(self) -> list[tuple[T, Future[Outcome]]]:
        """The stages the worker has finished since the last call, in the order they were handed over."""
        with self._lock:
            done = []
            while self._sent and self._sent[0][1].done():
                done.append(self._sent.pop(0))
            return done

    def wait(self) -> list[tuple[T, Future[Outcome]]]:
        """Wait until the stages handed over have finished, then :meth:`finished` (once the build's thread
        has taken back what was queued, nothing more is handed over meanwhile)."""
        with self._lock:
            futures = [f for _, f in self._sent]
        concurrent.futures.wait(futures)
        return self.finished()

    def outstanding(self) -> list[tuple[T, Future[Outcome]]]:
        """Every stage handed over and not yet collected, finished or not."""
        with self._lock:
            return list(self._sent)

    def stop(self) -> None:
        """Hand nothing more over (the build is failing)."""
        with self._lock:
            self._stopped = True

    def _hand_over(self) -> None:
        if self._stopped or not self._queue or not all(f.done() for _, f in self._sent):
            return
        if any(f.exception() is not None for _, f in self._sent if not f.cancelled()):
            return  # the build stops when it collects that stage
        # taken off the queue only once the worker has it: if handing over raises, the stage stays
        # queued for the build's thread to take back (the error is raised to the caller of add, or logged
        # by concurrent.futures when raised in a done-callback)
        future = self._submit(self._queue[0])
        self._sent.append((self._queue.pop(0), future))
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Future[Outcome]) -> None:
        if self._on_finished is not None and not future.cancelled() and future.exception() is None:
            with self._lock:  # (None: the build's thread has collected it already, and records it)
                item = next((i for i, f in self._sent if f is future), None)
            try:
                if item is not None:
                    self._on_finished(item, future.result())
            except Exception:  # the build's thread records the stage again when it collects it
                log.exception("could not record the finished background stage %s", item)
        with self._lock:
            self._hand_over()
