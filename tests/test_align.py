"""The learned text–picture space: held-out captions find their own pictures, training pictures never
use their own caption, ``--align-exclude`` keeps dates out of training, and fitting is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from atlas.encoders.align import (AlignHead, CategoryVote, PictureProbe, choose_k, choose_vote, class_probabilities,
                                  fit_head, recall_at)
from pipeline.align import align
from pipeline.config import BuildConfig, read_date_list
from pipeline.picture_probe import C_GRID, SHARE_GRID, fit_probe


def _pairs(n: int = 240, topics: int = 12, seed: int = 0, noise: float = 0.6) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pictures and captions that share a hidden topic through *different* random maps (as pixels and
    words do): no coordinate of a picture is a coordinate of its caption, only the topic links them."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, topics, n)
    centres_pic, centres_txt = rng.normal(size=(topics, 32)), rng.normal(size=(topics, 24))
    pictures = centres_pic[topic] + noise * rng.normal(size=(n, 32))
    captions = centres_txt[topic] + noise * rng.normal(size=(n, 24))
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    dates = [f"{2000 + i // 365}-{(i % 365) // 28 + 1:02d}-{(i % 28) + 1:02d}" for i in range(n)]
    return dates, pictures.astype(np.float32), captions.astype(np.float32)


def test_held_out_caption_is_nearer_its_own_picture_than_a_random_one():
    _, pictures, captions = _pairs()
    head, scores = fit_head(pictures[:200], captions[:200])
    aligned = head.apply(pictures[200:])
    sims = captions[200:] @ aligned.T
    own = np.diag(sims)
    rng = np.random.default_rng(1)
    random_other = sims[np.arange(40), (np.arange(40) + rng.integers(1, 40, 40)) % 40]
    assert np.mean(own > random_other) > 0.75
    assert recall_at(10, captions[200:], aligned) > 3 * 10 / 40  # chance is 10 / 40
    assert head.k in scores and scores[head.k] == max(scores.values())


def test_training_pictures_never_use_their_own_caption():
    _, pictures, captions = _pairs(n=60)
    head, _ = fit_head(pictures, captions)
    own = np.arange(60)
    before = head.apply(pictures, own_rows=own)
    changed = captions.copy()
    changed[7] = -changed[7]  # picture 7's own caption flipped: its aligned vector must not move
    after = AlignHead(head.pictures, changed, head.mean, head.k).apply(pictures, own_rows=own)
    assert np.allclose(before[7], after[7])
    assert not np.allclose(before, after)  # …while its caption still informs other pictures


def test_align_exclude_keeps_dates_out_of_training():
    dates, pictures, captions = _pairs(n=120)
    excluded = set(dates[::10])
    base = align(text=(dates, captions), image=(dates, pictures), shared_space=False, exclude=excluded)
    assert base.report["pairs"] == 108 and base.report["excluded_pictures"] == 12
    assert len(base.head.captions) == 108
    changed = captions.copy()
    for i in range(0, 120, 10):  # rewrite every excluded caption: no aligned picture may change
        changed[i] = -changed[i]
    again = align(text=(dates, changed), image=(dates, pictures), shared_space=False, exclude=excluded)
    assert np.array_equal(base.aligned, again.aligned)
    assert again.report["training_fingerprint"] == base.report["training_fingerprint"]
    included = align(text=(dates, changed), image=(dates, pictures), shared_space=False, exclude=set())
    assert included.report["training_fingerprint"] != base.report["training_fingerprint"]


def test_alignment_is_deterministic_and_multimodal_uses_both_halves():
    dates, pictures, captions = _pairs(n=100)
    a = align(text=(dates, captions), image=(dates[:80], pictures[:80]), shared_space=False, exclude=set())
    b = align(text=(dates, captions), image=(dates[:80], pictures[:80]), shared_space=False, exclude=set())
    assert np.array_equal(a.aligned, b.aligned) and a.report == b.report
    assert a.multimodal.shape == (100, 48)
    assert np.allclose(np.linalg.norm(a.multimodal, axis=1), 1, atol=1e-5)
    # no picture: both halves are the text vector; with a picture the second half is the aligned picture
    assert np.allclose(a.multimodal[90, :24], a.multimodal[90, 24:])
    assert np.allclose(a.multimodal[5, 24:] / np.linalg.norm(a.multimodal[5, 24:]), a.aligned[5], atol=1e-5)


def test_the_last_builds_head_is_kept_for_the_same_pairs_and_extended_by_a_new_picture():
    """A day without a picture leaves the pairs unchanged: the kept head gives the same vectors without
    training. A day's new picture extends it (same k and centring): an old picture's aligned vector moves
    only if the new one became one of its look-alikes. A changed pair, or more new pictures than 5 %,
    trains again; so does any change once the picture space is another (the callback says None)."""
    dates, pictures, captions = _pairs(n=100)
    first = align(text=(dates, captions), image=(dates[:80], pictures[:80]), shared_space=False, exclude=set())
    scores = {int(k): v for k, v in first.report["inner_cv_caption_to_picture_r10"].items()}
    asked: list[str] = []

    def kept(fingerprint: str):
        asked.append(fingerprint)
        return first.head, scores, fingerprint == first.report["training_fingerprint"]

    again = align(text=(dates, captions), image=(dates[:80], pictures[:80]), shared_space=False, exclude=set(), kept=kept)
    assert again.head is first.head and again.report["head"].startswith("kept")
    assert np.array_equal(again.aligned, first.aligned) and np.array_equal(again.multimodal, first.multimodal)
    assert {k: v for k, v in again.report.items() if k != "head"} == {k: v for k, v in first.report.items() if k != "head"}
    grown = align(text=(dates, captions), image=(dates[:81], pictures[:81]), shared_space=False, exclude=set(), kept=kept)
    assert grown.report["head"] == "extended from the last build (1 new pairs; its k and centring kept)"
    assert grown.head.k == first.head.k and np.array_equal(grown.head.mean, first.head.mean)
    moved = np.flatnonzero(np.any(grown.aligned[:80] != first.aligned, axis=1))
    sims = grown.head.centred(pictures[:80]) @ grown.head.pictures.T
    sims[np.arange(80), np.arange(80)] = -np.inf  # leave-one-out, as the head does
    new_is_a_look_alike = np.flatnonzero((sims[:, 80:81] >= np.sort(sims, axis=1)[:, -first.head.k:-first.head.k + 1]).ravel())
    assert 0 < len(moved) < 80 and set(moved) == set(new_is_a_look_alike)
    many = align(text=(dates, captions), image=(dates[:90], pictures[:90]), shared_space=False, exclude=set(), kept=kept)
    assert many.report["head"] == "trained"  # 10 new pairs: more than 5 % of 80
    changed = captions.copy()
    changed[3] = captions[4]
    retrained = align(text=(dates, changed), image=(dates[:80], pictures[:80]), shared_space=False, exclude=set(),
                      kept=lambda fp: kept(fp) if fp == first.report["training_fingerprint"] else None)
    assert retrained.report["head"] == "trained" and retrained.head is not first.head
    assert asked[-1] != first.report["training_fingerprint"]


def test_shared_space_and_too_few_pairs():
    dates, pictures, captions = _pairs(n=30)
    shared = align(text=(dates, captions), image=(dates, captions[:, :24]), shared_space=True, exclude=set())
    assert shared.head is None and np.allclose(shared.aligned, captions, atol=1e-6)
    few = align(text=(dates, captions), image=(dates[:5], pictures[:5]), shared_space=False, exclude=set())
    assert few.head is None and few.dates == [] and "fewer than" in few.report["method"]
    assert few.multimodal.shape == (30, 48)  # same layout as with a head: text repeated in both halves


def test_choose_k_prefers_the_better_inner_score():
    _, pictures, captions = _pairs(n=200)
    k, scores = choose_k(pictures, captions, grid=(1, 10))
    assert set(scores) == {1, 10} and k == max(scores, key=scores.get)


def test_head_round_trips_through_a_file(tmp_path):
    dates, pictures, captions = _pairs(n=50)
    head, _ = fit_head(pictures, captions, dates=dates)
    head.save(tmp_path / "h.npz")
    loaded = AlignHead.load(tmp_path / "h.npz")
    assert loaded.k == head.k and np.array_equal(loaded.apply(pictures), head.apply(pictures))
    assert list(loaded.dates) == dates


NAMES = [f"class {i}" for i in range(12)]


def _topic_classes(n: int = 240, topics: int = 12, seed: int = 0, noise: float = 0.6):
    """The pairs of :func:`_pairs`, and class vectors that are the captions' topic centres."""
    dates, pictures, captions = _pairs(n, topics, seed, noise)
    topic = np.random.default_rng(seed).integers(0, topics, n)  # the same draw as in _pairs
    classes = np.stack([captions[topic == t].mean(axis=0) for t in range(topics)])
    return dates, pictures, captions, topic, classes / np.linalg.norm(classes, axis=1, keepdims=True)


