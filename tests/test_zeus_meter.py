"""meter=zeus: its refusal where Zeus reads nothing (this kind of machine, for real), and the meter over Zeus's own
device layer on fake hardware: the fake NVML of tests/test_nvml.py under Zeus's NVIDIA classes, a powercap tree
under its RAPL classes, a stand-in for the zeus-apple-silicon library under its Apple class."""

import sys
import types
from pathlib import Path

import pytest
import zeus
import zeus.device.cpu as zeus_cpu
import zeus.device.cpu.rapl as zeus_rapl
import zeus.device.gpu as zeus_gpu
import zeus.device.gpu.nvidia as zeus_nvidia
import zeus.device.soc as zeus_soc
import zeus.device.soc.apple as zeus_apple
from zeus.device.soc.jetson import JetsonMeasurement
from zeus.monitor.energy import Measurement

from bench.config import BenchConfig, ConfigError, MeterConfig, validate_values
from bench.errors import MeterUnavailable
from bench.meters import open_meter
from bench.meters.zeus import Reading, ZeusMeter, window_joules
from tests.conftest import run_bench
from tests.test_nvml import BOARD_A, BOARD_B, FakeNVML

# Where Zeus finds RAPL (see zeus.device.cpu.rapl) or Apple Silicon, the refusal below does not happen.
ZEUS_MAY_READ_THE_CPU = any(Path(d).exists() for d in (zeus_rapl.RAPL_DIR, zeus_rapl.CONTAINER_RAPL_DIR)) or (
    sys.platform == "darwin")


# --- choosing it ---

def test_zeus_is_a_meter_choice_and_a_bad_name_lists_it():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=["meter=zeus"]))
    assert cfg.meter.source == "zeus"
    with pytest.raises(ConfigError, match=r"meter.source='joulemeter' is not valid; choose one of: auto, rapl, nvml, "
                                          r"estimate, pyrapl, zeus"):
        validate_values(BenchConfig(meter=MeterConfig(source="joulemeter")))


def test_other_meters_refused_on_a_device_list_zeus_among_the_choices():
    with pytest.raises(ConfigError, match="choose one of: auto, rapl, estimate, pyrapl, zeus$"):
        open_meter(MeterConfig(source="nvml"), "cpu", cores_in_use=1)
    with pytest.raises(ConfigError, match="choose one of: auto, nvml, zeus$"):
        open_meter(MeterConfig(source="rapl"), "cuda:0", cores_in_use=1)


def test_without_zeus_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeus", None)  # what `import zeus` meets where it is not installed
    with pytest.raises(ConfigError, match=r'meter=zeus needs Zeus, which is not installed: '
                                          r'pip install "energy-bench\[zeus\]"'):
        open_meter(MeterConfig(source="zeus"), "cpu", cores_in_use=1)


# --- where Zeus reads nothing: the real refusal ---

@pytest.mark.skipif(ZEUS_MAY_READ_THE_CPU, reason="Zeus may read this machine's CPU")
def test_the_cpu_is_refused_naming_the_device_what_zeus_found_and_the_choices():
    with pytest.raises(ConfigError) as refused:
        open_meter(MeterConfig(source="zeus"), "cpu", cores_in_use=1)
    message = str(refused.value)
    assert message.startswith("meter=zeus cannot read device='cpu': Zeus found no CPU energy reading: RAPL: no "
                              f"{zeus_rapl.RAPL_DIR} (nor {zeus_rapl.CONTAINER_RAPL_DIR})")
    assert "no SoC (Zeus reads Apple Silicon on macOS arm64" in message and "a Jetson on Linux aarch64" in message
    assert f"(Zeus {zeus.__version__}" in message
    assert message.endswith("; choose another meter for it: auto, rapl, estimate, pyrapl")


def test_without_a_gpu_zeus_can_read_cuda_is_refused():
    try:
        zeus_gpu.get_gpus()
    except zeus_gpu.ZeusGPUInitError:
        pass
    else:
        pytest.skip("Zeus reads a GPU here")
    with pytest.raises(ConfigError, match=r"(?s)^meter=zeus cannot read device='cuda:0': Zeus found no GPU \(.*\) "
                                          r"and no Jetson .*; choose another meter for it: auto, nvml$"):
        open_meter(MeterConfig(source="zeus"), "cuda:0", cores_in_use=1)


@pytest.mark.slow
@pytest.mark.skipif(ZEUS_MAY_READ_THE_CPU, reason="Zeus may read this machine's CPU")
def test_the_command_line_refuses_before_any_work_without_zeus_chatter(tmp_path):
    done = run_bench("meter=zeus", "device=cpu", f"results_dir={tmp_path}")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: meter=zeus cannot read device='cpu': Zeus found no CPU")
    # Zeus's INFO lines (one per probe) are kept for the message, not logged: no line from a zeus logger.
    assert "][zeus" not in done.stderr + done.stdout
    assert not list(tmp_path.rglob("*.parquet"))


