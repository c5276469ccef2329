"""`--grid-region`: a place's grid intensity from CodeCarbon's offline tables, with its source and year beside
every carbon figure; `--grid-gco2-per-kwh` overrides it."""

import argparse
import importlib.util
import json
import subprocess
import sys
from importlib import metadata

import pytest

from analysis import grid
from analysis.__main__ import main as analyse_main
from analysis.costs import DEFAULT_GRID_GCO2_PER_KWH, DEFAULT_GRID_SOURCE, CostSettings, with_costs
from analysis.options import add_cost_options, cost_settings
from analysis.recommend import main
from bench.results import write_row
from tests.conftest import PROJECT
from tests.rows import frame_of, make_row

HAVE_CODECARBON = importlib.util.find_spec("codecarbon") is not None
needs_codecarbon = pytest.mark.skipif(not HAVE_CODECARBON,
                                      reason='needs codecarbon (pip install "energy-bench[carbon]")')
VERSION = metadata.version("codecarbon") if HAVE_CODECARBON else None


def _tables():
    """CodeCarbon's own loader: the figures the tests expect are read from it, never copied."""
    from codecarbon.input import DataSource

    return DataSource()


def _settings(*argv: str) -> CostSettings:
    parser = argparse.ArgumentParser()
    add_cost_options(parser)
    return cost_settings(parser.parse_args(list(argv)))


@needs_codecarbon
def test_a_country_by_alpha2_alpha3_or_name_gives_codecarbons_figure_and_year():
    countries = _tables().get_global_energy_mix_data()
    fr = grid.lookup("FR")
    assert (fr.code, fr.place) == ("FRA", countries["FRA"]["country_name"])
    assert fr.gco2_per_kwh == countries["FRA"]["carbon_intensity"] and fr.year == countries["FRA"]["year"]
    assert grid.lookup("fra") == grid.lookup(" France ") == fr
    assert fr.source == (f"{fr.place} (FRA) in CodeCarbon {VERSION}'s per-country table (carbon intensity of "
                         f"electricity, Our World in Data), {countries['FRA']['year']}")
    deu = grid.lookup("DEU")
    assert deu.gco2_per_kwh == countries["DEU"]["carbon_intensity"] and deu.year == countries["DEU"]["year"]


@needs_codecarbon
def test_sub_national_codes_give_their_own_tables_figures_sources_and_years():
    states = _tables().get_country_emissions_data("usa")
    california = grid.lookup("us-ca")
    from codecarbon.core.units import EmissionsPerKWh

    grams = EmissionsPerKWh.from_lbs_per_mWh(states["california"]["emissions"]).kgs_per_kWh * 1000
    assert california.gco2_per_kwh == pytest.approx(grams)
    assert california.year == states["_source"]["year"] and states["_source"]["name"] in california.source
    assert california.place == "California"

    provinces = _tables().get_china_provincial_emissions_data()
    beijing = grid.lookup("CN-BJ")
    assert beijing.gco2_per_kwh == provinces["data"]["CN-BJ"]["emission_factor"]
    assert beijing.year == provinces["data"]["CN-BJ"]["year"] and "CO2 only" in beijing.source

    zones = _tables().get_nordic_country_energy_mix_data()["data"]
    se3 = grid.lookup("SE3")
    assert se3.gco2_per_kwh == zones["SE3"]["emission_factor"] and se3.year == zones["SE3"]["year"]
    assert "ENTSO-E" in se3.source
    assert grid.lookup("FI").code == "FIN"  # Finland's country figure, not the zone table's entry of that name


@needs_codecarbon
def test_an_unknown_code_names_itself_and_the_close_valid_codes():
    with pytest.raises(ValueError, match="unknown grid region 'FRX'") as error:
        grid.lookup("FRX")
    assert "FRA (France)" in str(error.value) and "US states (US-CA)" in str(error.value)
    with pytest.raises(ValueError, match="unknown grid region 'US-CAL': close: US-CA \\(California\\)"):
        grid.lookup("US-CAL")
    import pycountry

    missing = next(c for c in pycountry.countries if c.alpha_3 not in grid.regions())
    with pytest.raises(ValueError, match=f"{missing.alpha_3}\\): CodeCarbon {VERSION} has no figure for it"):
        grid.lookup(missing.alpha_2)


def test_without_codecarbon_the_error_names_the_extra(monkeypatch):
    grid.regions.cache_clear()
    for module in ("codecarbon", "codecarbon.input"):  # imported as in an environment without it
        monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(ValueError, match='pip install "energy-bench\\[carbon\\]"'):
            grid.lookup("FR")
    finally:
        grid.regions.cache_clear()


