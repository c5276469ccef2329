"""Backends: turn the model into the variant on a device, run it, synchronise.

One module per backend, imported only when a run asks for it (so a PyTorch run never loads ONNX Runtime).
A backend module provides `check(cfg, device)`, run before any work, `build(req) -> (Backend, columns)`, and
declares what it offers and needs:

- CAPABILITIES: what its Backend objects do. BATCHES: `prepare` and `forward` over a batch of sequences
  (classify, the classification evals); GENERATION: `generation` and `causal_logits` (generate, perplexity).
- TORCH_MODEL: whether `build` takes the fp32 PyTorch model (BuildRequest.model); False: it reads the model's
  own file (BuildRequest.source) and the run never loads the PyTorch model.
- REFERENCE: (quant, backend) of the variant its quality is scored against.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

import torch

from bench.errors import ConfigError

BATCHES, GENERATION = "batches", "generation"


class Generation(Protocol):
    """A request's two phases on one batch of prompts (docs/protocol.md §4): exactly new_tokens tokens out,
    greedy, never stopping early."""

    def prefill(self) -> Any:
        """One prefill from an empty KV cache (a fresh one each call, as each request's is): the first tokens."""

    def decode_steps(self) -> DecodeSteps:
        """One decode step per call, walking request after request (DecodeSteps). It starts from its own
        prefill; a prefill() call after it may discard its cache (the phases are measured one after the other)."""


class DecodeSteps:
    """A call that is one real incremental decode step (one token per sequence) over a backend's KV cache.

    Consecutive calls walk through the decode phase of a request: the cache grows from prompt_len to
    prompt_len + new_tokens - 2 tokens, each step feeding the previous step's greedy token. When a request's
    new_tokens - 1 steps are done, the cache is cut back to the prompt and the next request begins. So the
    cache never grows across calls, and the calls' latencies and energy cover every cache length a request
    passes through, equally often. The backend gives `advance(token, position)`, one token through the model
    at that position returning the greedy next one, and `cut(length)`, which drops the cache from `length` on.
    """

    def __init__(self, first: Any, prompt_len: int, new_tokens: int, advance: Callable[[Any, int], Any],
                 cut: Callable[[int], None], cache: Any = None) -> None:
        self.first, self.prompt_len, self.new_tokens = first, prompt_len, new_tokens
        self.advance, self.cut = advance, cut
        self.cache = cache  # the backend's KV cache, for inspection
        self.token, self.step = first, 0

    def __call__(self) -> Any:
        following = self.advance(self.token, self.prompt_len + self.step)
        self.step += 1
        if self.step == self.new_tokens - 1:
            self.cut(self.prompt_len)
            self.token, self.step = self.first, 0
        else:
            self.token = following
        return self.token


class Backend(Protocol):
    name: str

    def prepare(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        """BATCHES: everything but the forward pass, done once: returns the call the windows repeat."""

    def forward(self, inputs: dict[str, Any]) -> Any:
        """BATCHES: one batch through the variant, returning the model's outputs (for the quality eval)."""

    def generation(self, prompt_ids: torch.Tensor, new_tokens: int) -> Generation:
        """GENERATION: requests of these prompts (batch_size x prompt_len token ids) and new_tokens tokens out."""

    def causal_logits(self, ids: torch.Tensor, keep: int) -> torch.Tensor:
        """GENERATION: float32 logits of the last `keep` positions of each sequence, (batch, keep, vocab), each
        sequence from an empty KV cache (perplexity windows)."""

    # GENERATION: how causal_logits gets the positions it returns, recorded in the row (eval_logits_path).
    logits_path: str

    def sync(self) -> None:
        """Block until the device has finished the work already issued."""


@dataclass
class BuildRequest:
    # fp32 (pruned) on the CPU, except 2:4 sparsity, already on its device; None for TORCH_MODEL = False
    model: torch.nn.Module | None
    quant: str
    device: str
    threads: int
    inputs: dict[str, torch.Tensor]  # an example batch: the exporter traces it
    identity: dict[str, Any]  # everything that determines the fp32 model's weights and graph (cache key)
    cache_dir: Path
    opset: int
    # (batches, description of where they came from) for static quantization's calibration
    calibration: Callable[[], tuple[list[dict[str, torch.Tensor]], str]]
    # For backends that read the model's own file (TORCH_MODEL = False): the ModelConfig, the longest sequence
    # the variant must hold (request and quality windows alike) and the run's seed.
    source: Any = None
    context: int = 0
    seed: int = 0
    # The backend's own options (bench/config.py): torch.compile mode, ONNX graph, static int8 calibration.
    compile: str = "none"
    onnx_graph: str = "fused"
    calibration_method: str = "minmax"


def module(backend: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{backend}")


def check(cfg: Any, device: str) -> None:
    """What cfg.backend needs for this configuration (a BenchConfig) on this machine, checked before any work
    (raises ConfigError)."""
    module(cfg.backend).check(cfg, device)


def require(backend: str, capability: str, needed_by: str) -> None:
    """ConfigError unless the backend offers `capability`, naming the backends that do."""
    from bench.quants import BACKENDS

    if capability not in module(backend).CAPABILITIES:
        offer = [b for b in BACKENDS if capability in module(b).CAPABILITIES]
        raise ConfigError(f"{needed_by} does not run with backend={backend!r}; choose one of: {', '.join(offer)}")


def torch_model(backend: str) -> bool:
    """Whether the backend is built from the fp32 PyTorch model (else it reads the model's own file)."""
    return module(backend).TORCH_MODEL


def reference(backend: str) -> tuple[str, str]:
    """(quant, backend) of the variant a run on this backend is scored against."""
    return module(backend).REFERENCE


def build(backend: str, req: BuildRequest) -> tuple[Backend, dict[str, Any]]:
    """The variant behind its backend, and what was done to make it (row columns, model_bytes included)."""
    return module(backend).build(req)
