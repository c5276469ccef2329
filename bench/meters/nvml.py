"""NVIDIA GPU energy through NVML (the `nvidia-ml-py` distribution, module `pynvml`): docs/protocol.md §1.2-1.3,
the board found by UUID and MIG slices refused (§1.6), counter updates and clock events flagged (§5)."""

from __future__ import annotations

import importlib
import os
import threading
import time
from types import ModuleType
from typing import Any, Callable

from bench.errors import MeterUnavailable

# A window in which the counter moved fewer times than this is flagged: one step is then over a tenth of it.
MIN_UPDATES = 10
# NVML's clock-event ("throttle") reason bits (nvmlClocksEventReason*, stable across driver versions).
REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
           0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake",
           0x100: "display_clocks"}
THERMAL = 0x20 | 0x40
POWER = 0x4 | 0x80


def nvml_uuid(torch_uuid: object) -> str:
    """NVML's name for a device: torch prints the UUID bare (8-4-4-4-12 hex digits), NVML as `GPU-<hex>`
    (`MIG-<hex>` for a MIG slice)."""
    text = str(torch_uuid).strip()
    prefix, _, rest = text.partition("-")
    if prefix.upper() in ("GPU", "MIG"):
        return f"{prefix.upper()}-{rest.lower()}"
    return f"GPU-{text.lower()}"


def cuda_uuid(device: str) -> str:
    """The NVML UUID of a torch CUDA device. torch applies CUDA_VISIBLE_DEVICES (indices or UUIDs) and
    CUDA_DEVICE_ORDER when it numbers devices, so the UUID it reports names the board whatever the numbering."""
    import torch

    return nvml_uuid(torch.cuda.get_device_properties(int(device.partition(":")[2] or 0)).uuid)


def claim_context(device: str) -> None:
    """Makes sure this process holds its CUDA context on `device`, so NVML lists it among the board's
    processes and the count of others is right (other_processes)."""
    import torch

    torch.zeros(1, device=device)


def mig_refused(device: str, why: str) -> MeterUnavailable:
    return MeterUnavailable(
        f"device={device!r} is a MIG slice ({why}). NVML's energy counter and power readings belong to the whole "
        "board, every slice's work included, so they are not this slice's energy and the harness will not "
        "charge them to it. Measure on a whole GPU: one with MIG disabled (`sudo nvidia-smi -i <gpu> -mig 0` with "
        "no process on it, then select the GPU by index or GPU- UUID), or another GPU (docs/protocol.md §1.6)")


