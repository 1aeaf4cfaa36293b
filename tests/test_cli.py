"""The command line's answers to bad lakes and interruptions: one line and an exit code, never a
traceback (the commands themselves are exercised end to end in test_build_e2e.py and test_search.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from lake.layout import LakeLayout
from lake.writer import LakeWriter
from pipeline import cli


def test_the_query_commands_answer_bad_lakes_and_interruptions_in_one_line(tmp_path, monkeypatch, capsys):
    """No traceback for a lake whose manifest is torn, a count below 1, or Ctrl-C (exit 130, resumable)."""
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "manifest.json").write_text('{"schema_version": ')
    for argv in (["search", "comets", "--lake", str(torn)], ["galaxies", "--lake", str(torn)],
                 ["oddities", "--lake", str(torn)], ["oddities", "-k", "0", "--lake", str(torn)]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (argv, err)
    monkeypatch.setattr(cli, "_dispatch", lambda args: (_ for _ in ()).throw(KeyboardInterrupt))
    capsys.readouterr()
    assert cli.main(["search", "comets"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err


def test_a_galaxy_zoo_only_lake_says_it_has_no_apod_collection(tmp_path, capsys):
    """A lake built with ``--collection gz2`` alone has no APOD tables: marking or exporting APOD
    entries there failed with a DuckDB CatalogException or a KeyError."""
    layout = LakeLayout.at(tmp_path / "gz2-only")
    LakeWriter(layout).publish_tables({}, {"collections": ["gz2"]}, version="only-galaxies")
    assert cli.main(["feedback", "2014-01-07", "interesting", "--lake", str(layout.root)]) == 2
    assert "no APOD collection" in capsys.readouterr().err
    assert cli.main(["export-vectors", "--lake", str(layout.root), "--out", str(tmp_path / "seeds")]) == 1
    assert not (tmp_path / "seeds").exists()
    from lake.manifest import LakeMissingError
    from lake.queries import AtlasQueries
    from lake.reader import LakeReader
    from lake.search import SearchEngine

    reader = LakeReader.open(layout.root)
    engine = SearchEngine(reader, encoder_factory=lambda info: None)  # refused before encoding
    # every search and cluster list says the lake has no APOD collection (the API's 503), whatever the mode
    # (keyword and hybrid searches blamed the request with a 400, the cluster lists failed with a 500)
    for refused in (lambda: engine.similar(dt.date(2014, 1, 7), kind="text", k=5),
                    lambda: engine.search("galaxy", mode="keyword"), lambda: engine.search("galaxy", mode="dense"),
                    lambda: AtlasQueries(reader).clusters("text"),
                    lambda: AtlasQueries(reader).cluster_members("text", 0)):
        with pytest.raises(LakeMissingError, match="no APOD collection"):
            refused()
    assert not (layout.root / "current" / "vectors").exists()  # connecting would have made it, in a published version


def test_an_empty_lake_or_a_version_folder_is_named_for_what_it_is(tmp_path, capsys):
    """`--lake "$UNSET"` meant the repository's own lake (a mark filed for the wrong lake); a lake's
    ``current`` or ``versions/<run>`` was "no lake", with advice to build one there (inside a version)."""
    layout = LakeLayout.at(tmp_path / "lake")
    LakeWriter(layout).publish_tables({}, {"collections": ["gz2"]}, version="v1")
    for command in (["search", "comets"], ["oddities"], ["feedback", "2014-01-07", "not"], ["galaxies"],
                    ["export-vectors"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command, "--lake", " "])
        assert exit_.value.code == 2 and "--lake: is empty" in capsys.readouterr().err, command
    for inside in (layout.root / "current", layout.root / "versions" / "v1", layout.root / "versions" / "v1" / "x",
                   layout.root / "versions"):
        assert cli.main(["galaxies", "--lake", str(inside)]) == 2
        err = capsys.readouterr().err
        assert f"is inside the published versions of the lake at {layout.root}, not a lake" in err, err
        with pytest.raises(SystemExit) as exit_:  # a build there would write a lake inside a published version
            cli.main(["build", "--lake", str(inside)])
        assert exit_.value.code == 2 and "give the lake's own folder" in capsys.readouterr().err
    release = tmp_path / "srv" / "versions" / "rev1"  # a release layout: versions/<rev> and current, no manifest
    (release / "lake" / "data").mkdir(parents=True)
    (tmp_path / "srv" / "current").symlink_to("versions/rev1")
    assert LakeLayout.at(tmp_path / "srv" / "current" / "lake" / "data").root == release / "lake" / "data"
    assert cli.build_parser().parse_args(["galaxies", "-k", "3"]).k == 3  # as search's and oddities' -k


def test_a_failed_build_says_how_to_go_on_with_and_without_force(tmp_path, caplog):
    """``--force`` clears the staging area as it starts, so a stopped ``--force`` build's own command
    starts over: its message says so, where it said "re-run to resume" as a plain build's does."""
    layout = LakeLayout.at(tmp_path / "lake")
    with LakeWriter(layout).locked():  # another build at work: this one stops before any stage
        for extra, advice in (([], "the same command resumes from the finished stages"),
                              (["--force"], "a re-run with --force starts over; without it, a re-run keeps")):
            caplog.clear()
            assert cli.main(["build", "--lake", str(layout.root), "--no-progress", *extra]) == 1
            assert "another build is writing" in caplog.text and advice in caplog.text, caplog.text


@pytest.mark.parametrize("argv", [["search", "--help"], ["oddities", "--help"]])
def test_help_still_exits_cleanly(argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
