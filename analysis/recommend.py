"""`python -m analysis.recommend results/<tree> --max-latency-ms 50 --min-quality-ratio 0.99`: among the measured
configurations (device × model/variant × backend × batch) that meet a latency bound and a quality bound, the one
with the lowest energy, cost or carbon; the runners-up; and what each bound cost.

Serve rows (`python -m analysis.recommend results/<tree> --slo-ttft-ms 500 --slo-itl-ms 100`): the variant and
arrival rate meeting a serving SLO at the least energy per output token (analysis/serve_recommend.py).

Exit status: 0 a recommendation was printed; 2 the input is unusable or nothing meets the bounds (the reason,
and the closest candidates, are printed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from analysis.costs import CostSettings, with_costs
from analysis.devices import device_key
from analysis.loads import under_load
from analysis.options import add_tree_argument, add_cost_options, cost_settings
from analysis.pareto import quality_ratio
from bench.digits import plain, significant_digits
from bench.results import load
from bench.row import config_key

# objective -> (column, what a saving is a saving of)
OBJECTIVES = {"energy": ("energy_j", "energy"), "cost": ("cost_per_million", "cost"),
              "carbon": ("gco2e_per_million", "CO2e")}
PERCENTILES = ("p50", "p90", "p99")
ESTIMATED = " [ESTIMATED energy]"
DISTINGUISHING = ["seq_len", "profile", "threads", "weights"]


class BadInput(ValueError):
    """Input that cannot give a recommendation; the message names the bad value and what would be valid."""


@dataclass(frozen=True)
class Bounds:
    max_latency_ms: float
    min_quality_ratio: float
    latency_percentile: str = "p99"

    def __post_init__(self) -> None:
        if self.latency_percentile not in PERCENTILES:
            raise BadInput(f"latency percentile {self.latency_percentile!r}: choose one of {', '.join(PERCENTILES)}")
        if not self.max_latency_ms > 0:
            raise BadInput(f"--max-latency-ms {self.max_latency_ms:g}: must be a number > 0")
        if not self.min_quality_ratio >= 0:
            raise BadInput(f"--min-quality-ratio {self.min_quality_ratio:g}: must be a number >= 0 (0.99: at most 1% "
                           "below the fp32 reference)")

    @property
    def latency_column(self) -> str:
        return f"latency_ms_{self.latency_percentile}"

    def describe(self, constraint: str) -> str:
        if constraint == "latency":
            return f"{self.latency_percentile} ≤ {self.max_latency_ms:g} ms"
        return f"quality ratio ≥ {self.min_quality_ratio:g}"


@dataclass
class ConstraintCost:
    constraint: str  # latency | quality
    bound: str
    excluded: int  # configurations that meet every other bound and fail this one
    best: dict | None  # the best of those by the objective
    saving: float | None  # 1 - best / pick: above 0 is what the bound cost


@dataclass
class Recommendation:
    eval: str
    scenario: str
    energy_source: str  # the one source ranked: estimated and measured joules are never ranked together
    objective: str
    unit: str
    bounds: Bounds
    measured: int
    feasible: int
    pick: dict
    runners_up: list[dict] = field(default_factory=list)
    constraint_costs: list[ConstraintCost] = field(default_factory=list)
    settings: CostSettings = field(default_factory=CostSettings)


def _one_choice(values: pd.Series, given: str | None, what: str, flag: str) -> str:
    present = sorted(str(v) for v in values.dropna().unique())
    if given is not None and given not in present:
        raise BadInput(f"unknown {what} {given!r}: this tree has {', '.join(present) or 'none'}")
    if given is None and len(present) != 1:
        raise BadInput(f"the tree has several {what}s ({', '.join(present)}): choose one with {flag}" if present
                       else f"no ok row in the tree records its {what}")
    return given or present[0]


def one_per_configuration(rows: pd.DataFrame, also: list[str] = ()) -> pd.DataFrame:
    """Repeated runs of one configuration (same config_key, so the same machine, and the same `also` columns)
    become one candidate: the median of each number, measured only if every run was, with `runs` counting them."""
    key = rows.apply(config_key, axis=1)
    for column in also:
        key = key + "|" + rows[column].map(str)  # map, not astype: a missing value must not blank the key
    grouped = rows.groupby(key, sort=False)
    numeric = rows.select_dtypes("number").columns
    out = pd.concat([grouped.first().drop(columns=[*numeric, "energy_measured"]), grouped[numeric].median(),
                     grouped["energy_measured"].agg(lambda m: bool(m.astype(bool).all())),
                     grouped.size().rename("runs")], axis=1)
    return out.reset_index(drop=True)


def ranked_source(ok: pd.DataFrame, given: str | None) -> str:
    """The source to rank: the one given, the only one, or the only measured one beside estimates."""
    present = sorted(ok["energy_source"].dropna().unique())
    measured = [s for s in present if s != "estimate"]
    if given is None and len(present) > 1 and len(measured) == 1:
        return measured[0]
    if given is None and len(present) > 1:
        raise BadInput(f"the rows have several energy sources ({', '.join(present)}), which are never ranked "
                       "together: choose one with --energy-source")
    return _one_choice(ok["energy_source"], given, "energy source", "--energy-source")


def candidates(rows: pd.DataFrame, eval_name: str | None = None, scenario: str | None = None,
               settings: CostSettings | None = None, energy_source: str | None = None
               ) -> tuple[pd.DataFrame, str, str, str]:
    """The ok rows of one eval, scenario and energy source, with costs and the oriented quality ratio, one per
    configuration."""
    if rows.empty:
        raise BadInput("no result rows in the tree")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        raise BadInput(f"no row has status ok (statuses: {rows['status'].value_counts().to_dict()})")
    ok = with_costs(ok, settings or CostSettings())
    evals = ok["eval"].where(ok["eval"] != "none") if "eval" in ok else pd.Series(np.nan, index=ok.index)
    chosen_eval = _one_choice(evals, eval_name, "eval", "--eval")
    ok = ok[evals == chosen_eval]
    chosen_scenario = _one_choice(ok["scenario"], scenario, "scenario", "--scenario")
    ok = ok[ok["scenario"] == chosen_scenario]
    chosen_source = ranked_source(ok, energy_source)
    ok = ok[ok["energy_source"] == chosen_source].assign(device_key=lambda r: device_key(r),
                                                         quality_ratio_oriented=lambda r: quality_ratio(r))
    ok = one_per_configuration(ok)
    # Fields that usually stay fixed in a tree are named only where they tell two candidates apart.
    varying = [c for c in DISTINGUISHING if c in ok and ok[c].nunique(dropna=False) > 1]
    ok["label"] = [" ".join([label(row), *(f"{c} {row[c]}" for c in varying)]) for _, row in ok.iterrows()]
    return ok, chosen_eval, chosen_scenario, chosen_source


def label(row: pd.Series) -> str:
    """What was measured, in words: model, variant, batch, backend, device."""
    parts = [str(row["model"]), str(row["quant"])]
    prune = row.get("prune")
    if isinstance(prune, str) and prune not in ("", "none"):
        amount = row.get("prune_amount")
        parts.append(f"pruned {prune}" + (f" {amount:.0%}" if pd.notna(amount) else ""))
    parts.append(f"batch {int(row['batch_size'])}")
    if pd.notna(row.get("prompt_len")) and pd.notna(row.get("new_tokens")):
        parts.append(f"prompt {int(row['prompt_len'])} + {int(row['new_tokens'])} tokens")
    return " ".join(parts + [str(row["backend"]), "on", str(row["device_key"])])


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _summary(row: pd.Series, value_column: str, bounds: Bounds) -> dict:
    scale = row[value_column] / row["energy_j"] if row["energy_j"] else math.nan  # the objective's CI from energy's
    summary = {"label": row["label"], "value": _number(row[value_column]),
               "value_ci_low": _number(row["energy_j_ci_low"] * scale),
               "value_ci_high": _number(row["energy_j_ci_high"] * scale),
               "energy_j": _number(row["energy_j"]), "energy_unit": row["energy_unit"],
               "latency_ms": _number(row.get(bounds.latency_column)),
               "quality_ratio": _number(row["quality_ratio_oriented"]),
               "energy_source": row.get("energy_source"), "energy_measured": bool(row["energy_measured"]),
               "runs": int(row["runs"])}
    for column in ("kwh_per_million", "cost_per_million", "gco2e_per_million", "price_per_kwh", "grid_gco2_per_kwh",
                   "kwh_per_day", "cost_per_day", "gco2e_per_day"):
        if column in row:
            summary[column] = _number(row[column])
    summary["grid_source"] = row.get("grid_source")
    return summary


def _closest(rows: pd.DataFrame, bounds: Bounds, top: int) -> list[pd.Series]:
    """The configurations nearest to meeting both bounds: the smallest sum of relative shortfalls."""
    over = (rows[bounds.latency_column] / bounds.max_latency_ms - 1).clip(lower=0)
    under = (1 - rows["quality_ratio_oriented"] / bounds.min_quality_ratio).clip(lower=0) \
        if bounds.min_quality_ratio else pd.Series(0.0, index=rows.index)
    return [rows.loc[i] for i in (over + under).fillna(math.inf).sort_values(kind="stable").index[:top]]


def recommend(rows: pd.DataFrame, bounds: Bounds, objective: str = "energy", eval_name: str | None = None,
              scenario: str | None = None, top: int = 3, settings: CostSettings | None = None,
              energy_source: str | None = None) -> Recommendation:
    """The configuration meeting both bounds with the lowest objective; raises BadInput when there is none."""
    if objective not in OBJECTIVES:
        raise BadInput(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if top < 0:
        raise BadInput(f"--top {top}: must be >= 0")
    settings = settings or CostSettings()
    rows, chosen_eval, chosen_scenario, chosen_source = candidates(rows, eval_name, scenario, settings, energy_source)
    if bounds.latency_column not in rows:
        raise BadInput(f"the rows have no {bounds.latency_column}: choose another --latency-percentile")
    column = OBJECTIVES[objective][0]
    meets = {"latency": rows[bounds.latency_column] <= bounds.max_latency_ms,
             "quality": rows["quality_ratio_oriented"] >= bounds.min_quality_ratio}
    scored = rows[column].notna()
    feasible = rows[meets["latency"] & meets["quality"] & scored].sort_values(column, kind="stable")
    if feasible.empty:
        raise BadInput(_nothing_meets(rows, meets, scored, bounds, chosen_eval, top))
    pick = feasible.iloc[0]
    costs = []
    for name, other in (("latency", meets["quality"]), ("quality", meets["latency"])):
        excluded = rows[~meets[name] & other & scored].sort_values(column, kind="stable")
        best = excluded.iloc[0] if len(excluded) else None
        costs.append(ConstraintCost(name, bounds.describe(name), len(excluded),
                                    None if best is None else _summary(best, column, bounds),
                                    None if best is None else 1 - best[column] / pick[column]))
    return Recommendation(chosen_eval, chosen_scenario, chosen_source, objective, str(pick["energy_unit"]), bounds,
                          len(rows),
                          len(feasible), _summary(pick, column, bounds),
                          [_summary(r, column, bounds) for _, r in feasible.iloc[1:top + 1].iterrows()], costs,
                          settings)


def _nothing_meets(rows: pd.DataFrame, meets: dict[str, pd.Series], scored: pd.Series, bounds: Bounds,
                   eval_name: str, top: int) -> str:
    lines = [f"no configuration of {eval_name} meets both bounds ({bounds.describe('latency')}, "
             f"{bounds.describe('quality')}) among {len(rows)} measured:"]
    for name, met in meets.items():
        unknown = rows[bounds.latency_column if name == "latency" else "quality_ratio_oriented"].isna()
        lines.append(f"  the {name} bound ({bounds.describe(name)}) excluded {int((~met).sum())}"
                     + (f" ({int(unknown.sum())} with no {name} figure)" if unknown.any() else ""))
    if (~scored).any():
        lines.append(f"  {int((~scored).sum())} have no energy figure")
    lines.append("  closest:")
    for row in _closest(rows, bounds, max(top, 1)):
        latency, ratio = row[bounds.latency_column], row["quality_ratio_oriented"]
        lines.append(f"    {row['label']}: {bounds.latency_percentile} {plain(latency)} ms, "
                     f"quality ratio {plain(ratio)}" + ("" if row["energy_measured"] else ESTIMATED))
    lines.append("  relax --max-latency-ms or --min-quality-ratio, or measure more configurations")
    return "\n".join(lines)


def estimate_flag(*configs: dict) -> str:
    """The estimate marker for a line that shows any configuration whose energy is a model."""
    return "" if all(c["energy_measured"] for c in configs) else ESTIMATED


def energy_text(config: dict, value: float | None) -> str:
    """A figure derived from the configuration's energy (joules, kWh, cost, carbon), to the digits its energy
    interval supports (at most two for an estimate)."""
    digits = significant_digits(config["value"], config["value_ci_low"], config["value_ci_high"],
                                not config["energy_measured"])
    return plain(value, digits)


def objective_text(config: dict, objective: str, unit: str, grid_said: bool = False) -> str:
    """The configuration's objective figure; a carbon figure with its grid intensity and source, unless its block
    said them once (grid_said)."""
    if objective == "energy":
        return f"{energy_text(config, config['value'])} J/{unit}"
    if objective == "cost":
        return f"{energy_text(config, config['value'])} cost per million {unit}s"
    carbon = f"{energy_text(config, config['value'])} gCO2e per million {unit}s"
    return carbon if grid_said else f"{carbon} (at {grid_text(config)})"


def grid_text(config: dict) -> str:
    """The grid intensity a configuration's carbon figures use, with its source (and year)."""
    return f"{config['grid_gco2_per_kwh']:g} gCO2e/kWh, {config['grid_source']}"


