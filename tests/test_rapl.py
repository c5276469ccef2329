import os
import pathlib
import time

import pytest

from bench.config import ConfigError, MeterConfig
from bench.meters import MeterUnavailable, open_meter
from bench.meters.rapl import RaplMeter, find_zones

MAX = 1_000_000  # uJ


def zone(root: pathlib.Path, dirname: str, name: str, energy: int = 0, max_range: int | None = MAX) -> pathlib.Path:
    d = root / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    if max_range is not None:
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def set_energy(d: pathlib.Path, value: int) -> None:
    # Atomic like a sysfs read: the poller thread must never see a half-written file.
    tmp = d / ".energy_uj.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, d / "energy_uj")


def test_one_wrap_is_corrected(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", energy=MAX - 100)
    meter = RaplMeter(tmp_path, poll_s=3600)
    meter.start()
    set_energy(pkg, 50)
    assert meter.stop() == pytest.approx(150 / 1e6)


def test_several_wraps_in_one_window_seen_by_polling(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", energy=900_000)
    meter = RaplMeter(tmp_path, poll_s=3600)
    meter.start()
    for value in (100_000, 600_000, 50_000, 400_000):  # two wraps, each seen by a poll
        set_energy(pkg, value)
        meter.sample()
    assert meter.stop() == pytest.approx((100_000 + 100_000 + 500_000 + 450_000 + 350_000) / 1e6)


def test_background_poller_sees_wraps_between_start_and_stop(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", energy=900_000)
    meter = RaplMeter(tmp_path, poll_s=0.005)
    try:
        meter.start()
        for value in (100_000, 600_000, 50_000):
            set_energy(pkg, value)
            time.sleep(0.1)
        assert meter.stop() == pytest.approx((200_000 + 500_000 + 450_000) / 1e6)
    finally:
        meter.close()


def test_multi_die_packages_are_summed(tmp_path):
    dies = [zone(tmp_path, f"intel-rapl:{i}", f"package-0-die-{i}", energy=1000) for i in range(2)]
    meter = RaplMeter(tmp_path, poll_s=3600)
    meter.start()
    set_energy(dies[0], 3000)
    set_energy(dies[1], 6000)
    assert meter.stop() == pytest.approx(7000 / 1e6)
    assert [z.name for z in meter.zones] == ["package-0-die-0", "package-0-die-1"]


def test_nested_zones_and_psys_are_never_summed(tmp_path):
    zone(tmp_path, "intel-rapl:0", "package-0")
    zone(tmp_path, "intel-rapl:0:0", "core")
    zone(tmp_path, "intel-rapl:0:1", "uncore")
    zone(tmp_path, "intel-rapl:0:2", "dram")
    zone(tmp_path, "intel-rapl:1", "psys")
    assert [z.name for z in find_zones(tmp_path)] == ["package-0"]
    assert [z.name for z in find_zones(tmp_path, include_dram=True)] == ["package-0", "dram"]


def test_permission_denied_names_the_file_and_the_fix(tmp_path, monkeypatch):
    zone(tmp_path, "intel-rapl:0", "package-0")
    real_read = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):  # the tests may run as root, where chmod does not deny
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    with pytest.raises(MeterUnavailable) as e:
        RaplMeter(tmp_path)
    message = str(e.value)
    assert str(tmp_path / "intel-rapl:0" / "energy_uj") in message
    assert "udev" in message and "sysfs.conf" in message and "root" in message


def test_missing_max_range_is_a_clear_error(tmp_path):
    zone(tmp_path, "intel-rapl:0", "package-0", max_range=None)
    with pytest.raises(MeterUnavailable, match="max_energy_range_uj.*wraparound"):
        RaplMeter(tmp_path)


def test_delta_still_negative_after_correction_rejects_the_window(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", energy=MAX - 10)
    meter = RaplMeter(tmp_path, poll_s=3600)
    meter.start()
    set_energy(pkg, -5 * MAX)  # impossible reading: a reset counter, a broken driver
    with pytest.raises(RuntimeError, match="window rejected"):
        meter.stop()


def test_poll_period_covers_the_fastest_wrap(tmp_path):
    zone(tmp_path / "small", "intel-rapl:0", "package-0", max_range=100_000_000)  # 100 J: 0.2 s at 500 W
    assert RaplMeter(tmp_path / "small", max_power_w=500).poll_s == pytest.approx(0.1)
    zone(tmp_path / "intel", "intel-rapl:0", "package-0", max_range=262_143_328_850)  # minutes: poll each second
    assert RaplMeter(tmp_path / "intel", max_power_w=500).poll_s == 1.0


def test_auto_uses_rapl_when_readable_and_estimate_otherwise(tmp_path):
    zone(tmp_path / "powercap", "intel-rapl:0", "package-0")
    meter = open_meter(MeterConfig(rapl_root=str(tmp_path / "powercap")), "cpu", cores_in_use=2)
    assert (meter.source, meter.measured) == ("rapl", True)
    meter.close()
    meter = open_meter(MeterConfig(rapl_root=str(tmp_path / "absent")), "cpu", cores_in_use=2)
    assert (meter.source, meter.measured) == ("estimate", False)


def test_naming_an_unavailable_source_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"meter=rapl is not available.*no RAPL zones"):
        open_meter(MeterConfig(source="rapl", rapl_root=str(tmp_path)), "cpu", cores_in_use=2)
