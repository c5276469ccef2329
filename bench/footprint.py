"""What a variant costs before it runs: parameters, nonzeros, bytes of weights in memory, FLOPs per inference."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

FLOPS_METHOD = "counted: torch.utils.flop_counter over one batch of the fp32 PyTorch graph (dense)"


def nonzero(tensor: torch.Tensor) -> int:
    """Nonzero entries. A 2:4 sparse tensor has no count_nonzero: it stores two of every four entries of its
    dense shape, the rest being zero by construction, so half its entries count (stored zeros included)."""
    from torch.sparse import SparseSemiStructuredTensor

    if isinstance(tensor, SparseSemiStructuredTensor):
        return tensor.numel() // 2
    return int(torch.count_nonzero(tensor))


def parameters(model: torch.nn.Module) -> dict[str, float]:
    """Counts (in dense shape), and the share of zeros among Linear weights: what pruning changes."""
    params = list(model.parameters())
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    linear_total = sum(w.numel() for w in linear)
    return {"params_total": sum(p.numel() for p in params),
            "params_nonzero": sum(nonzero(p) for p in params),
            "linear_sparsity": 1 - sum(nonzero(w) for w in linear) / linear_total if linear else 0.0}


@torch.inference_mode()
def flops_per_inference(model: torch.nn.Module, inputs: dict[str, torch.Tensor], samples: int) -> dict[str, Any]:
    """FLOPs of one forward divided by the samples in it.

    Counted on the (pruned) fp32 graph: the operations a quantized or exported variant executes are the
    same ones in another number format. Zeros left by unstructured pruning are counted, because dense
    kernels multiply them too.
    """
    counter = FlopCounterMode(display=False)
    with _dense_stand_ins(model), counter:
        model(**inputs)
    return {"flops_per_inference": counter.get_total_flops() / samples, "flops_method": FLOPS_METHOD}


@contextlib.contextmanager
def _dense_stand_ins(model: torch.nn.Module) -> Iterator[None]:
    """2:4 weights replaced by dense zeros of their shape while FLOPs are counted. The counter decomposes
    `linear` into ops torch's 2:4 tensor does not implement (expand: the 2:4 run failed on CUDA), and what it
    counts depends on shapes only."""
    from torch.sparse import SparseSemiStructuredTensor

    sparse = [(m, m.weight) for m in model.modules() if isinstance(getattr(m, "weight", None), SparseSemiStructuredTensor)]
    for module, weight in sparse:
        module.weight = torch.nn.Parameter(torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device),
                                           requires_grad=False)
    try:
        yield
    finally:
        for module, weight in sparse:
            module.weight = weight


def _nbytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):  # quantized Linear keeps (weight, bias) packed in a tuple
        return sum(_nbytes(v) for v in value)
    if not isinstance(value, torch.Tensor):
        return 0
    if hasattr(value, "__tensor_flatten__") and type(value) is not torch.Tensor:
        names, _ = value.__tensor_flatten__()  # tensor subclasses (torchao, 2:4) hold their data in inner tensors
        return sum(_nbytes(getattr(value, name)) for name in names)
    return value.numel() * value.element_size()


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of every tensor in the state dict, in its stored format (int8 weights count one byte each)."""
    return sum(_nbytes(v) for v in model.state_dict().values())
