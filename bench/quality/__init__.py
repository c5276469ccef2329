"""Quality in the loop: eval sets, the fp32 reference, and the metrics a variant is scored by.

Eval kinds are a registry: each names the module whose `score(job)` returns the row's quality columns.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

# eval.kind -> module under bench/quality that scores it
KINDS = {"classification": "evaluate", "sts": "evaluate", "perplexity": "perplexity"}


@dataclass
class EvalJob:
    eval: Any  # EvalConfig
    data: Any  # EvalSet
    tokenizer: Any
    backend: Any  # the variant just measured (bench.backends.Backend)
    # The fp32 PyTorch reference of the same model, built on demand; None when the variant is the reference.
    reference: Callable[[], Any]
    device: str
    batch_size: int
    seq_len: int
    identity: dict[str, Any]  # what determines the model's weights (part of the reference cache key)


def score(job: EvalJob | None) -> dict[str, Any]:
    """The row's quality columns; `eval=none` (or random weights, which have nothing to score) without a job."""
    if job is None:
        return {"eval": "none", "quality_metric": "none"}
    return importlib.import_module(f"{__name__}.{KINDS[job.eval.kind]}").score(job)
