"""The stage runner with stages of its own: a background stage runs in the worker process beside the
stages after it, its failure stops the build and the next build resumes it, and the switch that keeps
every stage in this process."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from lake import manifest as manifest_io
from lake.layout import LakeLayout
from lake.writer import LakeWriter
from pipeline.config import BuildConfig
from pipeline.runner import BuildInterrupted, Runner, Stage, StageResult

log = logging.getLogger("tests.background_stage")


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared: the two stages did not run at the same time")
        time.sleep(0.02)


def waits_for_the_next_stage(ctx) -> StageResult:
    """Starts, then finishes only once the stage registered after it has run (which waits for this one
    to start): both orders of running them one after the other time out."""
    (ctx.layout.root / "background-started").write_text("")
    _wait_for(ctx.layout.root / "later-ran")
    log.info("background stage done in process %d", os.getpid())
    return StageResult(items=7, manifest={"background": {"pid": os.getpid()}})


def waits_for_the_background_stage(ctx) -> StageResult:
    _wait_for(ctx.layout.root / "background-started")
    (ctx.layout.root / "later-ran").write_text("")
    return StageResult(items=1, manifest={"later": {"pid": os.getpid()}})


def later(ctx) -> StageResult:
    return StageResult(items=1, manifest={"later": {"pid": os.getpid()}})


def reports_its_process(ctx) -> StageResult:
    return StageResult(items=7, manifest={"background": {"pid": os.getpid()}})


def fails(ctx) -> StageResult:
    if (ctx.layout.root / "let-it-pass").exists():
        return reports_its_process(ctx)
    raise RuntimeError("detector broke")


def _runner(run, *, after=later) -> Runner:
    return Runner([Stage("first", lambda ctx: StageResult(items=1), lambda ctx: "first-v1"),
                   Stage("background", run, lambda ctx: [ctx.hash("first"), "v1"], background=True,
                         warm=("json",)),
                   Stage("later", after, lambda ctx: [ctx.hash("first"), "v1"])])


def _cfg(tmp_path: Path, **overrides) -> BuildConfig:
    return BuildConfig(**{"lake": LakeLayout.at(tmp_path / "lake"), "collections": ["apod"], "threads": 2,
                          "progress": False, **overrides})


def test_a_background_stage_runs_in_the_worker_beside_the_stages_after_it(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    summary = _runner(waits_for_the_next_stage, after=waits_for_the_background_stage).run(_cfg(tmp_path))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    worker_pid = live["background"]["pid"]
    assert worker_pid != os.getpid() and live["later"]["pid"] == os.getpid()
    stage = live["stages"]["background"]
    assert stage["ran_in"] == "worker process" and stage["items"] == 7 and stage["wall_seconds"] > 0.01
    assert isinstance(stage["cpu_seconds"], float) and stage["cpu_seconds"] >= 0 and stage["peak_rss_bytes"] > 0
    assert list(summary.stages) == ["first", "background", "later"]  # the registration order, kept
    # the worker's log record reached this process's handlers
    assert f"background stage done in process {worker_pid}" in caplog.text
    # a no-op rebuild skips it like any stage
    again = _runner(waits_for_the_next_stage, after=waits_for_the_background_stage).run(_cfg(tmp_path))
    assert again.stages["background"]["skipped"] and again.stages["later"]["skipped"]


def test_without_background_stages_everything_runs_in_this_process(tmp_path):
    _runner(reports_its_process).run(_cfg(tmp_path, background_stages=False))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["background"]["pid"] == os.getpid() and "ran_in" not in live["stages"]["background"]
    # one thread: no CPU to spare for a worker either
    _runner(reports_its_process).run(_cfg(tmp_path / "one", threads=1))
    assert manifest_io.read_if_exists(LakeLayout.at(tmp_path / "one" / "lake").manifest)["background"]["pid"] == os.getpid()


def test_a_stage_can_run_in_the_background_for_some_settings_only(tmp_path):
    """The vector tables are written in the worker with the local runner, in the main process with
    Ray's (whose executor the main process holds): ``background`` may be a function of the settings."""
    def runner() -> Runner:
        return Runner([Stage("first", lambda ctx: StageResult(items=1), lambda ctx: "first-v1"),
                       Stage("background", reports_its_process, lambda ctx: [ctx.hash("first"), "v1"],
                             background=lambda cfg: cfg.seed == 1)])

    runner().run(_cfg(tmp_path / "yes", seed=1))
    assert manifest_io.read_if_exists(LakeLayout.at(tmp_path / "yes" / "lake").manifest)["background"]["pid"] != os.getpid()
    runner().run(_cfg(tmp_path / "no", seed=2))
    assert manifest_io.read_if_exists(LakeLayout.at(tmp_path / "no" / "lake").manifest)["background"]["pid"] == os.getpid()


