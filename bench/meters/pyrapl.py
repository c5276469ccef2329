"""Adapter for users who already rely on pyRAPL (the `pyrapl` extra).

pyRAPL reads the same powercap files as bench.meters.rapl but does not correct counter wraparound and
breaks on multi-die zone names: a window longer than one wrap period silently loses energy. Prefer
meter=rapl; this adapter exists so numbers can be compared with an existing pyRAPL setup.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from bench.errors import MeterUnavailable

log = logging.getLogger(__name__)


class PyRaplMeter:
    source = "pyrapl"
    measured = True
    rated_power_w = None

    def __init__(self, pyrapl: ModuleType | None = None) -> None:
        try:
            self._pyrapl = pyrapl or importlib.import_module("pyRAPL")
            self._pyrapl.setup()
        except ImportError as e:
            raise MeterUnavailable("pyRAPL is not installed; pip install -e '.[pyrapl]'") from e
        except Exception as e:  # pyRAPL raises its own errors for missing or unreadable powercap files
            raise MeterUnavailable(f"pyRAPL could not set up: {e}") from e
        log.warning("pyRAPL has no wraparound correction: windows longer than one counter wrap lose energy")
        self._measurement = self._pyrapl.Measurement("bench")

    def start(self) -> None:
        self._measurement.begin()

    def stop(self) -> float:
        self._measurement.end()
        return sum(self._measurement.result.pkg) / 1e6  # microjoules per socket

    def params(self) -> dict[str, Any]:
        return {"wraparound_corrected": False}

    def device_state(self, when: str) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
