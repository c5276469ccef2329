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


def row_files(path: str | Path) -> list[Path]:
    """Row files under `path` (never the temp files of interrupted writes, nor other parquet files)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.rglob(ROW_FILE))


def load(path: str | Path) -> pd.DataFrame:
    """Every row under `path` (a directory tree or one file), in one DataFrame, with a `row_file` column."""
    frames = [pd.read_parquet(f).assign(row_file=str(f)) for f in row_files(path)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)


def successful_rows(results_dir: str | Path, config_hashes: set[str]) -> pd.DataFrame:
    """The ok rows of these configurations anywhere under `results_dir`, one per configuration."""
    rows = load(results_dir) if Path(results_dir).is_dir() else pd.DataFrame()
    if rows.empty or "config_hash" not in rows:
        return pd.DataFrame()
    done = rows[rows["config_hash"].isin(config_hashes) & (rows["status"] == "ok")]
    return done.drop_duplicates("config_hash")