def busy_until_the_next_background_stage_ran(ctx) -> StageResult:
    _wait_for(ctx.layout.root / "second-ran")
    return StageResult(items=1, manifest={"busy": {"pid": os.getpid()}})


def second_background_stage(ctx) -> StageResult:
    (ctx.layout.root / "second-ran").write_text("")
    return StageResult(items=2, manifest={"second": {"pid": os.getpid()}})


def _two_background_stages(busy, last: Stage) -> Runner:
    """first (here), busy and second (background, in that order), then ``last`` (here)."""
    return Runner([Stage("first", lambda ctx: StageResult(items=1), lambda ctx: "first-v1"),
                   Stage("busy", busy, lambda ctx: "busy-v1", background=True),
                   Stage("second", second_background_stage, lambda ctx: "second-v1", background=True),
                   last])


def test_the_main_process_takes_a_background_stage_the_busy_worker_has_not_started(tmp_path):
    """Two background stages and a worker still on the first when the main process has run its own:
    the main process runs the second (a worker that took both in turn would wait here for ever: the
    first finishes only once the second has run)."""
    runner = _two_background_stages(busy_until_the_next_background_stage_ran, Stage("later", later, lambda ctx: "later-v1"))
    summary = runner.run(_cfg(tmp_path))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["busy"]["pid"] != os.getpid() and live["stages"]["busy"]["ran_in"] == "worker process"
    assert live["second"]["pid"] == os.getpid() and "ran_in" not in live["stages"]["second"]
    assert live["stages"]["second"]["items"] == 2 and isinstance(live["stages"]["second"]["cpu_seconds"], float)
    assert list(summary.stages) == ["first", "busy", "second", "later"]
    again = runner.run(_cfg(tmp_path))
    assert all(st["skipped"] for st in again.stages.values())


def first_with_a_manifest(ctx) -> StageResult:
    return StageResult(items=1, manifest={"first": {"mode": ctx.cfg.seed}})


def reads_what_the_build_knows(ctx) -> StageResult:
    """What a stage keeping work from the published build (the clusters, the sky positions) asks: the
    published manifest, and an earlier stage's section of this build."""
    return StageResult(items=1, manifest={"seen": {"pid": os.getpid(), "first": ctx.manifest_of("first"),
                                                   "published": ctx.live_manifest("first")}})


def test_a_background_stage_sees_the_published_manifest_and_this_builds_earlier_stages(tmp_path):
    runner = Runner([Stage("first", first_with_a_manifest, lambda ctx: ["first-v1", ctx.cfg.seed]),
                     Stage("reader", reads_what_the_build_knows, lambda ctx: ctx.hash("first"), background=True),
                     Stage("later", later, lambda ctx: "later-v1")])
    runner.run(_cfg(tmp_path, seed=1))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["seen"]["pid"] != os.getpid()  # it did run in the worker
    assert live["seen"]["first"] == {"first": {"mode": 1}} and live["seen"]["published"] == {}
    runner.run(_cfg(tmp_path, seed=2))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["seen"]["pid"] != os.getpid()
    assert live["seen"]["first"] == {"first": {"mode": 2}} and live["seen"]["published"] == {"first": {"mode": 1}}


