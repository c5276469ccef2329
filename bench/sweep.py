"""Hydra callbacks for a sweep: check every configuration before the first run, summarise after the last."""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench import results, summary
from bench.config import BenchConfig, ConfigError

log = logging.getLogger(__name__)


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a basic sweep: the conf/ grid, command-line values winning."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    params += list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_sweep(config: DictConfig) -> int:
    """Composes and checks every job; raises ConfigError naming the first bad one. Returns the job count."""
    from bench.run import check

    jobs = job_overrides(config)
    checked: set[str] = set()
    for job in jobs:
        composed = hydra.compose(config_name=config.hydra.job.config_name, overrides=job)
        cfg: BenchConfig = OmegaConf.to_object(composed)
        key = repr(cfg)
        if key not in checked:
            checked.add(key)
            try:
                check(cfg)
            except ConfigError as e:
                raise ConfigError(f"{e}\n(in the sweep job with overrides: {' '.join(job)})") from None
    return len(jobs)


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.hydra.sweeper._target_.endswith("BasicSweeper"):
            return
        try:
            n = check_sweep(config)
        except ConfigError as e:
            # Hydra turns a callback's exception into a warning; a bad sweep must stop here, before any work.
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.info("sweep of %d runs, one after another (energy windows must not overlap), into %s",
                 n, config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = results.load(config.hydra.sweep.dir)
        print(f"\nSweep summary ({len(rows)} rows in {config.hydra.sweep.dir}):")
        print(summary.table(rows))
        failed = rows[rows["status"] != "ok"] if not rows.empty else rows
        if len(failed):
            for _, r in failed.iterrows():
                print(f"FAILED: {r['model']} quant={r['quant']} batch_size={r['batch_size']}: "
                      f"{r.get('error_type')}: {r.get('error_message')}", file=sys.stderr)
            raise SystemExit(1)
