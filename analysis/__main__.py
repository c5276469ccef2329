"""`python -m analysis results/<tree> [--out DIR]`: fronts, plots, cost and carbon, distance to the limit,
serving under load, summary.md and report.html."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from analysis import plots, report, serve_plots
from analysis.costs import CostSettings, with_costs
from analysis.limits import Peaks, with_limits
from analysis.loads import serve_mode, under_load
from analysis.options import add_tree_argument, add_cost_options, add_peak_options, cost_settings, peaks
from analysis.pareto import with_fronts
from bench.results import load


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-")


def _kind(source: str) -> str:
    return "ESTIMATED energy, a model" if source == "estimate" else f"energy measured by {source}"


def _serving(rows: pd.DataFrame, out: Path) -> list[report.Group]:
    """Per (model family, device, energy source, serve mode), the serve rows' load curves; estimated and measured
    joules never share a plot, nor open-loop rates and closed-loop concurrencies an axis."""
    serving = rows[under_load(rows) & (rows["status"] == "ok") & rows["energy_j"].notna()]
    groups = []
    keys = ["family", "device_key", "energy_source", serve_mode(serving).rename("serve_mode_")]
    for (family, device, source, mode), group in serving.groupby(keys, sort=True):
        heading = f"{family} on {device} ({_kind(source)}), {mode} loop"
        image = out / f"serve_{_slug(family, device, source, mode)}.png"
        groups.append((heading, group, [serve_plots.load_curves(group, heading, image)]))
    return groups


def analyse(tree: Path, out: Path, settings: CostSettings | None = None, device_peaks: Peaks | None = None
            ) -> list[Path]:
    rows = load(tree)
    if rows.empty:
        raise SystemExit(f"error: no result rows under {tree}")
    rows, excluded = with_fronts(rows)
    rows = with_limits(with_costs(rows, settings or CostSettings()), device_peaks or Peaks())
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "pareto.parquet", out / "pareto.csv"]
    rows.to_parquet(written[0], index=False)
    rows.drop(columns=[c for c in rows.columns if rows[c].map(lambda v: isinstance(v, (list, tuple))).any()]
              ).to_csv(written[1], index=False)
    # Serve rows are judged under load (their own section), not on a quality front: their joules depend on the
    # arrival rate, and they are usually not scored (eval=none).
    serve = under_load(rows)
    placed = rows[(rows["status"] == "ok") & rows["quality"].notna() & ~serve]
    serving = _serving(rows, out)
    excluded -= int((serve & (rows["status"] == "ok") & rows["energy_j"].notna() & rows["quality"].isna()).sum())
    groups = []
    keys = ["eval", "energy_unit", "device_key", "energy_source"]
    for (eval_name, unit, device, source), group in placed.groupby(keys, sort=True):
        # Rows judged per inference keep the short names; any other axis (per output token...) is named. Each
        # energy source gets its own plots: measured and estimated joules are never drawn as one front.
        shown = eval_name if unit == "inference" else f"{eval_name} (per {unit})"
        name = _slug(eval_name, device, source) if unit == "inference" else _slug(eval_name, unit, device, source)
        heading = f"{shown} on {device} ({_kind(source)})"
        images = [plots.quality_energy(group, heading, out / f"quality_energy_{name}.png"),
                  plots.latency_energy(group, heading, out / f"latency_energy_{name}.png")]
        groups.append((heading, group, images))
        written += images
    written += [image for _, _, images in serving for image in images]
    (out / "summary.md").write_text(report.summary_md(groups, excluded, serving))
    (out / "report.html").write_text(report.report_html(groups, excluded, f"Energy and quality: {tree}", serving))
    return written + [out / "summary.md", out / "report.html"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    add_tree_argument(parser)
    parser.add_argument("--out", type=Path, help="where to write (default: <tree>/analysis)")
    add_cost_options(parser)
    add_peak_options(parser)
    args = parser.parse_args(argv)
    try:
        settings, device_peaks = cost_settings(args), peaks(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in analyse(args.tree, args.out or args.tree / "analysis", settings, device_peaks):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
