"""Harness overhead: the p50 latency the harness reports against a bare timing loop, same model, same process.

    python benchmarks/overhead.py [--batch-size 1] [--seq-len 128] [--rounds 5] [--calls 200]

Rounds alternate bare loop and harness so drift on a noisy machine hits both; the ratio of medians per
round is printed, then the median ratio (aim: <= 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.backends.pytorch import PyTorchBackend
from bench.config import MeterConfig, ModelConfig, ProfileConfig
from bench.measure import measure, summarise
from bench.meters import open_meter
from bench.models import load_config, load_model
from bench.workloads.classify import synthetic_batch


def bare_p50_ms(model: torch.nn.Module, inputs: dict[str, torch.Tensor], calls: int) -> float:
    latencies = []
    with torch.inference_mode():
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            model(**inputs)
            latencies.append(time.perf_counter_ns() - t0)
    return statistics.median(latencies) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="calls per bare loop and per harness round")
    args = parser.parse_args()

    model_cfg = ModelConfig()
    config, ref, _ = load_config(model_cfg, args.seq_len)
    model = load_model(model_cfg, config, ref, seed=0)
    batch = synthetic_batch(config, args.batch_size, args.seq_len, seed=0)
    backend = PyTorchBackend(model, "cpu")
    call = backend.prepare(batch.inputs)
    meter = open_meter(MeterConfig(), "cpu", cores_in_use=torch.get_num_threads())
    # One window of exactly `calls` calls, so both sides time the same number of calls.
    profile = ProfileConfig(name="overhead", warmup_calls=0, warmup_s=0, idle_s=0.2, windows=1,
                            min_window_s=0, min_calls=args.calls)
    bare_p50_ms(model, batch.inputs, 20)  # warm-up for both sides
    ratios = []
    print(f"minilm fp32 batch {args.batch_size} seq {args.seq_len}, {args.calls} calls per side per round, "
          f"meter {meter.source}")
    for r in range(args.rounds):
        bare = bare_p50_ms(model, batch.inputs, args.calls)
        harness = summarise(measure(call, backend.sync, meter, profile, 0), batch.samples, batch.tokens,
                            profile)["latency_ms_p50"]
        ratios.append(harness / bare)
        print(f"round {r}: bare p50 {bare:.3f} ms, harness p50 {harness:.3f} ms, ratio {harness / bare:.3f}")
    meter.close()
    print(f"median ratio harness/bare over {args.rounds} rounds: {statistics.median(ratios):.3f} (aim <= 1.03)")


if __name__ == "__main__":
    main()
