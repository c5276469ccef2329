"""Rows as TensorBoard runs: one run directory per row, its figures as scalars and its configuration and tags as
the hparams plugin's session data, so TensorBoard's HParams view compares a sweep (docs/trackers.md)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.export import TrackedRun


def run_directory(run: TrackedRun) -> str:
    """The configuration in words for TensorBoard's run list, then the row's run_id that makes it unique."""
    return f"{re.sub(r'[^A-Za-z0-9.=-]+', '_', run.name).strip('_')}_{run.run_id}"


def _exported(run: TrackedRun, names: list[str]) -> bool:
    """The row has a run directory: found by its run_id, so a renamed configuration is not written twice (a
    partial directory, hidden, does not count)."""
    return any(name.endswith(f"_{run.run_id}") and not name.startswith(".") for name in names)


def export_runs(runs: list[TrackedRun], root: Path) -> tuple[int, int, str]:
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from torch.utils.tensorboard import SummaryWriter

    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    new = [run for run in runs if not _exported(run, names)]
    for run in new:
        # Written under a hidden name and renamed when complete, so a killed export leaves no directory that the
        # next export would take as done.
        final = root / run_directory(run)
        partial = root / f".{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with SummaryWriter(str(partial)) as writer:
            writer.file_writer.add_summary(hparams_pb({**run.params, **run.tags}, trial_id=run.run_id,
                                                      start_time_secs=run.start), 0, run.start)
            for name, value in run.metrics.items():
                writer.add_scalar(name, value, 0, walltime=run.start)
        partial.rename(final)
    return len(new), len(runs) - len(new), f"in {root}"
