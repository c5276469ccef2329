"""`python -m bench.llama_server [llama_cpp.server flags]`: llama-cpp-python's OpenAI-compatible server, with
llama.cpp's extra CPU buffer types off on CPUs with AMX int8.

llama.cpp built natively on an AMX host (Sapphire Rapids and later) routes quantised matrix products through
its AMX buffer type, which crashes (SIGSEGV in ggml_backend_amx_mul_mat) on the Q4_1 SmolLM2 file with
llama-cpp-python 0.3.36, and the server has no flag for it. Turning off the extra buffer types (AMX and the
repacked layouts) makes llama.cpp use its plain CPU kernels there; the row's server_command records the launcher.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any


def amx_int8() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_int8" in f.read()
    except OSError:
        return False


def runtime_columns() -> dict[str, Any]:
    """What a row says of the llama.cpp that ran it: the binding's version, and whether the extra buffer types
    were on (they change which kernels run, so they are part of what was measured)."""
    return {"llama_cpp_version": importlib.metadata.version("llama_cpp_python"), "llama_extra_buffers": not amx_int8()}


def avoid_amx_crash() -> None:
    """On a CPU with AMX int8, every llama.cpp model this process loads from now on skips the extra CPU buffer
    types (llama-cpp-python has no parameter for it: its default model parameters are patched, once)."""
    import llama_cpp.llama_cpp as low_level

    default = low_level.llama_model_default_params
    if getattr(default, "without_extra_buffers", False) or not amx_int8():
        return

    def params() -> Any:
        p = default()
        p.use_extra_bufts = False
        return p

    params.without_extra_buffers = True  # type: ignore[attr-defined]
    low_level.llama_model_default_params = params


def main() -> None:
    avoid_amx_crash()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
