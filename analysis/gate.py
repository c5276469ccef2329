"""`python -m analysis.gate`: fail CI when a candidate costs more energy or time than its baseline, not on noise.

Rows are matched by the project's configuration key (bench/row.py; the machine is part of it). For each matched
configuration and metric the gate tests "the candidate/baseline ratio is 1":
- paired, when both trees hold one run on each side of at least two rounds (the `sweep_id` the interleaved
  command `python -m bench.ab` gives each round): Student t on the log of the per-round ratios, so drift and
  neighbours that hit both sides of a round cancel out;
- otherwise with a hierarchical bootstrap of the raw samples each row keeps (runs, windows, calls).
A metric regresses when Holm-Bonferroni rejects "no change" with a family-wise error of 1 - confidence over
every comparison of the gate, the interval at its per-comparison level lies above 1, and the ratio exceeds
1 + threshold. Each comparison also prints the smallest regression it would have caught 4 times in 5 at the
noise it observed, so a pass says what it could see (docs/ci-gate.md).
Exit status: 0 nothing regressed, 1 something did, 2 the gate could not decide (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis.ratio_tests import POWER, RatioTest, bootstrap_ratio, detectable, holm, median, paired_t, runs
from bench.results import load
from bench.row import key_columns

# metric -> (raw sample column, kind)
METRICS = {
    "energy_j_per_inference": ("window_j_per_inference", "energy"),
    "latency_ms_p50": ("latency_ms_samples", "latency"),
}
MACHINE = "device_name"


class UnusableInput(ValueError):
    pass


@dataclass
class Comparison:
    config: str
    metric: str
    baseline: float | None
    candidate: float | None
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str  # regression | improvement | no change | not gated: <why>
    level: float | None = None  # confidence of this comparison's interval, after Holm's adjustment
    p_value: float | None = None  # two-sided, of "the ratio is 1"
    detectable: float | None = None  # smallest regression (fraction) caught with probability POWER
    method: str | None = None


@dataclass
class Outcome:
    comparisons: list[Comparison]
    only_baseline: list[str]
    only_candidate: list[str]
    other_machine: list[str] = field(default_factory=list)  # configurations measured on different machines
    common: str = ""  # the key values every configuration shares


def decide(ratio: float, low: float, high: float, threshold: float) -> str:
    if ratio > 1 + threshold and low > 1:
        return "regression"
    if ratio < 1 - threshold and high < 1:
        return "improvement"
    return "no change"


def _energy_gateable(base: pd.DataFrame, cand: pd.DataFrame) -> str | None:
    """Why energy cannot be gated, or None when it can: both sides measured, by one and the same source."""
    if not (base["energy_measured"].all() and cand["energy_measured"].all()):
        return "not gated: estimated"
    sources = set(base["energy_source"]) | set(cand["energy_source"])
    if len(sources) > 1:
        return f"not gated: energy sources differ ({', '.join(sorted(sources))})"
    return None


def _rounds(base: pd.DataFrame, cand: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The metric of each round both sides have a run of (paired by sweep_id), and how many rounds there were.

    None unless each side has one run per round and at least two rounds have both. A round one side lacks
    (its run failed or was invalid) is left out whole, so what is compared stays paired.
    """
    if "sweep_id" not in base or "sweep_id" not in cand or metric not in base or metric not in cand:
        return None
    b, c = base.set_index("sweep_id")[metric], cand.set_index("sweep_id")[metric]
    both = sorted(set(b.index) & set(c.index))
    if not (b.index.is_unique and c.index.is_unique) or len(both) < 2:
        return None
    return b[both].to_numpy(float), c[both].to_numpy(float), len(set(b.index) | set(c.index))


MISSING = "-"


def _groups(rows: pd.DataFrame, key: list[str], status: str = "ok") -> dict[tuple, pd.DataFrame]:
    """Rows of a status by configuration; a key column a row lacks (an older schema) matches only its like."""
    ok = rows[rows["status"] == status].copy()
    for column in key:
        ok[column] = ok[column].astype(object).where(ok[column].notna(), MISSING) if column in ok else MISSING
    return {k: g for k, g in ok.groupby(key, sort=False)}


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _labels(keys: list[tuple], columns: list[str]) -> tuple[Callable[[tuple], str], str]:
    """A label function naming the key columns that differ between configurations, and the values all share."""
    shown = [i for i, c in enumerate(columns) if c != "model_revision"]
    varying = [i for i in shown if len({k[i] for k in keys}) > 1] or shown[:1]
    common = " ".join(f"{columns[i]}={_shown(keys[0][i])}" for i in shown
                      if i not in varying and keys[0][i] != MISSING)

    def label(k: tuple) -> str:
        return " ".join(f"{columns[i]}={_shown(k[i])}" for i in varying if k[i] != MISSING)

    return label, common


