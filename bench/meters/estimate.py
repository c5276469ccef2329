"""A CPU power model for machines with no readable counter. It is an estimate, never a measurement."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence


class EstimateMeter:
    """P = P_idle + (P_max - P_idle) * u (docs/protocol.md §1).

    P_max is the socket TDP scaled by the cores in use; P_idle a fraction of it; u the CPU utilisation of those
    cores over the window by this process, or by the processes given (a server the harness drives): process CPU
    time counts every thread.
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
        counted: str = "this process (all its threads)",
    ) -> None:
        self.socket_cores = socket_cores
        self.cores_in_use = min(cores_in_use, self.socket_cores)
        self.tdp_w = tdp_w
        self.idle_fraction = idle_fraction
        self.p_max_w = tdp_w * self.cores_in_use / self.socket_cores
        self.p_idle_w = idle_fraction * self.p_max_w
        self.rated_power_w = self.p_max_w
        self._clock, self._cpu_time = clock, cpu_time
        self.counted = counted
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
            "cpu_time_of": self.counted,
        }

    def device_state(self, when: str) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def processes_cpu_time(pids: Sequence[int]) -> Callable[[], float]:
    """CPU seconds (user + system, every thread) the processes have used, from /proc/<pid>/stat; a process that
    has exited counts what it had used when last read, so a window's difference never goes negative."""
    tick = os.sysconf("SC_CLK_TCK")
    last = {pid: 0.0 for pid in pids}

    def cpu_time() -> float:
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
            except OSError:
                continue
            last[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return sum(last.values())

    return cpu_time
