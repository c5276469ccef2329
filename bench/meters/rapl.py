"""CPU energy from Linux powercap (RAPL): package zones summed, wraparound corrected by background polling."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import MeterUnavailable


PERMISSION_FIX = (
    "since the 2020 PLATYPUS fix energy_uj is readable by root only; run as root, or grant read access "
    "with a udev rule (ACTION==\"add\", SUBSYSTEM==\"powercap\", RUN+=\"/bin/chmod a+r /sys%p/energy_uj\") "
    "or a sysfsutils line in /etc/sysfs.conf (mode class/powercap/intel-rapl:0/energy_uj = 0444)"
)


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str
    max_range_uj: int


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as e:
        raise MeterUnavailable(f"permission denied reading {path}: {PERMISSION_FIX}") from e


def find_zones(root: str | Path, include_dram: bool = False) -> list[Zone]:
    """Top-level package (or package-die) zones, plus their dram subzones when asked.

    Nested zones (core, uncore) are parts of their package and psys contains the packages: summing
    them would count the same joules two or three times.
    """
    root = Path(root)
    dirs = sorted(root.glob("intel-rapl:*")) if root.is_dir() else []
    if not dirs:
        raise MeterUnavailable(f"no RAPL zones under {root} (virtual machines and non-Linux hosts have none)")
    zones = []
    for d in dirs:
        depth = d.name.count(":")
        name = (d / "name").read_text().strip()
        wanted = (depth == 1 and name.startswith("package")) or (depth == 2 and include_dram and name == "dram")
        if not wanted:
            continue
        max_file = d / "max_energy_range_uj"
        try:
            max_range = _read_int(max_file)
        except (FileNotFoundError, ValueError) as e:
            raise MeterUnavailable(
                f"cannot read {max_file} ({e}); without it counter wraparound cannot be corrected"
            ) from e
        zones.append(Zone(d, name, max_range))
    if not zones:
        raise MeterUnavailable(f"no package zones under {root}")
    return zones


def rated_power_w(zones: list[Zone]) -> float | None:
    """Sum over zones of the highest power-limit constraint (PL2 where present); None if any is unreadable."""
    total = 0.0
    for zone in zones:
        limits = []
        for f in zone.path.glob("constraint_*_power_limit_uw"):
            try:
                limits.append(int(f.read_text().strip()))
            except (OSError, ValueError):
                continue
        if not limits:
            return None
        total += max(limits) / 1e6
    return total


class RaplMeter:
    """Sums the zones' energy counters; a poller thread sees every wrap of every zone."""

    source = "rapl"
    measured = True

    def __init__(
        self,
        root: str | Path = "/sys/class/powercap",
        include_dram: bool = False,
        max_power_w: float = 500.0,
        poll_s: float | None = None,
    ) -> None:
        self.zones = find_zones(root, include_dram)
        self._lock = threading.Lock()
        self._last = [self._read(z) for z in self.zones]
        self._total_uj = [0] * len(self.zones)
        self._window_start_j = 0.0
        # Poll at least twice per wrap at the highest plausible power; more often costs nothing measurable.
        wrap_s = min(z.max_range_uj for z in self.zones) / 1e6 / max_power_w
        self.poll_s = poll_s if poll_s is not None else min(1.0, wrap_s / 2)
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self.rated_power_w = rated_power_w(self.zones)

    @staticmethod
    def _read(zone: Zone) -> int:
        return _read_int(zone.path / "energy_uj")

    def sample(self) -> float:
        """Reads every zone and folds the deltas in; returns joules accumulated since construction."""
        with self._lock:
            for i, zone in enumerate(self.zones):
                now = self._read(zone)
                delta = now - self._last[i]
                if delta < 0:
                    delta += zone.max_range_uj
                if delta < 0:
                    raise RuntimeError(
                        f"RAPL zone {zone.path} went from {self._last[i]} to {now} uJ, negative even after "
                        f"wraparound at {zone.max_range_uj}: window rejected"
                    )
                self._total_uj[i] += delta
                self._last[i] = now
            return sum(self._total_uj) / 1e6

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sample()
            except Exception as e:  # surfaced by the next stop(), in the measuring thread
                self._error = e
                return

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="rapl-poller", daemon=True)
            self._thread.start()
        self._window_start_j = self.sample()

    def stop(self) -> float:
        joules = self.sample() - self._window_start_j
        if self._error is not None:
            raise self._error
        return joules

    def params(self) -> dict[str, Any]:
        return {"zones": [z.name for z in self.zones], "poll_s": self.poll_s}

    def device_state(self, when: str) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
