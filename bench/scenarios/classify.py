"""An encoder forward over a batch of full-length sequences (classification, embeddings).

A call is one batch of `batch_size` sequences of `seq_len` seeded random token ids: dense encoder cost depends
on the shape, not on which ids fill it. Energy is attributed per sequence (an inference) and per input token.
preprocess=true adds windows of tokenising the eval set's raw texts after the model's (bench/preprocess.py).
"""

from __future__ import annotations

import time
from typing import Any

from bench import backends, footprint, models, preprocess
from bench.digits import figure, plain
from bench.errors import ConfigError
from bench.inputs import synthetic_batch
from bench.measure import Measurement, idle_baseline, measure, summarise
from bench.row import Column
from bench.scenarios import EnergyAxis, RunContext

EVAL_KINDS = ("classification", "sts", "none")
AXIS = EnergyAxis("energy_j_per_inference", "inference", "energy_j_per_inference")
CAUSAL_LM = False
COLUMNS = [
    Column("flops_per_inference", "float", "FLOP", "FLOPs of one forward / sequences in it"),
    Column("flops_method", "str", "", "how flops_per_inference was obtained"),
    Column("energy_j_per_gflop", "float", "J", "joules per inference / GFLOPs per inference"),
    *preprocess.COLUMNS,
]
SUMMARY_COLUMNS = {
    "model": "model",
    "quant": "quant",
    "backend": "backend",
    "prune": "prune",
    "batch_size": "batch",
    "device": "device",
    "status": "status",
    "latency_ms_p50": "p50 ms",
    "throughput_samples_s": "samples/s",
    "energy_j_per_inference": "J/inf",
    "energy_j_per_inference_ci_low": "ci low",
    "energy_j_per_inference_ci_high": "ci high",
    "energy_j_per_token": "J/token",
    "energy_source": "source",
    "quality": "quality",
    "quality_ratio": "vs fp32",
}


def validate(cfg: Any) -> None:
    """A call is one forward over a batch, which a backend offers or not; the rest is the config's own checks."""
    backends.require(cfg.backend, backends.BATCHES, "scenario=classify")
    # The run has a tokenizer and texts only with pretrained weights and an eval (bench/run.py check).
    if cfg.preprocess and (cfg.eval.kind == "none" or cfg.model.weights == "random"):
        raise ConfigError(f"preprocess=true tokenises the eval set's texts with the model's tokenizer, which "
                          f"eval={cfg.eval.name} with model.weights={cfg.model.weights} does not have: choose an eval "
                          "with texts (e.g. eval=bbc-topics) and model.weights=pretrained, or set preprocess=false")


def check_model(cfg: Any) -> tuple[Any, str, str]:
    return models.load_config(cfg.model, cfg.seq_len)


def shape(cfg: Any) -> dict[str, int]:
    return {"seq_len": cfg.seq_len}


def run(model: Any, ctx: RunContext) -> tuple[dict[str, Any], list[Measurement], Any]:
    cfg = ctx.cfg
    t0 = time.perf_counter()
    batch = synthetic_batch(ctx.model_config, cfg.batch_size, cfg.seq_len, cfg.seed)
    row: dict[str, Any] = {}
    if model is not None:  # a given ONNX file (model.onnx_path) has no PyTorch graph to count FLOPs on
        on_model = {k: v.to(next(model.parameters()).device) for k, v in batch.inputs.items()}
        row.update(footprint.flops_per_inference(model, on_model, batch.samples))
    backend, built = ctx.build(model, batch.inputs)
    row.update(built)
    call = backend.prepare(batch.inputs)
    row["prepare_seconds"] = time.perf_counter() - t0
    idle = idle_baseline(ctx.meter, backend.sync, cfg.profile, ctx.device.startswith("cuda"))
    m = measure(call, backend.sync, ctx.meter, cfg.profile, ctx.min_window_s, idle)
    row.update(summarise(m, batch.samples, batch.tokens, cfg.profile))
    if "flops_per_inference" in row:
        row["energy_j_per_gflop"] = row["energy_j_per_inference"] / (row["flops_per_inference"] / 1e9)
    if cfg.preprocess:
        row.update(preprocess.run(ctx, idle, row["energy_j_per_inference"]))
    return row, [m], backend


def progress(row: dict[str, Any]) -> str:
    return (f"p50 {plain(row['latency_ms_p50'])} ms, {plain(row['throughput_samples_s'])} samples/s, "
            f"{figure(row, 'energy_j_per_inference')} J/inference")
