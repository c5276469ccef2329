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


# Generate rows: the two phases, joules per output token (decode) with its interval, and per request.
GENERATE_COLUMNS = {
    **{k: COLUMNS[k] for k in ("model", "quant", "batch_size", "device", "status")},
    "ttft_ms_p50": "TTFT ms",
    "ttft_vs_fp32": "TTFT/fp32",
    "itl_ms_p50": "ITL ms",
    "itl_vs_fp32": "ITL/fp32",
    "decode_tokens_s": "decode tok/s",
    "energy_j_per_input_token": "J/in tok",
    "energy_j_per_output_token": "J/out tok",
    "energy_j_per_output_token_ci_low": "ci low",
    "energy_j_per_output_token_ci_high": "ci high",
    "energy_j_per_request": "J/request",
    **{k: COLUMNS[k] for k in ("energy_source", "quality", "quality_ratio")},
}


def label(row: pd.Series) -> str:
    return f"{row['model']} quant={row['quant']} batch_size={row['batch_size']} device={row['device']}"


def _vs_fp32(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's value over the fp32 row's of the same configuration in this table (its slowdown)."""
    same = [c for c in ("model", "batch_size", "device", "prompt_len", "new_tokens") if c in rows]
    fp32 = rows[(rows["quant"] == "fp32") & (rows["status"] == "ok")].drop_duplicates(same).set_index(same)[column]
    reference = rows.join(fp32.rename("_fp32"), on=same)["_fp32"]
    return rows[column] / reference


def table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(no rows)"
    generating = "scenario" in rows and (rows["scenario"] == "generate").any()
    columns = GENERATE_COLUMNS if generating else COLUMNS
    if generating:
        rows = rows.assign(ttft_vs_fp32=_vs_fp32(rows, "ttft_ms_p50"), itl_vs_fp32=_vs_fp32(rows, "itl_ms_p50"))
    shown = rows.reindex(columns=list(columns)).rename(columns=columns)
    order = [c for c in ("model", "device", "backend", "prune", "quant", "batch") if c in shown]
    shown = shown.sort_values(order, kind="stable")
    text = shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    if "energy_measured" in rows and not rows["energy_measured"].fillna(False).astype(bool).all():
        text += "\nsource=estimate rows are a power model (no readable energy counter), not measurements."
    return text
