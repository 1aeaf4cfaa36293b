"""The one stage runner: decides, per stage, whether to skip, reuse staged work or run, then publishes.

A stage (:class:`Stage`) is a function from a :class:`BuildContext` to a :class:`StageResult`, plus a
function naming everything its output depends on. The runner hashes that description; a stage whose
hash matches the published manifest is skipped (its published files carry over into the new version),
one whose hash matches the staging manifest of an earlier, interrupted build reuses the staged output,
and any other runs. So a no-op re-run runs no stage (it still publishes a new version: the run's
metrics are new; every other file is a hard link to the previous version's), and a re-run after a crash
resumes where the crash happened. Every stage is timed (wall and CPU seconds, peak RSS), and the manifest is assembled here from
the stages' own sections, so a new stage is a function plus one registration line in
:mod:`pipeline.stages`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas.hashing import sha1_json
from lake import atomic
from lake.layout import LakeLayout
from lake.remote import SHARED_FOR_BUILD, RemoteLake, RemoteLakeError
from lake.schema import SCHEMAS, VECTOR_TABLES_VERSION
from lake.writer import LakeWriter, removal_marker
from pipeline import __version__
from pipeline.background import BackgroundWorker, Handoff, Outcome
from pipeline.config import BuildConfig
from pipeline.metrics import RunMetrics

log = logging.getLogger(__name__)

#: Runs whose metrics stay in the lake's ``metrics`` table.
METRIC_RUNS_KEPT = 20
#: When a build fails, how long it waits for a background stage's answer already on its way back (so a
#: stage that finished is kept for the next build to resume); a stage still at work delays it this long at most.
IN_FLIGHT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class StageResult:
    """What a stage hands back: throughput, its section of the manifest, and values for later stages.

    ``manifest`` is persisted (a skipped stage contributes the section its last run recorded);
    ``value`` and ``summary`` live for this run only; ``fingerprint`` (stages that always run) is what
    later stages' hashes depend on in place of an input hash. ``cpu_elsewhere``: CPU seconds spent for
    the stage in a process the build started that is not a child it joins (the encoder's), added to the
    stage's own.
    """

    items: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    cpu_elsewhere: float = 0.0


@dataclass(frozen=True)
class Stage:
    """A named build step.

    ``inputs`` returns a JSON-able description of everything the output depends on (upstream hashes,
    parameters, code versions); ``None`` instead of a function means the stage always runs (it reads
    the sources). ``outputs`` lists the staged paths it writes, checked before reusing staged work.
    ``collection`` names the collection the stage belongs to: a build of other collections carries its
    published output and manifest section over untouched. ``background``: no later stage reads the
    output, so the stage may run in the build's worker process (:mod:`pipeline.background`) while the
    stages after it go on (or in this process after them, if the worker is still busy by then) (a function of the settings when that depends on them); ``warm`` names the
    modules that worker imports ahead. ``run`` must then be a module-level function (it is pickled) that
    uses no other stage's in-memory ``value`` or ``results`` (an earlier stage's manifest section:
    :meth:`BuildContext.manifest_of`). ``ahead`` is called as the build starts, before any stage
    runs, when the stage's collection is built: it may start loading, in another process, what the stage
    is likely to need (the encoder: :mod:`pipeline.encoder_host`), as a resource the run closes.
    ``rerun``, when it answers True, runs the stage though the published output's inputs are unchanged
    (work the published build could not finish, such as names asked while every resolver was down, or a
    re-fit asked with ``--refit``); the output is recorded under the same input hash, so the builds after
    it skip the stage again, and under an output hash of this run's own, which the stages after it build
    on (they run again with it in this build, and are skipped with it in the next).
    """

    name: str
    run: Callable[["BuildContext"], StageResult]
    inputs: Callable[["BuildContext"], Any] | None
    outputs: Callable[[LakeLayout], Sequence[Path]] = lambda layout: ()
    collection: str = "apod"
    background: bool | Callable[[BuildConfig], bool] = False
    warm: tuple[str, ...] = ()
    ahead: Callable[["BuildContext"], None] | None = None
    rerun: Callable[["BuildContext"], bool] | None = None

    def in_background(self, cfg: BuildConfig) -> bool:
        """Whether this build may run the stage in the worker process."""
        return self.background(cfg) if callable(self.background) else self.background


class BuildContext:
    """What stages share during one build: settings, the lake, this run's results and lazy resources."""

    def __init__(self, cfg: BuildConfig, *, run_id: str) -> None:
        self.cfg = cfg
        self.layout: LakeLayout = cfg.lake
        self.writer = LakeWriter(cfg.lake)
        self.run_id = run_id
        self.results: dict[str, StageResult] = {}
        #: per stage, what later stages' hashes build on: its input hash, or, for a stage run again by its
        #: ``rerun`` (its inputs unchanged, its output maybe not), a hash of this run's output of its own
        self.hashes: dict[str, str] = {}
        #: the input hashes of the stages whose :attr:`hashes` entry is not their input hash
        self.input_hashes: dict[str, str] = {}
        self.live: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}

    def value(self, stage: str) -> Any:
        """The in-memory result of an earlier stage of this run (always-run stages only)."""
        return self.results[stage].value

    def hash(self, stage: str) -> str:
        """An earlier stage's input hash (or fingerprint): what later stages' hashes build on."""
        return self.hashes[stage]

    def manifest_of(self, stage: str) -> dict[str, Any]:
        """The manifest section an earlier stage of this build recorded: from memory, or, in the worker
        process (which shares no memory with the build), from the staged manifest the build saved when
        that stage finished, or the published one for a stage this build reused."""
        if stage in self.results:
            return self.results[stage].manifest
        staged = self.writer.staged_manifest().get("stages", {})
        if stage in staged:
            return staged[stage].get("manifest", {})
        # reused from the published lake, so never staged: its record is the published one (as the main
        # process sees it; before, the worker saw nothing and, e.g., re-clustered maps that were placed)
        return self.live_manifest(stage)

    def live_manifest(self, stage: str) -> dict[str, Any]:
        """The manifest section a stage recorded in the published lake (empty when there is none)."""
        return self.live.get("stages", {}).get(stage, {}).get("manifest", {})

    def resource(self, key: str, make: Callable[[], Any]) -> Any:
        """A value made once per build on first use (the encoder, k-NN graphs): skipped stages never pay."""
        if key not in self.resources:
            self.resources[key] = make()
        return self.resources[key]


