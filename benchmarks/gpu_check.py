"""GPU check: does the harness run and measure right on this CUDA machine? One script, about four minutes.

    python benchmarks/gpu_check.py [--device cuda:0] [--out DIR]

Through the harness's own API (`bench.run.run`, configurations composed from conf/ like the command line),
offline, with random weights and a short profile, it runs:

  - bert-base fp32, bf16 and fp16 at batch 1, 8 and 32 (PyTorch);
  - bert-base on ONNX Runtime's CUDA provider, fp32, IO binding (skipped, saying so, without onnxruntime-gpu);
  - bert-base torchao int8 weight-only (skipped without torchao);
  - bert-base with 2:4 sparsity in fp16;
  - a llama-1b generate request (32 prompt tokens, 16 new);

and compares NVML's energy counter with polled power integrated over the same ~10 s of a busy GPU (a matmul
loop): the two should agree within 2%. With Zeus installed (`pip install "energy-bench[zeus]"`), it opens
meter=zeus and meter=nvml on one more such window: their joules should agree within 1% (skipped, saying so,
without Zeus). It prints one table (configuration, status, p50 latency, energy per inference or output token,
energy source, notes: flags, reasons, errors) and exits 1 if anything failed or was invalid, 2 at once without
CUDA. Rows go to DIR (default results/gpu_check/<time>/), one directory per run.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

AGREEMENT = 0.02  # counter and polled power within this relative difference
ZEUS_AGREEMENT = 0.01  # meter=zeus and meter=nvml on one window: both read the counter on Volta and newer
BUSY_S = 10.0
WARM_S = 2.0  # of matmuls before sampling: power ramps up over the first second or so
POLL_S = 0.01  # the check polls faster than the meter (50 ms): ten seconds of it cost nothing

# Random weights need no hub and no eval. The quick profile, with windows and idle segments of 2 s (about 20
# counter updates each, so none sits at the counter's resolution), 3 windows at least and 10 s at most: about
# 15 s a run, 13 runs, model loads and one ONNX export in about four minutes.
COMMON = ["model.weights=random", "eval=none", "profile=quick", "profile.idle_s_cuda=4.0", "profile.idle_segments=2",
          "profile.min_window_s_cuda=2.0", "profile.min_windows=3", "profile.max_seconds=10.0"]
BERT = ["model=bert-base", *COMMON]
CHECKS: list[tuple[str, list[str], str | None]] = [
    *[(f"bert-base {quant} batch {batch}", [*BERT, f"quant={quant}", f"batch_size={batch}"], None)
      for quant in ("fp32", "bf16", "fp16") for batch in (1, 8, 32)],
    ("bert-base onnxruntime-cuda fp32 batch 8", [*BERT, "backend=onnxruntime", "quant=fp32", "batch_size=8"],
     "onnxruntime-gpu"),
    ("bert-base int8-wo batch 8", [*BERT, "quant=int8-wo", "batch_size=8"], "torchao"),
    ("bert-base 2:4 fp16 batch 8", [*BERT, "prune=semi-structured-2of4", "quant=fp16", "batch_size=8"], None),
    ("llama-1b generate bf16 32+16", ["model=llama-1b", "scenario=generate", *COMMON, "quant=bf16", "batch_size=1",
                                      "scenario.prompt_len=32", "scenario.new_tokens=16",
                                      "scenario.prompt_source=random"], None),
]
COUNTER_CHECK = "nvml counter vs polled power"
ZEUS_CHECK = "zeus meter vs nvml meter"
HEADINGS = ("configuration", "status", "p50 ms", "energy", "energy_source", "notes")


def missing(need: str | None) -> str | None:
    """Why a check cannot run here (an optional package absent), or None."""
    if need == "torchao" and importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install 'energy-bench[gpu]')"
    if need == "zeus" and importlib.util.find_spec("zeus") is None:
        return "zeus is not installed (pip install 'energy-bench[zeus]')"
    if need == "onnxruntime-gpu":
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime-gpu is not installed (onnxruntime has no CUDAExecutionProvider)"
    return None


def compose(overrides: list[str]) -> Any:
    """The BenchConfig the command line `python -m bench <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from bench.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


# --- the counter against polled power ---

def integrate(samples: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Joules of (seconds, watts) samples over [t0, t1], power interpolated linearly at both ends."""
    import numpy as np

    from bench.meters.nvml import trapezoid

    times, watts = [t for t, _ in samples], [w for _, w in samples]
    inside = [(t, w) for t, w in samples if t0 < t < t1]
    return trapezoid([(t0, float(np.interp(t0, times, watts))), *inside, (t1, float(np.interp(t1, times, watts)))])


def counter_vs_power(counter: list[tuple[float, float]], power: list[tuple[float, float]]) -> tuple[float, float]:
    """(joules by the counter, joules by polled power) over one span: from the counter's first update seen to its
    last. Between updates the counter's value is stale, at an update it is current; each update is seen within
    one poll of when it happened, at both ends alike."""
    changes = [i for i in range(1, len(counter)) if counter[i][1] != counter[i - 1][1]]
    if len(changes) < 2:
        raise ValueError(f"the energy counter moved {len(changes)} time(s) in {len(counter)} readings: "
                         "nothing to compare")
    (t0, e0), (t1, e1) = counter[changes[0]], counter[changes[-1]]
    return (e1 - e0) / 1000, integrate(power, t0, t1)


def agreement(counter_j: float, polled_j: float) -> dict[str, Any]:
    """The check's line: status and notes from the two figures."""
    difference = (polled_j - counter_j) / counter_j
    return {"configuration": COUNTER_CHECK, "status": "ok" if abs(difference) <= AGREEMENT else "failed",
            "energy": f"{counter_j:.4g} J", "energy_source": "nvml_counter",
            "notes": f"polled power {polled_j:.4g} J, {difference:+.2%} (limit ±{AGREEMENT:.0%})"}


def matmul_loop(device: str) -> Callable[[float], None]:
    """Back-to-back bf16 matmuls for a given number of seconds: a GPU busy at full power."""
    import torch

    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))

    def matmuls(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(20):
                a @ b
            torch.cuda.synchronize(device)

    return matmuls


def busy_samples(device: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]], str]:
    """Counter (mJ) and power (W) readings every POLL_S over BUSY_S of back-to-back matmuls; which power."""
    from bench.config import MeterConfig
    from bench.meters import open_meter

    meter = open_meter(MeterConfig(source="nvml"), device, cores_in_use=1)
    nvml = meter.nvml
    try:
        (field,) = nvml.nvmlDeviceGetFieldValues(meter.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
        instant = field.nvmlReturn == nvml.NVML_SUCCESS
    except nvml.NVMLError:
        instant = False
    which = "instant power field" if instant else "nvmlDeviceGetPowerUsage (a 1 s average on Ampere and newer)"
    matmuls = matmul_loop(device)
    counter: list[tuple[float, float]] = []
    power: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(POLL_S):
            counter.append((time.perf_counter(), meter.energy_mj()))
            power.append((time.perf_counter(), meter.power_w()))

    matmuls(WARM_S)
    thread = threading.Thread(target=sample, name="gpu-check-poller", daemon=True)
    thread.start()
    matmuls(BUSY_S)
    stop.set()
    thread.join()
    meter.close()
    return counter, power, which


def check_counter(device: str) -> dict[str, Any]:
    try:
        counter, power, which = busy_samples(device)
        line = agreement(*counter_vs_power(counter, power))
        line["notes"] += f"; {which}, polled every {POLL_S * 1000:.0f} ms"
        return line
    except Exception as e:  # a check reports, it does not stop the others
        return {"configuration": COUNTER_CHECK, "status": "failed", "notes": f"{type(e).__name__}: {e}"}


# --- meter=zeus against meter=nvml ---

def zeus_agreement(zeus_j: float, nvml_j: float, source: str) -> dict[str, Any]:
    """The check's line: meter=zeus's joules (read by `source`) against meter=nvml's over the same window."""
    difference = (zeus_j - nvml_j) / nvml_j
    return {"configuration": ZEUS_CHECK, "status": "ok" if abs(difference) <= ZEUS_AGREEMENT else "failed",
            "energy": f"{zeus_j:.4g} J", "energy_source": source,
            "notes": f"meter=nvml {nvml_j:.4g} J, {difference:+.2%} (limit ±{ZEUS_AGREEMENT:.0%})"}


def zeus_and_nvml(device: str) -> tuple[float, float, str]:
    """(meter=zeus's joules, meter=nvml's, Zeus's source) over one window of BUSY_S of matmuls. The windows open
    and close one right after the other, in the same order, so both span the same work."""
    from bench.config import MeterConfig
    from bench.meters import open_meter

    meters = [open_meter(MeterConfig(source=source), device, cores_in_use=1) for source in ("zeus", "nvml")]
    try:
        matmuls = matmul_loop(device)
        matmuls(WARM_S)
        for meter in meters:
            meter.start()
        matmuls(BUSY_S)
        zeus_j, nvml_j = (meter.stop() for meter in meters)
    finally:
        for meter in meters:
            meter.close()
    return zeus_j, nvml_j, meters[0].source


def check_zeus(device: str) -> dict[str, Any]:
    if reason := missing("zeus"):
        return {"configuration": ZEUS_CHECK, "status": "skipped", "notes": reason}
    try:
        return zeus_agreement(*zeus_and_nvml(device))
    except Exception as e:  # a check reports, it does not stop the others
        return {"configuration": ZEUS_CHECK, "status": "failed", "notes": f"{type(e).__name__}: {e}"}


# --- harness runs ---

FLAGS = (("nvml_few_updates", "few counter updates"), ("gpu_thermal_throttled", "thermal throttling"),
         ("gpu_power_throttled", "power throttling"), ("energy_cv_high", "high energy CV"),
         ("cpu_contended", "CPU contended"))


def present(value: Any) -> bool:
    return value is not None and value == value  # NaN is missing


def notes(row: dict[str, Any]) -> str:
    """What a reader of the table must know about a row: why it failed or is invalid, its flags."""
    said = []
    if row.get("status") == "failed":
        said.append(f"{row.get('error_type')}: {row.get('error_message')}")
    if present(row.get("invalid_reasons")):
        said.append(str(row["invalid_reasons"]))
    said += [name for column, name in FLAGS if row.get(column) is True]
    if present(row.get("nvml_window_updates_min")):
        said.append(f"min {int(row['nvml_window_updates_min'])} counter updates/window")
    if row.get("ci_target_met") is False:
        said.append("interval target not met")
    if present(row.get("gpu_other_processes_end")) and row["gpu_other_processes_end"]:
        said.append(f"{int(row['gpu_other_processes_end'])} other GPU process(es)")
    if row.get("status") == "ok" and row.get("energy_source") not in (None, "nvml_counter"):
        said.append(f"energy from {row.get('energy_source')}, not the counter")
    return "; ".join(said)


def line_of(label: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row of the harness as a line of the table."""
    from bench.digits import fmt, with_interval

    axis, energy = row.get("energy_axis"), "-"
    if axis and present(row.get(axis)):
        low, high = row.get(f"{axis}_ci_low"), row.get(f"{axis}_ci_high")
        value, low, high = with_interval(row[axis], low, high, estimate=row.get("energy_measured") is False)
        energy = f"{value} J/{row.get('energy_unit', '?')}" + (f" [{low}, {high}]" if low != "-" else "")
    return {"configuration": label, "status": row.get("status", "?"), "p50_ms": fmt(row.get("latency_ms_p50")),
            "energy": energy, "energy_source": row.get("energy_source") or "-", "notes": notes(row)}


def run_check(label: str, overrides: list[str], need: str | None, device: str, out: Path) -> dict[str, Any]:
    if reason := missing(need):
        return {"configuration": label, "status": "skipped", "notes": reason}
    from bench.run import run

    try:
        cfg = compose([*overrides, f"device={device}", f"results_dir={out}"])
        return line_of(label, run(cfg, out / re.sub(r"[^A-Za-z0-9.-]+", "_", label)))
    except Exception as e:  # ConfigError before any work, or a bug: a failed line, and on to the next
        return {"configuration": label, "status": "failed", "notes": f"{type(e).__name__}: {e}"}
    finally:
        import torch

        torch.cuda.empty_cache()


# --- the table ---

def table(lines: list[dict[str, Any]]) -> str:
    """One text table, columns padded to their widest cell; notes last, unpadded."""
    keys = ("configuration", "status", "p50_ms", "energy", "energy_source", "notes")
    cells = [list(HEADINGS)] + [[str(line.get(k) or "-") if k != "notes" else str(line.get(k) or "")
                                 for k in keys] for line in lines]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]).rstrip() for row in cells)


def failed(lines: list[dict[str, Any]]) -> list[str]:
    return [line["configuration"] for line in lines if line["status"] not in ("ok", "skipped")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0", help="CUDA device to check (default cuda:0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the rows (default results/gpu_check/<time>)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False); this check "
              "needs an NVIDIA GPU, its driver and a CUDA build of torch", file=sys.stderr)
        return 2
    out = args.out or ROOT / "results" / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check on {torch.cuda.get_device_name(args.device)} ({args.device}); rows in {out}", flush=True)
    t0 = time.perf_counter()
    lines: list[dict[str, Any]] = []
    for check in (check_counter, check_zeus):
        lines.append(check(args.device))
        print(table(lines[-1:]).splitlines()[-1], flush=True)
    for label, overrides, need in CHECKS:
        lines.append(run_check(label, overrides, need, args.device, out))
        print(table(lines[-1:]).splitlines()[-1], flush=True)
    elapsed = time.perf_counter() - t0
    report = table(lines)
    (out / "gpu_check.txt").write_text(report + "\n")
    print(f"\n{report}\n\n{elapsed:.0f} s in all" + (" (sized for 300 s: the machine or the protocol is slower "
                                                      "than expected)" if elapsed > 300 else ""))
    if bad := failed(lines):
        print(f"FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
