"""ONNX Runtime: export from PyTorch once (cached), or take the given file (model.onnx_path,
bench/variants/onnx_file.py), make the graph onnx_graph= asks for, quantize with ONNX Runtime's tools, run a
session (the graph steps: bench/variants/onnx_graph.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch

from bench.backends import BATCHES, BuildRequest
from bench.errors import ConfigError
from bench.files import stable_key, write_atomically
from bench.inputs import calibration_key
from bench.variants import onnx_file
from bench.variants.onnx_graph import export, fuse, new_session, quiet, save

log = logging.getLogger(__name__)
CAPABILITIES = (BATCHES,)  # a graph over whole batches: no KV-cache decode loop
TORCH_MODEL = True  # exported from it; a run of a given file (model.onnx_path) has none (bench/run.py load)
REFERENCE = ("fp32", "pytorch")
MODEL_FILE = "model.onnx"
# ONNX Runtime's entropy calibration puts 128 histogram bins into 128 quantized bins by default: one candidate
# threshold, the full range, so it gives min-max's scales exactly. 2048 bins, as TensorRT's recipe it follows.
ENTROPY_BINS = 2048
# What static int8 quantizes and how (in the cache key: a changed recipe is never read from an older cache).
STATIC_RECIPE = f"QLinearMatMul over the weight products, per-channel weights, entropy over {ENTROPY_BINS} bins"
FUSIONS_FILE = "fusions.txt"  # the fusions onnxscript applied, kept beside the fused model


def _numpy(inputs: dict[str, torch.Tensor], types: dict[str, Any]) -> dict[str, np.ndarray]:
    """The feed of a graph taking `types` ({input: integer type}). A given file may take token_type_ids, which
    synthetic and calibration batches do not make: one segment (zeros), as a tokenizer gives for a single text."""
    given = {"token_type_ids": torch.zeros_like(inputs["input_ids"]), **inputs}
    return {name: given[name].cpu().numpy().astype(kind) for name, kind in types.items()}


SESSION_ID_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def input_types(path: Path) -> dict[str, Any]:
    """The graph's inputs and the integer type each takes."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return {i.name: onnx_file.ID_TYPES[i.type.tensor_type.elem_type] for i in graph.input if i.name not in weights}


def stored_bytes(model: onnx.ModelProto, path: Path) -> int:
    """The model file and the external data files its weights are kept in."""
    return sum(f.stat().st_size for f in [path, *onnx_file.external_files(model.graph, path)])


def _cached(directory: Path, build: Callable[[Path], None]) -> Path:
    """`directory/model.onnx`, built once (atomically: concurrent or killed runs never see half a model)."""
    if not (directory / MODEL_FILE).is_file():
        log.info("building %s (cached for later runs)", directory / MODEL_FILE)
        write_atomically(directory, lambda tmp: build(tmp / MODEL_FILE), directory=True)
    return directory / MODEL_FILE


@quiet()
def quantize(source: Path, quant: str, path: Path, calibration: list[dict[str, np.ndarray]], method: str) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_dynamic, quantize_static)

    if quant == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), path)
        return
    # Shape inference and graph optimisation first, as ONNX Runtime recommends. Its symbolic shape
    # inference cannot resolve the exporter's dynamic sequence bounds, so ONNX's own inference is used.
    pre = path.with_name("preprocessed.onnx")
    quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
    if quant == "int8":
        quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8)
    else:
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

        feeds = iter(calibration)

        class Reader(CalibrationDataReader):
            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(feeds, None)

        method_id = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                     "percentile": CalibrationMethod.Percentile}[method]
        # Only the matrix products with a weight (the Linear layers, as dynamic int8 does), per-channel weight
        # scales: quantizing the residual adds and softmax too, per tensor, kept 0.92 of MiniLM's accuracy, and
        # the histogram methods cannot bin the attention mask's fill values (float32's lowest). Calibrated here
        # rather than inside quantize_static, which cannot pass the entropy method its histogram size.
        ops = ["MatMul", "Gemm"]
        ranges = path.with_name("ranges.json")
        calibrator = create_calibrator(pre, ops, augmented_model_path=str(path.with_name("augmented.onnx")),
                                       calibrate_method=method_id,
                                       extra_options={"num_bins": ENTROPY_BINS} if method == "entropy" else {})
        calibrator.collect_data(Reader())
        save_tensors_data(calibrator.compute_data(), ranges)
        # QLinearMatMul (uint8 activations, int8 weights: ONNX Runtime's x86 kernels): in QDQ form, a product
        # whose output stays float is run as dequantize-then-fp32-MatMul, slower than fp32 itself.
        quantize_static(str(pre), str(path), None, quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method_id,
                        op_types_to_quantize=ops, nodes_to_quantize=weight_products(pre), per_channel=True,
                        calibration_cache_path=str(ranges))
        for scratch in (ranges, path.with_name("augmented.onnx")):
            scratch.unlink(missing_ok=True)
    pre.unlink()


