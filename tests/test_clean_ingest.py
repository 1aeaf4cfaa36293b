import datetime as dt

import pytest

from pipeline.clean import (clean_copyright, clean_explanation, clean_title, restore_clipped_starts,
                            restore_replaced_characters)
from pipeline.ingest import ingest
from pipeline.sources import RawBatch, SourceError, dump
from tests.conftest import archive_rows, write_jsonl


def test_1995_boilerplate_removed_credit_and_rights_kept():
    raw = (
        "Today's Picture: June 24, 1995    The Crab and Geminga  Picture Credit: NASA, Compton Observatory "
        " Explanation:  What if you could see in gamma-rays? Pulsars would shine.   We keep an archive of "
        "previous Astronomy Pictures of the Day.  Astronomy Picture of the Day is brought to you by  Robert "
        "Nemiroff and  Jerry Bonnell . Original material on this page is copyrighted to Robert J. Nemiroff "
        "and Jerry T. Bonnell."
    )
    out = clean_explanation(raw)
    assert out.explanation == "What if you could see in gamma-rays? Pulsars would shine."
    assert out.credit == "NASA, Compton Observatory"
    assert out.rights_note == "Original material on this page is copyrighted to Robert J. Nemiroff and Jerry T. Bonnell."


def test_digg_script_junk_removed():
    raw = "The clouds of Venus.   digg_url = 'http://apod.nasa.gov/apod/ap080226.html'; digg_skin = 'compact';"
    assert clean_explanation(raw).explanation == "The clouds of Venus."


def test_navigation_footer_only_becomes_empty():
    raw = "Tomorrow's picture: Aurora Over Alaska  < Archive | Index | Search | Calendar >  Authors & editors"
    assert clean_explanation(raw).explanation == ""


def test_labels_rights_and_script_junk_are_found_in_any_case():
    raw = ("Picture Credit: ESO  EXPLANATION: Stars\u2003and dust.  DIGG_URL = 'x';  ORIGINAL MATERIAL ON THIS PAGE "
           "IS COPYRIGHTED TO R. Nemiroff and J. Bonnell.")
    out = clean_explanation(raw)
    assert out.credit == "ESO" and out.explanation.startswith("Stars and dust. ORIGINAL MATERIAL")
    assert "DIGG" not in out.explanation
    assert out.rights_note == "ORIGINAL MATERIAL ON THIS PAGE IS COPYRIGHTED TO R. Nemiroff and J. Bonnell."


def test_ordinary_text_untouched_apart_from_whitespace():
    raw = "Today marks the\n third anniversary of ASCA.  It sees X-rays."
    assert clean_explanation(raw).explanation == "Today marks the third anniversary of ASCA. It sees X-rays."


@pytest.mark.parametrize(
    "raw,expected",
    [("Venus: Earth's Cloudy Twin\nCredit:", "Venus: Earth's Cloudy Twin"),
     ("Tonight: A Total Lunar Eclipse \r\nCredit and Copyright:", "Tonight: A Total Lunar Eclipse"),
     ("Credit Where Due", "Credit Where Due")],
)
def test_title_credit_label(raw, expected):
    assert clean_title(raw) == expected


def test_copyright_with_page_text_keeps_only_the_credit():
    assert clean_copyright("Anglo-Australian Telescope\nBoard\n Explanation: \nLong winding arms") == \
        "Anglo-Australian Telescope Board"
    assert clean_copyright("Explanation:  \nOn August 21, 1995") is None


