"""Saved TorchScript traces of the offline towers: where they live, and how one is kept or refused.

Why traces: a build that encodes a handful of new items (the daily ingest) spent most of its encoding
time importing and assembling the models (sentence-transformers for the text tower, timm and
torchvision for the picture tower), not running them. A saved trace loads with torch alone.

What both towers share lives here: a trace file is keyed by every package version that shapes its
numbers (another version makes a new trace and removes the stale one), it is written atomically, and it
is kept only when the model that made it agrees with it on probe inputs. A trace that cannot be made or
does not agree is marked *refused* for those packages, so later builds do not try again; none of this
can fail a build (a trace is only a speed-up).

A trace is a program, and a lake on object storage shares its ``cache/`` with every builder through the
bucket: so a kept trace is signed with this machine's key (:mod:`atlas.signing`, a ``.sig`` file beside
it) and only a trace whose signature matches is loaded. One from elsewhere (or changed since) is ignored:
the model is built from its package and traced again here.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from atlas import files, signing
from atlas.encoders.base import package_version
from atlas.hashing import sha1_json

log = logging.getLogger(__name__)

T = TypeVar("T")


def trace_file(folder: Path, *, prefix: str, settings: Sequence[Any], packages: Sequence[str]) -> Path:
    """``folder/prefix-KEY.pt``, KEY a hash of ``settings`` and the installed versions of ``packages``."""
    key = sha1_json([*settings, {p: package_version(p) for p in packages}])[:16]
    return Path(folder) / f"{prefix}-{key}.pt"


def refused(target: Path) -> Path:
    """Marks a trace that was tried and refused for these packages: later builds do not try again."""
    return target.with_suffix(".refused")


def signature(target: Path) -> Path:
    """This machine's signature of the trace at ``target`` (:mod:`atlas.signing`)."""
    return target.with_suffix(".sig")


def verified_bytes(trace: Path) -> bytes | None:
    """The bytes of ``trace`` when they carry this machine's signature (made by this machine's builds),
    else None."""
    data, sig = trace.read_bytes(), signature(trace)
    return data if sig.is_file() and signing.verify(data, sig.read_bytes()) else None


def signed(trace: Path) -> bool:
    """Whether ``trace`` carries this machine's signature."""
    return verified_bytes(trace) is not None


@contextmanager
def quiet() -> Iterator[None]:
    """TorchScript (and eager quantisation) are deprecated upstream; their warnings say nothing to a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def keep_checked(target: Path, make: Callable[[Path], float | None], *, tower: str, tolerance: float) -> bool:
    """Make a trace with ``make(tmp)`` and keep it at ``target`` if it agrees with its model.

    ``make`` saves the trace to the temporary path it is given and returns the largest difference
    between the saved trace's outputs and the model's on probe inputs, or None when the model is not
    a layout the tower's trace reproduces. Returns whether the trace was kept. On success the same
    tower's traces made under other package versions are removed; on a refusal or any error (a model
    tracing cannot follow, a full disk) the refusal is logged and marked (:func:`refused`)."""
    kept = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            diff = make(tmp)
            if diff is not None and diff > tolerance:
                log.warning("%s trace differs from the model by %.2g; builds keep loading the model", tower, diff)
            elif diff is not None:
                with open(tmp, "rb") as fh:  # on disk before the rename: a crash leaves no torn trace
                    os.fsync(fh.fileno())
                    made = fh.read()
                # signed first: a crash between the two renames leaves a signature that matches
                # nothing (the trace is made again), never an unsigned trace that loads
                files.write_bytes(signature(target), signing.sign(made))
                os.replace(tmp, target)
                log.info("%s traced to %s (largest difference from the model %.1g)", tower, target.name, diff)
                kept = True
        finally:
            tmp.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 (an optimisation: any failure falls back to the model)
        log.warning("%s not traced (%s: %s); builds keep loading the model", tower, type(exc).__name__, exc)
    if kept:
        prefix = target.name.rsplit("-", 1)[0]  # the same settings under other package versions: stale
        for stale in target.parent.glob(f"{prefix}-*"):
            if stale not in (target, signature(target)):
                stale.unlink(missing_ok=True)
    else:
        try:
            refused(target).touch()
        except OSError:
            pass
    return kept


#: What torch's C++ code prints, straight to the process's stderr, when an int8 trace's quantised tensors
#: are loaded: a deprecation of eager quantisation. It is not a Python warning, so
#: :func:`quiet` cannot filter it, and it told every user of the app and of shell search about an API
#: they never call.
TORCH_QUANTIZED_DEPRECATION = "quantized tensor creation functions"


@contextmanager
def native_stderr_filtered(*, drop: str) -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 inside the block; when it ends, log the lines
    containing ``drop`` at debug level and write every other line to stderr (delayed, never lost).

    Native libraries print their warnings with ``write(2, …)``, past Python's ``sys.stderr`` and its
    ``warnings`` filters; :mod:`wurlitzer` swaps the descriptor for a pipe while the block runs."""
    from wurlitzer import pipes

    held = io.StringIO()
    try:
        with pipes(stdout=None, stderr=held):
            yield
    finally:
        for line in held.getvalue().splitlines(keepends=True):
            if drop in line:
                log.debug("native stderr: %s", line.strip())
            else:
                sys.stderr.write(line)
        sys.stderr.flush()


def load_trace(source: Path | bytes) -> Any:
    """A saved trace (a file, or its bytes) on the CPU, in eval mode."""
    import torch

    with quiet(), native_stderr_filtered(drop=TORCH_QUANTIZED_DEPRECATION):
        module = torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else str(source), map_location="cpu")
    return module.eval()


def load_saved(trace: Path | None, load: Callable[[bytes], T], *, tower: str) -> T | None:
    """``load(data)`` with the bytes of the trace saved at ``trace`` when this machine signed them, else
    None; a torn, foreign or unsigned file is logged and ignored (the caller builds the model, and traces
    it again). The loader gets the bytes that were verified, not the path: the file is read once, and one
    replaced between the check and the load is never run."""
    if trace is None or not trace.is_file():
        return None
    try:
        data = verified_bytes(trace)
        if data is None:
            log.warning("saved %s %s is not signed by this machine's builds (made elsewhere, or changed "
                        "since); building the model instead", tower, trace.name)
            return None
        return load(data)
    except Exception as exc:  # noqa: BLE001 (a torn or foreign file: the model is built instead)
        log.warning("saved %s %s unreadable (%s); building the model", tower, trace.name, exc)
        return None


def wanted(trace: Path | None, *, make_trace: bool) -> bool:
    """Whether a build that just built the model should trace it: asked to, and not refused before."""
    return make_trace and trace is not None and not refused(trace).exists()
