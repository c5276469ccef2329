"""The grid carbon intensity of a place, from the offline tables CodeCarbon ships (`--grid-region`).

Codes, case-insensitive:
- a country: ISO 3166 alpha-2 or alpha-3 (`FR`, `FRA`), or its name; CodeCarbon's per-country table, whose
  carbon intensity of electricity CodeCarbon's methodology attributes to Our World in Data; each country's year
  is the latest the table holds for it.
- a US state: ISO 3166-2 `US-CA`; EPA eGRID as CodeCarbon ships it (lbs/MWh, converted here to g/kWh).
- a Chinese province: ISO 3166-2 `CN-BJ`, as CodeCarbon keys them; MEE/NBS factors, CO2 only (not CO2e).
- a Nordic electricity bidding zone: `SE1`-`SE4`, `NO1`-`NO5`; ENTSO-E generation mixes.
Canadian provinces are not offered: CodeCarbon's table for them is a generation mix with no year or source.

The JSON files are read where CodeCarbon's `DataSource` reads them, without importing the codecarbon package:
importing it loads its GPU backends, which take seconds and, where the amdsmi package is present, print to stdout
(breaking `--json`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

INSTALL = 'pip install "energy-bench[carbon]"'
KINDS = "ISO 3166 countries (FR or FRA), US states (US-CA), Chinese provinces (CN-BJ), Nordic bidding zones " \
        "(SE1-SE4, NO1-NO5)"
G_PER_KWH_PER_LB_PER_MWH = 0.45359237  # the pound is 0.45359237 kg; a MWh is 1000 kWh


@dataclass(frozen=True)
class GridIntensity:
    code: str  # the table's key: FRA, US-CA, CN-BJ, SE3
    place: str
    gco2_per_kwh: float
    table: str  # CodeCarbon's table and what it cites
    year: int

    @property
    def source(self) -> str:
        return f"{self.place} ({self.code}) in {self.table}, {self.year}"


def _read(root: Path, name: str) -> dict:
    return json.loads((root / "data" / "private_infra" / name).read_text())


def _countries(root: Path, version: str) -> dict[str, GridIntensity]:
    table = f"CodeCarbon {version}'s per-country table (carbon intensity of electricity, Our World in Data)"
    # An entry without an intensity is one CodeCarbon would rebuild from its mix; only stated figures are offered.
    return {code: GridIntensity(code, e["country_name"], float(e["carbon_intensity"]), table, int(e["year"]))
            for code, e in _read(root, "global_energy_mix.json").items() if e.get("carbon_intensity") is not None}


def _us_states(root: Path, version: str) -> dict[str, GridIntensity]:
    import pycountry

    states = _read(root, "2023/usa_emissions.json")
    source = states["_source"]
    if states["_unit"]["emissions"] != "lbs/MWh":
        return {}  # a unit not converted here: not offered rather than misread
    table = f"CodeCarbon {version}'s US table ({source['name']})"
    out = {}
    for name, e in states.items():
        if name.startswith("_"):
            continue
        code = f"US-{e['regionCode']}"
        place = getattr(pycountry.subdivisions.get(code=code), "name", name)
        out[code] = GridIntensity(code, place, e["emissions"] * G_PER_KWH_PER_LB_PER_MWH, table, int(source["year"]))
    return out


def _china_provinces(root: Path, version: str) -> dict[str, GridIntensity]:
    provinces = _read(root, "2023/china_provincial_emissions.json")
    table = (f"CodeCarbon {version}'s China table (MEE/NBS announcement {provinces['metadata']['announcement']}, "
             "provincial average, CO2 only)")
    return {code: GridIntensity(code, e["description"], float(e["emission_factor"]), table, int(e["year"]))
            for code, e in provinces["data"].items()}


def _bidding_zones(root: Path, version: str) -> dict[str, GridIntensity]:
    out = {}
    for code, e in _read(root, "nordic_emissions.json")["data"].items():
        if not re.fullmatch(r"[A-Z]{2}\d", code):
            continue  # its FI entry is Finland, which the country table answers under FI and FIN
        # Generation with no factor is counted at 0: below full coverage the figure is a lower bound.
        covered = f"; {e['coverage'].split(' (')[0]} of generation has a factor, the rest counts 0" \
            if "coverage" in e else ""
        table = (f"CodeCarbon {version}'s Nordic table (ENTSO-E generation per production type, CodeCarbon's "
                 f"factors{covered})")
        out[code] = GridIntensity(code, e["description"], float(e["emission_factor"]), table, int(e["year"]))
    return out


@functools.cache
def regions() -> dict[str, GridIntensity]:
    """Every code CodeCarbon has a figure for, keyed as looked up (upper case)."""
    spec = importlib.util.find_spec("codecarbon")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"--grid-region reads CodeCarbon's tables, and codecarbon is not installed: {INSTALL}")
    root, version = Path(spec.submodule_search_locations[0]), metadata.version("codecarbon")
    out = {}
    for table in (_countries, _us_states, _china_provinces, _bidding_zones):
        try:
            out |= table(root, version)
        except (KeyError, FileNotFoundError):
            pass  # a CodeCarbon release without this table, or without its source and year: not offered
    return out


def _aliases(table: dict[str, GridIntensity]) -> dict[str, str]:
    """Alpha-2 codes and country names (upper case) -> the table's alpha-3 key."""
    import pycountry

    out = {}
    for country in pycountry.countries:
        if country.alpha_3 in table:
            out[country.alpha_2] = out[country.name.upper()] = country.alpha_3
    return out


def lookup(code: str) -> GridIntensity:
    """The intensity of the place `code` names; a ValueError names an unknown code and the close valid ones."""
    table = regions()
    import pycountry  # after regions(): a missing codecarbon, which brings it, is the error to report

    key = code.strip().upper()
    if key in table:
        return table[key]
    try:
        country = pycountry.countries.lookup(key)
    except LookupError:
        country = None
    if country is not None:
        if country.alpha_3 in table:
            return table[country.alpha_3]
        raise ValueError(f"grid region {code!r} ({country.name}, {country.alpha_3}): CodeCarbon "
                         f"{metadata.version('codecarbon')} has no figure for it; give --grid-gco2-per-kwh")
    aliases = _aliases(table)
    matches = difflib.get_close_matches(key, [*table, *aliases], n=8, cutoff=0.5)
    close = dict.fromkeys(aliases.get(m, m) for m in matches)  # one entry per place
    shown = ", ".join(f"{c} ({table[c].place})" for c in list(close)[:5])
    raise ValueError(f"unknown grid region {code!r}: " + (f"close: {shown}; " if shown else "") + f"codes are {KINDS}")
