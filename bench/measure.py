"""The measurement protocol (docs/protocol.md §2, §3): idle baseline, warm-up until latency settles, windows until
the energy interval is as tight as asked, and the statistics of those windows.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import special

from bench import progress
from bench.config import ProfileConfig
from bench.meters import EnergyMeter

Clock = Callable[[], float]  # seconds, monotonic
# What the row's energy_ci_method says (docs/protocol.md §3).
CI_METHOD = "Student-t of the window mean, lag-1 autocorrelation corrected, idle baseline error included"
# Past this lag-1 autocorrelation the correction factor (1 + r) / (1 - r) is no longer a usable estimate.
MAX_LAG1 = 0.9
# Fewest degrees of freedom of the windows' part (docs/protocol.md §3: 2 keeps the simulated coverage within 0.3
# points of what 1 gives, and cuts the widest intervals by a factor of three).
MIN_DF = 2.0


@dataclass
class Idle:
    """The idle baseline: equal segments, each one reading of the meter with the model loaded and idle."""

    segment_j: list[float]
    segment_s: list[float]

    @functools.cached_property
    def segment_w(self) -> list[float]:
        return [j / s for j, s in zip(self.segment_j, self.segment_s)]

    @functools.cached_property
    def power_w(self) -> float:
        return statistics.fmean(self.segment_w)

    @property
    def seconds(self) -> float:
        return sum(self.segment_s)

    @functools.cached_property
    def var_w(self) -> float:
        """Variance of power_w, from the segments' spread (segments taken as independent)."""
        k = len(self.segment_j)
        return statistics.variance(self.segment_w) / k if k > 1 else 0.0

    @property
    def df(self) -> float:
        return len(self.segment_j) - 1 if len(self.segment_j) > 1 else math.inf


@dataclass
class Measurement:
    """One phase's warm-up and windows (a classify run has one phase; generate has prefill and decode)."""

    latencies_ns: list[int]
    window_calls: list[int]
    window_seconds: list[float]
    window_gross_j: list[float]
    idle: Idle
    # Cores' worth of CPU time other processes used during the windows (None off Linux): on a CPU, their
    # work lands in the same package counter and competes for the cores the variant runs on.
    other_cpu_cores: float | None = None
    phase: str = ""  # "" for a single phase; prefill | decode
    warmup_calls: int = 0
    warmup_seconds: float = 0.0
    warmup_settled: bool = True
    target: float | None = None  # the relative half-width asked for
    stop: str = "target"  # why windows stopped being added: target | time cap | idle baseline
    seconds: float = 0.0  # warm-up and windows, what the time cap bounds

    @property
    def idle_power_w(self) -> float:
        return self.idle.power_w

    def net_per_call(self) -> list[float]:
        """Each window's joules above the idle baseline, per call."""
        p = self.idle.power_w
        return [(g - p * s) / n for g, s, n in zip(self.window_gross_j, self.window_seconds, self.window_calls)]

    def cv(self) -> float | None:
        """Coefficient of variation of the windows' net joules per call (None with one window)."""
        net = self.net_per_call()
        mean = statistics.fmean(net)
        return statistics.stdev(net) / abs(mean) if len(net) > 1 and mean else None

    def figure(self) -> Figure:
        """Net joules per call: the mean of the windows and what its uncertainty is made of."""
        seconds_per_call = statistics.fmean(s / n for s, n in zip(self.window_seconds, self.window_calls))
        return window_figure(self.net_per_call(), idle_coef=-seconds_per_call)

    def interval(self, confidence: float) -> Interval | None:
        return interval(self.figure(), self.idle, confidence)


# --- statistics (docs/protocol.md §3) ---


