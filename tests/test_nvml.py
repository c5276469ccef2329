import os
import sys
import time
import types

import pytest
import torch

from bench.config import ConfigError, MeterConfig
from bench.errors import MeterUnavailable
from bench.meters import open_meter
from bench.meters.nvml import NvmlMeter, device_state, nvml_uuid, other_processes, trapezoid

BOARD_A = "GPU-11111111-2222-3333-4444-555555555555"
BOARD_B = "GPU-66666666-7777-8888-9999-aaaaaaaaaaaa"
BOARD_C = "GPU-bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
SLICE = "MIG-0a0a0a0a-1b1b-2c2c-3d3d-4e4e4e4e4e4e"


class FakeNVML(types.SimpleNamespace):
    """The slice of the pynvml API the meter uses, with readings the test controls. Boards are listed in
    NVML's (PCI) order; a handle is ("board" | "mig", uuid)."""

    class NVMLError(Exception):
        pass

    NVML_SUCCESS = 0
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, energy_mj=None, power_mw=250_000, field_ok=True, pids=(os.getpid(),),
                 boards=(BOARD_A,), slices=(), mig_mode=0, reasons=0x1, reads_per_update=None):
        super().__init__()
        self.pids = list(pids)
        self.energy_mj = list(energy_mj) if energy_mj is not None else None
        self.power_mw = power_mw
        self.field_ok = field_ok
        self.boards, self.slices, self.mig_mode = list(boards), list(slices), mig_mode
        self.reasons = reasons
        self.reads_per_update = reads_per_update  # a counter that moves once every this many reads
        self.reads = 0

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid in self.boards:
            return ("board", uuid)
        if uuid in self.slices:
            return ("mig", uuid)
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetMigMode(self, handle):
        if self.mig_mode is None:
            raise self.NVMLError("Not Supported")
        return [self.mig_mode, self.mig_mode]

    def nvmlDeviceGetUUID(self, handle):
        return handle[1]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.reads += 1
        if self.reads_per_update:
            return 1_000_000 + 500 * (self.reads // self.reads_per_update)
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

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.reasons

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in self.pids]


def meter(fake, **kwargs):
    return NvmlMeter(BOARD_A, nvml=fake, **kwargs)


def window_of_reads(m, fake, reads):
    """One window during which the poller read the counter at least `reads` times."""
    m.start()
    first = fake.reads
    deadline = time.monotonic() + 10
    while fake.reads - first < reads and time.monotonic() < deadline:
        time.sleep(0.001)
    return m.stop()


# --- the energy figure ---

def test_counter_window_is_the_difference_in_joules():
    # probe, start, stop; a poller slower than the window reads nothing in between
    m = meter(FakeNVML(energy_mj=[900_000, 1_000_000, 1_250_500]), poll_s=10)
    assert m.source == "nvml_counter" and m.measured
    m.start()
    assert m.stop() == pytest.approx(250.5)
    assert m.window_updates == [1]


def test_without_counter_instant_power_is_polled_and_integrated():
    m = meter(FakeNVML(energy_mj=None, power_mw=200_000), poll_s=0.005)
    assert m.source == "nvml_power"
    m.start()
    t0 = time.perf_counter()
    time.sleep(0.2)
    joules = m.stop()
    elapsed = time.perf_counter() - t0
    assert joules == pytest.approx(200 * elapsed, rel=0.1)
    assert len(m._samples) > 10  # the poller really sampled
    assert m.device_state("end")["nvml_window_updates_min"] is None  # no counter to count


def test_power_falls_back_when_the_instant_field_is_unsupported():
    assert meter(FakeNVML(energy_mj=None, power_mw=123_000, field_ok=False)).power_w() == pytest.approx(123.0)


def test_trapezoid():
    assert trapezoid([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)]) == pytest.approx(150 + 400)


# --- which board: by UUID ---

@pytest.mark.parametrize("torch_says, nvml_says", [
    ("bbbbbbbb-cccc-dddd-eeee-ffffffffffff", BOARD_C),  # torch's _CUuuid prints bare hex
    ("BBBBBBBB-CCCC-DDDD-EEEE-FFFFFFFFFFFF", BOARD_C),
    ("GPU-bbbbbbbb-cccc-dddd-eeee-ffffffffffff", BOARD_C),
    ("MIG-0A0A0A0A-1b1b-2c2c-3d3d-4e4e4e4e4e4e", SLICE),
])
def test_torch_uuid_in_nvml_form(torch_says, nvml_says):
    assert nvml_uuid(torch_says) == nvml_says


