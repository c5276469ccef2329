"""The regression gate's decisions, matching and exit codes, on synthetic rows."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.gate import compare, decide, main
from analysis.ratio_tests import bootstrap_ratio, detectable, holm, paired_t
from bench.results import load, write_row
from tests.rows import NO_EVAL, make_row


def row(quant="fp32", batch_size=1, scale=1.0, measured=True, source="rapl", seed=0, status="ok", spread=0.01,
        **extra):
    """A row of a run with eval=none (no quality columns, so no quality-gate comparison unless given)."""
    rng = np.random.default_rng(seed)
    energy = (1.0 + spread * rng.standard_normal(5)) * scale
    latency = (10.0 + 10 * spread * rng.standard_normal(100)) * scale
    return make_row(**{**NO_EVAL, "status": status, "model": "m", "model_revision": "r", "weights": "pretrained",
                       "quant": quant, "backend": "pytorch", "device": "cpu", "batch_size": batch_size,
                       "seq_len": 128, "profile": "quick", "energy_j_per_inference": float(np.median(energy)),
                       "latency_ms_p50": float(np.median(latency)), "window_j_per_inference": energy.tolist(),
                       "latency_ms_samples": latency.tolist(), "window_calls": [20] * 5,
                       "energy_measured": measured, "energy_source": source, **extra})


def tree(tmp_path: Path, name: str, rows: list[dict]) -> str:
    for i, r in enumerate(rows):
        write_row(r, tmp_path / name / str(i))
    return str(tmp_path / name)


def rounds(scales, factor=1.0, seed=0, **extra) -> list[dict]:
    """One row per round, as `python -m bench.ab` writes them: round i's sweep_id, the machine's speed scales[i]."""
    return [row(scale=s * factor, seed=seed + i, sweep_id=f"round-{i:02d}", **extra) for i, s in enumerate(scales)]


DRIFT = [1.0, 1.25, 0.9, 1.15, 0.8, 1.3, 1.05, 0.95]  # a shared VM: +-25% from one round to the next


def test_decision_needs_both_the_threshold_and_the_interval():
    assert decide(1.10, 1.02, 1.2, 0.05) == "regression"
    assert decide(1.10, 0.98, 1.2, 0.05) == "no change"  # interval reaches 1: could be noise
    assert decide(1.03, 1.01, 1.05, 0.05) == "no change"  # real but below the threshold
    assert decide(0.80, 0.7, 0.9, 0.05) == "improvement"


def test_bootstrap_interval_brackets_the_ratio():
    base = [[np.full(10, 10.0) + np.arange(10) * 0.1 for _ in range(5)]]  # one run of five windows
    cand = [[w * 1.3 for w in base[0]]]
    test = bootstrap_ratio(base, cand, resamples=500)
    low, high = test.bounds(0.95)
    assert test.ratio == pytest.approx(1.3) and low <= 1.3 <= high and low > 1.2 and test.p_value < 0.01
    assert "run-to-run noise unseen" in test.method


def test_spread_between_runs_widens_the_interval():
    steady = [[np.full(20, 10.0)] * 3]
    one_fast_run = [[np.full(20, 10.5)] * 3]
    drifting = [[np.full(20, v)] * 3 for v in (9.0, 10.5, 12.0)]  # same median, runs disagree
    low_one, _ = bootstrap_ratio(steady, one_fast_run, resamples=500).bounds(0.95)
    low_runs, high_runs = bootstrap_ratio(steady, drifting, resamples=500).bounds(0.95)
    assert low_one > 1  # a single run cannot show its own run-to-run noise
    assert low_runs < 1 < high_runs


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis():
    levels = holm([0.01, 0.04, 0.03, 0.001], 0.05)
    assert levels == pytest.approx([0.05 / 3, 0.025, 0.025, 0.05 / 4])
    assert holm([0.5], 0.05) == [0.05]


def test_holm_keeps_the_family_wise_error_where_uncorrected_tests_do_not():
    """2,000 gates of 8 comparisons where nothing changed: Holm's false alarms stay at 5%, 8 tests at 5% do not."""
    rng = np.random.default_rng(0)
    any_holm = any_raw = 0
    for _ in range(2000):
        p = [paired_t(np.ones(10), np.exp(rng.normal(0, 0.04, 10))).p_value for _ in range(8)]
        any_holm += any(pi < level for pi, level in zip(p, holm(p, 0.05)))
        any_raw += any(pi < 0.05 for pi in p)
    assert any_holm / 2000 <= 0.06 and any_raw / 2000 > 0.25


