"""NVIDIA GPU energy through NVML (the `nvidia-ml-py` distribution, module `pynvml`)."""

from __future__ import annotations

import importlib
import os
import threading
import time
from types import ModuleType
from typing import Any

from bench.errors import MeterUnavailable


def nvml_index(cuda_index: int) -> int:
    """NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES renumbers them for torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if ids and all(v.isdigit() for v in ids) and cuda_index < len(ids):
        return int(ids[cuda_index])
    return cuda_index


def load_nvml(nvml: ModuleType | None = None) -> ModuleType:
    module = nvml or importlib.import_module("pynvml")
    try:
        module.nvmlInit()
    except module.NVMLError as e:
        raise MeterUnavailable(f"NVML did not initialise ({e}); is the NVIDIA driver loaded?") from e
    return module


def device_state(nvml: ModuleType, handle: Any, when: str) -> dict[str, Any]:
    """Name, driver and power limit; clocks and temperature suffixed with `when` (start or end of a run)."""

    def read(fn, *args):
        try:
            value = fn(handle, *args)
            return value.decode() if isinstance(value, bytes) else value
        except nvml.NVMLError:
            return None

    limit_mw = read(nvml.nvmlDeviceGetEnforcedPowerLimit)
    processes = read(nvml.nvmlDeviceGetComputeRunningProcesses)
    return {
        "gpu_name": read(nvml.nvmlDeviceGetName),
        "gpu_driver": nvml.nvmlSystemGetDriverVersion(),
        "gpu_power_limit_w": limit_mw / 1000 if limit_mw is not None else None,
        f"gpu_sm_clock_mhz_{when}": read(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
        f"gpu_mem_clock_mhz_{when}": read(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM),
        f"gpu_temperature_c_{when}": read(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        f"gpu_other_processes_{when}": None if processes is None else other_processes(processes),
    }


def other_processes(processes: list[Any]) -> int:
    """Compute processes on the GPU besides this one, which holds a CUDA context by then. PIDs are not
    compared: inside a container NVML reports host PIDs, so our own would not match."""
    return max(0, len(processes) - 1)


class NvmlMeter:
    """The total-energy counter (Volta and newer); otherwise instant power polled and integrated."""

    measured = True

    def __init__(self, index: int, nvml: ModuleType | None = None, poll_s: float = 0.05) -> None:
        self.nvml = load_nvml(nvml)
        self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        self.index = index
        self.poll_s = poll_s
        self.rated_power_w = self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.source = "nvml_counter"
        except self.nvml.NVMLError:
            self.source = "nvml_power"
        self._start_mj = 0
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def power_w(self) -> float:
        fi = self.nvml.NVML_FI_DEV_POWER_INSTANT
        try:
            (value,) = self.nvml.nvmlDeviceGetFieldValues(self.handle, [fi])
            if value.nvmlReturn == self.nvml.NVML_SUCCESS:
                return value.value.uiVal / 1000
        except self.nvml.NVMLError:
            pass
        # Fallback: on Ampere and newer this is a one-second average, not instant power.
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._samples.append((time.perf_counter(), self.power_w()))

    def start(self) -> None:
        if self.source == "nvml_counter":
            self._start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return
        self._samples = [(time.perf_counter(), self.power_w())]
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="nvml-poller", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self.source == "nvml_counter":
            return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self._start_mj) / 1000
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._samples.append((time.perf_counter(), self.power_w()))
        return trapezoid(self._samples)

    def device_state(self, when: str) -> dict[str, Any]:
        return device_state(self.nvml, self.handle, when)

    def params(self) -> dict[str, Any]:
        return {"nvml_index": self.index, **({"poll_s": self.poll_s} if self.source == "nvml_power" else {})}

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
            self._thread.join()


def trapezoid(samples: list[tuple[float, float]]) -> float:
    """Joules from (seconds, watts) samples."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))
