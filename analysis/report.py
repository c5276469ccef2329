"""summary.md and a self-contained report.html (interactive plots, plotly.js inlined once) from rows with their
fronts, costs and limits."""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from analysis import interactive
from analysis.loads import serve_mode
from analysis.serve_plots import variant_label
from bench.digits import ESTIMATE_SIGNIFICANT, plain, with_interval

COLUMNS = [
    ("front", "front"), ("model", "model"), ("quant", "quant"), ("prune", "prune"), ("prune_amount", "amount"),
    ("batch_size", "batch"), ("backend", "backend"), ("flops_per_inference", "FLOPs/inf"),
    ("quality", "quality"), ("quality_ci", "quality interval"), ("quality_ratio", "vs fp32"),
    ("passes_quality_gate", "gate"),
    ("energy_j", "J/{unit}"), ("energy_ci", "interval"), ("energy_j_per_token", "J/token"),
    ("latency_ms_p50", "p50 ms"), ("kwh_per_million", "kWh/M"), ("cost_per_million", "cost/M"),
    ("gco2e_per_million", "gCO2e/M"), ("energy_source", "energy source"),
]
DAILY = [("kwh_per_day", "kWh/day"), ("cost_per_day", "cost/day"), ("gco2e_per_day", "gCO2e/day")]
LIMIT_COLUMNS = [
    ("model", "model"), ("quant", "quant"), ("prune", "prune"), ("batch_size", "batch"), ("backend", "backend"),
    ("precision", "precision"),
    ("limit_device", "peak of"), ("achieved_tflops", "TFLOP/s"), ("fraction_of_peak_tflops", "% peak FLOP/s"),
    ("gflops_per_joule", "GFLOP/J"), ("peak_gflops_per_joule", "peak GFLOP/J"),
    ("fraction_of_peak_flops_per_joule", "% peak FLOP/J"), ("energy_source", "energy source"),
]
DECODE_COLUMNS = [("decode_tokens_s", "decode tok/s"), ("decode_bound_tokens_s", "bound tok/s"),
                  ("fraction_of_decode_bound", "% of bound")]
SERVE_COLUMNS = [
    ("variant", "variant"), ("load", "load"), ("energy_j", "J/{unit}"), ("energy_ci", "interval"),
    ("energy_j_per_request", "J/request"), ("ttft_ms_p50", "TTFT p50 ms"), ("ttft_ms_p99", "TTFT p99 ms"),
    ("itl_ms_p99", "ITL p99 ms"), ("achieved_rps", "achieved req/s"), ("output_tokens_s", "out tok/s"),
    ("slo", "SLO"), ("slo_attainment", "attainment"), ("goodput_rps", "goodput req/s"),
    ("requests", "ok/failed/timed out"), ("energy_source", "energy source"),
]
Group = tuple[str, pd.DataFrame, list[Path]]  # heading, rows, plot files


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return plain(value)
    return "-" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _percent(values: pd.Series) -> list[str]:
    return ["-" if pd.isna(v) else f"{v:.1%}" for v in values]


def _source(rows: pd.DataFrame) -> list[str]:
    """The energy source, marked where it is a model rather than a measurement."""
    return [interactive.source_label(s, m) for s, m in zip(rows["energy_source"], rows["energy_measured"].astype(bool))]


def _shown(rows: pd.DataFrame, columns: list[tuple[str, str]], computed: dict) -> pd.DataFrame:
    shown = pd.DataFrame(computed, index=rows.index)
    for column, _ in columns:
        if column not in shown:
            shown[column] = rows[column] if column in rows else None
    return shown[[c for c, _ in columns]].rename(columns=dict(columns))


