"""``python -m pipeline``: run the command, then end the process without the interpreter's teardown.

When a command returns, the exit handlers run (log flushing, Ray's shutdown: what the interpreter runs
at exit) and the process ends. What is skipped is Python dismantling every imported module one by one:
with torch, LanceDB and scikit-learn loaded that alone took about 1 s of a 12 s daily build, and it
frees nothing the operating system does not free anyway. Every file a command writes is closed (and
fsynced) before it returns. Errors and ``--help`` leave the normal way.
"""

import atexit
import os
import sys

from pipeline.cli import main

code = main()
atexit._run_exitfuncs()  # noqa: SLF001 (the interpreter's own exit step, without the module teardown)
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