def busy_until_the_long_stage_started(ctx) -> StageResult:
    _wait_for(ctx.layout.root / "long-started")
    return StageResult(items=1, manifest={"busy": {"pid": os.getpid()}})


def long_until_the_second_background_stage_ran(ctx) -> StageResult:
    (ctx.layout.root / "long-started").write_text("")
    _wait_for(ctx.layout.root / "second-ran")
    return StageResult(items=1, manifest={"long": {"pid": os.getpid()}})


def test_the_worker_gets_the_next_background_stage_while_the_main_process_is_inside_a_long_one(tmp_path):
    """The worker is still on one background stage when a second is queued; it finishes that one while
    the main process is inside a long stage of its own, and gets the second at once (the long stage
    finishes only once the second has run: a worker that waited for the main process to look up
    would wait for ever)."""
    runner = _two_background_stages(busy_until_the_long_stage_started,
                                    Stage("long", long_until_the_second_background_stage_ran, lambda ctx: "long-v1"))
    summary = runner.run(_cfg(tmp_path))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["busy"]["pid"] != os.getpid() and live["second"]["pid"] == live["busy"]["pid"]
    assert live["stages"]["second"]["ran_in"] == "worker process" and live["long"]["pid"] == os.getpid()
    assert list(summary.stages) == ["first", "busy", "second", "long"]
    assert all(st["skipped"] for st in runner.run(_cfg(tmp_path)).stages.values())


def test_a_failed_background_stage_stops_the_build_and_the_next_build_resumes_it(tmp_path):
    lake = LakeLayout.at(tmp_path / "lake")
    with pytest.raises(RuntimeError, match="detector broke"):
        _runner(fails).run(_cfg(tmp_path))
    assert manifest_io.read_if_exists(lake.manifest) is None  # nothing published
    staged = manifest_io.read_if_exists(lake.staged_manifest)
    assert "later" in staged["stages"] and "background" not in staged["stages"]
    (lake.root / "let-it-pass").write_text("")
    summary = _runner(fails).run(_cfg(tmp_path))
    assert not summary.stages["background"]["skipped"] and summary.stages["later"]["skipped"]  # resumed
    assert manifest_io.read_if_exists(lake.manifest)["background"]["pid"] != os.getpid()


def finishes_at_once(ctx) -> StageResult:
    (ctx.layout.root / "background-finished").write_text("")
    return reports_its_process(ctx)


def fails_after_the_background_stage(ctx) -> StageResult:
    _wait_for(ctx.layout.root / "background-finished")  # its answer is on its way back: the runner waits for it
    if (ctx.layout.root / "later-fails").exists():
        raise RuntimeError("later stage broke")
    return later(ctx)


def test_a_background_stage_that_finished_is_resumed_after_a_later_stage_fails(tmp_path):
    lake = LakeLayout.at(tmp_path / "lake")
    lake.root.mkdir(parents=True)
    (lake.root / "later-fails").write_text("")
    with pytest.raises(RuntimeError, match="later stage broke"):
        _runner(finishes_at_once, after=fails_after_the_background_stage).run(_cfg(tmp_path))
    assert "background" in manifest_io.read_if_exists(lake.staged_manifest)["stages"]
    (lake.root / "later-fails").unlink()
    summary = _runner(finishes_at_once, after=fails_after_the_background_stage).run(_cfg(tmp_path))
    assert summary.stages["background"]["skipped"] and not summary.stages["later"]["skipped"]


def test_a_stage_that_always_runs_cannot_be_a_background_stage():
    with pytest.raises(ValueError, match="cannot run in the background"):
        Runner([Stage("ingest", reports_its_process, None, background=True)])


def sleeps_then_writes(ctx) -> StageResult:
    """Writes once the test says so (after it killed the build): only a worker that outlived it can."""
    (ctx.layout.root / "worker.pid").write_text(str(os.getpid()))
    _wait_for(ctx.layout.root / "go")
    (ctx.layout.root / "late-write").write_text("the worker outlived its build")
    return StageResult(items=1)


