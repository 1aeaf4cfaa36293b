"""The one place that decides CPU or GPU (and how many CPU threads torch may use)."""

from __future__ import annotations

import logging
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
