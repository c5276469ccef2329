"""The package as a user installs it: a wheel, in its own environment, used from a directory outside the checkout."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

from bench.results import load
from tests.conftest import EVAL_CACHE, PROJECT

FIXTURE_TEST = '''
import bench
import torch


def test_energy_of_a_layer(energy_benchmark):
    print("bench from", bench.__file__)
    layer, x = torch.nn.Linear(64, 64), torch.randn(8, 64)
    with torch.inference_mode():
        assert energy_benchmark(layer, x).shape == (8, 64)
'''


def test_every_package_and_configuration_group_is_in_the_wheel():
    """pyproject.toml lists the packages (conf/ is mapped to bench.conf): the list must follow the tree."""
    listed = set(tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {p for p in find_namespace_packages(str(PROJECT), include=["bench*", "analysis*"])
            if (PROJECT / p.replace(".", "/") / "__init__.py").is_file()}
    groups = {f"bench.conf.{d.name}" for d in (PROJECT / "conf").iterdir() if d.is_dir() and any(d.glob("*.yaml"))}
    assert listed == code | groups | {"bench.conf"}


def run(*command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, cwd=cwd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(python of a fresh environment with the wheel installed, a working directory outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # The tracked and new files, as a clone (plus uncommitted work) would have them: no build leftovers.
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=PROJECT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    source = tmp / "source"
    for name in filter(None, files):
        if (PROJECT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((PROJECT / name).read_bytes())
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
        str(source), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("energy_bench-*.whl")
    # Its dependencies are this environment's (offline); the package itself only from the wheel.
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp / "venv"), cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--no-deps", str(wheel), cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return python, work


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_checkout(installed):
    python, work = installed
    where = run(str(python), "-c", "import bench, bench.config as c; print(bench.__file__); print(c.CONF_DIR)",
                cwd=work).stdout.split()
    site = python.parent.parent / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # the wheel's copy, conf/ included
    run(str(python), "-m", "bench", "profile=quick", "eval=none", "batch_size=1", "quant=fp32",
        f"eval.cache_dir={EVAL_CACHE}", f"hydra.run.dir={work}/run", cwd=work)
    (row,) = load(work / "run").to_dict("records")
    assert row["model"] == "minilm" and row["git_commit"] is None and row["latency_ms_p50"] > 0
    run(str(python), "-m", "analysis", "run", "--out", "analysis", cwd=work)
    assert (work / "analysis" / "summary.md").is_file()
    gate = subprocess.run([str(python), "-m", "analysis.gate", "--baseline", "run", "--candidate", "run",
                           "--metrics", "latency_ms_p50"], cwd=work, capture_output=True, text=True)
    assert gate.returncode in (0, 2) and "Traceback" not in gate.stderr, gate.stderr  # 2: an invalid row


@pytest.mark.slow
def test_the_installed_fixture_measures_energy(installed):
    python, work = installed
    (work / "test_layer.py").write_text(FIXTURE_TEST)
    done = run(str(python), "-m", "pytest", "test_layer.py", "-s", "-p", "no:cacheprovider",
               "--benchmark-json=out.json", cwd=work)
    assert f"bench from {python.parent.parent}" in done.stdout
    (benchmark,) = json.loads((work / "out.json").read_text())["benchmarks"]
    assert benchmark["extra_info"]["energy_j_per_call"] > 0 and benchmark["extra_info"]["energy_profile"] == "quick"


@pytest.mark.slow
def test_two_installations_interleaved(installed):
    """bench.ab's second use for real: this checkout (editable) against the wheel, each its own interpreter."""
    python, work = installed
    done = subprocess.run([sys.executable, "-m", "bench.ab", "--out", str(work / "ab"), "--rounds", "2",
                           "--baseline-python", sys.executable, "--candidate-python", str(python),
                           "--metrics", "latency_ms_p50", "--json", str(work / "gate.json"), "--",
                           "profile=quick", "eval=none", "quant=fp32", "batch_size=1"],
                          cwd=work, capture_output=True, text=True, timeout=900)
    assert f"bench from {PROJECT / 'bench'}" in done.stdout and f"bench from {python.parent.parent}" in done.stdout
    assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, done.stderr
    for side in ("baseline", "candidate"):
        assert sorted(load(work / "ab" / side)["sweep_id"]) == ["round-01", "round-02"]
