"""The fixed protocol the harness used before against the adaptive one: wall time and interval width, side by side.

    python benchmarks/protocol.py [--quants fp32,int8,bf16] [--batch-sizes 1,8,32] [--profile standard]
                                  [--seq-len 128] [--model-path DIR]

For each configuration (MiniLM, the default model, on the CPU) the variant is prepared once, then measured by
both protocols one after the other, the order alternating from one configuration to the next so that drift
on a noisy machine hits both alike:

- fixed: warm-up of at least 10 calls and 2 s, one 5 s idle segment, 5 windows of at least 2 s and 10 calls
  each; its figure is the median of the windows and its interval their range (a 93.75% interval if the
  windows are independent, printed as "95%" at the time);
- adaptive: docs/protocol.md §2 with the chosen profile: idle segments, warm-up until latency settles,
  windows until the t-interval's half-width is profile.target_ci or the time cap.

Wall time counts the protocol (idle, warm-up, windows), not loading or preparing the variant. The last line is
the total wall-time ratio adaptive / fixed; issue 12's bar is 0.5 or less on the default 9 configurations.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from bench.backends.pytorch import PyTorchBackend
from bench.config import MeterConfig, ModelConfig, ProfileConfig, load_profile
from bench.digits import fmt, significant_digits
from bench.inputs import synthetic_batch
from bench.measure import idle_baseline, measure
from bench.meters import EnergyMeter, open_meter
from bench.models import load_config, load_model
from bench.variants.quant import apply_quant


@dataclass
class Outcome:
    seconds: float  # wall time of the protocol
    joules: float  # net joules per inference
    half_width: float  # relative half-width of the interval
    windows: int
    note: str


def _calls_until(call: Callable[[], Any], min_s: float, min_calls: int) -> tuple[int, float]:
    start = time.perf_counter()
    made = 0
    while made < min_calls or time.perf_counter() - start < min_s:
        call()
        made += 1
    return made, time.perf_counter() - start


def fixed(call: Callable[[], Any], meter: EnergyMeter, samples: int) -> Outcome:
    """The protocol before issue 12, with its parameters."""
    start = time.perf_counter()
    _calls_until(call, 2.0, 10)
    meter.start()
    t0 = time.perf_counter()
    time.sleep(5.0)
    idle_w = meter.stop() / (time.perf_counter() - t0)
    per_inference = []
    for _ in range(5):
        meter.start()
        n, s = _calls_until(call, 2.0, 10)
        per_inference.append((meter.stop() - idle_w * s) / (n * samples))
    median = statistics.median(per_inference)
    half = (max(per_inference) - min(per_inference)) / 2 / median if median > 0 else float("inf")
    return Outcome(time.perf_counter() - start, median, half, 5, "range of 5 windows (93.75%)")


def adaptive(call: Callable[[], Any], meter: EnergyMeter, samples: int, profile: ProfileConfig) -> Outcome:
    start = time.perf_counter()
    idle = idle_baseline(meter, lambda: None, profile, on_cuda=False)
    m = measure(call, lambda: None, meter, profile, profile.min_window_s, idle)
    found = m.interval(profile.confidence)
    note = f"{found.level:.0%} t, " + ("target met" if m.stop == "target" else f"target MISSED ({m.stop})")
    return Outcome(time.perf_counter() - start, m.figure().mean / samples, found.relative_half_width,
                   len(m.window_calls), note)


def _shown(o: Outcome, estimate: bool) -> str:
    """The figure to the digits its half-width supports (an estimate's to two at most, bench/digits.py)."""
    return fmt(o.joules, significant_digits(o.joules, o.joules * (1 - o.half_width), o.joules * (1 + o.half_width),
                                            estimate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quants", default="fp32,int8,bf16")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--profile", default="standard", help="the adaptive protocol's profile (conf/profile/)")
    parser.add_argument("--model-path", help="a local model directory instead of MiniLM")
    args = parser.parse_args()

    profile = load_profile(args.profile)
    model_cfg = ModelConfig(name="local", name_or_path=args.model_path) if args.model_path else ModelConfig()
    config, ref, _ = load_config(model_cfg, args.seq_len)
    fp32 = load_model(model_cfg, config, ref, seed=0)
    meter = open_meter(MeterConfig(), "cpu", cores_in_use=torch.get_num_threads())
    estimate = not meter.measured
    print(f"{model_cfg.name} seq {args.seq_len}, meter {meter.source}"
          f"{'' if meter.measured else ' (an estimate, not a measurement)'}, adaptive profile {profile.name} "
          f"(target +-{profile.target_ci:.0%}, cap {profile.max_seconds:g} s)")
    print(f"{'config':<16}{'fixed s':>9}{'fixed +-':>10}{'adaptive s':>12}{'adaptive +-':>13}{'windows':>9}  "
          f"{'J/inf fixed':>12}{'J/inf adaptive':>16}  adaptive interval")
    totals = {"fixed": 0.0, "adaptive": 0.0}
    order = 0
    for quant in args.quants.split(","):
        variant, _ = apply_quant(copy.deepcopy(fp32), quant, "cpu")  # converting in place would change fp32
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            batch = synthetic_batch(config, batch_size, args.seq_len, seed=0)
            call = PyTorchBackend(variant, "cpu").prepare(batch.inputs)
            runs = {"fixed": lambda: fixed(call, meter, batch.samples),
                    "adaptive": lambda: adaptive(call, meter, batch.samples, profile)}
            names = ["fixed", "adaptive"] if order % 2 == 0 else ["adaptive", "fixed"]
            order += 1
            out = {name: runs[name]() for name in names}
            f, a = out["fixed"], out["adaptive"]
            totals["fixed"] += f.seconds
            totals["adaptive"] += a.seconds
            print(f"{quant + ' b' + str(batch_size):<16}{f.seconds:>9.1f}{f.half_width:>10.1%}{a.seconds:>12.1f}"
                  f"{a.half_width:>13.1%}{a.windows:>9}  {_shown(f, estimate):>12}{_shown(a, estimate):>16}  {a.note}",
                  flush=True)
    meter.close()
    ratio = totals["adaptive"] / totals["fixed"]
    print(f"total: fixed {totals['fixed']:.1f} s, adaptive {totals['adaptive']:.1f} s; "
          f"ratio adaptive/fixed {ratio:.2f} (bar: <= 0.5)")


if __name__ == "__main__":
    main()
