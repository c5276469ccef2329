"""Energy through Zeus's monitor (the `zeus` extra): AMD GPUs, Apple Silicon and Jetson modules, which the project's
own meters do not read, and NVIDIA GPUs and RAPL packages as Zeus reads them (docs/protocol.md §1.7)."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import os
import platform
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator

from bench.errors import ConfigError, MeterUnavailable
from bench.meters.nvml import cuda_uuid, nvml_uuid, open_handle

INSTALL = 'pip install "energy-bench[zeus]"'
# Window names are unique in the process: Zeus's SoC monitor is one object shared by every ZeusMonitor, and it
# refuses a name that is still open.
_WINDOWS = itertools.count()
# (level, message) of what Zeus logged while it looked for devices. It looks once per process (its probes are
# cached), so what it said then explains every later refusal too.
_SAID: list[tuple[int, str]] = []


class _Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        said = (record.levelno, record.getMessage())
        if said not in _SAID:
            _SAID.append(said)


@contextlib.contextmanager
def zeus_log_kept() -> Iterator[None]:
    """Zeus's log lines go to _SAID, not to the console: at INFO it narrates every probe, which would repeat with
    each run of a sweep; what it said explains a refusal, and its warnings go to the row's energy_params."""
    logger = logging.getLogger("zeus")
    handler, level, propagate = _Keep(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def load_zeus() -> ModuleType:
    try:
        return importlib.import_module("zeus")
    except ImportError as e:
        raise ConfigError(f"meter=zeus needs Zeus, which is not installed: {INSTALL}") from e


@dataclass
class Reading:
    """What the meter takes from each of Zeus's window measurements."""

    source: str
    counter: bool  # False: Zeus polls power and integrates it
    gpu: int | None = None  # the GPU's index as Zeus numbers it
    cpus: tuple[int, ...] = ()  # positions in Zeus's CPU list of the RAPL package zones summed
    soc_field: str | None = None  # the field of Zeus's SoC measurement
    rated_power_w: float | None = None
    about: dict[str, Any] = field(default_factory=dict)


def window_joules(measurement: Any, reading: Reading) -> float:
    """Joules of one zeus.monitor Measurement: its GPU and CPU figures are joules, its SoC figures millijoules."""
    if reading.gpu is not None:
        return measurement.gpu_energy[reading.gpu]
    if reading.soc_field is not None:
        return getattr(measurement.soc_energy, reading.soc_field) / 1000
    return sum(measurement.cpu_energy[i] for i in reading.cpus)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvidia_index(gpus: Any, device: str, uuid: str) -> int:
    """Zeus's index of the board torch runs `device` on. Zeus numbers NVIDIA GPUs by NVML index (PCI order) within
    CUDA_VISIBLE_DEVICES, CUDA fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, so the board is found by its
    UUID, as meter=nvml finds it."""
    import zeus.device.gpu.nvidia as zeus_nvidia

    nvml = zeus_nvidia.pynvml
    open_handle(nvml, uuid, device)  # refuses a MIG slice however it shows (§1.6): Zeus only sees MIG- names
    seen = [nvml_uuid(_text(nvml.nvmlDeviceGetUUID(gpu.handle))) for gpu in gpus.gpus]
    if uuid not in seen:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise MeterUnavailable(
            f"torch runs device={device!r} on the board {uuid}, which is not among the GPUs Zeus numbers here "
            f"({', '.join(seen) or 'none'}): Zeus reads CUDA_VISIBLE_DEVICES (here {visible}) as NVML's indices, "
            "in PCI order, and CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID is set; set it")
    return seen.index(uuid)


def gpu_reading(gpus: Any, device: str, board_uuid: Callable[[str], str]) -> Reading:
    from zeus.device.exception import ZeusBaseGPUError
    from zeus.device.gpu.nvidia import NVIDIAGPUs

    if isinstance(gpus, NVIDIAGPUs):
        uuid = board_uuid(device)
        index, source, about = nvidia_index(gpus, device, uuid), "zeus-nvml", {"gpu_uuid": uuid}
    else:  # Zeus maps AMD GPUs by HIP index, as torch numbers them, HIP_/CUDA_VISIBLE_DEVICES applied
        index, source, about = int(device.partition(":")[2] or 0), "zeus-amdsmi", {}
        if index >= len(gpus):
            raise MeterUnavailable(f"Zeus sees {len(gpus)} AMD GPU(s) here, none numbered {index}")
    counter = gpus.supports_get_total_energy_consumption(index)
    if not counter:  # Zeus then polls power, instant or else average: one of them must answer
        try:
            gpus.get_instant_power_usage(index)
        except ZeusBaseGPUError:
            try:
                gpus.get_average_power_usage(index)
            except ZeusBaseGPUError as e:
                raise MeterUnavailable(f"Zeus reads neither an energy counter nor the power of GPU {index}: {e}"
                                       ) from e
    try:
        rated: float | None = gpus.get_power_management_limit(index) / 1000
    except ZeusBaseGPUError:
        rated = None
    return Reading(source, counter, gpu=index, rated_power_w=rated,
                   about={"zeus_gpu_index": index, "gpu_name": _text(gpus.get_name(index)), **about})


def rapl_reading() -> tuple[Reading | None, str]:
    """The package zones, as bench.meters.rapl sums them (psys and nested zones would count joules twice); or None
    and why there are none."""
    from zeus.device import get_cpus
    from zeus.device.cpu import rapl
    from zeus.device.exception import ZeusBaseCPUError

    try:
        cpus = get_cpus()
    except ZeusBaseCPUError as e:
        if not any(os.path.exists(d) for d in (rapl.RAPL_DIR, rapl.CONTAINER_RAPL_DIR)):
            return None, (f"no {rapl.RAPL_DIR} (nor {rapl.CONTAINER_RAPL_DIR}): virtual machines and non-Linux "
                          "hosts have none")
        return None, str(e)
    # A zone served by the Zeus daemon carries no name; the daemon reads the intel-rapl:N zones.
    names = [_text(getattr(getattr(cpu, "rapl_file", None), "name", f"intel-rapl:{cpu.cpu_index}"))
             for cpu in cpus.cpus]
    packages = [i for i, name in enumerate(names) if name.startswith(("package", "intel-rapl"))]
    if not packages:
        return None, f"Zeus found the RAPL zones {', '.join(names) or 'none'}, no package among them"
    return Reading("zeus-rapl", True, cpus=tuple(packages), about={"zones": [names[i] for i in packages]}), ""


def soc_reading(soc: Any) -> Reading:
    """Apple Silicon: the CPU's counters (a CPU run). Jetson: the module's input rail, CPU and GPU alike: which
    subsystems the other rails hold differs between modules (Orin Nano's CPU rail carries the GPU too)."""
    from zeus.device.soc.apple import AppleSilicon

    if isinstance(soc, AppleSilicon):
        reading = Reading("zeus-apple", True, soc_field="cpu_total_mj",
                          about={"field": "cpu_total_mj: the CPU clusters; DRAM, GPU and Neural Engine not included"})
    else:
        reading = Reading("zeus-jetson", False, soc_field="total_energy_mj",
                          about={"field": "total_energy_mj: the rail Zeus names total, the module's input (CPU, "
                                          "GPU, memory and the rest of the module)"})
    available = soc.get_available_metrics()
    if reading.soc_field not in available:
        raise MeterUnavailable(f"Zeus reads {', '.join(sorted(available)) or 'nothing'} on this "
                               f"{type(soc).__name__}, not {reading.soc_field}")
    return reading


def find_reading(device: str, board_uuid: Callable[[str], str]) -> Reading:
    """What Zeus reads for `device`; MeterUnavailable says what it found instead."""
    from zeus.device import get_gpus, get_soc
    from zeus.device.exception import ZeusBaseGPUError
    from zeus.device.soc.common import ZeusSoCInitError
    from zeus.device.soc.jetson import Jetson

    try:
        soc = get_soc()
    except ZeusSoCInitError:
        soc = None
    if device.startswith("cuda"):
        why = ""
        try:
            gpus = get_gpus()
        except ZeusBaseGPUError as e:
            gpus, why = None, str(e)
        except ValueError as e:  # Zeus parses CUDA_VISIBLE_DEVICES as integers
            raise MeterUnavailable(
                f"Zeus reads CUDA_VISIBLE_DEVICES as GPU indices only, and it is "
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r} ({e}): name the GPUs by index") from e
        if gpus is not None and len(gpus):
            return gpu_reading(gpus, device, board_uuid)
        if isinstance(soc, Jetson):
            return soc_reading(soc)
        raise MeterUnavailable(f"Zeus found no GPU ({why or 'its GPU library lists none'}) and no Jetson")
    if soc is not None:
        return soc_reading(soc)
    reading, why = rapl_reading()
    if reading is None:
        raise MeterUnavailable(
            f"Zeus found no CPU energy reading: RAPL: {why}; no SoC (Zeus reads Apple Silicon on macOS arm64 with "
            f"zeus-apple-silicon, a Jetson on Linux aarch64 with /etc/nv_tegra_release; this is {platform.system()} "
            f"{platform.machine()})")
    return reading


class ZeusMeter:
    """One ZeusMonitor confined to the device's reading; each start/stop is one of its windows."""

    measured = True

    def __init__(self, device: str, board_uuid: Callable[[str], str] = cuda_uuid) -> None:
        zeus = load_zeus()
        with zeus_log_kept():
            from zeus.monitor import ZeusMonitor

            try:
                self.reading = find_reading(device, board_uuid)
            except MeterUnavailable as e:
                said = "; ".join(message for _, message in _SAID)
                said = f"; it said: {said}" if said else ""
                raise MeterUnavailable(f"{e} (Zeus {zeus.__version__}{said})") from e
            r = self.reading
            self.monitor = ZeusMonitor(gpu_indices=[] if r.gpu is None else [r.gpu], cpu_indices=list(r.cpus))
        self.source, self.rated_power_w = r.source, r.rated_power_w
        warned = [message for level, message in _SAID if level >= logging.WARNING]
        self._params = {"zeus_version": zeus.__version__,
                        "reading": "energy counter" if r.counter else "power polled by Zeus and integrated",
                        **r.about, **({"zeus_warnings": warned} if warned else {})}
        self._window = ""

    def start(self) -> None:
        self._window = f"energy-bench-{next(_WINDOWS)}"
        # The caller has synchronised the device; Zeus would synchronise torch's device by Zeus's index.
        self.monitor.begin_window(self._window, sync_execution=False)

    def stop(self) -> float:
        return window_joules(self.monitor.end_window(self._window, sync_execution=False), self.reading)

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def device_state(self, when: str) -> dict[str, Any]:
        return {}  # Zeus reads energy and power only: no clocks, throttling or other processes

    def close(self) -> None:
        if self.monitor.power_monitor is not None:
            self.monitor.power_monitor.stop()  # its polling processes
