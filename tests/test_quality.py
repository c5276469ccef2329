"""Eval sets, the fp32 reference and the quality columns."""

import json
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import binom, spearmanr
from transformers import AutoModel, AutoTokenizer

from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig, validate_values
from bench.quality import scored
from bench.quality.datasets import load_eval, stratified_split
from bench.quality.evaluate import reference
from bench.quality.intervals import Interval, bootstrap, spearman_rows, wilson
from bench.results import load
from bench.run import run
from tests.conftest import EVAL_CACHE
from tests.profiles import TINY


def test_stratified_split_is_seeded_and_keeps_label_shares():
    labels = ["a"] * 70 + ["b"] * 30
    train, test = stratified_split(labels, 0.3, seed=0)
    assert len(test) == 30 and sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert sum(labels[i] == "a" for i in test) == 21
    assert (stratified_split(labels, 0.3, seed=0)[1] == test).all()
    assert not (stratified_split(labels, 0.3, seed=1)[1] == test).all()


def test_bbc_topics_reads_the_five_topics_in_sorted_order():
    data = load_eval(EvalConfig())
    assert data.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(data.train_texts) + len(data.test_texts) == 2225 and len(data.test_texts) == 667
    assert data.subsample_of is None


def _label_ordered(tmp_path, counts: dict[str, int]):
    """A CSV sorted by label, as files often are: the first rows are all of one class."""
    path = tmp_path / "ordered.csv"
    path.write_text("text,label\n" + "".join(f"item {label} {i},{label}\n" for label, n in counts.items()
                                             for i in range(n)))
    return path


def test_a_capped_test_split_of_a_label_ordered_file_keeps_every_class_in_proportion(tmp_path):
    path = _label_ordered(tmp_path, {"a": 300, "b": 200, "c": 80, "d": 20})
    cfg = EvalConfig(name="text-classification", path=str(path), max_test_samples=30)
    data = load_eval(cfg)
    # The test split has 90, 60, 24, 6 items; 30 of its 180 keep the shares: 15, 10, 4, 1.
    assert data.subsample_of == 180 and len(data.test_texts) == 30
    assert Counter(data.label_names[i] for i in data.test_labels) == {"a": 15, "b": 10, "c": 4, "d": 1}
    assert data.test_texts == load_eval(cfg).test_texts  # seeded
    assert data.test_texts != load_eval(replace(cfg, seed=1)).test_texts
    assert set(data.test_texts) <= set(load_eval(replace(cfg, max_test_samples=None)).test_texts)


def test_bbc_topics_capped_at_100_scores_all_five_topics():
    data = load_eval(EvalConfig(max_test_samples=100))
    per_topic = Counter(data.test_labels.tolist())
    full = Counter(load_eval(EvalConfig()).test_labels.tolist())
    assert len(data.test_texts) == 100 and sorted(per_topic) == [0, 1, 2, 3, 4]
    assert all(abs(per_topic[t] - 100 * full[t] / 667) < 1 for t in full)


def test_a_capped_sts_file_is_a_seeded_random_subset_in_file_order(tmp_path):
    path = tmp_path / "sts.jsonl"
    path.write_text("\n".join(json.dumps({"sentence1": f"a{i}", "sentence2": f"b{i}", "score": i}) for i in range(50)))
    cfg = EvalConfig(name="sts", kind="sts", path=str(path), text_column="sentence1", text_pair_column="sentence2",
                     label_column="score", max_test_samples=10)
    data = load_eval(cfg)
    scores = data.test_labels.tolist()
    assert len(scores) == 10 and scores == sorted(scores) and scores != list(range(10))  # not the first ten
    assert data.test_pairs == [f"b{int(v)}" for v in scores] and data.subsample_of == 50
    assert scores == load_eval(cfg).test_labels.tolist()
    with pytest.raises(ConfigError, match="eval.max_test_samples=0 is not valid"):
        validate_values(BenchConfig(eval=replace(EvalConfig(), max_test_samples=0)))


