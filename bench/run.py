"""One run: check, load, make the variant, measure, write the row."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from bench import backends, environment, footprint, models
from bench.backends import Backend, BuildRequest
from bench.backends.onnxruntime import check_providers
from bench.backends.pytorch import PyTorchBackend
from bench.config import BenchConfig, config_hash, resolve_device, validate_for_device, validate_values
from bench.device_lock import device_lock
from bench.measure import combine, measure, summarise
from bench.quality.datasets import EvalSet, load_eval
from bench.quality.evaluate import evaluate, reference
from bench.quality.perplexity import evaluate_perplexity, lm_logits, text_ids
from bench.meters import open_meter
from bench.results import SCHEMA_VERSION, successful_rows, write_row
from bench.validity import validity
from bench.variants.prune import apply_prune, check_supported
from bench.variants.quant import check_available, dtype_of
from bench.workloads import generate
from bench.workloads.classify import calibration_batches, synthetic_batch

log = logging.getLogger(__name__)
# Runs of a sweep share a process: a run without `threads` must not inherit the previous run's setting.
DEFAULT_THREADS = torch.get_num_threads()


@dataclass
class Checked:
    device: str
    model_config: PretrainedConfig
    model_ref: str
    model_revision: str
    eval_set: EvalSet | None  # None: no quality eval (eval=none, or random weights)
    tokenizer: PreTrainedTokenizerBase | None


def check(cfg: BenchConfig) -> Checked:
    """Everything that can be checked without loading weights, so bad input fails in seconds."""
    validate_values(cfg)
    device = resolve_device(cfg.device)
    validate_for_device(cfg, device)
    check_available(cfg.quant)
    check_supported(cfg.prune, device)
    if cfg.backend == "onnxruntime":
        check_providers(device)
    if cfg.scenario.name == "generate":
        model_config, ref, revision = generate.check_model(cfg)
    else:
        model_config, ref, revision = models.load_config(cfg.model, cfg.seq_len)
    open_meter(cfg.meter, device, cores_in_use=1).close()
    eval_set = tokenizer = None
    if cfg.eval.kind != "none" and cfg.model.weights == "pretrained":
        eval_set = load_eval(cfg.eval)
        tokenizer = models.load_tokenizer(cfg.model, ref)
    return Checked(device, model_config, ref, revision, eval_set, tokenizer)


def config_columns(cfg: BenchConfig, sweep_id: str | None) -> dict[str, Any]:
    """What was asked for: present in every row, failed ones included."""
    run_id = uuid.uuid4().hex
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "sweep_id": sweep_id or run_id,
        "config_hash": config_hash(cfg),
        "status": "ok",
        "model": cfg.model.name,
        "model_family": cfg.model.family or cfg.model.name,
        "model_name_or_path": cfg.model.name_or_path,
        "weights": cfg.model.weights,
        "quant": cfg.quant,
        "prune": cfg.prune.name,
        "prune_amount": {"none": 0.0, "semi-structured-2of4": 0.5}.get(cfg.prune.name, cfg.prune.amount),
        "backend": cfg.backend,
        "device": cfg.device,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "scenario": cfg.scenario.name,
        "profile": cfg.profile.name,
        "config": asdict(cfg),
    }


def error_columns(error: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error_type": type(error).__name__, "error_message": str(error),
            "error_traceback": "".join(traceback.format_exception(error))}


def record_failure(cfg: BenchConfig, out_dir: str | Path, sweep_id: str | None, error: BaseException
                   ) -> dict[str, Any]:
    """A row for a run that could not start, so a sweep's table shows it."""
    row = {**config_columns(cfg, sweep_id), **environment.capture(), **error_columns(error)}
    write_row(row, out_dir)
    return row


