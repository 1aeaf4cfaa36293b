"""The one place that decides CPU or GPU (and how many CPU threads torch may use)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def torch_device() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("torch device: %s%s", device, f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else "")
    return device


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


@contextmanager
def one_thread() -> Iterator[None]:
    """torch (and OpenMP) on one thread for the duration: for one small model call, such as a single search
    query, where splitting tiny matrix products over threads costs more than it saves (MiniLM query
    encoding on 2 cores: 7.8 → 4.8 ms median), while the rest of the process keeps its threads.

    The setting is process-wide: a call running meanwhile in another thread gets one thread too."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
