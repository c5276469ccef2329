"""Pruning variants of an fp32 encoder: unstructured magnitude, attention heads, feed-forward neurons, 2:4."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bench.config import ConfigError, PruneConfig


@dataclass(frozen=True)
class Layout:
    """Where an architecture keeps the parts structured pruning cuts, relative to each transformer layer."""

    layers: str
    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str


BERT = Layout("encoder.layer", "attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "intermediate.dense", "output.dense")
LAYOUTS = {
    "bert": BERT,
    "roberta": BERT,
    "distilbert": Layout("transformer.layer", "attention.q_lin", "attention.k_lin", "attention.v_lin",
                         "attention.out_lin", "ffn.lin1", "ffn.lin2"),
}


def apply_prune(model: nn.Module, cfg: PruneConfig, device: str, dtype: torch.dtype
                ) -> tuple[nn.Module, dict[str, Any]]:
    """The pruned model and what was done, for the row. fp32 on the CPU, except 2:4, whose sparse format
    exists only in fp16/bf16 on CUDA: that one comes back already on `device` in `dtype`."""
    info: dict[str, Any] = {}
    if cfg.name == "l1-unstructured":
        linears = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
        torch_prune.global_unstructured(linears, pruning_method=torch_prune.L1Unstructured, amount=cfg.amount)
        for module, name in linears:
            torch_prune.remove(module, name)  # permanent: zeros in a plain dense tensor, no mask hook
    elif cfg.name in ("heads", "ffn"):
        layout = layout_of(model)
        cut = prune_heads if cfg.name == "heads" else prune_ffn
        info["prune_removed"] = sum(cut(layer, layout, cfg.amount) for layer in _get(model.base_model, layout.layers))
    elif cfg.name == "semi-structured-2of4":
        info["prune_removed"] = semi_structured_2of4(model.to(device=device, dtype=dtype))
    return model, info


def check_supported(cfg: PruneConfig, device: str) -> None:
    """2:4 kernels need an Ampere or newer GPU; say so before any work rather than fail inside torch."""
    if cfg.name == "semi-structured-2of4" and device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ConfigError(f"prune=semi-structured-2of4 needs compute capability 8.0 or newer (Ampere); "
                              f"{torch.cuda.get_device_name(device)} has {major}.{minor}. Choose prune=none, "
                              "l1-unstructured, heads or ffn")


def layout_of(model: nn.Module) -> Layout:
    model_type = model.config.model_type
    if model_type not in LAYOUTS:
        raise ConfigError(f"structured pruning does not know the layout of model_type={model_type!r}; "
                          f"it supports: {', '.join(LAYOUTS)} (use prune=l1-unstructured for any model)")
    return LAYOUTS[model_type]


def _get(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, name, value)


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    out.weight.data = linear.weight.data[rows].clone()
    if linear.bias is not None:
        out.bias.data = linear.bias.data[rows].clone()
    return out


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    out.weight.data = linear.weight.data[:, columns].clone()
    if linear.bias is not None:
        out.bias.data = linear.bias.data.clone()  # the output bias is added once, whatever feeds it
    return out


def _lowest(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices to keep: all but the round(amount × n) lowest scores, at least one, in their original order."""
    remove = min(round(amount * len(scores)), len(scores) - 1)
    return torch.sort(torch.argsort(scores, descending=True)[:len(scores) - remove]).values


def prune_heads(layer: nn.Module, layout: Layout, amount: float) -> int:
    """Removes a layer's lowest-norm heads from Q, K, V and the output projection; returns how many.

    The attention reshapes with -1 heads, so narrower projections are all it takes to run fewer heads.
    """
    q, k, v, out = (_get(layer, p) for p in (layout.query, layout.key, layout.value, layout.attn_out))
    head_size = q.weight.shape[0] // _heads(layer, layout)
    per_head = lambda w: w.reshape(-1, head_size, w.shape[-1]).pow(2).sum((1, 2))  # noqa: E731
    scores = per_head(q.weight) + per_head(k.weight) + per_head(v.weight) + per_head(out.weight.T)
    keep_heads = _lowest(scores, amount)
    rows = (keep_heads[:, None] * head_size + torch.arange(head_size)).flatten()
    for path, linear in ((layout.query, q), (layout.key, k), (layout.value, v)):
        _set(layer, path, _keep_rows(linear, rows))
    _set(layer, layout.attn_out, _keep_columns(out, rows))
    attention = _get(layer, layout.query.rpartition(".")[0])
    for name in ("num_attention_heads", "n_heads"):
        if hasattr(attention, name):
            setattr(attention, name, len(keep_heads))
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = len(rows)
    return len(scores) - len(keep_heads)


def _heads(layer: nn.Module, layout: Layout) -> int:
    attention = _get(layer, layout.query.rpartition(".")[0])
    return getattr(attention, "num_attention_heads", None) or attention.n_heads


def prune_ffn(layer: nn.Module, layout: Layout, amount: float) -> int:
    """Removes a layer's lowest-norm intermediate neurons (a row of the first Linear, a column of the second)."""
    first, second = _get(layer, layout.ffn_in), _get(layer, layout.ffn_out)
    scores = first.weight.pow(2).sum(1) + second.weight.pow(2).sum(0)
    keep = _lowest(scores, amount)
    _set(layer, layout.ffn_in, _keep_rows(first, keep))
    _set(layer, layout.ffn_out, _keep_columns(second, keep))
    return len(scores) - len(keep)


def semi_structured_2of4(model: nn.Module) -> int:
    """Zeroes the two smallest of every four weights of each Linear (the kernels' shape rules allowing) and
    stores it in torch's 2:4 format; returns how many Linears were converted."""
    from torch.sparse import to_sparse_semi_structured

    converted = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features % 64 == 0 and module.out_features % 64 == 0:
            w = module.weight.data
            groups = w.reshape(-1, 4)
            mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.abs().topk(2, dim=1).indices, True)
            dense = (groups * mask).reshape(w.shape)
            module.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
            converted += 1
    return converted
