"""Quality in the loop: eval sets, the reference (fp32 PyTorch, or what the backend names), and the metrics a
variant is scored by.

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
    # The reference of the same model (the backend's REFERENCE: fp32 PyTorch, or llama.cpp's f16 GGUF), built on
    # demand; None when the variant is the reference.
    reference: Callable[[], Any]
    device: str
    batch_size: int
    seq_len: int
    identity: dict[str, Any]  # what determines the model's weights (part of the reference cache key)


def scored(cfg: Any, metric: str, quality: float, reference: float, ratio: float | None, interval: Any,
           ratio_interval: Any) -> dict[str, Any]:
    """The quality columns every eval kind shares: the figures, their intervals, and the gate's verdict by
    eval.gate_rule (point: the ratio itself; lower: the lower end of the ratio's interval)."""
    judged = ratio if cfg.gate_rule == "point" else ratio_interval.low
    return {
        "eval": cfg.name,
        "quality_metric": metric,
        "quality": quality,
        "quality_ref": reference,
        "quality_ratio": ratio,
        "quality_ci_low": interval.low,
        "quality_ci_high": interval.high,
        "quality_ci_method": interval.method,
        "quality_ci_level": cfg.ci_level,
        "quality_ratio_ci_low": ratio_interval.low,
        "quality_ratio_ci_high": ratio_interval.high,
        "quality_gate": cfg.gate,
        "quality_gate_rule": cfg.gate_rule,
        "passes_quality_gate": judged is not None and judged >= cfg.gate,
    }


def score(job: EvalJob | None) -> dict[str, Any]:
    """The row's quality columns; `eval=none` (or random weights, which have nothing to score) without a job."""
    if job is None:
        return {"eval": "none", "quality_metric": "none"}
    return importlib.import_module(f"{__name__}.{KINDS[job.eval.kind]}").score(job)
