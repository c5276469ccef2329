"""Command-line options shared by `python -m analysis` and `python -m analysis.recommend`: prices, grid
intensity (a number, or a place's from CodeCarbon's tables) and device peaks."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis import grid
from analysis.costs import (DEFAULT_GRID_GCO2_PER_KWH, DEFAULT_GRID_SOURCE, DEFAULT_PRICE_PER_KWH, GIVEN_GRID_SOURCE,
                            CostSettings)
from analysis.limits import ANY_PRECISION, Peaks, cpu_entry, load_peaks


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _assignments(values: list[str], flag: str) -> dict[str, float]:
    """["H200=0.1", ...] -> {"H200": 0.1}; a bad item raises ValueError naming the flag and the form."""
    out = {}
    for item in values:
        name, sep, value = item.rpartition("=")
        number = _number(value)
        if not sep or not name.strip() or number is None:
            raise ValueError(f"{flag} {item!r}: expected NAME=NUMBER")
        out[name.strip()] = number
    return out


def _device_grid(values: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """--device-grid NAME=NUMBER, or NAME=CODE with a --grid-region code: the intensities and their sources."""
    grids, sources = {}, {}
    for item in values:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip() or _number(value) is not None:
            grids |= _assignments([item], "--device-grid")
            continue
        try:
            region = grid.lookup(value)
        except ValueError as error:
            raise ValueError(f"--device-grid {item!r}: {error}") from None
        grids[name.strip()] = region.gco2_per_kwh
        sources[name.strip()] = f"{region.source} (--device-grid {item})"
    return grids, sources


def _grid(args: argparse.Namespace) -> tuple[float, str]:
    """The intensity for devices without their own, and its source: --grid-gco2-per-kwh over --grid-region over
    the illustrative default."""
    region = grid.lookup(args.grid_region) if args.grid_region is not None else None
    if args.grid_gco2_per_kwh is not None:
        overriding = f", overriding --grid-region {args.grid_region} ({region.gco2_per_kwh:g} gCO2e/kWh)" \
            if region is not None else ""
        return args.grid_gco2_per_kwh, GIVEN_GRID_SOURCE + overriding
    if region is not None:
        return region.gco2_per_kwh, region.source
    return DEFAULT_GRID_GCO2_PER_KWH, DEFAULT_GRID_SOURCE


def add_tree_argument(parser: argparse.ArgumentParser) -> None:
    """The results tree both commands read; a missing one is a usage error (exit 2) before any work."""
    def existing(value: str) -> Path:
        if not Path(value).exists():
            raise argparse.ArgumentTypeError(f"{value} does not exist")
        return Path(value)

    parser.add_argument("tree", type=existing, help="a results tree (a sweep, or all of results/)")


def add_cost_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cost and carbon (applied to the attributed, idle-subtracted energy)")
    group.add_argument("--price-per-kwh", type=float, default=DEFAULT_PRICE_PER_KWH,
                       help=f"electricity price per kWh, any currency (default {DEFAULT_PRICE_PER_KWH}, illustrative)")
    group.add_argument("--grid-region", metavar="CODE",
                       help=f"take the grid intensity of a place from CodeCarbon's offline tables: {grid.KINDS} "
                       "(needs energy-bench[carbon])")
    group.add_argument("--grid-gco2-per-kwh", type=float,
                       help=f"grid carbon intensity in gCO2e/kWh, over --grid-region (default "
                       f"{DEFAULT_GRID_GCO2_PER_KWH:g}, illustrative)")
    group.add_argument("--device-price", action="append", default=[], metavar="NAME=VALUE",
                       help="price for devices matching NAME (a word of the device or device_name: cpu, H200)")
    group.add_argument("--device-grid", action="append", default=[], metavar="NAME=VALUE",
                       help="grid intensity for devices matching NAME: gCO2e/kWh, or a --grid-region code")
    group.add_argument("--requests-per-day", type=float, help="also give daily kWh, cost and gCO2e")


def cost_settings(args: argparse.Namespace) -> CostSettings:
    """The settings the options give; a ValueError names a bad value (a region code: the close valid ones)."""
    intensity, source = _grid(args)
    device_grid, device_grid_source = _device_grid(args.device_grid)
    return CostSettings(args.price_per_kwh, intensity, _assignments(args.device_price, "--device-price"),
                        device_grid, args.requests_per_day, source, device_grid_source)


def add_peak_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device peaks (distance to the limit)")
    group.add_argument("--device-peaks", type=Path, metavar="FILE",
                       help="YAML with more `devices:` (or `precision_of_quant:`) over the built-in table")
    group.add_argument("--cpu-peak-tflops", action="append", default=[], metavar="[PRECISION=]TFLOPS",
                       help="the CPU's peak: one number for every precision, or repeat as fp32=2.4 int8=9.6")
    group.add_argument("--cpu-rated-w", type=float, help="the CPU's rated power (TDP) in W")
    group.add_argument("--cpu-mem-gbs", type=float, help="the CPU's memory bandwidth in GB/s")


def peaks(args: argparse.Namespace) -> Peaks:
    tflops = _assignments([v if "=" in v else f"{ANY_PRECISION}={v}" for v in args.cpu_peak_tflops],
                          "--cpu-peak-tflops")
    configured = tflops or args.cpu_rated_w is not None or args.cpu_mem_gbs is not None
    return load_peaks(args.device_peaks, cpu_entry(tflops, args.cpu_rated_w, args.cpu_mem_gbs) if configured else None)
