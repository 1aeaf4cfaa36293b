"""One settings object drives the CLI: flags, help, choices and defaults come from BuildConfig's fields,
and environment variables are read when a config is made (never at import)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from pipeline.config import BuildConfig, config_from_args


def _build_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["build", *argv])


def test_every_cli_field_has_a_flag_with_help_and_its_real_default():
    parser = build_parser()
    build = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("build"))
    by_dest = {a.dest: a for a in build._actions}
    for f in dataclasses.fields(BuildConfig):
        if not f.metadata.get("cli"):
            assert f.name not in by_dest
            continue
        action = by_dest[f.name]
        assert action.help and len(action.help) > 10, f.name
        if f.metadata.get("choices"):
            assert tuple(action.choices) == f.metadata["choices"]
    assert "(default: 128)" in by_dest["text_max_tokens"].help and "(default: int8)" in by_dest["quantize"].help


def test_absent_flags_keep_the_dataclass_defaults():
    cfg = config_from_args(_build_args())
    default = BuildConfig()
    for name in ("encoder", "quantize", "text_max_tokens", "umap_neighbors", "seed", "sources", "offline", "force"):
        assert getattr(cfg, name) == getattr(default, name), name
    cfg = config_from_args(_build_args("--encoder", "offline", "--clusters", "7", "--start", "2014-01-01",
                                       "--no-progress", "--sesame-url", "http://a/", "--sesame-url", "http://b/"))
    assert (cfg.encoder, cfg.n_clusters, cfg.start, cfg.progress) == ("offline", 7, dt.date(2014, 1, 1), False)
    assert cfg.sesame_urls == ["http://a/", "http://b/"]


def test_dump_alone_builds_from_the_dump_and_with_sources_adds_to_them(tmp_path):
    dump = tmp_path / "d.jsonl"
    dump.write_text("")
    assert config_from_args(_build_args("--dump", str(dump))).sources == ["dump"]
    both = config_from_args(_build_args("--source", "bundled", "--dump", str(dump)))
    assert both.sources == ["bundled", "dump"] and both.dump_paths == [Path(dump)]
    with pytest.raises(ValueError, match="--dump FILE"):
        config_from_args(_build_args("--source", "dump"))
    with pytest.raises(ValueError, match="after --end"):
        config_from_args(_build_args("--start", "2014-02-01", "--end", "2014-01-01"))


@pytest.mark.parametrize("flags,message", [
    (["--taxonomy", "no-such-taxonomy.json"], "--taxonomy no-such-taxonomy.json: no such file"),
    (["--gz2-catalogue", "no-such.csv.gz"], "--gz2-catalogue no-such.csv.gz: no such file"),
    (["--dump", "no-such.jsonl"], "--dump no-such.jsonl: no such file"),
    (["--clip-checkpoint", "no-such.pt"], "--clip-checkpoint no-such.pt: no such file"),
    (["--clip-config", "no-such.json"], "--clip-config no-such.json: no such file"),
    (["--umap-neighbors", "1"], "at least 2"),
    (["--umap-min-dist", "1.5"], "between 0 and 1"),
    (["--tsne-perplexity", "0"], "more than 0"),
    (["--ray-actor-cpus", "1"], "--ray-actor-cpus and --ray-gpus-per-actor need --runner ray"),  # was ignored
    (["--ray-actor-cpus", "0.5"], "--ray-actor-cpus and --ray-gpus-per-actor need --runner ray"),  # its default too
])
def test_settings_a_stage_would_refuse_late_are_refused_before_any_work(flags, message):
    """A missing file or an impossible number used to fail minutes into a cold build, after embedding."""
    with pytest.raises(ValueError, match=message):
        config_from_args(_build_args(*flags))
    assert config_from_args(_build_args("--collection", "apod", "--gz2-catalogue", "no-such.csv.gz")).collections == \
        ["apod"]  # a catalogue that this build does not read is not asked for


def test_an_empty_or_bucketless_lake_is_a_usage_error(capsys):
    """`--lake "$UNSET"` quietly meant the repository's own lake; `s3://` hid why it was refused."""
    for value, said in (("", "is empty"), ("s3://", "names no bucket")):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["build", "--lake", value])
        assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_environment_is_read_when_a_config_is_made(monkeypatch, tmp_path):
    monkeypatch.setenv("COSMIC_ATLAS_LAKE", str(tmp_path / "env-lake"))
    monkeypatch.setenv("SESAME_URL", "http://127.0.0.1:1/a/, http://127.0.0.1:1/b/")
    monkeypatch.setenv("NASA_API_KEY", "secret-key")
    cfg = BuildConfig()
    assert cfg.lake.root == (tmp_path / "env-lake").resolve()
    assert cfg.sesame_urls == ["http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/"]
    assert cfg.nasa_api_key == "secret-key" and "nasa_api_key" not in cfg.public()
    assert config_from_args(_build_args("--lake", str(tmp_path / "flag"))).lake.root == (tmp_path / "flag").resolve()


