"""Bad input fails before any work, naming the bad value and what is valid (through the real CLI)."""

import time

import pytest

from bench.config import BenchConfig, ConfigError, validate_for_device, validate_values
from tests.conftest import run_bench

CASES = [
    (["quant=int9"], ["int9", "fp32", "bf16", "fp16", "int8", "int8-static", "int4-wo"]),
    (["batch_size=0"], ["batch_size=0", ">= 1"]),
    (["device=cuda"], ["cuda", "not available", "cpu"]),
    (["quant=fp16", "device=cpu"], ["fp16", "on CUDA", "fp32, bf16, int8"]),
    (["backend=onnxruntime", "quant=bf16"], ["bf16", "backend='onnxruntime'", "fp32, int8, int8-static"]),
    (["prune=heads", "prune.amount=2"], ["prune.amount=2.0", "(0, 1)"]),
    (["prune=2of4"], ["prune/2of4", "heads", "semi-structured-2of4"]),
    (["model=bert-base"], ["bert-base", "model.name_or_path=", "model.weights=random", "connect"]),
    (["model=nosuchmodel"], ["nosuchmodel", "minilm", "bert-base", "distilbert"]),
    (["batch_size=abc"], ["abc", "batch_size"]),
    (["seq_len=4096"], ["seq_len=4096", "2..512"]),
    (["meter=rapl", "meter.rapl_root=/nonexistent"], ["meter=rapl", "/nonexistent"]),
    (["backend=onnx"], ["backend='onnx'", "pytorch, onnxruntime"]),
    (["device=tpu"], ["device='tpu'", "auto, cpu, cuda, cuda:N"]),
    (["eval=nosuch"], ["eval/nosuch", "bbc-topics", "sst2", "text-classification", "sts", "none"]),
    (["eval=text-classification", "eval.path=/nonexistent.tsv"], ["eval.path='/nonexistent.tsv'", "does not exist"]),
    (["backend=onnxruntime", "compile=default"], ["compile='default'", "backend='onnxruntime'", "backend=pytorch"]),
    (["compile=fast"], ["compile='fast'", "none, default, reduce-overhead, max-autotune"]),
    (["onnx_graph=all"], ["onnx_graph='all'", "backend='pytorch'", "backend=onnxruntime"]),
    (["backend=onnxruntime", "onnx_graph=max"], ["onnx_graph='max'", "basic, extended, all, fused"]),
    (["backend=onnxruntime", "quant=int8", "onnx_graph=fused"], ["onnx_graph=fused", "quant='int8'", "onnx_graph=all"]),
    (["backend=onnxruntime", "quant=int8", "calibration_method=entropy"], ["calibration_method='entropy'",
                                                                           "int8-static"]),
    (["backend=onnxruntime", "quant=int8-static", "calibration_method=kl"], ["calibration_method='kl'",
                                                                             "minmax, entropy, percentile"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides,expected", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_cli_rejects_bad_input_quickly_and_writes_nothing(overrides, expected, tmp_path):
    t0 = time.perf_counter()
    result = run_bench(*overrides, "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    elapsed = time.perf_counter() - t0
    message = result.stderr + result.stdout
    assert result.returncode != 0, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert not list(tmp_path.rglob("*.parquet"))
    assert elapsed < 60, elapsed  # generous on a loaded 2-core machine; ~8 s here, most of it imports


def test_python_callers_get_the_same_checks():
    with pytest.raises(ConfigError, match="quant='int9'"):
        validate_values(BenchConfig(quant="int9"))
    with pytest.raises(ConfigError, match="model.weights='trained'.*pretrained, random"):
        validate_values(BenchConfig(model=BenchConfig().model.__class__(weights="trained")))
    with pytest.raises(ConfigError, match="int8.*the CPU only"):
        validate_for_device(BenchConfig(quant="int8"), "cuda:0")


def test_model_directory_without_weights_is_refused(tiny_model_dir, tmp_path):
    from bench.config import ModelConfig
    from bench.models import load_config

    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="no weights"):
        load_config(ModelConfig(name="x", name_or_path=str(tmp_path)), seq_len=16)
    with pytest.raises(ConfigError, match="no config.json"):
        load_config(ModelConfig(name="x", name_or_path=str(tmp_path / "missing")), seq_len=16)
