"""How often the regression gate cries wolf, and how often it catches a real slowdown, on this machine.

    python benchmarks/gate_error_rates.py [--pairs 20] [--slowdowns 0.1,0.3] [--model minilm] [--quant fp32]

A/A: the same configuration measured twice, one run after the other in one process (quick profile), or with
--replicates N, N runs per side, alternating; the false-alarm rate is the share of pairs the gate calls a
regression. A/B: the candidate runs through a test backend that busy-waits a fixed fraction of the
baseline's p50 after every call, so it really is slower by that much; the detection rate is the share of
pairs it catches. Metrics are gated as `python -m analysis.gate` gates them (energy only where both sides
are measured, so on a machine without RAPL only latency is gated).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import bench.run
from analysis.gate import compare
from bench.backends.pytorch import PyTorchBackend
from bench.config import BenchConfig, ModelConfig, load_profile
from bench.results import load


class SlowedBackend(PyTorchBackend):
    """PyTorch with a busy-wait after each call: a candidate that is slower by a known amount."""

    delay_s = 0.0

    def prepare(self, inputs):
        call = super().prepare(inputs)
        delay = self.delay_s

        def slowed():
            out = call()
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass
            return out

        return slowed


def measure_pair(cfg: BenchConfig, root: Path, i: int, delay_s: float, replicates: int) -> bool:
    """Runs baseline and candidate, alternating, `replicates` runs each; True when the gate flags a regression."""
    for r in range(replicates):
        SlowedBackend.delay_s = 0.0
        bench.run.run(cfg, root / f"base{i}" / str(r))
        SlowedBackend.delay_s = delay_s
        bench.run.run(cfg, root / f"cand{i}" / str(r))
    comparisons, _, _ = compare(load(root / f"base{i}"), load(root / f"cand{i}"),
                                ["energy_j_per_inference", "latency_ms_p50"], threshold=0.05, confidence=0.95)
    return any(c.verdict == "regression" for c in comparisons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20, help="comparisons per scenario")
    parser.add_argument("--slowdowns", default="0.1,0.3", help="A/B slowdowns, as fractions of baseline p50")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--replicates", type=int, default=1, help="runs per side per comparison")
    parser.add_argument("--keep", help="keep the rows in this directory instead of a temporary one")
    args = parser.parse_args()

    bench.run.PyTorchBackend = SlowedBackend  # every run of this script goes through the test backend
    cfg = BenchConfig(model=ModelConfig(), profile=load_profile(args.profile), batch_size=args.batch_size,
                      seq_len=args.seq_len)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        probe = bench.run.run(cfg, root / "probe")
        p50_s = probe["latency_ms_p50"] / 1000
        print(f"minilm fp32 batch {args.batch_size} seq {args.seq_len}, {args.profile} profile, "
              f"{args.replicates} run(s) per side per comparison, energy source "
              f"{probe['energy_source']} (measured={probe['energy_measured']}); baseline p50 {p50_s * 1000:.2f} ms")
        false_alarms = sum(measure_pair(cfg, root / "aa", i, 0.0, args.replicates) for i in range(args.pairs))
        print(f"A/A: {false_alarms}/{args.pairs} pairs flagged as regressions: false-alarm rate "
              f"{false_alarms / args.pairs:.0%} (target <= 5%)")
        for slowdown in (float(s) for s in args.slowdowns.split(",")):
            caught = sum(measure_pair(cfg, root / f"ab{slowdown}", i, slowdown * p50_s,
                                      args.replicates) for i in range(args.pairs))
            print(f"A/B +{slowdown:.0%} per call: {caught}/{args.pairs} caught: detection rate "
                  f"{caught / args.pairs:.0%}")


if __name__ == "__main__":
    main()
