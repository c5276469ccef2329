"""`python -m analysis.export <tree> --to tensorboard DIR | mlflow [URI] | wandb [DIR]`: every result row of a
tree as one tracked run of an experiment tracker, its configuration as parameters, its figures as metrics, its
energy source as tags (docs/trackers.md).

Each tracker lives in its own module (`analysis/export_<tracker>.py`) and is an optional extra; exporting a
tree again writes only the rows the tracker does not already hold (by the row's run_id).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from analysis.options import add_tree_argument
from analysis.recommend import ESTIMATED
from bench.results import load
from bench.row import GROUPS, KEY_COLUMNS, declared, key_values
from bench.summary import label

# tracker -> (the module its extra installs, its pip extra)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
            "wandb": ("wandb", "wandb")}
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"  # MLflow 3's own default; its file store refuses to open by default
DEFAULT_EXPERIMENT = "energy-bench"

# The row's figures (columns of every scenario: a scenario's own follow the same names): latency percentiles,
# throughputs, every joules-per-something figure with its interval ends, idle power and quality.
METRIC = re.compile(r".*_ms_p\d+|request_latency_ms|throughput_\w+|\w+_tokens_s|achieved_rps|goodput_rps"
                    r"|energy_j_per_\w+|(server_)?idle_power_w|quality(_ratio)?(_ci_low|_ci_high)?|slo_attainment")
# Columns that say what a figure is and whether it can be trusted; tags in MLflow and W&B.
TAGS = ("energy_source", "energy_measured", "device", "device_name", "hostname", "status", "invalid_reasons",
        "error_type", "run_id", "sweep_id", "config_key", "energy_axis", "row_file")
ESTIMATE_NOTE = ("ESTIMATED energy: the joules are a CPU power model (energy_source=estimate), not a measurement; "
                 "never compare them with measured runs (docs/protocol.md §1.4).")


@dataclass(frozen=True)
class TrackedRun:
    """One row as a tracker sees it."""
    run_id: str
    name: str  # the configuration in words, marked [ESTIMATED energy] where it is
    params: dict[str, str | int | float | bool]
    metrics: dict[str, float]
    tags: dict[str, str]
    start: float | None  # when the run started, seconds since the epoch
    failed: bool
    note: str  # what an estimate is; empty for a measurement


def _cell(value: Any) -> Any:
    """A scalar cell as plain Python (numpy scalars unwrapped), None where missing."""
    value = value.item() if hasattr(value, "item") else value
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


@functools.cache
def _metric_columns() -> list[str]:
    return sorted(c.name for c in declared().values() if c.type in ("float", "int") and METRIC.fullmatch(c.name))


def tracked(row: Mapping[str, Any]) -> TrackedRun:
    """The row's configuration key and configuration columns as parameters, its figures as metrics, what its
    energy figure is as tags."""
    values = key_values(row)
    params = {c.name: _cell(row.get(c.name)) for c in GROUPS["configuration"] if c.type != "json"}
    params.update({**dict(zip(KEY_COLUMNS, values)), **dict(values[len(KEY_COLUMNS):])})  # the key's own form
    metrics = {c: float(v) for c in _metric_columns() if (v := _cell(row.get(c))) is not None}
    source, measured = _cell(row.get("energy_source")), _cell(row.get("energy_measured"))
    if measured is None and source is not None:  # a row without the flag: its source says it
        measured = source != "estimate"
    estimate = measured is not None and not measured
    tags = {c: _cell(row.get(c)) for c in TAGS} | {"energy_measured": None if measured is None else bool(measured)}
    tags = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in tags.items() if v is not None}
    timestamp = pd.to_datetime(_cell(row.get("timestamp")), utc=True, errors="coerce")
    name = label(pd.Series({**row, **params})) + (ESTIMATED if estimate else "")  # the key in its plain form
    return TrackedRun(run_id=str(row["run_id"]), name=name,
                      params={k: v for k, v in params.items() if v is not None}, metrics=metrics, tags=tags,
                      start=None if pd.isna(timestamp) else timestamp.timestamp(),
                      failed=row.get("status") == "failed", note=ESTIMATE_NOTE if estimate else "")


def _destinations(parser: argparse.ArgumentParser, given: list[list[str]], online: bool
                  ) -> list[tuple[str, str | None]]:
    """(tracker, where) per --to, checked before any work: a known tracker, its installed extra, its place."""
    out = []
    for values in given:
        tracker, where = values[0], values[1] if len(values) > 1 else None
        if tracker not in TRACKERS:
            parser.error(f"--to {tracker!r}: choose one of {', '.join(TRACKERS)}")
        if len(values) > 2:
            parser.error(f"--to {' '.join(values)}: one place per tracker (--to {tracker} WHERE)")
        if tracker == "tensorboard" and where is None:
            parser.error("--to tensorboard needs a directory: --to tensorboard DIR")
        module, extra = TRACKERS[tracker]
        try:
            importlib.import_module(module)
        except ImportError:
            parser.error(f"--to {tracker} needs {module}, which is not installed: "
                         f"pip install \"energy-bench[{extra}]\"")
        out.append((tracker, where))
    if online and "wandb" not in [t for t, _ in out]:
        parser.error("--online is for --to wandb")
    return out


def export(tracker: str, runs: list[TrackedRun], where: str | None, tree: Path, experiment: str,
           online: bool = False) -> str:
    """Writes the runs the tracker does not hold yet; returns the line saying what was written and where."""
    if tracker == "tensorboard":
        from analysis.export_tensorboard import export_runs

        written, skipped, place = export_runs(runs, Path(where))
    elif tracker == "mlflow":
        from analysis.export_mlflow import export_runs

        written, skipped, place = export_runs(runs, where or DEFAULT_MLFLOW_URI, experiment, tree)
    else:
        from analysis.export_wandb import export_runs

        written, skipped, place = export_runs(runs, Path(where or "."), experiment, online)
    return f"{tracker}: {written} run(s) written, {skipped} skipped (already there), {place}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tree_argument(parser)
    parser.add_argument("--to", nargs="+", action="append", required=True, metavar=("TRACKER", "WHERE"),
                        help="tensorboard DIR | mlflow [URI] (default %s) | wandb [DIR] (default .); repeat for "
                             "several trackers" % DEFAULT_MLFLOW_URI)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help=f"MLflow experiment, W&B project (default {DEFAULT_EXPERIMENT})")
    parser.add_argument("--online", action="store_true", help="W&B: upload now instead of writing an offline run")
    args = parser.parse_args(argv)
    destinations = _destinations(parser, args.to, args.online)
    tree = args.tree.resolve()  # so each run's row_file tag is a path that holds from anywhere
    rows = load(tree)
    if rows.empty:
        parser.error(f"no result rows under {args.tree}")
    if "run_id" not in rows or rows["run_id"].isna().any():
        files = rows["row_file"][rows["run_id"].isna()] if "run_id" in rows else rows["row_file"]
        parser.error(f"rows without a run_id (what makes a second export skip them): {', '.join(files)}")
    runs = [tracked(row) for row in rows.to_dict("records")]
    for tracker, where in destinations:
        print(export(tracker, runs, where, tree, args.experiment, args.online))
    return 0


if __name__ == "__main__":
    sys.exit(main())
