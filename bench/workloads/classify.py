"""Encoder inputs (classification and embedding models)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig


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
