"""A CPU power model for machines with no readable counter. It is an estimate, never a measurement."""

from __future__ import annotations

import time
from typing import Any, Callable


class EstimateMeter:
    """P = P_idle + (P_max - P_idle) * u (docs/protocol.md §1).

    P_max is the socket TDP scaled by the cores in use; P_idle a fraction of it; u the process's CPU
    utilisation of those cores over the window (process CPU time counts every thread).
    """

    source = "estimate"
    measured = False

    def __init__(
        self,
        tdp_w: float,
        socket_cores: int,
        idle_fraction: float,
        cores_in_use: int,
        clock: Callable[[], float] = time.perf_counter,
        cpu_time: Callable[[], float] = time.process_time,
    ) -> None:
        self.socket_cores = socket_cores
        self.cores_in_use = min(cores_in_use, self.socket_cores)
        self.tdp_w = tdp_w
        self.idle_fraction = idle_fraction
        self.p_max_w = tdp_w * self.cores_in_use / self.socket_cores
        self.p_idle_w = idle_fraction * self.p_max_w
        self.rated_power_w = self.p_max_w
        self._clock, self._cpu_time = clock, cpu_time
        self._t0 = self._c0 = 0.0

    def start(self) -> None:
        self._t0, self._c0 = self._clock(), self._cpu_time()

    def stop(self) -> float:
        wall = self._clock() - self._t0
        if wall <= 0:
            return 0.0
        utilisation = min(1.0, max(0.0, (self._cpu_time() - self._c0) / (wall * self.cores_in_use)))
        return (self.p_idle_w + (self.p_max_w - self.p_idle_w) * utilisation) * wall

    def params(self) -> dict[str, Any]:
        return {
            "model": "P_idle + (P_max - P_idle) * cpu_utilisation",
            "tdp_w": self.tdp_w,
            "socket_cores": self.socket_cores,
            "cores_in_use": self.cores_in_use,
            "idle_fraction": self.idle_fraction,
            "p_max_w": self.p_max_w,
            "p_idle_w": self.p_idle_w,
        }

    def device_state(self, when: str) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