def test_detectable_regression_is_caught_about_four_times_in_five():
    rng = np.random.default_rng(1)
    sd, n = 0.06, 10
    floor = float(np.median([detectable(paired_t(np.ones(n), np.exp(rng.normal(0, sd, n))), 0.95, 0.05)
                             for _ in range(300)]))
    assert 0.05 < floor < 0.15
    caught = 0
    for _ in range(1000):
        test = paired_t(np.ones(n), np.exp(rng.normal(math.log1p(floor), sd, n)))
        caught += decide(test.ratio, *test.bounds(0.95), 0.05) == "regression"
    assert 0.72 <= caught / 1000 <= 0.88


def test_identical_trees_pass(tmp_path):
    base = tree(tmp_path, "base", [row(seed=1), row(quant="int8", seed=2)])
    assert main(["--baseline", base, "--candidate", base]) == 0


def test_a_candidate_30_percent_worse_fails_naming_both_metrics(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=1.3)])
    md, js = tmp_path / "gate.md", tmp_path / "gate.json"
    assert main(["--baseline", base, "--candidate", cand, "--markdown", str(md), "--json", str(js)]) == 1
    err = capsys.readouterr().err
    assert "energy_j_per_inference" in err and "latency_ms_p50" in err
    report = json.loads(js.read_text())
    assert report["regressions"] == 2 and all(c["ratio"] == pytest.approx(1.3) for c in report["comparisons"])
    assert report["exit_status"] == 1
    # Two comparisons in the family: the first is tested at 2.5%, the second at 5% (Holm).
    assert sorted(c["level"] for c in report["comparisons"]) == pytest.approx([0.95, 0.975])
    assert "2 regression(s)" in md.read_text() and "| configuration |" in md.read_text()


def test_an_improvement_is_reported_and_passes(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=0.7)])
    assert main(["--baseline", base, "--candidate", cand]) == 0
    assert capsys.readouterr().out.count("improvement") == 2


def test_interleaved_rounds_are_paired_so_drift_cancels(tmp_path, capsys):
    """A 10% slowdown under +-25% drift between rounds: paired by round it is caught, unpaired it is lost."""
    base = tree(tmp_path, "base", rounds(DRIFT))
    cand = tree(tmp_path, "cand", rounds(DRIFT, factor=1.10, seed=100))
    js = tmp_path / "gate.json"
    assert main(["--baseline", base, "--candidate", cand, "--metrics", "latency_ms_p50", "--json", str(js)]) == 1
    (comparison,) = json.loads(js.read_text())["comparisons"]
    assert comparison["method"] == "paired t, 8 rounds" and comparison["ratio"] == pytest.approx(1.10, abs=0.01)
    # The same rows without their rounds: the bootstrap sees only the spread between runs.
    unpaired = tree(tmp_path, "cand-unpaired", [{**r, "sweep_id": f"other-{i}"}
                                                for i, r in enumerate(rounds(DRIFT, factor=1.10, seed=100))])
    outcome = compare(load(base), load(unpaired), ["latency_ms_p50"], 0.05, 0.95, resamples=500)
    assert outcome.comparisons[0].method.startswith("bootstrap, 8+8 runs")
    assert outcome.comparisons[0].verdict == "no change" and outcome.comparisons[0].detectable > 0.15


