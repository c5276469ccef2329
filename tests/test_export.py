"""`python -m analysis.export`: a tree of rows exported with the real TensorBoard, MLflow and W&B libraries to local
stores, read back with each library's own reader (W&B: its offline transaction log), exported a second time
without a new run, and bad input refused before any work."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from analysis.export import TRACKERS, main, tracked
from analysis.export_tensorboard import run_directory
from bench.results import write_row
from tests.rows import NO_EVAL, OMIT, SERVE, make_row

CPU = "AMD EPYC 7763 64-Core Processor"  # tests.rows' CPU
MEASURED = make_row(quant="fp32", idle_power_w=12.5)
ESTIMATED = make_row(quant="int8", energy_source="estimate", energy_measured=False, energy_j_per_inference=0.2,
                     idle_power_w=9.0)
SERVED = make_row(**SERVE)
FAILED = make_row(**{**NO_EVAL, "quant": "bf16", "status": "failed", "error_type": "RuntimeError",
                     "error_message": "out of memory", "energy_j_per_inference": OMIT, "latency_ms_p50": OMIT,
                     "latency_ms_p90": OMIT, "latency_ms_p99": OMIT, "throughput_samples_s": OMIT})
ROWS = [MEASURED, ESTIMATED, SERVED, FAILED]
WHAT = {MEASURED["run_id"]: "measured", ESTIMATED["run_id"]: "estimated", SERVED["run_id"]: "served",
        FAILED["run_id"]: "failed"}


@pytest.fixture
def tree(tmp_path) -> str:
    for row in ROWS:
        write_row(row, tmp_path / "tree" / row["run_id"])
    return str(tmp_path / "tree")


def _files(root: Path) -> dict[str, int]:
    """Every file under root with its size: a second export must leave it as it was."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _check(by_row: dict, number=float) -> None:
    """What each tracker must hold, per row, as read back: `by_row[kind]` is (params, metrics, tags) with values as
    the tracker stores them (MLflow: parameters as text; `number` turns them back)."""
    params, metrics, tags = by_row["measured"]
    assert {k: params[k] for k in ("model", "quant", "backend", "device_type", "device_name", "energy_axis")} == {
        "model": "minilm", "quant": "fp32", "backend": "pytorch", "device_type": "cpu", "device_name": CPU,
        "energy_axis": "energy_j_per_inference"}
    assert number(params["batch_size"]) == 1 and number(params["seq_len"]) == 128
    assert metrics["energy_j_per_inference"] == pytest.approx(0.37, rel=1e-6)
    assert metrics["energy_j_per_inference_ci_low"] == pytest.approx(0.37 * 0.97, rel=1e-6)
    assert metrics["energy_j_per_inference_ci_high"] == pytest.approx(0.37 * 1.03, rel=1e-6)
    assert metrics["latency_ms_p99"] == pytest.approx(12.0) and metrics["throughput_samples_s"] == pytest.approx(98.0)
    assert metrics["idle_power_w"] == pytest.approx(12.5) and metrics["quality_ratio"] == pytest.approx(1.0)
    assert {k: tags[k] for k in ("energy_source", "energy_measured", "status", "device")} == {
        "energy_source": "rapl", "energy_measured": "true", "status": "ok", "device": "cpu"}
    assert tags["run_id"] == MEASURED["run_id"] and tags["device_name"] == CPU

    params, metrics, tags = by_row["estimated"]
    assert (tags["energy_source"], tags["energy_measured"]) == ("estimate", "false")
    assert metrics["energy_j_per_inference"] == pytest.approx(0.2, rel=1e-6)
    assert not any("measured" in name for name in metrics)  # nothing calls the estimate a measurement

    params, metrics, tags = by_row["served"]
    assert params["energy_axis"] == "energy_j_per_output_token" and number(params["serve_rate"]) == 1
    assert metrics["energy_j_per_output_token"] == pytest.approx(0.05, rel=1e-6)
    assert metrics["energy_j_per_output_token_ci_low"] == pytest.approx(0.05 * 0.97, rel=1e-6)
    assert metrics["energy_j_per_output_token_ci_high"] == pytest.approx(0.05 * 1.03, rel=1e-6)
    assert metrics["ttft_ms_p99"] == pytest.approx(150.0) and metrics["output_tokens_s"] == pytest.approx(16.0)
    assert metrics["server_idle_power_w"] == pytest.approx(3.0)
    assert metrics["quality_ratio"] == pytest.approx(20.6 / 21.0, rel=1e-6)

    params, metrics, tags = by_row["failed"]
    assert tags["status"] == "failed" and tags["error_type"] == "RuntimeError" and params["quant"] == "bf16"
    assert not any(name.startswith(("energy_", "latency_")) for name in metrics)


