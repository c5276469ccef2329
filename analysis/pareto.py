"""Pareto fronts of quality against energy per inference, or per output token for generation (docs/protocol.md §7)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes import with_energy
from analysis.devices import device_key

# Metrics where a smaller value is better quality; every other metric is better when larger.
LOWER_IS_BETTER = {"perplexity"}
# One front per model family, scenario, eval, machine and energy source: an estimate never competes with a
# measurement, nor RAPL's package joules with NVML's board joules (docs/protocol.md §7).
GROUP = ["family", "scenario", "eval", "device_key", "energy_source"]


def pareto_front(quality: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """True for the non-dominated points (higher quality and lower energy are better).

    A point is dominated when another has quality >= and energy <=, strictly better in one: equal points
    do not dominate each other, so ties stay on the front together. NaN points are never on the front
    and dominate nothing.
    """
    quality, energy = np.asarray(quality, dtype=float), np.asarray(energy, dtype=float)
    valid = ~(np.isnan(quality) | np.isnan(energy))
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        q, e = quality[valid], energy[valid]
        dominated = (q >= quality[i]) & (e <= energy[i]) & ((q > quality[i]) | (e < energy[i]))
        on_front[i] = not dominated.any()
    return on_front


def quality_ratio(rows: pd.DataFrame) -> pd.Series:
    """Quality relative to the fp32 reference, oriented so that higher is better for every metric.

    For accuracy this is quality / reference; for perplexity it is reference / quality, so one bound
    (`ratio >= 0.99`) means "at most 1% worse" whatever the metric. Rows without a reference keep their
    recorded `quality_ratio`.
    """
    recorded = rows["quality_ratio"] if "quality_ratio" in rows else pd.Series(np.nan, index=rows.index)
    if "quality_ref" not in rows or "quality" not in rows:
        return recorded.astype(float)
    quality, ref = rows["quality"].astype(float), rows["quality_ref"].astype(float)
    lower = rows["quality_metric"].isin(LOWER_IS_BETTER) if "quality_metric" in rows else False
    return pd.Series(np.where(lower, ref / quality, quality / ref), index=rows.index).fillna(recorded.astype(float))


def with_fronts(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Every row plus `on_pareto_front` per GROUP (family, scenario, eval, device, source); returns also how many rows
    had no usable quality or energy (failed runs, eval=none, NaN) and so could not be placed."""
    out = with_energy(rows)
    out["family"] = out["model_family"].fillna(out["model"]) if "model_family" in out else out["model"]
    out["device_key"] = device_key(out)
    if "quality" not in out:
        out["quality"] = np.nan
    usable = (out["status"] == "ok") & out["quality"].notna() & out["energy_j"].notna()
    out["on_pareto_front"] = False
    for _, group in out[usable].groupby(GROUP, dropna=False):
        lower = group["quality_metric"].isin(LOWER_IS_BETTER).to_numpy()
        score = np.where(lower, -group["quality"], group["quality"])
        out.loc[group.index, "on_pareto_front"] = pareto_front(score, group["energy_j"].to_numpy())
    return out, int((~usable).sum())
