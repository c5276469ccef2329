"""compile= (backend=pytorch): torch.compile'd variants, compiled before anything is measured."""

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bench.backends import BuildRequest, build
from bench.backends.pytorch import check
from bench.config import BenchConfig, ConfigError, ScenarioConfig
from bench.inputs import synthetic_batch

TEXTS = ["the market fell sharply today", "a late goal won the cup final after extra time", "new phones",
         "parliament votes on the budget", "the film opens in cinemas next friday"]


def compilations() -> int:
    return counters["frames"]["total"]


@pytest.mark.slow  # inductor compiles the tiny BERT at several shapes: 20 s to a minute on 2 cores
def test_a_compiled_variant_is_compiled_in_build_computes_what_eager_does_and_runs_other_shapes(
        tiny_classifier_dir, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    batch = synthetic_batch(model.config, 2, 16, seed=0)
    with torch.inference_mode():
        eager = model(**batch.inputs).logits
    backend, info = build("pytorch", BuildRequest(model, "fp32", "cpu", 1, batch.inputs, {}, tmp_path, 18,
                                                  lambda: ([], ""), compile="default"))
    assert info["compile_seconds"] > 0 and info["model_bytes"] > 0
    # The warm-up and the windows repeat the prepared call: it must find the code build() compiled.
    before = compilations()
    call = backend.prepare(batch.inputs)
    outputs = [call() for _ in range(3)]
    assert compilations() == before
    for out in outputs:
        torch.testing.assert_close(out.logits, eager, atol=1e-5, rtol=1e-4)
    # The quality eval's batches are padded to their longest text, and the last one may be partial: other shapes
    # recompile (outside the windows) and still compute what eager does.
    for texts in (TEXTS[:2], TEXTS[2:4], TEXTS[4:]):
        enc = dict(tokenizer(texts, padding=True, return_tensors="pt"))
        with torch.inference_mode():
            expected = model(**enc).logits
        torch.testing.assert_close(backend.forward(enc).logits, expected, atol=1e-5, rtol=1e-4)
    assert compilations() > before


@pytest.mark.parametrize("scenario", ["generate", "serve"])
def test_compile_is_refused_where_the_calls_decode_over_a_kv_cache(scenario):
    cfg = BenchConfig(compile="default", scenario=ScenarioConfig(name=scenario))
    with pytest.raises(ConfigError, match=rf"compile='default'.*scenario={scenario}.*compile=none.*classify"):
        check(cfg, "cpu")
    check(BenchConfig(scenario=ScenarioConfig(name=scenario)), "cpu")  # eager runs


def test_compile_without_a_cpp_compiler_is_refused_naming_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine with no compiler on PATH
    with pytest.raises(ConfigError, match=r"compile='max-autotune'.*C\+\+ compiler.*apt-get install g\+\+"):
        check(BenchConfig(compile="max-autotune"), "cpu")
    check(BenchConfig(), "cpu")  # eager needs none
