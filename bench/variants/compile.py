"""torch.compile variants (compile=, backend=pytorch): the variant compiled before anything is measured."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
from typing import Any

import torch
from torch._dynamo.utils import counters

from bench.errors import ConfigError

log = logging.getLogger(__name__)
# Modes whose compiled code replays CUDA graphs: recorded on the call after the first (cudagraph trees warm up
# first), replayed from the third. On the CPU they compile as `default` does.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would call (its config.cpp.cxx: $CXX, else g++) where one is on PATH."""
    from torch._inductor import config

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    return next((shutil.which(name) for name in names if name and shutil.which(name)), None)


def check_available(mode: str, device: str) -> None:
    """ConfigError, before any work, when this machine lacks what inductor needs to compile for `device`."""
    if mode == "none":
        return
    # Inductor compiles C++ for CPU kernels; on CUDA, Triton builds its kernel launchers with the system C compiler
    # (which Debian's g++ package brings along).
    if cpp_compiler() is None:
        raise ConfigError(f"compile={mode!r} needs a C++ compiler for torch.compile's inductor and none was found "
                          "(g++, or $CXX): install it (Debian/Ubuntu: apt-get install g++), or use compile=none")
    if device.startswith("cuda") and importlib.util.find_spec("triton") is None:
        raise ConfigError(f"compile={mode!r} on {device} needs Triton, which is not installed: pip install triton "
                          "(PyTorch's CUDA wheels bring it), or use compile=none")


def compile_model(model: torch.nn.Module, mode: str, inputs: dict[str, torch.Tensor], device: str
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model compiled in `mode` with its compilation done, and its columns (compile_seconds, compile_graphs).

    Compilation happens on the first calls, so they are made here on the run's example batch, in inference mode as
    the prepared call is: the warm-up and the windows then find compiled code that their call's guards match.
    """
    # A sweep's runs share the process, and dynamo keys its compiled code by the forward's code object, which every
    # instance of a model class shares: without a reset a run would reuse or widen (dynamic shapes) the previous
    # run's code, and past dynamo's recompile limit silently run eager. Each run compiles as a fresh process would.
    torch._dynamo.reset()
    compiled = torch.compile(model, mode=mode)
    on_device = {k: v.to(device) for k, v in inputs.items()}
    calls = 3 if device.startswith("cuda") and mode in CUDA_GRAPH_MODES else 1
    graphs = counters["stats"]["unique_graphs"]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(calls):
            compiled(**on_device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    graphs = counters["stats"]["unique_graphs"] - graphs
    if graphs > 1:
        # Graph breaks (dynamic int8's packed Linears, for one): what lies between the graphs runs eager.
        log.warning("torch.compile split the model into %d graphs; the code between them runs eager "
                    "(TORCH_LOGS=graph_breaks shows where)", graphs)
    return compiled, {"compile_seconds": seconds, "compile_graphs": graphs}
