"""Eval files as rows of named columns: Parquet, JSON (one object per line, or an array), or delimited UTF-8 text
whose delimiter is given (eval.delimiter), implied by a .tsv extension, or detected. How a file was read is
returned with its rows, so a row can show it and a refusal can say what was tried."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.config import EvalConfig

# The delimiters detection chooses from, with the words eval.delimiter also accepts: a bare comma on Hydra's
# command line is a sweep, and a tab is hard to type.
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
# What csv.Sniffer reads: enough lines for its consistency vote; its quote search grows with the square of the
# sample (0.2 s for 16 KiB of quote-heavy text, 3 s for 64 KiB).
SAMPLE_CHARS = 1 << 14
PARQUET_MAGIC = b"PAR1"
FORMATS = "Parquet, JSON lines or a JSON array of objects, or UTF-8 delimited text (CSV, TSV, ...)"


@dataclass
class Table:
    rows: list[dict[str, Any]]
    read_as: str  # parquet | jsonl | json | csv (delimiter tab, detected) | ...


def delimiter(value: str | None) -> str | None:
    """eval.delimiter as the one character it names; None: detect it from the file."""
    if value is None:
        return None
    spelled = {name: char for char, name in DELIMITERS.items()} | {"\\t": "\t"}
    char = spelled.get(str(value).lower(), str(value))
    if len(char) != 1 or char in '"\r\n':
        raise ConfigError(f"eval.delimiter={value!r} is not valid; give one character (e.g. ';'), or one of: "
                          f"{', '.join(DELIMITERS.values())} (tab also as \\t); null detects it from the file")
    return char


def read_table(cfg: EvalConfig, wanted: list[str]) -> Table:
    """The rows of the file at eval.path, each with a value for every column in `wanted`."""
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise ConfigError(f"eval.path={cfg.path!r} does not exist (looked for {path.resolve()})")
    given = delimiter(cfg.delimiter)
    data = path.read_bytes()
    fmt = _format(path, data)
    if given is not None and fmt != "csv":
        raise ConfigError(f"eval.delimiter={cfg.delimiter!r} applies to delimited text; eval.path={cfg.path!r} "
                          f"is {fmt}: leave eval.delimiter unset")
    if fmt == "parquet":
        table = Table(_parquet(path, cfg, wanted), "parquet")
    else:
        text = _text(data, cfg)
        table = Table(_json(text, fmt, cfg), fmt) if fmt != "csv" else _delimited(text, path, given, cfg, wanted)
    if not table.rows:
        raise ConfigError(f"eval.path={cfg.path!r} holds no rows (read as {table.read_as})")
    if message := _missing(cfg, table.read_as, list(table.rows[0]), wanted):
        raise ConfigError(message)
    for n, row in enumerate(table.rows, 1):
        if absent := [c for c in wanted if row.get(c) is None]:
            why = " (a short line, or a delimiter inside a text that is not quoted)" if fmt == "csv" else ""
            raise ConfigError(f"eval.path={cfg.path!r}, read as {table.read_as}: data row {n} has no value for "
                              f"{', '.join(map(repr, absent))}{why}")
    return table


def _format(path: Path, data: bytes) -> str:
    """parquet by its magic bytes or extension; JSON by extension, or by its first character when the extension
    is not a delimited-text one; else delimited text."""
    suffix = path.suffix.lower()
    if data.startswith(PARQUET_MAGIC) or suffix in (".parquet", ".pq"):
        return "parquet"
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if suffix in (".jsonl", ".ndjson", ".json") or (suffix not in (".csv", ".tsv") and first in (b"{", b"[")):
        return "json" if first == b"[" else "jsonl"
    return "csv"


def _text(data: bytes, cfg: EvalConfig) -> str:
    if b"\x00" in data:
        raise ConfigError(f"eval.path={cfg.path!r} is not UTF-8 text: it holds NUL bytes (a binary file, or UTF-16 "
                          f"text), and it is not Parquet (no {PARQUET_MAGIC.decode()} magic); readable: {FORMATS}")
    try:
        return data.decode("utf-8-sig")  # a spreadsheet's byte-order mark would stick to the first column's name
    except UnicodeDecodeError as e:
        raise ConfigError(f"eval.path={cfg.path!r} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                          f"UTF-8 or Parquet; readable: {FORMATS}") from e


def _parquet(path: Path, cfg: EvalConfig, wanted: list[str]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if message := _missing(cfg, "parquet", pq.read_schema(path).names, wanted):
            raise ConfigError(message)
        # Only the named columns: a hub's file may carry others (ids, embeddings) that need not be read.
        return pq.read_table(path, columns=list(dict.fromkeys(wanted))).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ConfigError(f"eval.path={cfg.path!r} is not a readable Parquet file ({e}); readable: {FORMATS}") from e


def _json(text: str, fmt: str, cfg: EvalConfig) -> list[dict[str, Any]]:
    # Lines split at "\n" only: str.splitlines would also split at U+2028, which JSON allows inside a string.
    rows = _loads(text, 0, fmt, cfg) if fmt == "json" else [
        _loads(line, n, fmt, cfg) for n, line in enumerate(text.split("\n")) if line.strip()]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"eval.path={cfg.path!r}, read as {fmt}, must hold one JSON object per row (one per line, "
                          "or an array of them)")
    return rows


def _loads(text: str, lines_before: int, fmt: str, cfg: EvalConfig) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"eval.path={cfg.path!r}, read as {fmt}, is not valid JSON at line "
                          f"{lines_before + e.lineno}: {e.msg}") from e


def _delimited(text: str, path: Path, given: str | None, cfg: EvalConfig, wanted: list[str]) -> Table:
    if given is not None:
        tries, how = [given], "given"
    elif path.suffix.lower() == ".tsv":
        tries, how = ["\t"], "from the .tsv extension"
    else:
        tries, how = _detect(text[:SAMPLE_CHARS]), "detected"
    found: dict[str, list[str]] = {}
    for char in tries:
        read_as = _described(char, how)
        records = _records(text, char, cfg, read_as)
        first = next(records, None)
        if first is None:
            return Table([], read_as)
        columns = [c.strip() for c in first] if cfg.header else [str(i) for i in range(len(first))]
        if all(c in columns for c in wanted):
            body = records if cfg.header else [first, *records]
            return Table([dict(zip(columns, r)) for r in body], read_as)
        found[char] = columns
    others = [DELIMITERS.get(c, repr(c)) for c in tries[1:]]
    also = f"; also tried delimiter {', '.join(others)}: none gives those columns" if others else ""
    raise ConfigError(_missing(cfg, _described(tries[0], how), found[tries[0]], wanted, also))


def _detect(sample: str) -> list[str]:
    """Delimiters to try, best first: csv.Sniffer's choice (the one whose count per line is consistent), then the
    others the first line holds, most frequent first, for when the sniffer cannot decide (one line, ragged lines)
    or its choice does not give the named columns; a comma for a file with none of them."""
    if len(sample) == SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]  # whole lines only: a cut line would spoil the vote
    first_line = sample.split("\n", 1)[0]
    present = sorted((c for c in DELIMITERS if c in first_line), key=first_line.count, reverse=True)
    try:
        sniffed = [csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter]
    except csv.Error:
        sniffed = []
    return list(dict.fromkeys(sniffed + present)) or [","]


def _records(text: str, char: str, cfg: EvalConfig, read_as: str) -> Iterator[list[str]]:
    # Tab-separated files are read unquoted: GLUE's and STS Benchmark's texts hold stray quote characters.
    quoting = csv.QUOTE_NONE if char == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=char, quoting=quoting)
    try:
        yield from (r for r in reader if r)
    except csv.Error as e:
        raise ConfigError(f"eval.path={cfg.path!r}, read as {read_as}: line {reader.line_num}: {e}") from e


def _described(char: str, how: str) -> str:
    return f"csv (delimiter {DELIMITERS.get(char, repr(char))}, {how})"


def _missing(cfg: EvalConfig, read_as: str, columns: list[str], wanted: list[str], also: str = "") -> str:
    """The refusal when a named column is not among `columns`; empty when every one is."""
    if not (missing := [c for c in wanted if c not in columns]):
        return ""
    hint = (" (a file without a header: eval.header=false, and positions 0, 1, ...), or set eval.delimiter="
            if read_as.startswith("csv") else "")
    return (f"eval.path={cfg.path!r}, read as {read_as}, has no column(s) {', '.join(map(repr, missing))}; its "
            f"columns are: {', '.join(map(repr, columns)) or 'none'}{also}. Name them with eval.text_column, "
            f"eval.label_column{hint}")
