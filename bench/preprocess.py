"""Preprocessing measured apart (preprocess=true, docs/protocol.md §4): tokenising the eval set's raw texts, one
batch of `batch_size` texts per call, in windows of its own after the model's.

The model's windows run on token ids made before the idle baseline (bench/inputs.py), so a row's joules per
inference leave out what a deployment does first with each request: turn its text into those ids. This phase
measures that step with the run's protocol, meter and idle baseline, and says what share of the request it is.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any, Callable

from transformers import BatchEncoding, PreTrainedTokenizerBase

from bench.config import ProfileConfig
from bench.measure import Idle, Measurement, interval_columns, measure
from bench.row import Column, with_interval
from bench.scenarios import RunContext

PHASE = "preprocess"
_NOT_ON_CUDA = "empty on CUDA, whose meter reads the GPU board, not the CPU that tokenises"
COLUMNS = [
    # In the key, so resume never takes a row without these columns for a run that asks for them.
    Column("preprocess", "bool", "", "preprocess=true: tokenisation was measured (the preprocess_* columns); empty "
           "when not", key=True),
    *with_interval("preprocess_j_per_sample", "J", "preprocess=true: mean over windows of net joules to tokenise one "
                   f"of the eval set's raw texts, at batch_size texts per call ({_NOT_ON_CUDA})"),
    Column("preprocess_ms_p50", "float", "ms", "preprocess=true: median latency of tokenising one batch of "
           "batch_size texts"),
    Column("preprocess_share", "float", "fraction", "preprocess_j_per_sample / (preprocess_j_per_sample + "
           f"energy_j_per_inference): tokenising's share of a request's joules ({_NOT_ON_CUDA})"),
    Column("preprocess_tokenizer", "str", "", "class of the tokenizer the preprocess windows ran"),
    Column("preprocess_tokenizer_fast", "bool", "", "true: a fast tokenizer (Hugging Face tokenizers, in Rust); "
           "false: tokenising in Python"),
    Column("preprocess_seconds", "float", "s", "warm-up and windows of the preprocess phase: the time preprocess=true "
           "added to the run"),
    Column("preprocess_ci_stop", "str", "", "why preprocess windows stopped: target | time cap | idle baseline"),
    Column("preprocess_window_calls", "list[int]", "calls", "batches tokenised per preprocess window"),
    Column("preprocess_window_seconds", "list[float]", "s", "duration of each preprocess window"),
    Column("preprocess_window_j_per_sample", "list[float]", "J", "net joules per text of each preprocess window "
           f"(raw samples; {_NOT_ON_CUDA})"),
]


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], seq_len: int) -> BatchEncoding:
    """Raw texts as the model is given them: truncated at seq_len, padded to the batch's longest, as tensors."""
    return tokenizer(texts, padding=True, truncation=True, max_length=seq_len, return_tensors="pt")


def batches(tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int, seq_len: int
            ) -> Callable[[], BatchEncoding]:
    """A call that tokenises the next batch_size texts, cycling through `texts`: a tokenizer's work follows the
    words and lengths of what it reads, so one batch tokenised over and over would measure that batch alone."""
    stream = itertools.cycle(texts)
    return lambda: encode(tokenizer, list(itertools.islice(stream, batch_size)), seq_len)


def columns(m: Measurement, tokenizer: PreTrainedTokenizerBase, batch_size: int, model_j_per_inference: float,
            profile: ProfileConfig, meter_sees_cpu: bool) -> dict[str, Any]:
    """The preprocess_* columns of the phase's Measurement; joules only where the meter reads the CPU."""
    row: dict[str, Any] = {
        "preprocess_ms_p50": statistics.median(m.latencies_ns) / 1e6,
        "preprocess_tokenizer": type(tokenizer).__name__,
        "preprocess_tokenizer_fast": bool(tokenizer.is_fast),
        "preprocess_seconds": m.seconds,
        "preprocess_ci_stop": m.stop,
        "preprocess_window_calls": list(m.window_calls),
        "preprocess_window_seconds": list(m.window_seconds),
    }
    if meter_sees_cpu:
        per_sample = m.figure().scaled(1 / batch_size)
        row.update(interval_columns("preprocess_j_per_sample", per_sample, m.idle, profile.confidence))
        row["preprocess_share"] = per_sample.mean / (per_sample.mean + model_j_per_inference)
        row["preprocess_window_j_per_sample"] = [j / batch_size for j in m.net_per_call()]
    return row


def run(ctx: RunContext, idle: Idle, model_j_per_inference: float) -> dict[str, Any]:
    """Tokenising the eval set's test texts in the run's windows; the row's preprocess_* columns."""
    cfg = ctx.cfg
    call = batches(ctx.tokenizer, ctx.eval_set.test_texts, cfg.batch_size, cfg.seq_len)
    # The model's idle baseline, not a second one: it is this process's power with the model loaded and nothing
    # running, the floor under these windows too. A second one would add idle_s to the run, and the share would
    # then compare two figures standing on two baselines' errors. No sync: tokenising queues nothing on a device.
    m = measure(call, lambda: None, ctx.meter, cfg.profile, ctx.min_window_s, idle, phase=PHASE)
    return columns(m, ctx.tokenizer, cfg.batch_size, model_j_per_inference, cfg.profile,
                   meter_sees_cpu=not ctx.device.startswith("cuda"))
