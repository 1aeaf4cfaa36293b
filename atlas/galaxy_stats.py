"""Statistics of a set of galaxies, always next to what chance gives.

A neighbourhood's morphology or sky spread means little alone: among a Stripe 82 galaxy's 10 nearest
sky neighbours 50 % share its smooth/featured class while a random pick gives 52 % (data README). So
each summary here comes with its yardstick: bootstrap intervals for the neighbourhood's mean fractions
beside the collection's base rates and the range of means of random draws of the same size, and the
sky dispersion beside the distribution of dispersions of random draws.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Bootstrap resamples and random draws: enough for stable 5th/95th percentiles in a few milliseconds.
N_BOOTSTRAP = 2000
N_RANDOM_DRAWS = 1000
LEVEL = 0.90


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """Rounded; None for what no galaxy answered (a conditional question none of them reached)."""
        return {k: None if np.isnan(v) else round(v, 4) for k, v in
                (("value", self.value), ("low", self.low), ("high", self.high))}


def _bounds(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - level) / 2 * 100
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its bounds are NaN
        return np.nanpercentile(samples, tail, axis=0), np.nanpercentile(samples, 100 - tail, axis=0)


def weighted_means(values: np.ndarray, weights: np.ndarray | None, *, axis: int = 0) -> np.ndarray:
    """Means of ``values`` along ``axis``, each value counted by its weight (plain means without
    weights); NaN where the weights sum to nothing. A conditional answer of the GZ2 tree ("bar", asked
    only of featured, face-on galaxies) is weighted by the share of votes that reached its question,
    so a smooth galaxy, never asked, does not count as a galaxy without a bar."""
    if weights is None:
        return values.mean(axis=axis)
    total = weights.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (values * weights).sum(axis=axis) / np.where(total > 0, total, 1.0), np.nan)


def bootstrap_means(values: np.ndarray, *, weights: np.ndarray | None = None, n_boot: int = N_BOOTSTRAP,
                    level: float = LEVEL, seed: int = 0) -> list[Interval]:
    """Mean of each column of ``values`` (galaxies × answers; :func:`weighted_means` with ``weights`` of
    the same shape) with a percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError("bootstrap_means needs at least one galaxy")
    picks = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return _intervals(values, weights, picks, level)


def _intervals(values: np.ndarray, weights: np.ndarray | None, picks: np.ndarray, level: float) -> list[Interval]:
    """Per column of ``values``: its (weighted) mean and the central ``level`` range of the means of the
    sets of rows in ``picks`` (draws × rows)."""
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    low, high = _bounds(weighted_means(values[picks], None if w is None else w[picks], axis=1), level)
    return [Interval(float(m), float(lo), float(hi)) for m, lo, hi in zip(weighted_means(values, w), low, high)]


def random_draws(rng: np.random.Generator, *, population: int, size: int, draws: int) -> np.ndarray:
    """``draws`` × ``size`` indices, each row without repeats: integer draws (fast), rows with a repeat
    redrawn exactly (rare when ``size`` ≪ ``population``)."""
    size = min(size, population)
    picks = rng.integers(0, population, size=(draws, size))
    ordered = np.sort(picks, axis=1)
    for row in np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1)):
        picks[row] = rng.choice(population, size=size, replace=False)
    return picks


def random_mean_range(population: np.ndarray, size: int, *, weights: np.ndarray | None = None,
                      draws: int = N_RANDOM_DRAWS, level: float = LEVEL, seed: int = 0) -> list[Interval]:
    """Per column: the population mean and the central ``level`` range of means of random draws of
    ``size`` galaxies (what a neighbourhood picked at random would show); weighted as
    :func:`bootstrap_means` is, with ``weights``."""
    population = np.asarray(population, dtype=np.float64)
    picks = random_draws(np.random.default_rng(seed), population=len(population), size=size, draws=draws)
    return _intervals(population, weights, picks, level)


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def sky_dispersion(xyz: np.ndarray) -> float:
    """Median great-circle separation (degrees) over all pairs of the given unit vectors."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(xyz) < 2:
        return 0.0
    cos = np.clip(xyz @ xyz.T, -1.0, 1.0)
    upper = np.triu_indices(len(xyz), k=1)
    return float(np.degrees(np.median(np.arccos(cos[upper]))))


@dataclass(frozen=True)
class DispersionComparison:
    dispersion_deg: float
    random_median_deg: float
    random_low_deg: float
    random_high_deg: float
    percentile: float  # share of random draws at least as tight as the neighbours (0–100)

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def random_dispersions(population: np.ndarray, size: int, *, draws: int = N_RANDOM_DRAWS,
                       seed: int = 0) -> np.ndarray:
    """Sky dispersions of ``draws`` random sets of ``size`` galaxies from ``population`` (unit vectors).
    It depends on the size only, so callers may keep it for every neighbourhood of that size."""
    rng = np.random.default_rng(seed)
    return np.array([sky_dispersion(population[row]) for row in random_draws(rng, population=len(population), size=size, draws=draws)])


def compare_dispersion(chosen: np.ndarray, randoms: np.ndarray, *, level: float = LEVEL) -> DispersionComparison:
    """The chosen galaxies' sky dispersion against the dispersions of random sets of the same size."""
    low, high = _bounds(randoms, level)
    own = sky_dispersion(chosen)
    return DispersionComparison(own, float(np.median(randoms)), float(low), float(high),
                                float((randoms <= own).mean() * 100))


def dispersion_vs_random(chosen: np.ndarray, population: np.ndarray, *, draws: int = N_RANDOM_DRAWS,
                         level: float = LEVEL, seed: int = 0) -> DispersionComparison:
    """The chosen galaxies' sky dispersion against random draws of the same size from ``population``
    (both unit vectors). A low percentile means the neighbours cluster on the sky more than chance."""
    return compare_dispersion(chosen, random_dispersions(population, len(chosen), draws=draws, seed=seed),
                              level=level)
