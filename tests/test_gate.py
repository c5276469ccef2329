"""The regression gate's decisions, matching and exit codes, on synthetic rows."""

import json

import numpy as np
import pytest

from analysis.gate import bootstrap_ratio, compare, decide, main
from bench.results import load, write_row


def row(quant="fp32", batch_size=1, scale=1.0, measured=True, source="rapl", seed=0, status="ok", **extra):
    rng = np.random.default_rng(seed)
    energy = (1.0 + 0.01 * rng.standard_normal(5)) * scale
    latency = (10.0 + 0.1 * rng.standard_normal(100)) * scale
    return {"status": status, "model": "m", "model_revision": "r", "weights": "pretrained", "quant": quant,
            "backend": "pytorch", "device": "cpu", "batch_size": batch_size, "seq_len": 128, "profile": "quick",
            "energy_j_per_inference": float(np.median(energy)), "latency_ms_p50": float(np.median(latency)),
            "window_j_per_inference": energy.tolist(), "latency_ms_samples": latency.tolist(),
            "window_calls": [20] * 5, "energy_measured": measured, "energy_source": source, **extra}


def tree(tmp_path, name, rows):
    for i, r in enumerate(rows):
        write_row(r, tmp_path / name / str(i))
    return str(tmp_path / name)


def test_decision_needs_both_the_threshold_and_the_interval():
    assert decide(1.10, 1.02, 1.2, 0.05) == "regression"
    assert decide(1.10, 0.98, 1.2, 0.05) == "no change"  # interval reaches 1: could be noise
    assert decide(1.03, 1.01, 1.05, 0.05) == "no change"  # real but below the threshold
    assert decide(0.80, 0.7, 0.9, 0.05) == "improvement"


def test_bootstrap_interval_brackets_the_ratio():
    base = [[np.full(10, 10.0) + np.arange(10) * 0.1 for _ in range(5)]]  # one run of five windows
    cand = [[w * 1.3 for w in base[0]]]
    ratio, low, high = bootstrap_ratio(base, cand, 0.95, resamples=500)
    assert ratio == pytest.approx(1.3) and low <= 1.3 <= high and low > 1.2


def test_spread_between_runs_widens_the_interval():
    steady = [[np.full(20, 10.0)] * 3]
    one_fast_run = [[np.full(20, 10.5)] * 3]
    drifting = [[np.full(20, v)] * 3 for v in (9.0, 10.5, 12.0)]  # same median, runs disagree
    _, low_one, _ = bootstrap_ratio(steady, one_fast_run, 0.95, resamples=500)
    _, low_runs, high_runs = bootstrap_ratio(steady, drifting, 0.95, resamples=500)
    assert low_one > 1  # a single run cannot show its own run-to-run noise
    assert low_runs < 1 < high_runs


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
    assert "2 regression(s)" in md.read_text() and "| configuration |" in md.read_text()


def test_an_improvement_is_reported_and_passes(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=0.7)])
    assert main(["--baseline", base, "--candidate", cand]) == 0
    assert capsys.readouterr().out.count("improvement") == 2


def test_estimated_energy_is_never_gated_but_latency_is(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1, measured=False, source="estimate")])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=1.3, measured=False, source="estimate")])
    assert main(["--baseline", base, "--candidate", cand]) == 1
    out = capsys.readouterr()
    assert "not gated: estimated" in out.out and "REGRESSION: latency_ms_p50" in out.err


def test_energy_from_different_sources_is_not_gated(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1, source="rapl")])
    cand = tree(tmp_path, "cand", [row(seed=1, scale=1.3, source="pyrapl")])
    assert main(["--baseline", base, "--candidate", cand, "--metrics", "energy_j_per_inference"]) == 0
    assert "energy sources differ (pyrapl, rapl)" in capsys.readouterr().out


def test_quality_gate_flip_is_a_regression(tmp_path):
    base = tree(tmp_path, "base", [row(seed=1, passes_quality_gate=True)])
    cand = tree(tmp_path, "cand", [row(seed=1, passes_quality_gate=False)])
    assert main(["--baseline", base, "--candidate", cand]) == 1


def test_matching_reports_rows_on_one_side_only(tmp_path, capsys):
    base = tree(tmp_path, "base", [row(seed=1), row(batch_size=8, seed=2)])
    cand = tree(tmp_path, "cand", [row(seed=1), row(quant="int8", seed=3)])
    assert main(["--baseline", base, "--candidate", cand]) == 0
    out = capsys.readouterr().out
    assert "only in baseline: model=m weights=pretrained quant=fp32" in out and "batch_size=8" in out
    assert "only in candidate:" in out and "quant=int8" in out


def test_failed_rows_are_not_compared(tmp_path):
    base = tree(tmp_path, "base", [row(seed=1)])
    cand = tree(tmp_path, "cand", [row(seed=1), {**row(seed=1, scale=2.0), "status": "failed", "run_id": "x"}])
    comparisons, _, _ = compare(load(base), load(cand), ["latency_ms_p50"], 0.05, 0.95)
    assert [c.verdict for c in comparisons] == ["no change"]


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
    cand = tree(tmp_path, "cand", [row(quant="int8", seed=1)])
    assert main(["--baseline", base, "--candidate", cand]) == 2
    assert "no configuration appears in both" in capsys.readouterr().err
