"""Energy meters: one module per source behind one small protocol (docs/protocol.md §1)."""

from __future__ import annotations

import functools
import logging
from typing import Any, Protocol

from bench.config import MeterConfig
from bench.errors import ConfigError, MeterUnavailable

__all__ = ["EnergyMeter", "MeterUnavailable", "open_meter"]

log = logging.getLogger(__name__)
# The meters each kind of device takes (bench.config.METER_SOURCES holds them all).
CPU_METERS = ("auto", "rapl", "estimate", "pyrapl", "zeus")
CUDA_METERS = ("auto", "nvml", "zeus")


class EnergyMeter(Protocol):
    source: str  # the row's energy_source
    measured: bool  # False for a model-based estimate
    rated_power_w: float | None  # the ceiling a window's average power is checked against, where known

    def start(self) -> None:
        """Begin a window (the caller has already synchronised the device)."""

    def stop(self) -> float:
        """End the window; joules consumed since start()."""

    def params(self) -> dict[str, Any]:
        """What a reader needs to interpret the figure (the estimate's model parameters)."""

    def device_state(self, when: str) -> dict[str, Any]:
        """Columns describing the metered device at `when` ("start" or "end"; called once each, around the
        run's work, under the device lock): clocks, temperature, limits, other processes, and at the end the
        flags gathered over the windows. Meters of a CPU have none to offer and return {}."""

    def close(self) -> None: ...


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)  # once per process, not once per run of a sweep


def open_meter(cfg: MeterConfig, device: str, cores_in_use: int, processes: tuple[int, ...] = ()) -> EnergyMeter:
    """The meter for `device`: the named source, or with `auto` the best readable one (logged).

    `processes`: the work is theirs, not this process's (a server): the estimate counts their CPU time. RAPL and
    NVML read the whole package or GPU, which includes them already.
    """
    on_cuda = device.startswith("cuda")
    if cfg.source == "zeus":
        from bench.meters.zeus import ZeusMeter

        try:
            return ZeusMeter(device)
        except MeterUnavailable as e:
            others = [m for m in (CUDA_METERS if on_cuda else CPU_METERS) if m != "zeus"]
            raise ConfigError(f"meter=zeus cannot read device={device!r}: {e}; choose another meter for it: "
                              f"{', '.join(others)}") from e
    if cfg.source in ("rapl", "pyrapl", "estimate") and on_cuda:
        raise ConfigError(
            f"meter={cfg.source} measures or models the CPU, not device={device!r}; choose one of: "
            f"{', '.join(CUDA_METERS)}"
        )
    if cfg.source == "nvml" and not on_cuda:
        raise ConfigError(f"meter=nvml measures an NVIDIA GPU, not device={device!r}; choose one of: "
                          f"{', '.join(CPU_METERS)}")
    try:
        if on_cuda:
            from bench.meters.nvml import NvmlMeter, claim_context, cuda_uuid

            # The context is claimed when the run reads the start state, under the device lock, not here:
            # check() opens a meter too, and a process waiting for the lock must not show on the board.
            return NvmlMeter(cuda_uuid(device), poll_s=cfg.nvml_poll_s, device=device,
                             claim=functools.partial(claim_context, device))
        if cfg.source in ("auto", "rapl"):
            from bench.meters.rapl import RaplMeter

            try:
                return RaplMeter(cfg.rapl_root, cfg.rapl_include_dram, cfg.rapl_max_power_w)
            except MeterUnavailable as e:
                if cfg.source == "rapl":
                    raise
                _warn_once(f"RAPL is not readable ({e}); energy will be an ESTIMATE, not a measurement")
        if cfg.source == "pyrapl":
            from bench.meters.pyrapl import PyRaplMeter

            return PyRaplMeter()
    except MeterUnavailable as e:
        raise ConfigError(f"meter={cfg.source} is not available for device={device!r}: {e}") from e
    from bench.meters.estimate import EstimateMeter, processes_cpu_time

    if processes:
        return EstimateMeter(cfg.estimate_tdp_w, cfg.estimate_socket_cores, cfg.estimate_idle_fraction, cores_in_use,
                             cpu_time=processes_cpu_time(processes),
                             counted=f"process(es) {', '.join(map(str, processes))} (all their threads)")
    return EstimateMeter(cfg.estimate_tdp_w, cfg.estimate_socket_cores, cfg.estimate_idle_fraction, cores_in_use)
