"""One run: validate, load, make the variant, measure, write the row."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from bench import environment, models
from bench.backends.pytorch import PyTorchBackend
from bench.config import BenchConfig, resolve_device, validate_for_device, validate_values
from bench.measure import measure, summarise
from bench.meters import open_meter
from bench.results import SCHEMA_VERSION, write_row
from bench.variants.quant import apply_quant
from bench.workloads.classify import synthetic_batch

log = logging.getLogger(__name__)
# Runs of a sweep share a process: a run without `threads` must not inherit the previous run's setting.
DEFAULT_THREADS = torch.get_num_threads()


@dataclass
class Checked:
    device: str
    model_config: PretrainedConfig
    model_ref: str
    model_revision: str


def check(cfg: BenchConfig) -> Checked:
    """Everything that can be checked without loading weights, so bad input fails in seconds."""
    validate_values(cfg)
    device = resolve_device(cfg.device)
    validate_for_device(cfg, device)
    model_config, ref, revision = models.load_config(cfg.model, cfg.seq_len)
    open_meter(cfg.meter, device, cores_in_use=1).close()
    return Checked(device, model_config, ref, revision)


def describe_run(cfg: BenchConfig, device: str) -> str:
    return (f"{cfg.model.name} quant={cfg.quant} batch_size={cfg.batch_size} seq_len={cfg.seq_len} "
            f"device={device} backend={cfg.backend} weights={cfg.model.weights} profile={cfg.profile.name}")


def run(cfg: BenchConfig, out_dir: str | Path, sweep_id: str | None = None) -> dict[str, Any]:
    """Measures one configuration and writes its row to `out_dir/row.parquet`.

    Bad input raises ConfigError before any work. A failure during the work is recorded as a row with
    status=failed (and the error), so a sweep keeps going and nothing is lost.
    """
    checked = check(cfg)
    device, config, ref = checked.device, checked.model_config, checked.model_ref
    torch.set_num_threads(cfg.threads or DEFAULT_THREADS)
    threads = torch.get_num_threads()
    meter = open_meter(cfg.meter, device, cores_in_use=threads)
    run_id = uuid.uuid4().hex
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "sweep_id": sweep_id or run_id,
        "status": "ok",
        "model": cfg.model.name,
        "model_name_or_path": ref,
        "model_revision": checked.model_revision,
        "weights": cfg.model.weights,
        "quant": cfg.quant,
        "backend": cfg.backend,
        "device": device,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "threads": threads,
        "profile": cfg.profile.name,
        "energy_source": meter.source,
        "energy_measured": meter.measured,
        "energy_params": meter.params(),
        **environment.capture(),
        "config": asdict(cfg),
    }
    row.update(_device_state(meter, "start"))
    log.info("run %s: %s", run_id[:8], describe_run(cfg, device))
    try:
        t0 = time.perf_counter()
        model = models.load_model(cfg.model, config, ref, cfg.seed)
        row.update(models.describe(model))
        row["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        variant, info = apply_quant(model, cfg.quant, device)
        row.update(info)
        backend = PyTorchBackend(variant, device)
        batch = synthetic_batch(config, cfg.batch_size, cfg.seq_len, cfg.seed)
        call = backend.prepare(batch.inputs)
        row["prepare_seconds"] = time.perf_counter() - t0
        min_window_s = cfg.profile.min_window_s_cuda if device.startswith("cuda") else cfg.profile.min_window_s
        m = measure(call, backend.sync, meter, cfg.profile, min_window_s)
        row.update(summarise(m, batch.samples, batch.tokens, cfg.profile, cfg.seed))
        row.update(_device_state(meter, "end"))
    except Exception as e:
        row.update(status="failed", error_type=type(e).__name__, error_message=str(e),
                   error_traceback=traceback.format_exc())
        log.error("run %s FAILED: %s: %s", run_id[:8], type(e).__name__, e)
    finally:
        meter.close()
    write_row(row, out_dir)
    if row["status"] == "ok":
        log.info("run %s: %s", run_id[:8], progress_line(row))
    return row


def _device_state(meter: Any, when: str) -> dict[str, Any]:
    """Clocks, temperature and limits of a metered accelerator; CPU meters have none to offer."""
    state = getattr(meter, "device_state", None)
    return state(when) if state else {}


def progress_line(row: dict[str, Any]) -> str:
    kind = "measured" if row["energy_measured"] else "a model, NOT a measurement"
    return (f"p50 {row['latency_ms_p50']:.2f} ms, {row['throughput_samples_s']:.1f} samples/s, "
            f"{row['energy_j_per_inference']:.4g} J/inference "
            f"[{row['energy_j_per_inference_ci_low']:.4g}, {row['energy_j_per_inference_ci_high']:.4g}] "
            f"({row['energy_source']}: {kind})")
