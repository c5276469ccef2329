"""The table printed at the end of a run or a sweep: one table per scenario, with that scenario's columns."""

from __future__ import annotations

import pandas as pd

from bench import backends, scenarios
from bench.digits import ESTIMATE_SIGNIFICANT, plain, with_interval
from bench.quants import BACKENDS
from bench.row import KEY_COLUMNS, config_key, declared, key_columns

# A summary column `<column>_vs_ref`: the row's value over that of its backend's reference variant (fp32 on
# PyTorch and ONNX Runtime, f16 on llama.cpp) in the same configuration, the quality's reference.
VS_REF = "_vs_ref"


def label(row: pd.Series) -> str:
    """The configuration in words: the usual axes, then a scenario's own key settings (a serve run's rate)."""
    own = [f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}"
           for c in key_columns()[len(KEY_COLUMNS):] if c != "eval_key" and c in row and pd.notna(row[c])]
    usual = [f"{c}={row.get(c)}" for c in ("quant", "backend", "batch_size", "device")
             if c in ("quant", "device") or pd.notna(row.get(c))]  # a serve row has no batch size
    return " ".join([str(row["model"]), *usual, *own])


def reference_quant(backend: object) -> str | None:
    """The quant a backend's rows are compared with (None for a backend this version does not know)."""
    return backends.reference(backend)[0] if backend in BACKENDS else None


def _vs_ref(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's value over the ok reference row of the same configuration but for quant (its slowdown)."""
    same = rows.apply(lambda r: config_key(r, without=("quant",)), axis=1)
    ref = (rows["quant"] == rows["backend"].map(reference_quant)) & (rows["status"] == "ok")
    reference = dict(zip(same[ref], rows.loc[ref, column]))
    return rows[column] / same.map(reference).astype(float)


def short_of_target(rows: pd.DataFrame) -> list[str]:
    """A line per ok row whose interval missed its precision target: these need a longer run."""
    if "ci_target_met" not in rows:
        return []
    missed = rows[(rows["status"] == "ok") & (rows["ci_target_met"] == False)]  # noqa: E712 (NaN: not recorded)
    return [f"NEEDS A LONGER RUN: {label(r)}: stopped short of the ±{r['ci_target']:.0%} asked ({r['ci_stop']}); "
            f"its {r.get('energy_unit') or 'inference'} figure is ±{_half_width(r):.1%}; {_remedy(str(r['ci_stop']))}"
            for _, r in missed.iterrows()]


# What ended the windows (the row's ci_stop) -> the setting that gives more of them.
REMEDIES = {"time cap": "raise profile.max_seconds", "idle baseline": "raise profile.idle_s or profile.idle_segments",
            "serve.duration_s": "raise serve.duration_s"}


def _remedy(stop: str) -> str:
    return "; ".join(remedy for cause, remedy in REMEDIES.items() if cause in stop) or "measure longer"


def _half_width(row: pd.Series) -> float:
    axis = row.get("energy_axis") or "energy_j_per_inference"
    return (row[f"{axis}_ci_high"] - row[f"{axis}_ci_low"]) / 2 / abs(row[axis])


def _printed(row: pd.Series, columns: list[str]) -> dict[str, object]:
    """One row's cells, each number to the digits its data supports (bench/digits.py)."""
    estimate = row.get("energy_measured") is False or row.get("energy_source") == "estimate"
    units = {c: column.unit for c, column in declared().items()}
    cells: dict[str, object] = {}
    for c in columns:
        value = row.get(c)
        if c in cells or not isinstance(value, float):
            cells.setdefault(c, "-" if value is None else value)
        elif f"{c}_ci_low" in row.index:  # a figure with its interval: digits from the interval's width
            low, high = row.get(f"{c}_ci_low"), row.get(f"{c}_ci_high")
            cells[c], cells[f"{c}_ci_low"], cells[f"{c}_ci_high"] = with_interval(
                value, low, high, estimate and c.startswith("energy"))
        else:
            # A share of a few dozen requests or items: two digits say all it knows.
            digits = 2 if c in units and units[c] == "fraction" else 3
            cells[c] = plain(value, ESTIMATE_SIGNIFICANT if estimate and c.startswith("energy") else digits)
    return cells


def _one(rows: pd.DataFrame, columns: dict[str, str]) -> str:
    derived = {c: _vs_ref(rows, c[:-len(VS_REF)]) for c in columns if c.endswith(VS_REF)}
    rows = rows.assign(**derived)
    order = [c for c in ("model", "device", "backend", "prune", "quant", "batch_size") if c in rows]
    rows = rows.sort_values(order, kind="stable")
    shown = pd.DataFrame([_printed(r, list(columns)) for _, r in rows.iterrows()], columns=list(columns))
    return shown.rename(columns=columns).to_string(index=False, na_rep="-")


def table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "(no rows)"
    names = rows["scenario"].fillna("classify") if "scenario" in rows else pd.Series("classify", index=rows.index)
    parts = []
    for name, group in rows.groupby(names, sort=True):
        columns = scenarios.get(name).SUMMARY_COLUMNS if name in scenarios.names() else {}
        text = _one(group, columns or {c: c for c in ("model", "quant", "batch_size", "status")})
        parts.append(text if names.nunique() == 1 else f"scenario={name}\n{text}")
    text = "\n\n".join(parts)
    if "backend" in rows and (refs := {b: reference_quant(b) for b in rows["backend"].dropna().unique()}):
        if set(refs.values()) - {"fp32"}:  # the headings say fp32 where it is; say where it is not
            text += "\nvs fp32, /fp32: against each backend's reference: " + ", ".join(
                f"{quant} on {backend}" for backend, quant in sorted(refs.items())) + "."
    if "energy_ci_method" in rows:
        for method, level in rows[["energy_ci_method", "energy_ci_level"]].dropna().drop_duplicates().itertuples(
                index=False):
            text += f"\nci low/high: {method}, stated at {level:.0%} (its coverage: docs/protocol.md §3)."
    if "energy_measured" in rows and not rows["energy_measured"].fillna(False).astype(bool).all():
        text += ("\nsource=estimate rows are a power model (no readable energy counter), not measurements: the "
                 "model charges power in proportion to CPU time, so their energy ratios are CPU-time ratios.")
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.summary <tree>`: the sweep summary of every row under a results tree, sweeps together."""
    import argparse

    from bench.results import load

    parser = argparse.ArgumentParser(prog="python -m bench.summary", description=main.__doc__)
    parser.add_argument("tree", help="a results directory (e.g. results, or one sweep's directory)")
    rows = load(parser.parse_args(argv).tree)
    print(table(rows))
    print(*short_of_target(rows), sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
