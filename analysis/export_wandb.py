"""Rows as Weights & Biases runs, written offline by default: one run directory per row under DIR/wandb/ that
`wandb sync` uploads later; the row's run_id is the W&B run id (docs/trackers.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.export import TrackedRun

# W&B's run directories: offline-run-<YYYYmmdd_HHMMSS>-<run id>, and run-... for a run made online.
RUN_DIRECTORY = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-(.+)")
# Tags are W&B's labels (64 characters at most): the ones a runs table is filtered by; every tag is in the config.
LABELS = ("energy_source", "energy_measured", "status")


def _exported(root: Path) -> set[str]:
    """Run ids that already have a run directory under root/wandb."""
    found = (RUN_DIRECTORY.fullmatch(p.name) for p in (root / "wandb").glob("*run-*") if p.is_dir())
    return {m.group(1) for m in found if m}


def export_runs(runs: list[TrackedRun], root: Path, project: str, online: bool) -> tuple[int, int, str]:
    import wandb

    root.mkdir(parents=True, exist_ok=True)  # wandb would fall back to a temporary folder without a word
    done = _exported(root)
    new = [run for run in runs if run.run_id not in done]
    try:
        for run in new:
            # Nothing of the machine doing the export belongs to the row: not its name (the row's host is the
            # run's), system metrics, metadata, installed packages, git state or code.
            settings = wandb.Settings(silent=True, console="off", host=run.tags.get("hostname", ""),
                                      x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
                                      x_save_requirements=False, disable_git=True, disable_code=True, save_code=False)
            logged = wandb.init(project=project, dir=root, id=run.run_id, name=run.name, notes=run.note or None,
                                group=run.tags.get("sweep_id"), config={**run.params, **run.tags},
                                tags=[f"{k}={run.tags[k]}" for k in LABELS if k in run.tags],
                                mode="online" if online else "offline", settings=settings)
            logged.summary.update(run.metrics)
            logged.finish(exit_code=1 if run.failed else 0)
    finally:
        if new:
            wandb.teardown()  # stops the service process wandb started for these runs
    where = root / "wandb"
    place = f"in {where}" + ("" if online else f" (offline; upload with: wandb sync {where}/offline-run-*)")
    return len(new), len(runs) - len(new), place
