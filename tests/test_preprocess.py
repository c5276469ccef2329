"""preprocess=true: tokenising the eval set's raw texts measured in windows of its own (bench/preprocess.py)."""

import csv

import pytest
from transformers import AutoTokenizer

from bench import preprocess
from bench.config import BenchConfig, ConfigError, EvalConfig, MeterConfig, ModelConfig, validate_values
from bench.measure import Idle, Measurement
from bench.results import load
from bench.run import run
from tests.conftest import EVAL_CACHE, run_bench
from tests.profiles import TINY

WORDS = "the quick brown fox jumps over a lazy dog while energy meters count every joule".split()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def eval_file(tmp_path):
    """A small labelled CSV: 40 texts of 3 to 40 words, two labels."""
    path = tmp_path / "texts.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow([" ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i)), "ab"[i % 2]])
    return path


def _eval(path) -> EvalConfig:
    return EvalConfig(name="texts", kind="classification", path=str(path), cache_dir=EVAL_CACHE)


def test_each_call_tokenises_the_next_batch_of_texts_cycling_through_them(tokenizer):
    texts = ["one", "two two", "three three three"]
    call = preprocess.batches(tokenizer, texts, 2, 16)
    seen = [tokenizer.batch_decode(call()["input_ids"], skip_special_tokens=True) for _ in range(3)]
    assert seen == [["one", "two two"], ["three three three", "one"], ["two two", "three three three"]]


def test_a_batch_is_what_the_model_is_given_truncated_at_seq_len_and_padded_to_its_longest(tokenizer):
    long, short = " ".join(WORDS * 3), "a dog"
    enc = preprocess.batches(tokenizer, [long, short], 2, 16)()
    assert set(enc) >= {"input_ids", "attention_mask"}
    assert enc["input_ids"].shape == (2, 16)  # the long text cut at seq_len, the short one padded to it
    assert enc["attention_mask"][0].sum() == 16 and enc["attention_mask"][1].sum() == 4  # [CLS] a dog [SEP]
    assert preprocess.batches(tokenizer, [short, short], 2, 16)()["input_ids"].shape == (2, 4)


def _measurement(net_j_per_call: list[float]) -> Measurement:
    """Windows of 1 s and 10 calls over a 2 W idle baseline whose net joules per call are as given."""
    idle = Idle([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    return Measurement([1_000_000, 2_000_000, 3_000_000], [10] * len(net_j_per_call), [1.0] * len(net_j_per_call),
                       [2.0 + 10 * j for j in net_j_per_call], idle, phase="preprocess", stop="target", seconds=5.5)


def test_columns_give_joules_per_text_and_their_share_of_the_request(tokenizer):
    m = _measurement([0.04, 0.041, 0.039, 0.04])  # per batch of 4 texts: 0.01 J a text
    row = preprocess.columns(m, tokenizer, 4, 0.03, TINY, meter_sees_cpu=True)
    assert row["preprocess_j_per_sample"] == pytest.approx(0.01)
    assert row["preprocess_j_per_sample_ci_low"] < 0.01 < row["preprocess_j_per_sample_ci_high"]
    assert row["preprocess_share"] == pytest.approx(0.01 / (0.01 + 0.03))
    assert row["preprocess_window_j_per_sample"] == pytest.approx([0.01, 0.01025, 0.00975, 0.01])
    assert row["preprocess_ms_p50"] == pytest.approx(2.0) and row["preprocess_seconds"] == 5.5
    assert (row["preprocess_tokenizer"], row["preprocess_tokenizer_fast"]) == (type(tokenizer).__name__, True)


def test_on_cuda_the_row_keeps_the_latency_but_no_joules_the_gpu_meter_cannot_see(tokenizer):
    row = preprocess.columns(_measurement([0.04] * 4), tokenizer, 4, 0.03, TINY, meter_sees_cpu=False)
    assert row["preprocess_ms_p50"] == pytest.approx(2.0)
    assert not any(c in row for c in ("preprocess_j_per_sample", "preprocess_share", "preprocess_window_j_per_sample"))


def test_a_classify_run_measures_tokenising_after_the_model(tiny_model_dir, eval_file, tmp_path):
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(tiny_model_dir)), profile=TINY,
                      eval=_eval(eval_file), meter=MeterConfig(source="estimate"), batch_size=4, seq_len=16,
                      threads=1, preprocess=True)
    row = run(cfg, tmp_path)
    assert row["status"] == "ok", row.get("invalid_reasons") or row.get("error_message")
    assert 0 < row["preprocess_j_per_sample_ci_low"] <= row["preprocess_j_per_sample"] <= \
        row["preprocess_j_per_sample_ci_high"]
    assert 0 < row["preprocess_share"] < 1 and row["preprocess_ms_p50"] > 0
    assert row["preprocess_share"] == pytest.approx(row["preprocess_j_per_sample"] / (
        row["preprocess_j_per_sample"] + row["energy_j_per_inference"]))
    assert len(row["preprocess_window_j_per_sample"]) == len(row["preprocess_window_calls"]) >= TINY.min_windows
    assert 0 < row["preprocess_seconds"] and row["preprocess_tokenizer_fast"] is True
    assert load(tmp_path)["preprocess_share"].tolist() == [row["preprocess_share"]]


@pytest.mark.parametrize("change", [{"eval": EvalConfig(name="none", kind="none")},
                                    {"model": ModelConfig(weights="random")}])
def test_preprocess_without_texts_or_a_tokenizer_is_refused_before_any_work(change):
    with pytest.raises(ConfigError, match="preprocess=true.*or set preprocess=false"):
        validate_values(BenchConfig(preprocess=True, **change))


@pytest.mark.slow
def test_python_m_bench_writes_the_preprocess_columns(tiny_model_dir, eval_file, tmp_path):
    result = run_bench(f"model.name_or_path={tiny_model_dir}", "model.name=tiny", "eval=text-classification",
                       f"eval.path={eval_file}", "preprocess=true", "meter=estimate",
                       "batch_size=2", "seq_len=16", "profile=quick", "progress=false",
                       f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = load(tmp_path / "run").to_dict("records")
    assert row["status"] == "ok" and 0 < row["preprocess_share"] < 1 and row["preprocess_ms_p50"] > 0