@dataclass(frozen=True)
class Figure:
    """A mean of per-window values and the parts of its error: the windows' scatter and the idle baseline's."""

    mean: float
    window_var: float  # variance of the mean from the windows' scatter, autocorrelation-corrected; nan: one window
    window_df: float
    idle_coef: float  # how the mean moves per watt of error in the idle power: minus seconds per unit
    lag1: float | None = None  # the autocorrelation the correction used

    def scaled(self, c: float) -> Figure:
        return Figure(c * self.mean, c * c * self.window_var, self.window_df, c * self.idle_coef, self.lag1)


def lag1(values: np.ndarray) -> float:
    """Lag-1 autocorrelation of the windows, corrected for its small-sample bias (about -(1 + 4r)/n) and
    clipped to [0, MAX_LAG1]: negative estimates are noise here, since drift only correlates neighbours."""
    n = len(values)
    d = values - values.mean()
    denominator = float((d * d).sum())
    if n < 3 or denominator == 0:
        return 0.0
    r = float((d[1:] * d[:-1]).sum()) / denominator
    return min(MAX_LAG1, max(0.0, r + (1 + 4 * r) / n))


def window_figure(values: Sequence[float], idle_coef: float = 0.0) -> Figure:
    """The mean of windows; its variance is s²/n inflated by (1 + r)/(1 - r), the AR(1) factor for the mean
    of correlated values, with n(1 - r)/(1 + r) - 1 degrees of freedom (the effective number of windows), at
    least MIN_DF: below it Student's t explodes (12.7 at 1) on runs the interval covers anyway (§3)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return Figure(float(x.mean()), math.nan, 0.0, idle_coef)
    r = lag1(x)
    inflation = (1 + r) / (1 - r)
    df = min(n - 1.0, max(MIN_DF, n / inflation - 1))
    return Figure(float(x.mean()), float(x.var(ddof=1)) * inflation / n, df, idle_coef, r)


def add(*figures: Figure) -> Figure:
    """The sum of figures whose windows are independent but share one idle baseline (generate's phases)."""
    var = sum(f.window_var for f in figures)
    parts = sum(f.window_var ** 2 / f.window_df for f in figures if f.window_var)
    return Figure(sum(f.mean for f in figures), var, var * var / parts if parts else math.inf,
                  sum(f.idle_coef for f in figures))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float  # the coverage the method states (docs/protocol.md §3 reports what simulation finds)
    idle_share: float  # share of the variance that comes from the idle baseline

    @property
    def relative_half_width(self) -> float:
        middle = (self.low + self.high) / 2
        return (self.high - self.low) / 2 / middle if middle > 0 else math.inf


def interval(figure: Figure, idle: Idle, confidence: float) -> Interval | None:
    """Student-t interval of the figure; the idle baseline's variance is added to the windows', with
    Welch-Satterthwaite degrees of freedom. None with a single window (no scatter to estimate)."""
    if math.isnan(figure.window_var):
        return None
    a, b = figure.window_var, figure.idle_coef ** 2 * idle.var_w
    if a + b == 0:
        return Interval(figure.mean, figure.mean, confidence, 0.0)
    df = (a + b) ** 2 / ((a * a / figure.window_df if a else 0.0) + (b * b / idle.df if b else 0.0))
    half = float(special.stdtrit(df, (1 + confidence) / 2)) * math.sqrt(a + b)
    return Interval(figure.mean - half, figure.mean + half, confidence, b / (a + b))


def idle_limited(figure: Figure, idle: Idle, confidence: float, target: float) -> bool:
    """True when the idle baseline's error alone makes the interval wider than the target: more windows
    cannot help."""
    half = float(special.stdtrit(idle.df, (1 + confidence) / 2)) * abs(figure.idle_coef) * math.sqrt(idle.var_w)
    return half > target * abs(figure.mean)


# --- the protocol (docs/protocol.md §2) ---


def idle_baseline(meter: EnergyMeter, sync: Callable[[], None], profile: ProfileConfig, on_cuda: bool,
                  clock: Clock = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> Idle:
    """Power with the model loaded and idle, in this process, before any warm-up, after a rest: a CPU's power
    follows its load within milliseconds once the preparation's threads are done; a GPU's decays for seconds
    after a burst."""
    sync()
    sleep(profile.settle_s_cuda if on_cuda else profile.settle_s)
    segment = (profile.idle_s_cuda if on_cuda else profile.idle_s) / profile.idle_segments
    joules, seconds = [], []
    for k in range(profile.idle_segments):
        progress.phase(f"idle baseline: segment {k + 1} of {profile.idle_segments}")  # between segments
        meter.start()
        t0 = clock()
        sleep(segment)
        joules.append(meter.stop())
        seconds.append(clock() - t0)
    return Idle(joules, seconds)


def cpu_busy_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process) from /proc/stat and os.times()."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    own = os.times()
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


@dataclass
class _Calls:
    """Calls in units of `multiple` (a decode window is whole requests), each latency including the sync."""

    call: Callable[[], Any]
    sync: Callable[[], None]
    multiple: int
    clock: Clock
    latencies_ns: list[int] = field(default_factory=list)

    def unit(self) -> float:
        """`multiple` calls; their seconds."""
        start = now = self.clock()
        for _ in range(self.multiple):
            t0 = now
            self.call()
            self.sync()
            now = self.clock()
            self.latencies_ns.append(round((now - t0) * 1e9))
        return now - start


def _warm_up(calls: _Calls, profile: ProfileConfig, cap_s: float) -> tuple[int, float, bool]:
    """Units until the median of the last warmup_group is within warmup_tolerance of the group's before, past
    both floors; stops unsettled at the cap. (calls made, seconds, settled)."""
    g, units = profile.warmup_group, []
    start = calls.clock()
    while True:
        units.append(calls.unit())
        made, elapsed = len(units) * calls.multiple, calls.clock() - start
        floors = made >= profile.warmup_calls and elapsed >= profile.warmup_s
        if floors and len(units) >= 2 * g:
            before, last = statistics.median(units[-2 * g:-g]), statistics.median(units[-g:])
            if before > 0 and abs(last / before - 1) <= profile.warmup_tolerance:
                return made, elapsed, True
        if elapsed >= cap_s and made >= profile.warmup_calls:
            return made, elapsed, False


def _window(calls: _Calls, min_s: float, min_calls: int) -> tuple[int, float]:
    """Units until both floors are met: (calls, seconds)."""
    start = calls.clock()
    made = 0
    while made < min_calls or calls.clock() - start < min_s:
        calls.unit()
        made += calls.multiple
    return made, calls.clock() - start


def measure(call: Callable[[], Any], sync: Callable[[], None], meter: EnergyMeter, profile: ProfileConfig,
            min_window_s: float, idle: Idle, *, multiple: int = 1, max_seconds: float | None = None,
            phase: str = "", clock: Clock = time.perf_counter) -> Measurement:
    """Warm-up, then windows until the interval of net joules per call is profile.target_ci tight.

    At least profile.min_windows windows, each at least min_window_s long and min_calls calls, in whole units
    of `multiple` calls. It stops adding windows at the target, when the idle baseline alone is too uncertain
    to reach it, or when warm-up and windows have taken max_seconds (profile.max_seconds by default) or the
    next window would pass it; the first min_windows are measured regardless.
    """
    cap = profile.max_seconds if max_seconds is None else max_seconds
    calls = _Calls(call, sync, multiple, clock)
    name = f"{phase} " if phase else ""
    progress.phase(f"{name}warm-up")
    start = clock()
    warm_calls, warm_s, settled = _warm_up(calls, profile, min(profile.warmup_max_s, cap))
    progress.phase(f"{name}windows until ±{100 * profile.target_ci:.3g}% or the {cap:.3g} s cap")
    calls.latencies_ns.clear()
    window_calls, window_seconds, gross = [], [], []
    stop = "target"
    busy_before, t0 = cpu_busy_seconds(), clock()
    while True:
        sync()
        meter.start()
        n, s = _window(calls, min_window_s, -(-profile.min_calls // multiple) * multiple)
        gross.append(meter.stop())
        window_calls.append(n)
        window_seconds.append(s)
        m = Measurement(calls.latencies_ns, window_calls, window_seconds, gross, idle)
        found = m.interval(profile.confidence)
        # Between windows, never inside one: the next window starts after the display is done.
        progress.window(phase, len(gross), found.relative_half_width if found else None, profile.target_ci,
                        clock() - start, cap)
        if len(gross) < profile.min_windows:
            continue
        if found is not None and found.relative_half_width <= profile.target_ci:
            break
        if idle_limited(m.figure(), idle, profile.confidence, profile.target_ci):
            stop = "idle baseline"
            break
        if clock() - start + statistics.fmean(window_seconds) > cap:
            stop = "time cap"
            break
    busy_after, elapsed = cpu_busy_seconds(), clock() - t0
    other = None
    if busy_before and busy_after and elapsed > 0:
        other = max(0.0, (busy_after[0] - busy_before[0]) - (busy_after[1] - busy_before[1])) / elapsed
    return Measurement(calls.latencies_ns, window_calls, window_seconds, gross, idle, other, phase, warm_calls,
                       warm_s, settled, profile.target_ci, stop, clock() - start)


# --- the row's columns ---


def interval_columns(name: str, figure: Figure, idle: Idle, confidence: float) -> dict[str, Any]:
    """`name`, `name_ci_low`, `name_ci_high` of a figure."""
    found = interval(figure, idle, confidence)
    return {name: figure.mean, f"{name}_ci_low": found.low if found else None,
            f"{name}_ci_high": found.high if found else None}


def summarise(m: Measurement, samples_per_call: int, tokens_per_call: int, profile: ProfileConfig
              ) -> dict[str, Any]:
    """The row's speed and energy columns of one phase (docs/protocol.md §3, §4)."""
    latencies_ms = np.asarray(m.latencies_ns, dtype=float) / 1e6
    total_s = sum(m.window_seconds)
    total_calls = sum(m.window_calls)
    net = m.net_per_call()
    per_call = m.figure()
    found = interval(per_call, m.idle, profile.confidence)
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
    return {
        "latency_ms_p50": float(p50),
        "latency_ms_p90": float(p90),
        "latency_ms_p99": float(p99),
        "throughput_samples_s": total_calls * samples_per_call / total_s,
        "throughput_tokens_s": total_calls * tokens_per_call / total_s,
        **interval_columns("energy_j_per_inference", per_call.scaled(1 / samples_per_call), m.idle,
                           profile.confidence),
        "energy_j_per_token": per_call.mean / tokens_per_call,
        "energy_ci_method": CI_METHOD if found else None,
        "energy_ci_level": found.level if found else None,
        "energy_ci_lag1": per_call.lag1,
        "energy_ci_idle_share": found.idle_share if found else None,
        "ci_target": m.target,
        "ci_target_met": m.stop == "target",
        "ci_stop": m.stop,
        "energy_gross_j": sum(m.window_gross_j),
        "energy_net_j": sum(j * n for j, n in zip(net, m.window_calls)),
        "idle_power_w": m.idle_power_w,
        "idle_segment_w": m.idle.segment_w,
        "idle_seconds": m.idle.seconds,
        "avg_power_w": sum(m.window_gross_j) / total_s,
        "windows": len(m.window_calls),
        "energy_cv": m.cv(),
        "calls": total_calls,
        "measured_seconds": total_s,
        "warmup_calls": m.warmup_calls,
        "warmup_seconds": m.warmup_seconds,
        "warmup_settled": m.warmup_settled,
        # Kept so later comparisons (the regression gate) can resample the raw samples.
        "window_j_per_inference": [j / samples_per_call for j in net],
        "window_calls": list(m.window_calls),
        "window_seconds": list(m.window_seconds),
        "latency_ms_samples": latencies_ms.round(4).tolist(),
    }