def run(cfg: BenchConfig, out_dir: str | Path, sweep_id: str | None = None) -> dict[str, Any]:
    """Measures one configuration and writes its row to `out_dir/row.parquet`.

    Bad input raises ConfigError before any work. A failure during the work is recorded as a row with
    status=failed (and the error), so a sweep keeps going and nothing is lost. With cfg.resume, a
    configuration that already has an ok row under cfg.results_dir is skipped (status=skipped, no row).
    """
    checked = check(cfg)
    device = checked.device
    row = config_columns(cfg, sweep_id)
    row.update(device=device, model_name_or_path=checked.model_ref, model_revision=checked.model_revision)
    if cfg.resume and len(done := successful_rows(cfg.results_dir, {row["config_hash"]})):
        where = done["row_file"].iloc[0]
        log.info("skipping %s: already measured in %s", describe_run(cfg, device), where)
        return {**row, "status": "skipped", "row_file": where}
    torch.set_num_threads(cfg.threads or DEFAULT_THREADS)
    with device_lock(device, cfg.lock_dir):
        row.update(measure_run(cfg, checked, row["run_id"]))
    write_row(row, out_dir)
    if row["status"] == "ok":
        log.info("run %s: %s", row["run_id"][:8], progress_line(row))
    elif row["status"] == "invalid":
        log.warning("run %s INVALID: %s", row["run_id"][:8], row["invalid_reasons"])
    return row


