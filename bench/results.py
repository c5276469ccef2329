"""Atomic one-file-per-run parquet writes of declared rows, and load() of a whole results tree (older rows migrated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.files import write_atomically
from bench.row import SCHEMA_VERSION, config_key, undeclared

ROW_FILE = "row.parquet"

# Version 1 rows predate the declared row: no configuration key, no declared energy axis.
_V1_AXES = {"generate": ("energy_j_per_output_token", "output token", "energy_j_per_request")}
_V1_AXIS = ("energy_j_per_inference", "inference", "energy_j_per_inference")


def write_row(row: dict[str, Any], directory: str | Path) -> Path:
    """Writes `directory/row.parquet` atomically, so a killed run never leaves a partial file.
    Refuses a column that bench/row.py does not declare."""
    if extra := undeclared(row):
        raise ValueError(f"row columns not declared in bench/row.py: {', '.join(extra)}")
    row = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in row.items()}
    return write_atomically(Path(directory) / ROW_FILE, lambda tmp: pd.DataFrame([row]).to_parquet(tmp, index=False))


def row_files(path: str | Path) -> list[Path]:
    """Row files under `path` (never the temp files of interrupted writes, nor other parquet files)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.rglob(ROW_FILE))


def migrate(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of older schema versions brought to this one, so the analysis reads every tree alike."""
    if rows.empty:
        return rows
    version = pd.to_numeric(rows.get("schema_version", pd.Series(1, index=rows.index)), errors="coerce").fillna(1)
    old = rows.index[version < 2]
    if len(old):
        rows = rows.copy()
        scenario = rows["scenario"].fillna("classify") if "scenario" in rows else pd.Series("classify", rows.index)
        for column in ("energy_axis", "energy_unit", "energy_request_axis", "config_key"):
            if column not in rows:
                rows[column] = None
        for i in old:
            axis, unit, request = _V1_AXES.get(scenario[i], _V1_AXIS)
            rows.loc[i, ["energy_axis", "energy_unit", "energy_request_axis"]] = [axis, unit, request]
            rows.at[i, "config_key"] = config_key(rows.loc[i])
        rows.loc[old, "scenario"] = scenario[old]  # schema 1 began without the column: its rows were classify
        if "eval_tokens" in rows:  # schema 1 scored perplexity from the first context - stride tokens on
            scored = rows["eval_tokens"].where(rows.index.isin(old))
            rows["eval_tokens_scored"] = rows.get("eval_tokens_scored", scored).fillna(scored)
            rows.loc[old[scored[old].notna()], "perplexity_definition"] = "min-context"
            rows = rows.drop(columns=["eval_tokens"])
        rows.loc[old, "schema_version"] = SCHEMA_VERSION
        rows = rows.drop(columns=["config_hash"], errors="ignore")
    return rows


def load(path: str | Path) -> pd.DataFrame:
    """Every row under `path` (a directory tree or one file), in one DataFrame, with a `row_file` column."""
    frames = [pd.read_parquet(f).assign(row_file=str(f)) for f in row_files(path)]
    if not frames:
        return pd.DataFrame()
    return migrate(pd.concat(frames, ignore_index=True, sort=False))


def successful_rows(results_dir: str | Path, keys: set[str]) -> pd.DataFrame:
    """The ok rows of these configuration keys anywhere under `results_dir`, one per key."""
    rows = load(results_dir) if Path(results_dir).is_dir() else pd.DataFrame()
    if rows.empty or "config_key" not in rows:
        return pd.DataFrame()
    done = rows[rows["config_key"].isin(keys) & (rows["status"] == "ok")]
    return done.drop_duplicates("config_key")
