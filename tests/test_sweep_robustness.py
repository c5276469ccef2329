"""Sweeps survive kills, failures and bad input; they also run through Hydra's submitit launcher."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig
from bench.results import load
from bench.run import record_failure
from tests.conftest import PROJECT, run_bench


@pytest.mark.slow
def test_killed_sweep_resumes_with_every_configuration_exactly_once(tiny_model_dir, tmp_path):
    args = [f"model.name_or_path={tiny_model_dir}", "model.name=tiny", "eval=none", "quant=fp32,int8,bf16",
            "batch_size=1", "seq_len=16", "profile=quick", "profile.min_windows=4", "profile.min_window_s=0.5",
            f"results_dir={tmp_path}", "resume=true", "-m"]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=PROJECT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 300
    while load(tmp_path).empty and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # no handler runs: the worst case
    proc.wait()
    killed = load(tmp_path)
    assert 1 <= len(killed) < 3, "the kill should land mid-sweep"

    result = run_bench(*args)
    assert result.returncode == 0, result.stderr
    rows = load(tmp_path)
    ok = rows[rows["status"] == "ok"]
    assert sorted(ok["quant"]) == ["bf16", "fp32", "int8"]
    assert ok["config_key"].is_unique and len(rows) == 3
    assert "already measured" in result.stderr + result.stdout
    assert "Sweep summary (3 rows" in result.stdout


@pytest.mark.slow
def test_unwritable_results_dir_is_refused_before_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_bench(f"results_dir={blocker}/results", "profile=quick", "-m")
    assert result.returncode == 2
    assert "results_dir=" in result.stderr and "not writable" in result.stderr


@pytest.mark.slow
def test_a_single_run_with_bad_input_leaves_no_directory(tmp_path):
    result = run_bench("quant=int9", f"results_dir={tmp_path}")
    assert result.returncode == 2 and "quant='int9'" in result.stderr
    assert not any(p.is_dir() and any(p.iterdir()) for p in (tmp_path / "runs").glob("*"))


def test_a_run_that_cannot_start_inside_a_sweep_is_recorded(tmp_path):
    cfg = BenchConfig(model=ModelConfig(name="x", name_or_path="/nonexistent"), quant="int8")
    row = record_failure(cfg, tmp_path, "sweep-1", ConfigError("model.name_or_path='/nonexistent': ..."))
    (loaded,) = load(tmp_path).to_dict("records")
    assert loaded["status"] == "failed" and loaded["error_type"] == "ConfigError"
    assert loaded["config_key"] == row["config_key"] and loaded["quant"] == "int8"


def test_resume_ignores_where_results_go_but_not_the_machine():
    from bench.config_row import config_columns
    from bench.row import config_key

    def key(cfg: BenchConfig, **machine: str) -> str:
        return config_key({**config_columns(cfg, None, "cpu"), **machine})

    assert key(BenchConfig(results_dir="a", resume=True)) == key(BenchConfig())
    assert key(BenchConfig(eval=EvalConfig(cache_dir="/elsewhere"))) == key(BenchConfig())
    assert key(BenchConfig(batch_size=2)) != key(BenchConfig())
    # Measured on another machine is not "already measured" here.
    assert key(BenchConfig(), device_name="Intel Xeon") != key(BenchConfig(), device_name="AMD EPYC")


@pytest.mark.slow
def test_submitit_local_sweep_writes_both_rows_into_one_tree(tiny_model_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[cluster]'")
    result = run_bench("hydra/launcher=submitit_local", f"model.name_or_path={tiny_model_dir}", "model.name=tiny",
                       "eval=none",
                       "quant=fp32,int8", "batch_size=1", "seq_len=16", "profile=quick", f"results_dir={tmp_path}",
                       f"lock_dir={tmp_path}/locks", "-m")
    assert result.returncode == 0, result.stderr
    rows = load(tmp_path)
    assert sorted(rows["quant"]) == ["fp32", "int8"] and (rows["status"] == "ok").all()
    assert rows["sweep_id"].nunique() == 1