def _apart(base_keys: list[tuple], cand_keys: list[tuple], key: list[str]) -> str:
    """Why two trees share no configuration: the key columns whose values never meet."""
    reasons = []
    for i, column in enumerate(key):
        b, c = sorted({_shown(k[i]) for k in base_keys}), sorted({_shown(k[i]) for k in cand_keys})
        if set(b).isdisjoint(c):
            hint = ("rows of different machines are never compared" if column == MACHINE else
                    f"--ignore {column} compares across it")
            reasons.append(f"{column} differs (baseline: {', '.join(b)}; candidate: {', '.join(c)}): {hint}")
    return "; ".join(reasons)


def _ignored_values(rows: pd.DataFrame, ignore: list[str], side: str, label: str) -> dict[str, str]:
    values = {}
    for column in ignore:
        seen = sorted({_shown(v) for v in rows[column]}) if column in rows else [MISSING]
        if len(seen) > 1:
            raise UnusableInput(f"--ignore {column}: the {side} has {label} with {column} = {', '.join(seen)}; "
                                "each side must hold one value of an ignored column per configuration")
        values[column] = seen[0]
    return values


def _test(b: pd.DataFrame, c: pd.DataFrame, metric: str, resamples: int) -> RatioTest | str:
    """The comparison's test, or why the metric cannot be gated."""
    column, kind = METRICS[metric]
    why_not = _energy_gateable(b, c) if kind == "energy" else None
    if why_not:
        return why_not
    if (rounds := _rounds(b, c, metric)) is not None and (rounds[0] > 0).all() and (rounds[1] > 0).all():
        return paired_t(*rounds)
    if column not in b or column not in c or b[column].isna().any() or c[column].isna().any():
        return f"not gated: rows lack {column}"
    b_runs, c_runs = runs(b, column, kind), runs(c, column, kind)
    if not b_runs or not c_runs or median(b_runs) <= 0 or median(c_runs) <= 0:
        return "not gated: a median is not positive"
    return bootstrap_ratio(b_runs, c_runs, resamples)


def check(metrics: list[str], threshold: float, confidence: float, ignore: list[str] | tuple[str, ...]) -> None:
    """The gate's options, checked before any work (raises UnusableInput naming the bad value)."""
    if unknown := [m for m in metrics if m not in METRICS]:
        raise UnusableInput(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    if threshold <= 0 or not 0 < confidence < 1:
        raise UnusableInput(f"threshold={threshold} must be > 0 and confidence={confidence} inside (0, 1)")
    # The project's one configuration key (machine included); its scenario columns are read when needed.
    if bad := [c for c in ignore if c not in key_columns()]:
        raise UnusableInput(f"--ignore {', '.join(bad)}: not a configuration key column; choose from: "
                            f"{', '.join(key_columns())}")
    if MACHINE in ignore or "device_type" in ignore:
        raise UnusableInput("--ignore cannot drop the machine (device_type, device_name): rows of different "
                            "machines are never compared")


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, metrics: list[str], threshold: float,
            confidence: float, resamples: int = 2000, ignore: list[str] | tuple[str, ...] = ()) -> Outcome:
    """Comparisons per matched configuration and metric (Holm over all of them), then what did not match.

    `ignore`: key columns not matched on (two configurations of one checkout, e.g. quant=fp32 against int8);
    each configuration must then hold one value of them per side, and its label shows both.
    """
    check(metrics, threshold, confidence, ignore)
    baseline, candidate = (rows.assign(device_type=rows["device"].astype(str).str.partition(":")[0])
                           for rows in (baseline, candidate))
    key = [c for c in key_columns() if c not in ignore and (c in baseline.columns or c in candidate.columns)]
    base_groups, cand_groups = _groups(baseline, key), _groups(candidate, key)
    broken = _groups(candidate, key, "failed")
    matched = [k for k in base_groups if k in cand_groups]
    failing = [k for k in base_groups if k not in cand_groups and k in broken]
    if not base_groups:
        raise UnusableInput("the baseline holds no successful (status=ok) row")
    if not matched and not failing:
        raise UnusableInput(f"no configuration appears in both baseline and candidate (matched on {', '.join(key)}): "
                            + (_apart(list(base_groups), list(cand_groups), key) if cand_groups else
                               "the candidate holds no successful (status=ok) row"))
    label, common = _labels([*base_groups, *cand_groups], key)
    comparisons: list[Comparison] = []
    tests: list[tuple[Comparison, RatioTest]] = []
    for k in matched:
        b, c = base_groups[k], cand_groups[k]
        was, now = (_ignored_values(rows, list(ignore), side, label(k))
                    for rows, side in ((b, "baseline"), (c, "candidate")))
        name = " ".join([label(k), *(f"{col}={was[col]}" + (f"->{now[col]}" if now[col] != was[col] else "")
                                     for col in ignore)])
        for metric in metrics:
            b_med, c_med = float(np.median(b[metric])), float(np.median(c[metric]))
            test = _test(b, c, metric, resamples)
            comparisons.append(Comparison(name, metric, b_med, c_med, c_med / b_med if b_med > 0 else None, None,
                                          None, test if isinstance(test, str) else "no change"))
            if not isinstance(test, str):
                tests.append((comparisons[-1], test))
        if "passes_quality_gate" in b and "passes_quality_gate" in c:
            was_ok, now_ok = bool(b["passes_quality_gate"].all()), bool(c["passes_quality_gate"].all())
            verdict = "regression" if was_ok and not now_ok else "improvement" if now_ok and not was_ok else "no change"
            comparisons.append(Comparison(name, "passes_quality_gate", float(was_ok), float(now_ok), None, None, None,
                                          verdict))
    _judge(tests, confidence, threshold)
    for k in failing:  # the baseline ran it, the candidate fails to: a regression
        error = broken[k].iloc[0]
        comparisons.append(Comparison(label(k), "status", None, None, None, None, None, "regression",
                                      method=f"failed: {error.get('error_type')}: {error.get('error_message')}"))
    only_base = [k for k in base_groups if k not in cand_groups and k not in broken]
    only_cand = [k for k in cand_groups if k not in base_groups]
    return Outcome(comparisons, [label(k) for k in only_base], [label(k) for k in only_cand],
                   _other_machines(only_base, only_cand, key, label), common)