def test_a_row_becomes_parameters_metrics_and_tags():
    measured, estimated, served, failed = (tracked(row) for row in ROWS)
    assert measured.note == "" and measured.tags["energy_measured"] == "true" and "ESTIMATED" not in measured.name
    assert estimated.name.endswith("[ESTIMATED energy]") and estimated.note.startswith("ESTIMATED energy")
    assert estimated.tags["energy_measured"] == "false" and estimated.start == pytest.approx(1735689600)
    assert "serve_rate" in served.params and "energy_j_per_request_ci_high" in served.metrics
    assert not set(served.metrics) & {"window_j_per_inference", "slo_ttft_ms", "serve_rate", "energy_cv"}
    assert failed.failed and not measured.failed and "error_message" not in failed.tags
    # A row without the flag is an estimate when its source says so.
    assert tracked(make_row(energy_source="estimate", energy_measured=OMIT)).tags["energy_measured"] == "false"


def _tensorboard(run: Path) -> tuple[dict, dict, dict]:
    """A run directory read back with TensorBoard's event reader: (hparams, scalars, its session's group name)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    events = EventAccumulator(str(run))
    events.Reload()
    scalars = {}
    for tag in events.Tags()["scalars"]:
        [point] = events.Scalars(tag)
        assert point.step == 0
        scalars[tag] = point.value
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    session = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    return hparams, scalars, session.group_name


def test_tensorboard_writes_a_run_directory_per_row_with_scalars_and_hparams(tree, tmp_path, capsys):
    out = tmp_path / "tb"
    # A directory a killed export left half-written: not taken as done, and replaced.
    partial = out / f".{run_directory(tracked(MEASURED))}.partial"
    partial.mkdir(parents=True)
    assert main([tree, "--to", "tensorboard", str(out)]) == 0
    assert capsys.readouterr().out == f"tensorboard: 4 run(s) written, 0 skipped (already there), in {out}\n"
    assert not partial.exists()
    runs = {run.name.rsplit("_", 1)[1]: run for run in out.iterdir()}
    assert set(runs) == set(WHAT)
    by_row = {}
    for run_id, run in runs.items():
        hparams, scalars, group = _tensorboard(run)
        assert group == run_id
        by_row[WHAT[run_id]] = (hparams, scalars, hparams)  # TensorBoard has no tags: they are hparams
    _check(by_row)
    assert "ESTIMATED" in runs[ESTIMATED["run_id"]].name and "ESTIMATED" not in runs[MEASURED["run_id"]].name

    before = _files(out)
    assert main([tree, "--to", "tensorboard", str(out)]) == 0
    assert capsys.readouterr().out == f"tensorboard: 0 run(s) written, 4 skipped (already there), in {out}\n"
    assert _files(out) == before


@pytest.mark.slow
def test_mlflow_logs_a_run_per_row_under_a_parent_holding_the_analysis(tree, tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the default store is ./mlflow.db
    assert main([tree, "--to", "mlflow"]) == 0
    assert capsys.readouterr().out == ("mlflow: 4 run(s) written, 0 skipped (already there), in sqlite:///mlflow.db, "
                                       "experiment energy-bench\n")
    assert sorted(p.name for p in work.iterdir()) == ["mlartifacts", "mlflow.db"]  # one folder: nothing in ./mlruns

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("energy-bench")
    assert experiment.artifact_location == (work / "mlartifacts" / "energy-bench").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "energy_bench.run_id" not in r.data.tags]
    rows = {r.data.tags["energy_bench.run_id"]: r for r in runs if r is not parent}
    assert set(rows) == set(WHAT)
    analysis = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/report.html", "analysis/summary.md"} <= analysis
    assert any(path.endswith(".png") for path in analysis)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in rows.values())
    _check({WHAT[run_id]: (r.data.params, r.data.metrics, r.data.tags) for run_id, r in rows.items()})
    estimated = rows[ESTIMATED["run_id"]]
    assert estimated.info.run_name.endswith("[ESTIMATED energy]")
    assert estimated.data.tags["mlflow.note.content"].startswith("ESTIMATED energy")
    assert "mlflow.note.content" not in rows[MEASURED["run_id"]].data.tags
    assert rows[FAILED["run_id"]].info.status == "FAILED" and rows[MEASURED["run_id"]].info.status == "FINISHED"

    assert main([tree, "--to", "mlflow"]) == 0
    assert capsys.readouterr().out.startswith("mlflow: 0 run(s) written, 4 skipped (already there)")
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


def _wandb_records(log: Path) -> list:
    """The records of a W&B transaction log (run-<id>.wandb): LevelDB's log format (32 KiB blocks of chunks, each
    with a 7-byte header: checksum, length, type) after W&B's 7-byte file header, each record a protobuf."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = log.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7 or data[position + 6] == 0:  # the block's zero-filled tail
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full, first | middle, last
        if kind in (1, 4):
            records.append(Record.FromString(pending))
    return records


