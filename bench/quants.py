"""Every quantization and precision name the harness knows, in one table. Pure data: the analysis reads it too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quant:
    # The arithmetic its heaviest kernels do: what a device's peak-FLOP/s table is looked up by.
    precision: str
    # The floating-point type of the parts left unquantized, and of the activations (a torch dtype's name).
    float_dtype: str
    quantized: bool  # False: nothing but a floating-point type for the whole model
    meaning: str


QUANTS: dict[str, Quant] = {
    "fp32": Quant("fp32", "float32", False, "the reference: every weight and activation in fp32"),
    "bf16": Quant("bf16", "bfloat16", False, "every weight and activation in bfloat16"),
    "fp16": Quant("fp16", "float16", False, "every weight and activation in float16"),
    "int8": Quant("int8", "float32", True, "dynamic int8: int8 Linear weights, activations quantized per call"),
    "int8-static": Quant("int8", "float32", True, "static int8 (ONNX Runtime QDQ), activation ranges from calibration"),
    "int8-wo": Quant("bf16", "bfloat16", True, "torchao weight-only int8, bf16 activations (CUDA kernels)"),
    "int4-wo": Quant("bf16", "bfloat16", True, "torchao weight-only int4, bf16 activations (CUDA kernels)"),
}

# Which quant values each backend runs on each device type; everything else is refused up front.
SUPPORTED: dict[tuple[str, str], tuple[str, ...]] = {
    # int8: torch.ao dynamic int8 (CPU kernels only); int8-wo / int4-wo: torchao weight-only (CUDA kernels).
    ("pytorch", "cpu"): ("fp32", "bf16", "int8"),
    ("pytorch", "cuda"): ("fp32", "bf16", "fp16", "int8-wo", "int4-wo"),
    # ONNX Runtime's integer kernels (MatMulInteger, QLinear*) are CPU-provider kernels.
    ("onnxruntime", "cpu"): ("fp32", "int8", "int8-static"),
    ("onnxruntime", "cuda"): ("fp32", "fp16"),
}
BACKENDS = tuple(dict.fromkeys(backend for backend, _ in SUPPORTED))
TORCHAO = ("int8-wo", "int4-wo")  # need the torchao package
HALF = ("fp16", "bf16")  # what torch's 2:4 sparse kernels take
