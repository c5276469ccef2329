"""benchmarks/gate_error_rates.py: its slowed candidate really is slower, by the amount injected, and the script
runs end to end (smoke: two pairs of two rounds)."""

import re
import statistics
import subprocess
import sys
import time

import pytest

from bench.config import BenchConfig, EvalConfig, ModelConfig, load_profile
from benchmarks import gate_error_rates
from benchmarks.gate_error_rates import slow_call, slowed
from tests.conftest import EVAL_CACHE, PROJECT


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_slowed_call_takes_the_fraction_longer_than_its_own_work():
    inner = []

    def work():
        start = time.perf_counter()
        busy(0.002)
        inner.append(time.perf_counter() - start)

    call = slow_call(work, 0.3)
    outer = []
    for _ in range(20):
        start = time.perf_counter()
        call()
        outer.append(time.perf_counter() - start)
    assert statistics.median(o / i for o, i in zip(outer, inner)) == pytest.approx(1.3, abs=0.03)


@pytest.mark.slow
def test_the_slowdown_reaches_every_measured_call_of_a_run(tmp_path, tiny_model_dir, monkeypatch):
    """Through bench.run.run, as the script measures: every call the windows time goes through the slowdown."""
    import bench.run
    from bench.results import load

    fractions = []

    def spy(call, fraction):
        fractions.append(fraction)
        return slow_call(call, fraction)

    monkeypatch.setattr(gate_error_rates, "slow_call", spy)
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(tiny_model_dir)), profile=load_profile("quick"),
                      eval=EvalConfig(name="none", kind="none", cache_dir=EVAL_CACHE), seq_len=16,
                      threads=1)  # two threads on a busy 2-core machine wait for each other: 40x, not 2x
    p50 = {}
    for i, (side, fraction) in enumerate([("a", 0.0), ("b", 1.0), ("b", 1.0), ("a", 0.0), ("a", 0.0), ("b", 1.0)]):
        with slowed(fraction):
            bench.run.run(cfg, tmp_path / side / str(i))
        p50.setdefault(side, []).append(load(tmp_path / side / str(i))["latency_ms_p50"].iloc[0])
    assert fractions == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # one prepared call per run, each slowed as asked
    ratios = [b / a for a, b in zip(p50["a"], p50["b"])]  # runs paired as the rounds interleaved them
    assert statistics.median(ratios) == pytest.approx(2.0, abs=0.3)


@pytest.mark.slow  # 2 pairs x 2 conditions x 4 runs of MiniLM, in one process
def test_the_script_prints_the_false_alarm_and_detection_rates():
    result = subprocess.run([sys.executable, "benchmarks/gate_error_rates.py", "--pairs", "2", "--rounds", "2",
                             "--slowdowns", "0.3", "--skip-job"], cwd=PROJECT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "one of the 4 configurations of the workflow's grid" in lines[0] and "2 interleaved rounds" in lines[0]
    assert re.match(r"A/A: \d/2 flagged \(\d+%(; \d undecided)?\): false alarms per comparison [\d.]+%, "
                    r"per job of \d <= [\d.]+% \(target <= 5%\)", lines[1]), lines[1]
    assert re.match(r"A/B \+30% per call: \d/2 caught \(\d+%(; \d undecided)?\) \(target >= 95%\)", lines[2]), lines[2]
    assert re.match(r"one pair \(2 x 2 runs of one configuration, in this process\): \d+ s", lines[3]), lines[3]