def test_a_round_one_side_lacks_is_left_out_and_the_rest_stay_paired(tmp_path):
    base = tree(tmp_path, "base", rounds(DRIFT))
    cand = tree(tmp_path, "cand", rounds(DRIFT, factor=1.10, seed=100)[1:])  # its first run failed
    outcome = compare(load(base), load(cand), ["latency_ms_p50"], 0.05, 0.95)
    assert outcome.comparisons[0].method == "paired t, 7 of 8 rounds"
    assert outcome.comparisons[0].verdict == "regression"


def test_a_configuration_the_candidate_fails_to_run_is_a_regression(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1), row(seed=2, batch_size=8)])
    failed = {**row(seed=2, batch_size=8), "status": "failed", "error_type": "RuntimeError",
              "error_message": "boom"}
    cand = tree(tmp_path, "cand", [row(seed=1), failed])
    assert main(["--baseline", base, "--candidate", cand]) == 1
    out = capsys.readouterr().out
    assert "failed: RuntimeError: boom" in out and "only in baseline" not in out


def test_a_pass_states_the_regression_it_could_have_seen(tmp_path, capsys):
    noisy = [1.0, 1.4, 0.7, 1.2]  # four rounds on a noisy machine, candidate unchanged but jittered
    base = tree(tmp_path, "base", rounds(noisy))
    cand = tree(tmp_path, "cand", rounds([s * j for s, j in zip(noisy, (1.1, 0.85, 1.2, 0.9))], seed=100))
    assert main(["--baseline", base, "--candidate", cand, "--metrics", "latency_ms_p50"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "latency_ms_p50" in x]
    detects = int(line.split(">= +")[1].split("%")[0])
    assert detects >= 30 and "no change" in line and "paired t, 4 rounds" in line


def test_estimated_energy_is_never_gated_but_latency_is(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1, measured=False, source="estimate")])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=1.3, measured=False, source="estimate")])
    assert main(["--baseline", base, "--candidate", cand]) == 1
    out = capsys.readouterr()
    assert "not gated: estimated" in out.out and "REGRESSION: latency_ms_p50" in out.err
    assert "over 1 gated comparison(s)" in out.out


def test_nothing_gateable_cannot_decide(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1, source="rapl")])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=1.3, source="pyrapl")])
    assert main(["--baseline", base, "--candidate", cand, "--metrics", "energy_j_per_inference"]) == 2
    out = capsys.readouterr()
    assert "energy sources differ (pyrapl, rapl)" in out.out and "no comparison could be gated" in out.err


def test_quality_gate_flip_is_a_regression(tmp_path):
    base = tree(tmp_path, "base", [row(seed=1, passes_quality_gate=True)])
    cand = tree(tmp_path, "cand", [row(seed=1, passes_quality_gate=False)])
    assert main(["--baseline", base, "--candidate", cand]) == 1


def test_matching_reports_rows_on_one_side_only(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1), row(batch_size=8, seed=2)])
    cand = tree(tmp_path, "cand", [row(seed=1), row(quant="int8", seed=3)])
    assert main(["--baseline", base, "--candidate", cand]) == 0
    out = capsys.readouterr().out
    assert "only in baseline: quant=fp32 batch_size=8" in out and "only in candidate: quant=int8 batch_size=1" in out
    assert "Common to all configurations: model=m weights=pretrained" in out


def test_a_baseline_from_another_machine_is_not_compared_and_the_gate_cannot_decide(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1, device_name="AMD EPYC 7763"),
                                   row(seed=2, batch_size=8, device_name="AMD EPYC 7763")])
    cand = tree(tmp_path, "cand", [row(seed=1, device_name="Intel Xeon 8370C"),
                                   row(seed=2, batch_size=8, device_name="Intel Xeon 8370C")])
    md = tmp_path / "gate.md"
    assert main(["--baseline", base, "--candidate", cand, "--markdown", str(md)]) == 2
    err = capsys.readouterr().err
    assert "device_name differs (baseline: AMD EPYC 7763; candidate: Intel Xeon 8370C)" in err
    assert "rows of different machines are never compared" in err
    assert "**Could not decide**: no configuration appears in both" in md.read_text()  # for the PR comment


