"""Serve rows in the analysis: the load curves per group and energy source, the Serving table, and `recommend`
choosing a variant and arrival rate under an SLO."""

import json

import pandas as pd
import pytest

from analysis.__main__ import _serving, main as analyse
from analysis.pareto import with_fronts
from analysis.recommend import BadInput, main as recommend_main
from analysis.serve_recommend import Slo, format_text, recommend_serve
from bench.results import write_row
from tests.rows import NO_EVAL, SERVE, make_row

DEVICE = "AMD-EPYC-7763-64-Core-Processor"  # tests.rows' CPU, as a file name


def _serve(quant="gguf", rate=1.0, j=0.05, ttft_p99=150.0, attainment=1.0, **extra):
    """A serve row: open loop at `rate` req/s, `j` J per output token, recorded against TTFT ≤ 500, ITL ≤ 100."""
    achieved = rate or 1.0
    return make_row(**{**SERVE, "quant": quant, "serve_rate": rate, "achieved_rps": achieved,
                       "energy_j_per_output_token": j, "ttft_ms_p99": ttft_p99, "slo_attainment": attainment,
                       "goodput_rps": achieved * attainment, **extra})


# TTFT p99 grows with the rate while J per output token falls: the cheapest load that meets the SLO wins.
ROWS = [_serve(quant, rate, j * f, 100 * rate ** 2, 1.0 if rate < 4 else 0.7)
        for quant, j in (("gguf", 0.05), ("q8_0", 0.08), ("q4_k_m", 0.04))
        for rate, f in ((0.5, 1.4), (1.0, 1.0), (2.0, 0.8), (4.0, 0.75))]


def _write(rows, tree):
    for row in rows:
        write_row(row, tree / row["run_id"])
    return str(tree)