def test_wilson_interval_matches_published_values_and_covers_as_stated():
    assert (wilson(0, 10, 0.95).low, wilson(0, 10, 0.95).high) == pytest.approx((0, 0.2775), abs=1e-4)
    assert (wilson(5, 10, 0.95).low, wilson(5, 10, 0.95).high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # Exact coverage over every outcome of 200 items at accuracy 0.9: close to the nominal 95%.
    k = np.arange(201)
    covered = [wilson(int(x), 200, 0.95) for x in k]
    coverage = sum(binom.pmf(x, 200, 0.9) for x, ci in zip(k, covered) if ci.low <= 0.9 <= ci.high)
    assert 0.93 < coverage < 0.97


def test_bootstrap_is_seeded_and_spearman_rows_is_scipys_spearman():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 40)), rng.integers(0, 5, size=(3, 40)).astype(float)  # ties in y
    assert spearman_rows(x, y) == pytest.approx([spearmanr(a, b).statistic for a, b in zip(x, y)])
    values = rng.normal(size=200)
    mean = bootstrap(lambda i: values[i].mean(1), 200, 0.95, seed=3, unit="items")
    assert mean == bootstrap(lambda i: values[i].mean(1), 200, 0.95, seed=3, unit="items")
    assert mean.low < values.mean() < mean.high and "2000 resamples, seed 3" in mean.method
    half = 1.96 * values.std() / np.sqrt(200)  # the normal interval of a mean, for scale
    assert mean.high - mean.low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap(lambda i: values[i].mean(1), 1, 0.95, seed=3, unit="items").low is None


def test_the_gate_rule_names_the_figure_it_judged():
    cfg = EvalConfig(gate=0.99)
    ratio_interval = Interval(0.97, 1.01, "paired")
    point = scored(cfg, "accuracy", 0.99, 1.0, 0.99, Interval(0.95, 1.0, "wilson"), ratio_interval)
    assert point["passes_quality_gate"] and point["quality_gate_rule"] == "point"
    lower = scored(replace(cfg, gate_rule="lower"), "accuracy", 0.99, 1.0, 0.99, Interval(0.95, 1.0, "wilson"),
                   ratio_interval)
    assert not lower["passes_quality_gate"] and lower["quality_gate_rule"] == "lower"
    with pytest.raises(ConfigError, match="eval.gate_rule='mean' is not valid; choose one of: point, lower"):
        validate_values(BenchConfig(eval=EvalConfig(gate_rule="mean")))


def test_the_reference_is_recomputed_when_the_eval_file_changes_in_place(tiny_model_dir, tmp_path):
    model, tokenizer = AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)
    loads = []

    def fp32_forward():
        loads.append(1)
        return lambda inputs: model(**inputs)

    path = _label_ordered(tmp_path, {"a": 20, "b": 20})
    cfg = EvalConfig(name="text-classification", path=str(path), cache_dir=str(tmp_path / "cache"))
    identity = {"model": str(tiny_model_dir), "content": "sha256:x"}
    with torch.inference_mode():
        first = reference(cfg, load_eval(cfg), identity, tokenizer, 16, fp32_forward)
        reference(cfg, load_eval(cfg), identity, tokenizer, 16, fp32_forward)
        assert len(loads) == 1  # cached
        path.write_text(path.read_text().replace("item a", "thing a"))  # same path, other content
        second = reference(cfg, load_eval(cfg), identity, tokenizer, 16, fp32_forward)
        assert len(loads) == 2 and not np.array_equal(first.test, second.test)
        reference(cfg, load_eval(cfg), {**identity, "content": "sha256:y"}, tokenizer, 16, fp32_forward)
        assert len(loads) == 3  # other weights at the same path
    assert len(list((tmp_path / "cache" / "reference").glob("*.pkl"))) == 3


def test_headerless_tsv_jsonl_and_a_split_column(tmp_path):
    tsv = tmp_path / "news.tsv"
    tsv.write_text("".join(f"headline {i}\t{'sport' if i % 2 else 'world'}\n" for i in range(20)))
    data = load_eval(EvalConfig(name="text-classification", path=str(tsv), header=False, text_column="0",
                                label_column="1"))
    assert data.label_names == ["sport", "world"] and len(data.test_texts) == 6
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"t": f"x{i}", "y": i % 3, "s": "test" if i < 6 else "train"})
                               for i in range(30)))
    data = load_eval(EvalConfig(name="text-classification", path=str(jsonl), text_column="t", label_column="y",
                                split_column="s"))
    assert data.label_names == ["0", "1", "2"] and data.test_texts == [f"x{i}" for i in range(6)]


