import mmap
import time

import pytest

from pipeline.metrics import RunMetrics

SEED_COLUMNS = {"timestamp", "process", "duration_seconds", "gpu_name", "gpu_utilization_percent",
                "gpu_memory_used_bytes", "gpu_memory_total_bytes"}


def test_sampler_and_stage_timings():
    import psutil

    before = psutil.Process().memory_info().rss  # the test process already holds numpy, torch…
    m = RunMetrics("run-1", interval=0.05).start()
    outside = time.perf_counter()
    with m.stage("work") as st:
        # 20 MB of fresh pages (an anonymous map, written): freed heap memory the suite's earlier tests left
        # resident could serve a plain allocation without RSS growing
        data = mmap.mmap(-1, 20 << 20)
        data.write(b"x" * (20 << 20))
        time.sleep(0.3)
        st["items"] = 30
    outside = time.perf_counter() - outside
    m.stop()
    data.close()
    samples = [r for r in m.rows if r["record"] == "sample"]
    stages = [r for r in m.rows if r["record"] == "stage"]
    assert len(samples) >= 3
    assert SEED_COLUMNS <= set(samples[0])
    assert all(s["rss_bytes"] > 0 and s["cpu_percent"] is not None for s in samples)
    assert {s["process"] for s in samples} >= {"work"}
    assert stages[0]["process"] == "work" and stages[0]["items"] == 30
    assert 0.3 <= stages[0]["duration_seconds"] <= outside  # the stage's own time, timed from inside it
    assert m.stages["work"]["items_per_second"] > 0
    assert m.stages["work"]["peak_rss_bytes"] >= before + (18 << 20)  # the stage's own 20 MB seen


def test_samples_count_the_builds_child_processes():
    """A child that works while the main process waits (the encoder's process, the background worker)
    shows in the samples: CPU and memory of the whole tree, not an idle main process."""
    import subprocess
    import sys

    import psutil

    burn = "import time\nx = bytearray(200 << 20)\nwhile time.process_time() < 1.5: pass"  # 1.5 s of CPU, however slow
    child = subprocess.Popen([sys.executable, "-c", burn])
    m = RunMetrics("run-2", interval=0.25).start()
    try:
        with m.stage("waiting"):
            child.wait(timeout=30)
    finally:
        m.stop()
    samples = [r for r in m.rows if r["record"] == "sample"]
    main_rss = psutil.Process().memory_info().rss
    cpu_seconds = sum(s["cpu_percent"] for s in samples) / 100 * m.interval  # the main process only waited
    assert cpu_seconds > 0.75
    assert max(s["rss_bytes"] for s in samples) > main_rss + (150 << 20)


def test_gpu_columns_are_null_without_a_gpu():
    m = RunMetrics("run-2")
    m.sample()
    row = m.rows[0]
    if m._gpu.handle is not None:
        pytest.skip("this machine has an NVIDIA GPU: test_gpu_columns_report_the_device covers it")
    assert row["gpu_name"] is None and row["gpu_utilization_percent"] is None
    assert row["gpu_memory_used_bytes"] is None and row["gpu_memory_total_bytes"] is None


@pytest.mark.gpu
def test_gpu_columns_report_the_device():
    """Where CUDA is present, NVML must name the GPU and report its memory (skipped elsewhere)."""
    import torch

    m = RunMetrics("run-3")
    m.sample()
    row = m.rows[0]
    assert row["gpu_name"] and torch.cuda.get_device_name(0) in row["gpu_name"]
    assert 0 < row["gpu_memory_used_bytes"] <= row["gpu_memory_total_bytes"]
    assert 0 <= row["gpu_utilization_percent"] <= 100
