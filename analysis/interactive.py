"""The report's plots drawn with plotly, for report.html: the same figures as the PNGs, but hovering a point names
its configuration (the key columns it sets) and its energy figure with the interval and the source, and the
legend shows or hides each series (one per backend and variant; buttons show one backend at a time)."""

from __future__ import annotations

import html
import itertools

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from analysis.loads import serve_mode
from analysis.quality_gates import gate_lines
from analysis.serve_plots import LOAD, SHAPE, VARIANT, variant_label
from bench.digits import plain, with_interval
from bench.row import key_columns

# Named by the plot's own title (the device, the eval), not a column (device_type), or not for readers (digests).
NOT_HOVERED = {"device_type", "device_name", "eval", "eval_key", "model_revision"}
PAIRS_PER_LINE = 4
PALETTE = qualitative.Plotly
GATE = {"dash": "dash", "color": "#d62728", "width": 1}
# Nothing leaves the page: no link to plotly's cloud editor.
CONFIG = {"displaylogo": False, "responsive": True}


def source_label(source: str, measured: bool) -> str:
    """The energy source, marked where it is a model rather than a measurement."""
    return source if measured else f"{source} (ESTIMATE)"


def _shown(value: object) -> str:
    return html.escape(f"{value:g}" if isinstance(value, float) else str(value))


def configuration(rows: pd.DataFrame) -> str:
    """`column=value` for each key column the rows set (values that differ joined by |), a few to a line."""
    pairs = []
    for column in key_columns():
        if column in NOT_HOVERED or column not in rows:
            continue
        values = list(dict.fromkeys(_shown(v) for v in rows[column] if not pd.isna(v)))
        if values:
            pairs.append(f"{column}={'|'.join(values)}")
    return "<br>".join(" ".join(pairs[i:i + PAIRS_PER_LINE]) for i in range(0, len(pairs), PAIRS_PER_LINE))


def energy_text(value: float, low: float, high: float, unit: str, source: str, measured: bool) -> str:
    """"0.24 [0.22, 0.26] J/inference (measured by rapl)", to the digits the interval supports."""
    value, low, high = with_interval(value, low, high, not measured)
    interval = "" if low == "-" else f" [{low}, {high}]"
    how = f"measured by {source}" if measured else f"{source}: ESTIMATE, a power model, not a measurement"
    return html.escape(f"{value}{interval} J/{unit} ({how})")


def _one(rows: pd.DataFrame, column: str) -> object:
    """The value every row shares: rows of two machines, energy sources or axes are never drawn on one plot."""
    values = rows[column].unique()
    if len(values) != 1:
        raise ValueError(f"one plot per {column}, got {', '.join(map(str, values))}")
    return values[0]


def _checked(rows: pd.DataFrame) -> tuple[str, bool]:
    """The energy unit and whether the joules are measured, once the rows are known to belong on one plot."""
    for column in ("device_key", "energy_source"):
        if column in rows:
            _one(rows, column)
    return str(_one(rows, "energy_unit")), bool(_one(rows, "energy_measured"))


def _bars(value: pd.Series, low: pd.Series, high: pd.Series) -> dict | None:
    """Asymmetric error bars from an interval's ends; None where no point has one."""
    if low.isna().all() or high.isna().all():
        return None
    return {"type": "data", "symmetric": False, "array": (high - value).clip(lower=0).tolist(),
            "arrayminus": (value - low).clip(lower=0).tolist(), "thickness": 1.2, "width": 3}


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows[name] if name in rows else pd.Series(float("nan"), index=rows.index)


def _marker(color: str, measured: bool) -> dict:
    return {"color": color, "symbol": "circle" if measured else "circle-open", "line": {"width": 0 if measured else 2}}


def _series_name(row: pd.Series) -> str:
    """model quant backend [prune amount]: one series per variant and backend, its batch sizes along it."""
    pruned = row.get("prune")
    return variant_label(row) + (f" {pruned} {row['prune_amount']:.0%}"
                                 if isinstance(pruned, str) and pruned != "none" else "")


