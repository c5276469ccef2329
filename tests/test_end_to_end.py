"""Real sweeps on the CPU, read back from parquet."""

import shutil

import pandas as pd
import pytest

from bench.config import BenchConfig, EvalConfig, ModelConfig
from bench.results import load
from bench.run import run
from tests.conftest import run_bench
from tests.profiles import TINY

REQUIRED = {
    "schema_version": "int", "run_id": "str", "sweep_id": "str", "status": "str", "model": "str",
    "model_name_or_path": "str", "weights": "str", "quant": "str", "backend": "str", "device": "str",
    "batch_size": "int", "seq_len": "int", "threads": "int", "profile": "str", "latency_ms_p50": "float",
    "latency_ms_p90": "float", "latency_ms_p99": "float", "throughput_samples_s": "float",
    "throughput_tokens_s": "float", "energy_j_per_inference": "float", "energy_j_per_inference_ci_low": "float",
    "energy_j_per_inference_ci_high": "float", "energy_j_per_token": "float", "energy_gross_j": "float",
    "energy_net_j": "float", "idle_power_w": "float", "avg_power_w": "float", "energy_source": "str",
    "energy_measured": "bool", "windows": "int", "energy_cv": "float", "cpu_model": "str", "cpu_cores": "int",
    "torch_version": "str", "transformers_version": "str", "timestamp": "str",
}
KINDS = {"int": pd.api.types.is_integer_dtype, "float": pd.api.types.is_float_dtype,
         "bool": pd.api.types.is_bool_dtype, "str": lambda s: pd.api.types.is_string_dtype(s) or s.dtype == object}


@pytest.mark.slow
def test_quick_sweep_of_minilm_writes_one_typed_row_per_run(tmp_path):
    result = run_bench("quant=int8,bf16", "batch_size=1", "seq_len=32", "profile=quick",
                       "eval.max_test_samples=100", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    assert result.returncode == 0, result.stderr
    rows = load(tmp_path / "sweep")
    assert len(rows) == 2
    assert sorted(rows["quant"]) == ["bf16", "int8"]
    for column, kind in REQUIRED.items():
        assert column in rows, column
        assert KINDS[kind](rows[column]), f"{column}: {rows[column].dtype}"
    assert (rows["status"] == "ok").all() and rows["sweep_id"].nunique() == 1 and rows["run_id"].nunique() == 2
    assert set(rows["model"]) == {"minilm"} and set(rows["weights"]) == {"pretrained"}
    assert set(rows["profile"]) == {"quick"} and set(rows["device"]) == {"cpu"}
    # Here (a VM) there is no counter; wherever RAPL is readable the row must say so instead.
    for source, measured in zip(rows["energy_source"], rows["energy_measured"]):
        assert (source, measured) in {("estimate", False), ("rapl", True)}
    assert (rows["energy_j_per_inference"] > 0).all() and (rows["latency_ms_p50"] > 0).all()
    assert (rows["energy_j_per_inference_ci_low"] <= rows["energy_j_per_inference_ci_high"]).all()
    assert rows["throughput_tokens_s"].tolist() == pytest.approx((rows["throughput_samples_s"] * 32).tolist())
    int8 = rows.set_index("quant").loc["int8"]
    assert int8["quantized_layers"] == 6 * 6 + 1  # per layer q, k, v, attention out, intermediate, output; pooler
    assert "Sweep summary (2 rows" in result.stdout and "J/inf" in result.stdout
    # Quality in the loop: the probe on MiniLM's fp32 embeddings, every variant scored against it.
    assert set(rows["eval"]) == {"bbc-topics"} and set(rows["quality_metric"]) == {"accuracy"}
    assert (rows["quality_ref"] > 0.9).all() and (rows["quality"] > 0.85).all()
    assert rows["quality_ratio"].tolist() == pytest.approx((rows["quality"] / rows["quality_ref"]).tolist())
    assert (rows["fidelity_cosine_mean"] > 0.8).all() and (rows["eval_samples"] == 100).all()
    assert pd.api.types.is_bool_dtype(rows["passes_quality_gate"])


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    result = run_bench(f"model.name_or_path={broken},{tiny_model_dir}", "model.name=tiny", "eval=none", "quant=fp32",
                       "batch_size=1", "seq_len=16", "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    assert result.returncode == 1
    rows = load(tmp_path / "sweep").set_index("model_name_or_path")
    assert rows.loc[str(broken), "status"] == "failed" and rows.loc[str(broken), "error_type"]
    assert rows.loc[str(tiny_model_dir), "status"] == "ok"
    assert "FAILED" in result.stderr


@pytest.mark.slow
def test_random_weights_build_bert_base_offline(tmp_path):
    result = run_bench("model=bert-base", "model.weights=random", "quant=int8", "seq_len=16", "profile=quick",
                       f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr
    (row,) = load(tmp_path).to_dict("records")
    assert (row["model"], row["weights"], row["model_revision"]) == ("bert-base", "random", "BertConfig()")
    assert row["params_total"] > 100e6 and row["quantized_layers"] == 12 * 6 + 1
    assert row["quality_metric"] == "none" and pd.isna(row.get("quality"))


def test_python_callers_run_the_same_harness(tiny_model_dir, tmp_path):
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(tiny_model_dir)), profile=TINY,
                      eval=EvalConfig(name="none", kind="none"), batch_size=4, seq_len=16, threads=1)
    row = run(cfg, tmp_path)
    assert row["status"] == "ok" and row["threads"] == 1 and row["windows"] >= TINY.min_windows
    assert load(tmp_path)["run_id"].tolist() == [row["run_id"]]


@pytest.mark.parametrize("quant", ["fp32", "int8", "bf16"])
def test_each_cpu_variant_runs(tiny_model_dir, tmp_path, quant):
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(tiny_model_dir)), profile=TINY,
                      eval=EvalConfig(name="none", kind="none"), quant=quant, seq_len=16, threads=1)
    assert run(cfg, tmp_path)["status"] == "ok"


