"""`python -m analysis.recommend`: the pick, the runners-up, what each bound cost, and bad input."""

import json

import pandas as pd
import pytest

from analysis.costs import CostSettings
from analysis.recommend import BadInput, Bounds, format_text, main, recommend
from bench.results import write_row
from tests.rows import make_row


def _row(name, quant, batch, energy, p99, ratio, measured=True, device="cpu", device_name="AMD EPYC", **extra):
    return make_row(**{"run_id": name, "model": "minilm", "quant": quant, "batch_size": batch,
                       "backend": "pytorch", "device": device, "device_name": device_name, "eval": "bbc-topics",
                       "quality_metric": "accuracy", "quality": 0.97 * ratio, "quality_ref": 0.97,
                       "quality_ratio": ratio, "energy_j_per_inference": energy,
                       "energy_j_per_inference_ci_low": energy * 0.95, "energy_j_per_inference_ci_high": energy * 1.05,
                       "latency_ms_p50": p99 / 2, "latency_ms_p90": p99 * 0.8, "latency_ms_p99": p99,
                       "energy_source": "rapl" if measured else "estimate", "energy_measured": measured, **extra})


ROWS = [
    _row("a", "int8", 1, 0.25, 34.0, 1.002),  # fast, not the cheapest
    _row("b", "int8", 8, 0.15, 188.0, 0.995),  # cheaper, slower
    _row("c", "fp32", 1, 0.38, 89.0, 1.0),
    _row("d", "int8", 32, 0.06, 200.0, 0.98),  # cheapest, fails the 0.99 quality bound
    _row("e", "bf16", 32, 0.03, 7000.0, 0.97),  # fails both bounds
]


def _recommend(max_latency, min_ratio=0.99, rows=ROWS, **kwargs):
    return recommend(pd.DataFrame(rows), Bounds(max_latency, min_ratio), **kwargs)


def test_the_pick_changes_with_the_latency_bound():
    assert _recommend(50).pick["label"] == "minilm int8 batch 1 pytorch on AMD EPYC"
    assert _recommend(250).pick["label"] == "minilm int8 batch 8 pytorch on AMD EPYC"
    assert _recommend(250).pick["value"] == 0.15 and _recommend(250).feasible == 3


def test_the_quality_bound_excludes_and_the_percentile_is_chosen():
    assert _recommend(250, min_ratio=0.999).pick["label"] == "minilm int8 batch 1 pytorch on AMD EPYC"
    assert _recommend(250, min_ratio=0.97).pick["label"] == "minilm int8 batch 32 pytorch on AMD EPYC"
    p50 = recommend(pd.DataFrame(ROWS), Bounds(100, 0.99, "p50"))  # p50 = p99 / 2 here: b8 at 94 ms passes
    assert p50.pick["label"] == "minilm int8 batch 8 pytorch on AMD EPYC"


def test_what_each_bound_cost_names_the_excluded_configuration_and_the_saving():
    latency, quality = _recommend(50).constraint_costs
    assert latency.best["label"] == "minilm int8 batch 8 pytorch on AMD EPYC" and latency.excluded == 2
    assert latency.saving == pytest.approx(1 - 0.15 / 0.25)
    assert quality.best is None  # d and e fail the latency bound as well
    text = format_text(_recommend(50))
    assert ("the latency bound (p99 ≤ 50 ms) excluded minilm int8 batch 8 pytorch on AMD EPYC (p99 188 ms), "
            "which would save 40% energy") in text
    latency, quality = _recommend(250).constraint_costs
    assert quality.best["label"] == "minilm int8 batch 32 pytorch on AMD EPYC"
    assert quality.saving == pytest.approx(1 - 0.06 / 0.15)
    assert "(quality ratio ≥ 0.99) excluded minilm int8 batch 32 pytorch on AMD EPYC (quality ratio 0.98), which " \
           "would save 60% energy" in format_text(_recommend(250))
    assert latency.best is None  # e is the only other configuration it excluded, and e fails quality too