def test_malformed_rows_are_reported_and_skipped(tmp_path):
    good = archive_rows("2014-01-01", "2014-01-05")
    bad = [
        {"date": "2014-13-45", "title": "Bad date", "explanation": "x"},
        {"title": "No date", "explanation": "x"},
        {"date": "2014-01-06", "title": "", "explanation": ""},
        {"date": "2999-01-01", "title": "Future", "explanation": "x"},
        "[1, 2",  # not JSON
        "42",  # JSON, but not an object
        dict(good[0], title="Duplicate of the first date"),
    ]
    path = write_jsonl(tmp_path / "dump.jsonl", good + bad)
    result = ingest([dump.load(path)], today=dt.date(2026, 11, 23))
    assert len(result.rows) == len(good)
    reasons = result.invalid_by_reason
    assert reasons["missing or malformed date"] == 2
    assert reasons["no title and no explanation"] == 1
    assert reasons["date is in the future"] == 1
    assert reasons["line is not valid JSON"] == 1
    assert reasons["row is int, not an object"] == 1
    assert reasons["duplicate date within one source (kept the last)"] == 1
    first = [r for r in result.rows if r["date"] == dt.date.fromisoformat(good[0]["date"])][0]
    assert first["title"] == "Duplicate of the first date"  # the last one wins
    assert all(r["reason"] for r in result.invalid)


def test_first_letters_the_api_clipped_are_restored_from_the_archives_words():
    """NASA's API strips "Explanation: " as a set of letters, so "Earth's" arrives as "rth's" (nasa/apod-api
    issues 87 and 119). The archive's own words put the letters back where one word clearly fits."""
    texts = [
        "rth's orbit is an ellipse.",  # Earth's: the only fitting word
        "st of Antares, dark markings sprawl.",  # East: "east of" occurs, "exist of" does not
        "cal galaxy M87 is huge.",  # Elliptical (4 times) over Eliptical (once)
        "graved in rock, these petroglyphs.",  # Engraved: no such word in the archive, left as it is
        "ding shells of gas.",  # Expanding (2) or Exploding (1), and neither before "shells": unclear
        "iPhone pictures of the Moon.",  # starts with a letter of the label: not a clipped text
        "Earth's shadow. Planet Earth's night side. Earth's orbit. Stars east of Orion. Galaxies exist "
        "everywhere. Worlds exist. Elliptical galaxies. Elliptical orbits. An elliptical one. Elliptical "
        "again. An eliptical typo. Expanding gas. Expanding clouds. Exploding star.",
    ]
    restored = restore_clipped_starts(texts)
    assert restored == {0: "Earth's orbit is an ellipse.", 1: "East of Antares, dark markings sprawl.",
                        2: "Elliptical galaxy M87 is huge."}
    assert restore_clipped_starts(["An intact text.", ""]) == {}


def test_ingest_restores_clipped_starts_and_says_which(tmp_path):
    rows = [{"date": "2014-01-01", "title": "Perihelion", "explanation": "rth's orbit around the Sun is an ellipse."},
            {"date": "2014-01-02", "title": "Shadow", "explanation": "Planet Earth's shadow rises at dusk."}]
    result = ingest([dump.load(write_jsonl(tmp_path / "dump.jsonl", rows))], today=dt.date(2026, 11, 23))
    assert result.rows[0]["explanation"] == "Earth's orbit around the Sun is an ellipse."
    assert result.rows[1]["explanation"] == "Planet Earth's shadow rises at dusk."
    assert result.restored_starts == ["2014-01-01"]


def test_the_bundled_archive_gets_back_the_words_upstream_quotes_from_nasas_pages():
    """The clipped texts that upstream's bug reports quote beside NASA's own page (nasa/apod-api issues 87
    and 119, nasa/api-docs issue 162) come out of the bundled archive's ingest as the pages read."""
    result = ingest([RawBatch("bundled", archive_rows("1995-01-01", "2100-01-01"), "archive")])
    text = {r["date"].isoformat(): r["explanation"] for r in result.rows}
    assert text["2021-12-07"].startswith("Every time two massive black holes collide")
    assert text["2022-02-03"].startswith("Even though Venus (left) was the brightest planet")
    assert text["2024-01-13"].startswith("Earth's orbit around the Sun is not a circle")
    assert text["2024-01-26"].startswith("Epsilon Tauri lies 146 light-years away.")
    assert len(result.restored_starts) >= 140  # of the archive's 152 clipped texts


