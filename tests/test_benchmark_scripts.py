"""Smoke tests of the scripts under benchmarks/ that have no test of their own: each runs end to end on a tiny
budget and prints the figures it exists for, so a refactor cannot silently break what it measures."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT


def _script(*args: str, timeout: float = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, *args], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_overhead_compares_the_harness_loop_with_bare_calls():
    out = _script("benchmarks/overhead.py", "--rounds", "2", "--calls", "5")
    assert "bare p50" in out and "harness p50" in out and "ratio harness/bare:" in out


@pytest.mark.slow
def test_compression_prints_both_comparisons(tmp_path):
    """One to four minutes: bert-base shape through both backends, MiniLM pruned three ways, quick profile."""
    out = _script("benchmarks/compression.py", "--profile", "quick", "--out", str(tmp_path / "rows"),
                  "--amount", "0.5", "--max-test-samples", "60", timeout=1200)
    assert "bert-base shape, random weights" in out and "MiniLM on bbc-topics" in out
    for variant in ("pytorch int8 (dynamic)", "onnxruntime int8-static", "heads 50%", "ffn 50%",
                    "pytorch fp32 compile=default", "onnxruntime fp32 graph all", "int8-static entropy"):
        assert variant in out
    assert out.count(" of fp32)") >= 5  # every MiniLM ONNX Runtime row scored against fp32 PyTorch
    assert "[low, high]: energy Student-t" in out and "stated at 95%" in out and "accuracy wilson" in out
    assert "ffn 50% against l1-unstructured 50%: FLOPs x0.67" in out  # counted FLOPs do not depend on the machine


@pytest.mark.slow
def test_onnxruntime_parity_prints_each_rounds_ratio_and_the_median(tmp_path):
    """About a minute: MiniLM fp32 through PyTorch and ONNX Runtime (fused and all), one round, quick profile."""
    out = _script("benchmarks/onnxruntime_parity.py", "--rounds", "2", "--batch-sizes", "1", "--graphs", "fused,all",
                  "--profile", "quick", "--out", str(tmp_path / "rows"))
    assert "2 interleaved rounds" in out and "batch 1: pytorch p50" in out
    for graph in ("fused", "all"):
        assert f"onnx_graph={graph}: p50" in out and "ORT/PyTorch per round" in out
    assert "median" in out


def test_skip_layer_norm_prints_both_kernels_and_their_ratio():
    out = _script("benchmarks/skip_layer_norm.py", "--rounds", "2", "--calls", "5", "--shape", "2,16,32")
    assert out.count("round ") == 2 and "SkipLayerNormalization p50" in out and "Add+Add+LayerNormalization p50" in out
    assert "median ratio" in out and "over 2 rounds" in out