class BuildInterrupted(KeyboardInterrupt):
    """A build stopped by Ctrl-C (or SIGTERM, which the CLI turns into one). ``live``: this build's
    version when it had gone live before the interrupt (the switch done, a push's pointer written), so
    that the message does not say the published lake is unchanged when it is this build's."""

    def __init__(self, *, live: str | None) -> None:
        super().__init__(live)
        self.live = live


@dataclass
class BuildSummary:
    run_id: str
    lake: Path
    version: str
    counts: dict[str, int]
    stages: dict[str, dict[str, Any]]
    encoder: dict[str, Any]
    invalid: dict[str, int]
    wall_seconds: float
    embedded: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"lake: {self.lake} (version {self.version})", f"encoder: {self.encoder.get('name')} "
               f"(text {self.encoder.get('text_model')}, image {self.encoder.get('image_model')}, "
               f"quantize {self.encoder.get('quantize')})"]
        out.append("counts: " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()))
        out.append("newly embedded: " + ", ".join(f"{k} {v:,}" for k, v in self.embedded.items()))
        if self.invalid:
            out.append("skipped rows: " + ", ".join(f"{n} × {r}" for r, n in self.invalid.items()))
        for name, st in self.stages.items():
            state = "kept" if st.get("carried_over") is not None else "reused" if st.get("skipped") else "ran"
            out.append(f"  {name:<12} {state:<6} {st['wall_seconds']:>7.1f}s wall {st.get('cpu_seconds', 0):>7.1f}s cpu"
                       + (f"  {st['items']:,} items" if st.get("items") else "")
                       + (f"  (in the {st['ran_in']}, beside the stages after it)" if st.get("ran_in") else ""))
        out.append(f"total: {self.wall_seconds:.1f}s")
        return out