def test_a_date_window_restores_its_texts_as_the_whole_archive_does(tmp_path):
    """Words outside --start/--end still count, so a text is restored alike whatever the window: a build
    that widens its window later must not see its old entries' texts change (and be embedded again)."""
    from lake.layout import LakeLayout
    from pipeline.config import BuildConfig
    from pipeline.stages import load_sources

    lake = LakeLayout.at(tmp_path / "lake")
    whole = {r["date"]: r["explanation"] for r in ingest(load_sources(BuildConfig(sources=["bundled"], lake=lake))).rows}
    window = ingest(load_sources(BuildConfig(sources=["bundled"], start=dt.date(2014, 1, 1), end=dt.date(2014, 2, 28),
                                             lake=lake)))
    assert len(window.rows) == 59
    assert "2014-01-31" in window.restored_starts  # "Eerie pillars of light…": no other "eerie" in the window
    assert all(r["explanation"] == whole[r["date"]] for r in window.rows)


def test_replaced_characters_come_back_where_the_archive_says_what_they_were():
    archive = ["Eyjafjallajökull erupted. Stéphane and Stéphane again; Stèphane once. It's clear; "
               "comet Churyumov-Gerasimenko. Gerasimenko's nucleus. Tromsø, Norway. Tromsö once."]
    damaged = [
        "Eyjafjallaj\ufffdkull erupted again, photographed by St\ufffdphane.",  # one fit; no clear lead (2 : 1)
        "Water boils at 100 \ufffdC (212\ufffdF).",  # degree signs
        "it\ufffds late; comet Churyumov\ufffdGerasimenko\ufffds tail.",  # apostrophes and a dash the archive writes
        "Bj\ufffdrn went to Troms\ufffd.",  # no fitting word; two fitting words, neither clearly the one
        "Gerasimenko\ufffdChuryumov and you\ufffdz and \ufffd alone",  # forms the archive never writes
        "Nothing replaced here.",
    ]
    repaired = restore_replaced_characters([*damaged, None], corpus=archive)
    assert repaired == {
        0: "Eyjafjallajökull erupted again, photographed by St\ufffdphane.",
        1: "Water boils at 100 °C (212°F).",
        2: "it\u2019s late; comet Churyumov\u2013Gerasimenko\u2019s tail.",
    }
    # with "Stéphane" three times as often as "Stèphane", the lead is clear
    assert restore_replaced_characters(["St\ufffdphane"], corpus=[archive[0] + " Stéphane"]) == {0: "Stéphane"}
    assert restore_replaced_characters(["All intact.", ""]) == {}


def test_replaced_character_rules_read_whole_words():
    archive = ["An atom's nucleus. Comet McNaught-Russell. Jökulsárlón lagoon. LópezEl and López. Réunion. "
               "The 1990s. The 1990ás typo. Île. 3 K."]
    cases = {
        "Photo: Tom\ufffds": "Photo: Tom\ufffds",  # "atom's" is no "Tom's"
        "Comet Naught\ufffdRussell": "Comet Naught\ufffdRussell",  # "McNaught-Russell" is no "Naught-Russell"
        "the J\ufffdkuls\ufffdrl\ufffdn lagoon": "the Jökulsárlón lagoon",  # several replaced in one word
        "Credit: Ana L\ufffdpezEl Teide": "Credit: Ana LópezEl Teide",  # a credit glued to the next word
        "R\ufffd\ufffdunion": "R\ufffd\ufffdunion",  # two in a row stand for two characters: no such word
        "the 1990\ufffds": "the 1990\ufffds",  # a number's ending is not looked up
        "cooled to 3 \ufffdK": "cooled to 3 \ufffdK",  # kelvins take no degree sign (likely µK)
        "on \ufffdle de R\ufffdunion": "on Île de Réunion",
    }
    repaired = restore_replaced_characters(list(cases), corpus=archive)
    assert {text: repaired.get(i, text) for i, text in enumerate(cases)} == cases


