"""Anomaly detectors, feedback re-ranking and the feedback store (fast tier: synthetic data, real SQLite)."""

from __future__ import annotations

import multiprocessing as mp
import re

import numpy as np
import pandas as pd
import pytest

from atlas.userstate import FeedbackError, FeedbackStore
from lake.oddities import explain, ranked, rerank
from atlas.encoders import l2_normalise
from pipeline.anomaly import AnomalyParams, fit_isolation, kept_isolation, percentile, score_entries


def _collection(n: int = 300, topics: int = 10, swapped: int = 6, seed: int = 0):
    """Texts and pictures that share a topic through different maps; ``swapped`` pictures exchanged."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, topics, n)
    text = rng.normal(size=(topics, 32))[topic] + 0.5 * rng.normal(size=(n, 32))
    picture = rng.normal(size=(topics, 24))[topic] + 0.5 * rng.normal(size=(n, 24))
    dates = [str(pd.Timestamp("2000-01-01") + pd.Timedelta(days=i))[:10] for i in range(n)]
    chosen = rng.choice(n, swapped, replace=False)
    while (topic[chosen] == topic[np.roll(chosen, 1)]).any():  # every swap must really change topic
        chosen = rng.choice(n, swapped, replace=False)
    picture[chosen] = picture[np.roll(chosen, 1)]
    return dates, text.astype(np.float32), picture.astype(np.float32), {dates[i] for i in chosen}


def test_cross_modal_detectors_find_swapped_pictures_single_modal_ones_do_not():
    dates, text, picture, swapped = _collection()
    df = score_entries({"text": (dates, text), "image": (dates, picture)}, AnomalyParams(k=10))
    top = set(df.sort_values("picture_vs_text_neighbours", ascending=False).date.head(12))
    assert len(top & swapped) >= 5  # 6 swapped among 300: chance would put ~0.24 in the top 12
    from sklearn.metrics import roc_auc_score

    truth = df.date.isin(swapped)
    assert roc_auc_score(truth, df.cross_modal) > 0.9
    assert roc_auc_score(truth, df.image_knn) < 0.8  # a swapped picture is an ordinary picture
    assert set(df["rank"]) == set(range(1, len(df) + 1))


def test_text_only_entries_get_text_scores_and_a_fair_combined_rank():
    dates, text, picture, _ = _collection(n=200)
    df = score_entries({"text": (dates, text), "image": (dates[:120], picture[:120])}, AnomalyParams(k=10))
    no_picture = df[~df.has_picture]
    assert len(no_picture) == 80 and no_picture.cross_modal.isna().all() and no_picture.text_knn.notna().all()
    top = df.sort_values("rank").head(40)  # both groups are on their own percentile scale
    assert 0 < top.has_picture.sum() < 40
    assert percentile(np.array([3.0, np.nan, 1.0])).tolist()[0] == 1.0


def test_entries_without_an_explanation_are_ranked_by_their_titles_not_flagged_for_the_missing_text():
    """An entry the archive has no explanation for has a text vector of its title alone, unlike every
    other text: the text-reading detectors would put it at the top for the missing words. They leave it
    unscored; its title and picture detectors score it, and it is ranked among its own kind."""
    dates, text, picture, _ = _collection(n=200)
    rng = np.random.default_rng(7)
    untexted = dates[::20]  # 10 entries, 6 of them with a picture
    title = text + 0.3 * rng.normal(size=text.shape).astype(np.float32)
    for i in range(0, 200, 20):
        text[i] = 5.0 * rng.normal(size=text.shape[1])  # the title alone: far from every full text
    vectors = {"title": (dates, title), "text": (dates, text), "image": (dates[:120], picture[:120])}
    before = score_entries(vectors, AnomalyParams(k=10))
    assert before.sort_values("rank").date.head(20).isin(untexted).sum() >= 8  # what the rule is for
    vectors["multimodal"] = (dates, np.hstack([text, 0.2 * title]))
    df = score_entries(vectors, AnomalyParams(k=10), without_explanation=untexted).set_index("date")
    gone = [c for c in df.columns if c.startswith(("text_", "multimodal_"))
            or c in ("cross_modal", "caption_mismatch", "picture_vs_text_neighbours")]
    assert len(gone) >= 7 and df.loc[untexted, gone].isna().all().all()
    assert df.loc[untexted, "title_knn"].notna().all()
    assert df.loc[untexted[:6], "image_knn"].notna().all() and df.loc[untexted[:6], "has_picture"].all()
    assert df.drop(index=untexted)[["text_knn"]].notna().all().all()
    top = df.sort_values("rank").head(20)
    assert 1 <= top.index.isin(untexted).sum() <= 2  # 10 of 200: their share of the top, not all of it
    listed = ranked(df.reset_index().assign(has_explanation=lambda d: ~d.date.isin(untexted)), {})
    mine = listed[listed.date.isin(untexted)]
    assert (mine.flagged_by == "title_knn").all()
    assert mine.why.str.startswith("the archive has no explanation for it; its title vector is").all()
    assert not listed[~listed.date.isin(untexted)].why.str.contains("no explanation").any()


def test_a_lake_whose_entries_all_lack_an_explanation_lists_them_by_title_or_says_nothing_scored_them():
    """No entry has an explanation, so no text detector scored any: the list falls back on the titles'
    k-NN, and where a lake has no title scores either it says so instead of a percentage."""
    dates, text, _, _ = _collection(n=40)
    df = score_entries({"title": (dates, text), "text": (dates, text)}, AnomalyParams(k=5),
                       without_explanation=dates)
    assert df.text_knn.isna().all() and df.title_knn.notna().all()
    listed = ranked(df.assign(has_explanation=False), {})
    assert (listed.flagged_by == "title_knn").all() and listed.flagged_percentile.notna().all()
    assert listed.why.str.startswith("the archive has no explanation for it; its title vector").all()
    bare = ranked(df.drop(columns=[c for c in df.columns if c.startswith("title_")]), {})
    assert bare.flagged_percentile.isna().all() and (bare.why == "no detector has scored it").all()


def test_feedback_rerank_learns_and_pushes_down_not_interesting():
    dates, text, picture, swapped = _collection(n=300, swapped=12, seed=3)
    df = score_entries({"text": (dates, text), "image": (dates, picture)}, AnomalyParams(k=10))
    order = df.sort_values("rank")
    labels = {d: d in swapped for d in order.date.head(20)}  # the top 12 are the swapped ones, then 8 others
    out = rerank(df, labels)
    bad = [d for d, ok in labels.items() if not ok]
    assert bad and len(bad) < len(labels)  # both kinds of mark, or the checks below would hold by themselves
    assert not set(out.date.head(50)) & set(bad)  # "not interesting" marks go to the end
    assert set(out.date.tail(len(bad))) == set(bad)
    assert rerank(df, {}).date.tolist() == order.date.tolist()  # no labels: the unsupervised order
    one_class = rerank(df, {order.date.iloc[0]: True})
    assert one_class.date.iloc[0] == order.date.iloc[0]


def test_a_filtered_list_is_re_ranked_as_the_whole_list_is_and_by_marks_outside_it():
    """Marks re-rank what the filters show as they re-rank the whole list: before, only the marks inside
    the filters counted, and the detectors were standardised over the filtered rows, so someone with ten
    marks who filtered to a year without any saw the unsupervised order."""
    from lake.oddities import percentiles_by_date

    dates, text, picture, swapped = _collection(n=300, swapped=12, seed=3)
    df = score_entries({"text": (dates, text), "image": (dates, picture)}, AnomalyParams(k=10))
    pct = percentiles_by_date(df)
    order = df.sort_values("rank")
    labels = {d: d in swapped for d in order.date.head(10)}
    part = df[~df.date.isin(list(labels))]  # filters that show none of the marked entries
    whole = ranked(df, labels, pct=pct, words=False)
    shown = ranked(part, labels, pct=pct, words=False)
    assert shown.date.tolist() == [d for d in whole.date if d in set(part.date)]
    assert shown.date.tolist() != ranked(part, {}, pct=pct, words=False).date.tolist()


def test_a_re_rank_learns_from_the_newest_marks_and_computes_in_bounded_pieces(monkeypatch):
    """One person may mark thousands of entries: a re-rank learns from the newest MAX_LABELS (every mark
    still shows, every ✕ still goes to the end), its kernel computed a chunk of rows at a time, its width
    measured on an even sample of rows, so memory stays bounded. On lists within those bounds nothing
    changes."""
    import lake.oddities as oddities

    dates, text, picture, swapped = _collection(n=300, swapped=12, seed=3)
    df = score_entries({"text": (dates, text), "image": (dates, picture)}, AnomalyParams(k=10))
    order = df.sort_values("rank").date.tolist()
    labels = {d: d in swapped for d in order[:40]}
    before = rerank(df, labels)
    monkeypatch.setattr(oddities, "CHUNK_ROWS", 7)
    assert rerank(df, labels).date.tolist() == before.date.tolist()  # the same list, however chunked
    monkeypatch.setattr(oddities, "MAX_LABELS", 10)
    capped = rerank(df, labels)
    newest = dict(list(labels.items())[-10:])
    learnt_from_newest = rerank(df, newest).set_index("date").score
    unlabelled = [d for d in df.date if d not in labels]
    assert np.allclose(capped.set_index("date").score[unlabelled], learnt_from_newest[unlabelled])
    assert capped.feedback.notna().sum() == 40  # every mark shows
    assert set(capped.date.tail(sum(not v for v in labels.values()))) == {d for d, v in labels.items() if not v}
    monkeypatch.setattr(oddities, "WIDTH_ROWS", 100)  # the width from a sample: close, not equal
    sampled = rerank(df, labels).set_index("date").score[unlabelled]
    assert np.corrcoef(sampled, capped.set_index("date").score[unlabelled])[0, 1] > 0.95


def test_ranked_lists_say_why_and_refuse_unknown_detectors():
    dates, text, picture, _ = _collection(n=120)
    aligned = text + np.random.default_rng(1).normal(scale=0.5, size=text.shape).astype(np.float32)  # pictures in the text space
    df = score_entries({"text": (dates, text), "image": (dates, picture), "aligned": (dates, aligned)},
                       AnomalyParams(k=10))
    for detector in ("caption_mismatch", "image_lof", "combined"):
        out = ranked(df, {}, detector=detector)
        assert len(out) == 120 and out.why.str.len().min() > 10, detector
    with pytest.raises(ValueError, match="unknown detector"):
        ranked(df, {}, detector="has_image")
    assert "99.9%" in explain("picture_vs_text_neighbours", 1.0)
    assert explain("text_knn", 0.995) == ("its text vector is farther from its nearest neighbours than the text "
                                          "vectors of 99.5% of entries")
    assert explain("image_iforest", 0.5).endswith("than the image vectors of 50% of pictures")


def test_filters_that_match_nothing_give_an_empty_list_not_an_error():
    """A page or API filter that keeps no entry (or only entries a detector did not score) ranks to an
    empty list; the detectors offered are the lake's, whatever the filter kept."""
    from lake.oddities import percentiles_by_date

    dates, text, picture, _ = _collection(n=120)
    df = score_entries({"text": (dates, text), "image": (dates[:60], picture[:60])}, AnomalyParams(k=10))
    pct = percentiles_by_date(df)
    nothing = df.iloc[:0]
    for detector in ("combined", "text_knn", "image_lof"):
        out = ranked(nothing, {dates[0]: True}, detector=detector, pct=pct)
        assert out.empty and {"flagged_by", "flagged_percentile", "why"} <= set(out.columns)
    text_only = df[~df.has_picture]
    assert ranked(text_only, {}, detector="image_lof", pct=pct).empty  # no picture here: nothing it scored
    with pytest.raises(ValueError, match="one of .*image_lof"):
        ranked(nothing, {}, detector="has_image", pct=pct)


