"""Precision and quantization variants of a PyTorch model."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import torch

from bench.errors import ConfigError
from bench.quants import QUANTS, TORCHAO

DTYPES = {name: getattr(torch, q.float_dtype) for name, q in QUANTS.items() if not q.quantized}
TORCHAO_CONFIGS = {"int8-wo": "Int8WeightOnlyConfig", "int4-wo": "Int4WeightOnlyConfig"}
INT4_GROUP = 128  # torchao's default group size; Linears whose input width it does not divide stay bf16


def dtype_of(quant: str) -> torch.dtype:
    """The floating-point type a variant's unquantized parts (and activations) run in."""
    return getattr(torch, QUANTS[quant].float_dtype)


def check_available(quant: str) -> None:
    if quant in TORCHAO and importlib.util.find_spec("torchao") is None:
        raise ConfigError(f"quant={quant!r} needs torchao, which is not installed: pip install 'energy-bench[gpu]'")


def apply_quant(model: torch.nn.Module, quant: str, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The variant on `device`, and what was done (recorded in the row)."""
    if quant in DTYPES:
        return model.to(device=device, dtype=DTYPES[quant]), {"quantized_layers": 0}
    if quant == "int8":
        # Dynamic int8 of every nn.Linear (weights int8, activations quantized per call), CPU kernels only.
        # torch.ao's API is deprecated in favour of torchao, which is slower on CPU without torch.compile.
        _conv1d_to_linear(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
            quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        layers = sum(1 for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
        return quantized, {"quantized_layers": layers}
    if quant in TORCHAO:
        return _weight_only(model, quant, device)
    raise ValueError(f"unknown quant {quant!r}")


def _weight_only(model: torch.nn.Module, quant: str, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """torchao weight-only: int8 or int4 weights, bf16 activations (what its CUDA kernels take)."""
    import torchao.quantization as ao

    model = model.to(device=device, dtype=torch.bfloat16)
    linear = torch.nn.Linear
    fits = (lambda m, _: isinstance(m, linear)) if quant == "int8-wo" else \
        (lambda m, _: isinstance(m, linear) and m.in_features % INT4_GROUP == 0)
    layers = sum(1 for m in model.modules() if fits(m, ""))
    ao.quantize_(model, getattr(ao, TORCHAO_CONFIGS[quant])(), filter_fn=fits)
    return model, {"quantized_layers": layers}


def _conv1d_to_linear(model: torch.nn.Module) -> None:
    """Replaces transformers' Conv1D (GPT-2's projections: a linear layer with its weight transposed) by the
    equivalent nn.Linear, in place, so dynamic int8 quantizes those layers too and not only the LM head."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.nf, device=child.weight.device,
                                         dtype=child.weight.dtype)
                linear.weight.data.copy_(child.weight.data.t())
                linear.bias.data.copy_(child.bias.data)
                setattr(parent, name, linear)
