"""The shape of the house: declared rows, scenarios as modules, light imports where they must stay light."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import row, scenarios
from bench.results import load, write_row
from tests.rows import make_row

PROJECT = Path(__file__).resolve().parent.parent


def test_write_row_refuses_an_undeclared_column(tmp_path):
    with pytest.raises(ValueError, match="not declared in bench/row.py: energy_j_per_banana"):
        write_row({**make_row(), "energy_j_per_banana": 1.0}, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_every_column_of_the_shared_row_factory_is_declared():
    assert row.undeclared(make_row()) == []


def test_the_column_reference_is_current():
    assert (PROJECT / "docs" / "columns.md").read_text() == row.reference_markdown(), \
        "docs/columns.md is stale: python -m bench.row > docs/columns.md"


def test_every_scenario_is_one_module_with_its_conf_and_declares_what_the_protocol_asks():
    assert {"classify", "generate"} <= set(scenarios.names())
    for name in scenarios.names():
        module = scenarios.get(name)
        for attribute in ("EVAL_KINDS", "AXIS", "CAUSAL_LM", "COLUMNS", "SUMMARY_COLUMNS", "validate",
                          "check_model", "shape", "run", "progress"):
            assert hasattr(module, attribute), f"bench/scenarios/{name}.py lacks {attribute}"
        assert (PROJECT / "conf" / "scenario" / f"{name}.yaml").is_file()
        assert (PROJECT / "conf" / "scenario_defaults" / f"{name}.yaml").is_file()  # its backend, quant, grid
        assert module.AXIS.column in row.declared()


def test_no_scenario_is_named_outside_its_module():
    """Adding a scenario must not mean editing the orchestrator or the analysis: they ask the registry or the
    row's declared axis. (Migration of schema-1 rows, which predate declared axes, is the one exception.)"""
    pattern = re.compile(r"""(==|!=|\bin\b)\s*\(?["'](classify|generate)["']""")
    offenders = [f"{path.relative_to(PROJECT)}:{n}" for folder in ("bench", "analysis")
                 for path in (PROJECT / folder).rglob("*.py") if "scenarios" not in path.parts
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_meters_errors_and_the_pytest_fixture_do_not_pull_in_hydra():
    code = ("import sys, bench.errors; assert 'torch' not in sys.modules, 'errors imports torch'; "
            "import bench.meters, bench.pytest_plugin, bench.row, bench.results; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'hydra'); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT)


def test_the_configuration_key_includes_the_machine_and_every_variant_parameter():
    base = make_row()
    assert row.config_key(base) == row.config_key(dict(base))
    for change in ({"device_name": "Intel Xeon"}, {"threads": 3}, {"prune_amount": 0.3}, {"quant": "int8"},
                   {"device": "cuda:0"}, {"profile": "quick"}):
        assert row.config_key({**base, **change}) != row.config_key(base), change
    assert row.config_key({**base, "run_id": "other", "timestamp": "later"}) == row.config_key(base)
    assert row.config_key({**base, "batch_size": 8.0}) == row.config_key({**base, "batch_size": 8})


def test_the_eval_settings_that_decide_quality_are_in_the_key_and_an_older_row_keeps_its_key():
    from bench.config import BenchConfig, EvalConfig
    from bench.config_row import eval_key

    default = eval_key(BenchConfig())
    assert default is not None
    assert eval_key(BenchConfig(eval=EvalConfig(max_test_samples=100))) != default  # another subsample
    assert eval_key(BenchConfig(eval=EvalConfig(path="other.csv"))) != default
    assert eval_key(BenchConfig(eval=EvalConfig(gate=0.9, cache_dir="/elsewhere"))) == default  # same figure
    assert eval_key(BenchConfig(eval=EvalConfig(name="none", kind="none"))) is None
    older = make_row()  # written before eval_key existed: its stored key is still what config_key gives
    assert "eval_key" not in older and row.config_key(older) == row.config_key({**older, "eval_key": None})
    assert row.config_key({**older, "eval_key": default}) != row.config_key(older)
    assert "eval_key" in row.key_columns()


def test_rows_of_schema_1_are_migrated_on_load(tmp_path):
    old = {k: v for k, v in make_row(scenario="generate", prompt_len=16, new_tokens=8).items()
           if k not in ("config_key", "energy_axis", "energy_unit", "energy_request_axis")}
    old["schema_version"] = 1
    pd.DataFrame([old]).assign(config_hash="abc").to_parquet(tmp_path / "row.parquet")
    loaded = load(tmp_path).iloc[0]
    assert loaded["schema_version"] == row.SCHEMA_VERSION and "config_hash" not in loaded
    assert (loaded["energy_axis"], loaded["energy_unit"]) == ("energy_j_per_output_token", "output token")
    assert loaded["config_key"] == row.config_key(old)


def test_a_column_two_scenarios_declare_is_one_column_with_both_meanings(monkeypatch):
    ttft = row.declared()["ttft_ms_p50"]
    assert ttft.scenario == "generate, serve" and "generate: " in ttft.meaning and "; serve: " in ttft.meaning
    real = scenarios.get

    def redeclared(name):
        module = real(name)
        if name != "serve":
            return module
        other = [row.Column("ttft_ms_p50", "int", "s", "another type and unit")]
        return type("Module", (), {"COLUMNS": other})

    monkeypatch.setattr(scenarios, "get", redeclared)
    with pytest.raises(TypeError, match="ttft_ms_p50 is declared with another type"):
        row.declared()