@pytest.mark.slow
def test_backends_and_pruning_sweep_records_what_each_variant_costs(tiny_model_dir, tmp_path):
    result = run_bench(f"model.name_or_path={tiny_model_dir}", "model.name=tiny", "backend=pytorch,onnxruntime",
                       "quant=fp32,int8", "prune=none,heads,l1-unstructured", "eval.max_test_samples=60",
                       "batch_size=2", "seq_len=16", "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = load(tmp_path / "sweep")
    assert len(rows) == 12 and (rows["status"] == "ok").all()
    by = rows.set_index(["backend", "quant", "prune"])
    ort = rows[rows["backend"] == "onnxruntime"]
    assert all(list(providers) == ["CPUExecutionProvider"] for providers in ort["onnx_providers"])
    assert (by.loc[("onnxruntime", "int8", "none"), "quantized_layers"] > 0)
    assert by.loc[("pytorch", "int8", "none"), "model_bytes"] < by.loc[("pytorch", "fp32", "none"), "model_bytes"]
    fp32 = by.xs(("pytorch", "fp32"))
    # Heads are gone from the graph; unstructured zeros are still multiplied.
    assert fp32.loc["heads", "flops_per_inference"] < fp32.loc["none", "flops_per_inference"]
    assert fp32.loc["l1-unstructured", "flops_per_inference"] == fp32.loc["none", "flops_per_inference"]
    assert fp32.loc["l1-unstructured", "linear_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert fp32.loc["heads", "params_total"] < fp32.loc["none", "params_total"]
    assert (rows["energy_j_per_gflop"] > 0).all() and set(rows["model_family"]) == {"bert"}  # the preset's
    # Every variant, pruned or exported, is scored against one reference: the unpruned fp32 PyTorch model.
    assert rows["quality_ref"].nunique() == 1 and rows["quality"].notna().all()
    assert by.loc[("pytorch", "fp32", "none"), "quality"] == rows["quality_ref"].iloc[0]


@pytest.mark.slow
def test_graph_levels_and_compile_modes_are_variants_with_their_own_quality(tiny_model_dir, tmp_path):
    """onnx_graph= and compile= sweep like any axis: one configuration each, scored against fp32 PyTorch."""
    common = (f"model.name_or_path={tiny_model_dir}", "model.name=tiny", "eval.max_test_samples=60", "batch_size=2",
              "quant=fp32", "seq_len=16", "profile=quick")
    graphs = run_bench(*common, "backend=onnxruntime", "onnx_graph=basic,extended,all,fused",
                       f"hydra.sweep.dir={tmp_path}/graphs", "-m")
    compiled = run_bench(*common, "compile=none,default", f"hydra.sweep.dir={tmp_path}/compiled", "-m")
    assert graphs.returncode == 0 and compiled.returncode == 0, (graphs.stderr + compiled.stderr)[-3000:]
    rows = load(tmp_path)
    assert len(rows) == 6 and (rows["status"] == "ok").all() and rows["config_key"].nunique() == 6
    ort = rows[rows["backend"] == "onnxruntime"].set_index("onnx_graph")
    assert sorted(ort.index) == ["all", "basic", "extended", "fused"]
    assert "Attention" in ort.loc["fused", "onnx_fusions"] and "Attention" not in ort.loc["all", "onnx_fusions"]
    # Every graph computes the model: the same accuracy as fp32 PyTorch on the same items.
    assert ort["quality_ratio"].tolist() == pytest.approx([1.0] * 4, abs=0.02)
    torch_rows = rows[rows["backend"] == "pytorch"]
    eager, compiled_row = (torch_rows[torch_rows["compile"].isna()].iloc[0],
                           torch_rows[torch_rows["compile"] == "default"].iloc[0])
    assert pd.isna(eager["compile_seconds"]) and compiled_row["compile_seconds"] > 0
    assert compiled_row["compile_graphs"] >= 1
    assert compiled_row["quality_ratio"] == pytest.approx(1.0, abs=0.02)
    assert compiled_row["prepare_seconds"] >= compiled_row["compile_seconds"]
