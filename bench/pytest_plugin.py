"""pytest plugin (registered by the package): `energy_benchmark`, pytest-benchmark's `benchmark` plus joules.

    def test_encoder_energy(energy_benchmark):
        energy_benchmark(model, inputs)          # like benchmark(model, inputs)

After pytest-benchmark has timed the callable, the fixture measures it again under the harness's own meter
and protocol (idle baseline, warm-up, windows until the interval is tight; profile `quick` unless
`energy_profile=` says otherwise) and adds joules per call, its interval (method, level, whether it reached
the profile's target) and its source to `extra_info`, so `pytest --benchmark-json` carries energy next to
time. Energy is measured in its own windows, after the timing, so neither disturbs the other.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import pytest


def measure_energy(call: Callable[[], Any], device: str = "cpu", profile_name: str = "quick") -> dict[str, Any]:
    """Joules per call of `call` on `device`, with the harness's meter and protocol."""
    import torch

    from bench.config import MeterConfig, load_profile, resolve_device
    from bench.measure import idle_baseline, measure, summarise
    from bench.meters import open_meter

    profile = load_profile(profile_name)
    device = resolve_device(device)
    on_cuda = device.startswith("cuda")
    sync = functools.partial(torch.cuda.synchronize, device) if on_cuda else (lambda: None)
    meter = open_meter(MeterConfig(), device, cores_in_use=torch.get_num_threads())
    try:
        idle = idle_baseline(meter, sync, profile, on_cuda)
        m = measure(call, sync, meter, profile, profile.min_window_s_cuda if on_cuda else profile.min_window_s, idle)
    finally:
        meter.close()
    stats = summarise(m, samples_per_call=1, tokens_per_call=1, profile=profile)
    return {
        "energy_j_per_call": stats["energy_j_per_inference"],
        "energy_j_per_call_ci_low": stats["energy_j_per_inference_ci_low"],
        "energy_j_per_call_ci_high": stats["energy_j_per_inference_ci_high"],
        "energy_ci_method": stats["energy_ci_method"],
        "energy_ci_level": stats["energy_ci_level"],
        "energy_ci_target": stats["ci_target"],
        "energy_ci_target_met": stats["ci_target_met"],
        "energy_source": meter.source,
        "energy_measured": meter.measured,
        "energy_idle_power_w": stats["idle_power_w"],
        "energy_windows": stats["windows"],
        "energy_cv": stats["energy_cv"],
        "energy_profile": profile.name,
        "energy_device": device,
    }


@pytest.fixture
def energy_benchmark(benchmark: Any) -> Callable[..., Any]:
    def run(fn: Callable[..., Any], *args: Any, energy_device: str = "cpu", energy_profile: str = "quick",
            **kwargs: Any) -> Any:
        result = benchmark(fn, *args, **kwargs)
        if not benchmark.disabled:  # --benchmark-disable: the test runs once, for correctness only
            benchmark.extra_info.update(measure_energy(functools.partial(fn, *args, **kwargs), energy_device,
                                                       energy_profile))
        return result

    return run