def test_lance_computes_on_two_threads_where_two_cores_exist_unless_told_otherwise(monkeypatch, tmp_path):
    """Lance keeps two cores for I/O and computes on the rest, at least one: on 2 cores a search ran on one
    thread. Opening the lake's vector tables gives it two where two cores exist, Lance's own choice
    elsewhere, and leaves a value someone set alone."""
    import os

    import numpy as np

    from atlas import environment
    from lake import vectors

    assert [environment.lance_threads(c) for c in (1, 2, 3, 4, 8, 64)] == [1, 2, 2, 2, 6, 62]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for preset, expected in (("", "2"), ("1", "1")):
        monkeypatch.setenv(environment.LANCE_THREADS_ENV, preset)  # "" = unset; restored after the test
        db = tmp_path / f"lake-{preset or 'unset'}"
        vectors.write_table(db, "title", ["2000-01-01"], np.ones((1, 4), np.float32), titles=["t"], years=[2000],
                            categories=["c"], has_image=[False])
        assert os.environ[environment.LANCE_THREADS_ENV] == expected
        assert vectors.open_table(db, "title").count_rows() == 1


def test_offline_means_no_network_anywhere(monkeypatch):
    """``--offline`` refuses settings that need the network, and ``--encoder auto`` then takes OpenCLIP
    only from weights already on disk: it never probes the hub."""
    from pipeline.stages import encoder_spec

    with pytest.raises(ValueError, match="--offline forbids the network"):
        BuildConfig(sources=["nasa"], offline=True)

    def probe(*args, **kwargs):
        raise AssertionError("--offline probed the hub")

    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", probe)
    monkeypatch.setattr("atlas.encoders.openclip.cached_weights", lambda *a, **k: None)  # no weights on disk
    assert encoder_spec(BuildConfig(encoder="auto", offline=True))["name"] == "offline"
    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", lambda *a, **k: True)
    assert encoder_spec(BuildConfig(encoder="auto"))["name"] == "openclip"  # online, the hub answers


def test_auto_keeps_the_published_lakes_offline_encoder(monkeypatch):
    """A lake built offline is not re-embedded (and 600 MB of weights fetched) because the hub answers on
    a later build: ``auto`` keeps the published encoder; ``--force``, an explicit ``--encoder openclip``
    or a new lake chooses afresh."""
    from pipeline.stages import encoder_spec

    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr("atlas.encoders.openclip.cached_weights", lambda *a, **k: None)
    assert encoder_spec(BuildConfig(encoder="auto"), published="offline")["name"] == "offline"
    assert encoder_spec(BuildConfig(encoder="auto", force=True), published="offline")["name"] == "openclip"
    assert encoder_spec(BuildConfig(encoder="openclip"), published="offline")["name"] == "openclip"
    assert encoder_spec(BuildConfig(encoder="auto"), published=None)["name"] == "openclip"
    assert encoder_spec(BuildConfig(encoder="auto"), published="openclip")["name"] == "openclip"
    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", lambda *a, **k: False)
    assert encoder_spec(BuildConfig(encoder="auto"), published="openclip")["name"] == "offline"  # weights gone