def measure_run(cfg: BenchConfig, checked: Checked, run_id: str) -> dict[str, Any]:
    """The columns a run measures; errors during the work become status=failed."""
    device = checked.device
    threads = torch.get_num_threads()
    meter = open_meter(cfg.meter, device, cores_in_use=threads)
    row: dict[str, Any] = {
        "threads": threads,
        "energy_source": meter.source,
        "energy_measured": meter.measured,
        "energy_params": meter.params(),
        **environment.capture(),
        **_device_state(meter, "start"),
    }
    # What the analysis groups by when one tree holds several machines or GPU types.
    row["device_name"] = row.get("gpu_name") or row["cpu_model"]
    log.info("run %s: %s", run_id[:8], describe_run(cfg, device))
    try:
        generating = cfg.scenario.name == "generate"
        t0 = time.perf_counter()
        model = models.load_model(cfg.model, checked.model_config, checked.model_ref, cfg.seed, causal_lm=generating)
        row["load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        min_window_s = cfg.profile.min_window_s_cuda if device.startswith("cuda") else cfg.profile.min_window_s
        if generating:
            row.update(footprint.parameters(model))
            backend, built = backends.build(cfg.backend, _build_request(cfg, checked, model, threads, {}))
            row.update(built)
            s = cfg.scenario
            text = text_ids(checked.tokenizer, checked.eval_set.test_texts[0]) if checked.eval_set else None
            prompts = generate.prompts(checked.model_config, cfg.batch_size, s.prompt_len, cfg.seed,
                                       text if s.prompt_source != "random" else None)
            generation = generate.Generation(backend.model, device, prompts.ids)
            row.update(seq_len=s.prompt_len + s.new_tokens, prompt_source=prompts.source,
                       prepare_seconds=time.perf_counter() - t0)
            phases = generate.measure_phases(generation, s.new_tokens, backend.sync, meter, cfg.profile, min_window_s)
            m = combine(*phases)
            row.update(generate.columns(*phases, cfg.batch_size, s.prompt_len, s.new_tokens, cfg.profile, cfg.seed))
        else:
            model, pruned = apply_prune(model, cfg.prune, device, dtype_of(cfg.quant))
            row.update(pruned)
            row.update(footprint.parameters(model))
            batch = synthetic_batch(checked.model_config, cfg.batch_size, cfg.seq_len, cfg.seed)
            on_model = {k: v.to(next(model.parameters()).device) for k, v in batch.inputs.items()}
            row.update(footprint.flops_per_inference(model, on_model, batch.samples))
            backend, built = backends.build(cfg.backend, _build_request(cfg, checked, model, threads, batch.inputs))
            row.update(built)
            call = backend.prepare(batch.inputs)
            row["prepare_seconds"] = time.perf_counter() - t0
            m = measure(call, backend.sync, meter, cfg.profile, min_window_s)
            row.update(summarise(m, batch.samples, batch.tokens, cfg.profile, cfg.seed))
            row["energy_j_per_gflop"] = row["energy_j_per_inference"] / (row["flops_per_inference"] / 1e9)
        row.update(_device_state(meter, "end"))
        row.update(_quality(cfg, checked, backend))
        row.update(validity(m, meter.rated_power_w, row.get("gpu_other_processes_end"), row["energy_cv"],
                            cfg.profile.max_cv, cfg.profile.max_other_cpu_cores))
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


def _build_request(cfg: BenchConfig, checked: Checked, model: torch.nn.Module, threads: int,
                   inputs: dict[str, torch.Tensor]) -> BuildRequest:
    # What makes the fp32 model's weights and graph: an exported model is reused only when all of it matches.
    identity = {"model": checked.model_ref, "revision": checked.model_revision, "weights": cfg.model.weights,
                "seed": cfg.seed if cfg.model.weights == "random" else None, "class": type(model).__name__,
                "prune": asdict(cfg.prune) if cfg.prune.name != "none" else None}
    train_texts = checked.eval_set.train_texts if checked.eval_set else []
    return BuildRequest(
        model, cfg.quant, checked.device, threads, inputs, identity, Path(cfg.eval.cache_dir).expanduser(),
        cfg.onnx_opset, lambda: calibration_batches(checked.model_config, checked.tokenizer, train_texts,
                                                    cfg.calibration_samples, cfg.seq_len, cfg.seed))


def _quality(cfg: BenchConfig, checked: Checked, backend: Backend) -> dict[str, Any]:
    """Quality of the variant just measured, on the same device, backend and batch size."""
    if checked.eval_set is None:
        if cfg.eval.kind != "none":
            log.info("weights=random: no quality eval (quality_metric=none)")
        return {"eval": "none", "quality_metric": "none"}
    device = checked.device
    if cfg.eval.kind == "perplexity":
        ids = text_ids(checked.tokenizer, checked.eval_set.test_texts[0], cfg.eval.max_tokens)
        fp32_logits = None  # quant=fp32: this variant is the reference
        if cfg.quant != "fp32":
            fp32 = models.load_model(cfg.model, checked.model_config, checked.model_ref, cfg.seed, causal_lm=True)
            fp32_logits = lm_logits(fp32.to(device), device)
        return evaluate_perplexity(cfg.eval, ids, lm_logits(backend.model, device), fp32_logits, cfg.batch_size)

    def fp32_forward() -> Any:
        if (cfg.quant, cfg.prune.name, cfg.backend) == ("fp32", "none", "pytorch"):
            return backend.forward  # this variant is the reference
        fp32 = models.load_model(cfg.model, checked.model_config, checked.model_ref, cfg.seed).to(device)
        return PyTorchBackend(fp32, device).forward

    identity = {"model": checked.model_ref, "revision": checked.model_revision, "device": device.split(":")[0]}
    ref = reference(cfg.eval, checked.eval_set, identity, checked.tokenizer, cfg.seq_len, fp32_forward)
    return evaluate(cfg.eval, checked.eval_set, backend.forward, checked.tokenizer, cfg.batch_size, cfg.seq_len, ref)


def _device_state(meter: Any, when: str) -> dict[str, Any]:
    """Clocks, temperature and limits of a metered accelerator; CPU meters have none to offer."""
    state = getattr(meter, "device_state", None)
    return state(when) if state else {}


def describe_run(cfg: BenchConfig, device: str) -> str:
    s = cfg.scenario
    shape = (f"prompt_len={s.prompt_len} new_tokens={s.new_tokens}" if s.name == "generate"
             else f"seq_len={cfg.seq_len}")
    pruned = f" prune={cfg.prune.name}:{cfg.prune.amount}" if cfg.prune.name != "none" else ""
    return (f"{cfg.model.name} scenario={s.name} quant={cfg.quant}{pruned} batch_size={cfg.batch_size} {shape} "
            f"device={device} backend={cfg.backend} weights={cfg.model.weights} profile={cfg.profile.name}")


def progress_line(row: dict[str, Any]) -> str:
    kind = "measured" if row["energy_measured"] else "a model, NOT a measurement"
    if row["scenario"] == "generate":
        return (f"TTFT p50 {row['ttft_ms_p50']:.2f} ms, ITL p50 {row['itl_ms_p50']:.2f} ms, "
                f"{row['decode_tokens_s']:.1f} decode tokens/s, {row['energy_j_per_output_token']:.4g} J/output token "
                f"[{row['energy_j_per_output_token_ci_low']:.4g}, {row['energy_j_per_output_token_ci_high']:.4g}], "
                f"{row['energy_j_per_request']:.4g} J/request ({row['energy_source']}: {kind})")
    return (f"p50 {row['latency_ms_p50']:.2f} ms, {row['throughput_samples_s']:.1f} samples/s, "
            f"{row['energy_j_per_inference']:.4g} J/inference "
            f"[{row['energy_j_per_inference_ci_low']:.4g}, {row['energy_j_per_inference_ci_high']:.4g}] "
            f"({row['energy_source']}: {kind})")