BUILD_SCRIPT = """
import sys
from pathlib import Path
from tests.test_runner import _cfg, _runner, sleeps_then_writes
_runner(sleeps_then_writes).run(_cfg(Path(sys.argv[1])))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has finished: it only waits to be reaped


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the kernel's parent-death signal is Linux's")
def test_a_killed_build_takes_its_worker_with_it(tmp_path):
    """A build killed mid-stage (SIGKILL: no clean-up runs) leaves no worker writing into its staging
    area, where the next build could pick the stale output up."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    build = subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(tmp_path)], cwd=root)
    pid_file = tmp_path / "lake" / "worker.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "the background stage never started"
    worker = int(pid_file.read_text())
    assert worker != build.pid and _alive(worker)
    build.send_signal(signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
    (tmp_path / "lake" / "go").write_text("")
    time.sleep(0.5)  # a surviving worker polls for it every 0.02 s
    assert not (tmp_path / "lake" / "late-write").exists()


def waits_in_a_pool(root: Path, rows, i: int):
    """A batch of :meth:`pipeline.executors.LocalExecutor.map_batches`: says which process runs it, then
    writes once the test says so (after it killed the build): only a pool worker that outlived it can."""
    (root / f"pool-{os.getpid()}.pid").write_text("")
    _wait_for(root / "go")
    (root / "late-write").write_text("a pool worker outlived its build")
    return rows


POOL_SCRIPT = """
import functools, sys
from pathlib import Path
import numpy as np
from pipeline.executors import LocalExecutor
from tests.test_runner import waits_in_a_pool
LocalExecutor(threads=2, pool_min_batches=2).map_batches(
    functools.partial(waits_in_a_pool, Path(sys.argv[1])), np.zeros((4, 2), np.float32), [slice(0, 2), slice(2, 4)])
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the kernel's parent-death signal is Linux's")
def test_a_killed_build_takes_its_process_pool_with_it(tmp_path):
    """The pools that place points and fit maps (``pipeline.background.process_pool``) die with a build
    killed mid-batch: none goes on for minutes, or waits for ever for work that never comes."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    build = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT, str(tmp_path)], cwd=root)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pool-*.pid"))) < 2 and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p.name[5:-4]) for p in tmp_path.glob("pool-*.pid")]
    assert len(workers) == 2 and all(map(_alive, workers)) and build.pid not in workers
    build.send_signal(signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers))
    (tmp_path / "go").write_text("")
    time.sleep(0.5)  # a surviving worker polls for it every 0.02 s
    assert not (tmp_path / "late-write").exists()


def waits_for_go(ctx) -> StageResult:
    """A long stage: it ends once the test says so (or never, when the test kills the build first)."""
    _wait_for(ctx.layout.root / "go")
    return later(ctx)


