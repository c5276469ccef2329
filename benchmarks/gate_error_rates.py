"""How often the CI gate cries wolf, and how often it catches a real slowdown, measured as the workflow gates.

    python benchmarks/gate_error_rates.py [--pairs 40] [--slowdowns 0.1,0.3] [--rounds N] [--pick quant=fp32 ...]
                                          [--skip-job] [--keep DIR]

The procedure is the example workflow's (examples/energy-gate.yml): its grid (GRID), `python -m bench.ab`'s
rounds, interleaved A B, B A, ... (bench.ab.schedule), each round's runs paired by the gate (analysis.gate).
One configuration of the grid is measured (the first value of each axis, or --pick), in this process, so that
40 pairs take minutes, not hours; it is gated at the level the workflow's gate tests its first comparison
(Holm's first step: family-wise 1 - confidence divided by the comparisons the workflow makes, configurations x
metrics gated here), the level a regression of that configuration alone would face.

- A/A: both sides unchanged; a pair flagged as a regression is a false alarm. A job of m comparisons raises at
  most m times the rate of one (Holm's first step is Bonferroni's), which is the figure printed against 5%.
- A/B: the candidate's every call also busy-waits the given fraction of its own duration (`slowed`, wrapped
  around the PyTorch backend that is measured), so it is slower by exactly that much; the share of pairs
  caught is the detection rate.

The last line is the wall time of one real gate job of the whole grid (`python -m bench.ab`, A/A, subprocesses
as in the workflow), unless --skip-job.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

import bench.backends.pytorch as pytorch
import bench.run
from analysis.gate import UnusableInput, compare
from bench.ab import DEFAULT_ROUNDS, round_id, schedule
from bench.config import CONF_DIR, BenchConfig, register_configs
from bench.results import load

WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "energy-gate.yml"
METRICS = ["energy_j_per_inference", "latency_ms_p50"]


def slow_call(call: Callable[[], Any], fraction: float) -> Callable[[], Any]:
    """`call`, then a busy-wait of `fraction` of the time it took: the same work, `fraction` slower."""

    def slowed() -> Any:
        start = time.perf_counter()
        out = call()
        end = time.perf_counter()
        until = end + fraction * (end - start)
        while time.perf_counter() < until:
            pass
        return out

    return slowed


@contextlib.contextmanager
def slowed(fraction: float) -> Iterator[None]:
    """PyTorch variants built inside the block run every measured call `fraction` slower (bench.backends.pytorch)."""
    build = pytorch.build

    def slowed_build(req: Any) -> tuple[Any, dict[str, Any]]:
        backend, info = build(req)
        prepare = backend.prepare
        backend.prepare = lambda inputs: slow_call(prepare(inputs), fraction)
        return backend, info

    pytorch.build = slowed_build
    try:
        yield
    finally:
        pytorch.build = build


def workflow_grid() -> list[str]:
    """The overrides every round of the example workflow runs (its GRID)."""
    return yaml.safe_load(WORKFLOW.read_text())["env"]["GRID"].split()


def one_configuration(grid: list[str], picks: list[str]) -> tuple[list[str], int]:
    """The grid with one value per axis (the first, or the one picked), and how many configurations it has."""
    chosen = dict(p.split("=", 1) for p in picks)
    overrides, configurations = [], 1
    for override in grid:
        name, value = override.split("=", 1)
        values = value.split(",")
        if name in chosen and chosen[name] not in values:
            raise SystemExit(f"--pick {name}={chosen[name]}: the workflow's grid has {name}={value}")
        configurations *= len(values)
        overrides.append(f"{name}={chosen.get(name, values[0])}")
    return overrides, configurations


def compose(overrides: list[str]) -> BenchConfig:
    """The configuration `python -m bench <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=overrides))


def gate_pair(cfg: BenchConfig, root: Path, rounds: int, fraction: float, confidence: float) -> tuple[str, float]:
    """Both sides interleaved as bench.ab runs them, then gated: (regression | pass | undecided, detectable).

    Undecided: no round left with an `ok` run on both sides (docs/protocol.md §5 keeps invalid rows out).
    """
    for i, side in schedule(rounds):
        with slowed(fraction if side == "candidate" else 0.0):
            bench.run.run(cfg, root / side / round_id(i) / "0", round_id(i))
    try:
        outcome = compare(load(root / "baseline"), load(root / "candidate"), METRICS, 0.05, confidence)
    except UnusableInput:
        return "undecided", math.nan
    latency = [c.detectable for c in outcome.comparisons if c.metric == "latency_ms_p50" and c.detectable]
    regressed = any(c.verdict == "regression" for c in outcome.comparisons)
    return "regression" if regressed else "pass", latency[0] if latency else math.nan


def rate(verdicts: list[str], what: str) -> str:
    """`3/40 flagged (8%; 1 undecided)`: regressions among the pairs, and pairs the gate could not decide."""
    hits, undecided = verdicts.count("regression"), verdicts.count("undecided")
    return f"{hits}/{len(verdicts)} {what} ({hits / len(verdicts):.0%}" + (
        f"; {undecided} undecided)" if undecided else ")")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40, help="gate jobs per condition (default %(default)s)")
    parser.add_argument("--slowdowns", default="0.1,0.3", help="A/B slowdowns, fractions of each call's time")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per side (default: bench.ab's)")
    parser.add_argument("--pick", nargs="*", default=[], help="axis=value: the grid's configuration to measure")
    parser.add_argument("--confidence", type=float, default=0.95, help="the gate's family-wise confidence")
    parser.add_argument("--skip-job", action="store_true", help="do not time a real gate job of the whole grid")
    parser.add_argument("--keep", help="keep the rows in this directory instead of a temporary one")
    args = parser.parse_args(argv)
    slowdowns = [float(s) for s in args.slowdowns.split(",") if s]
    grid = workflow_grid()
    overrides, configurations = one_configuration(grid, args.pick)
    cfg = compose(overrides)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        began = time.monotonic()
        probe = bench.run.run(cfg, root / "probe")
        logging.getLogger("bench").setLevel(logging.ERROR)  # the meter's warning once, not at every run
        measured = bool(probe["energy_measured"])
        comparisons = configurations * (2 if measured else 1)
        level = 1 - (1 - args.confidence) / comparisons
        runs = 2 * args.rounds * args.pairs * (1 + len(slowdowns))
        print(f"{' '.join(overrides)} (one of the {configurations} configurations of the workflow's grid "
              f"`{' '.join(grid)}`); {args.rounds} interleaved rounds per side; energy source "
              f"{probe['energy_source']} ({'measured, gated' if measured else 'an estimate, not gated'}); the "
              f"workflow's gate makes {comparisons} comparison(s), so each pair is gated at {level:.4g} "
              f"(family-wise {args.confidence:.0%}, Holm's first step); {runs} runs, about "
              f"{runs * (time.monotonic() - began) / 60:.0f} min", flush=True)
        start = time.monotonic()
        alarms = [gate_pair(cfg, root / "aa" / str(i), args.rounds, 0.0, level) for i in range(args.pairs)]
        pair_s = (time.monotonic() - start) / args.pairs
        verdicts = [verdict for verdict, _ in alarms]
        per_comparison = verdicts.count("regression") / args.pairs
        floors = sorted(d for _, d in alarms if not math.isnan(d))
        seen = f"; median latency regression it could see: +{floors[len(floors) // 2]:.1%}" if floors else ""
        print(f"A/A: {rate(verdicts, 'flagged')}: false alarms per comparison {per_comparison:.1%}, per job of "
              f"{comparisons} <= {min(1.0, comparisons * per_comparison):.1%} (target <= 5%){seen}", flush=True)
        for fraction in slowdowns:
            verdicts = [gate_pair(cfg, root / f"ab{fraction}" / str(i), args.rounds, fraction, level)[0]
                        for i in range(args.pairs)]
            target = " (target >= 80%)" if fraction == 0.1 else " (target >= 95%)" if fraction == 0.3 else ""
            print(f"A/B +{fraction:.0%} per call: {rate(verdicts, 'caught')}{target}", flush=True)
        print(f"one pair (2 x {args.rounds} runs of one configuration, in this process): {pair_s:.0f} s")
    if not args.skip_job:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "bench.ab", "--out", f"{tmp}/ab", "--rounds", str(args.rounds),
                                   "--", *grid],
                                  capture_output=True, text=True)
            print(f"one gate job of the workflow's grid (python -m bench.ab, A/A, {args.rounds} rounds): "
                  f"{(time.monotonic() - start) / 60:.1f} min (target <= 10 min), exit status {done.returncode}")


if __name__ == "__main__":
    main()
