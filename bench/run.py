"""One run: check, lock, load, make the variant, measure the scenario, score quality, judge validity, write."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench import backends, environment, footprint, models, progress, quality, scenarios
from bench.backends import BuildRequest
from bench.config import (BenchConfig, calibration_method, onnx_graph, resolve_device, validate_for_device,
                          validate_values)
from bench.config_row import config_columns, configuration, describe, error_columns
from bench.device_lock import device_lock
from bench.inputs import calibration_batches
from bench.meters import open_meter
from bench.quality.datasets import EvalSet, load_eval
from bench.results import successful_rows, write_row
from bench.row import config_key
from bench.validity import validity
from bench.variants.prune import apply_prune, check_supported
from bench.variants.quant import check_available, dtype_of

log = logging.getLogger(__name__)


@dataclass
class Checked:
    device: str
    scenario: scenarios.Scenario
    model_config: Any  # transformers PretrainedConfig
    model_ref: str
    model_revision: str
    eval_set: EvalSet | None  # None: no quality eval (eval=none, or random weights)
    tokenizer: Any


def check(cfg: BenchConfig) -> Checked:
    """Everything that can be checked without loading weights, so bad input fails in seconds."""
    validate_values(cfg)
    device = resolve_device(cfg.device)
    validate_for_device(cfg, device)
    check_available(cfg.quant)
    check_supported(cfg.prune, device)
    backends.check(cfg, device)
    scenario = scenarios.get(cfg.scenario.name)
    model_config, ref, revision = scenario.check_model(cfg)
    open_meter(cfg.meter, device, cores_in_use=1).close()
    eval_set = tokenizer = None
    if cfg.eval.kind != "none" and cfg.model.weights == "pretrained":
        eval_set = load_eval(cfg.eval)
        tokenizer = models.load_tokenizer(cfg.model, ref)
    return Checked(device, scenario, model_config, ref, revision, eval_set, tokenizer)


def record_failure(cfg: BenchConfig, out_dir: str | Path, sweep_id: str | None, error: BaseException
                   ) -> dict[str, Any]:
    """A row for a run that could not start, so a sweep's table shows it."""
    row = {**config_columns(cfg, sweep_id), **environment.capture(), **error_columns(error)}
    row["config_key"] = config_key(row)
    write_row(row, out_dir)
    return row


def run(cfg: BenchConfig, out_dir: str | Path, sweep_id: str | None = None) -> dict[str, Any]:
    """Measures one configuration and writes its row to `out_dir/row.parquet`.

    Bad input raises ConfigError before any work. A failure during the work is recorded as a row with
    status=failed (and the error), so a sweep keeps going and nothing is lost. With cfg.resume, a
    configuration already measured on this machine (same config_key) under cfg.results_dir is skipped.
    """
    checked = check(cfg)
    row = configuration(cfg, checked, sweep_id)
    if cfg.resume and len(done := successful_rows(cfg.results_dir, {row["config_key"]})):
        where = done["row_file"].iloc[0]
        log.info("skipping %s: already measured in %s", describe(cfg, checked), where)
        return {**row, "status": "skipped", "row_file": where}
    torch.set_num_threads(row["threads"])
    with device_lock(checked.device, cfg.lock_dir):
        row.update(measure_run(cfg, checked, row["run_id"]))
    write_row(row, out_dir)
    if row["status"] == "ok":
        kind = "measured" if row["energy_measured"] else "a model, NOT a measurement"
        log.info("run %s: %s (%s: %s)", row["run_id"][:8], checked.scenario.progress(row), row["energy_source"], kind)
    elif row["status"] == "invalid":
        log.warning("run %s INVALID: %s", row["run_id"][:8], row["invalid_reasons"])
    return row


