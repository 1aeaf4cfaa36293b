"""Run metrics: per-stage wall time, items/s and peak memory, plus a background resource sampler.

The sampler writes the seed's columns (timestamp, process, duration_seconds, gpu_name,
gpu_utilization_percent, gpu_memory_used_bytes, gpu_memory_total_bytes) through NVML when a GPU is
present, and CPU % and RSS always (of the build's whole process tree). Without a GPU or NVML the GPU
columns are null, not zero.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import psutil

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Gpu:
    """NVML handle for GPU 0, or nothing when there is no NVIDIA driver."""

    def __init__(self) -> None:
        self.handle = None
        self.name: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
                name = pynvml.nvmlDeviceGetName(self.handle)
                self.name = name.decode() if isinstance(name, bytes) else name
            self._nvml = pynvml
        except Exception as exc:  # NVMLError, ImportError, missing driver library
            log.debug("no GPU metrics: %s", exc)

    def sample(self) -> dict[str, Any]:
        if self.handle is None:
            return {"gpu_name": None, "gpu_utilization_percent": None, "gpu_memory_used_bytes": None,
                    "gpu_memory_total_bytes": None}
        util = self._nvml.nvmlDeviceGetUtilizationRates(self.handle)
        mem = self._nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return {"gpu_name": self.name, "gpu_utilization_percent": float(util.gpu),
                "gpu_memory_used_bytes": int(mem.used), "gpu_memory_total_bytes": int(mem.total)}


@dataclass
class RunMetrics:
    run_id: str
    interval: float = 0.5
    rows: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stage: str = "startup"
    _peak_rss: int = 0

    def __post_init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self._tree: dict[int, psutil.Process] = {}  # the build's child processes, kept for their CPU deltas
        self._sampling = threading.Lock()  # the sampler thread and stage starts both sample
        self._gpu = Gpu()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._started = time.perf_counter()

    def start(self) -> "RunMetrics":
        self._proc.cpu_percent(None)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _rss(self) -> int:
        rss = self._proc.memory_info().rss
        with self._lock:
            self._peak_rss = max(self._peak_rss, rss)
        return rss

    def _tree_usage(self) -> tuple[float, int]:
        """CPU % and RSS of the build's whole process tree: the main process, the encoder's process, the
        background worker and the projection workers (a sample of the main process alone showed an idle
        build while its worker ran the anomaly detectors). A child's first sample counts no CPU yet."""
        cpu, rss = float(self._proc.cpu_percent(None)), self._rss()
        try:
            children = self._proc.children(recursive=True)
        except psutil.Error:
            children = []
        alive = {}
        for child in children:
            known = self._tree.get(child.pid)
            proc = known if known is not None and known == child else child  # == compares start times: pid reuse
            try:
                since_last = proc.cpu_percent(None)  # a child's first call only starts its count
                cpu += since_last if proc is known else 0.0
                rss += proc.memory_info().rss
            except psutil.Error:  # ended between the listing and the reading
                continue
            alive[child.pid] = proc
        self._tree = alive
        return cpu, rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._sampling:
            self._sample()

    def _sample(self) -> None:
        row = {
            "run_id": self.run_id, "record": "sample", "timestamp": _now(), "process": self._stage,
            "duration_seconds": time.perf_counter() - self._started, "items": None,
            "items_per_second": None, "peak_rss_bytes": None,
        } | dict(zip(("cpu_percent", "rss_bytes"), self._tree_usage())) | self._gpu.sample()
        with self._lock:
            self.rows.append(row)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a stage; the body may set ``info['items']`` for throughput, or ``info['background']``
        when it handed the stage to the worker process (recorded later by :meth:`record_stage`)."""
        info: dict[str, Any] = {"items": None}
        with self._lock:
            self._stage, self._peak_rss = name, 0
        start = time.perf_counter()
        self.sample()
        try:
            yield info
        except BaseException:  # not recorded, nor logged as done: the build's error (or interruption) says why
            log.error("stage %-9s failed after %.1fs", name, time.perf_counter() - start)
            raise
        wall = time.perf_counter() - start
        self._rss()
        if info.get("background"):
            self.stages[name] = {"wall_seconds": None, "skipped": False}  # its place in the stage order
            with self._lock:
                self._stage = "between stages"
            log.info("stage %-9s handed to the worker process", name)
        else:
            self.record_stage(name, wall=wall, items=info.get("items"), peak_rss=self._peak_rss,
                              skipped=bool(info.get("skipped")), carried_over=info.get("carried_over"))

    def record_stage(self, name: str, *, wall: float, items: int | None, peak_rss: int, skipped: bool = False,
                     carried_over: bool | None = None, where: str | None = None) -> None:
        """A stage's summary and metrics row; ``where`` names another process that ran it (its own peak RSS)."""
        summary = {
            "wall_seconds": round(wall, 3),
            "items": items,
            "items_per_second": round(items / wall, 2) if items and wall > 0 else None,
            "peak_rss_bytes": peak_rss,
            "skipped": skipped,
            **({"carried_over": carried_over} if carried_over is not None else {}),
            **({"ran_in": where} if where else {}),
        }
        self.stages[name] = summary
        with self._lock:
            self.rows.append({
                "run_id": self.run_id, "record": "stage", "timestamp": _now(), "process": name,
                "duration_seconds": wall, "items": items, "items_per_second": summary["items_per_second"],
                "peak_rss_bytes": peak_rss, "cpu_percent": None, "rss_bytes": None,
            } | self._gpu.sample())
            if where is None:
                self._stage = "between stages"
        log.info("stage %-9s %s in %.1fs%s%s", name, _state(summary), wall,
                 f", {items} items, {summary['items_per_second']}/s" if items and not skipped else "",
                 f" ({where})" if where else "")


def _state(summary: dict) -> str:
    if summary.get("carried_over") is not None:
        return "kept (collection not in this build)"
    return "skipped (inputs unchanged)" if summary["skipped"] else "done"