def _energy(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The energy figure and its interval, to the digits the interval supports (two at most for an estimate)."""
    estimate = ~rows["energy_measured"].astype(bool)
    energy = [with_interval(*v) for v in zip(rows["energy_j"], rows["energy_j_ci_low"], rows["energy_j_ci_high"],
                                              estimate)]
    return {"energy_j": [e[0] for e in energy],
            "energy_ci": ["-" if lo == "-" else f"[{lo}, {hi}]" for _, lo, hi in energy]}


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One group's rows sorted by energy, the front marked, the interval, cost and carbon, the energy source."""
    rows = rows.sort_values("energy_j")
    unit = rows["energy_unit"].iloc[0]
    columns = [(c, title.format(unit=unit)) for c, title in COLUMNS] + [d for d in DAILY if d[0] in rows]
    estimate = ~rows["energy_measured"].astype(bool)
    none = pd.Series(None, rows.index, dtype=object)
    # Quality to the digits its interval (docs/quality.md) supports; rows of an older schema have none.
    quality = [with_interval(*v) for v in zip(*(rows.get(c, none) for c in ("quality", "quality_ci_low",
                                                                            "quality_ci_high")))]
    return _shown(rows, columns, {
        "front": rows["on_pareto_front"].map({True: "★", False: ""}),
        **_energy(rows),
        "quality": [q[0] for q in quality],
        "quality_ci": ["-" if lo == "-" else f"[{lo}, {hi}]" for _, lo, hi in quality],
        "energy_j_per_token": [plain(v, ESTIMATE_SIGNIFICANT if est else 3) for v, est in
                               zip(rows.get("energy_j_per_token", pd.Series(None, rows.index)), estimate)],
        "energy_source": _source(rows),
    })


def _count(value: object) -> str:
    return "-" if pd.isna(value) else str(int(value))


def serve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One serving group's rows by variant and load: J per output token with its interval, latencies, throughput,
    the SLO the row was judged by, its attainment and goodput, and the requests that failed or timed out."""
    nan = pd.Series(float("nan"), rows.index)
    rate, concurrency = rows.get("serve_rate", nan), rows.get("serve_concurrency", nan)
    open_loop = serve_mode(rows) == "open"
    rows = rows.assign(variant=[variant_label(r) for _, r in rows.iterrows()], order=rate.where(open_loop, concurrency),
                       load=[f"{r:g} req/s" if o else f"concurrency {c:g}"
                             for o, r, c in zip(open_loop, rate, concurrency)]).sort_values(["variant", "order"])
    none = pd.Series(None, rows.index, dtype=object)
    slo = [" ".join(f"{name} ≤ {v:g} ms" for name, v in (("TTFT", t), ("ITL", i)) if pd.notna(v)) or "-"
           for t, i in zip(rows.get("slo_ttft_ms", none), rows.get("slo_itl_ms", none))]
    requests = ["/".join(_count(v) for v in counts) for counts in
                zip(*(rows.get(c, none) for c in ("requests_ok", "requests_failed", "requests_timed_out")))]
    per_request = [with_interval(*v)[0] for v in zip(
        *(rows.get(c, none) for c in ("energy_j_per_request", "energy_j_per_request_ci_low",
                                      "energy_j_per_request_ci_high")), ~rows["energy_measured"].astype(bool))]
    columns = [(c, title.format(unit=rows["energy_unit"].iloc[0])) for c, title in SERVE_COLUMNS]
    return _shown(rows, columns, {**_energy(rows), "variant": rows["variant"], "load": rows["load"], "slo": slo,
                                  "energy_j_per_request": per_request,
                                  "slo_attainment": _percent(rows.get("slo_attainment", none)),
                                  "requests": requests, "energy_source": _source(rows)})


def interval_note(rows: pd.DataFrame) -> str:
    """What the energy interval is: its method and the coverage it really has, as the rows record them."""
    if "energy_ci_method" not in rows or rows["energy_ci_method"].isna().all():
        return ("interval: as recorded by rows of an older schema (a bootstrap of the median over windows: with n "
                "windows it is their range, which covers the median with probability 1 - 2^(1-n), not 95%).")
    pairs = rows[["energy_ci_method", "energy_ci_level"]].dropna().drop_duplicates()
    return "interval: " + "; ".join(f"{m}, coverage {float(c):.1%}" for m, c in pairs.itertuples(index=False)) + "."


def limits_table(rows: pd.DataFrame) -> pd.DataFrame:
    """How far each variant is from the device's peak FLOP/s and FLOP/J (and, for decode, the bandwidth bound)."""
    rows = rows.sort_values("energy_j")
    decoding = "decode_tokens_s" in rows and rows["decode_tokens_s"].notna().any()
    columns = LIMIT_COLUMNS[:-1] + (DECODE_COLUMNS if decoding else []) + LIMIT_COLUMNS[-1:]
    return _shown(rows, columns, {
        "gflops_per_joule": rows["flops_per_joule"] / 1e9, "peak_gflops_per_joule": rows["peak_flops_per_joule"] / 1e9,
        "fraction_of_peak_tflops": _percent(rows["fraction_of_peak_tflops"]),
        "fraction_of_peak_flops_per_joule": _percent(rows["fraction_of_peak_flops_per_joule"]),
        "fraction_of_decode_bound": _percent(rows["fraction_of_decode_bound"]),
        "energy_source": _source(rows),
    })


def _unique(values: pd.Series) -> list[str]:
    return [v for v in dict.fromkeys(values.dropna().astype(str)) if v]


def cost_note(rows: pd.DataFrame) -> str:
    unit = rows["energy_unit"].iloc[0]
    prices = ", ".join(f"{float(v):g}" for v in rows["price_per_kwh"].unique())
    # Each intensity with where it comes from, where the costs recorded that (grid_source).
    source = rows["grid_source"] if "grid_source" in rows else pd.Series(None, index=rows.index, dtype=object)
    grids = pd.DataFrame({"grid": rows["grid_gco2_per_kwh"].astype(float), "source": source}).drop_duplicates()
    shown = "; ".join(f"{grid:g} gCO2e/kWh" + (f", {s}" if isinstance(s, str) and s else "")
                      for grid, s in grids.itertuples(index=False))
    return (f"kWh/M, cost/M, gCO2e/M: per million {unit}s, from the attributed (idle-subtracted) energy at "
            f"{prices} per kWh and {shown}.")


def limit_notes(rows: pd.DataFrame) -> list[str]:
    """The peaks' sources, and why a figure is missing (each reason once)."""
    notes = [f"Peaks: {s}." for s in _unique(rows["peak_source"])]
    notes += [f"No figure: {n}." for n in _unique(rows["limit_note"])]
    notes.append("% peak FLOP/J: the row's FLOP per attributed joule over the datasheet's dense peak FLOP/s per "
                 "rated watt.")
    return notes


def _md_table(t: pd.DataFrame) -> list[str]:
    return (["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
            + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in t.itertuples(index=False)])


SERVE_NOTE = ("Serving under load: each row is one load (an open-loop Poisson arrival rate, or a closed loop of "
              "that many requests in flight); the joules are over the steady state only, net of the server's idle "
              "power with the model loaded. Attainment: the share of requests that met the row's own SLO.")


def summary_md(groups: list[Group], excluded: int, serving: list[Group] = ()) -> str:
    lines = ["# Energy and quality summary", ""]
    if excluded:
        lines += [f"{excluded} row(s) without usable quality or energy (failed runs, eval=none) are not placed.", ""]
    for heading, rows, images in serving:
        lines += [f"## Serving: {heading}", "", *_md_table(serve_table(rows)), "", SERVE_NOTE,
                  interval_note(rows), *(f"Plot: {image.name}" for image in images)]
        if not rows["energy_measured"].astype(bool).all():
            lines += ["ESTIMATE: no energy counter was readable; the figure is a power model, not a measurement."]
        lines.append("")
    for heading, rows, _ in groups:
        lines += [f"## {heading}", "", *_md_table(table(rows)), ""]
        lines += ["★: on the Pareto front (no other variant is at least as accurate for no more energy).",
                  interval_note(rows), cost_note(rows)]
        if not rows["energy_measured"].astype(bool).all():
            lines += ["ESTIMATE: no energy counter was readable; the figure is a power model, not a measurement."]
        lines += ["", f"### Distance to the limit: {heading}", "", *_md_table(limits_table(rows)), ""]
        lines += [*limit_notes(rows), ""]
    return "\n".join(lines)


def _html_table(t: pd.DataFrame) -> str:
    return t.to_html(index=False, na_rep="-", float_format=plain, border=0)


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _plots(figures: list, images: list[Path], index: Iterator[int]) -> list[str]:
    """The interactive figures, numbered across the page, then links to the PNGs written beside the page."""
    links = ", ".join(f"<a href='{html.escape(image.name)}'>{html.escape(image.name)}</a>" for image in images)
    return ([f"<div class='plot'>{interactive.embed(figure, next(index))}</div>" for figure in figures]
            + ([f"<p class='note'>The same as PNG (beside this file): {links}</p>"] if images else []))


PLOT_NOTE = ("Plots: hover a point for its configuration and its energy with the interval and source; click a legend "
             "entry to hide or show that series, double-click to show it alone; the buttons above a plot with "
             "several backends show one of them.")


def report_html(groups: list[Group], excluded: int, title: str, serving: list[Group] = ()) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "td:nth-child(2),td:nth-child(3),td:nth-child(4),td:nth-child(7),td:last-child{text-align:left}"
             ".plot{border:1px solid #eee;margin:0.5em 0}.note{color:#666;font-size:13px}.note a{color:#666}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if excluded:
        parts.append(_note(f"{excluded} row(s) without usable quality or energy are not placed."))
    if groups or serving:
        parts.append(_note(PLOT_NOTE))
    index = itertools.count()  # plotly.js goes into the page once, with the first figure
    for heading, rows, images in groups:
        parts += [f"<h2>{html.escape(heading)}</h2>", _html_table(table(rows)),
                  _note("★ on the Pareto front. Hollow points and ESTIMATE sources: no energy counter was readable, "
                        "the figure is a power model, not a measurement."), _note(interval_note(rows)),
                  _note(cost_note(rows))]
        parts += _plots([interactive.quality_energy(rows, heading), interactive.latency_energy(rows, heading)],
                        images, index)
        parts += [f"<h3>Distance to the limit: {html.escape(heading)}</h3>", _html_table(limits_table(rows)),
                  *(_note(n) for n in limit_notes(rows))]
    for heading, rows, images in serving:
        parts += [f"<h2>Serving: {html.escape(heading)}</h2>", _html_table(serve_table(rows)), _note(SERVE_NOTE),
                  _note(interval_note(rows)), *_plots([interactive.load_curves(rows, heading)], images, index)]
        if not rows["energy_measured"].astype(bool).all():
            parts.append(_note("ESTIMATE: no energy counter was readable; the figure is a power model, not a "
                               "measurement."))
    parts.append("</body></html>")
    return "\n".join(parts)
