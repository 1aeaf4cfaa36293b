"""The build's encoder in a process of its own, loaded while the build's first stages run.

Loading the encoder means importing torch and reading the saved towers: 2.5–3 s of one core on a slow
2-core machine, before a single text is encoded. A daily build encodes one text and one title, so that
load was a third of its critical path, spent while the machine's other core sat idle: the build's first
stages (reading the archive, attaching pictures) are single-threaded Python, and Python's import lock
and GIL keep a thread from loading torch beside them. A process can. So with the local runner the build
starts an :class:`EncoderHost` before its first stage, and the stages talk to the encoder through it: the
same :class:`~atlas.encoders.base.Encoder` interface, each call run in the host (pictures are sent as
their paths and read there). The main process never imports torch then.

The host runs at normal priority with the build's thread count (while it encodes, the main process
waits for it), keeps freed memory as build processes do (:func:`atlas.device.keep_freed_memory`), and
dies with the build. A build that has nothing to encode (a no-op, a changed map setting) closes it
unused: its import ran on the core the build's main process left idle. An encoder that cannot load
(:class:`~atlas.encoders.base.EncoderUnavailable`: no OpenCLIP weights, say) raises its own message
at the first call, as it would have in the main process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from atlas.encoders.base import Encoder, EncoderInfo
from pipeline.background import die_with, terminate, thread_only_progress_lock
from pipeline.encoding import encode_with

#: The host process's encoder, or what stopped it from loading (set once, by :func:`_load`).
_HOSTED: Encoder | BaseException | None = None


def _load(make: Callable[[], Encoder], threads: int, parent: int) -> None:
    """Host start-up: tie its life to the build's, set its threads, then load the encoder (a failure is
    kept and raised by every call, not lost as a broken pool)."""
    global _HOSTED
    from atlas.device import keep_freed_memory, set_threads

    die_with(parent)
    thread_only_progress_lock()
    keep_freed_memory()
    set_threads(threads)
    try:
        _HOSTED = make()
    except Exception as exc:  # noqa: BLE001 (raised again, with its own message, by the first call)
        _HOSTED = exc


def _encoder() -> Encoder:
    if isinstance(_HOSTED, BaseException):
        raise _HOSTED
    if _HOSTED is None:
        raise RuntimeError("the encoder host has not loaded an encoder")
    return _HOSTED


def _info() -> EncoderInfo:
    return _encoder().info


def _call(method: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(_encoder(), method)(*args, **kwargs)


def _encode_inputs(kind: str, inputs: list[Any], root: Path, batch_size: int) -> np.ndarray:
    return encode_with(_encoder(), kind, inputs, root=root, batch_size=batch_size)


class EncoderHost(Encoder):
    """An :class:`~atlas.encoders.base.Encoder` whose model lives in a spawned process. ``make`` builds the
    encoder there: a picklable call (a ``functools.partial`` of :func:`atlas.encoders.build_encoder`)."""

    def __init__(self, make: Callable[[], Encoder], *, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_load, initargs=(make, threads, os.getpid()))
        self._info: Future[EncoderInfo] = self._pool.submit(_info)  # starts the process, which loads

    @property
    def info(self) -> EncoderInfo:  # type: ignore[override]
        return self._info.result()

    def _run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._pool is None:
            raise RuntimeError("the encoder host was closed")
        return self._pool.submit(call, *args, **kwargs).result()

    def encode_text(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._run(_call, "encode_text", list(texts), batch_size=batch_size, progress=progress)

    def encode_images(self, images: list[Any], *, batch_size: int = 32) -> np.ndarray:
        return self._run(_call, "encode_images", list(images), batch_size=batch_size)

    def image_space(self, features: np.ndarray) -> dict[str, np.ndarray]:
        return self._run(_call, "image_space", features)

    def to_image_vectors(self, features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(_call, "to_image_vectors", features, state)

    def encode_inputs(self, kind: str, inputs: list[Any], *, root: Path, batch_size: int) -> np.ndarray:
        """:func:`pipeline.encoding.encode_with` in the host: pictures travel as paths, not pixels."""
        return self._run(_encode_inputs, kind, list(inputs), root, batch_size)

    def cpu_seconds(self) -> float:
        """CPU time the host process has used so far, its loading included (0 once it is gone). Read
        from outside: a call would wait behind the loading or an encoding under way."""
        import psutil

        for pid in list((getattr(self._pool, "_processes", None) or {})):
            try:
                used = psutil.Process(pid).cpu_times()
            except psutil.Error:
                return 0.0
            return used.user + used.system
        return 0.0

    def close(self) -> None:
        """Stop the host (at once: a build that is done, or failed, waits for no encoding)."""
        if self._pool is None:
            return
        terminate(self._pool)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
