"""summary.md and report.html show cost, carbon and the distance to the limit, per scenario."""

from analysis.__main__ import main
from bench.results import write_row
from tests.rows import ON_H200, make_row


def _row(run_id, quant, energy, **extra):
    return make_row(**{**ON_H200, "run_id": run_id, "model": "tiny", "eval": "e", "quant": quant, "batch_size": 1,
                       "backend": "pytorch", "quality_metric": "accuracy", "quality": 0.9, "quality_ref": 0.9,
                       "quality_ratio": 1.0, "passes_quality_gate": True, "energy_j_per_inference": energy,
                       "energy_j_per_inference_ci_low": energy, "energy_j_per_inference_ci_high": energy,
                       "energy_j_per_token": energy / 100, "latency_ms_p50": 5.0, "energy_measured": True,
                       "flops_per_inference": 1e9, "throughput_samples_s": 1000.0, **extra})


def test_summary_and_report_show_cost_carbon_and_distance_to_the_limit(tmp_path, capsys):
    rows = [_row("0", "bf16", 0.036), _row("1", "fp32", 0.072),
            _row("2", "bf16", 36.0, scenario="generate", eval="e", quality_metric="perplexity", quality=10.0,
                 quality_ref=10.0, energy_j_per_output_token=0.0036, energy_j_per_output_token_ci_low=0.0036,
                 energy_j_per_output_token_ci_high=0.0036, model_bytes=2e9, decode_tokens_s=1200.0)]
    for r in rows:
        write_row(r, tmp_path / "tree" / r["run_id"])
    out = tmp_path / "out"
    assert main([str(tmp_path / "tree"), "--out", str(out), "--price-per-kwh", "0.3", "--grid-gco2-per-kwh", "200",
                 "--requests-per-day", "1e6"]) == 0
    summary = (out / "summary.md").read_text()
    assert "## e on NVIDIA H200 (energy measured by nvml_counter)" in summary
    assert "## e (per output token) on NVIDIA H200 (energy measured by nvml_counter)" in summary
    assert "| J/inference | interval |" in summary and "| J/output token | interval |" in summary
    assert "| kWh/M | cost/M | gCO2e/M |" in summary and "kWh/day" in summary
    # 0.036 J/inference -> 0.01 kWh per million -> 0.003 at 0.3/kWh and 2 g at 200 g/kWh
    assert "| 0.01 | 0.003 | 2 |" in summary
    assert "per million output tokens" in summary and "at 0.3 per kWh and 200 gCO2e/kWh" in summary
    assert "### Distance to the limit: e on NVIDIA H200" in summary
    # bf16: 1e9 FLOP / 0.036 J = 27.78 GFLOP/J against 989.5e12 / 700 W = 1414 GFLOP/J
    assert "| tiny | bf16 | none | 1 | pytorch | bf16 | H200 | 1 | 0.1% | 27.8 | 1410 | 2.0% |" in summary  # 3 digits
    assert "| decode tok/s | bound tok/s | % of bound |" in summary
    assert "| 1200 | 2400 | 50.0% |" in summary  # 4800 GB/s / 2 GB × batch 1
    assert "Peaks: https://www.nvidia.com/en-us/data-center/h200/" in summary and "(dense)" in summary
    page = (out / "report.html").read_text()
    assert "Distance to the limit" in page and "gCO2e/M" in page and "% peak FLOP/J" in page
    assert page.count('class="plotly-graph-div"') == 4


def test_bad_cost_options_exit_2(tmp_path, capsys):
    write_row(_row("0", "bf16", 0.036), tmp_path / "tree" / "0")
    assert main([str(tmp_path / "tree"), "--device-price", "H200"]) == 2
    assert "--device-price 'H200': expected NAME=NUMBER" in capsys.readouterr().err
    assert main([str(tmp_path / "tree"), "--grid-gco2-per-kwh", "-3"]) == 2
    assert main([str(tmp_path / "tree"), "--device-peaks", str(tmp_path / "missing.yaml")]) == 2