def test_a_kept_isolation_forest_scores_a_new_day_as_a_fresh_fit_would_keep_it(tmp_path):
    """A build that adds a few entries keeps the forest the last build fitted: the unchanged rows keep
    their scores, new and changed rows are scored by the same forest; many new rows, other parameters,
    ``--refit`` or a torn file fit it anew."""
    dates, text, _, _ = _collection(n=420, seed=5)
    unit, params, store = l2_normalise(text), AnomalyParams(k=10), tmp_path / "anomaly" / "text.pickle"
    first = kept_isolation(unit[:380], params, keys=dates[:380], store=store)
    assert first.note == "fitted" and first.fitted_rows == 380 and store.is_file()
    fresh = fit_isolation(unit[:380], params)  # what the first build scored with: the same seeded fit
    np.testing.assert_allclose(first.scores(unit[:380]), fresh.scores(unit[:380]))

    grown, grown_keys = unit[:385].copy(), dates[:385]  # five new days, and one entry's vector changed
    grown[7] = l2_normalise(grown[7:8] + 0.3)[0]
    kept = kept_isolation(grown, params, keys=grown_keys, store=store)
    assert kept.note.startswith("kept from an earlier build (6 rows new or changed") and kept.fitted_rows == 380
    scores = kept.scores(grown)
    np.testing.assert_allclose(scores[:380][np.arange(380) != 7], first.scores(unit[:380])[np.arange(380) != 7])
    by_forest = -first.forest.score_samples(first.pca.transform(grown[[7, *range(380, 385)]]))
    np.testing.assert_allclose(scores[[7, *range(380, 385)]], by_forest)
    assert np.isnan(kept.known[[7, *range(380, 385)]]).all()  # those were scored now, not remembered

    assert kept_isolation(unit, params, keys=dates, store=store).note == "fitted"  # 40 new of 420: > 5 %
    assert kept_isolation(unit, params, keys=dates, store=store).note.startswith("kept")
    assert kept_isolation(unit, params, keys=dates, store=store, refit=True).note == "fitted"
    assert kept_isolation(unit, AnomalyParams(k=10, iforest_trees=50), keys=dates, store=store).note == "fitted"
    store.write_bytes(b"torn")
    assert kept_isolation(unit, params, keys=dates, store=store).note == "fitted"
    assert kept_isolation(unit[1:], params, keys=dates[1:], store=store).note == "fitted"  # a fitted row left


