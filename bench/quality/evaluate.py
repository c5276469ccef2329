"""Score a variant on its eval set, against the fp32 reference of the same model (docs/protocol.md §6)."""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from transformers import PreTrainedTokenizerBase

from bench import progress
from bench.config import EvalConfig
from bench.files import stable_key, write_atomically
from bench.preprocess import encode
from bench.quality import scored
from bench.quality.datasets import EvalSet
from bench.quality.intervals import bootstrap, spearman_rows, wilson

log = logging.getLogger(__name__)
REFERENCE_BATCH = 32
Forward = Callable[[dict[str, torch.Tensor]], Any]


def represent(forward: Forward, tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int,
              seq_len: int) -> tuple[np.ndarray, bool]:
    """Logits where the model has a head (True); otherwise mean-pooled, L2-normalised embeddings (False)."""
    parts, is_logits = [], False
    for i in range(0, len(texts), batch_size):
        enc = encode(tokenizer, texts[i:i + batch_size], seq_len)
        out = forward(dict(enc))
        progress.step("quality", min(i + batch_size, len(texts)), len(texts), "examples")
        is_logits = getattr(out, "logits", None) is not None
        if is_logits:
            parts.append(out.logits.float().cpu())
            continue
        hidden = out.last_hidden_state.float().cpu()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        parts.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(parts).numpy(), is_logits


@dataclass
class Reference:
    """The fp32 model's representations of the eval set, its probe and its quality: cached per model and eval."""

    test: np.ndarray
    test_pairs: np.ndarray | None
    probe: Any  # LogisticRegression, or None for logits and STS
    quality: float
    is_logits: bool


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def per_item(data: EvalSet, test: np.ndarray, test_pairs: np.ndarray | None, probe: Any, is_logits: bool,
             kind: str) -> np.ndarray:
    """Each test item's part in the figure: its pair's cosine similarity (STS), else 1 where it is classified
    right and 0 where not."""
    if kind == "sts":
        return _cosine(test, test_pairs)
    predictions = test.argmax(1) if is_logits else probe.predict(test)
    return (predictions == data.test_labels).astype(float)


def figure(kind: str, items: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The metric of each row of per-item values: Spearman against the scores (STS), else accuracy."""
    return spearman_rows(items, labels) if kind == "sts" else items.mean(1)


def task_quality(data: EvalSet, items: np.ndarray, kind: str) -> tuple[str, float]:
    return ("spearman" if kind == "sts" else "accuracy"), float(figure(kind, items[None], data.test_labels[None])[0])


def reference(cfg: EvalConfig, data: EvalSet, identity: dict[str, Any], tokenizer: PreTrainedTokenizerBase,
              seq_len: int, load_fp32_forward: Callable[[], Forward]) -> Reference:
    """The fp32 reference from the cache, or computed once (and cached) with the fp32 model."""
    # The data by content (a file edited in place, another split or subsample is another reference); the probe
    # is pickled with scikit-learn, which reads only its own version's pickles reliably.
    key = stable_key({**identity, "eval": {"name": cfg.name, "kind": cfg.kind, "data": data.digest()},
                      "seq_len": seq_len, "sklearn": sklearn.__version__})
    path = Path(cfg.cache_dir).expanduser() / "reference" / f"{key}.pkl"
    if path.is_file():
        with path.open("rb") as f:
            return pickle.load(f)
    log.info("computing the fp32 reference for eval=%s (cached in %s)", cfg.name, path)
    forward = load_fp32_forward()
    test, is_logits = represent(forward, tokenizer, data.test_texts, REFERENCE_BATCH, seq_len)
    pairs = represent(forward, tokenizer, data.test_pairs, REFERENCE_BATCH, seq_len)[0] if data.test_pairs else None
    probe = None
    if cfg.kind == "classification" and not is_logits:
        train, _ = represent(forward, tokenizer, data.train_texts, REFERENCE_BATCH, seq_len)
        probe = LogisticRegression(max_iter=2000).fit(train, data.train_labels)
    _, quality = task_quality(data, per_item(data, test, pairs, probe, is_logits, cfg.kind), cfg.kind)
    ref = Reference(test, pairs, probe, quality, is_logits)
    write_atomically(path, lambda tmp: tmp.write_bytes(pickle.dumps(ref)))
    return ref


def evaluate(cfg: EvalConfig, data: EvalSet, forward: Forward, tokenizer: PreTrainedTokenizerBase, batch_size: int,
             seq_len: int, ref: Reference) -> dict[str, Any]:
    """The row's quality columns for the variant behind `forward`, at the run's batch size."""
    t0 = time.perf_counter()
    test, _ = represent(forward, tokenizer, data.test_texts, batch_size, seq_len)
    pairs = represent(forward, tokenizer, data.test_pairs, batch_size, seq_len)[0] if data.test_pairs else None
    items = per_item(data, test, pairs, ref.probe, ref.is_logits, cfg.kind)
    ref_items = per_item(data, ref.test, ref.test_pairs, ref.probe, ref.is_logits, cfg.kind)
    metric, quality = task_quality(data, items, cfg.kind)
    ratio = quality / ref.quality if ref.quality else None
    n, labels = len(items), data.test_labels
    if cfg.kind == "sts":
        interval = bootstrap(lambda i: figure(cfg.kind, items[i], labels[i]), n, cfg.ci_level, cfg.seed, "pairs")
    else:
        interval = wilson(int(items.sum()), n, cfg.ci_level)

    def ratios(i: np.ndarray) -> np.ndarray:
        variant, reference = figure(cfg.kind, items[i], labels[i]), figure(cfg.kind, ref_items[i], labels[i])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(reference != 0, variant / reference, np.nan)

    ratio_interval = bootstrap(ratios, n, cfg.ci_level, cfg.seed, "paired items")
    row: dict[str, Any] = {
        **scored(cfg, metric, quality, ref.quality, ratio, interval, ratio_interval),
        "eval_samples": n,
        "eval_seconds": time.perf_counter() - t0,
    }
    if data.subsample_of is not None:
        row.update(eval_subsample=n, eval_subsample_of=data.subsample_of, eval_subsample_seed=cfg.seed)
    if data.file_format:
        row["eval_file_format"] = data.file_format
    if ref.is_logits:
        row["fidelity_top1_agreement"] = float((test.argmax(1) == ref.test.argmax(1)).mean())
    else:
        cosine = _cosine(test, ref.test) if pairs is None else np.concatenate(
            [_cosine(test, ref.test), _cosine(pairs, ref.test_pairs)])
        row["fidelity_cosine_mean"] = float(cosine.mean())
        row["fidelity_cosine_min"] = float(cosine.min())
    return row


def score(job: Any) -> dict[str, Any]:
    """bench.quality's entry: the fp32 reference (cached), then the variant at the run's batch size."""
    identity = {**job.identity, "device": job.device.split(":")[0]}
    ref = reference(job.eval, job.data, identity, job.tokenizer, job.seq_len,
                    lambda: (job.reference() or job.backend).forward)
    return evaluate(job.eval, job.data, job.backend.forward, job.tokenizer, job.batch_size, job.seq_len, ref)
