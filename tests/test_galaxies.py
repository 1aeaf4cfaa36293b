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


def test_bar_and_spiral_are_means_of_those_asked():
    """GZ2 asks "is there a bar?" only of featured galaxies not seen edge-on: a smooth galaxy's bar
    fraction is 0 because it was never asked, not because it has none. Means weight each galaxy by the
    share of its votes that reached the question; a set none of whose galaxies was asked says nothing."""
    from lake.galaxy_schema import SUMMARY, summary_values

    answers = {"smooth": [0.9, 0.1, 0.1], "features": [0.1, 0.9, 0.9], "not_edge_on": [1.0, 1.0, 0.5],
               "bar": [0.0, 0.8, 0.4], "spiral": [0.0, 0.6, 0.2], "odd": [0.1, 0.2, 0.3]}
    values, weights = summary_values(lambda n: answers[n])
    bar = list(SUMMARY).index("bar")
    np.testing.assert_allclose(weights[:, bar], [0.1, 0.9, 0.45])
    means = galaxy_stats.weighted_means(values, weights)
    assert means[bar] == pytest.approx((0.1 * 0 + 0.9 * 0.8 + 0.45 * 0.4) / 1.45)  # the plain mean: 0.4
    assert means[list(SUMMARY).index("smooth")] == pytest.approx(1.1 / 3)  # unconditional: the plain mean
    never_asked = galaxy_stats.bootstrap_means(np.zeros((4, 2)), weights=np.array([[1, 0]] * 4, float))
    assert never_asked[1].as_dict() == {"value": None, "low": None, "high": None}
    assert never_asked[0].as_dict() == {"value": 0.0, "low": 0.0, "high": 0.0}
    drawn = galaxy_stats.random_mean_range(values, 2, weights=weights, draws=200)[bar]
    assert drawn.value == pytest.approx(means[bar]) and 0.0 <= drawn.low <= drawn.high <= 0.8


def test_picture_searches_are_compared_with_random_sets_of_galaxies_that_have_pictures(tmp_path):
    """Picture search returns only galaxies with a cutout. Compared with random sets of the whole
    catalogue, look-alikes from a lake whose cutouts cover one stretch of sky were always "tighter on the
    sky than chance"; their random sets come from the galaxies with pictures."""
    import pyarrow as pa

    from lake.galaxies import GalaxyQueries
    from lake.galaxy_schema import IMAGE_KIND, MORPHOLOGY_KIND
    from lake.layout import LakeLayout
    from lake.reader import LakeReader
    from lake.writer import LakeWriter

    rng = np.random.default_rng(4)
    n = 400
    ra = np.where(np.arange(n) < 100, rng.uniform(0, 5, n), rng.uniform(0, 60, n))  # pictures: RA 0–5° only
    rows = {"objid": [f"{10**18 + i}" for i in range(n)], "ra": ra, "dec": rng.uniform(-1.2, 1.2, n),
            "total_votes": [40] * n, "total_classifications": [40] * n, "gz_class": ["smooth"] * n,
            "has_image": np.arange(n) < 100}
    for name in ANSWERS:
        rows[f"p_{name}"] = rng.uniform(0, 1, n)
        rows[f"flag_{name}"] = [False] * n
    layout = LakeLayout.at(tmp_path / "lake")
    LakeWriter(layout).publish_tables({"galaxies": pa.Table.from_pydict(rows, schema=GALAXIES)},
                                      {"collections": ["gz2"]}, version="g1")
    queries = GalaxyQueries(LakeReader.open(layout.root), encoder_factory=lambda info: None)
    _, by_picture = queries._random_baselines(10, space=IMAGE_KIND)
    _, by_morphology = queries._random_baselines(10, space=MORPHOLOGY_KIND)
    assert np.median(by_picture) < 3 < 10 < np.median(by_morphology)
