"""Cost and carbon arithmetic, the energy axis per scenario, and the distance to the device's limit."""

import math

import pandas as pd
import pytest

from analysis.axes import with_energy
from analysis.costs import CostSettings, with_costs
from analysis.limits import cpu_entry, load_peaks, with_limits
from analysis.pareto import quality_ratio, with_fronts
from tests.rows import ON_H200, OMIT, frame_of


def _rows(**columns):
    """Rows of bf16 runs on an H200; a list value gives each row its own."""
    return frame_of(**{**ON_H200, "model": "m", "quant": "bf16", "backend": "pytorch", "batch_size": 1, **columns})


def test_cost_and_carbon_per_million_and_per_day():
    rows = _rows(energy_j_per_inference=[0.36, 3.6])
    out = with_costs(rows, CostSettings(price_per_kwh=0.2, grid_gco2_per_kwh=500, requests_per_day=2e6))
    assert out["kwh_per_million"].tolist() == pytest.approx([0.1, 1.0])  # 0.36 J × 1e6 / 3.6e6 J per kWh
    assert out["cost_per_million"].tolist() == pytest.approx([0.02, 0.2])
    assert out["gco2e_per_million"].tolist() == pytest.approx([50, 500])
    assert out["kwh_per_day"].tolist() == pytest.approx([0.2, 2.0])
    assert out["cost_per_day"].tolist() == pytest.approx([0.04, 0.4])
    assert out["gco2e_per_day"].tolist() == pytest.approx([100, 1000])


def test_defaults_and_per_device_overrides():
    rows = _rows(device=["cuda:0", "cpu"], device_name=["NVIDIA H200", "AMD EPYC 7763"],
                 energy_j_per_inference=[3.6, 3.6])
    default = with_costs(rows, CostSettings())
    assert default["cost_per_million"].tolist() == pytest.approx([0.15, 0.15])
    assert default["gco2e_per_million"].tolist() == pytest.approx([400, 400])
    assert "kwh_per_day" not in default
    out = with_costs(rows, CostSettings(device_price={"H200": 0.3}, device_grid={"cpu": 50, "EPYC 7763": 20}))
    assert out["cost_per_million"].tolist() == pytest.approx([0.3, 0.15])
    assert out["gco2e_per_million"].tolist() == pytest.approx([400, 20])  # the longer, more specific name wins


@pytest.mark.parametrize("settings", [dict(price_per_kwh=-0.1), dict(grid_gco2_per_kwh=math.nan),
                                      dict(requests_per_day=-1), dict(device_price={"H200": -1})])
def test_negative_prices_and_intensities_are_refused(settings):
    with pytest.raises(ValueError, match="must be a number >= 0"):
        CostSettings(**settings)


def test_generation_rows_are_judged_per_output_token_and_never_share_a_front_with_encoders():
    # The third row is of schema 1, which had no scenario column: migrated, it is a classify row.
    rows = _rows(scenario=["classify", "generate", OMIT], schema_version=[2, 2, 1], eval="e",
                 quality_metric="accuracy", quality=[0.9, 0.95, 0.8], energy_j_per_inference=[1.0, 2.0, 3.0],
                 energy_j_per_output_token=[math.nan, 0.5, math.nan], energy_j_per_request=[math.nan, 64.0, math.nan])
    axis = with_energy(rows)
    assert axis["scenario"].tolist() == ["classify", "generate", "classify"]
    assert axis["energy_j"].tolist() == [1.0, 0.5, 3.0]
    assert axis["energy_unit"].tolist() == ["inference", "output token", "inference"]
    # Compared on one axis the generation row would dominate the first encoder row; in its own group it cannot.
    fronts, _ = with_fronts(rows)
    assert fronts["on_pareto_front"].tolist() == [True, True, False]
    costs = with_costs(rows, CostSettings(requests_per_day=1e6))
    assert costs["kwh_per_million"][1] == pytest.approx(0.5 * 1e6 / 3.6e6)
    assert costs["kwh_per_day"][1] == pytest.approx(64.0 * 1e6 / 3.6e6)  # a request is a whole generation


def test_quality_ratio_is_oriented_so_higher_is_better_for_perplexity():
    rows = pd.DataFrame({"quality_metric": ["accuracy", "perplexity", "accuracy"], "quality": [0.95, 10.5, 0.9],
                         "quality_ref": [1.0, 10.0, math.nan], "quality_ratio": [0.95, 1.05, 0.7]})
    assert quality_ratio(rows).tolist() == pytest.approx([0.95, 10.0 / 10.5, 0.7])


