"""Rows of a server driven at a load (scenario=serve), told apart by what they record rather than by name."""

from __future__ import annotations

import pandas as pd


def under_load(rows: pd.DataFrame) -> pd.Series:
    """Rows of a server driven at a load (they record its mode, rate or concurrency), whatever their scenario's
    name: these are judged against the load, not on a quality front or by a per-call latency."""
    columns = [c for c in ("serve_mode", "serve_rate", "serve_concurrency") if c in rows]
    return rows[columns].notna().any(axis=1) if columns else pd.Series(False, index=rows.index)


def serve_mode(rows: pd.DataFrame) -> pd.Series:
    """open | closed per row (a row without serve_mode is open-loop when it has a rate)."""
    recorded = rows["serve_mode"] if "serve_mode" in rows else pd.Series(None, index=rows.index, dtype=object)
    rate = rows["serve_rate"] if "serve_rate" in rows else pd.Series(float("nan"), index=rows.index)
    return recorded.fillna(rate.notna().map({True: "open", False: "closed"}))
