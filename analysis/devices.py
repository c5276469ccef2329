"""Naming a row's device, and matching it against names users and tables give (price overrides, peaks)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd


def device_key(rows: pd.DataFrame) -> pd.Series:
    """The GPU or CPU model where the row recorded one, else the torch device (`cpu`, `cuda:0`)."""
    return rows["device_name"].fillna(rows["device"]) if "device_name" in rows else rows["device"]


def match_device(device: str, device_name: object, names: Iterable[str]) -> str | None:
    """The name that matches this device, or None.

    A name matches as a whole word of "<device> <device_name>", case-insensitive, so `cpu` matches every CPU
    row and `L4` matches "NVIDIA L4" but not "NVIDIA L40S". The longest matching name wins, so a specific
    entry ("H100 PCIe") beats a general one ("H100").
    """
    text = f"{device} {device_name if isinstance(device_name, str) else ''}"
    hits = [n for n in names
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", text, flags=re.IGNORECASE)]
    return max(hits, key=len) if hits else None
