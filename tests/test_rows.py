"""The fake rows of tests/rows.py stay rows that the harness could have written."""

import math

from bench.results import load, write_row
from tests.rows import NO_EVAL, OMIT, ON_H200, frame_of, make_row


def test_a_fake_row_is_written_and_read_back_like_a_real_one(tmp_path):
    rows = [make_row(), make_row(**ON_H200, quant="bf16"), make_row(**NO_EVAL, weights="random")]
    for i, row in enumerate(rows):
        write_row(row, tmp_path / str(i))  # refuses columns bench/row.py does not declare
    loaded = load(tmp_path)
    assert len(loaded) == 3 and (loaded["status"] == "ok").all() and loaded["run_id"].is_unique
    assert sorted(loaded["device_name"]) == ["AMD EPYC 7763 64-Core Processor"] * 2 + ["NVIDIA H200"]


def test_derived_columns_follow_the_values_given_unless_given_themselves():
    row = make_row(energy_j_per_inference=2.0, seq_len=64, quality=0.95, quality_ref=1.0)
    assert row["energy_j_per_inference_ci_low"] < 2.0 < row["energy_j_per_inference_ci_high"]
    assert row["energy_j_per_token"] == 2.0 / 64 and row["quality_ratio"] == 0.95
    assert row["passes_quality_gate"] is False  # 0.95 < the gate, 0.99
    assert len(row["latency_ms_samples"]) == sum(row["window_calls"])
    assert make_row(quality_ratio=0.5)["quality_ratio"] == 0.5
    assert "model_bytes" not in make_row(model_bytes=OMIT)
    assert not {"quality", "quality_ratio", "passes_quality_gate"} & set(make_row(**NO_EVAL))


def test_frame_of_gives_each_row_its_own_value_from_a_list():
    rows = frame_of(quant=["fp32", "int8"], batch_size=8)
    assert rows["quant"].tolist() == ["fp32", "int8"] and rows["batch_size"].tolist() == [8, 8]
    assert math.isclose(rows["energy_j_per_inference"].iloc[0], 0.37)
