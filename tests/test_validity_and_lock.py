import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.config import ProfileConfig
from bench.device_lock import device_lock
from bench.measure import Idle, Measurement, idle_baseline, measure
from bench.meters.rapl import RaplMeter
from bench.validity import validity
from tests.test_measure import CountingMeter
from tests.test_rapl import zone


PROFILE = ProfileConfig(max_cv=0.1, max_other_cpu_cores=0.2)


def windows(gross_j, seconds=1.0, idle_w=10.0, phase=""):
    n = len(gross_j)
    return Measurement(latencies_ns=[1] * n, window_calls=[1] * n, window_seconds=[seconds] * n,
                       window_gross_j=list(gross_j), idle=Idle([idle_w] * 5, [1.0] * 5), phase=phase)


def test_clean_run_has_no_reasons():
    flags = validity([windows([50.0, 51.0, 50.5])], rated_power_w=100.0, foreign_processes=0, profile=PROFILE)
    assert flags["invalid_reasons"] is None and not flags["energy_cv_high"] and not flags["energy_ci_includes_zero"]


def test_zero_or_negative_windows_make_the_run_invalid():
    flags = validity([windows([50.0, 0.0, -1.0])], None, None, PROFILE)
    assert flags["windows_nonpositive"] == 2 and "zero or negative energy" in flags["invalid_reasons"]


def test_a_window_not_above_the_idle_baseline_makes_the_run_invalid():
    # 10 W idle: the second window's 9.5 J over 1 s is below it, the others are well above
    flags = validity([windows([50.0, 9.5, 51.0])], 100.0, None, PROFILE)
    assert flags["windows_net_nonpositive"] == 1 and flags["windows_nonpositive"] == 0
    assert "1 window(s) with zero or negative net energy" in flags["invalid_reasons"]


def test_an_energy_interval_reaching_zero_makes_the_run_invalid_naming_the_phase():
    noisy = windows([11.0, 10.2, 14.0, 10.1], phase="prefill")  # every window above idle, the interval not
    steady = windows([50.0, 50.5, 49.5, 50.0], phase="decode")
    flags = validity([noisy, steady], 100.0, None, PROFILE)
    assert flags["windows_net_nonpositive"] == 0 and flags["energy_ci_includes_zero"]
    assert flags["invalid_reasons"].startswith("prefill: the net energy interval [")
    assert "includes zero" in flags["invalid_reasons"] and "decode" not in flags["invalid_reasons"]


def test_each_phase_cv_is_checked_and_the_flag_names_the_noisy_phase():
    prefill, decode = windows([50.0, 50.5, 49.5], phase="prefill"), windows([30.0, 50.0, 40.0], phase="decode")
    flags = validity([prefill, decode], 100.0, None, PROFILE)
    assert flags["energy_cv_high"] and flags["energy_cv_high_phases"] == "decode"
    assert flags["invalid_reasons"] is None  # noisy, not wrong: the interval is wider, the row says so


def test_power_outside_idle_and_rated_bounds_makes_the_run_invalid():
    flags = validity([windows([50.0, 130.0, 0.5])], rated_power_w=100.0, foreign_processes=None, profile=PROFILE)
    assert flags["windows_power_out_of_bounds"] == 2  # 130 W > 1.2 x 100 W; 0.5 W < 0.1 x 10 W idle
    assert "outside [1, 120] W" in flags["invalid_reasons"]


def test_foreign_gpu_process_makes_the_run_invalid():
    flags = validity([windows([50.0, 51.0])], 100.0, foreign_processes=1, profile=PROFILE)
    assert "1 other process(es)" in flags["invalid_reasons"]


def test_other_processes_busy_on_the_cpu_flag_the_run_without_invalidating_it():
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat on this system")
    profile = ProfileConfig(warmup_calls=0, warmup_s=0, warmup_max_s=0, idle_s=0.05, min_windows=2,
                            min_window_s=0.5, max_seconds=1.0)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        # The run itself sleeps: whatever CPU time the machine spends is someone else's.
        meter = CountingMeter()
        idle = idle_baseline(meter, lambda: None, profile, on_cuda=False)
        m = measure(lambda: time.sleep(0.01), lambda: None, meter, profile, profile.min_window_s, idle)
    finally:
        busy.kill()
    assert m.other_cpu_cores > 0.7  # one spinning process is about one core
    clean = windows([50.0, 51.0, 50.5])
    clean.other_cpu_cores = m.other_cpu_cores
    flags = validity([clean], 100.0, None, profile)
    assert flags["cpu_contended"] and flags["invalid_reasons"] is None


def test_rapl_rated_power_is_the_highest_constraint_summed_over_packages(tmp_path):
    for i in range(2):
        d = zone(tmp_path, f"intel-rapl:{i}", f"package-{i}")
        (d / "constraint_0_power_limit_uw").write_text("150000000\n")
        (d / "constraint_1_power_limit_uw").write_text("200000000\n")
    assert RaplMeter(tmp_path).rated_power_w == 400.0


def test_a_second_run_on_the_same_device_waits_and_says_so(tmp_path, caplog):
    held = threading.Event()

    def holder():
        with device_lock("cpu", str(tmp_path)):
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING), device_lock("cpu", str(tmp_path)):
        waited = time.perf_counter() - t0
    thread.join()
    assert waited >= 0.3
    assert "waiting for pid" in caplog.text and "measuring cpu" in caplog.text


def test_different_devices_do_not_wait_for_each_other(tmp_path):
    with device_lock("cpu", str(tmp_path)):
        t0 = time.perf_counter()
        with device_lock("cuda:0", str(tmp_path)):
            assert time.perf_counter() - t0 < 0.2
