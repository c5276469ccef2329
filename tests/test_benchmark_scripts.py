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
                  "--amount", "0.5")
    assert "bert-base shape, random weights" in out and "MiniLM on bbc-topics" in out
    for variant in ("pytorch int8 (dynamic)", "onnxruntime int8-static", "heads 50%", "ffn 50%"):
        assert variant in out
    assert "ffn 50% against l1-unstructured 50%: FLOPs x0.67" in out  # counted FLOPs do not depend on the machine
