"""Intervals of quality figures (docs/quality.md): Wilson for accuracy, a seeded percentile bootstrap otherwise.

Each interval describes how far the figure could move on another test set drawn like this one; the variant and
its fp32 reference are scored on the same items, so their ratio gets a paired bootstrap (both resampled alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import norm, rankdata

RESAMPLES = 2000
CHUNK = 250  # resamples computed at once: bounds the memory of an index matrix over a large test set
# (indices of one resample per row) -> one figure per row
Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str


def wilson(successes: int, n: int, level: float) -> Interval:
    """Wilson's score interval of a proportion (accuracy): close to its nominal coverage even near 0 or 1."""
    z = norm.ppf((1 + level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(float(max(0.0, centre - half)), float(min(1.0, centre + half)), "wilson")


def bootstrap(statistic: Statistic, n: int, level: float, seed: int, unit: str) -> Interval:
    """Percentile bootstrap over n items (`unit`: what is resampled), seeded; no interval below 2 items."""
    method = f"percentile bootstrap over {unit} ({RESAMPLES} resamples, seed {seed})"
    if n < 2:
        return Interval(None, None, method)
    rng = np.random.default_rng(seed)
    values = np.concatenate([statistic(rng.integers(0, n, (min(CHUNK, RESAMPLES - i), n)))
                             for i in range(0, RESAMPLES, CHUNK)])
    low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(low), float(high), method)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's correlation of each row of x with the same row of y (average ranks for ties); NaN where a
    row is constant."""
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
