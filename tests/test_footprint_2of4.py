"""Counting a 2:4 sparse model's parameters without a GPU: torch's 2:4 tensor, built on the CPU from its parts."""

import warnings

import pytest
import torch
from torch import nn

from bench.footprint import flops_per_inference, nonzero, parameters


def semi_structured(out_features: int, in_features: int) -> torch.Tensor:
    """A real SparseSemiStructuredTensor of that dense shape (its kernels need CUDA; counting must not)."""
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "prototype stage"
        return SparseSemiStructuredTensorCUTLASS(
            torch.Size((out_features, in_features)), torch.ones(out_features, in_features // 2, dtype=torch.float16),
            torch.zeros(out_features, in_features // 16, dtype=torch.int16), None, None, None)


def test_the_2of4_tensor_lacks_count_nonzero():
    # What made parameters() fail on prune=semi-structured-2of4: if torch grows the op, nonzero() can use it.
    with pytest.raises(NotImplementedError, match="count_nonzero"):
        torch.count_nonzero(semi_structured(64, 64))


def test_a_2of4_tensor_counts_half_its_dense_shape():
    assert nonzero(semi_structured(64, 128)) == 64 * 128 // 2
    assert nonzero(torch.tensor([[0.0, 1.0], [2.0, 0.0]])) == 2


def test_parameters_of_a_model_with_a_2of4_linear():
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 8))
    model[0].weight = nn.Parameter(semi_structured(64, 128), requires_grad=False)
    with torch.no_grad():
        model[0].bias.fill_(1.0)
        model[1].weight.fill_(1.0)
        model[1].bias.zero_()
    counts = parameters(model)
    assert counts["params_total"] == 64 * 128 + 64 + 64 * 8 + 8
    assert counts["params_nonzero"] == 64 * 128 // 2 + 64 + 64 * 8
    assert counts["linear_sparsity"] == pytest.approx((64 * 128 // 2) / (64 * 128 + 64 * 8))


def test_flops_of_a_model_with_a_2of4_linear_are_those_of_its_dense_shape():
    # FlopCounterMode decomposes linear into expand, which the 2:4 tensor refuses: the GPU check's 2:4 run failed.
    dense = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 8)).half()
    sparse = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 8)).half()
    sparse[0].weight = nn.Parameter(semi_structured(64, 128), requires_grad=False)
    weight = sparse[0].weight
    inputs = {"input": torch.ones(3, 5, 128, dtype=torch.float16)}
    assert flops_per_inference(sparse, inputs, 3) == flops_per_inference(dense, inputs, 3)
    assert flops_per_inference(dense, inputs, 3)["flops_per_inference"] == 2 * 5 * (128 * 64 + 64 * 8)
    assert sparse[0].weight is weight  # put back for the measured run