def new_run_id() -> str:
    """Sortable by time (it names the published version folder), unique across concurrent machines."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ-") + uuid.uuid4().hex[:6]


def run_in_worker(run: Callable[[BuildContext], StageResult], cfg: BuildConfig, run_id: str) -> StageResult:
    """A background stage, in the worker process: with a context of its own (same settings, lake, run id
    and published manifest; no other stage's in-memory values, resources made afresh)."""
    ctx = BuildContext(cfg, run_id=run_id)
    ctx.live = ctx.writer.live_manifest(replace_newer=cfg.force) or {}  # what the stage may keep of the published build
    return run(ctx)


def _cpu_seconds() -> float:
    t = os.times()  # children count once joined: the projection workers' time lands in their stage
    return t.user + t.system + t.children_user + t.children_system


def _remove(paths: Sequence[Path]) -> None:
    """Stale staged outputs, and the markers that say a stage left one out (``LakeWriter.stage_removal``):
    an interrupted build's marker must not drop a published file that a later build reuses."""
    for p in paths:
        if p.is_dir():
            atomic.remove_tree(p)
        else:
            p.unlink(missing_ok=True)
        removal_marker(p).unlink(missing_ok=True)


def _staged_output(p: Path) -> bool:
    """Whether a stage's staged output is there: made, or marked left out of the next version."""
    return p.exists() or removal_marker(p).exists()


def _output_hash(record: dict[str, Any]) -> str | None:
    """What the stages after a recorded stage built on (records made before output hashes: its input hash)."""
    return record.get("output_hash") or record.get("input_hash")


def _merge(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage sections merged in stage order; dict values (``counts``) are merged one level deep."""
    out: dict[str, Any] = {}
    for sec in sections:
        for k, v in sec.items():
            out[k] = (out.get(k) or {}) | v if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Runner:
    """Runs registered stages in order for one build of one lake (one build per lake at a time)."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        if any(s.background and s.inputs is None for s in stages):
            raise ValueError("a stage that always runs (inputs=None) cannot run in the background")
        self.stages = list(stages)
        # the resume record is written by the build's thread and, for background stages, by the done-
        # callbacks of the worker's futures (:meth:`_save_resume`)
        self._staged_lock = threading.Lock()

    def run(self, cfg: BuildConfig) -> BuildSummary:
        ctx = BuildContext(cfg, run_id=new_run_id())
        remote = RemoteLake.of(cfg.lake)  # a lake on object storage: build in its working copy
        try:
            return self._build(ctx, remote)
        except KeyboardInterrupt as exc:
            raise BuildInterrupted(live=remote.pushed if remote is not None else ctx.writer.went_live) from exc

    def _build(self, ctx: BuildContext, remote: RemoteLake | None) -> BuildSummary:
        started, cfg = time.perf_counter(), ctx.cfg
        metrics = RunMetrics(ctx.run_id, interval=cfg.sample_interval)
        with ctx.writer.locked():
            if remote is not None:
                remote.pull(shared=SHARED_FOR_BUILD)
            ctx.live = ctx.writer.live_manifest(replace_newer=ctx.cfg.force) or {}
            if cfg.force:
                ctx.writer.discard_staging()
            staged = ctx.writer.staged_manifest()
            worker = BackgroundWorker(threads=cfg.threads,
                                      warm=[m for s in self.stages if s.in_background(cfg) for m in s.warm],
                                      enabled=cfg.helper_processes
                                      and any(s.in_background(cfg) for s in self.stages))
            metrics.start()
            failed = True
            # background stages to run: handed to the worker one at a time as it frees up
            handoff: Handoff[Stage] = Handoff(
                lambda stage: worker.submit(run_in_worker, stage.run, ctx.cfg, ctx.run_id),
                on_finished=lambda stage, outcome: self._save_resume(stage, outcome.result, ctx, staged))
            try:
                for stage in self.stages:
                    if stage.ahead is not None and stage.collection in cfg.collections:
                        stage.ahead(ctx)
                for stage in self.stages:
                    if self._run_stage(stage, ctx, staged, metrics, worker):
                        handoff.add(stage)
                    self._collect(handoff.finished(), ctx, staged, metrics)
                # this process is done with its own stages: it takes what the worker has not started
                while (stage := handoff.take()) is not None:
                    self._run_here(stage, ctx, staged, metrics)
                    self._collect(handoff.finished(), ctx, staged, metrics)
                self._collect(handoff.wait(), ctx, staged, metrics)  # a failure there raises here
                failed = False
            except BaseException:
                handoff.stop()
                sent = handoff.outstanding()
                # a background stage that did finish can be resumed: one whose answer is on its way (a
                # pipe's milliseconds) is given a moment to arrive; one still at work is not waited for
                futures.wait([f for _, f in sent], timeout=IN_FLIGHT_GRACE_SECONDS)
                for stage, future in sent:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._record(stage, future.result().result, ctx, staged)
                raise
            finally:
                worker.close(failed=failed)
                metrics.stop()
                for name in ("executor", "encoder"):  # a local Ray instance, the encoder's process
                    resource = ctx.resources.get(name)  # stop with the build
                    if resource is not None and hasattr(resource, "close"):
                        resource.close()
            # a lake on object storage keeps the staging area until its push is done: a push that fails
            # leaves the old version live, and the next build pulls it back, then resumes from staging
            summary = self._publish(ctx, metrics, time.perf_counter() - started, keep_staging=remote is not None)
            if remote is not None:
                try:
                    remote.push()  # the bucket's pointer moves last; a failed push leaves the old version live
                except RemoteLakeError as exc:
                    raise RemoteLakeError(f"{exc}. This build's stages are kept: the next build reuses "
                                          "those whose inputs are unchanged") from exc
                ctx.writer.discard_staging()
            return summary

    def _run_stage(self, stage: Stage, ctx: BuildContext, staged: dict[str, Any], metrics: RunMetrics,
                   worker: BackgroundWorker) -> bool:
        """Skip, reuse or run one stage. True: it is a background stage that must run, left for the
        :class:`~pipeline.background.Handoff` to give the worker or, once this process has run its own
        stages, for :meth:`_run_here`."""
        cpu0, elsewhere = _cpu_seconds(), 0.0
        with metrics.stage(stage.name) as info:
            if stage.collection not in ctx.cfg.collections:
                self._carry_over(stage, ctx, info)
            elif (previous := self._reusable(stage, ctx, staged)) is not None:
                info["skipped"] = True
                ctx.results[stage.name] = StageResult(manifest=previous.get("manifest", {}))
            else:
                if stage.inputs is not None:
                    worker.start()  # the build has real work: the worker imports meanwhile
                    if stage.in_background(ctx.cfg) and worker.enabled:
                        info["background"] = True
                        return True
                elsewhere = self._execute(stage, ctx, staged, info)
        metrics.stages[stage.name]["cpu_seconds"] = round(_cpu_seconds() - cpu0 + elsewhere, 2)
        return False

    def _execute(self, stage: Stage, ctx: BuildContext, staged: dict[str, Any], info: dict[str, Any]) -> float:
        """Run a stage in this process and record it; returns its CPU seconds spent elsewhere."""
        result = stage.run(ctx)
        info["items"] = result.items
        if stage.inputs is None:
            ctx.hashes[stage.name] = result.fingerprint or sha1_json([stage.name, ctx.run_id])
        self._record(stage, result, ctx, staged)
        return result.cpu_elsewhere

    def _run_here(self, stage: Stage, ctx: BuildContext, staged: dict[str, Any], metrics: RunMetrics) -> None:
        """A background stage the worker has not started, run by this process once it has nothing else
        to do: at full priority and with all its threads, rather than idling while the worker's queue
        drains (the daily build's critical path was the worker's two stages, one after the other)."""
        cpu0 = _cpu_seconds()
        with metrics.stage(stage.name) as info:
            elsewhere = self._execute(stage, ctx, staged, info)
        metrics.stages[stage.name]["cpu_seconds"] = round(_cpu_seconds() - cpu0 + elsewhere, 2)

    def _collect(self, done: list[tuple[Stage, Future[Outcome]]], ctx: BuildContext, staged: dict[str, Any],
                 metrics: RunMetrics) -> None:
        """Record the background stages the worker finished (waiting for those still running); a stage that
        failed there raises here, and the build stops."""
        for stage, future in done:
            self._finish_background(stage, future.result(), ctx, staged, metrics)

    def _record(self, stage: Stage, result: StageResult, ctx: BuildContext, staged: dict[str, Any]) -> None:
        """A stage's result for the later stages and, for stages with inputs, the resume record."""
        ctx.results[stage.name] = result
        if stage.inputs is not None:  # always-run stages have nothing to resume
            self._save_resume(stage, result, ctx, staged)

    def _save_resume(self, stage: Stage, result: StageResult, ctx: BuildContext, staged: dict[str, Any]) -> None:
        """Save a finished stage's resume record. A background stage's is saved the moment the worker
        finishes it, from its future's done-callback, not when the build's thread next looks: that thread
        may be inside a long stage of its own, and a build killed meanwhile (SIGKILL, the OOM killer)
        would leave the stage's output staged without its record, to be made again."""
        with self._staged_lock:
            staged.setdefault("stages", {})[stage.name] = {
                "input_hash": ctx.input_hashes.get(stage.name, ctx.hashes[stage.name]),
                "output_hash": ctx.hashes[stage.name], "manifest": result.manifest}
            ctx.writer.save_staged_manifest(staged)

    def _finish_background(self, stage: Stage, outcome: Outcome, ctx: BuildContext, staged: dict[str, Any],
                           metrics: RunMetrics) -> None:
        """Record a stage the worker ran: its result, and its time and memory there (not the main
        process's: its wall time overlaps the stages that ran meanwhile)."""
        self._record(stage, outcome.result, ctx, staged)
        metrics.record_stage(stage.name, wall=outcome.wall_seconds, items=outcome.result.items,
                             peak_rss=outcome.peak_rss_bytes, where="worker process")
        metrics.stages[stage.name]["cpu_seconds"] = round(outcome.cpu_seconds, 2)

    @staticmethod
    def _carry_over(stage: Stage, ctx: BuildContext, info: dict[str, Any]) -> None:
        """A stage of a collection this build leaves alone: its published files carry over (the publish
        step hard-links every file not remade) and so does its manifest record, input hash included.
        What an interrupted build of that collection left in the staging area is removed: published
        beside the carried-over record, it would mix two builds of the collection."""
        _remove(list(stage.outputs(ctx.layout)))
        record = ctx.live.get("stages", {}).get(stage.name) or {}
        info["skipped"] = True
        info["carried_over"] = bool(record)
        Runner._builds_on(stage, ctx, record, default=f"not built:{stage.name}")
        ctx.results[stage.name] = StageResult(manifest=record.get("manifest", {}))

    def _reusable(self, stage: Stage, ctx: BuildContext, staged: dict[str, Any]) -> dict[str, Any] | None:
        """The record of an earlier run whose output is still valid (staged or published), else None."""
        if stage.inputs is None:
            return None
        h = sha1_json([stage.name, stage.inputs(ctx)])
        ctx.hashes[stage.name] = h
        outputs = list(stage.outputs(ctx.layout))
        if ctx.cfg.force:
            _remove(outputs)
            return None
        record = staged.get("stages", {}).get(stage.name, {})
        # (not an interrupted build's plain run of a stage this build runs again: ``--refit`` after a
        # plain build that died must re-fit; a run again staged its own output hash, and is reused)
        if record.get("input_hash") == h and all(map(_staged_output, outputs)) and not (
                stage.rerun is not None and _output_hash(record) == h and stage.rerun(ctx)):
            log.info("stage %s: reusing the output staged by an interrupted build", stage.name)
            self._builds_on(stage, ctx, record, default=h)
            return record
        _remove(outputs)  # stale leftovers of an interrupted build must not be published
        # nor may their record outlive them: a build killed while remaking the output would leave a partial
        # one beside it, and a later build with the record's inputs would take that for finished work
        with self._staged_lock:
            if staged.get("stages", {}).pop(stage.name, None) is not None:
                ctx.writer.save_staged_manifest(staged)
        record = ctx.live.get("stages", {}).get(stage.name, {})
        if record.get("input_hash") != h:
            return None
        if stage.rerun is not None and stage.rerun(ctx):
            log.info("stage %s: runs again though its inputs are unchanged", stage.name)
            ctx.input_hashes[stage.name] = h  # later stages build on this run's output, not the last one's
            ctx.hashes[stage.name] = sha1_json([h, "rerun", ctx.run_id])
            return None
        self._builds_on(stage, ctx, record, default=h)
        return record

    @staticmethod
    def _builds_on(stage: Stage, ctx: BuildContext, record: dict[str, Any], *, default: str) -> None:
        """A reused or carried-over stage's hash for the stages after it: the output hash its run recorded
        (``default`` when it recorded none); its input hash is recorded again as it was."""
        ctx.hashes[stage.name] = _output_hash(record) or default
        if record.get("input_hash") and record["input_hash"] != ctx.hashes[stage.name]:
            ctx.input_hashes[stage.name] = record["input_hash"]

    # -- publish --------------------------------------------------------------------------------
    def _metrics_table(self, ctx: BuildContext, metrics: RunMetrics) -> pa.Table:
        new = pa.Table.from_pylist(metrics.rows, schema=SCHEMAS["metrics"])
        if not ctx.layout.table("metrics").is_file():
            return new
        # the published table, not a staged one: a build whose push failed left its metrics staged, and
        # its run never went live
        old = pq.read_table(ctx.layout.table("metrics"))
        runs = list(dict.fromkeys(old.column("run_id").to_pylist()))[-(METRIC_RUNS_KEPT - 1):]
        old = old.filter(pa.compute.is_in(old.column("run_id"), pa.array(runs)))
        return pa.concat_tables([old.cast(SCHEMAS["metrics"]), new])

    def _publish(self, ctx: BuildContext, metrics: RunMetrics, wall: float, *, keep_staging: bool) -> BuildSummary:
        import pyarrow.csv as pacsv

        table = self._metrics_table(ctx, metrics)
        ctx.writer.stage_table("metrics", table)
        ctx.writer.stage_file(ctx.layout.metrics_csv, lambda p: pacsv.write_csv(table, p))
        body = _merge([ctx.results[s.name].manifest for s in self.stages])
        embedded = next((r.summary["embedded"] for r in ctx.results.values() if "embedded" in r.summary),
                        dict.fromkeys(("title", "text", "image"), 0))
        stages = {s.name: dict(metrics.stages.get(s.name, {}),
                               input_hash=ctx.input_hashes.get(s.name, ctx.hashes.get(s.name)),
                               output_hash=ctx.hashes.get(s.name))
                  for s in self.stages}
        manifest = {
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_id": ctx.run_id,
            "pipeline_version": __version__,
            **body,
            "stages": {name: st | {"manifest": ctx.results[name].manifest} for name, st in stages.items()},
            "newly_embedded": embedded,
            "vector_tables_version": VECTOR_TABLES_VERSION,
            "wall_seconds": round(wall, 2),
        }
        ctx.writer.publish(manifest, version=ctx.run_id, keep_staging=keep_staging)
        return BuildSummary(ctx.run_id, ctx.layout.root, ctx.run_id, body.get("counts", {}), metrics.stages,
                            body.get("encoder", {}), body.get("invalid_rows", {}).get("by_reason", {}), wall,
                            embedded)