def test_auto_reads_the_published_encoder_of_a_galaxy_zoo_only_lake(monkeypatch, tmp_path):
    """A lake of Galaxy Zoo alone has no embed stage: its encoder is the galaxy pictures' (gz2 section)."""
    from lake.layout import LakeLayout
    from pipeline.runner import BuildContext
    from pipeline.stages import _spec

    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr("atlas.encoders.openclip.cached_weights", lambda *a, **k: None)
    ctx = BuildContext(BuildConfig(encoder="auto", lake=LakeLayout.at(tmp_path / "lake")), run_id="r")
    ctx.live = {"stages": {"gz2_galaxies": {"manifest": {"gz2": {"encoder": {"name": "offline"}}}}}}
    assert _spec(ctx)["name"] == "offline"


def test_the_browser_is_found_by_name_or_by_environment(monkeypatch, tmp_path):
    """Browser tests and benchmarks find Chromium and ChromeDriver on PATH under their usual names
    (Debian's, Ubuntu's snap, Google's), or where $CHROMIUM / $CHROMEDRIVER say; a missing one is None."""
    import stat

    from bench.common import chromium_paths

    for name in ("chromium-browser", "chromium.chromedriver", "my-chrome"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("CHROMEDRIVER", raising=False)
    assert chromium_paths() == (str(tmp_path / "chromium-browser"), str(tmp_path / "chromium.chromedriver"))
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "my-chrome"))
    assert chromium_paths()[0] == str(tmp_path / "my-chrome")
    monkeypatch.setenv("CHROMEDRIVER", "no-such-driver")
    assert chromium_paths() is None


@pytest.mark.parametrize("categories,message", [
    ([{"name": "Only one", "prompts": ["a lonely category"]}], "≥ 2 categories"),
    ([{"name": "Stars, Clusters", "prompts": ["stars"]}, {"name": "Sky"}], "has a comma"),
    ([{"name": "Sky"}, {"name": "Sky"}], "appears twice"),
])
def test_a_malformed_taxonomy_is_refused_before_any_work(tmp_path, categories, message):
    """Read whole when the settings are made, not when the classify stage first hashes it (after
    embedding); a name with a comma could never be chosen in a filter (categories are listed with commas)."""
    import json

    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps({"categories": categories}))
    with pytest.raises(ValueError, match=message):
        config_from_args(_build_args("--taxonomy", str(path)))


def test_a_build_that_would_shrink_the_published_lake_says_so(tmp_path, caplog):
    """``--limit 300`` (a quick look) or ``--source nasa --start DAY`` (meant as "add these days") publish a
    small lake over the whole one; the build says so, and says nothing for a lake that grows or is new."""
    from lake.layout import LakeLayout
    from pipeline.runner import BuildContext
    from pipeline.stages import _warn_if_shrinking

    ctx = BuildContext(BuildConfig(lake=LakeLayout.at(tmp_path / "lake")), run_id="r")
    for published, entries, warned in ((None, 300, False), (11_382, 11_383, False), (11_382, 10_300, False),
                                       (11_382, 300, True)):
        ctx.live = {} if published is None else {"stages": {"images": {"manifest": {"counts": {"entries": published}}}}}
        caplog.clear()
        _warn_if_shrinking(ctx, entries)
        assert ("published lake" in caplog.text) is warned, caplog.text
        if warned:
            assert "keeps 300 entries where the published lake at " + str(tmp_path / "lake") + " has 11,382" in caplog.text


@pytest.mark.parametrize("value", ["20240131", "2024-W05-3", "2014-02-30", "2024-1-31"])
def test_dates_on_the_command_line_are_written_as_the_api_takes_them(value):
    """Python 3.11's ``date.fromisoformat`` takes 20240131 and week dates; the API does not."""
    from pipeline.config import parse_date

    with pytest.raises(argparse.ArgumentTypeError, match="is not a date like"):
        parse_date(value)
    assert parse_date("2024-01-31") == dt.date(2024, 1, 31)
