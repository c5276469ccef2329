"""`python -m bench.ab`: measure a baseline and a candidate alternately on one machine, then gate them.

    python -m bench.ab --out ab [--rounds 10] [gate options] -- profile=quick quant=fp32,int8 batch_size=1,8

Each round runs the grid (the overrides after `--`, a `python -m bench ... -m` sweep) once per side, back to back,
and the side that goes first alternates (baseline first in odd rounds, candidate first in even ones), so drift
during the job and neighbours on a shared machine hit both sides alike. Round i of a side is the sweep
`<out>/<side>/round-<i>`, whose name becomes its rows' sweep_id; `python -m analysis.gate` pairs the two sides'
runs by it and tests the per-round ratios (docs/ci-gate.md). Two uses:

- two configurations of one checkout: `--baseline "quant=fp32" --candidate "quant=int8"` add overrides to each
  side (two model paths, two quantization settings); where they change a configuration key column, `--ignore`
  it (here `--ignore quant`) so the gate matches the two across it;
- two checkouts of the code: `--baseline-python base/.venv/bin/python --candidate-python pr/.venv/bin/python`
  runs each side with the interpreter of the environment it is installed in, isolated (`python -I`: neither
  the current directory nor PYTHONPATH is searched), so each side runs its own installed code.

Exit status: the gate's (0 no regression, 1 a regression, 2 could not decide), and 2 when bad input stops it
before any measurement or a side fails to run.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.gate import METRICS, UnusableInput, check, comma_list, gate, undecided
from bench.results import row_files
from bench.row import key_columns

DEFAULT_ROUNDS = 10  # the workflow's and the error-rate measurement's (docs/ci-gate.md)
SIDES = ("baseline", "candidate")
# Set by this command for every round; a shared or side override of them would break the pairing.
OWN = ("results_dir", "hydra.sweep.dir", "hydra.sweep.subdir", "resume")


@dataclass
class Side:
    name: str
    python: str
    isolated: bool  # its own installation: `python -I`, so the current directory cannot shadow it
    overrides: list[str]

    def command(self, *args: str) -> list[str]:
        return [self.python, *(["-I"] if self.isolated else []), *args]


def round_id(i: int) -> str:
    """The sweep name (hence sweep_id) of round i, from 1: the gate pairs the two sides' runs by it."""
    return f"round-{i:02d}"


