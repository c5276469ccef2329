"""Can a run's numbers be trusted? The checks of docs/protocol.md §5, as row columns."""

from __future__ import annotations

from typing import Any

from bench.measure import Measurement


def validity(m: Measurement, rated_power_w: float | None, foreign_processes: int | None,
             energy_cv: float | None, max_cv: float, max_other_cpu_cores: float) -> dict[str, Any]:
    """Flags per run. Any reason in `invalid_reasons` makes the run status=invalid; a high CV is only
    flagged, since it widens the confidence interval rather than biasing the figure. Other processes'
    CPU use is flagged too (`cpu_contended`): on a small machine it can slow the run many times over,
    and a package counter charges their joules to it, but a CPU always has some background work, so the
    row keeps its figures and says so."""
    reasons = []
    nonpositive = sum(1 for j in m.window_gross_j if j <= 0)
    if nonpositive:
        reasons.append(f"{nonpositive} window(s) with zero or negative energy")
    low = 0.1 * m.idle_power_w
    high = 1.2 * rated_power_w if rated_power_w else float("inf")
    powers = [j / s for j, s in zip(m.window_gross_j, m.window_seconds)]
    out_of_bounds = sum(1 for p in powers if not low <= p <= high)
    if out_of_bounds:
        reasons.append(f"{out_of_bounds} window(s) with average power outside [{low:.3g}, {high:.3g}] W "
                       "(0.1 x idle, 1.2 x rated)")
    if foreign_processes:
        reasons.append(f"{foreign_processes} other process(es) were using the GPU")
    return {
        "windows_nonpositive": nonpositive,
        "windows_power_out_of_bounds": out_of_bounds,
        "rated_power_w": rated_power_w,
        "energy_cv_high": energy_cv is not None and energy_cv > max_cv,
        "cpu_other_cores": m.other_cpu_cores,
        "cpu_contended": m.other_cpu_cores is not None and m.other_cpu_cores > max_other_cpu_cores,
        "invalid_reasons": "; ".join(reasons) or None,
    }