def _judge(tests: list[tuple[Comparison, RatioTest]], confidence: float, threshold: float) -> None:
    """Fills each comparison's interval, level, verdict and detectable regression, Holm over all of them."""
    alpha = 1 - confidence
    for (comparison, test), level in zip(tests, holm([t.p_value for _, t in tests], alpha)):
        low, high = test.bounds(1 - level)
        comparison.ratio, comparison.ci_low, comparison.ci_high = test.ratio, low, high
        comparison.verdict = decide(test.ratio, low, high, threshold) if test.p_value < level else "no change"
        comparison.level, comparison.p_value, comparison.method = 1 - level, test.p_value, test.method
        # A regression of this configuration alone would have the smallest p-value, tested at alpha / m.
        comparison.detectable = detectable(test, 1 - alpha / len(tests), threshold)


def _other_machines(only_base: list[tuple], only_cand: list[tuple], key: list[str],
                    label: Callable[[tuple], str]) -> list[str]:
    """Configurations that would match but for the machine: each side measured them on another one."""
    if MACHINE not in key:
        return []
    at = key.index(MACHINE)
    elsewhere = {k[:at] + k[at + 1:]: k[at] for k in only_cand}
    return [f"{label(k)}: baseline measured on {k[at]}, candidate on {elsewhere[k[:at] + k[at + 1:]]}"
            for k in only_base if k[:at] + k[at + 1:] in elsewhere]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(comparisons: list[Comparison]) -> list[list[str]]:
    head = ["configuration", "metric", "baseline", "candidate", "ratio", "interval", "level", "detects",
            "method", "verdict"]
    rows = [[c.config, c.metric, _fmt(c.baseline), _fmt(c.candidate), "-" if c.ratio is None else f"{c.ratio:.3f}",
             "-" if c.ci_low is None else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]",
             "-" if c.level is None else f"{c.level * 100:.4g}%",
             "-" if c.detectable is None else f">= +{c.detectable:.0%}" if c.detectable >= 0.1
             else f">= +{c.detectable:.1%}", c.method or "-", c.verdict]
            for c in comparisons]
    return [head, *rows]


def _preamble(outcome: Outcome, confidence: float, threshold: float) -> list[str]:
    gated = sum(c.level is not None for c in outcome.comparisons)
    return [f"Family-wise confidence {confidence:.0%} over {gated} gated comparison(s) (Holm-Bonferroni; `level` is "
            f"each one's); threshold {threshold:.0%}; `detects`: the smallest regression caught {POWER:.0%} of the "
            "time at the noise observed. Estimated energy is never gated.",
            *([f"Common to all configurations: {outcome.common}"] if outcome.common else [])]


def _unmatched(outcome: Outcome) -> list[str]:
    return ([f"only in baseline: {u}" for u in outcome.only_baseline]
            + [f"only in candidate: {u}" for u in outcome.only_candidate]
            + [f"NOT COMPARED, another machine: {u}" for u in outcome.other_machine])


def console(outcome: Outcome, confidence: float, threshold: float) -> str:
    table = _table(outcome.comparisons)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join([*_preamble(outcome, confidence, threshold), *lines, *_unmatched(outcome)])


