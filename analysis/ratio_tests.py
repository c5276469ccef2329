"""Tests of "the candidate/baseline ratio is 1" for the regression gate (docs/ci-gate.md), and Holm's levels.

Each test gives the ratio, a two-sided p-value, the standard error of log(ratio) and intervals at any
confidence, so the gate can apply Holm-Bonferroni over all its comparisons and state, for each, the smallest
regression it could have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

POWER = 0.8  # "detectable": the regression a comparison catches this often at the noise it observed


@dataclass
class RatioTest:
    ratio: float
    p_value: float
    se: float  # standard error of log(ratio)
    df: float  # degrees of freedom of its t reference (inf: normal)
    bounds: Callable[[float], tuple[float, float]]  # confidence -> interval of the ratio
    method: str


Run = list[np.ndarray]  # one row's samples, one array per window


def runs(rows: pd.DataFrame, column: str, kind: str) -> list[Run]:
    """Each row's samples split by window (energy: one value per window; latency: that window's calls)."""
    found = []
    for _, row in rows.iterrows():
        samples = np.asarray(row[column], dtype=float)
        if kind == "energy":
            windows = [samples[i:i + 1] for i in range(len(samples))]
        else:
            calls = row.get("window_calls")
            bounds = np.cumsum(calls)[:-1] if calls is not None and len(calls) else []
            windows = np.split(samples, bounds)
        found.append([w for w in windows if len(w)])
    return [r for r in found if r]


def _pick(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.integers(0, len(items), len(items))]


def _resampled_median(runs: list[Run], rng: np.random.Generator) -> float:
    """Resamples runs, then windows within each run, then samples within each window."""
    return float(np.median(np.concatenate([w[rng.integers(0, len(w), len(w))]
                                           for run in _pick(runs, rng) for w in _pick(run, rng)])))


def median(runs: list[Run]) -> float:
    return float(np.median(np.concatenate([w for run in runs for w in run])))


def bootstrap_ratio(baseline: list[Run], candidate: list[Run], resamples: int = 2000, seed: int = 0) -> RatioTest:
    """Ratio of medians candidate/baseline, with a hierarchical bootstrap of its distribution.

    Samples are resampled at every level they were collected at: runs (when a side has several rows for
    a configuration), windows, then calls. Calls within one window, and windows within one run, share the
    machine's state at that moment; treating them as independent would make the interval far too narrow.
    The p-value inverts the percentile interval: twice the share of resampled ratios on the far side of 1.
    """
    rng = np.random.default_rng(seed)
    logs = np.log([_resampled_median(candidate, rng) / _resampled_median(baseline, rng) for _ in range(resamples)])

    def bounds(confidence: float) -> tuple[float, float]:
        tail = (1 - confidence) / 2 * 100
        low, high = np.exp(np.percentile(logs, [tail, 100 - tail]))
        return float(low), float(high)

    p = min(1.0, 2 * min(float(np.mean(logs <= 0)), float(np.mean(logs >= 0))))
    one = min(len(baseline), len(candidate)) == 1  # one run per side cannot show the spread between runs
    method = f"bootstrap, {len(baseline)}+{len(candidate)} runs" + (" (run-to-run noise unseen)" if one else "")
    return RatioTest(median(candidate) / median(baseline), p, float(np.std(logs, ddof=1)), math.inf, bounds, method)


def paired_t(baseline: np.ndarray, candidate: np.ndarray, rounds: int | None = None) -> RatioTest:
    """Student t on log(candidate / baseline) of each round: the rounds are the independent units.

    Within a round the two sides ran back to back, so what changes between rounds (drift, a neighbour) hits
    both; the ratio is the geometric mean of the per-round ratios. `rounds`: how many rounds were run, when
    some could not be paired (the method then says how many were).
    """
    logs = np.log(np.asarray(candidate, float) / np.asarray(baseline, float))
    n = len(logs)
    mean, se = float(logs.mean()), float(logs.std(ddof=1) / math.sqrt(n))
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))

    def bounds(confidence: float) -> tuple[float, float]:
        half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * se
        return math.exp(mean - half), math.exp(mean + half)

    used = f"{n} of {rounds}" if rounds and rounds != n else f"{n}"
    return RatioTest(math.exp(mean), p, se, n - 1, bounds, f"paired t, {used} rounds")


def detectable(test: RatioTest, confidence: float, threshold: float) -> float:
    """The smallest regression (a fraction) the comparison flags with probability POWER at the noise it saw.

    A regression is flagged when the estimated log ratio exceeds both log(1 + threshold) and the interval's
    half-width h at `confidence`; an estimate with standard error se clears that bar POWER of the time when the
    true log ratio is max(log(1 + threshold), h) + q * se, q the POWER quantile of its reference distribution.
    """
    low, high = test.bounds(confidence)
    half = (math.log(high) - math.log(low)) / 2
    return math.exp(max(math.log1p(threshold), half) + float(stats.t.ppf(POWER, test.df)) * test.se) - 1


def holm(p_values: list[float], alpha: float) -> list[float]:
    """Each comparison's level under Holm's step-down procedure (family-wise error alpha).

    The k-th smallest p-value (from 0) is tested at alpha / (m - k) until one is not rejected; that one and all
    after it keep its level, at which none of them is rejected.
    """
    levels = [alpha] * len(p_values)
    stop = None
    for step, i in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        levels[i] = stop if stop is not None else alpha / (len(p_values) - step)
        if stop is None and p_values[i] >= levels[i]:
            stop = levels[i]
    return levels
