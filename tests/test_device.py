"""How build processes use the machine: malloc keeps large freed blocks (atlas.device.keep_freed_memory)."""

import subprocess
from pathlib import Path
import sys

import pytest


ROOT = str(Path(__file__).resolve().parent.parent)

#: Allocate and free a 64 MB block 20 times (above glibc's largest mmap threshold, 32 MB, as the text
#: encoder's attention scores are) and print the minor page faults that cost.
CYCLES = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from atlas.device import keep_freed_memory
    assert keep_freed_memory()
np.ones(8 * 1024 * 1024)  # numpy and the first block's pages
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(8 * 1024 * 1024)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CYCLES, mode], check=True, capture_output=True, text=True,
                         env={"NUMPY_MADVISE_HUGEPAGE": "0", "PATH": ""}, cwd=ROOT)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_freed_blocks_stay_in_the_process():
    default, kept = _faults("default"), _faults("keep")
    # glibc's default maps and unmaps each 64 MB block: ≈ 16k faults (4 kB pages) per cycle
    assert default > 20 * 10_000
    assert kept < default / 10


def test_keep_freed_memory_says_whether_it_took():
    """In a child process: mallopt would change this test process's allocator for every later test."""
    said = subprocess.run([sys.executable, "-c", "from atlas.device import keep_freed_memory; print(keep_freed_memory())"],
                          capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert said == str(sys.platform.startswith("linux"))