def test_score_entries_takes_the_isolation_models_it_is_given(tmp_path):
    dates, text, picture, _ = _collection(n=200)
    vectors = {"text": (dates, text), "image": (dates, picture)}
    fitted = score_entries(vectors, AnomalyParams(k=10))
    seen: list[str] = []

    def forest(kind, keys, unit):
        seen.append(kind)
        return kept_isolation(unit, AnomalyParams(k=10), keys=keys, store=tmp_path / f"{kind}.pickle")

    given = score_entries(vectors, AnomalyParams(k=10), forest=forest)
    assert seen == ["text", "image"]
    np.testing.assert_allclose(given.text_iforest, fitted.text_iforest)
    np.testing.assert_allclose(given.image_iforest, fitted.image_iforest)
    again = score_entries(vectors, AnomalyParams(k=10), forest=forest)  # the kept forests' kept scores
    assert seen == ["text", "image"] * 2
    pd.testing.assert_frame_equal(again, given)


class _Planted:
    """Unpickling this creates a file: what a planted pickle could do, and must never get to do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_only_pickles_signed_by_this_machine_are_loaded(tmp_path, monkeypatch):
    """A kept forest is signed with a key of this machine's state folder; a file planted in a shared
    cache (another key, or no signature) is refused before anything is unpickled, and the forest is
    fitted anew."""
    import pickle

    from atlas import signing
    from pipeline import local_pickle

    store = tmp_path / "cache" / "text.pickle"
    local_pickle.dump({"a": np.arange(3)}, store)
    assert local_pickle.load(store)["a"].tolist() == [0, 1, 2]
    marker = tmp_path / "planted"
    store.write_bytes(store.read_bytes()[:32] + pickle.dumps(_Planted(str(marker))))  # the payload swapped
    with pytest.raises(local_pickle.UntrustedPickle):
        local_pickle.load(store)
    store.write_bytes(pickle.dumps(_Planted(str(marker))))  # a bare pickle
    with pytest.raises(local_pickle.UntrustedPickle):
        local_pickle.load(store)
    assert not marker.exists()

    dates, text, _, _ = _collection(n=100, seed=2)
    unit, params = l2_normalise(text), AnomalyParams(k=10)
    forest_store = tmp_path / "cache" / "forest.pickle"
    assert kept_isolation(unit, params, keys=dates, store=forest_store).note == "fitted"
    assert kept_isolation(unit, params, keys=dates, store=forest_store).note.startswith("kept")
    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(tmp_path / "another-machine"))  # another builder's key
    assert kept_isolation(unit, params, keys=dates, store=forest_store).note == "fitted"
    assert (tmp_path / "another-machine" / signing.KEY_FILE).stat().st_mode & 0o077 == 0


def _write_labels(path: str, client: int, n: int) -> None:
    store = FeedbackStore(path)
    for i in range(n):
        store.add(date=f"2014-01-{i + 1:02d}", interesting=bool((client + i) % 2), user=f"user{client}")


def test_twenty_concurrent_clients_lose_no_label(tmp_path):
    path = str(tmp_path / "feedback.sqlite")
    FeedbackStore(path)
    procs = [mp.get_context("spawn").Process(target=_write_labels, args=(path, c, 15)) for c in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    store = FeedbackStore(path)
    assert len(store.history()) == 20 * 15
    for c in (0, 7, 19):
        mine = store.labels(user=f"user{c}")
        assert len(mine) == 15 and mine["2014-01-01"] == bool(c % 2)


def test_feedback_store_keeps_latest_label_and_survives_reopen(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")
    store.add(date="2014-01-07", interesting=True, user="ann")
    store.add(date="2014-01-07", interesting=False, user="ann")
    store.add(date="2014-01-08", interesting=True, user="bob")
    store.add(date="2014-01-08", interesting=None, user="bob")  # cleared
    again = FeedbackStore(tmp_path / "f.sqlite")
    assert again.labels(user="ann") == {"2014-01-07": False}
    assert again.labels() == {"2014-01-07": False}
    assert len(again.history()) == 4
    newest = again.history(limit=2)  # an export's bound: the newest labels, oldest first
    assert [(h["date"], h["interesting"]) for h in newest] == [("2014-01-08", True), ("2014-01-08", None)]
    with pytest.raises(FeedbackError, match="not a date"):
        again.add(date="yesterday", interesting=True)
    store.add(date="2014-01-09", interesting=True, user="  carol  ")  # names are trimmed where stored...
    assert again.labels(user="carol ") == {"2014-01-09": True}  # ...and where looked up
    with pytest.raises(FeedbackError, match="the limit is 64"):  # cut, two long names would be one person
        store.add(date="2014-01-09", interesting=False, user="x" * 65)
    store.add(date="2014-01-09", interesting=False, user="x" * 64)
    assert again.labels(user="x" * 64) == {"2014-01-09": False}
    assert again.labels() == {"2014-01-07": False}  # everyone's votes: 2014-01-09 is one against one


def test_labels_follow_the_lake_when_it_moves_and_survive_an_upgrade_and_a_fresh_build(tmp_path, monkeypatch):
    """Labels were kept in a file named after the lake's path: a lake moved to another disk (or mounted
    elsewhere in a container) came up with none. They follow the lake's id now (kept by every build of
    the lake, and by a copy or a move); the first open by id copies in the labels kept under the path
    (an upgraded lake) or of the lake the path held before it was built afresh."""
    import shutil
    from pathlib import Path

    from atlas.userstate import default_path
    from lake.layout import LakeLayout
    from lake.reader import LakeReader
    from lake.writer import LakeWriter

    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(tmp_path / "state"))
    table: dict = {}  # a lake with nothing in it but its manifest: ids are the manifest's

    def publish(root: Path, version: str) -> str:
        LakeWriter(LakeLayout(root)).publish_tables(table, {}, version=version)
        return LakeReader.open(root).lake_id

    home = tmp_path / "lake"
    first = publish(home, "v1")
    legacy = default_path(home)  # the path's file of an earlier release, holding a label
    FeedbackStore(legacy).add(date="2014-01-07", interesting=True, user="ann")
    assert publish(home, "v2") == first  # carried on by the next build
    mine = FeedbackStore(default_path(home, lake_id=first))
    assert mine.path != legacy and mine.labels(user="ann") == {"2014-01-07": True}  # copied in
    mine.add(date="2014-01-08", interesting=False, user="ann")
    moved = tmp_path / "elsewhere" / "lake"
    shutil.move(home, moved)
    assert LakeReader.open(moved).lake_id == first
    assert FeedbackStore(default_path(moved, lake_id=first)).labels(user="ann") == {"2014-01-07": True, "2014-01-08": False}
    fresh = publish(home, "v1")  # a new lake built where the first one was
    assert fresh != first
    assert FeedbackStore(default_path(home, lake_id=fresh)).labels(user="ann") == {"2014-01-07": True, "2014-01-08": False}
    assert FeedbackStore(default_path(home, lake_id="not-a-uuid/../x")).path.parent == tmp_path / "state"


def test_a_serving_worker_moves_to_the_lake_ids_labels_when_the_served_version_changes(tmp_path, monkeypatch):
    """A worker that served a lake published before ids kept writing to the path's file after the lake
    got its id, where nothing read them any more: the store follows the served version's id."""
    import json

    from atlas.userstate import default_path
    from lake.layout import LakeLayout
    from lake.reader import LakeReader
    from lake.writer import LakeWriter
    from services import LakeService

    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(tmp_path / "state"))
    layout = LakeLayout(tmp_path / "lake")
    LakeWriter(layout).publish_tables({}, {}, version="v1")
    manifest = layout.version_dir("v1") / "manifest.json"  # as a lake published before ids
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "lake_id"}))
    service = LakeService(layout)
    before = service.feedback()
    assert before.path == default_path(layout.root)
    before.add(date="2014-01-07", interesting=True, user="ann")
    LakeWriter(layout).publish_tables({}, {}, version="v2")  # the next build gives the lake its id
    lake_id = LakeReader.open(layout.root).lake_id
    after = service.feedback()
    assert lake_id and after.path == default_path(layout.root, lake_id=lake_id) != before.path
    assert after.labels(user="ann") == {"2014-01-07": True}  # carried over
    assert service.feedback() is after  # opened once per id