def weight_products(path: Path) -> list[str]:
    """Names of the MatMul and Gemm nodes that multiply by a stored weight."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and weights & set(n.input[1:2])]


def quantized_weights(model: onnx.ModelProto) -> int:
    """Weight matrices stored as 8-bit integers: what the quantizer actually converted."""
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return sum(1 for t in model.graph.initializer if t.data_type in int8 and len(t.dims) == 2)


def fp32_graph(req: BuildRequest, base: dict[str, Any], given: onnx_file.GivenFile | None = None) -> Path:
    """The fp32 export (or the given file as it is), fused when onnx_graph=fused (each cached under its own key)."""
    opset = req.opset
    if given is not None:
        exported = given.path
    else:
        exported = _cached(req.cache_dir / "onnx" / stable_key(base), lambda p: export(req.model, req.inputs, p, opset))
    if req.onnx_graph != "fused":
        return exported

    def fused(path: Path) -> None:
        applied = fuse(exported, path)
        (path.parent / FUSIONS_FILE).write_text(", ".join(f"{k}: {v}" for k, v in applied.items()) or "none")

    fused_key = {**base, "graph": "fused", "onnxscript": onnxscript.__version__, "split": "skip layer norm"}
    return _cached(req.cache_dir / "onnx" / stable_key(fused_key), fused)


def build(req: BuildRequest) -> tuple[OnnxRuntimeBackend, dict[str, Any]]:
    """The session for `req.quant`, exporting, fusing and quantizing only what the cache does not hold yet."""
    quant, opset, graph = req.quant, req.opset, req.onnx_graph
    base = {**req.identity, "opset": opset, "torch": torch.__version__, "onnxruntime": ort.__version__}
    # A given file (req.identity then holds its content digest) rather than an export of the PyTorch model.
    given = onnx_file.inspect(req.source.onnx_path) if getattr(req.source, "onnx_path", None) else None
    fp32 = fp32_graph(req, base, given)
    exporter = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
    renamed: dict[str, str] = {}
    if given is not None:
        exporter, opset = f"given file ({given.producer})", given.opset
        output, role = given.quality_output() or (None, None)
        renamed = {output: role} if output != role else {}
    if graph == "fused":
        exporter += f"; fused by onnxscript {onnxscript.__version__} ({(fp32.parent / FUSIONS_FILE).read_text()})"
    exporter += "".join(f"; output {name!r} read as {role}" for name, role in renamed.items())
    info: dict[str, Any] = {"onnx_exporter": exporter, "onnx_opset": opset, "onnxruntime_version": ort.__version__}
    path = fp32
    if quant != "fp32":
        samples: list[dict[str, np.ndarray]] = []
        calibration = None
        method = req.calibration_method
        if quant == "int8-static":
            feeds, source = req.calibration()
            types = input_types(fp32)
            samples = [_numpy(f, types) for f in feeds]
            calibration = calibration_key(feeds)
            info.update(calibration_method=method, calibration_data=f"{source}, key {calibration}",
                        calibration_samples=sum(len(f["input_ids"]) for f in samples))
        variant = {**base, "quant": quant, "recipe": STATIC_RECIPE if quant == "int8-static" else None,
                   **({"calibration": calibration, "calibration_method": method} if calibration else {})}
        path = _cached(req.cache_dir / "onnx" / stable_key(variant),
                       lambda p: quantize(fp32, quant, p, samples, method))
    stored = onnx.load(str(path), load_external_data=False)  # the graph and where its weights lie, read once
    info["quantized_layers"] = quantized_weights(stored)
    info["model_bytes"] = stored_bytes(stored, path)
    info["onnx_model_path"] = str(path)
    backend = OnnxRuntimeBackend(path, req.device, req.threads, graph, renamed, stored)
    info["onnx_providers"] = backend.session.get_providers()
    info["onnx_fusions"] = backend.fusions
    return backend, info


def check(cfg: Any, device: str) -> None:
    """Before any work: a given file is one the harness can run; CUDA runs need onnxruntime-gpu's CUDA provider in
    this install."""
    if cfg.model.onnx_path is not None:
        onnx_file.check(cfg)
    if device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ConfigError(
            f"backend=onnxruntime on device={device!r} needs onnxruntime-gpu, but this install offers "
            f"{ort.get_available_providers()}. Replace the CPU wheel: pip uninstall -y onnxruntime onnxruntime-gpu "
            "&& pip install onnxruntime-gpu (never both); or run backend=onnxruntime on device=cpu")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    model = None  # it runs the exported graph, not a torch module

    def __init__(self, path: Path, device: str, threads: int, graph: str = "all", renamed: dict[str, str] | None = None,
                 stored: onnx.ModelProto | None = None) -> None:
        self.device = torch.device(device)
        wanted = "CUDAExecutionProvider" if self.device.type == "cuda" else "CPUExecutionProvider"
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            providers.insert(0, (wanted, {"device_id": self.device.index or 0}))
        self.session, self.fusions = new_session(path, graph, threads, providers, stored)
        # onnxruntime-gpu falls back to the CPU without a word when CUDA cannot start: refuse to measure that.
        if self.session.get_providers()[0] != wanted:
            raise ConfigError(
                f"ONNX Runtime did not start {wanted} (active: {self.session.get_providers()}; available in "
                f"this install: {ort.get_available_providers()}); check the CUDA and cuDNN libraries "
                "onnxruntime-gpu needs")
        # The session's inputs (not the file's: no second read of the model) and the integer type each takes.
        self.inputs = {i.name: SESSION_ID_TYPES[i.type] for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        # forward()'s names for outputs the quality eval reads under another (a given file's output_0...)
        self.renamed = renamed or {}
        self._binding: Any = None

    def prepare(self, inputs: dict[str, torch.Tensor]) -> Callable[[], Any]:
        feed = _numpy(inputs, self.inputs)
        if self.device.type != "cuda":
            return lambda: self.session.run(self.output_names, feed)
        # IO binding keeps inputs and outputs on the GPU, so the window measures no host copies.
        index = self.device.index or 0
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", index))
        for name in self.output_names:
            binding.bind_output(name, "cuda", index)
        self._binding = binding
        return lambda: self.session.run_with_iobinding(binding)

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        outputs = self.session.run(self.output_names, _numpy(inputs, self.inputs))
        return SimpleNamespace(**{self.renamed.get(name, name): torch.from_numpy(output)
                                  for name, output in zip(self.output_names, outputs)})

    def sync(self) -> None:
        if self._binding is not None:
            self._binding.synchronize_outputs()
