"""`python -m bench.ab`: interleaved rounds into two trees, then the gate.

The fast tests run the command against fake interpreters, stand-ins for two installed checkouts that answer
where their code is and write one row per configuration of the grid, as `python -m bench ... -m` would; the
machine's speed drifts from round to round and hits both sides of a round alike. The slow test measures.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.ab import DEFAULT_ROUNDS, main, schedule
from bench.results import load
from tests.conftest import EVAL_CACHE, PROJECT

FAKE = '''#!{python}
import itertools, math, runpy, sys
from pathlib import Path
sys.path.insert(0, {project!r})
args = [a for a in sys.argv[1:] if a != "-I"]
if args[0] == "-c":
    print({code!r} + "/bench/__init__.py")
    raise SystemExit
if args[:2] == ["-m", "bench.ab"]:  # the real command, as the workflow runs it with this interpreter
    sys.argv = ["bench.ab", *args[2:]]
    runpy.run_module("bench.ab", run_name="__main__")
import json
import pandas as pd
from tests.rows import NO_EVAL, make_row
assert args[:2] == ["-m", "bench"] and args[-1] == "-m", args
overrides = dict(a.split("=", 1) for a in args[2:-1])
sweep = Path(overrides["hydra.sweep.dir"])
with open({log!r}, "a") as log:
    log.write({name!r} + " " + sweep.name + "\\n")
drift = 1 + 0.25 * math.sin(int(sweep.name.split("-")[1]))  # the machine's speed this round, both sides alike
factor = float(overrides.get("+factor", {factor}))
grid = itertools.product(overrides.get("quant", "fp32").split(","), overrides.get("batch_size", "1").split(","))
for job, (quant, batch) in enumerate(grid):
    p50 = 10.0 * drift * factor * int(batch) * (1 + 0.003 * len({name!r}) * (job + 1))
    row = make_row(**{{**NO_EVAL, "sweep_id": sweep.name, "batch_size": int(batch), "profile": "quick",
                        "quant": quant, "latency_ms_p50": p50,
                        "energy_source": "estimate", "energy_measured": False}})
    (sweep / str(job)).mkdir(parents=True)  # as bench.results.write_row writes it, without importing torch
    pd.DataFrame([{{k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}}]).to_parquet(
        sweep / str(job) / "row.parquet", index=False)
'''


def fake_python(tmp_path: Path, name: str, factor: float = 1.0, code: str | None = None) -> str:
    path = tmp_path / name / "python"
    path.parent.mkdir(parents=True)
    path.write_text(FAKE.format(python=sys.executable, project=str(PROJECT), code=code or str(path.parent),
                                log=str(tmp_path / "order.log"), name=name, factor=factor))
    path.chmod(0o755)
    return str(path)


def run_ab(tmp_path: Path, *args: str, rounds: int = 4) -> int:
    return main(["--out", str(tmp_path / "ab"), "--rounds", str(rounds), "--json", str(tmp_path / "gate.json"),
                 "--markdown", str(tmp_path / "gate.md"), *args])


def test_each_side_goes_first_in_half_the_rounds():
    assert schedule(4) == [(1, "baseline"), (1, "candidate"), (2, "candidate"), (2, "baseline"),
                           (3, "baseline"), (3, "candidate"), (4, "candidate"), (4, "baseline")]


def test_two_checkouts_interleaved_and_a_slower_candidate_caught(tmp_path):
    base, pr = fake_python(tmp_path, "base"), fake_python(tmp_path, "pr", factor=1.3)
    code = run_ab(tmp_path, "--baseline-python", base, "--candidate-python", pr, "--", "batch_size=1,8")
    assert code == 1
    order = (tmp_path / "order.log").read_text().split("\n")[:4]
    assert order == ["base round-01", "pr round-01", "pr round-02", "base round-02"]
    rows = load(tmp_path / "ab" / "candidate")
    assert sorted(set(rows["sweep_id"])) == ["round-01", "round-02", "round-03", "round-04"] and len(rows) == 8
    report = json.loads((tmp_path / "gate.json").read_text())
    latency = [c for c in report["comparisons"] if c["metric"] == "latency_ms_p50"]
    assert [c["method"] for c in latency] == ["paired t, 4 rounds"] * 2
    assert all(c["verdict"] == "regression" and c["ratio"] == pytest.approx(1.3, rel=0.02) for c in latency)
    assert "4 interleaved rounds per side (ABBA) of `batch_size=1,8`" in (tmp_path / "gate.md").read_text()


def test_two_checkouts_that_do_not_differ_pass(tmp_path):
    base, pr = fake_python(tmp_path, "base"), fake_python(tmp_path, "pr")
    assert run_ab(tmp_path, "--baseline-python", base, "--candidate-python", pr, "--", "batch_size=1,8") == 0
    assert json.loads((tmp_path / "gate.json").read_text())["exit_status"] == 0


def test_two_configurations_of_one_checkout_across_an_ignored_key_column(tmp_path, capsys):
    python = fake_python(tmp_path, "one")
    sides = ["--baseline-python", python, "--candidate-python", python,
             "--baseline", "quant=fp32", "--candidate", "quant=int8 +factor=0.5"]
    assert run_ab(tmp_path, *sides) == 2
    assert "set configuration key column(s) quant differently: add --ignore quant" in capsys.readouterr().err
    assert not (tmp_path / "order.log").exists()  # refused before measuring
    assert "**Could not decide**: --baseline and --candidate set" in (tmp_path / "gate.md").read_text()
    (tmp_path / "gate.md").unlink()
    assert run_ab(tmp_path, *sides, "--ignore", "quant") == 0
    (latency,) = [c for c in json.loads((tmp_path / "gate.json").read_text())["comparisons"]
                  if c["metric"] == "latency_ms_p50"]
    assert latency["config"].endswith("quant=fp32->int8") and latency["verdict"] == "improvement"


@pytest.mark.parametrize("args,reason", [
    (["--rounds", "1"], "--rounds 1: give at least 2"),
    (["--", "results_dir=elsewhere"], "results_dir=elsewhere is set by bench.ab"),
    (["--candidate", "resume=true"], "--candidate: resume=true is set by bench.ab"),
    (["--", "quant=int8", "-m"], "leave out -m"),
    (["--candidate-python", "/nonexistent/python"], "--candidate-python /nonexistent/python: cannot run it"),
    (["--metrics", "joules"], "unknown metric(s) joules"),
])
def test_bad_input_stops_before_any_measurement(tmp_path, capsys, args, reason):
    assert main(["--out", str(tmp_path / "ab"), *args]) == 2
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "ab").exists()


def test_an_out_directory_with_rows_is_refused(tmp_path, capsys):
    python = fake_python(tmp_path, "one")
    assert run_ab(tmp_path, "--baseline-python", python, "--candidate-python", python, rounds=2) == 0
    assert run_ab(tmp_path, "--baseline-python", python, "--candidate-python", python, rounds=2) == 2
    assert "already holds result rows" in capsys.readouterr().err


def test_two_interpreters_running_the_same_code_are_refused(tmp_path, capsys):
    base, pr = (fake_python(tmp_path, name, code="/one/checkout") for name in ("base", "pr"))
    assert run_ab(tmp_path, "--baseline-python", base, "--candidate-python", pr) == 2
    assert "both import bench from /one/checkout/bench: install each side in its own environment" in \
        capsys.readouterr().err


WORKFLOW = PROJECT / "examples" / "energy-gate.yml"


def test_the_workflow_is_a_valid_github_actions_workflow():
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # twenty rounds of the fake checkouts
def test_the_workflow_steps_run_against_two_fake_checkouts(tmp_path):
    """The workflow's own commands, run by bash against fake environments of the base and the pull request."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = {step.get("name"): step for step in workflow["jobs"]["gate"]["steps"]}
    assert [s.get("with", {}).get("path") for s in workflow["jobs"]["gate"]["steps"][:2]] == ["pr", "base"]
    assert "--rounds" not in steps["Measure both, interleaved, and gate"]["run"]  # bench.ab's default, as measured
    for side in ("base", "pr"):
        (tmp_path / f"venv-{side}" / "bin").mkdir(parents=True)
        Path(fake_python(tmp_path, side)).rename(tmp_path / f"venv-{side}" / "bin" / "python")
    env = {**os.environ, **workflow["env"], "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    for name in ("Measure both, interleaved, and gate", "Job summary"):
        done = subprocess.run(["bash", "-e", "-c", steps[name]["run"]], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    rows = load(tmp_path / "ab" / "candidate")
    assert rows["sweep_id"].nunique() == DEFAULT_ROUNDS and len(rows) == DEFAULT_ROUNDS * 4  # 2 quants x 2 batches
    assert "No regression" in (tmp_path / "summary.md").read_text()
    assert "--body-file gate.md" in steps["Comment on the pull request"]["run"]
    assert {"ab", "gate.json"} <= set(steps[None]["with"]["path"].split())  # the artifact


@pytest.mark.slow
def test_measures_two_configurations_of_one_checkout(tmp_path, tiny_model_dir):
    """Real runs of the tiny model: two rounds per side, each a sweep whose name pairs the two sides."""
    code = run_ab(tmp_path, "--metrics", "latency_ms_p50", "--", f"model.name_or_path={tiny_model_dir}",
                  "model.name=tiny", "eval=none", "quant=fp32", "batch_size=1", "seq_len=16", "profile=quick",
                  f"eval.cache_dir={EVAL_CACHE}", rounds=2)
    assert code in (0, 1)  # two rounds decide little; what matters is that they were measured and paired
    for side in ("baseline", "candidate"):
        rows = load(tmp_path / "ab" / side)
        assert sorted(rows["sweep_id"]) == ["round-01", "round-02"] and set(rows["model"]) == {"tiny"}
    (latency,) = json.loads((tmp_path / "gate.json").read_text())["comparisons"]
    assert latency["method"].startswith("paired t, 2 rounds") or latency["method"].startswith("bootstrap")
