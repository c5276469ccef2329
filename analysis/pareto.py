"""Pareto fronts of quality against energy per inference (METHODOLOGY §5)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Metrics where a smaller value is better quality; every other metric is better when larger.
LOWER_IS_BETTER = {"perplexity"}
GROUP = ["family", "eval", "device_key"]


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


def with_fronts(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Every row plus `on_pareto_front` per (model family, eval, device); returns also how many rows had
    no usable quality or energy (failed runs, eval=none, NaN) and so could not be placed."""
    out = rows.copy()
    out["family"] = out["model_family"] if "model_family" in out else out["model"]
    out["device_key"] = out["device_name"].fillna(out["device"]) if "device_name" in out else out["device"]
    if "quality" not in out:
        out["quality"] = np.nan
    usable = (out["status"] == "ok") & out["quality"].notna() & out["energy_j_per_inference"].notna()
    out["on_pareto_front"] = False
    for _, group in out[usable].groupby(GROUP, dropna=False):
        lower = group["quality_metric"].isin(LOWER_IS_BETTER).to_numpy()
        score = np.where(lower, -group["quality"], group["quality"])
        out.loc[group.index, "on_pareto_front"] = pareto_front(score, group["energy_j_per_inference"].to_numpy())
    return out, int((~usable).sum())
