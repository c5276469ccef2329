"""The table printed at the end of a run or a sweep."""

from __future__ import annotations

import pandas as pd

COLUMNS = {
    "model": "model",
    "quant": "quant",
    "backend": "backend",
    "prune": "prune",
    "batch_size": "batch",
    "device": "device",
    "status": "status",
    "latency_ms_p50": "p50 ms",
    "throughput_samples_s": "samples/s",
    "energy_j_per_inference": "J/inf",
    "energy_j_per_inference_ci_low": "ci low",
    "energy_j_per_inference_ci_high": "ci high",
    "energy_j_per_token": "J/token",
    "energy_source": "source",
    "quality": "quality",
    "quality_ratio": "vs fp32",
}


def label(row: pd.Series) -> str:
    return f"{row['model']} quant={row['quant']} batch_size={row['batch_size']} device={row['device']}"


def table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(no rows)"
    shown = rows.reindex(columns=list(COLUMNS)).rename(columns=COLUMNS)
    shown = shown.sort_values(["model", "device", "backend", "prune", "quant", "batch"], kind="stable")
    text = shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    if "energy_measured" in rows and not rows["energy_measured"].fillna(False).astype(bool).all():
        text += "\nsource=estimate rows are a power model (no readable energy counter), not measurements."
    return text