# --- Zeus's NVIDIA classes over the fake NVML ---

class ZeusNVML(FakeNVML):
    """The fake NVML with what Zeus's NVIDIA classes call besides the meter's: boards by index, the architecture,
    and one energy counter per board (mJ readings, one taken per read, the last repeated)."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_DEVICE_ARCH_VOLTA = 7

    def __init__(self, counters, arch=9, **kwargs):
        super().__init__(boards=tuple(counters), **kwargs)
        self.counters = {uuid: list(readings) for uuid, readings in counters.items()}
        self.arch = arch

    def nvmlDeviceGetCount(self):
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("board", self.boards[index])

    def nvmlDeviceGetC2cModeInfoV(self, handle):  # not a Grace Hopper
        error = self.NVMLError("Not Supported")
        error.value = self.NVML_ERROR_NOT_SUPPORTED
        raise error

    def nvmlDeviceGetArchitecture(self, handle):
        return self.arch

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        readings = self.counters[handle[1]]
        return readings.pop(0) if len(readings) > 1 else readings[0]

    def nvmlShutdown(self):
        pass


@pytest.fixture
def fresh_zeus(monkeypatch):
    """Zeus's device singletons emptied for one test, restored after it."""
    for module, name in ((zeus_gpu, "_gpus"), (zeus_cpu, "_cpus"), (zeus_soc, "_soc")):
        monkeypatch.setattr(module, name, None)
    return monkeypatch


def on_nvidia(monkeypatch, fake):
    """Zeus's NVIDIA layer answered by `fake`: what get_gpus() builds when NVML initialises."""
    monkeypatch.setattr(zeus_nvidia, "pynvml", fake)
    monkeypatch.setattr(zeus_gpu, "nvml_is_available", lambda: True)
    return fake


def test_a_gpu_window_is_the_counter_difference_of_the_board_torch_runs_on(fresh_zeus):
    # Two boards; torch's cuda:0 is the second one in NVML's order (CUDA orders fastest first).
    on_nvidia(fresh_zeus, ZeusNVML({BOARD_A: [5_000_000], BOARD_B: [1_000_000, 1_250_500, 1_250_500, 1_400_500]}))
    meter = ZeusMeter("cuda:0", board_uuid=lambda device: BOARD_B)
    assert (meter.source, meter.measured, meter.rated_power_w) == ("zeus-nvml", True, 700.0)
    meter.start()
    assert meter.stop() == pytest.approx(250.5)
    meter.start()
    assert meter.stop() == pytest.approx(150.0)
    params = meter.params()
    assert params["zeus_version"] == zeus.__version__ and params["reading"] == "energy counter"
    assert (params["zeus_gpu_index"], params["gpu_uuid"], params["gpu_name"]) == (1, BOARD_B, "NVIDIA H200")
    assert meter.device_state("start") == {}
    meter.close()


def test_cuda_visible_devices_indices_are_followed(fresh_zeus):
    fresh_zeus.setenv("CUDA_VISIBLE_DEVICES", "1")
    on_nvidia(fresh_zeus, ZeusNVML({BOARD_A: [0], BOARD_B: [2_000, 9_000]}))
    meter = ZeusMeter("cuda:0", board_uuid=lambda device: BOARD_B)
    assert meter.params()["zeus_gpu_index"] == 0  # the only GPU Zeus numbers
    meter.start()
    assert meter.stop() == pytest.approx(7.0)