def test_serve_rows_get_load_curves_per_group_and_energy_source(tmp_path):
    estimated = [_serve("q4_k_m", rate, 0.03, energy_source="estimate", energy_measured=False) for rate in (1.0, 2.0)]
    closed = [_serve("q8_0", None, 0.06, serve_mode="closed", serve_concurrency=c) for c in (1.0, 4.0)]
    failed = make_row(**{**SERVE, "status": "failed", "energy_j_per_output_token": None})
    classify = make_row(run_id="classify")  # scored classify rows keep their fronts and plots
    tree = _write(ROWS + estimated + closed + [failed, classify], tmp_path / "tree")
    assert analyse([tree, "--out", str(tmp_path / "out")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == sorted([f"serve_smollm2_{DEVICE}_rapl_open.png", f"serve_smollm2_{DEVICE}_estimate_open.png",
                           f"serve_smollm2_{DEVICE}_rapl_closed.png", f"quality_energy_bbc-topics_{DEVICE}_rapl.png",
                           f"latency_energy_bbc-topics_{DEVICE}_rapl.png"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    dev = DEVICE.replace("-", " ").replace("7763 64 Core", "7763 64-Core")
    assert f"## Serving: smollm2 on {dev} (ESTIMATED energy, a model), open loop" in summary
    assert f"## Serving: smollm2 on {dev} (energy measured by rapl), open loop" in summary
    assert f"## Serving: smollm2 on {dev} (energy measured by rapl), closed loop" in summary
    assert "| smollm2 q4_k_m llamacpp | 2 req/s | 0.0320 | [0.0310, 0.0330] |" in summary
    assert "| concurrency 4 |" in summary
    # Only the failed row is "not placed": ok serve rows are shown under Serving, not counted as unusable.
    assert "1 row(s) without usable quality or energy" in summary
    estimated_section = summary.split("(ESTIMATED energy, a model), open loop")[1].split("## ")[0]
    assert "estimate (ESTIMATE)" in estimated_section and "| rapl |" not in estimated_section
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') == 5 and "Serving: smollm2" in page


def test_estimated_and_measured_serve_rows_are_never_on_one_plot(tmp_path):
    estimated = [_serve(quant, 1.0, 0.03, energy_source="estimate", energy_measured=False) for quant in ("gguf", "f16")]
    rows, _ = with_fronts(pd.DataFrame(ROWS + estimated))
    groups = _serving(rows, tmp_path)
    assert [(len(group), images[0].name) for _, group, images in groups] == [
        (2, f"serve_smollm2_{DEVICE}_estimate_open.png"), (12, f"serve_smollm2_{DEVICE}_rapl_open.png")]
    for heading, group, _ in groups:
        assert group["energy_source"].nunique() == 1
        assert ("ESTIMATED" in heading) == (group["energy_source"].iloc[0] == "estimate")


def _recommend(slo, rows=ROWS, **kwargs):
    return recommend_serve(pd.DataFrame(rows), slo, **kwargs)


def test_the_cheapest_variant_and_rate_meeting_the_slo_is_picked():
    rec = _recommend(Slo(500, 100))  # the SLO the rows recorded: judged by their own attainment
    assert rec.pick["label"].startswith("smollm2 q4_k_m llamacpp on ") and rec.pick["label"].endswith("at 2 req/s")
    assert rec.pick["judged_by"] == "attainment" and rec.feasible == 9 and rec.measured == 12
    assert [r["label"].split(" on ")[0] + r["label"].split("Processor")[1] for r in rec.runners_up] == [
        "smollm2 q4_k_m llamacpp at 1 req/s", "smollm2 gguf Q4_1 llamacpp at 2 req/s",
        "smollm2 gguf Q4_1 llamacpp at 1 req/s"]
    text = format_text(rec)
    assert "judged: 12 recorded against this SLO: their recorded attainment ≥ 0.99" in text
    assert "0.0320 [0.0310, 0.0330] J/output token, TTFT p99 400 ms" in text  # ±3% of 0.032: three digits
    cost = rec.constraint_costs[0]
    assert cost.constraint == "attainment" and cost.best["label"].endswith("at 4 req/s")
    assert cost.saving == pytest.approx(1 - 0.03 / 0.032)


def test_another_slo_is_judged_by_percentiles_and_says_so():
    rec = _recommend(Slo(300, 100))  # the rows recorded attainment against 500 ms: not this SLO
    assert rec.pick["label"].endswith("at 1 req/s") and rec.pick["judged_by"] == "p99"
    text = format_text(rec)
    assert "recorded against another SLO (or none): TTFT p99 ≤ 300 ms and ITL p99 ≤ 100 ms, each on its own" in text
    assert "- TTFT p99 ≤ 300 ms: excluded smollm2 q4_k_m llamacpp" in text and "at 4 req/s (TTFT p99 1600 ms" in text
    assert "which would save 25% energy" in text  # 0.030 at 4 req/s against 0.040 at 1 req/s
    assert _recommend(Slo(300, 100, 0.9)).pick["judged_by"] == "p90"  # the first recorded percentile at or above
    # Failed requests count against the share: percentiles cover completed requests only.
    lossy = [dict(r, requests_failed=5, requests_ok=55) if r["quant"] == "q4_k_m" else r for r in ROWS]
    assert _recommend(Slo(300, 100), rows=lossy).pick["label"].startswith("smollm2 gguf")
    # Above p99 no recorded figure can show the attainment: refused, not guessed.
    with pytest.raises(BadInput, match=r"12 recorded against another SLO cannot be judged at ≥ 0.999: they record "
                                       r"p50, p90 and p99 only"):
        _recommend(Slo(300, 100, 0.999))
    assert _recommend(Slo(500, 100, 0.999)).pick["judged_by"] == "attainment"  # its own SLO: its own count


def test_loads_stay_apart_and_repeated_runs_of_one_load_are_one_candidate():
    rows = ROWS + [dict(_serve("q4_k_m", 2.0, 0.040, 400.0), run_id="again")]
    rec = _recommend(Slo(500, 100), rows=rows)
    assert rec.measured == 12 and rec.pick["runs"] == 2 and rec.pick["value"] == pytest.approx(0.036)


def test_estimated_and_measured_sources_are_never_ranked_together():
    cheap_estimate = _serve("q4_k_m", 1.0, 0.001, energy_source="estimate", energy_measured=False)
    rec = _recommend(Slo(500, 100), rows=ROWS + [cheap_estimate])
    assert rec.energy_source == "rapl" and rec.measured == 12
    rec = _recommend(Slo(500, 100), rows=ROWS + [cheap_estimate], energy_source="estimate")
    assert rec.measured == 1 and "[ESTIMATED energy]" in format_text(rec).splitlines()[2]
    other = _serve("q4_k_m", 1.0, 0.001, energy_source="nvml_counter")
    with pytest.raises(BadInput, match=r"several energy sources \(nvml_counter, rapl\).*--energy-source"):
        _recommend(Slo(500, 100), rows=ROWS + [other])


def test_each_candidate_shows_its_quality_or_that_of_its_unloaded_rows():
    rec = _recommend(Slo(500, 100))
    assert rec.pick["quality"] == "perplexity 21" and "ITL p99 40 ms, attainment 100.0%" in format_text(rec)
    unscored = [_serve(quant, 1.0, j, **NO_EVAL) for quant, j in (("q4_k_m", 0.04), ("gguf", 0.05))]
    scored = make_row(scenario="generate", model="smollm2", quant="q4_k_m", backend="llamacpp", eval="wikitext-2",
                      quality_metric="perplexity", quality=18.3, quality_ref=17.9)
    rec = _recommend(Slo(500, 100), rows=unscored + [scored])
    assert rec.pick["quality"] == "perplexity 18.3 on wikitext-2 (its generate rows)"
    assert rec.runners_up[0]["quality"] is None
    assert "1 run(s), perplexity 18.3 on wikitext-2 (its generate rows)" in format_text(rec)


def test_nothing_meeting_the_slo_exits_2_with_the_closest(tmp_path, capsys):
    tree = _write(ROWS, tmp_path / "tree")
    assert recommend_main([tree, "--slo-ttft-ms", "20"]) == 2
    err = capsys.readouterr().err
    assert "no serve configuration meets the SLO (TTFT ≤ 20 ms for ≥ 0.99 of requests) among 12 measured" in err
    assert "TTFT p99 ≤ 20 ms excluded 12" in err
    closest = err.split("closest:")[1].splitlines()[1:4]
    assert all("at 0.5 req/s: TTFT p99 25 ms" in line for line in closest)  # 25 ms is the nearest


def test_the_command_line_chooses_the_serve_mode(tmp_path, capsys):
    classify = [make_row(run_id="c1"), make_row(run_id="c2", quant="int8", energy_j_per_inference=0.2)]
    tree = _write(ROWS + classify, tmp_path / "tree")
    assert recommend_main([tree, "--slo-ttft-ms", "500", "--slo-itl-ms", "100"]) == 0
    assert "Recommended: smollm2 q4_k_m llamacpp" in capsys.readouterr().out
    assert recommend_main([tree, "--scenario", "serve", "--slo-ttft-ms", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pick"]["judged_by"] == "p99"
    # The classify rows of the same tree are judged as before.
    assert recommend_main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99"]) == 0
    assert "Recommended: minilm int8 batch 1 pytorch" in capsys.readouterr().out
    serve_only = _write(ROWS, tmp_path / "serve")
    assert recommend_main([serve_only, "--slo-itl-ms", "50"]) == 0  # the only scenario: serve


@pytest.mark.parametrize("args, expected", [
    (["--slo-ttft-ms", "-5"], "--slo-ttft-ms -5: must be a number > 0"),
    (["--slo-itl-ms", "0"], "--slo-itl-ms 0: must be a number > 0"),
    (["--slo-ttft-ms", "nan"], "--slo-ttft-ms nan: must be a number > 0"),
    (["--slo-ttft-ms", "500", "--min-slo-attainment", "1.5"], "--min-slo-attainment 1.5: must be a share in (0, 1]"),
    (["--scenario", "serve"], "serve rows need an SLO: give --slo-ttft-ms and/or --slo-itl-ms"),
    (["--slo-ttft-ms", "500", "--max-latency-ms", "50"], "--max-latency-ms: for classify and generate rows"),
    (["--min-slo-attainment", "0.9", "--scenario", "classify"], "--min-slo-attainment is for scenario=serve rows"),
    (["--slo-ttft-ms", "500", "--energy-source", "nvml_counter"], "unknown energy source 'nvml_counter'"),
])
def test_bad_input_names_the_value(tmp_path, capsys, args, expected):
    tree = _write(ROWS[:2], tmp_path / "tree")
    assert recommend_main([tree, *args]) == 2
    assert expected in capsys.readouterr().err