STOPPED_BUILD_SCRIPT = """
import sys
from pathlib import Path
from pipeline.cli import terminate_as_interrupt
from pipeline.runner import BuildInterrupted
from tests.test_runner import _cfg, _runner, finishes_at_once, waits_for_go
try:
    with terminate_as_interrupt():
        _runner(finishes_at_once, after=waits_for_go).run(_cfg(Path(sys.argv[1])))
except BuildInterrupted as exc:
    print(f"interrupted; live: {exc.live}")
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_background_stage_the_worker_finished_survives_a_build_killed_inside_a_long_stage(tmp_path, how):
    """The worker finishes a stage while the build's own thread is inside a long one; the build is then
    killed (SIGKILL, the OOM killer: nothing runs) or terminated (SIGTERM: it stops as Ctrl-C stops it).
    The finished stage's resume record was saved when the worker finished it, so the next build reuses it."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    lake = LakeLayout.at(tmp_path / "lake")
    build = subprocess.Popen([sys.executable, "-c", STOPPED_BUILD_SCRIPT, str(tmp_path)], cwd=root,
                             stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while build.poll() is None and time.monotonic() < deadline:
        record = manifest_io.read_if_exists(lake.staged_manifest) if lake.staged_manifest.is_file() else None
        if record and "background" in record.get("stages", {}):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the finished background stage was not recorded while the build's thread was busy")
    assert not (lake.root / "go").exists() and build.poll() is None  # the build's thread: still in its stage
    build.send_signal(getattr(signal, how))
    out, _ = build.communicate(timeout=30)
    if how == "SIGTERM":
        assert build.returncode == 130 and "interrupted; live: None" in out, out
    else:
        assert build.returncode == -signal.SIGKILL
    assert manifest_io.read_if_exists(lake.manifest) is None  # nothing went live
    summary = _runner(finishes_at_once, after=later).run(_cfg(tmp_path))
    assert summary.stages["background"]["skipped"] and not summary.stages["later"]["skipped"]


def test_an_interrupt_after_the_switch_names_the_version_that_went_live(tmp_path, monkeypatch):
    """Ctrl-C while the old versions are being pruned: the new version is live already, and the
    interrupt says so (the CLI's message then does not claim the published lake is unchanged)."""
    def interrupted(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(LakeWriter, "prune", interrupted)
    with pytest.raises(BuildInterrupted) as caught:
        _runner(reports_its_process).run(_cfg(tmp_path, background_stages=False))
    assert caught.value.live is not None and caught.value.live == LakeLayout.at(tmp_path / "lake").current_version()


def test_a_stage_run_again_by_its_rerun_takes_the_stages_after_it_along_once(tmp_path):
    """``--refit`` re-fits through a stage's ``rerun`` (it was an input: the plain build after a ``--refit``
    build re-ran five stages only because the flag was gone). The stage run again gives the stages after
    it an output hash of its own, so they run again with it; the next plain build skips them all."""
    runner = Runner([Stage("fitted", lambda ctx: StageResult(items=1), lambda ctx: "fitted-v1",
                           rerun=lambda ctx: ctx.cfg.refit),
                     Stage("reader", later, lambda ctx: [ctx.hash("fitted"), "v1"])])

    def ran(summary) -> list[str]:
        return [name for name, st in summary.stages.items() if not st.get("skipped")]

    assert ran(runner.run(_cfg(tmp_path))) == ["fitted", "reader"]
    assert ran(runner.run(_cfg(tmp_path))) == []
    assert ran(runner.run(_cfg(tmp_path, refit=True))) == ["fitted", "reader"]  # re-fitted, and read again
    assert ran(runner.run(_cfg(tmp_path))) == []  # the plain build after it: nothing to redo
    assert ran(runner.run(_cfg(tmp_path, refit=True))) == ["fitted", "reader"]
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)["stages"]["fitted"]
    assert live["input_hash"] != live["output_hash"]


def test_a_refit_after_a_plain_build_died_refits_rather_than_resuming_it(tmp_path):
    """A plain build staged a stage's output and died; ``--refit`` then runs that stage again (a resumed
    plain output is not a re-fit). A ``--refit`` build that died is resumed by the next ``--refit``."""
    lake = LakeLayout.at(tmp_path / "lake")
    lake.root.mkdir(parents=True)

    def runner(after):
        return Runner([Stage("fitted", lambda ctx: StageResult(items=1), lambda ctx: "fitted-v1",
                             rerun=lambda ctx: ctx.cfg.refit),
                       Stage("later", after, lambda ctx: [ctx.hash("fitted"), "v1"])])

    Runner([Stage("fitted", lambda ctx: StageResult(items=1), lambda ctx: "fitted-v1")]).run(_cfg(tmp_path))
    (lake.root / "later-fails").write_text("")
    (lake.root / "background-finished").write_text("")
    with pytest.raises(RuntimeError, match="later stage broke"):
        runner(fails_after_the_background_stage).run(_cfg(tmp_path, refit=True))
    (lake.root / "later-fails").unlink()
    summary = runner(fails_after_the_background_stage).run(_cfg(tmp_path, refit=True))
    assert summary.stages["fitted"]["skipped"]  # the refit that died had re-fitted it: resumed
    with pytest.raises(RuntimeError, match="later stage broke"):
        (lake.root / "later-fails").write_text("")
        Runner([Stage("fitted", lambda ctx: StageResult(items=2), lambda ctx: "fitted-v2",
                      rerun=lambda ctx: ctx.cfg.refit),
                Stage("later", fails_after_the_background_stage, lambda ctx: [ctx.hash("fitted"), "v1"])]
               ).run(_cfg(tmp_path))  # a plain build: fitted-v2 runs (new inputs), later dies
    (lake.root / "later-fails").unlink()
    summary = Runner([Stage("fitted", lambda ctx: StageResult(items=2), lambda ctx: "fitted-v2",
                            rerun=lambda ctx: ctx.cfg.refit),
                      Stage("later", later, lambda ctx: [ctx.hash("fitted"), "v1"])]).run(_cfg(tmp_path, refit=True))
    assert not summary.stages["fitted"]["skipped"] and not summary.stages["later"]["skipped"]


@pytest.mark.parametrize("given, used", [(None, "0"), ("1", "1")])
def test_build_processes_ask_for_no_huge_pages_unless_told(given, used):
    """The command line (``python -m pipeline``, ``cosmic-atlas``: both load ``pipeline.__main__``) turns
    off numpy's huge-page advice before numpy loads, and its build worker inherits the setting; a value
    the user set is kept. Importing the package alone changes nothing."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env["GIVEN"] = given
    code = ("import multiprocessing as mp, os, sys\n"
            "import pipeline\n"
            "assert os.getenv('NUMPY_MADVISE_HUGEPAGE') == os.getenv('GIVEN') and 'numpy' not in sys.modules\n"
            "import pipeline.__main__, numpy\n"
            "in_numpy = numpy._core.multiarray._set_madvise_hugepage(True)  # returns the setting it replaces\n"
            "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], int(in_numpy))\n"
            "with mp.get_context('spawn').Pool(1) as pool:\n"
            "    print(pool.apply(os.getenv, ('NUMPY_MADVISE_HUGEPAGE',)))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [used, used, used]


class _Loaded:
    """Stands for what a stage's ``ahead`` starts loading elsewhere (the encoder's process)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        events.append("ahead")

    def close(self) -> None:
        self.events.append("closed")


