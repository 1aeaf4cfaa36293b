"""The Galaxy Zoo collection's pieces on real data: the bundled catalogue, morphology vectors, and the
statistics that sit beside every neighbourhood (bootstrap intervals, random baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from atlas import galaxy_stats
from lake.galaxy_schema import ANSWERS, GALAXIES
from pipeline.config import BUNDLED_GZ2
from pipeline.galaxies import euclidean_graph, fractions, morphology_vectors, read_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return read_catalogue(BUNDLED_GZ2)


def test_bundled_catalogue_reads_with_readable_names(catalogue):
    assert catalogue.num_rows == 19_761 and catalogue.schema == GALAXIES
    classes = catalogue.column("gz_class").to_pylist()
    # the data README's counts by debiased fraction ≥ 0.5
    assert classes.count("smooth") == 11_268 and classes.count("featured") == 7_339
    first = catalogue.slice(0, 1).to_pylist()[0]
    assert first["objid"] == "8647474690312307154"  # 19 digits kept exactly (no float64 rounding)
    assert first["p_smooth"] == pytest.approx(0.21770866) and first["p_features"] == pytest.approx(0.77512515)
    dec = np.asarray(catalogue.column("dec"))
    assert dec.min() >= -1.27 and dec.max() <= 1.27


def test_catalogue_errors_name_the_file(tmp_path):
    bad = tmp_path / "votes.csv"
    bad.write_text("objid,ra,dec\n1,2,3\n")
    with pytest.raises(ValueError, match="votes.csv"):
        read_catalogue(bad)


def test_morphology_vectors_weight_answers_by_the_chance_of_being_asked(catalogue):
    raw, vecs = fractions(catalogue), morphology_vectors(catalogue)
    names = list(ANSWERS)
    bar, smooth = names.index("bar"), names.index("smooth")
    assert vecs.shape == (19_761, 37) and np.all(vecs <= raw + 1e-6)
    assert np.allclose(vecs[:, smooth], raw[:, smooth])  # the first question is asked of everyone
    smooth_ones = raw[:, smooth] > 0.9
    # a smooth galaxy's conditional bar fraction may be anything; weighted, it hardly counts
    assert raw[smooth_ones, bar].max() > 0.9 and vecs[smooth_ones, bar].max() < 0.15


def test_morphology_neighbours_share_the_class_far_above_chance(catalogue):
    sample = catalogue.slice(0, 3000)
    graph = euclidean_graph(morphology_vectors(sample), k=10)
    classes = np.asarray(sample.column("gz_class").to_pylist())
    idx, _ = graph.without_self(10)
    agree = (classes[idx] == classes[:, None]).mean()
    share = {c: (classes == c).mean() for c in set(classes)}
    chance = sum(v * v for v in share.values())
    assert agree > 0.85 and chance < 0.55  # neighbours in vote space share their class; random pairs ~half do
    assert (idx != np.arange(len(classes))[:, None]).all()


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_more_galaxies():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0, 1, (10, 2)), rng.uniform(0, 1, (400, 2))
    a, b = galaxy_stats.bootstrap_means(small)[0], galaxy_stats.bootstrap_means(large)[0]
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low) / 3
    with pytest.raises(ValueError):
        galaxy_stats.bootstrap_means(np.zeros((0, 2)))


def test_sky_dispersion_against_random_draws():
    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 60, 5000), rng.uniform(-1.2, 1.2, 5000)
    population = galaxy_stats.unit_vectors(ra, dec)
    tight = galaxy_stats.unit_vectors(10 + rng.uniform(0, 0.5, 10), rng.uniform(-0.2, 0.2, 10))
    cmp = galaxy_stats.dispersion_vs_random(tight, population, draws=300)
    assert cmp.dispersion_deg < 0.6 and cmp.random_low_deg > 5 and cmp.percentile == 0.0
    random_pick = population[rng.choice(5000, 10, replace=False)]
    loose = galaxy_stats.dispersion_vs_random(random_pick, population, draws=300)
    assert 2 < loose.percentile < 98  # a random set is typical of random sets
    assert galaxy_stats.sky_dispersion(galaxy_stats.unit_vectors([5, 5], [1, 2])) == pytest.approx(1.0)


def test_random_draws_never_repeat_a_galaxy():
    picks = galaxy_stats.random_draws(np.random.default_rng(0), population=12, size=10, draws=500)
    assert all(len(set(row)) == 10 for row in picks.tolist())
