"""Generation (docs/protocol.md §4): a decoder serving requests, prefill and decode in their own windows.

A request is `prompt_len` tokens in and exactly `new_tokens` tokens out, greedy, never stopping early
(min_new_tokens = max_new_tokens): the prefill forward over the prompt fills the KV cache and yields the first
token; `new_tokens - 1` decode steps, one token each, yield the rest. The two phases are bound by different
limits (compute vs memory bandwidth), so each is measured in its own windows rather than by subtracting runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import PretrainedConfig

from bench import backends, models
from bench.backends import GENERATION, Generation
from bench.config import PROMPT_SOURCES, BenchConfig, ConfigError, ProfileConfig, choice
from bench.digits import figure, plain
from bench.inputs import synthetic_batch
from bench.measure import (CI_METHOD, Measurement, add, idle_baseline, interval, interval_columns, measure,
                           summarise)
from bench.meters import EnergyMeter
from bench.quality.perplexity import text_ids
from bench.row import Column, with_interval
from bench.scenarios import EnergyAxis, RunContext

EVAL_KINDS = ("perplexity", "none")
AXIS = EnergyAxis("energy_j_per_output_token", "output token", "energy_j_per_request")
CAUSAL_LM = True
COLUMNS = [
    Column("prompt_len", "int", "tokens", "tokens per prompt"),
    Column("new_tokens", "int", "tokens", "tokens generated per request, exactly"),
    Column("prompt_source", "str", "", "text (slices of the eval text) | random (seeded ids)"),
    *[Column(f"{phase}_ms_{p}", "float", "ms", f"{meaning}, {p}")
      for phase, meaning in (("ttft", "time to first token (a prefill call)"),
                             ("itl", "inter-token latency (a decode step)"))
      for p in ("p50", "p90", "p99")],
    Column("ttft_ms_samples", "list[float]", "ms", "every prefill call's latency"),
    Column("request_latency_ms", "float", "ms", "mean TTFT + (new_tokens - 1) x mean ITL"),
    Column("prefill_tokens_s", "float", "1/s", "prompt tokens per second in prefill"),
    Column("decode_tokens_s", "float", "1/s", "generated tokens per second in decode"),
    *with_interval("energy_j_per_input_token", "J", "prefill: mean over windows of net joules per prompt token"),
    *with_interval("energy_j_per_output_token", "J", "decode: mean over windows of net joules per generated token"),
    *with_interval("energy_j_per_request", "J", "prefill per prompt + (new_tokens - 1) x decode per token; its "
                   "interval combines both phases' and the idle baseline's errors"),
    Column("prefill_energy_cv", "float", "", "CV of the prefill windows"),
    Column("decode_energy_cv", "float", "", "CV of the decode windows"),
    Column("prefill_ci_target_met", "bool", "", "the prefill interval reached profile.target_ci"),
    Column("decode_ci_target_met", "bool", "", "the decode interval reached profile.target_ci"),
    Column("prefill_window_calls", "list[int]", "calls", "calls per prefill window"),
    Column("prefill_window_seconds", "list[float]", "s", "duration of each prefill window"),
    Column("prefill_window_j_per_sequence", "list[float]", "J", "net joules per prompt of each prefill window"),
    Column("decode_window_j_per_token", "list[float]", "J", "net joules per generated token of each decode window "
           "(each window is whole requests: every cache length equally often)"),
]
# The two phases, joules per output token (decode) with its interval, and per request; `<col>_vs_ref` is the
# row's value over its backend's reference row (fp32; f16 on llama.cpp) of the same configuration in the table.
SUMMARY_COLUMNS = {
    "model": "model",
    "quant": "quant",
    "backend": "backend",
    "batch_size": "batch",
    "device": "device",
    "status": "status",
    "ttft_ms_p50": "TTFT ms",
    "ttft_ms_p50_vs_ref": "TTFT/fp32",
    "itl_ms_p50": "ITL ms",
    "itl_ms_p50_vs_ref": "ITL/fp32",
    "decode_tokens_s": "decode tok/s",
    "energy_j_per_input_token": "J/in tok",
    "energy_j_per_output_token": "J/out tok",
    "energy_j_per_output_token_ci_low": "ci low",
    "energy_j_per_output_token_ci_high": "ci high",
    "energy_j_per_request": "J/request",
    "energy_source": "source",
    "quality": "quality",
    "quality_ratio": "vs fp32",
}


def validate(cfg: BenchConfig) -> None:
    s, e = cfg.scenario, cfg.eval
    choice("scenario.prompt_source", s.prompt_source, PROMPT_SOURCES)
    # The decode loop drives a KV cache step by step, which a backend offers or not.
    backends.require(cfg.backend, GENERATION, "scenario=generate")
    if cfg.preprocess:
        raise ConfigError("preprocess=true is measured for scenario=classify only for now (a generate request's "
                          "tokenising and detokenising have no windows of their own yet); set preprocess=false")
    # Pruning layouts are encoder layouts.
    if cfg.prune.name != "none":
        raise ConfigError(f"scenario=generate runs with prune=none; got prune={cfg.prune.name!r}")
    if s.prompt_len < 1 or s.new_tokens < 2:
        raise ConfigError(f"scenario.prompt_len={s.prompt_len} and scenario.new_tokens={s.new_tokens} are not valid; "
                          "need prompt_len >= 1 and new_tokens >= 2 (the first token comes from the prefill)")
    if s.prompt_source == "text" and (cfg.model.weights == "random" or e.kind == "none"):
        raise ConfigError("scenario.prompt_source=text needs a tokenizer and a text (model.weights=pretrained and "
                          "eval=perplexity with eval.path); choose scenario.prompt_source=random or auto")


def shape(cfg: BenchConfig) -> dict[str, int]:
    """seq_len is the longest sequence the model sees."""
    s = cfg.scenario
    return {"prompt_len": s.prompt_len, "new_tokens": s.new_tokens, "seq_len": s.prompt_len + s.new_tokens}


def run(model: Any, ctx: RunContext) -> tuple[dict[str, Any], list[Measurement], Any]:
    cfg, s = ctx.cfg, ctx.cfg.scenario
    t0 = time.perf_counter()
    backend, row = ctx.build(model, {})
    text = text_ids(ctx.tokenizer, ctx.eval_set.test_texts[0]) if ctx.eval_set else None
    chosen = prompts(ctx.model_config, cfg.batch_size, s.prompt_len, cfg.seed,
                     text if s.prompt_source != "random" else None)
    generation = backend.generation(chosen.ids, s.new_tokens)
    row.update(prompt_source=chosen.source, prepare_seconds=time.perf_counter() - t0)
    phases = measure_phases(generation, s.new_tokens, backend.sync, ctx.meter, cfg.profile, ctx.min_window_s,
                            ctx.device.startswith("cuda"))
    row.update(columns(*phases, cfg.batch_size, s.prompt_len, s.new_tokens, cfg.profile))
    return row, list(phases), backend


def progress(row: dict[str, Any]) -> str:
    return (f"TTFT p50 {plain(row['ttft_ms_p50'])} ms, ITL p50 {plain(row['itl_ms_p50'])} ms, "
            f"{plain(row['decode_tokens_s'])} decode tokens/s, {figure(row, 'energy_j_per_output_token')} J/output "
            f"token, {figure(row, 'energy_j_per_request')} J/request")


def check_model(cfg: BenchConfig) -> tuple[PretrainedConfig, str, str]:
    """models.load_config for generation: a decoder-only LM whose positions hold the whole request."""
    s = cfg.scenario
    config, ref, revision = models.load_config(cfg.model, s.prompt_len + s.new_tokens,
                                               "scenario.prompt_len + scenario.new_tokens",
                                               torch_weights=backends.torch_model(cfg.backend))
    if not models.is_decoder_lm(config):
        raise ConfigError(
            f"scenario=generate needs a decoder-only causal language model; model {cfg.model.name!r} ({ref}) is a "
            f"{config.model_type!r} model, which cannot generate. Choose one of: model=smollm2 (offline), "
            "model=llama-1b or model=llama-8b (model.weights=random offline), or model.name_or_path=<a causal LM>")
    max_len = getattr(config, "max_position_embeddings", None)
    if cfg.eval.kind == "perplexity" and max_len is not None and cfg.eval.context > max_len:
        raise ConfigError(f"eval.context={cfg.eval.context} is longer than model {cfg.model.name!r} allows "
                          f"(max_position_embeddings={max_len}); choose 2..{max_len}")
    return config, ref, revision


@dataclass
class Prompts:
    ids: torch.Tensor  # (batch_size, prompt_len)
    source: str  # text | random


def prompts(config: PretrainedConfig, batch_size: int, prompt_len: int, seed: int,
            text_ids: torch.Tensor | None) -> Prompts:
    """Consecutive prompt_len-token slices of the eval text, one per sequence; seeded random ids without one.

    Text prompts are what a served model sees; random ids serve random-weight models, which have no tokenizer
    offline. Neither needs padding: every sequence of the batch is exactly prompt_len tokens.
    """
    if text_ids is None:
        return Prompts(synthetic_batch(config, batch_size, prompt_len, seed).inputs["input_ids"], "random")
    need = batch_size * prompt_len
    if len(text_ids) < need:
        raise ConfigError(f"the eval text has {len(text_ids)} tokens, fewer than batch_size x prompt_len = {need}; "
                          "give a longer eval.path or use scenario.prompt_source=random")
    return Prompts(text_ids[:need].reshape(batch_size, prompt_len), "text")


def measure_phases(generation: Generation, new_tokens: int, sync: Callable[[], None], meter: EnergyMeter,
                   profile: ProfileConfig, min_window_s: float, on_cuda: bool) -> tuple[Measurement, Measurement]:
    """One idle baseline, then the protocol's warm-up and windows once per phase, prefill first.

    The phases share the time cap, prefill taking at most half of it. A decode window is whole requests (a
    multiple of new_tokens - 1 steps, starting at a request's first step), so every window covers every cache
    length equally often and windows are alike.
    """
    idle = idle_baseline(meter, sync, profile, on_cuda)
    prefill = measure(generation.prefill, sync, meter, profile, min_window_s, idle,
                      max_seconds=profile.max_seconds / 2, phase="prefill")
    decode = measure(generation.decode_steps(), sync, meter, profile, min_window_s, idle,
                     multiple=new_tokens - 1, max_seconds=profile.max_seconds - prefill.seconds, phase="decode")
    return prefill, decode


def columns(prefill: Measurement, decode: Measurement, batch_size: int, prompt_len: int, new_tokens: int,
            profile: ProfileConfig) -> dict[str, Any]:
    """The row's speed and energy columns of a generate run, from the two phases' windows.

    Energy per request = prefill joules per sequence + (new_tokens - 1) x decode joules per token. The phases'
    windows are independent but share the idle baseline, so the request's interval adds their window variances
    and counts the idle error once, with the weight both phases give it (docs/protocol.md §3).
    """
    p = summarise(prefill, batch_size, batch_size * prompt_len, profile)
    d = summarise(decode, batch_size, batch_size, profile)
    per_sequence, per_token = prefill.figure().scaled(1 / batch_size), decode.figure().scaled(1 / batch_size)
    request = add(per_sequence, per_token.scaled(new_tokens - 1))
    found = interval(request, prefill.idle, profile.confidence)
    # Mean seconds per batch of requests: one prefill call and new_tokens - 1 decode calls.
    request_s = p["measured_seconds"] / p["calls"] + (new_tokens - 1) * d["measured_seconds"] / d["calls"]
    gross = p["energy_gross_j"] + d["energy_gross_j"]
    seconds = p["measured_seconds"] + d["measured_seconds"]
    missed = [f"{m.phase}: {m.stop}" for m in (prefill, decode) if m.stop != "target"]
    return {
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "ttft_ms_p50": p["latency_ms_p50"],
        "ttft_ms_p90": p["latency_ms_p90"],
        "ttft_ms_p99": p["latency_ms_p99"],
        "itl_ms_p50": d["latency_ms_p50"],
        "itl_ms_p90": d["latency_ms_p90"],
        "itl_ms_p99": d["latency_ms_p99"],
        "request_latency_ms": request_s * 1e3,
        "prefill_tokens_s": p["throughput_tokens_s"],
        "decode_tokens_s": d["throughput_tokens_s"],
        **interval_columns("energy_j_per_input_token", per_sequence.scaled(1 / prompt_len), prefill.idle,
                           profile.confidence),
        **interval_columns("energy_j_per_output_token", per_token, decode.idle, profile.confidence),
        **interval_columns("energy_j_per_request", request, prefill.idle, profile.confidence),
        "prefill_energy_cv": p["energy_cv"],
        "decode_energy_cv": d["energy_cv"],
        "prefill_ci_target_met": p["ci_target_met"],
        "decode_ci_target_met": d["ci_target_met"],
        # The columns every row has, so the summary, the fronts and the regression gate read generate rows too:
        # an inference is a request, a token a generated token (prefill included), a call a decode step.
        **interval_columns("energy_j_per_inference", request, prefill.idle, profile.confidence),
        "energy_j_per_token": request.mean / new_tokens,
        "energy_ci_method": CI_METHOD if found else None,
        "energy_ci_level": found.level if found else None,
        "energy_ci_lag1": d["energy_ci_lag1"],
        "energy_ci_idle_share": found.idle_share if found else None,
        "ci_target": profile.target_ci,
        "ci_target_met": not missed,
        "ci_stop": "; ".join(missed) or "target",
        "energy_cv": d["energy_cv"],
        # A request's joules as each decode window sees them, the prefill at its mean: the raw samples the gate
        # resamples (the phases' windows are not paired).
        "window_j_per_inference": [per_sequence.mean + (new_tokens - 1) * j for j in d["window_j_per_inference"]],
        "throughput_samples_s": batch_size / request_s,
        "throughput_tokens_s": batch_size * new_tokens / request_s,
        "latency_ms_p50": d["latency_ms_p50"],
        "latency_ms_p90": d["latency_ms_p90"],
        "latency_ms_p99": d["latency_ms_p99"],
        "latency_ms_samples": d["latency_ms_samples"],
        "window_calls": d["window_calls"],
        "window_seconds": d["window_seconds"],
        "ttft_ms_samples": p["latency_ms_samples"],
        "prefill_window_calls": p["window_calls"],
        "prefill_window_seconds": p["window_seconds"],
        "prefill_window_j_per_sequence": p["window_j_per_inference"],
        "decode_window_j_per_token": d["window_j_per_inference"],
        "energy_gross_j": gross,
        "energy_net_j": p["energy_net_j"] + d["energy_net_j"],
        "idle_power_w": p["idle_power_w"],
        "idle_segment_w": p["idle_segment_w"],
        "idle_seconds": p["idle_seconds"],
        "avg_power_w": gross / seconds,
        "windows": d["windows"],
        "calls": p["calls"] + d["calls"],
        "measured_seconds": seconds,
        "warmup_calls": p["warmup_calls"] + d["warmup_calls"],
        "warmup_seconds": p["warmup_seconds"] + d["warmup_seconds"],
        "warmup_settled": p["warmup_settled"] and d["warmup_settled"],
    }
