"""t-SNE iterations against map quality and time, on the archive's text vectors: the build's t-SNE
(openTSNE, FFT gradients, perplexity 30 on the shared exact k-NN graph, PCA initialisation, seed 42,
one thread as in the build's map workers) with several iteration counts after early exaggeration.

Quality as in ``bench/projection_sample.py`` (same 3,000 evaluated entries): trustworthiness (k = 10,
cosine) and 10-NN preservation. The iteration counts are compared in one run, in order; openTSNE's
default is 500.

Usage: python bench/tsne_iterations.py [--lake DIR] [--iterations 500 300 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save  # noqa: E402
from bench.projection_sample import quality, text_vectors  # noqa: E402
from pipeline.neighbors import knn_graph  # noqa: E402
from pipeline.project import ProjectionParams, tsne_map  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--iterations", type=int, nargs="+", default=[500, 300, 200])
    args = ap.parse_args()
    header, vectors, rows = text_vectors(args.lake)
    params = ProjectionParams()
    graph = knn_graph(vectors, params.knn_k)
    results = {**header, "build_default": params.tsne_iterations, "runs": []}
    for n in args.iterations:
        t0 = time.perf_counter()
        coords = tsne_map(vectors, graph, replace(params, tsne_iterations=n), n_jobs=1)
        row = {"iterations": n, "fit_s": round(time.perf_counter() - t0, 1), **quality(vectors, coords, rows, None)}
        results["runs"].append(row)
        print(row, flush=True)
    print("saved", save("tsne_iterations", results))


if __name__ == "__main__":
    main()
