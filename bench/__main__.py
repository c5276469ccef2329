"""`python -m bench [overrides] [-m]`: one run, or with -m a sweep, each run written as a parquet row."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench import progress
from bench.config import CONF_DIR, BenchConfig, ConfigError, register_configs
from bench.run import record_failure, run
from bench.summary import short_of_target, table

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(dict_cfg: DictConfig) -> str:
    cfg: BenchConfig = OmegaConf.to_object(dict_cfg)
    hc = HydraConfig.get()
    out_dir = hc.runtime.output_dir
    if hc.mode == RunMode.MULTIRUN:
        progress.run_started()
        # The sweep was checked up front; what still fails here (another launcher, a machine that
        # changed) is recorded as a failed row and the sweep goes on.
        try:
            return run(cfg, out_dir, Path(hc.sweep.dir).name)["status"]
        except ConfigError as e:
            return record_failure(cfg, out_dir, Path(hc.sweep.dir).name, e)["status"]
    try:
        with progress.shown(cfg.progress):
            row = run(cfg, out_dir, Path(hc.run.dir).name)
    except ConfigError as e:
        shutil.rmtree(out_dir, ignore_errors=True)  # only Hydra's bookkeeping is in it: leave no trace
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table(pd.DataFrame([row])))
    print(*short_of_target(pd.DataFrame([row])), sep="\n")
    if row["status"] == "failed":
        raise SystemExit(1)
    return row["status"]


if __name__ == "__main__":
    main()