def runners_up_grid(objective: str, runners_up: list[dict]) -> str:
    """The runners-up heading's "; gCO2e at <grid>" where all their carbon figures use one grid, else ""."""
    grids = {grid_text(c) for c in runners_up}
    return f"; gCO2e at {grids.pop()}" if objective == "carbon" and len(grids) == 1 else ""


def source_text(energy_source: str) -> str:
    return "ESTIMATED energy (a model)" if energy_source == "estimate" else f"energy measured by {energy_source}"


def per_million(pick: dict, unit: str) -> str:
    """The pick's kWh, cost and carbon per million units, to the digits its energy interval supports."""
    return (f"  per million {unit}s: {energy_text(pick, pick['kwh_per_million'])} kWh, cost "
            f"{energy_text(pick, pick['cost_per_million'])} (at {pick['price_per_kwh']:g}/kWh), "
            f"{energy_text(pick, pick['gco2e_per_million'])} gCO2e "
            f"(at {grid_text(pick)}){estimate_flag(pick)}")


def next_text(pick: dict, runners_up: list[dict], what: str) -> str:
    """How much more the first runner-up uses, and whether the intervals separate the two at all."""
    if not runners_up:
        return ""
    nxt = runners_up[0]
    text = f"; the next, {nxt['label']}, uses {nxt['value'] / pick['value'] - 1:.0%} more {what}"
    if nxt["value_ci_low"] is not None and pick["value_ci_high"] is not None \
            and nxt["value_ci_low"] <= pick["value_ci_high"]:
        text += " (their energy intervals overlap: the measurements do not separate them)"
    return text


