"""Rows as MLflow runs: parameters, metrics and tags per row, nested under a parent run that holds the tree's
analysis (plots, summary.md, report.html) made once per export (docs/trackers.md)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.export import TrackedRun

RUN_TAG = "energy_bench.run_id"  # MLflow makes its own run ids; the row's is this tag
SQLITE = "sqlite:///"


def _experiment(client, name: str, uri: str) -> str:
    """The experiment's id, made on the first export. A local SQLite store keeps its artifacts beside the database
    (mlartifacts/), not in the current directory, so the store is one folder to copy or open."""
    if found := client.get_experiment_by_name(name):
        return found.experiment_id
    location = None
    if uri.startswith(SQLITE) and uri != f"{SQLITE}:memory:":
        location = (Path(uri[len(SQLITE):]).resolve().parent / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _exported(client, experiment_id: str) -> set[str]:
    """Row run_ids the experiment already has a (not deleted) run for."""
    ids, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        ids |= {run.data.tags[RUN_TAG] for run in page if RUN_TAG in run.data.tags}
        if not (token := page.token):
            return ids


def _log_row(client, experiment_id: str, run: TrackedRun, parent_id: str) -> None:
    from mlflow.entities import Metric, Param

    start = int((run.start or time.time()) * 1000)
    tags = {**run.tags, RUN_TAG: run.run_id, "mlflow.parentRunId": parent_id}
    if run.note:
        tags["mlflow.note.content"] = run.note  # the run's description in MLflow's UI
    created = client.create_run(experiment_id, start_time=start, tags=tags, run_name=run.name)
    client.log_batch(created.info.run_id, metrics=[Metric(k, v, start, 0) for k, v in run.metrics.items()],
                     params=[Param(k, str(v)) for k, v in run.params.items()])
    client.set_terminated(created.info.run_id, "FAILED" if run.failed else "FINISHED")


def export_runs(runs: list[TrackedRun], uri: str, experiment: str, tree: Path) -> tuple[int, int, str]:
    """Logs the rows `uri` does not hold; the analysis of `tree` goes to a parent run only when there are some."""
    from mlflow import MlflowClient

    from analysis.__main__ import analyse

    client = MlflowClient(uri)
    experiment_id = _experiment(client, experiment, uri)
    done = _exported(client, experiment_id)
    new = [run for run in runs if run.run_id not in done]
    if new:
        parent = client.create_run(experiment_id, run_name=f"analysis of {tree.name}",
                                   tags={"energy_bench.tree": str(tree), "energy_bench.rows": str(len(new))})
        with tempfile.TemporaryDirectory(prefix="energy-bench-analysis-") as out:
            analyse(tree, Path(out))
            client.log_artifacts(parent.info.run_id, out, "analysis")
        for run in new:
            _log_row(client, experiment_id, run, parent.info.run_id)
        client.set_terminated(parent.info.run_id)
    return len(new), len(runs) - len(new), f"in {uri}, experiment {experiment}"
