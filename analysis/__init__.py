"""Reads result rows (parquet) and turns them into decisions: regression gates, fronts, reports."""
