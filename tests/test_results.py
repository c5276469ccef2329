import pandas as pd

from bench.results import load, write_row


def test_rows_are_written_atomically_and_loaded_from_a_tree(tmp_path):
    write_row({"run_id": "a", "energy_params": {"zones": ["package-0"]}, "latency_ms_samples": [1.0, 2.0]},
              tmp_path / "sweep" / "0")
    write_row({"run_id": "b", "energy_params": {}, "latency_ms_samples": [3.0]}, tmp_path / "sweep" / "1")
    # What a killed writer leaves behind must not be read.
    (tmp_path / "sweep" / "2").mkdir()
    (tmp_path / "sweep" / "2" / ".row-x.parquet.tmp").write_bytes(b"partial")
    (tmp_path / "sweep" / "2" / ".row-y.parquet").write_bytes(b"partial")
    (tmp_path / "sweep" / "analysis").mkdir()
    (tmp_path / "sweep" / "analysis" / "pareto.parquet").write_bytes(b"not a row")
    rows = load(tmp_path)
    assert sorted(rows["run_id"]) == ["a", "b"]
    assert list(rows.set_index("run_id").loc["a", "latency_ms_samples"]) == [1.0, 2.0]
    assert rows.set_index("run_id").loc["a", "energy_params"] == '{"zones": ["package-0"]}'
    assert not list((tmp_path / "sweep" / "0").glob(".*"))


def test_load_of_an_empty_tree_is_an_empty_frame(tmp_path):
    assert isinstance(load(tmp_path), pd.DataFrame) and load(tmp_path).empty