def test_picture_categories_are_the_look_alikes_vote():
    dates, pictures, captions, topic, classes = _topic_classes()
    head, _ = fit_head(pictures[:200], captions[:200], dates=dates[:200])
    caption_probs = class_probabilities(head.captions, classes, 20.0)
    probs = head.category_votes(pictures[200:], caption_probs, vote=CategoryVote(k=10, tau=0.1))
    assert probs.shape == (40, 12) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.mean(probs.argmax(axis=1) == topic[200:]) > 0.8  # held-out pictures: chance is 1/12
    # the vote is not the aligned vector's nearest class: a sharper τ follows the closest look-alike more
    soft = head.category_votes(pictures[200:], caption_probs, vote=CategoryVote(k=10, tau=10.0))
    assert not np.allclose(probs, soft)


def test_training_pictures_never_vote_with_their_own_caption():
    dates, pictures, captions, _, classes = _topic_classes(n=80)
    head, _ = fit_head(pictures, captions, dates=dates)
    own = head.own_rows(dates)
    assert list(own) == list(range(80)) and list(head.own_rows(["1999-01-01"])) == [-1]
    vote = CategoryVote(k=5, tau=0.1)
    caption_probs = class_probabilities(captions, classes, 20.0)
    before = head.category_votes(pictures, caption_probs, vote=vote, dates=dates)
    changed = caption_probs.copy()
    changed[3] = np.roll(changed[3], 1)  # picture 3's caption: another class
    after = head.category_votes(pictures, changed, vote=vote, dates=dates)
    assert np.allclose(before[3], after[3])  # its own caption never votes for it…
    assert not np.allclose(before, after)  # …while it still votes for its look-alikes