def test_a_copy_of_the_labels_never_replaces_the_one_another_worker_made(tmp_path):
    """Two workers open a lake by its id at once and both copy the old labels: the second copy must not
    replace the first, which may hold labels given since."""
    from atlas.userstate import _copy_labels

    FeedbackStore(tmp_path / "old.sqlite").add(date="2014-01-07", interesting=True, user="ann")
    target = tmp_path / "by-id.sqlite"
    assert _copy_labels(tmp_path / "old.sqlite", target)  # the first worker's copy...
    FeedbackStore(target).add(date="2014-01-08", interesting=False, user="bob")  # ...written to since
    assert _copy_labels(tmp_path / "old.sqlite", target)  # the second worker's
    assert FeedbackStore(target).labels(user="bob") == {"2014-01-08": False}
    assert not list(tmp_path.glob(".tmp-*"))
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a database, only text" * 50)
    assert not _copy_labels(damaged, tmp_path / "other.sqlite")  # used where it is: the store says it is damaged
    assert not (tmp_path / "other.sqlite").exists()


def test_labels_given_to_the_lake_before_while_workers_move_are_carried_over(tmp_path, monkeypatch):
    """While an app's workers move one by one to a lake built afresh at the same path, those still serving
    the lake before write to its labels' file, which the new lake's file was copied from: the next open
    of the new file carries them over, once, and a person's newer label there stays current."""
    import time

    from atlas.userstate import default_path

    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(tmp_path / "state"))
    home = tmp_path / "lake"
    before = FeedbackStore(default_path(home, lake_id="a" * 32))
    before.add(date="2014-01-07", interesting=True, user="ann")
    moved = FeedbackStore(default_path(home, lake_id="b" * 32))  # the first worker on the new lake: copied in
    assert moved.path != before.path and moved.labels(user="ann") == {"2014-01-07": True}
    before.add(date="2014-01-08", interesting=True, user="bob")  # a worker still on the lake before
    before.add(date="2014-01-09", interesting=True, user="ann")  # ann, there first...
    time.sleep(0.01)
    moved.add(date="2014-01-09", interesting=False, user="ann")  # ...then on the new lake: this one is current
    assert moved.labels(user="bob") == {}
    last = FeedbackStore(default_path(home, lake_id="b" * 32))  # the last worker to move
    assert last.labels(user="bob") == {"2014-01-08": True}
    assert last.labels(user="ann") == {"2014-01-07": True, "2014-01-09": False}
    count = last.count()
    assert FeedbackStore(last.path).count() == count  # carried once
    last._carry(before.path.resolve(), 0)  # a second worker that read the same rows before the first committed
    assert last.count() == count
    later = FeedbackStore(default_path(home, lake_id="c" * 32))  # the lake after, copied from b's file
    before.add(date="2014-01-10", interesting=True, user="cy")  # a worker moving from a straight to c
    assert FeedbackStore(later.path).labels(user="cy") == {"2014-01-10": True}  # a is c's source too
    FeedbackStore(last.path)  # b catches up with it too...
    assert FeedbackStore(later.path).count() == count + 1  # ...and c, catching up with b, keeps one copy
    before.path.write_bytes(b"damaged " * 100)  # an unreadable source: the labels here stay usable
    assert FeedbackStore(later.path).labels(user="cy") == {"2014-01-10": True}


