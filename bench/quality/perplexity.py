"""Perplexity of a causal LM on a text, and its fidelity to the fp32 reference on the same windows.

Strided windows: windows of `context` tokens start every `stride` tokens; each scores the predictions of its
last `stride` tokens (all but its first token when stride = context), so every token is scored once and each
sees at least context - stride tokens of context. Windows are full-length only, so they batch without padding.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Iterator

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bench.config import ConfigError, EvalConfig

# (batch of windows of token ids, k) -> float32 logits of the last k positions, (batch, k, vocab)
Logits = Callable[[torch.Tensor, int], torch.Tensor]


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """The text as one stream of token ids, without special tokens, cut to max_tokens."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # no warning: windows fit the model
    return torch.tensor(ids[:max_tokens] if max_tokens else ids, dtype=torch.long)


def window_starts(n_tokens: int, context: int, stride: int) -> list[int]:
    if n_tokens < context:
        raise ConfigError(f"the eval text has {n_tokens} tokens, fewer than eval.context={context}; give a longer "
                          "text (eval.path) or a smaller eval.context")
    return list(range(0, n_tokens - context + 1, stride))


def lm_logits(model: PreTrainedModel, device: str) -> Logits:
    """Logits of a transformers causal LM, computed for the needed positions only where the model allows."""
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters

    @torch.inference_mode()
    def logits(ids: torch.Tensor, keep: int) -> torch.Tensor:
        extra = {"logits_to_keep": keep} if keep_arg else {}
        out = model(input_ids=ids.to(device), use_cache=False, **extra).logits
        return out[:, -keep:].float()

    return logits


def _scored(logits: Logits, ids: torch.Tensor, starts: list[int], context: int, scored: int, batch_size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(log-probabilities of the scored predictions, their target ids), batch_size windows at a time."""
    for i in range(0, len(starts), batch_size):
        windows = torch.stack([ids[s:s + context] for s in starts[i:i + batch_size]])
        # The logit at position j predicts token j + 1: the last `scored` targets need scored + 1 positions.
        log_probs = torch.log_softmax(logits(windows, scored + 1)[:, :-1], dim=-1)
        yield log_probs, windows[:, -scored:].to(log_probs.device)


def evaluate_perplexity(cfg: EvalConfig, ids: torch.Tensor, variant: Logits, reference: Logits | None,
                        batch_size: int) -> dict[str, Any]:
    """The row's quality columns: the variant's perplexity, the fp32 reference's on the same windows, and
    fidelity (top-1 agreement, mean KL(reference || variant) per scored token). reference=None: the variant is
    the reference."""
    t0 = time.perf_counter()
    starts = window_starts(len(ids), cfg.context, cfg.stride)
    scored = min(cfg.stride, cfg.context - 1)
    nll = nll_ref = kl = agree = 0.0
    count = 0
    reference_batches = _scored(reference, ids, starts, cfg.context, scored, batch_size) if reference else None
    for log_p, targets in _scored(variant, ids, starts, cfg.context, scored, batch_size):
        log_q = next(reference_batches)[0].to(log_p.device) if reference_batches else log_p
        nll -= log_p.gather(-1, targets.unsqueeze(-1)).sum().item()
        nll_ref -= log_q.gather(-1, targets.unsqueeze(-1)).sum().item()
        kl += (log_q.exp() * (log_q - log_p)).sum().item()
        agree += (log_p.argmax(-1) == log_q.argmax(-1)).sum().item()
        count += targets.numel()
    perplexity = float(torch.tensor(nll / count).exp())
    perplexity_ref = float(torch.tensor(nll_ref / count).exp())
    # Lower perplexity is better: the ratio is reference / variant, so ratio >= gate means acceptable, as for
    # metrics where higher is better.
    ratio = perplexity_ref / perplexity
    return {
        "eval": cfg.name,
        "quality_metric": "perplexity",
        "quality": perplexity,
        "quality_ref": perplexity_ref,
        "quality_ratio": ratio,
        "quality_gate": cfg.gate,
        "passes_quality_gate": ratio >= cfg.gate,
        "fidelity_top1_agreement": agree / count,
        "fidelity_kl_mean": kl / count,
        "eval_samples": len(starts),
        "eval_tokens": count,
        "eval_context": cfg.context,
        "eval_stride": cfg.stride,
        "eval_max_tokens": cfg.max_tokens,
        "eval_seconds": time.perf_counter() - t0,
    }


def score(job: Any) -> dict[str, Any]:
    """bench.quality's entry: the variant and the fp32 reference over the same windows of the eval text."""
    ids = text_ids(job.tokenizer, job.data.test_texts[0], job.eval.max_tokens)
    ref = job.reference()
    fp32_logits = lm_logits(ref.model, job.device) if ref is not None else None
    return evaluate_perplexity(job.eval, ids, lm_logits(job.backend.model, job.device), fp32_logits, job.batch_size)
