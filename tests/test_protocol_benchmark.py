"""benchmarks/protocol.py end to end on a tiny model: both protocols measured and printed, and the ratio."""

import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT


@pytest.mark.slow  # the fixed protocol alone takes 17 s per configuration
def test_the_protocol_benchmark_prints_both_protocols_and_the_ratio(tiny_model_dir):
    result = subprocess.run([sys.executable, "benchmarks/protocol.py", "--model-path", str(tiny_model_dir),
                             "--quants", "fp32", "--batch-sizes", "1", "--seq-len", "16", "--profile", "quick"],
                            cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    header, row, total = result.stdout.splitlines()[-3:]
    assert "fixed s" in header and "adaptive s" in header and "adaptive +-" in header
    # config, fixed seconds and half-width, adaptive seconds and half-width, windows, both figures, the verdict
    assert re.match(r"fp32 b1\s+[\d.]+\s+[\d.]+%\s+[\d.]+\s+[\d.]+%\s+\d+\s+\S+\s+\S+\s+95% t, target (met|MISSED)",
                    row), row
    assert re.match(r"total: fixed [\d.]+ s, adaptive [\d.]+ s; ratio adaptive/fixed [\d.]+ \(bar: <= 0.5\)", total)