def test_a_board_zeus_does_not_number_is_refused_with_the_fix(fresh_zeus):
    # CUDA's device 0 under CUDA_VISIBLE_DEVICES=0 is the fastest board, B; Zeus takes 0 as NVML's first, A.
    fresh_zeus.setenv("CUDA_VISIBLE_DEVICES", "0")
    on_nvidia(fresh_zeus, ZeusNVML({BOARD_A: [0], BOARD_B: [0]}))
    with pytest.raises(MeterUnavailable, match=f"board {BOARD_B}, which is not among the GPUs Zeus numbers here "
                                               f"\\({BOARD_A}\\).*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        ZeusMeter("cuda:0", board_uuid=lambda device: BOARD_B)


def test_uuids_in_cuda_visible_devices_are_refused(fresh_zeus):
    fresh_zeus.setenv("CUDA_VISIBLE_DEVICES", BOARD_B)
    on_nvidia(fresh_zeus, ZeusNVML({BOARD_A: [0], BOARD_B: [0]}))
    with pytest.raises(MeterUnavailable, match="Zeus reads CUDA_VISIBLE_DEVICES as GPU indices only, and it is "
                                               f"'{BOARD_B}'"):
        ZeusMeter("cuda:0", board_uuid=lambda device: BOARD_B)


def test_a_board_in_mig_mode_is_refused_as_meter_nvml_refuses_it(fresh_zeus):
    on_nvidia(fresh_zeus, ZeusNVML({BOARD_A: [0]}, mig_mode=1))
    with pytest.raises(MeterUnavailable, match="is a MIG slice .*MIG mode is enabled"):
        ZeusMeter("cuda:0", board_uuid=lambda device: BOARD_A)


# --- Zeus's RAPL classes over a powercap tree ---

def zone(path, name, energy_uj, max_uj=262_143_328_850):
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path / "energy_uj"


@pytest.fixture
def powercap(fresh_zeus, tmp_path):
    """A package with its dram subzone and a psys zone, where Zeus looks for RAPL."""
    root = tmp_path / "intel-rapl"
    files = {"package-0": zone(root / "intel-rapl:0", "package-0", 1_000_000),
             "dram": zone(root / "intel-rapl:0" / "intel-rapl:0:0", "dram", 500_000),
             "psys": zone(root / "intel-rapl:1", "psys", 7_000_000)}
    fresh_zeus.setattr(zeus_rapl, "RAPL_DIR", str(root))
    zeus_rapl.rapl_is_available.cache_clear()  # it answered for the real machine
    yield files
    zeus_rapl.rapl_is_available.cache_clear()


def test_a_cpu_window_sums_the_package_zones_only(powercap):
    meter = ZeusMeter("cpu")
    assert (meter.source, meter.rated_power_w) == ("zeus-rapl", None)
    assert meter.params()["zones"] == ["package-0"] and meter.params()["reading"] == "energy counter"
    meter.start()
    powercap["package-0"].write_text("3500000\n")  # +2.5 J
    powercap["dram"].write_text("1500000\n")  # +1 J: not a package
    powercap["psys"].write_text("17000000\n")  # +10 J: the platform, packages included
    assert meter.stop() == pytest.approx(2.5)


# --- Zeus's Apple Silicon class over a stand-in for zeus-apple-silicon ---

APPLE_FIELDS = ("cpu_total_mj", "efficiency_cores_mj", "performance_cores_mj", "efficiency_cluster_mj",
                "performance_cluster_mj", "efficiency_core_manager_mj", "performance_core_manager_mj", "dram_mj",
                "gpu_mj", "gpu_sram_mj", "ane_mj")


class AppleEnergyMonitor:
    """zeus_apple_silicon.AppleEnergyMonitor (IOReport's counters on macOS) with cumulative mJ the test sets."""

    def __init__(self):
        self.now = {"cpu_total_mj": 10_000, "dram_mj": 3_000, "gpu_mj": 500}
        self.open = {}

    def metrics(self, values):
        return types.SimpleNamespace(**{name: values.get(name) for name in APPLE_FIELDS})

    def get_cumulative_energy(self):
        return self.metrics(self.now)

    def begin_window(self, key, restart=False):
        assert key not in self.open, f"window {key} is already open"
        self.open[key] = dict(self.now)

    def end_window(self, key):
        start = self.open.pop(key)
        return self.metrics({name: self.now[name] - start[name] for name in self.now})


@pytest.fixture
def apple(fresh_zeus):
    monitor = AppleEnergyMonitor()
    fresh_zeus.setattr(zeus_apple, "zeus_apple_silicon", types.SimpleNamespace(AppleEnergyMonitor=lambda: monitor))
    fresh_zeus.setattr(zeus_soc, "apple_silicon_is_available", lambda: True)
    return monitor


def test_on_apple_silicon_a_cpu_window_is_the_cpu_counters_and_windows_never_share_a_name(apple):
    # The check's meter and the run's share Zeus's one SoC monitor: their windows must not collide.
    first, second = ZeusMeter("cpu"), ZeusMeter("cpu")
    assert first.source == "zeus-apple" and first.params()["field"].startswith("cpu_total_mj")
    first.start()
    second.start()
    apple.now["cpu_total_mj"] += 4_200
    apple.now["gpu_mj"] += 9_999  # the on-chip GPU is not the CPU
    assert first.stop() == pytest.approx(4.2)
    apple.now["cpu_total_mj"] += 800
    assert second.stop() == pytest.approx(5.0)
    first.start()
    assert first.stop() == 0
    assert apple.open == {}


# --- Jetson: the arithmetic on Zeus's own measurement ---

def test_a_jetson_window_is_the_module_input_rail_in_joules():
    measurement = Measurement(time=2.0, gpu_energy={},
                              soc_energy=JetsonMeasurement(cpu_energy_mj=400.0, gpu_energy_mj=900.0,
                                                           total_energy_mj=3_000.0))
    assert window_joules(measurement, Reading("zeus-jetson", False, soc_field="total_energy_mj")) == 3.0
