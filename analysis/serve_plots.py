"""Serving under load: J per output token (with its interval) and TTFT p99 against the offered load, one line per
variant, one plot per (model family, device, energy source, serve mode)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.loads import serve_mode  # noqa: E402

# The load a row was driven at: open-loop rows by their Poisson arrival rate, closed-loop ones by the number of
# requests kept in flight. The two are different axes, so they never share a plot.
LOAD = {"open": ("serve_rate", "arrival rate (requests/s)"),
        "closed": ("serve_concurrency", "concurrency (requests in flight, closed loop)")}
# A line is one variant; the shape is named only where it varies within the plot.
VARIANT = ["model", "quant", "backend"]
SHAPE = ["prompt_len", "new_tokens"]


def variant_label(row: pd.Series, shape: bool = False) -> str:
    """model quant backend; a shipped GGUF file names its own type (`gguf Q4_1`)."""
    quant = str(row["quant"])
    gguf_type = row.get("gguf_type")
    if quant == "gguf" and isinstance(gguf_type, str) and gguf_type:
        quant = f"gguf {gguf_type}"
    parts = [str(row["model"]), quant, str(row["backend"])]
    if shape:
        parts.append(f"prompt {int(row['prompt_len'])} + {int(row['new_tokens'])} tokens")
    return " ".join(parts)


def _curves(rows: pd.DataFrame, load: str) -> list[tuple[str, bool, pd.DataFrame]]:
    """(label, measured, one point per load: the median of repeated runs) per variant."""
    shape = [c for c in SHAPE if c in rows]
    varying = any(rows[c].nunique(dropna=False) > 1 for c in shape)
    curves = []
    for _, variant in rows.groupby(VARIANT + shape, sort=True, dropna=False):
        points = variant.groupby(load).agg(
            energy=("energy_j", "median"), low=("energy_j_ci_low", "median"), high=("energy_j_ci_high", "median"),
            ttft=("ttft_ms_p99", "median")).reset_index()
        curves.append((variant_label(variant.iloc[0], varying), bool(variant["energy_measured"].astype(bool).all()),
                       points))
    return curves


def load_curves(rows: pd.DataFrame, heading: str, path: Path) -> Path:
    """Two panels over one load axis: J per output token with its interval as error bars, and TTFT p99 (the SLO
    as a dashed line where the rows share one). Estimated energy is drawn hollow and named on the axis."""
    mode = serve_mode(rows).iloc[0]
    load, load_label = LOAD[mode]
    estimated = not rows["energy_measured"].astype(bool).all()
    fig, (energy_ax, ttft_ax) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True)
    for color, (label, measured, points) in zip(plt.cm.tab10.colors * 10, _curves(rows, load)):
        errors = [(points["energy"] - points["low"]).clip(lower=0), (points["high"] - points["energy"]).clip(lower=0)]
        style = dict(color=color, marker="o", markerfacecolor=color if measured else "none", label=label)
        energy_ax.errorbar(points[load], points["energy"], yerr=errors, capsize=3, **style)
        ttft_ax.plot(points[load], points["ttft"], **style)
    unit = rows["energy_unit"].iloc[0]
    energy_ax.set_ylabel(f"{'ESTIMATED ' if estimated else ''}J per {unit}\n(bars: its interval)")
    energy_ax.set_title(f"Serving: {heading}", fontsize=10)
    slo = rows["slo_ttft_ms"].dropna().unique() if "slo_ttft_ms" in rows else []
    if len(slo) == 1:
        ttft_ax.axhline(slo[0], color="tab:red", linestyle="--", linewidth=1, label=f"TTFT SLO {slo[0]:g} ms")
    ttft_ax.set_ylabel("TTFT p99 (ms)")
    ttft_ax.set_xlabel(load_label)
    for ax in (energy_ax, ttft_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if estimated:
        energy_ax.text(0.01, 0.98, "hollow: ESTIMATED energy (a model, not measured)", transform=energy_ax.transAxes,
                       fontsize=7, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