def test_what_a_stage_loads_ahead_starts_before_the_first_stage_and_stops_with_the_build(tmp_path):
    """``ahead`` runs as the build starts (so the encoder loads while the first stages run), only for
    the collections being built, and what it left among the build's resources is closed at the end,
    also when a stage fails."""
    events: list[str] = []

    def ahead(ctx) -> None:
        ctx.resource("encoder", lambda: _Loaded(events))

    def stage(name: str, *, fail: bool = False, collection: str = "apod") -> Stage:
        def run(ctx) -> StageResult:
            events.append(name)
            if fail:
                raise RuntimeError("stage broke")
            return StageResult(items=1)
        return Stage(name, run, lambda ctx: [name, "v1"], collection=collection, ahead=ahead if name == "embed" else None)

    Runner([stage("first"), stage("embed"), stage("last")]).run(_cfg(tmp_path / "a"))
    assert events == ["ahead", "first", "embed", "last", "closed"]
    events.clear()
    with pytest.raises(RuntimeError, match="stage broke"):
        Runner([stage("first"), stage("embed", fail=True)]).run(_cfg(tmp_path / "b"))
    assert events == ["ahead", "first", "embed", "closed"]
    events.clear()
    Runner([stage("first"), stage("embed", collection="gz2")]).run(_cfg(tmp_path / "c"))
    assert events == ["first"]  # gz2 is not being built: nothing loaded for it


def test_cpu_a_stage_used_in_another_process_counts_as_its_own(tmp_path):
    """The encoder's process works for the embed stage: the CPU it reports (``cpu_elsewhere``) is added
    to the stage's, so per-stage CPU in the manifest still adds up to what the build used."""
    def helped(ctx) -> StageResult:
        return StageResult(items=1, cpu_elsewhere=12.5)

    Runner([Stage("helped", helped, lambda ctx: "v1")]).run(_cfg(tmp_path))
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert 12.5 <= live["stages"]["helped"]["cpu_seconds"] < 14