def _point_hover(row: pd.Series, name: str, unit: str) -> str:
    batch = f", batch {row['batch_size']:g}" if pd.notna(row.get("batch_size")) else ""
    lines = [f"<b>{html.escape(name + batch)}</b>", configuration(pd.DataFrame([row])),
             energy_text(row["energy_j"], row["energy_j_ci_low"], row["energy_j_ci_high"], unit,
                         row["energy_source"], bool(row["energy_measured"]))]
    quality, low, high = with_interval(row.get("quality"), row.get("quality_ci_low"), row.get("quality_ci_high"))
    if quality != "-":
        ratio, gate = row.get("quality_ratio"), row.get("passes_quality_gate")
        lines.append(html.escape(
            f"{row['quality_metric']}: {quality}" + ("" if low == "-" else f" [{low}, {high}]")
            + ("" if pd.isna(ratio) else f", {plain(ratio)} of fp32")
            + ("" if pd.isna(gate) else f", {'passes' if bool(gate) else 'fails'} its quality gate")))
    if pd.notna(row.get("latency_ms_p50")):
        lines.append(f"latency p50 per batch: {plain(row['latency_ms_p50'])} ms")
    lines.append("on the Pareto front" if row.get("on_pareto_front") else "dominated (not on the front)")
    return "<br>".join(lines)


def _series(rows: pd.DataFrame, y: str, unit: str, measured: bool, y_interval: tuple[str, str] | None = None
            ) -> list[go.Scatter]:
    """One trace per (backend, variant), grouped by backend in the legend: front points larger and solid,
    dominated ones faded, estimates hollow; error bars from the energy interval and `y_interval`'s columns."""
    rows = rows.assign(series_=[_series_name(r) for _, r in rows.iterrows()])
    traces = []
    for color, ((backend, name), series) in zip(itertools.cycle(PALETTE),
                                                rows.groupby(["backend", "series_"], sort=True)):
        series = series.sort_values(["batch_size", "energy_j"])
        front = series["on_pareto_front"].astype(bool)
        marker = {**_marker(color, measured), "size": front.map({True: 12, False: 9}).tolist(),
                  "opacity": front.map({True: 1.0, False: 0.5}).tolist()}
        traces.append(go.Scatter(
            x=series["energy_j"].tolist(), y=series[y].tolist(), name=name, legendgroup=backend,
            meta={"backend": backend}, mode="markers+text", marker=marker, textposition="top right",
            text=[f"b{b:g}" if pd.notna(b) else "" for b in series["batch_size"]], textfont={"size": 9},
            error_x=_bars(series["energy_j"], series["energy_j_ci_low"], series["energy_j_ci_high"]),
            error_y=_bars(series[y], *(_column(series, c) for c in y_interval)) if y_interval else None,
            hoverinfo="text", hovertext=[_point_hover(r, name, unit) for _, r in series.iterrows()]))
    return traces


def _backend_buttons(fig: go.Figure) -> None:
    """Buttons showing every backend or one of them, where the plot has several; the others stay in the legend
    (a click brings one back). Traces of no backend (the front) stay shown."""
    backends = [(t.meta or {}).get("backend") for t in fig.data]
    names = sorted({b for b in backends if b})
    if len(names) < 2:
        return

    def visible(only: str | None) -> list:
        return [True if b is None or only is None or b == only else "legendonly" for b in backends]

    buttons = [{"label": "all backends", "method": "restyle", "args": [{"visible": visible(None)}]}]
    buttons += [{"label": f"{name} only", "method": "restyle", "args": [{"visible": visible(name)}]}
                for name in names]
    fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 1,
                                    "xanchor": "right", "y": 1.01, "yanchor": "bottom", "font": {"size": 11}}])


def _energy_title(unit: str, measured: bool) -> str:
    return f"{'' if measured else 'ESTIMATED '}energy per {unit} (J, log scale; bars: its interval)"


def _layout(fig: go.Figure, title: str, height: int, groupclick: str) -> go.Figure:
    """`groupclick`: what a click on a legend entry hides, the entry's own trace or its whole legend group."""
    fig.update_layout(template="plotly_white", title={"text": html.escape(title), "font": {"size": 14}},
                      height=height, hoverlabel={"align": "left"}, margin={"t": 90},
                      legend={"title": {"text": "click: show/hide<br>double-click: only this"}, "font": {"size": 11},
                              "groupclick": groupclick})
    _backend_buttons(fig)
    return fig


def quality_energy(rows: pd.DataFrame, heading: str) -> go.Figure:
    """Quality against energy (log), the front joined, each model's quality gate dashed, error bars from both
    intervals."""
    unit, measured = _checked(rows)
    fig = go.Figure(_series(rows, "quality", unit, measured, ("quality_ci_low", "quality_ci_high")))
    front = rows[rows["on_pareto_front"].astype(bool)].sort_values("energy_j")
    fig.add_trace(go.Scatter(x=front["energy_j"].tolist(), y=front["quality"].tolist(), mode="lines",
                             name="Pareto front", line={"color": "#333", "width": 1.5}, hoverinfo="skip"))
    for value, label in gate_lines(rows):
        fig.add_hline(y=value, line=GATE, annotation_text=html.escape(label), annotation_position="bottom left",
                      annotation_font={"size": 10, "color": GATE["color"]})
    fig.update_xaxes(type="log", title=_energy_title(unit, measured))
    fig.update_yaxes(title=html.escape(f"{rows['quality_metric'].iloc[0]} on {rows['eval'].iloc[0]}"))
    return _layout(fig, f"Quality against energy: {heading}", 520, "toggleitem")


