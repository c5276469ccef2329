"""A run's configuration as row columns: what was asked for, on which machine, and its configuration key."""

from __future__ import annotations

import traceback
import uuid
from dataclasses import asdict
from typing import Any

import torch

from bench import environment, scenarios
from bench.config import BenchConfig, calibration_method, onnx_graph
from bench.files import stable_key
from bench.row import SCHEMA_VERSION, config_key

# Runs of a sweep share a process: a run without `threads` must not inherit the previous run's setting.
DEFAULT_THREADS = torch.get_num_threads()


def config_columns(cfg: BenchConfig, sweep_id: str | None, device: str | None = None) -> dict[str, Any]:
    """What was asked for, on which machine: present in every row, failed ones included."""
    run_id = uuid.uuid4().hex
    scenario = scenarios.get(cfg.scenario.name) if cfg.scenario.name in scenarios.names() else None
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "sweep_id": sweep_id or run_id, "status": "ok",
           "model": cfg.model.name, "model_family": cfg.model.family or cfg.model.name,
           "model_name_or_path": cfg.model.name_or_path, "weights": cfg.model.weights, "quant": cfg.quant,
           "prune": cfg.prune.name,
           "prune_amount": {"none": 0.0, "semi-structured-2of4": 0.5}.get(cfg.prune.name, cfg.prune.amount),
           "backend": cfg.backend, **variant_options(cfg), "device": device or cfg.device,
           "device_name": environment.device_name(device),
           "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "threads": cfg.threads or DEFAULT_THREADS,
           "scenario": cfg.scenario.name, "profile": cfg.profile.name, "eval": cfg.eval.name,
           "eval_key": eval_key(cfg), "config": asdict(cfg),
           **(scenario.shape(cfg) if scenario else {}),
           **({"energy_axis": scenario.AXIS.column, "energy_unit": scenario.AXIS.unit,
               "energy_request_axis": scenario.AXIS.request_column} if scenario else {})}


def variant_options(cfg: BenchConfig) -> dict[str, Any]:
    """The backend's, quant's and scenario's own options that make the configuration: key columns, set only where
    they apply, so rows without them (eager PyTorch, older rows) keep their key."""
    options = {"compile": cfg.compile if cfg.compile != "none" else None,
               "onnx_graph": onnx_graph(cfg) if cfg.backend == "onnxruntime" else None,
               "calibration_method": calibration_method(cfg) if cfg.quant == "int8-static" else None,
               "preprocess": True if cfg.preprocess else None}
    return {k: v for k, v in options.items() if v is not None}


# Eval settings that change only the gate or the interval's level, or where caches live, not the figure.
NOT_IN_EVAL_KEY = ("name", "cache_dir", "gate", "gate_rule", "ci_level")


def eval_key(cfg: BenchConfig) -> str | None:
    """The eval settings that decide the quality figure, as one digest (None when nothing is scored): two runs
    scored on another file, split, subsample or perplexity windows are not the same configuration."""
    if cfg.eval.kind == "none" or cfg.model.weights == "random":
        return None
    settings = {k: v for k, v in asdict(cfg.eval).items() if k not in NOT_IN_EVAL_KEY}
    # Options added after rows were written count only when set, so those rows keep their key.
    if settings.get("delimiter") is None:
        settings.pop("delimiter", None)
    return stable_key(settings)


def configuration(cfg: BenchConfig, checked: Any, sweep_id: str | None) -> dict[str, Any]:
    """The configuration columns of a checked run, its configuration key included."""
    row = config_columns(cfg, sweep_id, checked.device)
    row.update(model_name_or_path=checked.model_ref, model_revision=checked.model_revision)
    return {**row, "config_key": config_key(row)}


def error_columns(error: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error_type": type(error).__name__, "error_message": str(error),
            "error_traceback": "".join(traceback.format_exception(error))}



def describe(cfg: BenchConfig, checked: Any) -> str:
    pruned = f" prune={cfg.prune.name}:{cfg.prune.amount}" if cfg.prune.name != "none" else ""
    shape = " ".join(f"{k}={v}" for k, v in checked.scenario.shape(cfg).items())
    return (f"{cfg.model.name} scenario={cfg.scenario.name} quant={cfg.quant}{pruned} batch_size={cfg.batch_size} "
            f"{shape} device={checked.device} backend={cfg.backend} "
            f"weights={cfg.model.weights} profile={cfg.profile.name}")
