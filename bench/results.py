"""The row schema, atomic one-file-per-run parquet writes, and load() for a whole results tree."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1
ROW_FILE = "row.parquet"


def write_row(row: dict[str, Any], directory: str | Path) -> Path:
    """Writes a temp file and renames it, so a killed run never leaves a partial parquet file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    row = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in row.items()}
    frame = pd.DataFrame([row])
    fd, tmp = tempfile.mkstemp(prefix=".row-", suffix=".parquet.tmp", dir=directory)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        final = directory / ROW_FILE
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def load(path: str | Path) -> pd.DataFrame:
    """Every row under `path` (a directory tree or one file), in one DataFrame; temp files are skipped."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*.parquet") if not p.name.startswith(".")
    )
    if not files:
        return pd.DataFrame()
    frames = [pd.read_parquet(f) for f in files]
    return pd.concat(frames, ignore_index=True, sort=False)
