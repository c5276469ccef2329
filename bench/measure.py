"""The measurement protocol (docs/protocol.md §2, §3): warm-up, idle baseline, windows, statistics."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.config import ProfileConfig
from bench.meters import EnergyMeter


@dataclass
class Measurement:
    latencies_ns: list[int]
    window_calls: list[int]
    window_seconds: list[float]
    window_gross_j: list[float]
    idle_power_w: float
    idle_seconds: float
    # Cores' worth of CPU time other processes used during the windows (None off Linux): on a CPU, their
    # work lands in the same package counter and competes for the cores the variant runs on.
    other_cpu_cores: float | None = None


def _cpu_busy_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process) from /proc/stat and os.times()."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    own = os.times()
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _loop(call: Callable[[], Any], sync: Callable[[], None], min_s: float, min_calls: int,
          latencies: list[int]) -> tuple[int, float]:
    """Calls until both floors are met; each latency includes the device sync."""
    clock = time.perf_counter_ns
    min_ns = int(min_s * 1e9)
    start = now = clock()
    calls = 0
    while calls < min_calls or now - start < min_ns:
        t0 = clock()
        call()
        sync()
        now = clock()
        latencies.append(now - t0)
        calls += 1
    return calls, (now - start) / 1e9


def measure(call: Callable[[], Any], sync: Callable[[], None], meter: EnergyMeter, profile: ProfileConfig,
            min_window_s: float) -> Measurement:
    _loop(call, sync, profile.warmup_s, profile.warmup_calls, [])

    # Idle with the model loaded, in this process, so net energy is what the work added.
    sync()
    meter.start()
    t0 = time.perf_counter()
    time.sleep(profile.idle_s)
    idle_j = meter.stop()
    idle_seconds = time.perf_counter() - t0

    latencies: list[int] = []
    calls, seconds, gross = [], [], []
    busy_before, t0 = _cpu_busy_seconds(), time.perf_counter()
    for _ in range(profile.windows):
        sync()
        meter.start()
        n, s = _loop(call, sync, min_window_s, profile.min_calls, latencies)
        gross.append(meter.stop())
        calls.append(n)
        seconds.append(s)
    busy_after, elapsed = _cpu_busy_seconds(), time.perf_counter() - t0
    other = None
    if busy_before and busy_after:
        other = max(0.0, (busy_after[0] - busy_before[0]) - (busy_after[1] - busy_before[1])) / elapsed
    return Measurement(latencies, calls, seconds, gross, idle_j / idle_seconds, idle_seconds, other)


def bootstrap_median_ci(values: list[float], confidence: float, resamples: int, seed: int = 0
                        ) -> tuple[float, float]:
    """Percentile bootstrap interval of the median."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(data, size=(resamples, len(data)), replace=True), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def combine(*parts: Measurement) -> Measurement:
    """Several phases' windows as one measurement (for the validity checks); idle power time-weighted."""
    idle_seconds = sum(p.idle_seconds for p in parts)
    return Measurement(
        latencies_ns=[x for p in parts for x in p.latencies_ns],
        window_calls=[x for p in parts for x in p.window_calls],
        window_seconds=[x for p in parts for x in p.window_seconds],
        window_gross_j=[x for p in parts for x in p.window_gross_j],
        idle_power_w=sum(p.idle_power_w * p.idle_seconds for p in parts) / idle_seconds,
        idle_seconds=idle_seconds,
        # The most contended phase: contention in either one distorts the request's figures.
        other_cpu_cores=max((p.other_cpu_cores for p in parts if p.other_cpu_cores is not None), default=None),
    )


def median_ci_cv(per_window: list[float], profile: ProfileConfig, seed: int = 0
                 ) -> tuple[float, float, float, float | None]:
    """Median of per-window values, its bootstrap interval, and the coefficient of variation."""
    ci_low, ci_high = bootstrap_median_ci(per_window, profile.confidence, profile.bootstrap_resamples, seed)
    mean = statistics.fmean(per_window)
    cv = statistics.stdev(per_window) / abs(mean) if len(per_window) > 1 and mean else None
    return statistics.median(per_window), ci_low, ci_high, cv


def summarise(m: Measurement, samples_per_call: int, tokens_per_call: int, profile: ProfileConfig,
              seed: int = 0) -> dict[str, Any]:
    """The row's speed and energy columns (docs/protocol.md §3, §4)."""
    latencies_ms = np.asarray(m.latencies_ns, dtype=float) / 1e6
    total_s = sum(m.window_seconds)
    total_calls = sum(m.window_calls)
    net = [g - m.idle_power_w * s for g, s in zip(m.window_gross_j, m.window_seconds)]
    per_inference = [j / (n * samples_per_call) for j, n in zip(net, m.window_calls)]
    per_token = [j / (n * tokens_per_call) for j, n in zip(net, m.window_calls)]
    median, ci_low, ci_high, cv = median_ci_cv(per_inference, profile, seed)
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
    return {
        "latency_ms_p50": float(p50),
        "latency_ms_p90": float(p90),
        "latency_ms_p99": float(p99),
        "throughput_samples_s": total_calls * samples_per_call / total_s,
        "throughput_tokens_s": total_calls * tokens_per_call / total_s,
        "energy_j_per_inference": median,
        "energy_j_per_inference_ci_low": ci_low,
        "energy_j_per_inference_ci_high": ci_high,
        "energy_j_per_token": statistics.median(per_token),
        "energy_gross_j": sum(m.window_gross_j),
        "energy_net_j": sum(net),
        "idle_power_w": m.idle_power_w,
        "avg_power_w": sum(m.window_gross_j) / total_s,
        "windows": len(m.window_calls),
        "energy_cv": cv,
        "calls": total_calls,
        "measured_seconds": total_s,
        # Kept so later comparisons (the regression gate) can bootstrap from the raw samples.
        "window_j_per_inference": per_inference,
        "window_calls": list(m.window_calls),
        "window_seconds": list(m.window_seconds),
        "latency_ms_samples": latencies_ms.round(4).tolist(),
    }
