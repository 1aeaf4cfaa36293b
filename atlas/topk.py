"""Row-wise top-k of score matrices, shared by the pipeline's k-NN graphs and the alignment head.

``torch.topk`` is threaded and selects in one pass; ``numpy.argpartition`` plus sorting took about 40×
as long on a 2,048 × 11,382 similarity block on two cores (0.84 s against 0.02 s), which made the exact
k-NN graphs of the anomaly and projection stages mostly selection time rather than matrix products.
Small matrices (a daily build's new rows against the archive) are selected with numpy: importing torch
takes longer than the selection, and a process that has not loaded it yet (the build's background
worker) need not. Without torch loaded numpy selects far larger blocks: 400 × 11,382 scores take it
≈ 21 ms, importing torch ≈ 1.2–2 s (a day with a new picture changes a few dozen entries' vectors).
"""

from __future__ import annotations

import sys

import numpy as np

#: Up to this many scores (≈ 5 rows of the 11k archive) numpy selects; above it torch...
NUMPY_MAX_SCORES = 1 << 16
#: ...unless torch is not loaded yet: then numpy up to this many (≈ 1,500 rows of the archive, ≈ 0.1 s).
NUMPY_MAX_SCORES_WITHOUT_TORCH = 1 << 24


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, largest first: (indices int64, values), both (rows, k).

    ``k`` is capped at the number of columns. Ties come out in an unspecified order, deterministic for one
    path: numpy's and torch's may order exactly equal scores (duplicate vectors) differently, and which
    path a block takes depends on whether the process has loaded torch."""
    k = max(0, min(int(k), scores.shape[1]))
    if scores.size <= (NUMPY_MAX_SCORES if "torch" in sys.modules else NUMPY_MAX_SCORES_WITHOUT_TORCH):
        picked = np.argpartition(-scores, k - 1, axis=1)[:, :k] if 0 < k < scores.shape[1] else \
            np.broadcast_to(np.arange(k), (scores.shape[0], k))
        values = np.take_along_axis(scores, picked, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        return np.take_along_axis(picked, order, axis=1).astype(np.int64), np.take_along_axis(values, order, axis=1)

    import torch

    values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, largest=True, sorted=True)
    return indices.numpy().astype(np.int64, copy=False), values.numpy()