def open_handle(nvml: ModuleType, uuid: str, device: str) -> Any:
    """The board's handle by UUID; a MIG slice is refused, however it shows."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if any(v.strip().upper().startswith("MIG-") for v in visible.split(",")):
        raise mig_refused(device, f"CUDA_VISIBLE_DEVICES={visible} names a MIG device")
    if uuid.startswith("MIG-"):
        raise mig_refused(device, f"its UUID is {uuid}")
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    except nvml.NVMLError as e:
        # torch prints a slice's UUID bare, like a board's: NVML knows it only with the MIG- prefix.
        try:
            nvml.nvmlDeviceGetHandleByUUID("MIG-" + uuid.partition("-")[2])
        except nvml.NVMLError:
            raise MeterUnavailable(f"NVML knows no GPU with device={device!r}'s UUID {uuid} ({e})") from e
        raise mig_refused(device, f"NVML knows its UUID as MIG-{uuid.partition('-')[2]}") from e
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:
        current = None  # no MIG on this GPU (before Ampere)
    if current == nvml.NVML_DEVICE_MIG_ENABLE:
        raise mig_refused(device, f"MIG mode is enabled on the board {uuid}")
    return handle


def load_nvml(nvml: ModuleType | None = None) -> ModuleType:
    module = nvml or importlib.import_module("pynvml")
    try:
        module.nvmlInit()
    except module.NVMLError as e:
        raise MeterUnavailable(f"NVML did not initialise ({e}); is the NVIDIA driver loaded?") from e
    return module


def clock_event_reasons(nvml: ModuleType, handle: Any) -> int | None:
    """The bitmask of why clocks are below their maximum now; None where unreadable."""
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    read = read or nvml.nvmlDeviceGetCurrentClocksThrottleReasons  # its name before driver 535
    try:
        return int(read(handle))
    except nvml.NVMLError:
        return None


def reason_names(bits: int | None) -> str | None:
    if bits is None:
        return None
    return ",".join(name for bit, name in REASONS.items() if bits & bit) or "none"


def device_state(nvml: ModuleType, handle: Any, when: str) -> dict[str, Any]:
    """Name, UUID, driver and power limit; clocks, temperature, clock-event reasons and other processes
    suffixed with `when` (start or end of a run)."""

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
        "gpu_uuid": read(nvml.nvmlDeviceGetUUID),
        "gpu_driver": nvml.nvmlSystemGetDriverVersion(),
        "gpu_power_limit_w": limit_mw / 1000 if limit_mw is not None else None,
        f"gpu_sm_clock_mhz_{when}": read(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
        f"gpu_mem_clock_mhz_{when}": read(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM),
        f"gpu_temperature_c_{when}": read(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        f"gpu_clock_event_reasons_{when}": reason_names(clock_event_reasons(nvml, handle)),
        f"gpu_other_processes_{when}": None if processes is None else other_processes(processes),
    }


def other_processes(processes: list[Any], pid: int | None = None) -> int:
    """Compute processes on the GPU besides this one, which holds a CUDA context by then (claim_context).
    Inside a container NVML reports host PIDs, so when our PID is not among them, one entry is taken as ours."""
    pid = os.getpid() if pid is None else pid
    others = [p for p in processes if p.pid != pid]
    return len(others) if len(others) < len(processes) else max(0, len(processes) - 1)


class NvmlMeter:
    """The total-energy counter (Volta and newer); otherwise instant power polled and integrated.

    A thread polls during each window, every `poll_s`: the counter, to count its updates (the window's
    joules are still the difference of the readings at start and stop), or the power to integrate; and
    the clock-event reasons, so throttling inside a window is seen, not only at the run's ends."""

    measured = True

    def __init__(self, uuid: str, nvml: ModuleType | None = None, poll_s: float = 0.05, device: str = "cuda",
                 claim: Callable[[], None] = lambda: None) -> None:
        self.nvml = load_nvml(nvml)
        self.handle = open_handle(self.nvml, uuid, device)
        self.uuid = uuid
        self.poll_s = poll_s
        self.claim = claim
        self.rated_power_w = self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.source = "nvml_counter"
        except self.nvml.NVMLError:
            self.source = "nvml_power"
        self._samples: list[tuple[float, float]] = []  # (seconds, counter mJ or watts) of the open window
        self.window_updates: list[int] = []  # counter updates seen in each window closed so far
        self._reasons_seen: int | None = None  # every clock-event reason seen since the run started
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

    def energy_mj(self) -> int:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def _read(self) -> float:
        return self.energy_mj() if self.source == "nvml_counter" else self.power_w()

    def _note_reasons(self) -> None:
        bits = clock_event_reasons(self.nvml, self.handle)
        if bits is not None:
            self._reasons_seen = (self._reasons_seen or 0) | bits

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._samples.append((time.perf_counter(), self._read()))
            self._note_reasons()

    def start(self) -> None:
        self._samples = [(time.perf_counter(), self._read())]
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="nvml-poller", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._samples.append((time.perf_counter(), self._read()))
        if self.source == "nvml_counter":
            self.window_updates.append(len({v for _, v in self._samples}) - 1)
            return (self._samples[-1][1] - self._samples[0][1]) / 1000
        return trapezoid(self._samples)

    def device_state(self, when: str) -> dict[str, Any]:
        if when == "start":
            self.claim()  # before counting the board's processes, so ours is among them
        state = device_state(self.nvml, self.handle, when)
        self._note_reasons()
        if when != "end":
            return state
        seen, counting = self._reasons_seen, self.source == "nvml_counter" and self.window_updates
        fewest = min(self.window_updates) if counting else None
        return {**state, "nvml_window_updates_min": fewest,
                "nvml_few_updates": fewest < MIN_UPDATES if fewest is not None else None,
                "gpu_thermal_throttled": None if seen is None else bool(seen & THERMAL),
                "gpu_power_throttled": None if seen is None else bool(seen & POWER)}

    def params(self) -> dict[str, Any]:
        return {"gpu_uuid": self.uuid, "poll_s": self.poll_s}

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
            self._thread.join()


def trapezoid(samples: list[tuple[float, float]]) -> float:
    """Joules from (seconds, watts) samples."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))