def test_without_a_person_the_labels_are_everyones_votes(tmp_path):
    """The list nobody is named for (the API without ``user``, the CLI) is re-ranked by everyone's marks
    as votes: each person's current mark counts once. Before, the newest mark by anyone was the answer,
    so one visitor's ✕ sank an entry that three people had marked ✓."""
    store = FeedbackStore(tmp_path / "f.sqlite")
    for user in ("ann", "bob", "carol"):
        store.add(date="2014-01-07", interesting=True, user=user)
    store.add(date="2014-01-07", interesting=False)  # one anonymous ✕, given last
    for _ in range(5):  # marking again and again is still one person's one vote
        store.toggle(date="2014-01-08", interesting=False, user="dave")
    store.add(date="2014-01-08", interesting=True, user="erin")
    store.add(date="2014-01-08", interesting=True, user="fay")
    store.add(date="2014-01-09", interesting=True, user="ann")
    store.add(date="2014-01-09", interesting=None, user="ann")  # cleared: no vote
    store.add(date="2014-01-05", interesting=False, user="bob")
    assert store.labels() == {"2014-01-07": True, "2014-01-08": True, "2014-01-05": False}
    assert list(store.labels(user="ann")) == ["2014-01-07"]
    store.add(date="2014-01-10", interesting=True, user="ann")
    store.add(date="2014-01-06", interesting=True, user="ann")
    assert list(store.labels(user="ann")) == ["2014-01-07", "2014-01-10", "2014-01-06"]  # the newest last


