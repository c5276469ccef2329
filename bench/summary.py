"""The table printed at the end of a run or a sweep: one table per scenario, with that scenario's columns."""

from __future__ import annotations

import pandas as pd

from bench import scenarios
from bench.row import config_key

VS_FP32 = "_vs_fp32"  # a summary column `<column>_vs_fp32`: the row's value over its fp32 row's


def label(row: pd.Series) -> str:
    return f"{row['model']} quant={row['quant']} batch_size={row['batch_size']} device={row['device']}"


def _vs_fp32(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's value over the ok fp32 row of the same configuration but for quant (its slowdown)."""
    same = rows.apply(lambda r: config_key(r, without=("quant",)), axis=1)
    fp32 = (rows["quant"] == "fp32") & (rows["status"] == "ok")
    reference = dict(zip(same[fp32], rows.loc[fp32, column]))
    return rows[column] / same.map(reference).astype(float)


def _one(rows: pd.DataFrame, columns: dict[str, str]) -> str:
    derived = {c: _vs_fp32(rows, c[:-len(VS_FP32)]) for c in columns if c.endswith(VS_FP32)}
    shown = rows.assign(**derived).reindex(columns=list(columns)).rename(columns=columns)
    order = [c for c in ("model", "device", "backend", "prune", "quant", "batch") if c in shown]
    shown = shown.sort_values(order, kind="stable")
    return shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")


def table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(no rows)"
    names = rows["scenario"].fillna("classify") if "scenario" in rows else pd.Series("classify", index=rows.index)
    parts = []
    for name, group in rows.groupby(names, sort=True):
        columns = scenarios.get(name).SUMMARY_COLUMNS if name in scenarios.names() else {}
        text = _one(group, columns or {c: c for c in ("model", "quant", "batch_size", "status")})
        parts.append(text if names.nunique() == 1 else f"scenario={name}\n{text}")
    text = "\n\n".join(parts)
    if "energy_measured" in rows and not rows["energy_measured"].fillna(False).astype(bool).all():
        text += "\nsource=estimate rows are a power model (no readable energy counter), not measurements."
    return text
