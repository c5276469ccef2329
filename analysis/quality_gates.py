"""Where each model's quality gate lies on a quality axis, and how to name it on a plot."""

from __future__ import annotations

import pandas as pd

from analysis.pareto import LOWER_IS_BETTER


def gate_lines(rows: pd.DataFrame) -> list[tuple[float, str]]:
    """(quality value, label) per model's gate, e.g. (0.9603, "quality gate minilm: 99% of fp32 (0.9603)").

    A lower-is-better metric passes below ref / gate. The reference is recomputed per run for some evals, so
    lines are de-duplicated at the precision they are labelled with; rows without a gate or reference draw none.
    """
    if "quality_gate" not in rows or "quality_ref" not in rows:
        return []
    lower = rows["quality_metric"].isin(LOWER_IS_BETTER)
    limit = (rows["quality_ref"] / rows["quality_gate"]).where(lower, rows["quality_ref"] * rows["quality_gate"])
    known = limit.notna()
    gates = pd.DataFrame({"model": rows["model"], "gate": rows["quality_gate"], "lower": lower,
                          "limit": limit[known].map(lambda v: f"{v:.4g}")})[known].drop_duplicates()
    lines = []
    for model, gate, lower_is_better, shown in gates.itertuples(index=False):
        relation = f"fp32 / {gate:.2f}" if lower_is_better else f"{gate:.0%} of fp32"
        lines.append((float(shown), f"quality gate {model}: {relation} ({shown})"))
    return lines