def test_a_bound_that_excluded_only_worse_configurations_cost_nothing():
    rec = _recommend(250, rows=ROWS + [_row("f", "int8", 16, 0.2, 400.0, 0.995)])
    latency = rec.constraint_costs[0]
    assert latency.best["label"] == "minilm int8 batch 16 pytorch on AMD EPYC"
    assert latency.saving == pytest.approx(1 - 0.2 / 0.15)
    assert ("the latency bound (p99 ≤ 250 ms) cost nothing: the best configuration it excluded, minilm int8 batch 16 "
            "pytorch on AMD EPYC (p99 400 ms), uses 33% more energy") in format_text(rec)


ESTIMATED = [dict(r, energy_source="estimate", energy_measured=False) for r in ROWS]


def test_estimated_energy_is_flagged_on_every_line_that_shows_it():
    measured = format_text(_recommend(250))
    assert "[ESTIMATED energy]" not in measured and "energy measured by rapl" in measured.splitlines()[0]
    text = format_text(_recommend(250, rows=ESTIMATED))
    assert "ESTIMATED energy (a model)" in text.splitlines()[0]
    shown = [line for line in text.splitlines()[1:] if "pytorch on" in line or line.startswith("  ")]
    assert shown and all(line.endswith("[ESTIMATED energy]") for line in shown if "J/" in line or "ratio" in line)
    assert "ESTIMATED energy: no energy counter was readable" in text


def test_estimated_and_measured_energy_are_never_ranked_together():
    cheap_estimate = dict(_row("x", "int8", 1, 0.01, 20.0, 1.0, measured=False))
    rec = _recommend(250, rows=ROWS + [cheap_estimate])
    assert rec.energy_source == "rapl" and rec.measured == 5  # the estimate is left out, not ranked
    rec = _recommend(250, rows=ROWS + [cheap_estimate], energy_source="estimate")
    assert rec.energy_source == "estimate" and rec.pick["label"].startswith("minilm int8 batch 1") and rec.measured == 1
    on_gpu = dict(_row("g", "bf16", 8, 0.01, 20.0, 1.0, device="cuda:0", device_name="NVIDIA H200"),
                  energy_source="nvml_counter")
    with pytest.raises(BadInput, match=r"several energy sources \(nvml_counter, rapl\).*--energy-source"):
        _recommend(250, rows=ROWS + [on_gpu])
    assert _recommend(250, rows=ROWS + [on_gpu], energy_source="nvml_counter").measured == 1


def test_runners_up_are_ranked_with_their_extra_cost():
    rec = _recommend(250, top=1)
    assert [r["label"] for r in rec.runners_up] == ["minilm int8 batch 1 pytorch on AMD EPYC"]
    assert "2. minilm int8 batch 1 pytorch on AMD EPYC: 0.25 J/inference (+67%)" in format_text(rec)


def test_cost_and_carbon_objectives_follow_per_device_prices():
    rows = ROWS + [_row("g", "bf16", 8, 0.2, 20.0, 1.0, device="cuda:0", device_name="NVIDIA H200")]
    assert _recommend(50, rows=rows).pick["label"] == "minilm bf16 batch 8 pytorch on NVIDIA H200"
    cheap_cpu = CostSettings(device_price={"cpu": 0.05}, device_grid={"H200": 1000})
    cost = _recommend(50, rows=rows, objective="cost", settings=cheap_cpu)
    assert cost.pick["label"] == "minilm int8 batch 1 pytorch on AMD EPYC"
    assert cost.pick["cost_per_million"] == pytest.approx(0.25 * 1e6 / 3.6e6 * 0.05)
    carbon = _recommend(50, rows=rows, objective="carbon", settings=cheap_cpu)
    assert carbon.pick["label"] == "minilm int8 batch 1 pytorch on AMD EPYC"


def test_repeated_runs_of_one_configuration_are_one_candidate():
    rows = ROWS + [dict(_row("b", "int8", 8, 0.25, 188.0, 0.995), run_id="b2"),
                   dict(_row("b", "int8", 8, 0.20, 188.0, 0.995), run_id="b3")]
    rec = _recommend(250, rows=rows)
    assert rec.pick["runs"] == 3 and rec.pick["value"] == pytest.approx(0.2)  # the median of 0.15, 0.25, 0.20
    assert rec.measured == 5


