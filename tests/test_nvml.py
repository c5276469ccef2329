import types

import pytest

from bench.config import ConfigError, MeterConfig
from bench.meters import open_meter
from bench.meters.nvml import NvmlMeter, device_state, nvml_index, trapezoid


class FakeNVML(types.SimpleNamespace):
    """The slice of the pynvml API the meter uses, with readings the test controls."""

    class NVMLError(Exception):
        pass

    NVML_SUCCESS = 0
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, energy_mj=None, power_mw=250_000, field_ok=True, processes=1):
        super().__init__()
        self.processes = processes
        self.energy_mj = list(energy_mj) if energy_mj is not None else None
        self.power_mw = power_mw
        self.field_ok = field_ok
        self.initialised = False

    def nvmlInit(self):
        self.initialised = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NVMLError("Not Supported")
        return self.energy_mj.pop(0) if len(self.energy_mj) > 1 else self.energy_mj[0]

    def nvmlDeviceGetFieldValues(self, handle, fields):
        assert fields == [self.NVML_FI_DEV_POWER_INSTANT]
        value = types.SimpleNamespace(uiVal=self.power_mw)
        return [types.SimpleNamespace(nvmlReturn=0 if self.field_ok else 3, value=value)]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H200"

    def nvmlSystemGetDriverVersion(self):
        return "570.1"

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return 1980 if clock == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, handle, sensor):
        raise self.NVMLError("Not Supported")

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=1000 + i, usedGpuMemory=0) for i in range(self.processes)]


def test_counter_window_is_the_difference_in_joules():
    meter = NvmlMeter(0, nvml=FakeNVML(energy_mj=[900_000, 1_000_000, 1_250_500]))  # probe, start, stop
    assert meter.source == "nvml_counter" and meter.measured
    meter.start()
    assert meter.stop() == pytest.approx(250.5)


def test_without_counter_instant_power_is_polled_and_integrated():
    fake = FakeNVML(energy_mj=None, power_mw=200_000)
    meter = NvmlMeter(0, nvml=fake, poll_s=0.005)
    assert meter.source == "nvml_power"
    meter.start()
    import time

    t0 = time.perf_counter()
    time.sleep(0.2)
    joules = meter.stop()
    elapsed = time.perf_counter() - t0
    assert joules == pytest.approx(200 * elapsed, rel=0.1)
    assert len(meter._samples) > 10  # the poller really sampled


def test_power_falls_back_when_the_instant_field_is_unsupported():
    meter = NvmlMeter(0, nvml=FakeNVML(energy_mj=None, power_mw=123_000, field_ok=False))
    assert meter.power_w() == pytest.approx(123.0)


def test_trapezoid():
    assert trapezoid([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)]) == pytest.approx(150 + 400)


def test_cuda_visible_devices_maps_torch_index_to_nvml_index(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml_index(1) == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_index(1) == 1


def test_device_state_records_what_is_readable():
    fake = FakeNVML(energy_mj=[0])
    state = device_state(fake, ("handle", 0), "start")
    assert state["gpu_name"] == "NVIDIA H200" and state["gpu_power_limit_w"] == 700.0
    assert state["gpu_sm_clock_mhz_start"] == 1980 and state["gpu_temperature_c_start"] is None
    assert state["gpu_other_processes_start"] == 0  # only this process


def test_other_processes_on_the_gpu_are_counted():
    meter = NvmlMeter(0, nvml=FakeNVML(energy_mj=[0], processes=3))
    assert meter.device_state("end")["gpu_other_processes_end"] == 2
    assert meter.rated_power_w == 700.0


def test_cpu_only_sources_are_refused_on_cuda():
    with pytest.raises(ConfigError, match="meter=rapl .*choose one of: auto, nvml"):
        open_meter(MeterConfig(source="rapl"), "cuda:0", cores_in_use=1)
    with pytest.raises(ConfigError, match="meter=nvml measures an NVIDIA GPU"):
        open_meter(MeterConfig(source="nvml"), "cpu", cores_in_use=1)
