"""An energy benchmark with pytest-benchmark: `pytest examples/test_energy_example.py --benchmark-json=out.json`.

Each benchmark's `extra_info` in out.json then holds energy_j_per_call, its interval and its energy_source
(`estimate` where the machine has no readable counter: a model, not a measurement).
"""

import torch


def test_linear_layer_energy(energy_benchmark):
    layer = torch.nn.Linear(256, 256)
    x = torch.randn(64, 256)
    with torch.inference_mode():
        out = energy_benchmark(layer, x)
    assert out.shape == (64, 256)
