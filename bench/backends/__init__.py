"""Backends: turn the fp32 model into the variant on a device, run one prepared batch, synchronise.

One module per backend, imported only when a run asks for it (so a PyTorch run never loads ONNX Runtime).
A backend module provides `check(device)`, run before any work, and `build(req) -> (Backend, columns)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch


class Backend(Protocol):
    name: str
    # The torch module it runs, for what needs the model itself (a KV-cache decode loop, perplexity logits);
    # None where the backend runs something else (an ONNX graph).
    model: torch.nn.Module | None

    def prepare(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        """Everything but the forward pass, done once: returns the call the windows repeat."""

    def forward(self, inputs: dict[str, Any]) -> Any:
        """One batch through the variant, returning the model's outputs (for the quality eval)."""

    def sync(self) -> None:
        """Block until the device has finished the work already issued."""


@dataclass
class BuildRequest:
    model: torch.nn.Module  # fp32 (pruned) on the CPU, except 2:4 sparsity, already on its device
    quant: str
    device: str
    threads: int
    inputs: dict[str, torch.Tensor]  # an example batch: the exporter traces it
    identity: dict[str, Any]  # everything that determines the fp32 model's weights and graph (cache key)
    cache_dir: Path
    opset: int
    # (batches, description of where they came from) for static quantization's calibration
    calibration: Callable[[], tuple[list[dict[str, torch.Tensor]], str]]


def check(backend: str, device: str) -> None:
    """What the backend needs on this machine, checked before any work (raises ConfigError)."""
    importlib.import_module(f"bench.backends.{backend}").check(device)


def build(backend: str, req: BuildRequest) -> tuple[Backend, dict[str, Any]]:
    """The variant behind its backend, and what was done to make it (row columns, model_bytes included)."""
    return importlib.import_module(f"bench.backends.{backend}").build(req)
