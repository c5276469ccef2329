"""Can a run's numbers be trusted? The checks of docs/protocol.md §5, as row columns."""

from __future__ import annotations

from typing import Any, Sequence

from bench.config import ProfileConfig
from bench.measure import Measurement


def validity(phases: Sequence[Measurement], rated_power_w: float | None, foreign_processes: int | None,
             profile: ProfileConfig) -> dict[str, Any]:
    """Flags per run, each phase checked on its own. Any reason in `invalid_reasons` makes the run
    status=invalid: a window whose gross or net (idle-subtracted) energy is not positive, or an energy interval
    that reaches zero, leaves a figure that says nothing about the work. A high CV is only flagged, since it
    widens the interval rather than biasing the figure. Other processes' CPU use is flagged too
    (`cpu_contended`): on a small machine it can slow the run many times over, and a package counter charges
    their joules to it, but a CPU always has some background work, so the row keeps its figures and says so."""
    reasons: list[str] = []
    counts = {"gross": 0, "net": 0, "power": 0}
    high_cv, zero_ci = [], []
    high = 1.2 * rated_power_w if rated_power_w else float("inf")
    for m in phases:
        where = f"{m.phase}: " if m.phase else ""
        low = 0.1 * m.idle_power_w
        gross = sum(1 for j in m.window_gross_j if j <= 0)
        net = sum(1 for j in m.net_per_call() if j <= 0)
        power = sum(1 for j, s in zip(m.window_gross_j, m.window_seconds) if not low <= j / s <= high)
        if gross:
            reasons.append(f"{where}{gross} window(s) with zero or negative energy")
        if net:
            reasons.append(f"{where}{net} window(s) with zero or negative net energy (not above the idle baseline)")
        if power:
            reasons.append(f"{where}{power} window(s) with average power outside [{low:.3g}, {high:.3g}] W "
                           "(0.1 x idle, 1.2 x rated)")
        found = m.interval(profile.confidence)
        if found is not None and found.low <= 0:
            zero_ci.append(m.phase)
            reasons.append(f"{where}the net energy interval [{found.low:.3g}, {found.high:.3g}] J per call "
                           "includes zero")
        cv = m.cv()
        if cv is not None and cv > profile.max_cv:
            high_cv.append(m.phase)
        counts["gross"] += gross
        counts["net"] += net
        counts["power"] += power
    if foreign_processes:
        reasons.append(f"{foreign_processes} other process(es) were using the GPU")
    other = max((m.other_cpu_cores for m in phases if m.other_cpu_cores is not None), default=None)
    return {
        "windows_nonpositive": counts["gross"],
        "windows_net_nonpositive": counts["net"],
        "energy_ci_includes_zero": bool(zero_ci),
        "windows_power_out_of_bounds": counts["power"],
        "rated_power_w": rated_power_w,
        "energy_cv_high": bool(high_cv),
        # Which phase (generate: prefill, decode) is noisy; empty for a run of one phase.
        "energy_cv_high_phases": ", ".join(p for p in high_cv if p) or None,
        # The most contended phase: contention in either one distorts the request's figures.
        "cpu_other_cores": other,
        "cpu_contended": other is not None and other > profile.max_other_cpu_cores,
        "invalid_reasons": "; ".join(reasons) or None,
    }
