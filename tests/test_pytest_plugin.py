import json
import shutil

import pytest

from tests.conftest import PROJECT

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow  # each test runs pytest again in a subprocess


def test_energy_benchmark_adds_joules_to_the_benchmark_json(pytester):
    shutil.copy(PROJECT / "examples" / "test_energy_example.py", pytester.path)
    result = pytester.runpytest_subprocess("--benchmark-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (bench,) = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    info = bench["extra_info"]
    assert info["energy_j_per_call"] > 0
    assert info["energy_j_per_call_ci_low"] <= info["energy_j_per_call"] <= info["energy_j_per_call_ci_high"]
    assert (info["energy_source"], info["energy_measured"]) in {("estimate", False), ("rapl", True)}
    assert bench["stats"]["median"] > 0  # pytest-benchmark's own timing is still there


def test_disabled_benchmarks_skip_the_energy_windows(pytester):
    shutil.copy(PROJECT / "examples" / "test_energy_example.py", pytester.path)
    result = pytester.runpytest_subprocess("--benchmark-disable", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