def test_choose_vote_needs_no_labels_and_is_deterministic():
    dates, pictures, captions, _, classes = _topic_classes(noise=1.5)  # look-alikes often of another topic
    head, _ = fit_head(pictures, captions, dates=dates)
    caption_probs = class_probabilities(head.captions, classes, 20.0)
    vote, scores = choose_vote(head, caption_probs, k_grid=(1, 10, 40), tau_grid=(0.05, 1.0))
    assert len(scores) == 6 and scores[f"k={vote.k} tau={vote.tau}"] == max(scores.values())
    assert scores["k=10 tau=1.0"] > scores["k=1 tau=1.0"]  # one look-alike is a noisier vote than ten
    assert choose_vote(head, caption_probs, k_grid=(1, 10, 40), tau_grid=(0.05, 1.0)) == (vote, scores)


def test_probe_blend_is_chosen_without_labels_and_beats_chance():
    dates, pictures, captions, topic, classes = _topic_classes(n=300, noise=1.2)
    head, _ = fit_head(pictures[:240], captions[:240], dates=dates[:240])
    caption_probs = class_probabilities(head.captions, classes, 20.0)
    vote = CategoryVote(k=10, tau=0.1)
    probe, report = fit_probe(head, caption_probs, names=NAMES, vote=vote, space="s")
    scores = report["inner_cv_caption_class_agreement"]
    assert sorted(scores) == sorted(f"C={c} share={s}" for c in C_GRID for s in SHARE_GRID)
    assert report["model"] == "fitted (no probe yet)" and (probe.C, probe.share) == (report["C"], report["share"])
    linear = probe.probabilities(pictures[240:])
    assert linear.shape == (60, 12) and np.allclose(linear.sum(axis=1), 1, atol=1e-5)
    assert np.mean(linear.argmax(axis=1) == topic[240:]) > 0.5  # held-out pictures: chance is 1/12
    blend = head.category_votes(pictures[240:], caption_probs, vote=vote, probe=probe)
    alone = head.category_votes(pictures[240:], caption_probs, vote=vote)
    assert np.allclose(blend, (1 - probe.share) * alone + probe.share * linear, atol=1e-6)
    again, _ = fit_probe(head, caption_probs, names=NAMES, vote=vote, space="s")
    assert np.array_equal(again.weights, probe.weights) and again.share == probe.share  # deterministic


def test_two_caption_classes_make_a_probe_of_every_class():
    """sklearn fits one logit for two classes; the probe still gives every class a probability."""
    dates, pictures, captions, topic, classes = _topic_classes(n=120)
    head, _ = fit_head(pictures, captions, dates=dates)
    probs = np.zeros((120, 12), np.float32)
    probs[np.arange(120), np.where(topic < 6, 2, 7)] = 1.0  # two classes in the captions, ten in the taxonomy
    probe, _ = fit_probe(head, probs, names=NAMES, vote=CategoryVote(k=5, tau=0.1), space="s", share_grid=(0.5,))
    linear = probe.probabilities(pictures)
    assert linear.shape == (120, 12) and np.allclose(linear.sum(axis=1), 1, atol=1e-5)
    assert set(np.flatnonzero(linear.max(axis=0) > 1e-6)) == {2, 7}  # classes no caption had are ruled out
    assert np.mean(linear.argmax(axis=1) == np.where(topic < 6, 2, 7)) > 0.7


