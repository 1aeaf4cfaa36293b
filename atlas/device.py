"""The one place that decides CPU or GPU (and how many CPU threads torch and the numeric libraries use)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from functools import lru_cache

log = logging.getLogger(__name__)

#: Thread-pool sizes of OpenMP (torch reads it too), BLAS and numba, read by each library as it loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
#: Those of them the BLAS libraries read.
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: glibc ``mallopt`` parameters (malloc.h) and the size under which freed memory stays in the process.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_ALLOCATION_BYTES = 256 * 1024 * 1024


@lru_cache(maxsize=1)
def torch_device() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("torch device: %s%s", device, f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else "")
    return device


def set_threads(n: int) -> None:
    """torch's intra-op threads: set now when torch is loaded, else through ``OMP_NUM_THREADS``, which
    torch reads as it loads (a build process whose encoder lives in another process loads torch only
    for large top-k selections, if at all, and need not import it here)."""
    n = max(1, n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def cap_thread_pools(threads: int, *, user_api: str | None = None) -> None:
    """Cap this process's OpenMP, BLAS, numba and torch thread pools at ``threads`` (``user_api="blas"``:
    the BLAS pools only): through the environment for the libraries that load from now on, through
    threadpoolctl for those loaded already (numpy's BLAS, or whatever a re-run ``__main__`` imported).
    For a worker process that shares the CPUs with others, before it imports its work.

    Why a serving process caps BLAS at one (``services.prepare_worker``): OpenBLAS's idle threads spin for
    a while after each call instead of sleeping. The app's calls are single queries (an 11k × 384 matrix
    times one vector), too small to split, and under the Procfile's two gunicorn workers on 2 cores, the
    threads of the worker that just answered spin on the core the other worker needs for the next
    request. There one client's hybrid search took p50 19.7 ms (9.8 ms on a one-worker server) and now
    takes 9.6 ms; four clients at once get 185 requests/s instead of 79 (bench/search_latency.py,
    BENCHMARKS.md, *Search latency*). The workers' CPU time for the same 96 requests fell from 3.7 s to
    1.0 s (measured once, ad hoc)."""
    threads = max(1, threads)
    for name in BLAS_VARIABLES if user_api == "blas" else THREAD_VARIABLES:
        os.environ[name] = str(threads)
    with contextlib.suppress(Exception):  # threadpoolctl absent, or a library it cannot drive
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api=user_api)


def keep_freed_memory(*, below: int = KEPT_ALLOCATION_BYTES) -> bool:
    """Have glibc's malloc serve allocations under ``below`` bytes from the heap and keep freed heap
    memory in the process, instead of mapping each large block afresh and unmapping it when freed.

    Why: glibc maps every block above its mmap threshold (at most 32 MB, however it adapts) with a fresh
    ``mmap`` and returns it with ``munmap`` when freed, so the next one page-faults and the kernel zeroes
    it again. The text encoder's attention scores for a batch of 64 are 50 MB, so every batch paid for
    ≈ 2,400 page faults per text: on a 2-core machine 20–30 % of the embed stage was system time, and
    keeping the memory took a cold build's embed stage from 322.9 s to 276.6 s (README, *Shipped text
    vectors*). The price is a resident set that stays at its peak, which a build process reaches anyway.

    For build processes (the CLI, its worker, the map pool, the encoder's process and Ray's encoder
    actors); the app keeps glibc's default. Returns whether the setting took (False off glibc, e.g.
    macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        took = bool(libc.mallopt(M_MMAP_THRESHOLD, below)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * below))
    except (OSError, AttributeError):  # not glibc
        return False
    log.debug("malloc keeps freed memory under %d bytes: %s", below, took)
    return took
