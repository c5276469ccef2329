"""Which energy figure judges a row: the axis the row declares (its scenario's), e.g. J per output token."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.results import migrate


def with_energy(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows plus `energy_j` (and `_ci_low`/`_ci_high`) and `request_j`, read from the columns each row names in
    `energy_axis` and `energy_request_axis` (rows of older schemas are migrated first).

    Every front, plot, table, cost and recommendation reads `energy_j`, so a generation row is never
    judged by a per-inference figure, nor an encoder row by a per-token one.
    """
    out = migrate(rows).copy()
    for name in ("energy_j", "energy_j_ci_low", "energy_j_ci_high", "request_j"):
        out[name] = np.nan
    for (axis, request), index in out.groupby(["energy_axis", "energy_request_axis"]).groups.items():
        for target, source in (("energy_j", axis), ("energy_j_ci_low", f"{axis}_ci_low"),
                               ("energy_j_ci_high", f"{axis}_ci_high"), ("request_j", request)):
            if source in out:
                out.loc[index, target] = pd.to_numeric(out.loc[index, source], errors="coerce")
    return out