def test_training_pictures_get_the_probe_that_never_saw_their_caption():
    dates, pictures, captions, _, classes = _topic_classes(n=120)
    head, _ = fit_head(pictures, captions, dates=dates)
    caption_probs = class_probabilities(captions, classes, 20.0)
    vote = CategoryVote(k=5, tau=0.1)
    grids = {"names": NAMES, "space": "s", "c_grid": (10.0,), "share_grid": (0.5,)}
    probe, _ = fit_probe(head, caption_probs, vote=vote, **grids)
    before = head.category_votes(pictures, caption_probs, vote=vote, dates=dates, probe=probe)
    voted = head.category_votes(pictures, caption_probs, vote=vote, dates=dates)
    assert np.allclose(before, 0.5 * voted + 0.5 * probe.held_out, atol=1e-6)  # not the full probe…
    assert not np.allclose(probe.held_out, probe.probabilities(pictures), atol=1e-3)
    changed = caption_probs.copy()
    changed[3] = np.roll(changed[3], 1)  # picture 3's caption: another class
    probe, _ = fit_probe(head, changed, vote=vote, **grids)
    after = head.category_votes(pictures, changed, vote=vote, dates=dates, probe=probe)
    assert np.allclose(before[3], after[3], atol=1e-6)  # …so neither its vote nor its probe read its caption,
    assert not np.allclose(before, after)  # which still teaches the probe for other pictures
    # excluded from a later head (--align-exclude), picture 3 still gets the probe that never saw it
    smaller, _ = fit_head(np.delete(pictures, 3, axis=0), np.delete(captions, 3, axis=0),
                          dates=[d for i, d in enumerate(dates) if i != 3])
    smaller_probs = np.delete(changed, 3, axis=0)
    got = smaller.category_votes(pictures[3:4], smaller_probs, vote=vote, dates=dates[3:4], probe=probe)
    voted = smaller.category_votes(pictures[3:4], smaller_probs, vote=vote, dates=dates[3:4])
    assert np.allclose(got, 0.5 * voted + 0.5 * probe.held_out[3:4], atol=1e-6)


def test_published_probe_is_kept_while_its_space_holds_and_few_pictures_change(tmp_path):
    dates, pictures, captions, _, classes = _topic_classes(n=200)
    vote = CategoryVote(k=5, tau=0.1)
    head, _ = fit_head(pictures[1:], captions[1:], dates=dates[1:])
    probs = class_probabilities(head.captions, classes, 20.0)
    probe, _ = fit_probe(head, probs, names=NAMES, vote=vote, space="s")
    with open(tmp_path / "classes.npz", "wb") as fh:
        np.savez(fh, **probe.fields())
    with np.load(tmp_path / "classes.npz") as z:
        published = PictureProbe.from_fields(z)
    assert np.array_equal(published.held_out, probe.held_out) and list(published.dates) == dates[1:]
    # a day with a new picture, first in date order (every head row moves): kept; the new one gets it in full
    grown, _ = fit_head(pictures, captions, dates=dates)
    grown_probs = class_probabilities(grown.captions, classes, 20.0)
    kept, report = fit_probe(grown, grown_probs, names=NAMES, vote=vote, space="s", kept=published)
    assert kept is published and report["model"].startswith("kept from an earlier build (1 newer")
    both = kept.probabilities(pictures[:3], dates=dates[:3])
    assert np.allclose(both[0], kept.probabilities(pictures[:1])[0])  # new: the full probe
    assert np.allclose(both[1:], kept.held_out[:2])  # its training pictures: their held-out rows
    refits = {"--refit": dict(refit=True), "another picture space": dict(space="t"),
              "other settings or classes": dict(names=NAMES[::-1])}
    for reason, change in refits.items():
        args = {"names": NAMES, "vote": vote, "space": "s", "kept": published} | change
        assert fit_probe(grown, grown_probs, **args)[1]["model"] == f"fitted ({reason})"
    rolled = np.roll(grown_probs, 1, axis=1)  # every caption of another class
    assert fit_probe(grown, rolled, names=NAMES, vote=vote, space="s", kept=published)[1]["model"].startswith(
        "fitted (200 training pictures new, gone or of another caption class")


def test_exclude_file_is_validated(tmp_path):
    good = tmp_path / "holdout.txt"
    good.write_text("# held out\n2014-01-02\n\n2014-01-06  # a comment\n2014-01-02\n")
    assert read_date_list(good) == ["2014-01-02", "2014-01-06"]
    assert BuildConfig(align_exclude=good).excluded_from_alignment() == ["2014-01-02", "2014-01-06"]
    bad = tmp_path / "bad.txt"
    bad.write_text("2014-01-02\n14 Jan 2014\n")
    with pytest.raises(ValueError, match=r"line 2: '14 Jan 2014' is not a date"):
        BuildConfig(align_exclude=bad)
    with pytest.raises(ValueError, match="cannot read the date list"):
        BuildConfig(align_exclude=tmp_path / "missing.txt")