def test_a_damaged_labels_file_says_so_and_the_file_is_private(tmp_path):
    """A file that is not a database (or a damaged one) raised sqlite3.DatabaseError, which nothing
    caught: every Oddities request failed with a 500. It is FeedbackUnavailable (the API's 503, the list
    in the detectors' order) that says to move the file aside. The file holds the browsers' ids, which
    are enough to mark as them: only its owner reads it."""
    import stat

    from atlas.userstate import DAMAGED_MESSAGE, FeedbackUnavailable

    store = FeedbackStore(tmp_path / "state" / "f.sqlite")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a database, but forty bytes of text!" * 100)
    with pytest.raises(FeedbackUnavailable, match="damaged or not a database") as caught:
        FeedbackStore(damaged)
    assert caught.value.public_message == DAMAGED_MESSAGE and str(tmp_path) not in DAMAGED_MESSAGE
    with pytest.raises(FeedbackError, match="user must be a string"):
        store.add(date="2014-01-07", interesting=True, user=1)  # type: ignore[arg-type]


def test_export_pseudonyms_are_keyed_with_the_machines_secret():
    """A plain hash of a name people choose is undone by hashing guesses; the pseudonym is an HMAC under
    this machine's key: stable here, and not the bare hash."""
    import hashlib

    from atlas.userstate import pseudonym

    assert pseudonym("anonymous") == pseudonym(" anonymous ") == pseudonym(None)  # type: ignore[arg-type]
    assert pseudonym("anonymous") != "u-" + hashlib.sha256(b"anonymous").hexdigest()[:12]
    assert pseudonym("ann") != pseudonym("bob") and len(pseudonym("ann")) == 14


