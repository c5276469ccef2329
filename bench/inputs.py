"""Model inputs: seeded synthetic batches (no tokenizer needed) and calibration batches from real texts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from bench.files import stable_key


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    samples: int
    tokens: int  # non-padding tokens, the denominator of joules per token


def synthetic_batch(config: PretrainedConfig, batch_size: int, seq_len: int, seed: int) -> Batch:
    """Full-length sequences of seeded random token ids.

    Random ids need no tokenizer (random-weight models have none offline) and leave no padding, so every
    token counts; dense encoder cost depends on the shape, not on which ids fill it.
    """
    generator = torch.Generator().manual_seed(seed)
    low = min(1000, config.vocab_size // 2)  # above the special and unused ids of BERT-style vocabularies
    ids = torch.randint(low, config.vocab_size, (batch_size, seq_len), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return Batch(inputs, samples=batch_size, tokens=batch_size * seq_len)


def calibration_batches(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase | None, texts: list[str],
                        samples: int, seq_len: int, seed: int, batch_size: int = 8
                        ) -> tuple[list[dict[str, torch.Tensor]], str]:
    """Inputs for static quantization's calibration and where they came from.

    Real texts (the eval set's train split, never its test split) when there are some: activation ranges
    seen on random ids would not be the deployment's. Random-weight models have no tokenizer, so they
    calibrate on seeded random ids, and the row says so.
    """
    if tokenizer is None or not texts:
        batches = [synthetic_batch(config, min(batch_size, samples - i), seq_len, seed + 1 + i).inputs
                   for i in range(0, samples, batch_size)]
        return batches, f"random token ids ({samples} sequences, seed {seed})"
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:samples].tolist()
    chosen = [texts[i] for i in order]
    batches = []
    for i in range(0, len(chosen), batch_size):
        enc = tokenizer(chosen[i:i + batch_size], padding="max_length", truncation=True, max_length=seq_len,
                        return_tensors="pt")
        batches.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return batches, f"eval train split ({len(chosen)} texts)"


def calibration_key(batches: list[dict[str, torch.Tensor]]) -> str:
    """The calibration set by content (its token ids and masks, in order): whatever changes it (another eval,
    split, seed, seq_len or sample count) changes the key, so a calibrated model is never reused for data whose
    test split it has seen."""
    return stable_key({"batches": [{name: batch[name].tolist() for name in sorted(batch)} for batch in batches]})
