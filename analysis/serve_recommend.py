"""`python -m analysis.recommend results/<tree> --slo-ttft-ms 500 --slo-itl-ms 100`: among the serve rows, the
variant and load (arrival rate, or concurrency) that meet a serving SLO at the least energy per output token;
the runners-up; what each part of the SLO cost.

How a row is judged (docs/analysis.md, "Serving"): a row recorded against this very SLO (its `slo_ttft_ms` and
`slo_itl_ms` are the ones asked) is judged by its own `slo_attainment`, the share of requests that met it. Any
other row keeps only percentiles, so it is judged by them: the first recorded percentile at or above the asked
attainment (p99 for 0.99) of TTFT and of ITL must be within the SLO, and no more than 1 - attainment of its
requests may have failed or timed out (percentiles cover completed requests only). Each metric is judged on its
own, so the share of requests meeting both at once may be lower; the output says which criterion judged each row.
Above 0.99 no recorded percentile is enough, and such rows are refused, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.costs import CostSettings, with_costs
from analysis.devices import device_key
from analysis.recommend import (DISTINGUISHING, ESTIMATED, OBJECTIVES, BadInput, ConstraintCost, cost_line,
                                energy_text, estimate_flag, estimate_note, next_text, objective_text,
                                one_per_configuration, per_million, ranked_source, runners_up_grid, source_text)
from analysis.loads import serve_mode, under_load
from analysis.serve_plots import SHAPE, variant_label
from bench.digits import plain, with_interval

DEFAULT_MIN_ATTAINMENT = 0.99
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}  # what a serve row records
# Columns that make two serve rows different loads of one configuration (the configuration key names the model,
# variant, shape and machine; the load and the SLO a row was judged against are the serve run's own).
LOAD_KEY = ["serve_mode", "serve_rate", "serve_concurrency", "serve_duration_s", "slo_ttft_ms", "slo_itl_ms"]
PARTS = {"ttft": "TTFT", "itl": "ITL", "completed": "failed or timed-out requests", "attainment": "attainment"}


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    itl_ms: float | None = None
    min_attainment: float = DEFAULT_MIN_ATTAINMENT

    def __post_init__(self) -> None:
        for flag, value in (("--slo-ttft-ms", self.ttft_ms), ("--slo-itl-ms", self.itl_ms)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise BadInput(f"{flag} {value:g}: must be a number > 0 (milliseconds)")
        if self.ttft_ms is None and self.itl_ms is None:
            raise BadInput("serve rows need an SLO: give --slo-ttft-ms and/or --slo-itl-ms (milliseconds)")
        if not 0 < self.min_attainment <= 1:
            raise BadInput(f"--min-slo-attainment {self.min_attainment:g}: must be a share in (0, 1] (0.99: 99% of "
                           "requests meet the SLO)")

    @property
    def percentile(self) -> str | None:
        """The first recorded percentile at or above the asked attainment; None above p99."""
        return next((p for p, q in PERCENTILES.items() if q >= self.min_attainment - 1e-12), None)

    def describe(self) -> str:
        parts = [f"{PARTS[k]} ≤ {v:g} ms" for k, v in (("ttft", self.ttft_ms), ("itl", self.itl_ms)) if v is not None]
        return f"{' and '.join(parts)} for ≥ {self.min_attainment:.4g} of requests"

    def part(self, name: str) -> str:
        p = self.percentile
        return {"ttft": f"TTFT {p} ≤ {self.ttft_ms:g} ms" if self.ttft_ms is not None else "",
                "itl": f"ITL {p} ≤ {self.itl_ms:g} ms" if self.itl_ms is not None else "",
                "completed": f"failed or timed out ≤ {1 - self.min_attainment:.4g} of requests",
                "attainment": f"recorded attainment ≥ {self.min_attainment:.4g}"}[name]


@dataclass
class ServeRecommendation:
    scenario: str
    energy_source: str  # the one source ranked: estimated and measured joules are never ranked together
    objective: str
    unit: str
    slo: Slo
    criteria: list[str]  # the criterion each judged row was held to, in words
    measured: int
    feasible: int
    unjudged: int  # recorded against another SLO at an attainment no recorded percentile can show
    pick: dict
    runners_up: list[dict] = field(default_factory=list)
    constraint_costs: list[ConstraintCost] = field(default_factory=list)
    settings: CostSettings = field(default_factory=CostSettings)


def _same(recorded: pd.Series, asked: float | None) -> pd.Series:
    """Per row: the SLO value it was recorded against is the one asked (both absent counts as the same)."""
    recorded = pd.to_numeric(recorded, errors="coerce")
    if asked is None:
        return recorded.isna()
    return pd.Series(np.isclose(recorded.fillna(-1.0), asked, rtol=1e-9, atol=0.0), index=recorded.index)


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(rows[name], errors="coerce") if name in rows else pd.Series(np.nan, index=rows.index)


def judge(rows: pd.DataFrame, slo: Slo) -> tuple[pd.DataFrame, pd.Series]:
    """Per row and part of the SLO: met (True), missed (False) or not what the row is judged by (NA); and how each
    row is judged: `attainment`, a percentile (`p99`), or `unjudged`."""
    own = (_same(_column(rows, "slo_ttft_ms"), slo.ttft_ms) & _same(_column(rows, "slo_itl_ms"), slo.itl_ms)
           & _column(rows, "slo_attainment").notna())
    by = pd.Series(np.where(own, "attainment", slo.percentile or "unjudged"), index=rows.index)
    percentile = by == slo.percentile
    parts = pd.DataFrame(index=rows.index, columns=list(PARTS), dtype="boolean")
    for name, bound in (("ttft", slo.ttft_ms), ("itl", slo.itl_ms)):
        if bound is not None and slo.percentile:
            value = _column(rows, f"{name}_ms_{slo.percentile}")
            parts.loc[percentile, name] = (value <= bound)[percentile]  # an unknown percentile is a miss
    counts = {c: _column(rows, f"requests_{c}").fillna(0) for c in ("ok", "failed", "timed_out")}
    sent = _column(rows, "requests_sent").fillna(counts["ok"] + counts["failed"] + counts["timed_out"])
    lost = (counts["failed"] + counts["timed_out"]) / sent.where(sent > 0)
    parts.loc[percentile, "completed"] = (lost <= 1 - slo.min_attainment + 1e-12)[percentile]
    parts.loc[own, "attainment"] = (_column(rows, "slo_attainment") >= slo.min_attainment - 1e-12)[own]
    return parts, by


def _label(row: pd.Series, shape: bool, varying: list[str]) -> str:
    load = (f"at {row['serve_rate']:g} req/s" if row["serve_mode_"] == "open"
            else f"at concurrency {row['serve_concurrency']:g} (closed loop)")
    return " ".join([variant_label(row, shape), "on", str(row["device_key"]), load,
                     *(f"{c} {row[c]}" for c in varying)])


def _scored(metric: str, value: float, eval_name: str) -> str:
    return f"{metric} {plain(value)}" + ("" if eval_name == metric else f" on {eval_name}")


def _quality(rows: pd.DataFrame) -> dict[tuple, str]:
    """(model, quant, backend) -> the quality its scored rows not under load recorded, e.g. "perplexity 18.3 on
    wikitext-2 (its generate rows)": shown beside a serve row that was not scored itself."""
    if "quality" not in rows:
        return {}
    scored = rows[~under_load(rows) & (rows["status"] == "ok") & rows["quality"].notna()]
    out: dict[tuple, list[str]] = {}
    for (model, quant, backend, metric, eval_name, scenario), group in scored.groupby(
            ["model", "quant", "backend", "quality_metric", "eval", "scenario"]):
        out.setdefault((model, quant, backend), []).append(
            f"{_scored(metric, group['quality'].median(), eval_name)} (its {scenario} rows)")
    return {k: ", ".join(v) for k, v in out.items()}