def markdown(outcome: Outcome, confidence: float, threshold: float, status: str, note: str | None = None) -> str:
    table = _table(outcome.comparisons)
    lines = ["## Energy and latency gate", "", status, "", *([note, ""] if note else []),
             *(f"{line}  " for line in _preamble(outcome, confidence, threshold)), "",
             "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += [f"- {u}" for u in _unmatched(outcome)]
    return "\n".join(lines) + "\n"


def _status(outcome: Outcome) -> tuple[int, str]:
    """Exit status and its one-line account."""
    regressions = [c for c in outcome.comparisons if c.verdict == "regression"]
    if regressions:
        return 1, f"**{len(regressions)} regression(s)**: " + ", ".join(f"{c.metric} ({c.config})"
                                                                          for c in regressions)
    if outcome.other_machine:
        return 2, ("**Could not decide**: the baseline of some configurations was measured on another machine "
                   "(listed below); rerun both sides on one machine.")
    if not any(c.level is not None or c.metric == "passes_quality_gate" for c in outcome.comparisons):
        return 2, "**Could not decide**: no comparison could be gated (see the verdicts)."
    return 0, "**No regression.**"


def undecided(reason: str, markdown_path: str | None, json_path: str | None, note: str | None = None) -> None:
    """The Markdown and JSON of a gate that could not decide, so that a pull request's comment says why."""
    if markdown_path:
        Path(markdown_path).write_text("\n\n".join(["## Energy and latency gate", *([note] if note else []),
                                                     f"**Could not decide**: {reason}"]) + "\n")
    if json_path:
        Path(json_path).write_text(json.dumps({"exit_status": 2, "status": f"Could not decide: {reason}"}, indent=2))


def gate(baseline: str | Path, candidate: str | Path, metrics: list[str], threshold: float = 0.05,
         confidence: float = 0.95, markdown_path: str | None = None, json_path: str | None = None,
         ignore: list[str] | tuple[str, ...] = (), note: str | None = None) -> int:
    """Runs the gate and returns the exit status. `note` heads the Markdown (how the trees were measured)."""
    check(metrics, threshold, confidence, ignore)
    try:
        frames = {}
        for name, path in (("baseline", baseline), ("candidate", candidate)):
            if not Path(path).exists():
                raise UnusableInput(f"--{name} {path} does not exist")
            frames[name] = load(path)
            if frames[name].empty or "status" not in frames[name]:
                raise UnusableInput(f"--{name} {path} holds no result rows")
        outcome = compare(frames["baseline"], frames["candidate"], metrics, threshold, confidence, ignore=ignore)
    except UnusableInput as e:
        undecided(str(e), markdown_path, json_path, note)
        raise
    code, status = _status(outcome)
    print(console(outcome, confidence, threshold))
    if markdown_path:
        Path(markdown_path).write_text(markdown(outcome, confidence, threshold, status, note))
    if json_path:
        Path(json_path).write_text(json.dumps({
            "exit_status": code, "status": status.replace("**", ""), "threshold": threshold,
            "family_confidence": confidence, "power_of_detectable": POWER, "ignore": list(ignore),
            "regressions": sum(c.verdict == "regression" for c in outcome.comparisons),
            "comparisons": [asdict(c) for c in outcome.comparisons], "common": outcome.common,
            "only_in_baseline": outcome.only_baseline, "only_in_candidate": outcome.only_candidate,
            "other_machine": outcome.other_machine}, indent=2))
    if code == 1:
        regressed = sorted({c.metric for c in outcome.comparisons if c.verdict == "regression"})
        print(f"REGRESSION: {', '.join(regressed)}", file=sys.stderr)
    elif code == 2:
        print(status.replace("**", ""), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.gate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="results tree (or row file) of the baseline")
    parser.add_argument("--candidate", required=True, help="results tree (or row file) of the candidate")
    parser.add_argument("--metrics", default="energy_j_per_inference,latency_ms_p50",
                        help=f"comma-separated, from: {', '.join(METRICS)}")
    parser.add_argument("--threshold", type=float, default=0.05, help="relative change that matters (0.05 = 5%%)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="family-wise: 1 - the chance that any comparison of the gate is a false alarm")
    parser.add_argument("--ignore", default="",
                        help="comma-separated key columns not to match on, to compare two configurations "
                             "(e.g. quant, when the baseline is fp32 and the candidate int8)")
    parser.add_argument("--markdown", help="also write a Markdown summary here (e.g. for a CI job summary)")
    parser.add_argument("--json", help="also write the comparisons as JSON here")
    args = parser.parse_args(argv)
    try:
        return gate(args.baseline, args.candidate, comma_list(args.metrics), args.threshold, args.confidence,
                    args.markdown, args.json, comma_list(args.ignore))
    except UnusableInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
