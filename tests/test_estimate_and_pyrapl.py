import types

import pytest

from bench.meters.estimate import EstimateMeter
from bench.meters.pyrapl import PyRaplMeter


def test_estimate_follows_the_documented_power_model_and_says_it_is_an_estimate():
    clock = iter([0.0, 2.0])
    cpu = iter([10.0, 12.0])  # 2 CPU-seconds over 2 s on 2 cores: utilisation 0.5
    meter = EstimateMeter(tdp_w=200, socket_cores=32, idle_fraction=0.3, cores_in_use=2,
                          clock=lambda: next(clock), cpu_time=lambda: next(cpu))
    meter.start()
    p_max, p_idle = 200 * 2 / 32, 0.3 * 200 * 2 / 32
    assert meter.stop() == pytest.approx((p_idle + (p_max - p_idle) * 0.5) * 2.0)
    assert meter.source == "estimate" and meter.measured is False
    assert meter.params()["p_max_w"] == pytest.approx(p_max) and "model" in meter.params()


def test_estimate_utilisation_is_clamped():
    clock = iter([0.0, 1.0])
    cpu = iter([0.0, 5.0])  # more CPU time than cores: clamp to full load
    meter = EstimateMeter(100, 4, 0.5, 2, clock=lambda: next(clock), cpu_time=lambda: next(cpu))
    meter.start()
    assert meter.stop() == pytest.approx(50.0)


def test_pyrapl_adapter_sums_sockets_in_joules():
    class Measurement:
        def __init__(self, label):
            self.result = None

        def begin(self):
            pass

        def end(self):
            self.result = types.SimpleNamespace(pkg=[1_500_000.0, 500_000.0], dram=[1.0])

    fake = types.SimpleNamespace(setup=lambda: None, Measurement=Measurement)
    meter = PyRaplMeter(pyrapl=fake)
    meter.start()
    assert meter.stop() == pytest.approx(2.0)
    assert meter.source == "pyrapl" and meter.params() == {"wraparound_corrected": False}
