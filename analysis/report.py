"""summary.md and a self-contained report.html (plots embedded) from rows with their fronts."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

COLUMNS = [
    ("front", "front"), ("model", "model"), ("quant", "quant"), ("batch_size", "batch"), ("backend", "backend"),
    ("quality", "quality"), ("quality_ratio", "vs fp32"), ("passes_quality_gate", "gate"),
    ("energy_j_per_inference", "J/inference"), ("energy_ci", "95% CI"), ("energy_j_per_token", "J/token"),
    ("latency_ms_p50", "p50 ms"), ("energy_source", "energy source"),
]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.4g}"
    return "-" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One group's rows sorted by energy, the front marked, the interval and the energy source shown."""
    rows = rows.sort_values("energy_j_per_inference")
    shown = pd.DataFrame({
        "front": rows["on_pareto_front"].map({True: "★", False: ""}),
        "energy_ci": [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(rows["energy_j_per_inference_ci_low"],
                                                               rows["energy_j_per_inference_ci_high"])],
        "energy_source": [s if m else f"{s} (ESTIMATE)" for s, m in zip(rows["energy_source"],
                                                                       rows["energy_measured"].astype(bool))],
    }, index=rows.index)
    for column, _ in COLUMNS:
        if column not in shown:
            shown[column] = rows[column] if column in rows else None
    return shown[[c for c, _ in COLUMNS]].rename(columns=dict(COLUMNS))


def summary_md(groups: list[tuple[str, str, pd.DataFrame, list[Path]]], excluded: int) -> str:
    lines = ["# Energy and quality summary", ""]
    if excluded:
        lines += [f"{excluded} row(s) without usable quality or energy (failed runs, eval=none) are not placed.", ""]
    for eval_name, device, rows, _ in groups:
        t = table(rows)
        lines += [f"## {eval_name} on {device}", "", "| " + " | ".join(t.columns) + " |",
                  "|" + "---|" * len(t.columns)]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in t.itertuples(index=False)]
        lines += ["", "★: on the Pareto front (no other variant is at least as accurate for no more energy)."]
        if not rows["energy_measured"].astype(bool).all():
            lines += ["ESTIMATE: no energy counter was readable; the figure is a power model, not a measurement."]
        lines.append("")
    return "\n".join(lines)


def report_html(groups: list[tuple[str, str, pd.DataFrame, list[Path]]], excluded: int, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "td:nth-child(2),td:nth-child(3),td:nth-child(5),td:last-child{text-align:left}"
             "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#666;font-size:13px}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if excluded:
        parts.append(f"<p class='note'>{excluded} row(s) without usable quality or energy are not placed.</p>")
    for eval_name, device, rows, images in groups:
        parts.append(f"<h2>{html.escape(eval_name)} on {html.escape(device)}</h2>")
        parts.append(table(rows).to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}", border=0))
        parts.append("<p class='note'>★ on the Pareto front. Hollow points and ESTIMATE sources: no energy "
                     "counter was readable, the figure is a power model, not a measurement.</p>")
        for image in images:
            data = base64.b64encode(image.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(image.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