def test_nothing_meeting_the_bounds_says_which_bound_excluded_what_and_the_closest():
    with pytest.raises(BadInput) as error:
        _recommend(10)
    message = str(error.value)
    assert "no configuration of bbc-topics meets both bounds" in message
    assert "the latency bound (p99 ≤ 10 ms) excluded 5" in message
    assert "the quality bound (quality ratio ≥ 0.99) excluded 2" in message
    assert message.index("minilm int8 batch 1") < message.index("minilm fp32 batch 1")  # 34 ms is closest


@pytest.mark.parametrize("call, expected", [
    (lambda: _recommend(50, eval_name="sst2"), "unknown eval 'sst2': this tree has bbc-topics"),
    (lambda: _recommend(50, rows=ROWS + [dict(_row("s", "fp32", 1, 1.0, 10.0, 1.0), eval="sst2")]),
     "several evals (bbc-topics, sst2): choose one with --eval"),
    (lambda: _recommend(50, objective="speed"), "objective 'speed': choose one of energy, cost, carbon"),
    (lambda: _recommend(-5), "--max-latency-ms -5: must be a number > 0"),
    (lambda: _recommend(50, min_ratio=-1), "--min-quality-ratio -1: must be a number >= 0"),
    (lambda: _recommend(50, rows=[]), "no result rows"),
    (lambda: recommend(pd.DataFrame(ROWS), Bounds(50, 0.99, "p95")), "choose one of p50, p90, p99"),
])
def test_bad_input_names_the_value_and_what_is_valid(call, expected):
    with pytest.raises(BadInput, match=expected.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_the_command_line_end_to_end(tmp_path, capsys):
    for row in ROWS:
        write_row(row, tmp_path / "tree" / row["run_id"])
    tree = str(tmp_path / "tree")
    assert main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99", "--requests-per-day", "1e6"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: minilm int8 batch 1 pytorch on AMD EPYC\n" in out
    assert "at 1e+06 requests/day: 0.069 kWh" in out  # 0.25 J × 1e6 / 3.6e6 = 0.06944, ±5%: two digits
    assert main([tree, "--max-latency-ms", "250", "--min-quality-ratio", "0.99", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pick"]["label"] == "minilm int8 batch 8 pytorch on AMD EPYC" and result["feasible"] == 3
    assert main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99", "--eval", "sst2"]) == 2
    assert "error: unknown eval 'sst2'" in capsys.readouterr().err
    assert main([tree, "--max-latency-ms", "1", "--min-quality-ratio", "0.99"]) == 2
    assert "closest" in capsys.readouterr().err
    assert main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99", "--price-per-kwh", "-1"]) == 2
    assert "--price-per-kwh=-1.0: must be a number >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main([str(tmp_path / "empty"), "--max-latency-ms", "50", "--min-quality-ratio", "0.99"])
    assert missing.value.code == 2 and "empty does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--max-latency-ms", "50", "--min-quality-ratio", "0.99"]) == 2
    assert "no result rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99", "--objective", "speed"])
    assert exit_.value.code == 2


def test_candidates_that_differ_only_in_a_usually_fixed_field_are_told_apart():
    rows = [dict(r, profile="standard") for r in ROWS] + [dict(_row("q", "int8", 1, 0.3, 30.0, 1.0), profile="quick")]
    rec = _recommend(50, rows=rows)
    assert [c["label"] for c in [rec.pick, *rec.runners_up]] == [
        "minilm int8 batch 1 pytorch on AMD EPYC profile standard",
        "minilm int8 batch 1 pytorch on AMD EPYC profile quick"]
    assert _recommend(50).pick["label"] == "minilm int8 batch 1 pytorch on AMD EPYC"  # one profile: not named


def test_repeated_runs_are_merged_by_key_even_where_an_extra_key_column_is_missing():
    from analysis.recommend import one_per_configuration

    rows = pd.DataFrame([make_row(energy_j_per_inference=j) for j in (0.3, 0.5)] + [make_row(quant="int8")])
    rows["serve_concurrency"] = None  # an open-loop serve row has no concurrency: it must not blank the key
    out = one_per_configuration(rows, ["serve_concurrency"])
    assert sorted(out["runs"]) == [1, 2] and len(out.columns) == len(set(out.columns))
    assert out.loc[out["runs"] == 2, "energy_j_per_inference"].item() == pytest.approx(0.4)