def broken_here(ctx) -> StageResult:
    raise RuntimeError("stage broke")


def test_a_failed_stage_is_logged_as_failed_not_done(tmp_path, caplog):
    runner = Runner([Stage("first", lambda ctx: StageResult(items=1), lambda ctx: "first-v1"),
                     Stage("broken", broken_here, lambda ctx: [ctx.hash("first"), "v1"])])
    caplog.set_level(logging.INFO, logger="pipeline.metrics")
    with pytest.raises(RuntimeError, match="stage broke"):
        runner.run(_cfg(tmp_path, background_stages=False))
    said = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert any("failed after" in m for m in said) and not any(" done " in m for m in said), said



def test_a_background_stage_sees_the_record_of_a_stage_this_build_reused(tmp_path):
    """The worker reads an earlier stage's section from the staged manifest, where a stage reused from
    the published lake never goes: it sees the published section, as the main process does (before, it
    saw nothing, and the clusters of placed maps were made afresh in the worker only)."""
    runner = Runner([Stage("first", first_with_a_manifest, lambda ctx: ["first-v1", ctx.cfg.seed]),
                     Stage("reader", reads_what_the_build_knows, lambda ctx: [ctx.hash("first"), ctx.cfg.n_clusters],
                           background=True),
                     Stage("later", later, lambda ctx: "later-v1")])
    runner.run(_cfg(tmp_path, seed=1))
    summary = runner.run(_cfg(tmp_path, seed=1, n_clusters=5))  # "first" reused, "reader" runs again
    assert summary.stages["first"]["skipped"] and not summary.stages["reader"]["skipped"]
    live = manifest_io.read_if_exists(LakeLayout.at(tmp_path / "lake").manifest)
    assert live["seen"]["pid"] != os.getpid() and live["seen"]["first"] == {"first": {"mode": 1}}


def makes_a_folder(ctx) -> StageResult:
    """Writes its output folder in two steps; with ``break-midway`` in the lake, stops between them (a
    build killed while it works)."""
    out = ctx.layout.staging / "made"
    out.mkdir(parents=True, exist_ok=True)
    (out / "part-1").write_text(str(ctx.cfg.seed))
    if (ctx.layout.root / "break-midway").exists():
        raise RuntimeError("killed midway")
    (out / "part-2").write_text(str(ctx.cfg.seed))
    return StageResult(items=1, manifest={"made": {"seed": ctx.cfg.seed}})


def test_a_partial_output_is_never_paired_with_an_older_record(tmp_path):
    """A stage finishes (its record kept for resuming), the build fails later; the next build, with other
    settings, dies while remaking that output; a third, with the first settings again, must not take the
    partial folder for the first build's finished one."""
    lake = LakeLayout.at(tmp_path / "lake")
    lake.root.mkdir(parents=True)

    def runner() -> Runner:
        return Runner([Stage("made", makes_a_folder, lambda ctx: ["made-v1", ctx.cfg.seed],
                             outputs=lambda layout: [layout.staging / "made"]),
                       Stage("later", fails, lambda ctx: "later-v1")])

    with pytest.raises(RuntimeError, match="detector broke"):
        runner().run(_cfg(tmp_path, seed=1))
    assert "made" in manifest_io.read_if_exists(lake.staged_manifest)["stages"]
    (lake.root / "break-midway").write_text("")
    with pytest.raises(RuntimeError, match="killed midway"):
        runner().run(_cfg(tmp_path, seed=2))
    (lake.root / "break-midway").unlink()
    (lake.root / "let-it-pass").write_text("")
    summary = runner().run(_cfg(tmp_path, seed=1))
    assert not summary.stages["made"]["skipped"]  # made again, not the partial folder reused
    assert manifest_io.read_if_exists(lake.manifest)["made"] == {"seed": 1}
