"""`python -m analysis.gate`: fail CI when a candidate costs more energy or time than its baseline, not on noise.

A metric regresses when the candidate/baseline ratio of medians exceeds 1 + threshold AND the bootstrap
confidence interval of that ratio lies above 1. The interval comes from the raw samples each row keeps
(per-window energy, per-call latency), resampled level by level: runs, windows, calls. On a noisy machine the
spread between runs dominates; give each side several runs of a configuration (a sweep repeated, or
`resume=false` twice into one tree) and the interval accounts for it.
Exit status: 0 nothing regressed, 1 something did, 2 the input cannot be compared (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import load
from bench.row import KEY_COLUMNS

KEY = list(KEY_COLUMNS)  # the project's one configuration key (machine included)
# metric -> (raw sample column, kind)
METRICS = {
    "energy_j_per_inference": ("window_j_per_inference", "energy"),
    "latency_ms_p50": ("latency_ms_samples", "latency"),
}


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


Run = list[np.ndarray]  # one row's samples, one array per window


def _runs(rows: pd.DataFrame, column: str, kind: str) -> list[Run]:
    """Each row's samples split by window (energy: one value per window; latency: that window's calls)."""
    runs = []
    for _, row in rows.iterrows():
        samples = np.asarray(row[column], dtype=float)
        if kind == "energy":
            windows = [samples[i:i + 1] for i in range(len(samples))]
        else:
            calls = row.get("window_calls")
            bounds = np.cumsum(calls)[:-1] if calls is not None and len(calls) else []
            windows = np.split(samples, bounds)
        runs.append([w for w in windows if len(w)])
    return [r for r in runs if r]


def _pick(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.integers(0, len(items), len(items))]


def _resampled_median(runs: list[Run], rng: np.random.Generator) -> float:
    """Resamples runs, then windows within each run, then samples within each window."""
    return float(np.median(np.concatenate([w[rng.integers(0, len(w), len(w))]
                                           for run in _pick(runs, rng) for w in _pick(run, rng)])))


def _median(runs: list[Run]) -> float:
    return float(np.median(np.concatenate([w for run in runs for w in run])))


def bootstrap_ratio(baseline: list[Run], candidate: list[Run], confidence: float, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians candidate/baseline and its hierarchical bootstrap interval.

    Samples are resampled at every level they were collected at: runs (when a side has several rows for
    a configuration), windows, then calls. Calls within one window, and windows within one run, share the
    machine's state at that moment; treating them as independent would make the interval far too narrow.
    """
    rng = np.random.default_rng(seed)
    ratios = [_resampled_median(candidate, rng) / _resampled_median(baseline, rng) for _ in range(resamples)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return _median(candidate) / _median(baseline), float(low), float(high)


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


MISSING = "-"


def _groups(rows: pd.DataFrame, key: list[str]) -> dict[tuple, pd.DataFrame]:
    """Successful rows by configuration; a key column a row lacks (an older schema) matches only its like."""
    ok = rows[rows["status"] == "ok"].copy()
    for column in key:
        ok[column] = ok[column].astype(object).where(ok[column].notna(), MISSING) if column in ok else MISSING
    return {k: g for k, g in ok.groupby(key, sort=False)}


def _label(key: tuple, columns: list[str]) -> str:
    return " ".join(f"{c}={v}" for c, v in zip(columns, key) if c != "model_revision" and v != MISSING)


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, metrics: list[str], threshold: float,
            confidence: float, resamples: int = 2000) -> tuple[list[Comparison], list[str], list[str]]:
    """Comparisons per matched configuration and metric, then unmatched labels (baseline, candidate)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UnusableInput(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    baseline, candidate = (rows.assign(device_type=rows["device"].astype(str).str.partition(":")[0])
                           for rows in (baseline, candidate))
    key = [c for c in KEY if c in baseline.columns or c in candidate.columns]
    base_groups, cand_groups = _groups(baseline, key), _groups(candidate, key)
    matched = [k for k in base_groups if k in cand_groups]
    if not matched:
        raise UnusableInput("no configuration appears in both baseline and candidate (matched on "
                            f"{', '.join(key)}); are they runs of the same sweep?")
    comparisons = []
    for k in matched:
        b, c = base_groups[k], cand_groups[k]
        label = _label(k, key)
        for metric in metrics:
            column, kind = METRICS[metric]
            b_med, c_med = float(np.median(b[metric])), float(np.median(c[metric]))
            why_not = _energy_gateable(b, c) if kind == "energy" else None
            if column not in b or column not in c or b[column].isna().any() or c[column].isna().any():
                why_not = why_not or f"not gated: rows lack {column}"
            if why_not is None:
                b_runs, c_runs = _runs(b, column, kind), _runs(c, column, kind)
                if _median(b_runs) <= 0:
                    why_not = "not gated: baseline median is not positive"
            if why_not:
                comparisons.append(Comparison(label, metric, b_med, c_med, c_med / b_med if b_med > 0 else None,
                                              None, None, why_not))
                continue
            ratio, low, high = bootstrap_ratio(b_runs, c_runs, confidence, resamples)
            comparisons.append(Comparison(label, metric, b_med, c_med, ratio, low, high,
                                          decide(ratio, low, high, threshold)))
        if "passes_quality_gate" in b and "passes_quality_gate" in c:
            was, now = bool(b["passes_quality_gate"].all()), bool(c["passes_quality_gate"].all())
            verdict = "regression" if was and not now else "improvement" if now and not was else "no change"
            comparisons.append(Comparison(label, "passes_quality_gate", float(was), float(now), None, None, None,
                                          verdict))
    unmatched_base = [_label(k, key) for k in base_groups if k not in cand_groups]
    unmatched_cand = [_label(k, key) for k in cand_groups if k not in base_groups]
    return comparisons, unmatched_base, unmatched_cand


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(comparisons: list[Comparison], confidence: float) -> list[list[str]]:
    head = ["configuration", "metric", "baseline", "candidate", "ratio", f"{confidence:.0%} CI", "verdict"]
    rows = [[c.config, c.metric, _fmt(c.baseline), _fmt(c.candidate), _fmt(c.ratio),
             "-" if c.ci_low is None else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]", c.verdict] for c in comparisons]
    return [head, *rows]


def console(comparisons: list[Comparison], unmatched: tuple[list[str], list[str]], confidence: float) -> str:
    table = _table(comparisons, confidence)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table]
    lines += [f"only in baseline: {u}" for u in unmatched[0]] + [f"only in candidate: {u}" for u in unmatched[1]]
    return "\n".join(lines)


def markdown(comparisons: list[Comparison], unmatched: tuple[list[str], list[str]], confidence: float,
             threshold: float) -> str:
    regressions = [c for c in comparisons if c.verdict == "regression"]
    table = _table(comparisons, confidence)
    status = (f"**{len(regressions)} regression(s)**: " + ", ".join(f"{c.metric} ({c.config})" for c in regressions)
              if regressions else "**No regression.**")
    lines = ["## Energy and latency gate", "", status, "",
             f"Threshold {threshold:.0%}; a regression needs the ratio above it and the {confidence:.0%} "
             "bootstrap interval above 1. Estimated energy is never gated.", "",
             "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += [f"- only in baseline: {u}" for u in unmatched[0]] + [f"- only in candidate: {u}" for u in unmatched[1]]
    return "\n".join(lines) + "\n"


def gate(baseline: str | Path, candidate: str | Path, metrics: list[str], threshold: float = 0.05,
         confidence: float = 0.95, markdown_path: str | None = None, json_path: str | None = None) -> int:
    """Runs the gate and returns the exit status."""
    if threshold <= 0 or not 0 < confidence < 1:
        raise UnusableInput(f"threshold={threshold} must be > 0 and confidence={confidence} inside (0, 1)")
    frames = {}
    for name, path in (("baseline", baseline), ("candidate", candidate)):
        if not Path(path).exists():
            raise UnusableInput(f"--{name} {path} does not exist")
        frames[name] = load(path)
        if frames[name].empty or "status" not in frames[name]:
            raise UnusableInput(f"--{name} {path} holds no result rows")
    comparisons, only_base, only_cand = compare(frames["baseline"], frames["candidate"], metrics, threshold,
                                                confidence)
    print(console(comparisons, (only_base, only_cand), confidence))
    regressions = [c for c in comparisons if c.verdict == "regression"]
    if markdown_path:
        Path(markdown_path).write_text(markdown(comparisons, (only_base, only_cand), confidence, threshold))
    if json_path:
        Path(json_path).write_text(json.dumps({
            "threshold": threshold, "confidence": confidence, "regressions": len(regressions),
            "comparisons": [asdict(c) for c in comparisons],
            "only_in_baseline": only_base, "only_in_candidate": only_cand}, indent=2))
    if regressions:
        print(f"REGRESSION: {', '.join(sorted({c.metric for c in regressions}))}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.gate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="results tree (or row file) of the baseline")
    parser.add_argument("--candidate", required=True, help="results tree (or row file) of the candidate")
    parser.add_argument("--metrics", default="energy_j_per_inference,latency_ms_p50",
                        help=f"comma-separated, from: {', '.join(METRICS)}")
    parser.add_argument("--threshold", type=float, default=0.05, help="relative change that matters (0.05 = 5%%)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--markdown", help="also write a Markdown summary here (e.g. for a CI job summary)")
    parser.add_argument("--json", help="also write the comparisons as JSON here")
    args = parser.parse_args(argv)
    try:
        return gate(args.baseline, args.candidate, [m.strip() for m in args.metrics.split(",") if m.strip()],
                    args.threshold, args.confidence, args.markdown, args.json)
    except UnusableInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
