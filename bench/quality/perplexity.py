"""Perplexity of a causal LM on a text, and its fidelity to the reference on the same windows (the fp32 PyTorch
model; for llama.cpp variants the 16-bit GGUF through llama.cpp).

Windows of at most `context` tokens start every `stride` tokens; each scores the predictions of the tokens it
is responsible for, and no token is scored twice (eval.perplexity, docs/generation.md):

- `hf-strided` (the default; Hugging Face's "perplexity of fixed-length models" recipe): the first window scores
  every token but the text's first; each later window scores only the tokens past the previous window's end, so
  every token but the first is scored, the first window's with less context than the rest. The last window
  ends at the text's end and may be shorter than `context`.
- `min-context`: full windows only, each scoring the tokens with at least `context - stride` tokens of history
  (at least 1) in it; a last window aligned with the text's end scores the tokens the others left. The first
  `context - stride` tokens are never scored: what is scored is every token with that much history.

Windows of one length score the same number of tokens, so they batch without padding.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from bench import progress
from bench.config import ConfigError, EvalConfig
from bench.quality import scored
from bench.quality.datasets import random_subsample
from bench.quality.intervals import bootstrap

# (batch of windows of token ids, k) -> float32 logits of the last k positions, (batch, k, vocab)
Logits = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Window:
    start: int
    end: int  # exclusive
    first: int  # the first position it scores: it scores the tokens first..end-1, each from those before it

    @property
    def scored(self) -> int:
        return self.end - self.first


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """The text as one stream of token ids, without special tokens, cut to max_tokens."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # no warning: windows fit the model
    return torch.tensor(ids[:max_tokens] if max_tokens else ids, dtype=torch.long)


def windows(n_tokens: int, context: int, stride: int, definition: str) -> list[Window]:
    """The windows of eval.perplexity's definition over a text of n_tokens (module docstring)."""
    least = context if definition == "min-context" else 2
    if n_tokens < least:
        raise ConfigError(f"the eval text has {n_tokens} tokens; eval.perplexity={definition} with "
                          f"eval.context={context} needs at least {least}: give a longer text (eval.path) or a "
                          "smaller eval.context")
    out: list[Window] = []
    if definition == "hf-strided":
        for start in range(0, n_tokens, stride):
            end = min(start + context, n_tokens)
            # A window's first token has nothing before it in the window (stride = context): not scored.
            out.append(Window(start, end, max(start + 1, out[-1].end if out else 0)))
            if end == n_tokens:
                return out
    history = max(1, context - stride)
    for start in range(0, n_tokens - context + 1, stride):
        out.append(Window(start, start + context, max(start + history, out[-1].end if out else 0)))
    if out[-1].end < n_tokens:
        out.append(Window(n_tokens - context, n_tokens, out[-1].end))
    return out


def _scored(logits: Logits, ids: torch.Tensor, chosen: list[Window], batch_size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(log-probabilities of the scored predictions, their target ids), up to batch_size windows of one shape
    at a time, in the order of `chosen`."""
    for _, group in itertools.groupby(chosen, key=lambda w: (w.end - w.start, w.scored)):
        group = list(group)
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            tokens = torch.stack([ids[w.start:w.end] for w in batch])
            k = batch[0].scored
            # The logit at position j predicts token j + 1: the last k targets need the k + 1 positions before.
            log_probs = torch.log_softmax(logits(tokens, k + 1)[:, :-1], dim=-1)
            yield log_probs, tokens[:, -k:].to(log_probs.device)


def evaluate_perplexity(cfg: EvalConfig, ids: torch.Tensor, variant: Logits, reference: Logits | None,
                        batch_size: int) -> dict[str, Any]:
    """The row's quality columns: the variant's perplexity, the reference's on the same windows, their
    intervals over windows, and fidelity (top-1 agreement, mean KL(reference || variant) per scored token).
    reference=None: the variant is the reference."""
    t0 = time.perf_counter()
    every = windows(len(ids), cfg.context, cfg.stride, cfg.perplexity)
    chosen = every
    if cfg.max_test_samples and cfg.max_test_samples < len(every):
        chosen = [every[i] for i in random_subsample(len(every), cfg.max_test_samples, cfg.seed)]
    nll, nll_ref = np.zeros(len(chosen)), np.zeros(len(chosen))  # per window, summed over its scored tokens
    kl = agree = 0.0
    reference_batches = _scored(reference, ids, chosen, batch_size) if reference else None
    done = 0
    for log_p, targets in _scored(variant, ids, chosen, batch_size):
        log_q = next(reference_batches)[0].to(log_p.device) if reference_batches else log_p
        rows = slice(done, done + len(targets))
        nll[rows] = -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(1).double().cpu().numpy()
        nll_ref[rows] = -log_q.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(1).double().cpu().numpy()
        kl += (log_q.exp() * (log_q - log_p)).sum().item()
        agree += (log_p.argmax(-1) == log_q.argmax(-1)).sum().item()
        done += len(targets)
        progress.step("quality", done, len(chosen), "text windows")
    counts = np.array([w.scored for w in chosen], dtype=float)
    count = int(counts.sum())
    perplexity, perplexity_ref = float(np.exp(nll.sum() / count)), float(np.exp(nll_ref.sum() / count))
    interval = bootstrap(lambda i: np.exp(nll[i].sum(1) / counts[i].sum(1)), len(chosen), cfg.ci_level, cfg.seed,
                         "windows")
    # Lower perplexity is better: the ratio is reference / variant, so ratio >= gate means acceptable, as for
    # metrics where higher is better.
    ratio_interval = bootstrap(lambda i: np.exp((nll_ref[i].sum(1) - nll[i].sum(1)) / counts[i].sum(1)),
                               len(chosen), cfg.ci_level, cfg.seed, "paired windows")
    row = {
        **scored(cfg, "perplexity", perplexity, perplexity_ref, perplexity_ref / perplexity, interval,
                 ratio_interval),
        "fidelity_top1_agreement": agree / count,
        "fidelity_kl_mean": kl / count,
        "perplexity_definition": cfg.perplexity,
        "eval_samples": len(chosen),
        "eval_text_tokens": len(ids),
        "eval_tokens_scored": count,
        "eval_context": cfg.context,
        "eval_stride": cfg.stride,
        "eval_max_tokens": cfg.max_tokens,
        "eval_seconds": time.perf_counter() - t0,
    }
    if len(chosen) < len(every):
        row.update(eval_subsample=len(chosen), eval_subsample_of=len(every), eval_subsample_seed=cfg.seed)
    return row


def score(job: Any) -> dict[str, Any]:
    """bench.quality's entry: the variant and its backend's reference over the same windows of the eval text,
    each through its backend's causal_logits (PyTorch's forward, llama.cpp's own logits)."""
    ids = text_ids(job.tokenizer, job.data.test_texts[0], job.eval.max_tokens)
    ref = job.reference()
    row = evaluate_perplexity(job.eval, ids, job.backend.causal_logits, ref.causal_logits if ref is not None else None,
                              job.batch_size)
    return {**row, "eval_logits_path": job.backend.logits_path}
