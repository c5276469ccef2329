"""Energy per million inferences (or output tokens) as kWh, money and grams of CO2e.

The joules are the row's attributed figure (docs/protocol.md §4): net of the idle power measured before the
windows. These are the marginal cost and emissions of the work itself; a machine kept on only for this
service also pays its idle draw, which `idle_power_w` in each row gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.axes import with_energy
from analysis.devices import match_device

J_PER_KWH = 3.6e6
# Round illustrative defaults, not any place's figures: set your tariff and your grid's intensity.
DEFAULT_PRICE_PER_KWH = 0.15
DEFAULT_GRID_GCO2_PER_KWH = 400.0
DEFAULT_GRID_SOURCE = "an illustrative default, not any place's figure (set --grid-region or --grid-gco2-per-kwh)"
GIVEN_GRID_SOURCE = "given with --grid-gco2-per-kwh"


@dataclass(frozen=True)
class CostSettings:
    price_per_kwh: float = DEFAULT_PRICE_PER_KWH
    grid_gco2_per_kwh: float = DEFAULT_GRID_GCO2_PER_KWH
    # device name (matched as in analysis.devices.match_device) -> value, for devices in other places
    device_price: dict[str, float] = field(default_factory=dict)
    device_grid: dict[str, float] = field(default_factory=dict)
    requests_per_day: float | None = None
    # Where each intensity comes from, printed beside every figure using it; left out, the default's own text
    # for the default value, else "given with" the flag that gives it.
    grid_source: str | None = None
    device_grid_source: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = {"--price-per-kwh": self.price_per_kwh, "--grid-gco2-per-kwh": self.grid_gco2_per_kwh,
                  "--requests-per-day": self.requests_per_day}
        values |= {f"--device-price {k}": v for k, v in self.device_price.items()}
        values |= {f"--device-grid {k}": v for k, v in self.device_grid.items()}
        for name, value in values.items():
            if value is not None and not value >= 0:  # also rejects NaN
                raise ValueError(f"{name}={value}: must be a number >= 0")
        if self.grid_source is None:
            object.__setattr__(self, "grid_source", DEFAULT_GRID_SOURCE
                               if self.grid_gco2_per_kwh == DEFAULT_GRID_GCO2_PER_KWH else GIVEN_GRID_SOURCE)
        object.__setattr__(self, "device_grid_source", {k: self.device_grid_source.get(
            k, f"given with --device-grid {k}={v:g}") for k, v in self.device_grid.items()})


def kwh_per_million(joules: pd.Series | float) -> pd.Series | float:
    return joules * 1e6 / J_PER_KWH


def _per_device(rows: pd.DataFrame, overrides: dict, default: object, dtype: object = float) -> pd.Series:
    names = list(overrides)
    return pd.Series([overrides[m] if (m := match_device(d, n, names)) else default
                      for d, n in zip(rows["device"], rows.get("device_name", pd.Series(None, index=rows.index)))],
                     index=rows.index, dtype=dtype)


def with_costs(rows: pd.DataFrame, settings: CostSettings) -> pd.DataFrame:
    """Rows plus the price and grid intensity applied to each (and `grid_source`, where the intensity comes
    from), `kwh_per_million`, `cost_per_million`, `gco2e_per_million` (per million of the row's `energy_unit`),
    and with `requests_per_day` the daily `kwh_per_day`, `cost_per_day`, `gco2e_per_day`."""
    out = with_energy(rows)
    out["price_per_kwh"] = _per_device(out, settings.device_price, settings.price_per_kwh)
    out["grid_gco2_per_kwh"] = _per_device(out, settings.device_grid, settings.grid_gco2_per_kwh)
    out["grid_source"] = _per_device(out, settings.device_grid_source, settings.grid_source, dtype=str)
    out["kwh_per_million"] = kwh_per_million(out["energy_j"])
    out["cost_per_million"] = out["kwh_per_million"] * out["price_per_kwh"]
    out["gco2e_per_million"] = out["kwh_per_million"] * out["grid_gco2_per_kwh"]
    if settings.requests_per_day is not None:
        out["kwh_per_day"] = out["request_j"] * settings.requests_per_day / J_PER_KWH
        out["cost_per_day"] = out["kwh_per_day"] * out["price_per_kwh"]
        out["gco2e_per_day"] = out["kwh_per_day"] * out["grid_gco2_per_kwh"]
    return out
