"""Every quantization and precision name the harness knows, in one table. Pure data: the analysis reads it too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quant:
    # The arithmetic its heaviest kernels do: what a device's peak-FLOP/s table is looked up by (None: it depends
    # on the file, e.g. a GGUF as it ships).
    precision: str | None
    # The floating-point type of the parts left unquantized, and of the activations (a torch dtype's name).
    float_dtype: str
    quantized: bool  # False: nothing but a floating-point type for the whole model
    meaning: str


QUANTS: dict[str, Quant] = {
    "fp32": Quant("fp32", "float32", False, "the reference: every weight and activation in fp32"),
    "bf16": Quant("bf16", "bfloat16", False, "every weight and activation in bfloat16"),
    "fp16": Quant("fp16", "float16", False, "every weight and activation in float16"),
    "int8": Quant("int8", "float32", True, "dynamic int8: int8 Linear weights, activations quantized per call"),
    "int8-static": Quant("int8", "float32", True, "static int8 (ONNX Runtime QLinearMatMul), activation ranges "
                         "from calibration"),
    "int8-wo": Quant("bf16", "bfloat16", True, "torchao weight-only int8, bf16 activations (CUDA kernels)"),
    "int4-wo": Quant("bf16", "bfloat16", True, "torchao weight-only int4, bf16 activations (CUDA kernels)"),
    # GGUF types, llama.cpp's names (bench/variants/gguf.py). llama.cpp quantizes the activations of an integer
    # type's matmuls to 8 bits and multiplies integers (its vec_dot_type); norms and the rest stay F32.
    "gguf": Quant(None, "float32", True, "the model's GGUF file as it ships, not requantized (its type: gguf_type)"),
    "f16": Quant("fp16", "float16", False, "GGUF F16: the shipped GGUF dequantised to 16 bits (F32 tensors stay F32)"),
    "q8_0": Quant("int8", "float32", True, "GGUF Q8_0 by llama.cpp's quantizer: 8-bit blocks of 32, one scale each"),
    "q6_k": Quant("int8", "float32", True, "GGUF Q6_K by llama.cpp's quantizer: 6-bit k-quant super-blocks of 256"),
    "q5_k_m": Quant("int8", "float32", True, "GGUF Q5_K_M by llama.cpp's quantizer: mostly 5-bit k-quants, "
                    "some tensors 6-bit"),
    "q4_k_m": Quant("int8", "float32", True, "GGUF Q4_K_M by llama.cpp's quantizer: mostly 4-bit k-quants, "
                    "some tensors 6-bit"),
    "q4_0": Quant("int8", "float32", True, "GGUF Q4_0 by llama.cpp's quantizer: 4-bit blocks of 32, one scale"),
    "q4_1": Quant("int8", "float32", True, "GGUF Q4_1 by llama.cpp's quantizer: 4-bit blocks of 32, scale and "
                  "minimum"),
}
GGUF = ("gguf", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q4_1")

# Which quant values each backend runs on each device type; everything else is refused up front.
SUPPORTED: dict[tuple[str, str], tuple[str, ...]] = {
    # int8: torch.ao dynamic int8 (CPU kernels only); int8-wo / int4-wo: torchao weight-only (CUDA kernels).
    ("pytorch", "cpu"): ("fp32", "bf16", "int8"),
    ("pytorch", "cuda"): ("fp32", "bf16", "fp16", "int8-wo", "int4-wo"),
    # ONNX Runtime's integer kernels (MatMulInteger, QLinear*) are CPU-provider kernels.
    ("onnxruntime", "cpu"): ("fp32", "int8", "int8-static"),
    ("onnxruntime", "cuda"): ("fp32", "fp16"),
    # llama.cpp (llama-cpp-python) runs GGUF files; on CUDA, built with GGML_CUDA, every layer is offloaded.
    ("llamacpp", "cpu"): GGUF,
    ("llamacpp", "cuda"): GGUF,
}
BACKENDS = tuple(dict.fromkeys(backend for backend, _ in SUPPORTED))
TORCHAO = ("int8-wo", "int4-wo")  # need the torchao package
HALF = ("fp16", "bf16")  # what torch's 2:4 sparse kernels take
