"""Row-wise top-k of score matrices, shared by the pipeline's k-NN graphs and the alignment head.

``torch.topk`` is threaded and selects in one pass; ``numpy.argpartition`` plus sorting took about 40×
as long on a 2,048 × 11,382 similarity block on two cores (0.84 s against 0.02 s), which made the exact
k-NN graphs of the anomaly and projection stages mostly selection time rather than matrix products.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, largest first: (indices int64, values), both (rows, k).

    ``k`` is capped at the number of columns. Ties come out in an unspecified but deterministic order."""
    import torch

    k = max(0, min(int(k), scores.shape[1]))
    values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, largest=True, sorted=True)
    return indices.numpy().astype(np.int64, copy=False), values.numpy()
