"""Which energy figure judges a row: joules per output token for generation, per inference otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_SCENARIO = "classify"
# scenario -> (energy column, the unit it is per, the column holding one request's joules)
_AXES = {
    "generate": ("energy_j_per_output_token", "output token", "energy_j_per_request"),
}
_DEFAULT_AXIS = ("energy_j_per_inference", "inference", "energy_j_per_inference")


def energy_unit(scenario: str) -> str:
    return _AXES.get(scenario, _DEFAULT_AXIS)[1]


def with_energy(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows plus `scenario`, `energy_j` (and `_ci_low`/`_ci_high`), `energy_unit` and `request_j`.

    Every front, plot, table, cost and recommendation reads `energy_j`, so a generation row is never
    judged by a per-inference figure, nor an encoder row by a per-token one.
    """
    out = rows.copy()
    out["scenario"] = out["scenario"].fillna(DEFAULT_SCENARIO) if "scenario" in out else DEFAULT_SCENARIO
    nan = pd.Series(np.nan, index=out.index)
    for name in ("energy_j", "energy_j_ci_low", "energy_j_ci_high", "request_j"):
        out[name] = nan
    out["energy_unit"] = ""
    for scenario, index in out.groupby("scenario").groups.items():
        column, unit, request = _AXES.get(scenario, _DEFAULT_AXIS)
        for target, source in (("energy_j", column), ("energy_j_ci_low", f"{column}_ci_low"),
                               ("energy_j_ci_high", f"{column}_ci_high"), ("request_j", request)):
            if source in out:
                out.loc[index, target] = pd.to_numeric(out.loc[index, source], errors="coerce")
        out.loc[index, "energy_unit"] = unit
    return out