def _quality_text(row: pd.Series, elsewhere: dict[tuple, str]) -> str | None:
    """The row's own score (the variant the server ran, scored after it stopped), else its unloaded rows'."""
    if pd.notna(row.get("quality")):
        return _scored(str(row["quality_metric"]), row["quality"], str(row["eval"]))
    return elsewhere.get((row["model"], row["quant"], row["backend"]))


def candidates(rows: pd.DataFrame, settings: CostSettings, energy_source: str | None) -> tuple[pd.DataFrame, str]:
    """The ok serve rows of one energy source, with costs, one per configuration and load, labelled."""
    if rows.empty:
        raise BadInput("no result rows in the tree")
    ok = rows[(rows["status"] == "ok") & under_load(rows)]
    if ok.empty:
        raise BadInput("no ok row of a server under load (scenario=serve) in the tree (scenarios: "
                       f"{rows['scenario'].value_counts().to_dict()}, statuses: "
                       f"{rows['status'].value_counts().to_dict()})")
    source = ranked_source(ok, energy_source)
    ok = with_costs(ok[ok["energy_source"] == source], settings)
    ok = ok.assign(device_key=device_key(ok), serve_mode_=serve_mode(ok))
    ok = one_per_configuration(ok, [c for c in LOAD_KEY + ["serve_mode_"] if c in ok])
    shape = any(ok[c].nunique(dropna=False) > 1 for c in SHAPE if c in ok)
    varying = [c for c in DISTINGUISHING + ["serve_server"] if c in ok and ok[c].nunique(dropna=False) > 1]
    elsewhere = _quality(rows)
    ok["label"] = [_label(row, shape, varying) for _, row in ok.iterrows()]
    ok["quality_text"] = [_quality_text(row, elsewhere) for _, row in ok.iterrows()]
    return ok, source


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _summary(row: pd.Series, column: str, slo: Slo, by: str) -> dict:
    scale = row[column] / row["energy_j"] if row["energy_j"] else math.nan  # the objective's CI from energy's
    p = slo.percentile or "p99"
    summary = {"label": row["label"], "value": _number(row[column]),
               "value_ci_low": _number(row["energy_j_ci_low"] * scale),
               "value_ci_high": _number(row["energy_j_ci_high"] * scale),
               "energy_j": _number(row["energy_j"]), "energy_j_ci_low": _number(row["energy_j_ci_low"]),
               "energy_j_ci_high": _number(row["energy_j_ci_high"]), "energy_unit": row["energy_unit"], "judged_by": by,
               "percentile": p, "ttft_ms": _number(row.get(f"ttft_ms_{p}")), "itl_ms": _number(row.get(f"itl_ms_{p}")),
               "slo_attainment": _number(row.get("slo_attainment")), "achieved_rps": _number(row.get("achieved_rps")),
               "quality": row["quality_text"] if isinstance(row["quality_text"], str) else None,
               "energy_source": row.get("energy_source"),
               "energy_measured": bool(row["energy_measured"]), "runs": int(row["runs"])}
    for name in ("kwh_per_million", "cost_per_million", "gco2e_per_million", "price_per_kwh", "grid_gco2_per_kwh",
                 "kwh_per_day", "cost_per_day", "gco2e_per_day"):
        if name in row:
            summary[name] = _number(row[name])
    summary["grid_source"] = row.get("grid_source")
    return summary


