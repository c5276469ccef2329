"""Hydra's configuration groups. Installed as the package `bench.conf` (pyproject.toml maps it to this folder), so
bench/config.py finds them through the import system wherever the package is installed."""