def test_clicking_a_thumb_forever_keeps_the_file_bounded_and_every_current_label(tmp_path):
    """The history is pruned of superseded labels beyond the newest few: current labels, and so the
    re-ranking and the export's newest rows, are exactly what an unpruned store holds."""
    import random

    pruned = FeedbackStore(tmp_path / "pruned.sqlite", keep_superseded=40, prune_every=50)
    full = FeedbackStore(tmp_path / "full.sqlite", keep_superseded=10**9, prune_every=10**9)
    rng = random.Random(7)
    for _ in range(1_000):
        click = {"date": f"2014-01-{1 + rng.randrange(30):02d}", "interesting": rng.random() < 0.5,
                 "user": f"u{rng.randrange(4)}"}
        assert pruned.toggle(**click) == full.toggle(**click)
    current = sum(len(full.labels(user=f"u{u}")) for u in range(4))
    assert pruned.labels() == full.labels() and all(
        pruned.labels(user=f"u{u}") == full.labels(user=f"u{u}") for u in range(4))
    kept = len(pruned.history())
    assert len(full.history()) == 1_000 and kept <= 4 * 30 + 40 + 50  # every (user, day) once, + the newest
    def newest(store):
        return [(h["date"], h["interesting"], h["user"]) for h in store.history(limit=40)]
    assert newest(pruned) == newest(full)
    assert current <= kept