def _criteria(by: pd.Series, slo: Slo) -> list[str]:
    lines = []
    if (by == "attainment").any():
        lines.append(f"{int((by == 'attainment').sum())} recorded against this SLO: their recorded attainment "
                     f"≥ {slo.min_attainment:.4g}")
    if slo.percentile and (by == slo.percentile).any():
        parts = [slo.part(p) for p in ("ttft", "itl") if slo.part(p)]
        lines.append(f"{int((by == slo.percentile).sum())} recorded against another SLO (or none): "
                     f"{' and '.join(parts)}, each on its own (the rows keep percentiles, not requests), and "
                     f"{slo.part('completed')}")
    if (by == "unjudged").any():
        lines.append(f"{int((by == 'unjudged').sum())} recorded against another SLO cannot be judged at "
                     f"≥ {slo.min_attainment:.4g}: they record p50, p90 and p99 only (run them with this SLO)")
    return lines


def recommend_serve(rows: pd.DataFrame, slo: Slo, objective: str = "energy", top: int = 3,
                    settings: CostSettings | None = None, energy_source: str | None = None) -> ServeRecommendation:
    """The configuration and load meeting the SLO at the lowest objective; raises BadInput when there is none."""
    if objective not in OBJECTIVES:
        raise BadInput(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if top < 0:
        raise BadInput(f"--top {top}: must be >= 0")
    settings = settings or CostSettings()
    rows, source = candidates(rows, settings, energy_source)
    column = OBJECTIVES[objective][0]
    parts, by = judge(rows, slo)
    judged = by != "unjudged"
    met = parts.fillna(True).astype(bool)  # a part a row is not judged by does not exclude it
    meets = met.all(axis=1) & judged
    scored = rows[column].notna()
    feasible = rows[meets & scored].sort_values(column, kind="stable")
    if feasible.empty:
        raise BadInput(_nothing_meets(rows, parts, by, scored, slo, column, top))
    pick = feasible.iloc[0]
    costs = []
    for name in PARTS:
        if parts[name].isna().all():
            continue
        others = met.drop(columns=name).all(axis=1)
        excluded = rows[~met[name] & others & judged & scored].sort_values(column, kind="stable")
        best = excluded.iloc[0] if len(excluded) else None
        costs.append(ConstraintCost(name, slo.part(name), len(excluded),
                                    None if best is None else _summary(best, column, slo, by[best.name]),
                                    None if best is None else 1 - best[column] / pick[column]))
    return ServeRecommendation(str(pick["scenario"]), source, objective, str(pick["energy_unit"]), slo,
                               _criteria(by, slo), len(rows), len(feasible), int((~judged).sum()),
                               _summary(pick, column, slo, by[pick.name]),
                               [_summary(r, column, slo, by[i]) for i, r in feasible.iloc[1:top + 1].iterrows()],
                               costs, settings)


def _figures(config: dict) -> str:
    """The latencies and attainment a configuration was judged by."""
    p = config["percentile"]
    figures = [f"TTFT {p} {plain(config['ttft_ms'])} ms", f"ITL {p} {plain(config['itl_ms'])} ms"]
    if config["slo_attainment"] is not None:
        figures.append(f"attainment {config['slo_attainment']:.1%}"
                       + (" of its own SLO" if config["judged_by"] != "attainment" else ""))
    return ", ".join(figures)


def _closest(rows: pd.DataFrame, parts: pd.DataFrame, slo: Slo, top: int) -> list[pd.Series]:
    """The configurations nearest to meeting the SLO: the smallest sum of relative shortfalls."""
    p = slo.percentile or "p99"
    shortfall = pd.Series(0.0, index=rows.index)
    for name, bound in (("ttft", slo.ttft_ms), ("itl", slo.itl_ms)):
        if bound is not None:
            shortfall += (_column(rows, f"{name}_ms_{p}") / bound - 1).clip(lower=0).fillna(math.inf)
    attainment = _column(rows, "slo_attainment")
    shortfall += ((slo.min_attainment - attainment) / slo.min_attainment).clip(lower=0).where(
        parts["attainment"].notna(), 0.0).fillna(0.0)
    return [rows.loc[i] for i in shortfall.sort_values(kind="stable").index[:top]]


def _nothing_meets(rows: pd.DataFrame, parts: pd.DataFrame, by: pd.Series, scored: pd.Series, slo: Slo, column: str,
                   top: int) -> str:
    lines = [f"no serve configuration meets the SLO ({slo.describe()}) among {len(rows)} measured:",
             *(f"  judged: {c}" for c in _criteria(by, slo))]
    for name in PARTS:
        if parts[name].notna().any():
            lines.append(f"  {slo.part(name)} excluded {int((~parts[name].fillna(True).astype(bool)).sum())}")
    if (~scored).any():
        lines.append(f"  {int((~scored).sum())} have no energy figure")
    lines.append("  closest:")
    for row in _closest(rows, parts, slo, max(top, 1)):
        config = _summary(row, column, slo, by[row.name])
        lines.append(f"    {config['label']}: {_figures(config)}, {energy_text(config, config['energy_j'])} "
                     f"J/{config['energy_unit']}" + ("" if config["energy_measured"] else ESTIMATED))
    lines.append("  relax --slo-ttft-ms, --slo-itl-ms or --min-slo-attainment, or measure lower loads")
    return "\n".join(lines)


def _with_interval(config: dict) -> str:
    value, low, high = with_interval(config["energy_j"], config["energy_j_ci_low"], config["energy_j_ci_high"],
                                     not config["energy_measured"])
    return value if low == "-" else f"{value} [{low}, {high}]"


def _quality_note(config: dict) -> str:
    return f", {config['quality']}" if config["quality"] else ""


def format_text(rec: ServeRecommendation) -> str:
    """The pick and its reasons, how rows were judged, the runners-up and what each part of the SLO cost."""
    pick, unit, what = rec.pick, rec.unit, OBJECTIVES[rec.objective][1]
    lines = [f"{rec.scenario} ({source_text(rec.energy_source)}, the only source ranked), lowest {what} per {unit} "
             f"under {rec.slo.describe()}:",
             *(f"  judged: {c}" for c in rec.criteria),
             f"Recommended: {pick['label']}{estimate_flag(pick)}",
             f"  {_with_interval(pick)} J/{unit}, {_figures(pick)}, achieved {plain(pick['achieved_rps'])} req/s, "
             f"{pick['runs']} run(s){_quality_note(pick)}{estimate_flag(pick)}",
             per_million(pick, unit),
             f"  why: the lowest {what} of the {rec.feasible} configuration(s) meeting the SLO, of {rec.measured} "
             f"measured{next_text(pick, rec.runners_up, what)}{estimate_flag(pick, *rec.runners_up[:1])}"]
    if rec.runners_up:
        said = runners_up_grid(rec.objective, rec.runners_up)
        lines.append(f"Runners-up (meet the SLO{said}):")
        for rank, config in enumerate(rec.runners_up, start=2):
            lines.append(f"  {rank}. {config['label']}: {objective_text(config, rec.objective, unit, bool(said))} "
                         f"(+{config['value'] / pick['value'] - 1:.0%}), {_figures(config)}{_quality_note(config)}"
                         f"{estimate_flag(config)}")
    lines.append("What the SLO cost:")
    for cost in rec.constraint_costs:
        lines.append(cost_line(f"  - {cost.bound}:", cost, _figures(cost.best) if cost.best else "", what,
                               "the rest of the SLO"))
    lines += estimate_note(pick, *rec.runners_up, *(c.best for c in rec.constraint_costs if c.best))
    return "\n".join(lines)
