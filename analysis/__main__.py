"""`python -m analysis results/<tree> [--out DIR]`: fronts, plots, summary.md and report.html."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from analysis import plots, report
from analysis.pareto import with_fronts
from bench.results import load


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-")


def analyse(tree: Path, out: Path) -> list[Path]:
    rows = load(tree)
    if rows.empty:
        raise SystemExit(f"error: no result rows under {tree}")
    rows, excluded = with_fronts(rows)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "pareto.parquet", out / "pareto.csv"]
    rows.to_parquet(written[0], index=False)
    rows.drop(columns=[c for c in rows.columns if rows[c].map(lambda v: isinstance(v, (list, tuple))).any()]
              ).to_csv(written[1], index=False)
    placed = rows[(rows["status"] == "ok") & rows["quality"].notna()]
    groups = []
    for (eval_name, device), group in placed.groupby(["eval", "device_key"], sort=True):
        name = _slug(eval_name, device)
        images = [plots.quality_energy(group, eval_name, device, out / f"quality_energy_{name}.png"),
                  plots.latency_energy(group, eval_name, device, out / f"latency_energy_{name}.png")]
        groups.append((eval_name, device, group, images))
        written += images
    (out / "summary.md").write_text(report.summary_md(groups, excluded))
    (out / "report.html").write_text(report.report_html(groups, excluded, f"Energy and quality: {tree}"))
    return written + [out / "summary.md", out / "report.html"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("tree", type=Path, help="a results tree (a sweep, or all of results/)")
    parser.add_argument("--out", type=Path, help="where to write (default: <tree>/analysis)")
    args = parser.parse_args(argv)
    if not args.tree.exists():
        print(f"error: {args.tree} does not exist", file=sys.stderr)
        return 2
    for path in analyse(args.tree, args.out or args.tree / "analysis"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
