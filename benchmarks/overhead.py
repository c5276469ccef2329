"""Harness overhead: the p50 latency the harness reports against a bare timing loop, same model, same process.

    python benchmarks/overhead.py [--batch-size 1] [--seq-len 128] [--rounds 5] [--calls 200]

Short rounds alternate bare loop and harness, so drift on a noisy machine hits both sides alike; the
figure is the ratio of the two sides' p50 over all their calls (aim: <= 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.backends.pytorch import PyTorchBackend
from bench.config import MeterConfig, ModelConfig, ProfileConfig
from bench.measure import idle_baseline, measure, summarise
from bench.meters import open_meter
from bench.models import load_config, load_model
from bench.inputs import synthetic_batch


def bare_latencies_ms(model: torch.nn.Module, inputs: dict[str, torch.Tensor], calls: int) -> list[float]:
    latencies = []
    with torch.inference_mode():
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            model(**inputs)
            latencies.append((time.perf_counter_ns() - t0) / 1e6)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=40, help="calls per side per round")
    args = parser.parse_args()

    model_cfg = ModelConfig()
    config, ref, _ = load_config(model_cfg, args.seq_len)
    model = load_model(model_cfg, config, ref, seed=0)
    batch = synthetic_batch(config, args.batch_size, args.seq_len, seed=0)
    backend = PyTorchBackend(model, "cpu")
    call = backend.prepare(batch.inputs)
    meter = open_meter(MeterConfig(), "cpu", cores_in_use=torch.get_num_threads())
    # One window of exactly `calls` calls (no warm-up beyond one call, no time for a second window), so both
    # sides time the same number of calls.
    profile = ProfileConfig(name="overhead", warmup_calls=0, warmup_s=0, warmup_max_s=0, idle_s=0.2, idle_segments=2,
                            min_windows=1, min_window_s=0, min_calls=args.calls, max_seconds=0)
    bare_latencies_ms(model, batch.inputs, 20)  # warm-up for both sides
    bare: list[float] = []
    harness: list[float] = []
    print(f"minilm fp32 batch {args.batch_size} seq {args.seq_len}, {args.rounds} rounds of {args.calls} calls "
          f"per side, meter {meter.source}")
    for _ in range(args.rounds):
        bare += bare_latencies_ms(model, batch.inputs, args.calls)
        idle = idle_baseline(meter, backend.sync, profile, on_cuda=False)
        harness += summarise(measure(call, backend.sync, meter, profile, 0, idle), batch.samples, batch.tokens,
                             profile)["latency_ms_samples"]
    meter.close()
    bare_p50, harness_p50 = statistics.median(bare), statistics.median(harness)
    print(f"bare p50 {bare_p50:.3f} ms, harness p50 {harness_p50:.3f} ms over {len(bare)} calls each")
    print(f"ratio harness/bare: {harness_p50 / bare_p50:.3f} (aim <= 1.03)")

if __name__ == "__main__":
    main()
