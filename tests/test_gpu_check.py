"""benchmarks/gpu_check.py without a GPU: its command line, its refusal, and its pure pieces."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import validate_values
from tests.rows import NO_EVAL, ON_H200, make_row

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def run_script(*args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_help():
    done = run_script("--help")
    assert done.returncode == 0 and "NVML's energy counter" in done.stdout and "--device" in done.stdout
    assert "meter=zeus" in done.stdout


def test_without_cuda_it_exits_2_at_once_saying_why():
    done = run_script()
    assert done.returncode == 2
    assert "no CUDA device is visible to torch" in done.stderr and done.stdout == ""


# --- the counter against polled power ---

def counter_readings(watts, update_s=0.1, poll_s=0.01, seconds=10.0, phase=0.037):
    """What polling a counter that adds watts x update_s joules every update_s looks like."""
    readings, t = [], 0.0
    while t <= seconds:
        updates = int((t + phase) / update_s)
        readings.append((t, updates * update_s * watts * 1000))  # millijoules
        t += poll_s
    return readings


def power_readings(watts, poll_s=0.01, seconds=10.0):
    return [(i * poll_s, watts) for i in range(int(seconds / poll_s) + 1)]


def test_a_counter_and_power_that_agree():
    counter_j, polled_j = gpu_check.counter_vs_power(counter_readings(600.0), power_readings(600.0))
    assert counter_j == pytest.approx(polled_j, rel=0.005)
    assert counter_j == pytest.approx(600 * 9.9, rel=0.02)  # about the whole span, to the counter's first update
    line = gpu_check.agreement(counter_j, polled_j)
    assert line["status"] == "ok" and "limit ±2%" in line["notes"]


def test_power_reading_3_percent_high_fails():
    counter_j, polled_j = gpu_check.counter_vs_power(counter_readings(600.0), power_readings(618.0))
    line = gpu_check.agreement(counter_j, polled_j)
    assert line["status"] == "failed" and "+3.00%" in line["notes"]


def test_a_counter_that_never_moves_cannot_be_compared():
    with pytest.raises(ValueError, match="moved 0 time"):
        gpu_check.counter_vs_power([(t / 10, 5000.0) for t in range(100)], power_readings(300.0))


def test_integration_is_exact_for_a_ramp_between_samples():
    ramp = [(0.0, 100.0), (1.0, 200.0), (2.0, 300.0)]
    assert gpu_check.integrate(ramp, 0.5, 1.5) == pytest.approx(200.0)


def test_the_counter_check_reports_its_failure_as_a_line(monkeypatch):
    def broken(device):
        raise RuntimeError("NVML went away")

    monkeypatch.setattr(gpu_check, "busy_samples", broken)
    line = gpu_check.check_counter("cuda:0")
    assert line["status"] == "failed" and "NVML went away" in line["notes"]
    monkeypatch.setattr(gpu_check, "busy_samples",
                        lambda device: (counter_readings(500.0), power_readings(500.0), "instant power field"))
    assert gpu_check.check_counter("cuda:0")["status"] == "ok"


# --- meter=zeus against meter=nvml ---

def test_zeus_within_1_percent_of_nvml_passes_and_beyond_fails():
    line = gpu_check.zeus_agreement(1004.0, 1000.0, "zeus-nvml")
    assert line["status"] == "ok" and line["energy_source"] == "zeus-nvml"
    assert line["notes"] == "meter=nvml 1000 J, +0.40% (limit ±1%)"
    line = gpu_check.zeus_agreement(985.0, 1000.0, "zeus-nvml")
    assert line["status"] == "failed" and "-1.50%" in line["notes"]


def test_the_zeus_check_is_skipped_without_zeus(monkeypatch):
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    line = gpu_check.check_zeus("cuda:0")
    assert line["status"] == "skipped" and line["notes"] == "zeus is not installed (pip install 'energy-bench[zeus]')"
    assert gpu_check.failed([line]) == []


@pytest.mark.skipif(importlib.util.find_spec("zeus") is None, reason="zeus is not installed")
def test_where_zeus_reads_no_gpu_the_zeus_check_fails_as_a_line_saying_why():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU Zeus may read")
    line = gpu_check.check_zeus("cuda:0")
    assert line["status"] == "failed" and line["configuration"] == "zeus meter vs nvml meter"
    assert line["notes"].startswith("ConfigError: meter=zeus cannot read device='cuda:0': Zeus found no GPU")


# --- the configurations ---

def test_every_configuration_composes_and_passes_the_checks_that_need_no_gpu(tmp_path):
    labels = [label for label, _, _ in gpu_check.CHECKS]
    assert len(set(labels)) == len(labels) == 13
    for label, overrides, _ in gpu_check.CHECKS:
        cfg = gpu_check.compose([*overrides, "device=cuda:0", f"results_dir={tmp_path}"])
        validate_values(cfg)
        assert cfg.model.weights == "random" and cfg.eval.kind == "none", label
        # about 20 counter updates in a window and in an idle segment
        assert cfg.profile.min_window_s_cuda >= 2.0 and cfg.profile.idle_s_cuda / cfg.profile.idle_segments >= 2.0


def test_a_missing_optional_package_is_a_skip_not_a_failure(monkeypatch):
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert "torchao is not installed" in gpu_check.missing("torchao")
    assert gpu_check.missing(None) is None
    line = gpu_check.run_check("int8-wo", [], "torchao", "cuda:0", Path("unused"))
    assert line["status"] == "skipped"
    assert gpu_check.failed([line, {"configuration": "x", "status": "ok"}]) == []
    assert gpu_check.failed([{"configuration": "y", "status": "invalid"}]) == ["y"]


# --- the table ---

def test_a_row_as_a_line_with_its_flags():
    row = make_row(**ON_H200, **NO_EVAL, status="invalid", invalid_reasons="1 other process(es) were using the GPU",
                   nvml_few_updates=True, nvml_window_updates_min=7, gpu_power_throttled=True,
                   gpu_other_processes_end=1, energy_j_per_inference=0.123456, energy_j_per_inference_ci_low=0.12,
                   energy_j_per_inference_ci_high=0.127)
    line = gpu_check.line_of("bert-base fp16 batch 8", row)
    assert line["energy"] == "0.123 J/inference [0.120, 0.127]" and line["p50_ms"] == "10.0"
    assert line["notes"] == ("1 other process(es) were using the GPU; few counter updates; power throttling; "
                             "min 7 counter updates/window; 1 other GPU process(es)")


def test_a_failed_row_says_its_error():
    row = {"status": "failed", "error_type": "NotImplementedError", "error_message": "no kernel", "energy_axis": None}
    line = gpu_check.line_of("bert-base 2:4 fp16 batch 8", row)
    assert line["status"] == "failed" and line["notes"] == "NotImplementedError: no kernel" and line["energy"] == "-"


def test_the_table_aligns_its_columns_and_ends_with_notes():
    lines = [{"configuration": "bert-base fp32 batch 1", "status": "ok", "p50_ms": "1.23", "energy": "0.5 J/inference",
              "energy_source": "nvml_counter", "notes": ""},
             {"configuration": "x", "status": "skipped", "notes": "torchao is not installed"}]
    text = gpu_check.table(lines).splitlines()
    assert text[0].split() == ["configuration", "status", "p50", "ms", "energy", "energy_source", "notes"]
    assert len(text) == 3
    at = text[0].index("energy_source")
    assert text[1][at:].startswith("nvml_counter") and text[2][at:].startswith("-")
    assert text[2].endswith("torchao is not installed") and text[1].endswith("nvml_counter")