def test_an_h200_row_gets_its_datasheet_peaks_and_its_distance_to_them():
    rows = _rows(quant="bf16", flops_per_inference=1e9, throughput_samples_s=1000.0, energy_j_per_inference=0.01)
    out = with_limits(rows, load_peaks()).iloc[0]
    assert out["limit_device"] == "H200" and out["precision"] == "bf16"
    assert out["peak_tflops"] == 989.5 and out["peak_rated_w"] == 700 and out["peak_mem_gbs"] == 4800
    assert out["achieved_tflops"] == pytest.approx(1.0)
    assert out["fraction_of_peak_tflops"] == pytest.approx(1 / 989.5)
    assert out["flops_per_joule"] == pytest.approx(1e11)
    assert out["peak_flops_per_joule"] == pytest.approx(989.5e12 / 700)
    assert out["fraction_of_peak_flops_per_joule"] == pytest.approx(1e11 / (989.5e12 / 700))
    assert "dense" in out["peak_source"] and "h200" in out["peak_source"] and out["limit_note"] == ""


@pytest.mark.parametrize("name, quant, key, tflops", [
    ("NVIDIA H100 80GB HBM3", "fp16", "H100", 989.5), ("NVIDIA H100 PCIe", "int8", "H100 PCIe", 1513),
    ("NVIDIA A100-SXM4-80GB", "fp32", "A100-SXM4-80GB", 19.5), ("NVIDIA L4", "int8", "L4", 242.5),
    ("Tesla T4", "fp16", "T4", 65), ("NVIDIA L4", "int8-wo", "L4", 121),
])
def test_device_names_match_whole_words_and_the_most_specific_entry(name, quant, key, tflops):
    out = with_limits(_rows(device_name=name, quant=quant), load_peaks()).iloc[0]
    assert (out["limit_device"], out["peak_tflops"]) == (key, tflops)


def test_unknown_devices_missing_precisions_and_unknown_cpus_are_nan_with_the_reason():
    rows = _rows(device=["cuda:0", "cuda:0", "cpu"], device_name=["NVIDIA L40S", "Tesla T4", "AMD EPYC 7763"],
                 quant=["bf16", "bf16", "fp32"], flops_per_inference=1e9, throughput_samples_s=10.0,
                 energy_j_per_inference=0.5)
    out = with_limits(rows, load_peaks())
    assert out["fraction_of_peak_flops_per_joule"].isna().all()
    assert out["achieved_tflops"].tolist() == pytest.approx([0.01] * 3)  # measured figures stay
    assert "no peak figures for 'NVIDIA L40S'" in out["limit_note"][0]  # "L4" is not a word of "L40S"
    assert out["limit_note"][1] == "T4 has no bf16 peak"
    assert "no peak figures for 'AMD EPYC 7763'" in out["limit_note"][2] and "--cpu-peak-tflops" in out["limit_note"][2]


def test_a_configured_cpu_gets_figures_and_a_peaks_file_entry_beats_it(tmp_path):
    rows = _rows(device="cpu", device_name="AMD EPYC 7763", quant="int8", flops_per_inference=2e9,
                 throughput_samples_s=100.0, energy_j_per_inference=0.5)
    out = with_limits(rows, load_peaks(cpu=cpu_entry({"fp32": 2.0, "int8": 8.0}, 200.0, None))).iloc[0]
    assert out["limit_device"] == "cpu" and out["peak_tflops"] == 8.0
    assert out["fraction_of_peak_flops_per_joule"] == pytest.approx((2e9 / 0.5) / (8e12 / 200))
    peaks_file = tmp_path / "peaks.yaml"
    peaks_file.write_text("devices:\n  EPYC 7763:\n    tflops: {int8: 4.0}\n    rated_w: 280\n    mem_gbs: 204.8\n"
                          "    source: vendor sheet\n    dense: true\n")
    out = with_limits(rows, load_peaks(peaks_file, cpu_entry({"*": 1.0}, 100.0, None))).iloc[0]
    assert (out["limit_device"], out["peak_tflops"], out["peak_rated_w"]) == ("EPYC 7763", 4.0, 280)
    with pytest.raises(ValueError, match="--cpu-rated-w=-5"):
        cpu_entry({"*": 1.0}, -5.0, None)


def test_decode_is_bounded_by_memory_bandwidth_over_model_bytes_times_batch():
    rows = _rows(scenario=["generate", "classify"], batch_size=4, model_bytes=2e9, decode_tokens_s=[4800.0, math.nan])
    out = with_limits(rows, load_peaks())
    assert out["decode_bound_tokens_s"][0] == pytest.approx(4800e9 / 2e9 * 4)  # 9600 tokens/s
    assert out["fraction_of_decode_bound"][0] == pytest.approx(0.5)
    assert math.isnan(out["decode_bound_tokens_s"][1])  # an encoder does not decode
    no_bytes = with_limits(_rows(scenario="generate", decode_tokens_s=10.0, model_bytes=OMIT), load_peaks())
    assert "no model_bytes" in no_bytes["limit_note"][0]
