"""Eager PyTorch on CPU or CUDA."""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.backends import BuildRequest
from bench.footprint import model_bytes
from bench.variants.quant import apply_quant


def check(device: str) -> None:
    """Eager PyTorch runs wherever torch sees the device (checked with the device itself)."""


def build(req: BuildRequest) -> tuple[PyTorchBackend, dict[str, Any]]:
    variant, info = apply_quant(req.model, req.quant, req.device)
    return PyTorchBackend(variant, req.device), {**info, "model_bytes": model_bytes(variant)}


class PyTorchBackend:
    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model = model
        self.device = torch.device(device)

    def prepare(self, inputs: dict[str, torch.Tensor]) -> Callable[[], Any]:
        on_device = {k: v.to(self.device) for k, v in inputs.items()}
        model = self.model

        @torch.inference_mode()
        def call() -> Any:
            return model(**on_device)

        return call

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**{k: v.to(self.device) for k, v in inputs.items()})

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