def test_ingest_repairs_replaced_characters_in_texts_and_credits_and_says_which(tmp_path):
    rows = [{"date": "2010-04-19", "title": "Eyjafjallaj\ufffdkull Erupts", "copyright": "J\ufffdn Sigur\ufffdsson",
             "explanation": "Ash above Eyjafjallaj\ufffdkull in Iceland."},
            {"date": "2010-04-20", "title": "Volcano", "copyright": "Jón Sigurðsson",
             "explanation": "Lightning over Eyjafjallajökull."},
            {"date": "2010-04-21", "title": "Unknown", "explanation": "A name nobody else writes: Bj\ufffdrk."}]
    result = ingest([dump.load(write_jsonl(tmp_path / "dump.jsonl", rows))], today=dt.date(2026, 11, 23))
    first = result.rows[0]
    assert (first["title"], first["explanation"]) == ("Eyjafjallajökull Erupts", "Ash above Eyjafjallajökull in Iceland.")
    assert first["copyright"] == "Jón Sigurðsson"
    assert result.rows[2]["explanation"] == "A name nobody else writes: Bj\ufffdrk."
    assert result.repaired_characters == ["2010-04-19"]
    assert result.replaced_left == 1
    first_two = ingest([dump.load(tmp_path / "dump.jsonl")], today=dt.date(2026, 11, 23), limit=2)
    assert first_two.rows[0]["copyright"] == "Jón Sigurðsson"  # the entries left out still lend their words
    assert (first_two.repaired_characters, first_two.replaced_left) == (["2010-04-19"], 0)  # of the lake's entries


def test_the_bundled_archive_gets_its_replaced_characters_back_where_its_words_say():
    result = ingest([RawBatch("bundled", archive_rows("1995-01-01", "2100-01-01"), "archive")])
    row = {r["date"].isoformat(): r for r in result.rows}
    assert "Eyjafjallajökull" in row["2019-05-12"]["explanation"]
    assert "Tromsø" in row["2018-04-10"]["explanation"] + row["2018-04-10"]["title"]
    assert row["2013-12-11"]["explanation"].count("°C") == 3
    assert "67P/Churyumov\u2013Gerasimenko" in row["2014-09-15"]["explanation"]
    assert len(result.repaired_characters) >= 100  # of the ≈ 170 entries with replaced characters
    assert result.replaced_left <= 120  # of 279


def test_later_source_wins_and_videos_stay_text_only():
    a = RawBatch("bundled", [{"date": "2020-01-01", "title": "Old", "explanation": "a", "media_type": "image"}], "a")
    b = RawBatch("nasa", [{"date": "2020-01-01", "title": "New", "explanation": "b",
                          "url": "https://www.youtube.com/embed/xyz"}], "b")
    rows = ingest([a, b]).rows
    assert [(r["title"], r["media_type"], r["source"]) for r in rows] == [("New", "video", "nasa")]


def test_dump_formats(tmp_path):
    rows = archive_rows("2014-01-01", "2014-01-03")
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json").write_text(json.dumps({"entries": rows}))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.json", "a.parquet"):
        assert [r["date"] for r in ingest([dump.load(tmp_path / name)]).rows] == \
            [dt.date(2014, 1, d) for d in (1, 2, 3)]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SourceError, match="not valid JSON"):
        dump.load(tmp_path / "broken.json")
    (tmp_path / "a.csv").write_text("date\n")
    with pytest.raises(SourceError, match="unknown dump format"):
        dump.load(tmp_path / "a.csv")
    import gzip

    whole = gzip.compress(b"\n".join(json.dumps(r).encode() for r in rows))
    (tmp_path / "torn.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    (tmp_path / "latin1.jsonl").write_bytes('{"date": "2014-01-01", "title": "Caf\u00e9"}\n'.encode("latin-1"))
    (tmp_path / "torn.parquet").write_bytes((tmp_path / "a.parquet").read_bytes()[:200])
    for name in ("torn.jsonl.gz", "latin1.jsonl", "torn.parquet"):
        with pytest.raises(SourceError, match=f"cannot read the dump .*{name}"):
            dump.load(tmp_path / name)
    odd = [dict(rows[0], image_file=5), rows[1]]
    (tmp_path / "odd.jsonl").write_text("\n".join(json.dumps(r) for r in odd))
    loaded = dump.load(tmp_path / "odd.jsonl").records
    assert loaded[0] == {"_invalid": "image_file is int, not a path"} and loaded[1]["date"] == rows[1]["date"]