def cost_line(head: str, cost: ConstraintCost, shortfall: str, what: str, nothing: str) -> str:
    """What one bound cost: nothing excluded, the saving it forbade, or that what it excluded was dearer."""
    best = cost.best
    if best is None:
        return f"{head} excluded nothing that meets {nothing}"
    if cost.saving > 0:
        return f"{head} excluded {best['label']} ({shortfall}), which would save {cost.saving:.0%} {what}" \
               f"{estimate_flag(best)}"
    return (f"{head} cost nothing: the best configuration it excluded, {best['label']} ({shortfall}), uses "
            f"{-cost.saving:.0%} more {what}{estimate_flag(best)}")


def estimate_note(*configs: dict) -> list[str]:
    return ["ESTIMATED energy: no energy counter was readable; the figure is a power model, not a measurement."] \
        if estimate_flag(*configs) else []


def format_text(rec: Recommendation) -> str:
    """The recommendation, its reasons, the runners-up and what each bound cost, one configuration a line."""
    pick, unit, what = rec.pick, rec.unit, OBJECTIVES[rec.objective][1]
    b = rec.bounds
    lines = [f"{rec.eval} ({rec.scenario}; {source_text(rec.energy_source)}, the only source ranked), lowest {what} "
             f"per {unit} under "
             f"{b.describe('latency')} and {b.describe('quality')}:",
             f"Recommended: {pick['label']}{estimate_flag(pick)}",
             f"  {energy_text(pick, pick['energy_j'])} J/{unit}, {b.latency_percentile} "
             f"{plain(pick['latency_ms'])} ms, "
             f"quality ratio {plain(pick['quality_ratio'])}, {pick['runs']} run(s){estimate_flag(pick)}",
             per_million(pick, unit)]
    if rec.settings.requests_per_day is not None:
        lines.append(f"  at {rec.settings.requests_per_day:g} requests/day: "
                     f"{energy_text(pick, pick['kwh_per_day'])} kWh, cost {energy_text(pick, pick['cost_per_day'])}, "
                     f"{energy_text(pick, pick['gco2e_per_day'])} gCO2e per "
                     f"day{estimate_flag(pick)}")
    lines.append(f"  why: the lowest {what} of the {rec.feasible} configuration(s) meeting both bounds, of "
                 f"{rec.measured} measured{next_text(pick, rec.runners_up, what)}"
                 f"{estimate_flag(pick, *rec.runners_up[:1])}")
    if rec.runners_up:
        said = runners_up_grid(rec.objective, rec.runners_up)
        lines.append(f"Runners-up (meet both bounds{said}):")
        for rank, config in enumerate(rec.runners_up, start=2):
            lines.append(f"  {rank}. {config['label']}: {objective_text(config, rec.objective, unit, bool(said))} "
                         f"(+{config['value'] / pick['value'] - 1:.0%}), {b.latency_percentile} "
                         f"{plain(config['latency_ms'])} ms, quality ratio {plain(config['quality_ratio'])}"
                         f"{estimate_flag(config)}")
    lines.append("What each bound cost:")
    for cost in rec.constraint_costs:
        shortfall = _shortfall(cost.best, cost.constraint, b) if cost.best else ""
        lines.append(cost_line(f"  - the {cost.constraint} bound ({cost.bound})", cost, shortfall, what,
                               "the other bound"))
    lines += estimate_note(pick, *rec.runners_up, *(c.best for c in rec.constraint_costs if c.best))
    return "\n".join(lines)


