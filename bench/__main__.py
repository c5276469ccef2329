"""`python -m bench [overrides] [-m]`: one run, or with -m a sweep, each run written as a parquet row."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench.config import BenchConfig, ConfigError, register_configs
from bench.run import run
from bench.summary import table

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register_configs()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(dict_cfg: DictConfig) -> str:
    cfg: BenchConfig = OmegaConf.to_object(dict_cfg)
    hc = HydraConfig.get()
    sweeping = hc.mode == RunMode.MULTIRUN
    sweep_id = Path(hc.sweep.dir if sweeping else hc.run.dir).name
    try:
        row = run(cfg, hc.runtime.output_dir, sweep_id)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if not sweeping:
        print(table(pd.DataFrame([row])))
        if row["status"] != "ok":
            raise SystemExit(1)
    return row["status"]


if __name__ == "__main__":
    main()
