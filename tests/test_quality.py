"""Eval sets, the fp32 reference and the quality columns."""

import json

import numpy as np
import pytest

from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig, ProfileConfig
from bench.quality.datasets import load_eval, stratified_split
from bench.results import load
from bench.run import run
from tests.conftest import EVAL_CACHE

QUICK = ProfileConfig(name="quick", warmup_calls=1, warmup_s=0, idle_s=0.05, windows=2, min_window_s=0.02,
                      min_calls=2)


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
    cfg = BenchConfig(model=ModelConfig(name="tiny", name_or_path=str(model_dir)), profile=QUICK, eval=eval_cfg,
                      quant=quant, batch_size=8, seq_len=32)
    return run(cfg, tmp_path / quant)


def test_sst2_from_a_local_tsv_scores_every_variant_against_the_fp32_reference(tiny_model_dir, sst2_dev, tmp_path):
    eval_cfg = EvalConfig(name="sst2", path=str(sst2_dev), text_column="sentence", label_column="label",
                          cache_dir=f"{tmp_path}/cache")
    fp32 = _run(tmp_path, tiny_model_dir, eval_cfg)
    int8 = _run(tmp_path, tiny_model_dir, eval_cfg, "int8")
    assert fp32["quality_metric"] == "accuracy" and fp32["eval_samples"] == 128 + 133  # 30% of 428 neg, 444 pos
    assert fp32["quality"] == pytest.approx(fp32["quality_ref"]) and fp32["quality_ratio"] == pytest.approx(1)
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
    assert row["eval_samples"] == 16


def test_eval_none_leaves_quality_empty(tiny_model_dir, tmp_path):
    row = _run(tmp_path, tiny_model_dir, EvalConfig(name="none", kind="none"))
    (loaded,) = load(tmp_path).to_dict("records")
    assert row["quality_metric"] == loaded["quality_metric"] == "none" and "quality" not in loaded
