"""Hydra callbacks for a sweep: check every configuration before the first run, summarise after the last."""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
import pandas as pd
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench import progress, results, summary
from bench.config import BenchConfig, ConfigError

log = logging.getLogger(__name__)


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a basic sweep: the conf/ grid, command-line values winning."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    params += list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_sweep(config: DictConfig) -> list[tuple[BenchConfig, str]]:
    """Composes and checks every job: each configuration with its key; raises ConfigError naming the first bad one."""
    from bench.config_row import configuration
    from bench.run import check

    configs = []
    keys: dict[str, str] = {}
    for job in job_overrides(config):
        composed = hydra.compose(config_name=config.hydra.job.config_name, overrides=job)
        cfg: BenchConfig = OmegaConf.to_object(composed)
        if (text := repr(cfg)) not in keys:  # identical jobs (repeats of one configuration) are checked once
            try:
                keys[text] = configuration(cfg, check(cfg), None)["config_key"]
            except ConfigError as e:
                raise ConfigError(f"{e}\n(in the sweep job with overrides: {' '.join(job)})") from None
        configs.append((cfg, keys[text]))
    return configs


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.configs: list[tuple[BenchConfig, str]] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.hydra.sweeper._target_.endswith("BasicSweeper"):
            return
        try:
            self.configs = check_sweep(config)
        except ConfigError as e:
            # Hydra turns a callback's exception into a warning; a bad sweep must stop here, before any work.
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.info("sweep of %d runs into %s; runs on one device wait for each other (energy windows must "
                 "not overlap)", len(self.configs), config.hydra.sweep.dir)
        progress.start(self.configs[0][0].progress, runs=len(self.configs))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        progress.stop()
        rows = results.load(config.hydra.sweep.dir)
        if any(cfg.resume for cfg, _ in self.configs):
            # Configurations skipped as already measured still belong in this sweep's table.
            keys = {key for _, key in self.configs} - set(rows.get("config_key", []))
            rows = pd.concat([rows, results.successful_rows(self.configs[0][0].results_dir, keys)],
                             ignore_index=True)
        print(f"\nSweep summary ({len(rows)} rows; new ones in {config.hydra.sweep.dir}):")
        print(summary.table(rows))
        if rows.empty:
            return
        for _, r in rows[rows["status"] == "invalid"].iterrows():
            print(f"INVALID: {summary.label(r)}: {r['invalid_reasons']}", file=sys.stderr)
        for line in summary.short_of_target(rows):
            print(line)
        failed = rows[rows["status"] == "failed"]
        for _, r in failed.iterrows():
            print(f"FAILED: {summary.label(r)}: {r['error_type']}: {r['error_message']}", file=sys.stderr)
        if len(failed):
            raise SystemExit(1)