def _wandb_run(directory: Path) -> tuple[dict, dict, dict, object]:
    """An offline run read back: (config, summary, its run record, exit code)."""
    import json

    [log] = directory.glob("run-*.wandb")
    config, summary, run, exit_code = {}, {}, None, None
    for record in _wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in record.summary.update})
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return config, summary, run, exit_code


def _children() -> list[str]:
    """Live processes this one started (a W&B service left running would be one)."""
    names = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        if int(ppid) == os.getpid() and state != "Z":
            names.append(text[text.index("(") + 1:text.rindex(")")])
    return names


@pytest.mark.slow
def test_wandb_writes_offline_runs_that_wandb_sync_uploads_later(tree, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    for name, folder in (("HOME", home), ("WANDB_DIR", tmp_path / "wandb-dir"), ("WANDB_CONFIG_DIR", home / "config"),
                         ("WANDB_CACHE_DIR", home / "cache"), ("WANDB_DATA_DIR", home / "data")):
        monkeypatch.setenv(name, str(folder))
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_ERROR_REPORTING", "false")):
        monkeypatch.setenv(name, value)
    before = _children()
    root = tmp_path / "wb"
    assert main([tree, "--to", "wandb", str(root)]) == 0
    assert capsys.readouterr().out == (f"wandb: 4 run(s) written, 0 skipped (already there), in {root / 'wandb'} "
                                       f"(offline; upload with: wandb sync {root / 'wandb'}/offline-run-*)\n")
    assert _children() == before  # the service wandb started is stopped

    runs = {d.name.rsplit("-", 1)[1]: d for d in (root / "wandb").glob("offline-run-*")}
    assert set(runs) == set(WHAT)
    by_row = {}
    for run_id, directory in runs.items():
        config, summary, run, exit_code = _wandb_run(directory)
        assert run.run_id == run_id and run.project == "energy-bench"
        assert run.host == "bench-host" and not list(directory.glob("files/requirements*"))  # the row's machine
        labels = set(run.tags)
        assert exit_code == (1 if run_id == FAILED["run_id"] else 0)
        by_row[WHAT[run_id]] = (config, summary, config)  # every tag is also in the config
        if run_id == ESTIMATED["run_id"]:
            assert {"energy_source=estimate", "energy_measured=false"} <= labels
            assert run.display_name.endswith("[ESTIMATED energy]") and run.notes.startswith("ESTIMATED energy")
        if run_id == MEASURED["run_id"]:
            assert {"energy_source=rapl", "energy_measured=true", "status=ok"} == labels
            assert run.run_group == MEASURED["sweep_id"]
    _check(by_row)

    files = _files(root)
    assert main([tree, "--to", "wandb", str(root)]) == 0
    assert capsys.readouterr().out.startswith("wandb: 0 run(s) written, 4 skipped (already there)")
    assert _files(root) == files


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_missing_library_names_its_extra_before_any_work(tree, tracker, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, TRACKERS[tracker][0], None)  # `import` of it now fails as when not installed
    with pytest.raises(SystemExit) as exit_:
        main([tree, "--to", tracker, str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert f'not installed: pip install "energy-bench[{tracker}]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--to", "neptune", "x"], "--to 'neptune': choose one of tensorboard, mlflow, wandb"),
    (["--to", "tensorboard"], "--to tensorboard needs a directory: --to tensorboard DIR"),
    (["--to", "mlflow", "a", "b"], "--to mlflow a b: one place per tracker"),
    (["--to", "tensorboard", "x", "--online"], "--online is for --to wandb"),
    ([], "the following arguments are required: --to"),
])
def test_bad_input_names_the_value_and_what_is_valid(tree, args, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([tree, *args])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err


def test_an_empty_or_missing_tree_or_a_row_without_run_id_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_row(make_row(run_id=OMIT), tmp_path / "anonymous" / "0")
    for tree, expected in ((tmp_path / "empty", "no result rows under"), (tmp_path / "none", "does not exist"),
                           (tmp_path / "anonymous", f"rows without a run_id (what makes a second export skip them): "
                                                    f"{tmp_path / 'anonymous' / '0' / 'row.parquet'}")):
        with pytest.raises(SystemExit) as exit_:
            main([str(tree), "--to", "tensorboard", str(tmp_path / "tb")])
        assert exit_.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "tb").exists()
