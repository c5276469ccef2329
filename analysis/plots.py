"""Quality–energy and latency–energy plots, one per (eval, energy axis, device, energy source), on `energy_j`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.quality_gates import gate_lines  # noqa: E402


def _label(row: pd.Series) -> str:
    # A family's front holds several models and pruned variants: name them where they differ from the default.
    pruned = row.get("prune")
    pruned = f" {pruned} {row['prune_amount']:.0%}" if isinstance(pruned, str) and pruned != "none" else ""
    return f"{row['model']} {row['quant']}{pruned} b{row['batch_size']} {row['backend']}"


def _scatter(ax: plt.Axes, rows: pd.DataFrame, y: str) -> None:
    """Front points solid, dominated faded; estimated energy hollow; every point labelled."""
    for _, row in rows.iterrows():
        front = bool(row.get("on_pareto_front", False))
        measured = bool(row["energy_measured"])
        color = "tab:blue" if front else "tab:gray"
        ax.scatter(row["energy_j"], row[y], s=46, alpha=1.0 if front else 0.45, linewidths=1.5,
                   edgecolors=color, facecolors=color if measured else "none", zorder=3)
        ax.annotate(_label(row), (row["energy_j"], row[y]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7, alpha=1.0 if front else 0.6)


def _legend(ax: plt.Axes, rows: pd.DataFrame, extra: list) -> None:
    handles = [plt.Line2D([], [], marker="o", color="tab:blue", linestyle="-", label="Pareto front"),
               plt.Line2D([], [], marker="o", color="tab:gray", alpha=0.45, linestyle="", label="dominated")]
    if not rows["energy_measured"].astype(bool).all():
        handles.append(plt.Line2D([], [], marker="o", markerfacecolor="none", color="black", linestyle="",
                                  label="hollow: ESTIMATED energy (a model, not measured)"))
    ax.legend(handles=handles + extra, fontsize=7, loc="best")


def _energy_label(rows: pd.DataFrame) -> str:
    return f"energy per {rows['energy_unit'].iloc[0]} (J, log scale)"


def quality_energy(rows: pd.DataFrame, heading: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5.5))
    _scatter(ax, rows, "quality")
    front = rows[rows["on_pareto_front"]].sort_values("energy_j")
    ax.plot(front["energy_j"], front["quality"], color="tab:blue", zorder=2)
    extra = []
    for value, label in gate_lines(rows):
        ax.axhline(value, color="tab:red", linestyle="--", linewidth=1)
        extra.append(plt.Line2D([], [], color="tab:red", linestyle="--", label=label))
    ax.set_xscale("log")
    ax.set_xlabel(_energy_label(rows))
    ax.set_ylabel(f"{rows['quality_metric'].iloc[0]} on {rows['eval'].iloc[0]}")
    ax.set_title(f"Quality against energy: {heading}")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, rows, extra)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_energy(rows: pd.DataFrame, heading: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5.5))
    _scatter(ax, rows, "latency_ms_p50")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_energy_label(rows))
    ax.set_ylabel("latency p50 per batch (ms, log scale)")
    ax.set_title(f"Latency against energy: {heading}")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, rows, [])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