def test_a_labels_file_from_before_superseded_labels_were_listed_is_pruned_alike(tmp_path):
    """Superseded labels are listed as they are given, so a prune reads only them; a file made before
    has them listed once, when it is first opened, and is pruned as a new one is."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    store = FeedbackStore(path, keep_superseded=10**9, prune_every=10**9)
    for label in (True, False, True, None, True):
        store.add(date="2014-01-07", interesting=label, user="ann")
    store.add(date="2014-01-08", interesting=True, user="bob")
    with sqlite3.connect(path) as con:  # as a file of the release before: no list, no trigger
        con.execute("DROP TRIGGER feedback_supersedes")
        con.execute("DELETE FROM superseded")
        con.execute("PRAGMA user_version = 0")
    opened = FeedbackStore(path, keep_superseded=0, prune_every=10**9)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM superseded").fetchone()[0] == 4  # ann's first four
        # a worker still running the release before writes as it did: the file's trigger lists it all the same
        con.execute("INSERT INTO feedback (entry_date, label, user, created_at) VALUES ('2014-01-08', 0, 'bob', 'x')")
        assert con.execute("SELECT count(*) FROM superseded").fetchone()[0] == 5  # bob's first
    with opened._connect() as con:  # noqa: SLF001 - the prune itself, as the next label's id would run it
        con.execute("BEGIN IMMEDIATE")
        opened._prune(con)  # noqa: SLF001
        con.execute("COMMIT")
    assert [(h["date"], h["user"], h["interesting"]) for h in opened.history()] == [
        ("2014-01-07", "ann", True), ("2014-01-08", "bob", False)]


def _click(path: str, barrier, out) -> None:
    store = FeedbackStore(path)
    barrier.wait()
    out.put(store.toggle(date="2014-01-07", interesting=True, user="ann"))


def test_a_double_click_on_a_thumb_sets_then_clears(tmp_path):
    """Two clicks on the same thumb at once (two processes) are one set and one clear, in some order:
    the read and the write of a toggle are one transaction."""
    path = str(tmp_path / "f.sqlite")
    store = FeedbackStore(path)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_click, args=(path, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert sorted([out.get(timeout=5), out.get(timeout=5)], key=str) == [None, True]
    assert store.labels(user="ann") == {}
    assert store.toggle(date="2014-01-07", interesting=False, user="ann") is False
    assert store.toggle(date="2014-01-07", interesting=True, user="ann") is True  # the other thumb: switched
    assert store.labels(user="ann") == {"2014-01-07": True}


def test_latest_labels_stay_fast_as_labels_pile_up(tmp_path, monkeypatch):
    """Anyone who reaches the app can append labels: reading the current ones must not grow with the
    square of the history (a query per label group took ≈ 9 s at 20,000 rows before). The plans checked
    are those of the statements ``labels()`` really runs (traced), everyone's and one person's."""
    import sqlite3

    store = FeedbackStore(tmp_path / "f.sqlite")
    rows = [(f"{2000 + i % 23}-01-{1 + i % 28:02d}", (i // 7) % 2, f"u{i % 50}") for i in range(20_000)]
    with sqlite3.connect(store.path) as con:
        con.executemany("INSERT INTO feedback (entry_date, label, user, created_at) VALUES (?, ?, ?, '')", rows)
    ran: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        con = connect(*args, **kwargs)
        con.set_trace_callback(ran.append)
        return con
    monkeypatch.setattr("atlas.userstate.sqlite3.connect", traced)
    current = {(user, day): bool(label) for day, label, user in rows}  # each person's last label of a day
    votes: dict[str, list[int]] = {}
    for (_, day), label in current.items():
        votes.setdefault(day, [0, 0])[label] += 1
    replayed = {day: no < yes for day, (no, yes) in votes.items() if no != yes}
    assert store.labels() == replayed and len(replayed) > 100
    mine = {day: bool(label) for day, label, user in rows if user == "u7"}
    assert store.labels(user="u7") == mine
    monkeypatch.undo()
    selects = [sql for sql in ran if sql.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    with sqlite3.connect(store.path) as con:
        plans = [" ".join(r[-1] for r in con.execute("EXPLAIN QUERY PLAN " + sql)) for sql in selects]
    # one pass over the (user, date, id) index each; what is sorted after it is one row per person and
    # day (everyone's) or per day (one person's), not the history
    assert all("USING INDEX feedback_by_entry" in plan and not re.search(r"SCAN feedback(?! USING)", plan)
               for plan in plans), plans


def test_the_reader_says_which_entries_have_no_explanation_and_the_list_says_so(tmp_path):
    """Real Parquet, real DuckDB: the Oddities list (and the API, which words it the same way) tells an
    entry without an explanation (empty or blank in the lake) from the others."""
    import datetime as dt

    import pyarrow as pa

    from lake.layout import LakeLayout
    from lake.queries import AtlasQueries
    from lake.reader import LakeReader
    from lake.schema import SCHEMAS
    from lake.writer import LakeWriter

    days = [dt.date(1999, 2, 14) + dt.timedelta(days=i) for i in range(40)]
    texts = {0: "", 1: "  \n", 2: "\u00a0\v"}  # the first three lack an explanation (as str.strip sees it)
    vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    iso = [d.isoformat() for d in days]
    scores = score_entries({"title": (iso, vectors), "text": (iso, vectors)}, AnomalyParams(k=5),
                           without_explanation=iso[:3])
    scores["date"] = days
    entries = [{"date": d, "title": f"entry {i}", "explanation": texts.get(i, f"words of entry {i}"),
                "media_type": "image", "has_image": False, "year": d.year, "source": "test", "content_sha1": str(i)}
               for i, d in enumerate(days)]
    layout = LakeLayout.at(tmp_path / "lake")
    LakeWriter(layout).publish_tables({
        "entries": pa.Table.from_pylist(entries, schema=SCHEMAS["entries"]),
        "categories": SCHEMAS["categories"].empty_table(), "objects": SCHEMAS["objects"].empty_table(),
        "anomalies": pa.Table.from_pandas(scores.reindex(columns=SCHEMAS["anomalies"].names),
                                          schema=SCHEMAS["anomalies"], preserve_index=False)}, {"taxonomy": {"categories": []}}, version="v1")
    atlas = AtlasQueries(LakeReader(layout))
    df = atlas.anomaly_scores()
    assert df.set_index("date").has_explanation.to_dict() == {d: i >= 3 for i, d in enumerate(iso)}
    assert atlas.dates_without_explanation() == iso[:3]
    listed = ranked(df, {}).set_index("date")
    assert listed.loc[iso[:3], "why"].str.startswith("the archive has no explanation for it; its title").all()
    assert not listed.loc[iso[3:], "why"].str.contains("no explanation").any()
    assert (listed.loc[iso[3:], "flagged_by"] == "text_knn").all()
