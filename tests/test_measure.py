import pytest

from bench.config import ProfileConfig
from bench.measure import Measurement, bootstrap_median_ci, combine, measure, summarise

QUICK = ProfileConfig(name="test", warmup_calls=2, warmup_s=0.0, idle_s=0.05, windows=4, min_window_s=0.02,
                      min_calls=3, bootstrap_resamples=500)


class CountingMeter:
    """A meter whose joules are 10 W times wall time: the protocol's arithmetic must recover it."""

    source, measured = "test", True

    def __init__(self):
        import time

        self._clock = time.perf_counter
        self.windows = 0

    def start(self):
        self._t0 = self._clock()

    def stop(self):
        self.windows += 1
        return 10.0 * (self._clock() - self._t0)

    def params(self):
        return {}

    def close(self):
        pass


def test_protocol_runs_warmup_idle_and_windows_with_both_floors():
    calls = []
    meter = CountingMeter()
    m = measure(lambda: calls.append(1), lambda: None, meter, QUICK, QUICK.min_window_s)
    assert meter.windows == 1 + QUICK.windows  # idle baseline, then the windows
    assert len(m.window_calls) == QUICK.windows
    assert all(n >= QUICK.min_calls for n in m.window_calls)
    assert all(s >= QUICK.min_window_s for s in m.window_seconds)
    assert len(m.latencies_ns) == sum(m.window_calls)
    assert len(calls) >= sum(m.window_calls) + QUICK.warmup_calls
    assert m.idle_power_w == pytest.approx(10.0, rel=0.05)


def test_summary_nets_out_idle_and_attributes_per_sample_and_token():
    m = Measurement(latencies_ns=[10_000_000] * 40, window_calls=[10] * 4, window_seconds=[2.0] * 4,
                    window_gross_j=[30.0, 32.0, 28.0, 30.0], idle_power_w=5.0, idle_seconds=5.0)
    row = summarise(m, samples_per_call=8, tokens_per_call=8 * 128, profile=QUICK)
    per_inference = [(g - 10.0) / 80 for g in (30.0, 32.0, 28.0, 30.0)]
    assert row["energy_gross_j"] == pytest.approx(120.0)
    assert row["energy_net_j"] == pytest.approx(80.0)
    assert row["energy_j_per_inference"] == pytest.approx(0.25)
    assert row["energy_j_per_token"] == pytest.approx(0.25 / 128)
    assert row["energy_j_per_inference_ci_low"] <= 0.25 <= row["energy_j_per_inference_ci_high"]
    assert min(per_inference) <= row["energy_j_per_inference_ci_low"]
    assert row["avg_power_w"] == pytest.approx(15.0)
    assert row["throughput_samples_s"] == pytest.approx(40.0)
    assert row["latency_ms_p50"] == pytest.approx(10.0)
    assert row["energy_cv"] > 0 and row["windows"] == 4


def test_bootstrap_interval_is_seeded_and_narrows_with_agreeing_windows():
    noisy = [1.0, 1.5, 0.7, 1.2, 0.9]
    assert bootstrap_median_ci(noisy, 0.95, 1000, seed=1) == bootstrap_median_ci(noisy, 0.95, 1000, seed=1)
    low, high = bootstrap_median_ci(noisy, 0.95, 1000)
    tight_low, tight_high = bootstrap_median_ci([1.0, 1.01, 0.99, 1.0, 1.0], 0.95, 1000)
    assert high - low > tight_high - tight_low


def test_combined_phases_keep_the_worst_contention_and_time_weighted_idle():
    def phase(idle_w, idle_s, other):
        return Measurement([1], [1], [1.0], [5.0], idle_w, idle_s, other)

    both = combine(phase(10.0, 1.0, 0.1), phase(20.0, 3.0, 0.5))
    assert both.other_cpu_cores == 0.5 and both.idle_power_w == pytest.approx(17.5)
    assert combine(phase(10.0, 1.0, None), phase(10.0, 1.0, 0.3)).other_cpu_cores == 0.3
    assert combine(phase(10.0, 1.0, None)).other_cpu_cores is None