def measure_run(cfg: BenchConfig, checked: Checked, run_id: str) -> dict[str, Any]:
    """The columns a run measures; errors during the work become status=failed."""
    device, threads = checked.device, torch.get_num_threads()
    meter = open_meter(cfg.meter, device, cores_in_use=threads)
    row: dict[str, Any] = {"energy_source": meter.source, "energy_measured": meter.measured,
                           "energy_params": meter.params(), **environment.capture(), **meter.device_state("start")}
    log.info("run %s: %s", run_id[:8], describe(cfg, checked))
    cache_dir = Path(cfg.eval.cache_dir).expanduser()
    train_texts = checked.eval_set.train_texts if checked.eval_set else []
    # The longest sequence a variant is given: the scenario's request or a perplexity window (eval.context).
    context = max(checked.scenario.shape(cfg).get("seq_len", cfg.seq_len), cfg.eval.context)

    def build(model: torch.nn.Module | None, inputs: dict[str, torch.Tensor], quant: str = cfg.quant,
              backend: str = cfg.backend, compile_mode: str = cfg.compile, graph: str = onnx_graph(cfg)
              ) -> tuple[backends.Backend, dict[str, Any]]:
        progress.phase(f"building the {quant} variant on {backend}")
        # What makes the fp32 model's weights and graph: an exported model is reused only when all of it matches.
        exported = {**identity, "class": type(model).__name__ if model is not None else None,
                    "prune": asdict(cfg.prune) if cfg.prune.name != "none" else None}
        return backends.build(backend, BuildRequest(
            model, quant, device, threads, inputs, exported, cache_dir, cfg.onnx_opset,
            lambda: calibration_batches(checked.model_config, checked.tokenizer, train_texts,
                                        cfg.calibration_samples, cfg.seq_len, cfg.seed),
            cfg.model, context, cfg.seed, compile_mode, graph, calibration_method(cfg)))

    def load(backend: str = cfg.backend) -> torch.nn.Module | None:
        """The fp32 PyTorch model, for backends built from it; None for those that read the model's own file, and
        for a given ONNX file, which is the model itself. (TORCH_MODEL is a backend's constant; whether a run has
        a PyTorch model is the configuration's, and only model.onnx_path makes them differ.)"""
        if cfg.model.onnx_path is not None or not backends.torch_model(backend):
            return None
        return models.load_model(cfg.model, checked.model_config, checked.model_ref, cfg.seed,
                                 causal_lm=checked.scenario.CAUSAL_LM)

    def reference() -> backends.Backend | None:
        """The variant this one is scored against, unpruned and eager: the backend's reference (fp32 PyTorch, or what
        the backend names); for a given ONNX file, which has no PyTorch model, the file itself at fp32 with the graph
        as given (ONNX Runtime's level all). None when the run's variant is that reference."""
        quant, backend = ("fp32", "onnxruntime") if cfg.model.onnx_path else backends.reference(cfg.backend)
        graph = "all"  # read by the onnxruntime backend only
        same_graph = backend != "onnxruntime" or onnx_graph(cfg) == graph
        if (cfg.quant, cfg.prune.name, cfg.backend, cfg.compile) == (quant, "none", backend, "none") and same_graph:
            return None
        # A compiled variant is scored against eager fp32, like every other variant.
        return build(load(backend), {}, quant, backend, "none", graph)[0]

    try:
        progress.phase("loading the model")
        # Hashes the weight files (once per process): a read error is this run's failure, not the sweep's.
        identity = models.identity(cfg.model, checked.model_ref, checked.model_revision, cfg.seed)
        t0 = time.perf_counter()
        model = load()
        if model is not None:
            row["load_seconds"] = time.perf_counter() - t0
            model, pruned = apply_prune(model, cfg.prune, device, dtype_of(cfg.quant))
            row.update(pruned, **footprint.parameters(model))
        min_window_s = cfg.profile.min_window_s_cuda if device.startswith("cuda") else cfg.profile.min_window_s
        ctx = scenarios.RunContext(cfg, device, checked.model_config, checked.tokenizer, checked.eval_set, meter,
                                   min_window_s, build)
        columns, phases, backend = checked.scenario.run(model, ctx)
        row.update(columns, **meter.device_state("end"))
        job = quality.EvalJob(cfg.eval, checked.eval_set, checked.tokenizer, backend, reference, device,
                              cfg.batch_size, cfg.seq_len, identity) if checked.eval_set else None
        if job is not None:
            progress.phase(f"quality: eval={cfg.eval.name}")
        row.update(quality.score(job))
        foreign = max((row.get(f"gpu_other_processes_{w}") or 0 for w in ("start", "end")), default=0)
        checks = validity(phases, meter.rated_power_w, foreign, cfg.profile)
        # A scenario's own reasons (serve: too many failed requests) join the protocol's.
        reasons = [r for r in (columns.get("invalid_reasons"), checks["invalid_reasons"]) if r]
        row.update(checks, invalid_reasons="; ".join(reasons) or None)
        if row["cpu_contended"]:
            log.warning("run %s: other processes used %.2f cores during the windows: latency and energy are "
                        "inflated (cpu_contended)", run_id[:8], row["cpu_other_cores"])
        if row["invalid_reasons"]:
            row["status"] = "invalid"
    except Exception as e:
        row.update(error_columns(e))
        log.error("run %s FAILED: %s: %s", run_id[:8], type(e).__name__, e)
    finally:
        meter.close()
    return row
