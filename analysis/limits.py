"""How far each variant is from its device's physical limit: peak FLOP/s, peak FLOP/J, and for decode the
memory-bandwidth bound on tokens/s.

Peak FLOP/J is the datasheet's dense peak FLOP/s over its rated power: the efficiency of a board running
flat out at its power limit. A row's FLOP/J divides by the attributed (net, idle-subtracted) energy, so it
credits the work only; a fraction near or above 1 says the idle share is large, not that the limit fell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.axes import with_energy
from analysis.device_peaks import PEAKS, PRECISION_OF_QUANT
from analysis.devices import device_key, match_device

ANY_PRECISION = "*"  # a configured peak that applies whatever the precision
CPU_OPTIONS = "--cpu-peak-tflops and --cpu-rated-w, or --device-peaks FILE"


@dataclass(frozen=True)
class Peaks:
    devices: dict[str, dict] = field(default_factory=lambda: dict(PEAKS))
    precision_of_quant: dict[str, str] = field(default_factory=lambda: dict(PRECISION_OF_QUANT))


def cpu_entry(tflops: dict[str, float], rated_w: float | None, mem_gbs: float | None) -> dict:
    """A peaks entry for every CPU row, from configuration: `{"*": x}` applies x to every precision."""
    for name, value in [*((f"--cpu-peak-tflops {k}", v) for k, v in tflops.items()),
                        ("--cpu-rated-w", rated_w), ("--cpu-mem-gbs", mem_gbs)]:
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value}: must be a number > 0")
    return {"tflops": tflops, "rated_w": rated_w, "mem_gbs": mem_gbs, "source": "configuration (--cpu-*)",
            "dense": True}


def load_peaks(path: Path | None = None, cpu: dict | None = None) -> Peaks:
    """The built-in table, overlaid by a YAML file (`devices:` entries as in device_peaks.PEAKS, and
    `precision_of_quant:`), then by a configured CPU entry (key `cpu`: matches every CPU row, while a file
    entry naming the CPU model is longer and so wins)."""
    peaks = Peaks()
    if path is not None:
        extra = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(extra) - {"devices", "precision_of_quant"}
        if unknown or not isinstance(extra.get("devices", {}), dict):
            raise ValueError(f"{path}: expected the keys 'devices' (a mapping) and 'precision_of_quant', "
                             f"got {sorted(extra)}")
        for key, entry in (extra.get("devices") or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("tflops", {}), dict):
                raise ValueError(f"{path}: device {key!r} needs a mapping with 'tflops' (precision: TFLOP/s), "
                                 "'rated_w', 'mem_gbs' and 'source'")
            peaks.devices[str(key)] = {"source": str(path), **entry}
        peaks.precision_of_quant.update(extra.get("precision_of_quant") or {})
    if cpu is not None:
        peaks.devices["cpu"] = cpu
    return peaks


def _peak(row: pd.Series, peaks: Peaks) -> dict:
    """The matched entry's figures for this row's precision, and why any is missing."""
    key = match_device(row["device"], row.get("device_name"), peaks.devices)
    precision = peaks.precision_of_quant.get(row.get("quant"))
    found = {"limit_device": key, "precision": precision, "peak_tflops": np.nan, "peak_rated_w": np.nan,
             "peak_mem_gbs": np.nan, "peak_source": None}
    notes = []
    if key is None:
        hint = CPU_OPTIONS if row["device"] == "cpu" else "--device-peaks FILE"
        notes.append(f"no peak figures for {row['device_key']!r} (give {hint})")
    else:
        entry = peaks.devices[key]
        tflops = entry.get("tflops") or {}
        found["peak_tflops"] = tflops.get(precision, tflops.get(ANY_PRECISION, np.nan))
        found["peak_rated_w"] = entry.get("rated_w") or np.nan
        found["peak_mem_gbs"] = entry.get("mem_gbs") or np.nan
        dense = {True: "dense", False: "NOT dense"}.get(entry.get("dense"), "dense or sparse: not stated")
        found["peak_source"] = f"{entry.get('source')} ({dense})"
        if precision is None:
            notes.append(f"no peak precision for quant {row.get('quant')!r}")
        elif np.isnan(found["peak_tflops"]):
            notes.append(f"{key} has no {precision} peak")
        if np.isnan(found["peak_rated_w"]):
            notes.append(f"{key} has no rated power")
    found["limit_note"] = notes
    return found


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(rows[name], errors="coerce") if name in rows else pd.Series(np.nan, index=rows.index)


def with_limits(rows: pd.DataFrame, peaks: Peaks) -> pd.DataFrame:
    """Rows plus the matched peaks and `achieved_tflops`, `fraction_of_peak_tflops`, `flops_per_joule`,
    `peak_flops_per_joule`, `fraction_of_peak_flops_per_joule`; generation rows also `decode_bound_tokens_s`
    (memory bandwidth / model bytes × batch: every decode step reads every weight once, and the KV cache is
    left out, so it is an upper bound) and `fraction_of_decode_bound`. `limit_note` says why a figure is NaN."""
    out = with_energy(rows)
    out["device_key"] = device_key(out)
    found = pd.DataFrame([_peak(row, peaks) for _, row in out.iterrows()], index=out.index,
                         columns=["limit_device", "precision", "peak_tflops", "peak_rated_w", "peak_mem_gbs",
                                  "peak_source", "limit_note"])
    out[found.columns] = found
    flops = _column(out, "flops_per_inference")
    out["achieved_tflops"] = flops * _column(out, "throughput_samples_s") / 1e12
    out["fraction_of_peak_tflops"] = out["achieved_tflops"] / out["peak_tflops"]
    out["flops_per_joule"] = flops / _column(out, "energy_j_per_inference")
    out["peak_flops_per_joule"] = out["peak_tflops"] * 1e12 / out["peak_rated_w"]
    out["fraction_of_peak_flops_per_joule"] = out["flops_per_joule"] / out["peak_flops_per_joule"]
    generate = _column(out, "decode_tokens_s").notna()  # rows with a decode phase
    model_bytes = _column(out, "model_bytes")
    out["decode_bound_tokens_s"] = (out["peak_mem_gbs"] * 1e9 / model_bytes * _column(out, "batch_size")
                                    ).where(generate)
    out["fraction_of_decode_bound"] = _column(out, "decode_tokens_s") / out["decode_bound_tokens_s"]
    for index in out.index[flops.isna()]:
        out.at[index, "limit_note"] = ["the row has no flops_per_inference", *out.at[index, "limit_note"]]
    for index in out.index[generate & model_bytes.isna()]:
        out.at[index, "limit_note"] = [*out.at[index, "limit_note"], "the row has no model_bytes for the decode bound"]
    out["limit_note"] = out["limit_note"].map("; ".join)
    return out