@needs_codecarbon
def test_the_region_the_override_and_the_default_each_say_where_the_intensity_comes_from():
    fr = grid.lookup("FR")
    region = _settings("--grid-region", "FR")
    assert (region.grid_gco2_per_kwh, region.grid_source) == (fr.gco2_per_kwh, fr.source)
    given = _settings("--grid-region", "FR", "--grid-gco2-per-kwh", "100")
    assert given.grid_gco2_per_kwh == 100
    assert given.grid_source == f"given with --grid-gco2-per-kwh, overriding --grid-region FR ({fr.gco2_per_kwh:g} " \
                                "gCO2e/kWh)"
    assert _settings().grid_gco2_per_kwh == DEFAULT_GRID_GCO2_PER_KWH and _settings().grid_source == DEFAULT_GRID_SOURCE
    assert _settings("--grid-gco2-per-kwh", "400").grid_source == "given with --grid-gco2-per-kwh"
    with pytest.raises(ValueError, match="--device-grid 'H200=XX1': unknown grid region 'XX1'"):
        _settings("--device-grid", "H200=XX1")


@needs_codecarbon
def test_each_row_carries_its_intensitys_source_and_devices_elsewhere_their_own():
    rows = frame_of(device=["cpu", "cuda:0", "cuda:0"],
                    device_name=["AMD EPYC 7763", "NVIDIA H200", "NVIDIA A100"], energy_j_per_inference=3.6)
    fr, california = grid.lookup("FR"), grid.lookup("US-CA")
    out = with_costs(rows, _settings("--grid-region", "FR", "--device-grid", "H200=US-CA", "--device-grid", "A100=50"))
    assert out["grid_gco2_per_kwh"].tolist() == pytest.approx([fr.gco2_per_kwh, california.gco2_per_kwh, 50])
    assert out["grid_source"].tolist() == [fr.source, f"{california.source} (--device-grid H200=US-CA)",
                                           "given with --device-grid A100=50"]
    assert out["gco2e_per_million"].tolist() == pytest.approx([fr.gco2_per_kwh, california.gco2_per_kwh, 50])
    assert with_costs(rows, CostSettings())["grid_source"].eq(DEFAULT_GRID_SOURCE).all()


def _tree(tmp_path) -> str:
    for run, quant, energy, p99 in (("a", "int8", 0.25, 34.0), ("b", "fp32", 0.38, 40.0), ("c", "bf16", 0.30, 30.0)):
        write_row(make_row(run_id=run, quant=quant, energy_j_per_inference=energy, latency_ms_p99=p99),
                  tmp_path / "tree" / run)
    return str(tmp_path / "tree")


@needs_codecarbon
def test_recommend_prints_the_regions_intensity_source_and_year(tmp_path, capsys):
    tree, fr = _tree(tmp_path), grid.lookup("FR")
    bounds = ["--max-latency-ms", "50", "--min-quality-ratio", "0.99"]
    assert main([tree, *bounds, "--grid-region", "FR"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "gCO2e" in line)
    assert f"(at {fr.gco2_per_kwh:g} gCO2e/kWh, France (FRA) in CodeCarbon {VERSION}'s per-country table" in line
    assert "Our World in Data" in line and f"), {fr.year})" in line
    assert main([tree, *bounds, "--grid-region", "FR", "--objective", "carbon"]) == 0
    out = capsys.readouterr().out
    assert f"Runners-up (meet both bounds; gCO2e at {fr.gco2_per_kwh:g} gCO2e/kWh, {fr.source}):" in out
    assert main([tree, *bounds, "--grid-region", "FR", "--grid-gco2-per-kwh", "100"]) == 0
    assert "(at 100 gCO2e/kWh, given with --grid-gco2-per-kwh, overriding --grid-region FR" in capsys.readouterr().out
    assert main([tree, *bounds, "--grid-region", "FR", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pick"]["grid_source"] == fr.source and result["settings"]["grid_source"] == fr.source
    assert main([tree, *bounds]) == 0
    assert f"(at 400 gCO2e/kWh, {DEFAULT_GRID_SOURCE})" in capsys.readouterr().out


@needs_codecarbon
def test_an_unknown_region_exits_2_before_any_work(tmp_path, capsys):
    tree = _tree(tmp_path)
    assert main([tree, "--max-latency-ms", "50", "--min-quality-ratio", "0.99", "--grid-region", "FRX"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown grid region 'FRX'" in err and "FRA (France)" in err
    assert analyse_main([tree, "--out", str(tmp_path / "out"), "--grid-region", "FRX"]) == 2
    assert "unknown grid region 'FRX'" in capsys.readouterr().err and not (tmp_path / "out").exists()


@needs_codecarbon
def test_reading_the_tables_does_not_import_codecarbon():
    # Importing it loads its GPU backends: seconds, and with amdsmi installed a line on stdout that breaks --json.
    code = "import sys; from analysis import grid; grid.lookup('FR'); assert 'codecarbon' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT, check=True, timeout=60)