def schedule(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in the order they run: A B, B A, A B, ... so each side goes first in half the rounds."""
    return [(i, side) for i in range(1, rounds + 1) for side in (SIDES if i % 2 else SIDES[::-1])]


def _where(side: Side) -> str:
    """Where `side` imports bench from, checked by running its interpreter as the rounds will."""
    try:
        done = subprocess.run(side.command("-c", "import bench; print(bench.__file__)"), capture_output=True,
                              text=True, timeout=120)
    except OSError as e:
        raise UnusableInput(f"--{side.name}-python {side.python}: cannot run it ({e})") from None
    if done.returncode:
        raise UnusableInput(f"--{side.name}-python {side.python} cannot import bench (is energy-bench installed in "
                            f"its environment?): {done.stderr.strip().splitlines()[-1:]}")
    return str(Path(done.stdout.strip()).parent)


def _column(override: str) -> str:
    """The row column a Hydra override sets (quant=int8 -> quant, prune.amount=0.3 -> prune_amount)."""
    name = override.lstrip("+~").split("=")[0]
    return {"model.name": "model", "model.revision": "model_revision", "model.weights": "weights",
            "prune.name": "prune", "prune.amount": "prune_amount", "scenario.name": "scenario",
            "scenario.prompt_len": "prompt_len", "scenario.new_tokens": "new_tokens", "eval.name": "eval",
            "profile.name": "profile"}.get(name, name)


def check_sides(sides: list[Side], out: Path, rounds: int, grid: list[str], ignore: list[str]) -> dict[str, str]:
    """Everything checkable before measuring; returns where each side's code lives."""
    if rounds < 2:
        raise UnusableInput(f"--rounds {rounds}: give at least 2 (the gate's paired test needs two rounds to see "
                            f"their spread; {DEFAULT_ROUNDS} is the default)")
    if out.exists() and row_files(out):
        raise UnusableInput(f"--out {out} already holds result rows; choose a new directory (rounds of two jobs "
                            "would be paired with each other)")
    for where, overrides in (("shared overrides", grid), *((f"--{s.name}", s.overrides) for s in sides)):
        if taken := [o for o in overrides if o.lstrip("+~").split("=")[0] in OWN]:
            raise UnusableInput(f"{where}: {', '.join(taken)} is set by bench.ab ({', '.join(OWN)}); use --out")
        if "-m" in overrides or "--multirun" in overrides:
            raise UnusableInput(f"{where}: leave out -m; every round is a sweep already")
    differ = {_column(o) for o in set(sides[0].overrides) ^ set(sides[1].overrides)} & set(key_columns())
    if unmatched := sorted(differ - set(ignore)):
        raise UnusableInput(f"--baseline and --candidate set configuration key column(s) {', '.join(unmatched)} "
                            f"differently: add --ignore {','.join(unmatched)} so the gate matches the two sides "
                            "across them")
    code = {side.name: _where(side) for side in sides}
    isolated = [s for s in sides if s.isolated]
    if len(isolated) == 2 and isolated[0].python != isolated[1].python and len(set(code.values())) == 1:
        raise UnusableInput(f"--baseline-python and --candidate-python both import bench from {code['baseline']}: "
                            "install each side in its own environment")
    return code


def measure(sides: list[Side], out: Path, rounds: int, grid: list[str]) -> float:
    """Runs every round; returns the seconds it took. A side that fails stops the job (UnusableInput)."""
    by_name = {s.name: s for s in sides}
    # SIGTERM (a cancelled CI job) as an exception in this thread, so subprocess.run kills the round it runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    start = time.monotonic()
    for i, name in schedule(rounds):
        side = by_name[name]
        tree = out / name
        command = side.command("-m", "bench", *grid, *side.overrides, f"results_dir={tree}", "resume=false",
                               f"hydra.sweep.dir={tree / round_id(i)}", "-m")
        began = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        # Exit 1: some runs failed and were recorded as failed rows, which the gate judges; anything else stops.
        if done.returncode not in (0, 1):
            raise UnusableInput(f"round {i} of the {name} failed (exit {done.returncode}): {shlex.join(command)}\n"
                                f"{tail}")
        failures = [line for line in tail.splitlines() if line.startswith("FAILED: ")]
        print(f"round {i}/{rounds} {name}: {time.monotonic() - began:.0f} s", *failures, sep="\n  ", flush=True)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", nargs="*", help="overrides both sides share: the sweep's grid (as for -m)")
    parser.add_argument("--out", required=True, help="new directory for the two trees, <out>/baseline and "
                                                     "<out>/candidate")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per side (default %(default)s)")
    for name in SIDES:
        parser.add_argument(f"--{name}", default="", metavar="OVERRIDES",
                            help=f"overrides only the {name} gets, in one quoted string")
        parser.add_argument(f"--{name}-python", metavar="PYTHON",
                            help=f"interpreter of the environment the {name}'s code is installed in "
                                 "(default: this one, not isolated)")
    parser.add_argument("--ignore", default="", help="key columns the gate does not match on (see analysis.gate)")
    parser.add_argument("--metrics", default=",".join(METRICS), help="as for analysis.gate")
    parser.add_argument("--threshold", type=float, default=0.05, help="as for analysis.gate")
    parser.add_argument("--confidence", type=float, default=0.95, help="family-wise, as for analysis.gate")
    parser.add_argument("--markdown", help="also write the gate's Markdown summary here")
    parser.add_argument("--json", help="also write the gate's comparisons as JSON here")
    args = parser.parse_args(argv)
    metrics, ignore = comma_list(args.metrics), comma_list(args.ignore)
    sides = [Side(name, getattr(args, f"{name}_python") or sys.executable, getattr(args, f"{name}_python") is not None,
                  shlex.split(getattr(args, name))) for name in SIDES]
    out = Path(args.out)
    gating = False
    try:
        check(metrics, args.threshold, args.confidence, ignore)
        code = check_sides(sides, out, args.rounds, args.grid, ignore)
        for side in sides:
            print(f"{side.name}: {shlex.join(side.command('-m', 'bench'))} {shlex.join(side.overrides)} (bench from "
                  f"{code[side.name]})", flush=True)
        seconds = measure(sides, out, args.rounds, args.grid)
        note = (f"{args.rounds} interleaved rounds per side (ABBA) of `{shlex.join(args.grid) or 'the default grid'}`"
                + "".join(f"; {s.name}: `{shlex.join(s.overrides)}`" for s in sides if s.overrides)
                + f"; measuring took {seconds / 60:.1f} min.")
        print(note)
        gating = True
        return gate(out / "baseline", out / "candidate", metrics, args.threshold, args.confidence, args.markdown,
                    args.json, ignore, note)
    except UnusableInput as e:
        if not gating:  # the gate writes its own
            undecided(str(e), args.markdown, args.json)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