def latency_energy(rows: pd.DataFrame, heading: str) -> go.Figure:
    """Latency p50 against energy, both log; front points marked as on the quality plot."""
    unit, measured = _checked(rows)
    fig = go.Figure(_series(rows, "latency_ms_p50", unit, measured))
    fig.update_xaxes(type="log", title=_energy_title(unit, measured))
    fig.update_yaxes(type="log", title="latency p50 per batch (ms, log scale)")
    return _layout(fig, f"Latency against energy: {heading}", 520, "toggleitem")


def _serve_hover(name: str, load: str, runs: pd.DataFrame, energy: tuple, ttft: float, unit: str,
                 measured: bool) -> str:
    repeated = f", the median of {len(runs)} runs" if len(runs) > 1 else ""
    return (f"<b>{html.escape(name)} at {load}</b><br>{configuration(runs)}<br>"
            f"{energy_text(*energy, unit, runs['energy_source'].iloc[0], measured)}{repeated}<br>"
            f"TTFT p99: {plain(ttft)} ms")


def load_curves(rows: pd.DataFrame, heading: str) -> go.Figure:
    """Serve rows: J per output token with its interval (upper panel) and TTFT p99 (lower) against the load, one
    line per variant at the median of repeated runs; a variant's legend entry shows or hides both panels."""
    unit, measured = _checked(rows)
    mode = serve_mode(rows).iloc[0]
    load, load_label = LOAD[mode]
    shape = [c for c in SHAPE if c in rows]
    varying = any(rows[c].nunique(dropna=False) > 1 for c in shape)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for color, (_, variant) in zip(itertools.cycle(PALETTE), rows.groupby(VARIANT + shape, sort=True, dropna=False)):
        name = variant_label(variant.iloc[0], varying)
        points = variant.groupby(load, sort=True)
        medians = points[["energy_j", "energy_j_ci_low", "energy_j_ci_high", "ttft_ms_p99"]].median()
        hover = [_serve_hover(name, f"{value:g} req/s" if mode == "open" else f"concurrency {value:g}", runs,
                              tuple(medians.loc[value, ["energy_j", "energy_j_ci_low", "energy_j_ci_high"]]),
                              medians.loc[value, "ttft_ms_p99"], unit, measured) for value, runs in points]
        style = {"legendgroup": name, "meta": {"backend": str(variant["backend"].iloc[0])}, "mode": "lines+markers",
                 "line": {"color": color}, "marker": {**_marker(color, measured), "size": 8}, "hoverinfo": "text",
                 "hovertext": hover, "x": medians.index.tolist()}
        fig.add_trace(go.Scatter(y=medians["energy_j"].tolist(), name=name, **style,
                                 error_y=_bars(medians["energy_j"], medians["energy_j_ci_low"],
                                               medians["energy_j_ci_high"])), row=1, col=1)
        fig.add_trace(go.Scatter(y=medians["ttft_ms_p99"].tolist(), name=name, showlegend=False, **style),
                      row=2, col=1)
    slo = rows["slo_ttft_ms"].dropna().unique() if "slo_ttft_ms" in rows else []
    if len(slo) == 1:
        fig.add_hline(y=float(slo[0]), row=2, col=1, line=GATE, annotation_text=f"TTFT SLO {slo[0]:g} ms",
                      annotation_font={"size": 10, "color": GATE["color"]})
    fig.update_yaxes(title=f"{'' if measured else 'ESTIMATED '}J per {unit}<br>(bars: its interval)", row=1, col=1)
    fig.update_yaxes(title="TTFT p99 (ms)", row=2, col=1)
    fig.update_xaxes(title=load_label, row=2, col=1)
    return _layout(fig, f"Serving: {heading}", 640, "togglegroup")


def embed(figure: go.Figure, index: int) -> str:
    """The figure as a div for the page; the first one carries plotly.js itself, inlined, so that the page loads
    it once and works offline."""
    return figure.to_html(full_html=False, include_plotlyjs=index == 0, div_id=f"plot-{index}", config=CONFIG)
