"""The one place that decides CPU or GPU (and how many CPU threads torch and the numeric libraries use)."""

from __future__ import annotations

import contextlib
import logging
import os
from functools import lru_cache

log = logging.getLogger(__name__)

#: Thread-pool sizes of OpenMP (torch reads it too), BLAS and numba, read by each library as it loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@lru_cache(maxsize=1)
def torch_device() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("torch device: %s%s", device, f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else "")
    return device


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def cap_thread_pools(threads: int) -> None:
    """Cap this process's OpenMP, BLAS, numba and torch thread pools at ``threads``: through the
    environment for the libraries that load from now on, through threadpoolctl for those loaded already
    (numpy's BLAS, or whatever a re-run ``__main__`` imported). For a worker process that shares the
    CPUs with others, before it imports its work."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    with contextlib.suppress(Exception):  # threadpoolctl absent, or a library it cannot drive
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