def test_one_configuration_on_another_machine_makes_the_gate_undecided(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1), row(seed=2, batch_size=8, device_name="AMD EPYC 7763")])
    cand = tree(tmp_path, "cand", [row(seed=1), row(seed=2, batch_size=8, device_name="Intel Xeon 8370C")])
    md = tmp_path / "gate.md"
    assert main(["--baseline", base, "--candidate", cand, "--markdown", str(md)]) == 2
    out = capsys.readouterr().out
    assert ("NOT COMPARED, another machine: batch_size=8 device_name=AMD EPYC 7763: baseline measured on "
            "AMD EPYC 7763, candidate on Intel Xeon 8370C") in out
    assert "Could not decide" in md.read_text()


def test_two_configurations_of_one_checkout_are_compared_across_an_ignored_column(tmp_path, capsys):
    base = tree(tmp_path, "base", rounds(DRIFT[:4], quant="fp32"))
    cand = tree(tmp_path, "cand", rounds(DRIFT[:4], factor=0.6, seed=100, quant="int8"))
    assert main(["--baseline", base, "--candidate", cand]) == 2
    assert "quant differs (baseline: fp32; candidate: int8): --ignore quant compares across it" in \
        capsys.readouterr().err
    assert main(["--baseline", base, "--candidate", cand, "--ignore", "quant"]) == 0
    out = capsys.readouterr().out
    assert out.count("quant=fp32->int8") == 2 and out.count("improvement") == 2


def test_two_models_are_compared_when_the_model_is_ignored(tmp_path, capsys):
    base = tree(tmp_path, "base", rounds(DRIFT[:4], model="small"))
    cand = tree(tmp_path, "cand", rounds(DRIFT[:4], factor=1.2, seed=100, model="large"))
    assert main(["--baseline", base, "--candidate", cand, "--ignore", "model", "--metrics", "latency_ms_p50"]) == 1
    assert "model=small->large" in capsys.readouterr().out


@pytest.mark.parametrize("ignore,reason", [
    ("colour", "--ignore colour: not a configuration key column; choose from: model, model_revision"),
    ("device_name", "--ignore cannot drop the machine"),
])
def test_ignore_names_only_key_columns_and_never_the_machine(tmp_path, capsys, ignore, reason):
    base = tree(tmp_path, "base", [row(seed=1)])
    assert main(["--baseline", base, "--candidate", base, "--ignore", ignore]) == 2
    assert reason in capsys.readouterr().err


def test_an_ignored_column_must_hold_one_value_per_side(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1), row(quant="int8", seed=2)])
    assert main(["--baseline", base, "--candidate", base, "--ignore", "quant"]) == 2
    assert "the baseline has model=m with quant = fp32, int8" in capsys.readouterr().err


def test_failed_rows_are_not_compared(tmp_path):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(seed=1), {**row(seed=1, scale=2.0), "status": "failed", "run_id": "x"}])
    outcome = compare(load(base), load(cand), ["latency_ms_p50"], 0.05, 0.95)
    assert [c.verdict for c in outcome.comparisons] == ["no change"]


@pytest.mark.parametrize("extra,reason", [
    (["--baseline", "/nonexistent"], "does not exist"),  # argparse keeps the last value given
    (["--metrics", "joules"], "unknown metric(s) joules"),
    (["--threshold", "0"], "threshold=0.0"),
])
def test_unusable_input_exits_2_with_the_reason(tmp_path, capsys, extra, reason):
    base = tree(tmp_path, "base", [row(seed=1)])
    assert main(["--baseline", base, "--candidate", base, *extra]) == 2
    assert reason in capsys.readouterr().err


def test_nothing_in_common_exits_2(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(batch_size=8, seed=1)])
    assert main(["--baseline", base, "--candidate", cand]) == 2
    assert "no configuration appears in both" in capsys.readouterr().err
