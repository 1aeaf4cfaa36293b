"""``python -m pipeline`` and the ``cosmic-atlas`` command: the command line (:func:`pipeline.cli.run`).

Before numpy is imported (the CLI imports it), build processes turn off numpy's huge-page advice: numpy
asks Linux for huge pages for every large array, and a build allocates and frees many (vector
matrices, k-NN graphs, maps). Where transparent huge pages are on "madvise" (the Debian and Ubuntu
default), the kernel then zeroes and, when memory is fragmented, compacts memory afresh for each of
them. Without the advice, the archive's daily build took a median 8.8 s against 9.1 s (8 runs each,
slowest 9.2 s against 9.5 s; its map placement 0.8 s against 1.4 s: BENCHMARKS.md, *Daily ingest*).
A value the user set is kept; the build's worker process inherits it; the app keeps numpy's default.
For the same reason build processes keep freed memory in the process (:func:`atlas.device.keep_freed_memory`).
"""

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from atlas.device import keep_freed_memory  # noqa: E402 (after the setting above)

keep_freed_memory()

from pipeline.cli import run  # noqa: E402 (after the setting above)

main = run

if __name__ == "__main__":
    run()