def _shortfall(config: dict, constraint: str, bounds: Bounds) -> str:
    if constraint == "latency":
        value = config["latency_ms"]
        return f"{bounds.latency_percentile} " + ("unknown" if value is None else f"{plain(value)} ms")
    value = config["quality_ratio"]
    return "quality ratio " + ("unknown" if value is None else plain(value))


def _serving(args: argparse.Namespace, rows: pd.DataFrame) -> bool:
    """Rows of a server under load are judged by an SLO: asked by naming their scenario or by an SLO flag, or
    when they are the tree's only ok rows."""
    loaded = under_load(rows)
    if args.scenario is not None:
        return loaded.any() and args.scenario in set(rows.loc[loaded, "scenario"])
    if args.slo_ttft_ms is not None or args.slo_itl_ms is not None:
        return True
    ok = rows["status"] == "ok" if "status" in rows else loaded
    return bool(ok.any()) and bool(loaded[ok].all())


def _run(args: argparse.Namespace) -> str:
    # Imported here: the serve module builds on this one.
    from analysis.serve_recommend import DEFAULT_MIN_ATTAINMENT, Slo, format_text as serve_text, recommend_serve

    attainment = DEFAULT_MIN_ATTAINMENT if args.min_slo_attainment is None else args.min_slo_attainment
    if args.slo_ttft_ms is not None or args.slo_itl_ms is not None:
        Slo(args.slo_ttft_ms, args.slo_itl_ms, attainment)  # a bad SLO is refused before the tree is read
    settings = cost_settings(args)  # so are bad cost options and an unknown --grid-region
    rows = load(args.tree)
    if _serving(args, rows):
        given = [f for f, v in (("--max-latency-ms", args.max_latency_ms), ("--min-quality-ratio",
                                args.min_quality_ratio), ("--eval", args.eval)) if v is not None]
        if given:
            raise BadInput(f"{', '.join(given)}: for classify and generate rows; serve rows are judged by "
                           "--slo-ttft-ms, --slo-itl-ms and --min-slo-attainment")
        rec = recommend_serve(rows, Slo(args.slo_ttft_ms, args.slo_itl_ms, attainment), args.objective, args.top,
                              settings, args.energy_source)
        return json.dumps(asdict(rec), indent=2) if args.json else serve_text(rec)
    if args.min_slo_attainment is not None:
        raise BadInput("--min-slo-attainment is for scenario=serve rows, not "
                       f"{args.scenario or 'the classify and generate rows this tree has'}")
    if args.max_latency_ms is None or args.min_quality_ratio is None:
        raise BadInput("--max-latency-ms and --min-quality-ratio are required for classify and generate rows "
                       "(serve rows: --slo-ttft-ms and/or --slo-itl-ms)")
    bounds = Bounds(args.max_latency_ms, args.min_quality_ratio, args.latency_percentile)
    # Rows under load have no per-call latency: the SLO judges them, never these bounds.
    rec = recommend(rows[~under_load(rows)], bounds, args.objective, args.eval, args.scenario, args.top,
                    settings, args.energy_source)
    return json.dumps(asdict(rec), indent=2) if args.json else format_text(rec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tree_argument(parser)
    group = parser.add_argument_group("classify and generate rows")
    group.add_argument("--max-latency-ms", type=float, help="latency bound per call (one batch)")
    group.add_argument("--latency-percentile", choices=PERCENTILES, default="p99")
    group.add_argument("--min-quality-ratio", type=float,
                       help="quality bound relative to the fp32 reference (0.99: at most 1%% below)")
    group.add_argument("--eval", help="the eval to judge quality by (required when the tree has several)")
    group = parser.add_argument_group("serve rows (docs/analysis.md, Serving: how a row is judged)")
    group.add_argument("--slo-ttft-ms", type=float, help="time-to-first-token SLO in ms")
    group.add_argument("--slo-itl-ms", type=float, help="inter-token latency SLO in ms")
    group.add_argument("--min-slo-attainment", type=float,
                       help="share of requests that must meet the SLO (default 0.99: judged by p99 where the row "
                       "recorded another SLO)")
    parser.add_argument("--scenario", help="classify, generate or serve (required when the eval has several; serve "
                        "is chosen by an SLO flag, or when the tree holds only serve rows)")
    parser.add_argument("--energy-source", help="the energy source to rank (required when the tree has several "
                        "measured ones; estimates are left out when one measured source is present)")
    parser.add_argument("--objective", choices=list(OBJECTIVES), default="energy")
    parser.add_argument("--top", type=int, default=3, help="runners-up to list (default 3)")
    parser.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    add_cost_options(parser)
    args = parser.parse_args(argv)
    try:
        print(_run(args))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