@pytest.mark.parametrize("content,fragment", [
    (None, "does not exist"),
    ("", "holds no rows"),
    ("text,other\na,b\n", r"no column\(s\) 'label'"),
])
def test_bad_eval_files_are_named(tmp_path, content, fragment):
    path = tmp_path / "eval.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_eval(EvalConfig(name="text-classification", path=str(path)))


def test_sts_scores_must_be_numbers(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(ConfigError, match="numeric scores"):
        load_eval(EvalConfig(name="sts", kind="sts", path=str(path), text_column="sentence1",
                             text_pair_column="sentence2", label_column="score"))


def _run(tmp_path, model_dir, eval_cfg, quant="fp32"):
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(model_dir)), profile=TINY, eval=eval_cfg,
                      quant=quant, batch_size=8, seq_len=32)
    return run(cfg, tmp_path / quant)


def test_sst2_from_a_local_tsv_scores_every_variant_against_the_fp32_reference(tiny_model_dir, sst2_dev, tmp_path):
    eval_cfg = EvalConfig(name="sst2", path=str(sst2_dev), text_column="sentence", label_column="label",
                          cache_dir=f"{tmp_path}/cache")
    fp32 = _run(tmp_path, tiny_model_dir, eval_cfg)
    int8 = _run(tmp_path, tiny_model_dir, eval_cfg, "int8")
    assert fp32["quality_metric"] == "accuracy" and fp32["eval_samples"] == 128 + 133  # 30% of 428 neg, 444 pos
    assert fp32["quality"] == pytest.approx(fp32["quality_ref"]) and fp32["quality_ratio"] == pytest.approx(1)
    assert fp32["quality_ci_low"] < fp32["quality"] < fp32["quality_ci_high"]
    assert (fp32["quality_ci_method"], fp32["quality_ci_level"], fp32["quality_gate_rule"]) == ("wilson", 0.95, "point")
    assert int8["quality_ratio_ci_low"] <= int8["quality_ratio"] <= int8["quality_ratio_ci_high"]
    assert "eval_subsample" not in fp32
    assert fp32["fidelity_cosine_mean"] == pytest.approx(1, abs=1e-5)
    assert int8["quality_ref"] == fp32["quality_ref"]  # one reference, cached
    assert 0 < int8["fidelity_cosine_min"] <= int8["fidelity_cosine_mean"] <= 1
    assert int8["passes_quality_gate"] == (int8["quality_ratio"] >= 0.99)
    assert len(list((tmp_path / "cache" / "reference").glob("*.pkl"))) == 1


def test_a_classification_head_is_scored_by_its_logits(tiny_classifier_dir, sst2_dev, tmp_path):
    eval_cfg = EvalConfig(name="sst2", path=str(sst2_dev), text_column="sentence", label_column="label",
                          cache_dir=EVAL_CACHE)
    row = _run(tmp_path, tiny_classifier_dir, eval_cfg, "int8")
    assert 0 <= row["fidelity_top1_agreement"] <= 1 and "fidelity_cosine_mean" not in row
    assert 0 <= row["quality"] <= 1


def test_sts_is_scored_by_spearman_of_cosine_similarities(tiny_model_dir, tmp_path):
    path = tmp_path / "sts.jsonl"
    sentences = ["a cat sat on the mat", "stocks fell sharply today", "the team won the final", "rain is expected"]
    pairs = [(a, b, 5.0 if a == b else 0.0) for a in sentences for b in sentences]
    path.write_text("\n".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) for a, b, s in pairs))
    row = _run(tmp_path, tiny_model_dir, EvalConfig(name="sts", kind="sts", path=str(path),
                                                    text_column="sentence1", text_pair_column="sentence2",
                                                    label_column="score", cache_dir=EVAL_CACHE))
    assert row["quality_metric"] == "spearman" and row["quality"] > 0.5  # identical pairs have cosine 1
    assert row["eval_samples"] == 16 and row["quality_ci_method"].startswith("percentile bootstrap over pairs")
    assert row["quality_ci_low"] <= row["quality"] <= row["quality_ci_high"]


def test_eval_none_leaves_quality_empty(tiny_model_dir, tmp_path):
    row = _run(tmp_path, tiny_model_dir, EvalConfig(name="none", kind="none"))
    (loaded,) = load(tmp_path).to_dict("records")
    assert row["quality_metric"] == loaded["quality_metric"] == "none" and "quality" not in loaded
