"""The protocol (bench/measure.py) on a fake clock and fake meters: what it measures, when it stops, what its
interval covers. Nothing here depends on how fast this machine is."""

import math

import numpy as np
import pytest

from bench.config import ConfigError, ProfileConfig, validate_profile
from bench.measure import CI_METHOD, Idle, Measurement, add, idle_baseline, interval, measure, summarise, window_figure

TEST = ProfileConfig(name="test", idle_s=0.5, idle_segments=5, warmup_calls=2, warmup_s=0.0, warmup_group=2,
                     warmup_max_s=10.0, min_window_s=1.0, min_calls=1, min_windows=4, target_ci=0.02,
                     max_seconds=60.0)


class CountingMeter:
    """A meter whose joules are 10 W times wall time: the protocol's arithmetic must recover it."""

    source, measured, rated_power_w = "test", True, None

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


class Clock:
    """Time that passes only when the code under test calls, sleeps or the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeMeter:
    """Joules = idle_w x seconds + j_per_call x calls since start, plus `noise(window)` on working windows;
    idle segments get `idle_noise()` watts. Records what it saw, in order."""

    source, measured, rated_power_w = "fake", True, None

    def __init__(self, clock, idle_w=10.0, j_per_call=5.0, noise=lambda i: 0.0, idle_noise=lambda: 0.0):
        self.clock, self.idle_w, self.j_per_call = clock, idle_w, j_per_call
        self.noise, self.idle_noise = noise, idle_noise
        self.calls, self.events, self.working_windows = 0, [], 0

    def call(self, seconds):
        """A model call that takes `seconds`."""
        self.clock.now += seconds
        self.calls += 1
        self.events.append("call")

    def start(self):
        self.t0, self.c0 = self.clock(), self.calls
        self.events.append(("start", self.calls))

    def stop(self):
        s, n = self.clock() - self.t0, self.calls - self.c0
        self.events.append("stop")
        if n == 0:
            return (self.idle_w + self.idle_noise()) * s
        self.working_windows += 1
        return self.idle_w * s + n * self.j_per_call + self.noise(self.working_windows - 1)


def run(meter, clock, latency=0.1, profile=TEST, **kwargs):
    idle = idle_baseline(meter, lambda: None, profile, False, clock, clock.sleep)
    return measure(lambda: meter.call(latency), lambda: None, meter, profile, profile.min_window_s, idle,
                   clock=clock, **kwargs)


def test_idle_comes_first_in_segments_then_the_warm_up_then_the_windows():
    clock = Clock()
    meter = FakeMeter(clock)
    m = run(meter, clock)
    assert meter.events[:2 * TEST.idle_segments] == [("start", 0), "stop"] * TEST.idle_segments  # no call yet
    assert m.idle.power_w == pytest.approx(10.0) and m.idle.seconds == pytest.approx(TEST.idle_s)
    assert len(m.idle.segment_w) == TEST.idle_segments
    assert m.warmup_calls >= TEST.warmup_calls and m.warmup_settled
    # net joules per call recovered exactly, so the interval is a point and the minimum number of windows does
    assert m.stop == "target" and len(m.window_calls) == TEST.min_windows
    assert m.net_per_call() == pytest.approx([5.0] * TEST.min_windows)
    assert len(m.latencies_ns) == sum(m.window_calls)  # warm-up calls are not in the samples


def test_a_window_is_as_few_calls_as_its_minimum_duration_takes():
    clock = Clock()
    m = run(FakeMeter(clock), clock, latency=5.0)  # one call outlasts min_window_s: no 10-call floor
    assert m.window_calls == [1] * TEST.min_windows
    m = run(FakeMeter(clock), clock, latency=0.3)
    assert set(m.window_calls) == {4}  # 4 x 0.3 s is the first count reaching 1 s
    assert all(s >= TEST.min_window_s for s in m.window_seconds)


def test_noisy_windows_add_windows_until_the_time_cap_and_say_so():
    clock = Clock()
    rng = np.random.default_rng(0)
    meter = FakeMeter(clock, noise=lambda i: 2.0 * rng.standard_normal())  # 40% of a window's net joules
    m = run(meter, clock, latency=1.0)
    assert m.stop == "time cap" and len(m.window_calls) > TEST.min_windows
    assert m.seconds <= TEST.max_seconds
    row = summarise(m, 1, 1, TEST)
    assert not row["ci_target_met"] and row["ci_stop"] == "time cap" and row["ci_target"] == 0.02
    assert row["energy_ci_method"] == CI_METHOD and row["energy_ci_level"] == 0.95


def test_moderate_noise_stops_at_the_target_once_the_interval_is_tight_enough():
    clock = Clock()
    rng = np.random.default_rng(1)
    meter = FakeMeter(clock, noise=lambda i: 0.2 * rng.standard_normal())  # 4% of a window's net joules
    m = run(meter, clock, latency=1.0)
    found = m.interval(TEST.confidence)
    assert m.stop == "target" and len(m.window_calls) > TEST.min_windows
    assert found.relative_half_width <= TEST.target_ci
    shorter = Measurement(m.latencies_ns, m.window_calls[:-1], m.window_seconds[:-1], m.window_gross_j[:-1], m.idle)
    assert shorter.interval(TEST.confidence).relative_half_width > TEST.target_ci  # it stopped at the first chance


def test_an_uncertain_idle_baseline_stops_the_run_since_more_windows_cannot_help():
    clock = Clock()
    rng = np.random.default_rng(2)
    meter = FakeMeter(clock, j_per_call=0.5, idle_noise=lambda: 2.0 * rng.standard_normal())
    m = run(meter, clock, latency=1.0)
    assert m.stop == "idle baseline" and len(m.window_calls) == TEST.min_windows
    assert m.interval(TEST.confidence).idle_share > 0.5


def test_warm_up_ends_when_latency_settles_or_at_its_cap():
    clock = Clock()
    meter = FakeMeter(clock)
    slow_start = iter([1.0, 0.5, 0.3, 0.2] + [0.1] * 1000)
    idle = idle_baseline(meter, lambda: None, TEST, False, clock, clock.sleep)
    m = measure(lambda: meter.call(next(slow_start)), lambda: None, meter, TEST, 1.0, idle, clock=clock)
    assert m.warmup_settled and m.warmup_calls == 8  # two groups of two at 0.1 s after the four slow calls
    slowing = (0.1 * 1.05 ** i for i in range(1000))  # each group 10% slower than the one before
    m = measure(lambda: meter.call(next(slowing)), lambda: None, meter, TEST, 1.0, idle, clock=clock)
    assert not m.warmup_settled and m.warmup_seconds == pytest.approx(TEST.warmup_max_s, abs=0.2)


def test_units_of_several_calls_start_every_window_at_a_unit_boundary():
    clock = Clock()
    meter = FakeMeter(clock)
    m = run(meter, clock, latency=0.15, multiple=7)
    window_starts = [calls for e in meter.events if isinstance(e, tuple) and (calls := e[1]) > 0]
    assert all(n % 7 == 0 for n in m.window_calls) and all(c % 7 == 0 for c in window_starts)
    assert m.warmup_calls % 7 == 0


def test_summary_nets_out_idle_and_attributes_per_sample_and_token():
    idle = Idle([5.0] * 5, [1.0] * 5)
    m = Measurement(latencies_ns=[10_000_000] * 40, window_calls=[10] * 4, window_seconds=[2.0] * 4,
                    window_gross_j=[30.0, 32.0, 28.0, 30.0], idle=idle, target=0.02, stop="time cap")
    row = summarise(m, samples_per_call=8, tokens_per_call=8 * 128, profile=TEST)
    assert row["energy_gross_j"] == pytest.approx(120.0)
    assert row["energy_net_j"] == pytest.approx(80.0)
    assert row["energy_j_per_inference"] == pytest.approx(0.25)  # the mean of 20/80, 22/80, 18/80, 20/80
    assert row["energy_j_per_token"] == pytest.approx(0.25 / 128)
    assert row["energy_j_per_inference_ci_low"] < 0.25 < row["energy_j_per_inference_ci_high"]
    assert row["idle_power_w"] == 5.0 and row["energy_ci_idle_share"] == 0.0  # the segments agree
    assert row["avg_power_w"] == pytest.approx(15.0)
    assert row["throughput_samples_s"] == pytest.approx(40.0)
    assert row["latency_ms_p50"] == pytest.approx(10.0)
    assert row["energy_cv"] > 0 and row["windows"] == 4 and not row["ci_target_met"]


def test_the_interval_is_a_t_interval_and_widens_with_autocorrelation_and_idle_error():
    values = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0]
    steady = Idle([10.0] * 5, [1.0] * 5)
    plain = interval(window_figure([1.0, 1.02, 1.0, 1.02, 1.0, 1.02]), steady, 0.95)  # alternating: r < 0 -> 0
    s = np.std([1.0, 1.02] * 3, ddof=1)
    assert plain.high - 1.01 == pytest.approx(2.5706 * s / math.sqrt(6), rel=1e-3)  # t(0.975, 5 df)
    drifting = interval(window_figure(sorted(values)), steady, 0.95)
    shuffled = interval(window_figure(values), steady, 0.95)
    assert window_figure(sorted(values)).lag1 > 0.5 and drifting.high - drifting.low > shuffled.high - shuffled.low
    noisy_idle = Idle([9.0, 11.0, 10.0, 9.5, 10.5], [1.0] * 5)
    with_idle = interval(window_figure(values, idle_coef=-0.01), noisy_idle, 0.95)
    assert with_idle.high - with_idle.low > shuffled.high - shuffled.low and 0 < with_idle.idle_share < 1
    assert interval(window_figure([1.0]), steady, 0.95) is None  # one window: no scatter, no interval


def test_phases_sharing_an_idle_baseline_count_its_error_once_with_both_weights():
    idle = Idle([9.0, 11.0, 10.0], [1.0] * 3)
    a, b = window_figure([1.0, 1.0, 1.0], idle_coef=-0.1), window_figure([2.0, 2.0, 2.0], idle_coef=-0.3)
    both = interval(add(a, b), idle, 0.95)
    alone = interval(a, idle, 0.95)
    assert both.low + both.high == pytest.approx(6.0)
    assert (both.high - both.low) == pytest.approx(4 * (alone.high - alone.low))  # coefficients add: 0.4 vs 0.1


def ar1(rng, runs, n, rho):
    """AR(1) noise of unit variance, one row per simulated run."""
    e = rng.standard_normal((runs, n))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for i in range(1, n):
        x[:, i] = rho * x[:, i - 1] + math.sqrt(1 - rho * rho) * e[:, i]
    return x


@pytest.mark.parametrize("rho", [0.0, 0.3])
@pytest.mark.parametrize("n", [5, 10, 20])
def test_the_interval_covers_as_often_as_it_states_with_autocorrelated_windows(rho, n):
    """2,000 simulated runs: n windows of net joules per call, AR(1) noise between windows, and an idle baseline
    of five noisy segments whose error shifts every window alike. The stated level must hold within 3 points."""
    runs, seconds_per_call, idle_w = 2000, 0.1, 10.0
    rng = np.random.default_rng(12 + n)
    segments = idle_w + 0.3 * rng.standard_normal((runs, 5))
    windows = 1.0 + 0.05 * ar1(rng, runs, n, rho) - (segments.mean(1, keepdims=True) - idle_w) * seconds_per_call
    found = [interval(window_figure(w, -seconds_per_call), Idle(list(s), [1.0] * 5), 0.95)
             for w, s in zip(windows, segments)]
    coverage = np.mean([f.low <= 1.0 <= f.high for f in found])
    assert abs(coverage - found[0].level) <= 0.03, coverage


def test_the_adaptive_protocol_covers_as_often_as_it_states_with_autocorrelated_windows():
    """The whole loop, stopping rule included (which favours runs whose windows happen to agree), on 2,000
    simulated runs with lag-1 autocorrelation 0.1 and noise that makes it stop anywhere from 5 to ~15 windows."""
    profile = ProfileConfig(idle_s=5.0, idle_segments=5, warmup_calls=0, warmup_s=0.0, warmup_group=1,
                            warmup_max_s=1.0, min_window_s=0.0, min_windows=5, target_ci=0.02, max_seconds=40.0)
    rng = np.random.default_rng(3)
    hits, level = 0, None
    for _ in range(2000):
        clock = Clock()
        e = ar1(rng, 1, 40, 0.1)[0]
        meter = FakeMeter(clock, j_per_call=10.0, noise=lambda i: 0.2 * e[i],
                          idle_noise=lambda: 0.1 * rng.standard_normal())
        found = run(meter, clock, latency=1.0, profile=profile).interval(0.95)
        hits += found.low <= 10.0 <= found.high
        level = found.level
    assert abs(hits / 2000 - level) <= 0.03, hits / 2000


def test_profiles_refuse_values_that_mean_nothing_naming_the_key_and_the_range():
    with pytest.raises(ConfigError, match=r"profile.min_windows=2 .* >= 3"):
        validate_profile(ProfileConfig(min_windows=2))
    with pytest.raises(ConfigError, match=r"profile.target_ci=0 .* in \(0, 1\)"):
        validate_profile(ProfileConfig(target_ci=0))
    with pytest.raises(ConfigError, match=r"profile.idle_segments=1 "):
        validate_profile(ProfileConfig(idle_segments=1))
    validate_profile(ProfileConfig())


def test_decode_windows_are_whole_requests_after_one_shared_idle_baseline(monkeypatch):
    import torch

    from bench.backends import pytorch
    from bench.scenarios import generate
    from tests.profiles import TINY
    from tests.test_generate import _tiny_llama

    made, steps_at_window_start = [], []

    class Recorded(pytorch.DecodeSteps):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    class Watching(CountingMeter):
        def start(self):
            super().start()
            if made:  # a decode window (or the idle and prefill ones before it)
                steps_at_window_start.append(made[0].step)

    monkeypatch.setattr(pytorch, "DecodeSteps", Recorded)
    new_tokens = 5
    model = pytorch.TorchGeneration(_tiny_llama(), "cpu", torch.randint(1000, 30522, (2, 6)), new_tokens)
    prefill, decode = generate.measure_phases(model, new_tokens, lambda: None, Watching(), TINY, TINY.min_window_s,
                                              on_cuda=False)
    assert prefill.idle is decode.idle  # one baseline, measured before any warm-up
    assert all(n % (new_tokens - 1) == 0 for n in decode.window_calls) and decode.warmup_calls % (new_tokens - 1) == 0
    assert steps_at_window_start == [0] * len(decode.window_calls)  # every window starts a request


def test_a_request_adds_both_phases_and_a_missed_target_names_its_phase():
    from bench.scenarios.generate import columns

    idle = Idle([10.0, 10.2, 9.8], [1.0] * 3)

    def phase(name, gross, calls, stop):
        n = len(gross)
        return Measurement([1_000_000] * calls * n, [calls] * n, [1.0] * n, gross, idle, phase=name, target=0.02,
                           stop=stop)

    prefill = phase("prefill", [30.0, 30.3, 29.7, 30.0], 2, "target")  # 10 J net per call of 2 sequences
    decode = phase("decode", [14.0, 14.1, 13.9, 14.0], 4, "time cap")  # 1 J net per step of 2 sequences
    row = columns(prefill, decode, batch_size=2, prompt_len=8, new_tokens=5, profile=TEST)
    assert row["energy_j_per_input_token"] == pytest.approx(10.0 / 2 / 8)
    assert row["energy_j_per_output_token"] == pytest.approx(1.0 / 2)
    assert row["energy_j_per_request"] == pytest.approx(5.0 + 4 * 0.5)
    assert row["energy_j_per_request_ci_low"] < 7.0 < row["energy_j_per_request_ci_high"]
    assert row["energy_j_per_inference"] == row["energy_j_per_request"]
    assert row["prefill_ci_target_met"] and not row["decode_ci_target_met"]
    assert not row["ci_target_met"] and row["ci_stop"] == "decode: time cap"
    assert row["window_j_per_inference"] == pytest.approx([5.0 + 4 * j for j in row["decode_window_j_per_token"]])
