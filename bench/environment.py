"""What machine and software produced a row (docs/protocol.md §9)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction sets that decide which CPU kernels run (and so how backends and precisions compare on a host).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> str:
    """Which of CPU_FLAGS this CPU has, space-separated (from /proc/cpuinfo; `unknown` where it cannot be read)."""
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    present = set(line.split(":", 1)[1].split())
    return " ".join(f for f in CPU_FLAGS if f in present) or "none"


def device_name(device: str | None) -> str | None:
    """The machine identity of a row: the GPU's name for a CUDA device, the CPU model for the CPU."""
    if device == "cpu":
        return cpu_model()
    if device and device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(int(device.partition(":")[2] or 0))
    return None  # a run that failed before its device was resolved


def git_commit() -> str | None:
    """The project's commit, with `-dirty` when the tree has uncommitted changes; None for an installed copy."""
    if not (PROJECT_ROOT / ".git").exists():  # site-packages: a repository around it (a venv in it) is not ours
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def capture() -> dict[str, Any]:
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
        "bench_version": _version("energy-bench"),
        "git_commit": git_commit(),
    }
