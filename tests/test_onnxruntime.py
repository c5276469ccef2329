"""The ONNX Runtime backend on real exports of a tiny BERT: equivalence, quantization, the cache, providers."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from bench.backends import BuildRequest, build
from bench.backends.onnxruntime import OnnxRuntimeBackend, check
from bench.config import BenchConfig, ConfigError, EvalConfig, onnx_graph
from bench.inputs import calibration_batches, calibration_key, synthetic_batch
from bench.quality.datasets import load_eval

TEXTS = ["the market fell sharply today", "a late goal won the cup final", "new phones ship next week",
         "parliament votes on the budget", "the film opens in cinemas"] * 4


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _request(model, quant: str, cache: Path, tokenizer=None, texts=(), graph: str | None = None,
             method: str = "minmax") -> BuildRequest:
    batch = synthetic_batch(model.config, 2, 16, seed=0)
    cfg = BenchConfig(backend="onnxruntime", quant=quant, onnx_graph=graph)
    return BuildRequest(model, quant, "cpu", 1, batch.inputs, {"model": "tiny"}, cache, 18,
                        lambda: calibration_batches(model.config, tokenizer, list(texts), 8, 16, seed=0),
                        onnx_graph=onnx_graph(cfg), calibration_method=method)


def test_fp32_export_matches_pytorch_on_other_shapes_and_is_cached(tiny, tmp_path):
    model, tokenizer = tiny
    backend, info = build("onnxruntime", _request(model, "fp32", tmp_path))
    assert info["onnx_providers"] == ["CPUExecutionProvider"] and info["quantized_layers"] == 0
    assert "dynamo=True" in info["onnx_exporter"] and info["onnx_opset"] == 18
    # Exported at batch 2 x 16 tokens; the quality eval feeds padded batches of other shapes.
    enc = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**enc).last_hidden_state
    assert torch.allclose(backend.forward(dict(enc)).last_hidden_state, expected, atol=1e-4)
    exported = Path(info["onnx_model_path"])
    stamp = exported.stat().st_mtime_ns
    _, again = build("onnxruntime", _request(model, "fp32", tmp_path))
    assert again["onnx_model_path"] == str(exported) and exported.stat().st_mtime_ns == stamp


def test_each_graph_level_computes_the_same_and_says_what_it_fused(tiny, tmp_path):
    """onnx_graph=: the default (fused) gets onnxscript's attention fusion; the ONNX Runtime levels only what its
    own optimiser finds. Every graph computes what PyTorch does."""
    model, tokenizer = tiny
    enc = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**enc).last_hidden_state
    fusions = {}
    for graph in ("basic", "extended", "all", "fused"):
        backend, info = build("onnxruntime", _request(model, "fp32", tmp_path, graph=graph))
        assert torch.allclose(backend.forward(dict(enc)).last_hidden_state, expected, atol=1e-4), graph
        fusions[graph] = info["onnx_fusions"]
        assert ("fused by onnxscript" in info["onnx_exporter"]) == (graph == "fused")
    assert fusions["fused"].get("Attention") == model.config.num_hidden_layers
    assert not any("Attention" in op for graph in ("basic", "extended", "all") for op in fusions[graph])
    assert not fusions["basic"].get("SkipLayerNormalization") and fusions["extended"].get("SkipLayerNormalization")


def test_dynamic_int8_quantizes_every_weight_matrix_and_stays_close(tiny, tmp_path):
    model, tokenizer = tiny
    backend, info = build("onnxruntime", _request(model, "int8", tmp_path))
    fp32_backend, fp32_info = build("onnxruntime", _request(model, "fp32", tmp_path))
    # 2 layers x 6 Linears, the pooler, and the three embedding tables (Gather) quantized by ONNX Runtime.
    assert info["quantized_layers"] == 2 * 6 + 1 + 3
    assert info["model_bytes"] < fp32_info["model_bytes"] / 2
    enc = dict(tokenizer(TEXTS[:4], padding=True, return_tensors="pt"))
    cos = torch.nn.functional.cosine_similarity(backend.forward(enc).last_hidden_state.flatten(1),
                                                fp32_backend.forward(enc).last_hidden_state.flatten(1))
    assert (cos > 0.95).all()
    call = backend.prepare(synthetic_batch(model.config, 1, 16, seed=3).inputs)
    assert call()[0].shape == (1, 16, model.config.hidden_size)


def test_static_int8_calibrates_on_the_texts_it_is_given(tiny, tmp_path):
    model, tokenizer = tiny
    _, info = build("onnxruntime", _request(model, "int8-static", tmp_path, tokenizer, TEXTS))
    assert info["calibration_method"] == "minmax" and info["calibration_samples"] == 8
    assert info["calibration_data"].startswith("eval train split (8 texts), key ") and info["quantized_layers"] > 0
    _, synthetic = build("onnxruntime", _request(model, "int8-static", tmp_path))
    assert synthetic["calibration_data"].startswith("random token ids")
    # Different calibration data, different model: the cache keeps them apart; the same data reuses it.
    assert synthetic["onnx_model_path"] != info["onnx_model_path"]
    _, other = build("onnxruntime", _request(model, "int8-static", tmp_path, tokenizer, TEXTS[::-1]))
    assert other["onnx_model_path"] not in (info["onnx_model_path"], synthetic["onnx_model_path"])
    _, again = build("onnxruntime", _request(model, "int8-static", tmp_path, tokenizer, TEXTS))
    assert again["onnx_model_path"] == info["onnx_model_path"]


def test_each_calibration_method_is_recorded_and_cached_apart(tiny, tmp_path):
    model, tokenizer = tiny
    paths = set()
    for method in ("minmax", "entropy", "percentile"):
        backend, info = build("onnxruntime", _request(model, "int8-static", tmp_path, tokenizer, TEXTS, method=method))
        assert info["calibration_method"] == method and info["quantized_layers"] > 0
        assert backend.prepare(synthetic_batch(model.config, 1, 16, seed=3).inputs)()[0].shape[:2] == (1, 16)
        paths.add(info["onnx_model_path"])
    assert len(paths) == 3


def _news(path: Path, words: str) -> Path:
    path.write_text("text,label\n" + "".join(f"{words} {i},{'sport' if i % 2 else 'world'}\n" for i in range(60)))
    return path


def test_the_calibration_key_changes_with_the_eval_its_split_seed_and_seq_len(tiny, tmp_path):
    """What the int8-static cache is keyed by: the calibration set's content, so a model calibrated on one
    eval's train split is never reused for an eval (or a split) whose test split holds those texts."""
    model, tokenizer = tiny
    news = EvalConfig(name="text-classification", path=str(_news(tmp_path / "news.csv", "the match report")))

    def key(cfg: EvalConfig, seq_len: int = 16, seed: int = 0) -> str:
        texts = load_eval(cfg).train_texts
        return calibration_key(calibration_batches(model.config, tokenizer, texts, 8, seq_len, seed)[0])

    base = key(news)
    assert base == key(news) == key(replace(news, gate=0.5, max_test_samples=5))  # the train split is the same
    other_file = replace(news, path=str(_news(tmp_path / "other.csv", "parliament debates")))
    changed = [key(other_file), key(replace(news, seed=1)), key(replace(news, test_fraction=0.5)),
               key(news, seq_len=24), key(news, seed=1)]
    assert len({base, *changed}) == 6


def test_a_cuda_session_that_falls_back_to_the_cpu_is_refused(tiny, tmp_path):
    model, _ = tiny
    _, info = build("onnxruntime", _request(model, "fp32", tmp_path))
    # The CPU wheel has no CUDA provider: ONNX Runtime would quietly run on the CPU.
    with pytest.raises(ConfigError, match="did not start CUDAExecutionProvider"):
        OnnxRuntimeBackend(Path(info["onnx_model_path"]), "cuda:0", 1)
    with pytest.raises(ConfigError, match="onnxruntime-gpu.*never both"):
        check(BenchConfig(backend="onnxruntime"), "cuda:0")