class CUuuid:
    """Stands in for torch._C._CUuuid: an object whose str() is the bare UUID."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


def fake_torch(monkeypatch, fake, torch_order):
    """torch numbers the devices `torch_order` (what CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER made of them)."""
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(uuid=CUuuid(torch_order[i].partition("-")[2])))


@pytest.mark.parametrize("visible", [f"{BOARD_C},{BOARD_A}", "2,0"])
def test_the_torch_device_is_found_by_uuid_whatever_the_numbering(monkeypatch, visible):
    # NVML's order A, B, C; torch's cuda:0 is C and cuda:1 is A, whether CUDA_VISIBLE_DEVICES names them by
    # UUID or by index. An index-based mapping would read board A (or fail) for cuda:0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fake = FakeNVML(energy_mj=[0], boards=(BOARD_A, BOARD_B, BOARD_C))
    fake_torch(monkeypatch, fake, [BOARD_C, BOARD_A])
    first, second = (open_meter(MeterConfig(), f"cuda:{i}", cores_in_use=1) for i in (0, 1))
    assert first.handle == ("board", BOARD_C) and second.handle == ("board", BOARD_A)
    assert first.params()["gpu_uuid"] == BOARD_C
    assert first.device_state("end")["gpu_uuid"] == BOARD_C


def test_device_order_differing_from_nvml_order(monkeypatch):
    # CUDA_DEVICE_ORDER=FASTEST_FIRST (the default) numbers a faster board B first; NVML keeps PCI order.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNVML(energy_mj=[0], boards=(BOARD_A, BOARD_B))
    fake_torch(monkeypatch, fake, [BOARD_B, BOARD_A])
    assert open_meter(MeterConfig(source="nvml"), "cuda", cores_in_use=1).handle == ("board", BOARD_B)


def test_a_uuid_nvml_does_not_know_is_reported():
    with pytest.raises(MeterUnavailable, match=f"NVML knows no GPU with device='cuda:3'.s UUID {BOARD_B}"):
        NvmlMeter(BOARD_B, nvml=FakeNVML(energy_mj=[0]), device="cuda:3")


# --- MIG slices are refused ---

def refused(match=""):
    return pytest.raises(ConfigError, match=r"device='cuda:0' is a MIG slice \(" + match + r".*not this slice's "
                         r"energy.*Measure on a whole GPU")


def test_mig_device_in_cuda_visible_devices_is_refused(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", SLICE)
    fake = FakeNVML(energy_mj=[0], slices=(SLICE,))
    fake_torch(monkeypatch, fake, [SLICE])
    with refused("CUDA_VISIBLE_DEVICES=MIG-"):
        open_meter(MeterConfig(), "cuda:0", cores_in_use=1)


def test_a_slice_torch_reports_bare_is_refused(monkeypatch):
    # Selected some other way (a container runtime): torch prints the slice's UUID like a board's.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNVML(energy_mj=[0], slices=(SLICE,))
    fake_torch(monkeypatch, fake, [SLICE])
    with refused("NVML knows its UUID as MIG-0a0a0a0a"):
        open_meter(MeterConfig(), "cuda:0", cores_in_use=1)


def test_a_board_in_mig_mode_is_refused(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNVML(energy_mj=[0], mig_mode=1)
    fake_torch(monkeypatch, fake, [BOARD_A])
    with refused("MIG mode is enabled"):
        open_meter(MeterConfig(), "cuda:0", cores_in_use=1)


def test_a_gpu_without_mig_support_is_measured():
    assert meter(FakeNVML(energy_mj=[0], mig_mode=None)).source == "nvml_counter"


# --- counter updates per window ---

def test_counter_updates_are_counted_and_too_few_flagged():
    fake = FakeNVML(reads_per_update=2)
    m = meter(fake, poll_s=0.001)
    window_of_reads(m, fake, 40)
    state = m.device_state("end")
    assert state["nvml_window_updates_min"] >= 19 and state["nvml_few_updates"] is False
    fake.reads_per_update = 5
    window_of_reads(m, fake, 30)  # 30-odd reads, a new value every 5th: 6 to 8 updates
    state = m.device_state("end")
    assert 5 <= state["nvml_window_updates_min"] < 10 and state["nvml_few_updates"] is True
    assert len(m.window_updates) == 2  # every window counts, the idle baseline's included


# --- clock events, temperature, processes ---

def test_device_state_records_what_is_readable():
    state = device_state(FakeNVML(energy_mj=[0]), ("board", BOARD_A), "start")
    assert state["gpu_name"] == "NVIDIA H200" and state["gpu_power_limit_w"] == 700.0
    assert state["gpu_uuid"] == BOARD_A and state["gpu_clock_event_reasons_start"] == "gpu_idle"
    assert state["gpu_sm_clock_mhz_start"] == 1980 and state["gpu_temperature_c_start"] is None
    assert state["gpu_other_processes_start"] == 0  # only this process


def test_throttling_inside_a_window_is_flagged_though_gone_at_the_end():
    fake = FakeNVML(reads_per_update=1, reasons=0x1)
    m = meter(fake, poll_s=0.001)
    assert m.device_state("start")["gpu_clock_event_reasons_start"] == "gpu_idle"
    m.start()
    fake.reasons = 0x4 | 0x40  # power cap and hardware thermal slowdown while the work runs
    while fake.reads < 10:
        time.sleep(0.001)
    fake.reasons = 0x0
    m.stop()
    state = m.device_state("end")
    assert state["gpu_clock_event_reasons_end"] == "none"
    assert state["gpu_thermal_throttled"] is True and state["gpu_power_throttled"] is True


def test_sync_boost_and_idle_are_no_throttling():
    m = meter(FakeNVML(reads_per_update=1, reasons=0x1 | 0x10), poll_s=10)
    m.start()
    m.stop()
    state = m.device_state("end")
    assert state["gpu_clock_event_reasons_end"] == "gpu_idle,sync_boost"
    assert state["gpu_thermal_throttled"] is False and state["gpu_power_throttled"] is False


def test_clock_reasons_under_their_pre_535_name():
    class OldDriver(FakeNVML):
        nvmlDeviceGetCurrentClocksEventReasons = None

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
            return 0x20

    assert device_state(OldDriver(energy_mj=[0]), ("board", BOARD_A), "end")["gpu_clock_event_reasons_end"] == \
        "sw_thermal"


def test_unreadable_clock_reasons_are_unknown_not_unthrottled():
    class NoReasons(FakeNVML):
        def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
            raise self.NVMLError("Not Supported")

    state = meter(NoReasons(energy_mj=[0])).device_state("end")
    assert state["gpu_clock_event_reasons_end"] is None and state["gpu_thermal_throttled"] is None


def test_the_start_check_counts_after_this_process_holds_its_context():
    fake = FakeNVML(energy_mj=[0], pids=[4242])  # a foreign process; ours has no context yet
    m = meter(fake, claim=lambda: fake.pids.append(os.getpid()))
    assert m.device_state("start")["gpu_other_processes_start"] == 1
    assert m.device_state("end")["gpu_other_processes_end"] == 1


def test_other_processes_in_a_container_where_pids_are_the_hosts():
    host_pids = [types.SimpleNamespace(pid=p) for p in (70001, 70002, 70003)]
    assert other_processes(host_pids, pid=12) == 2  # ours not recognisable: one entry is taken as ours
    assert other_processes(host_pids, pid=70002) == 2
    assert other_processes([], pid=12) == 0


def test_open_meter_claims_the_context_on_its_device_only_at_the_start_state(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNVML(energy_mj=[0])
    fake_torch(monkeypatch, fake, [BOARD_A, BOARD_A])
    claimed = []
    monkeypatch.setattr("bench.meters.nvml.claim_context", claimed.append)
    m = open_meter(MeterConfig(), "cuda:1", cores_in_use=1)
    assert claimed == []  # check() opens meters too, before the device lock
    m.device_state("start")
    assert claimed == ["cuda:1"]


def test_cpu_only_sources_are_refused_on_cuda():
    with pytest.raises(ConfigError, match="meter=rapl .*choose one of: auto, nvml"):
        open_meter(MeterConfig(source="rapl"), "cuda:0", cores_in_use=1)
    with pytest.raises(ConfigError, match="meter=nvml measures an NVIDIA GPU"):
        open_meter(MeterConfig(source="nvml"), "cpu", cores_in_use=1)
