"""Published peak figures of common accelerators, one entry per board, each with its vendor datasheet.

Every FLOP/s figure is DENSE: NVIDIA's Hopper and Ada datasheets print tensor-core figures "with sparsity"
(2:4 structured sparsity, twice the dense rate); the entries below are those figures halved. A100's datasheet
prints both, and T4 (Turing) has no sparsity mode. `fp32` is the CUDA-core rate, not TF32: PyTorch runs fp32
matmuls without TF32 unless `torch.backends.cuda.matmul.allow_tf32` is set. A precision a board lacks
(bf16 and fp8 on T4) is absent, never guessed. `mem_gbs` is the memory bandwidth in GB/s (1e9 bytes/s);
`rated_w` the board's maximum TDP/TGP from the same datasheet.

CPUs are absent on purpose: their peaks depend on the SKU, the cores in use and the vector units, so they
come from configuration (`--cpu-peak-tflops`, `--cpu-rated-w`, `--cpu-mem-gbs`, or `--device-peaks FILE`).
Keys match `device_name` as whole words, the longest key winning (`analysis.devices.match_device`).
"""

from __future__ import annotations

from bench.quants import QUANTS

_H100 = "https://www.nvidia.com/en-us/data-center/h100/ (H100 datasheet, specifications table)"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/ (H200 datasheet, specifications table)"
_A100 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
         "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_L4 = "https://www.nvidia.com/en-us/data-center/l4/ (L4 datasheet, specifications table)"
_T4 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/"
       "t4-tensor-core-datasheet-951643.pdf")

_HOPPER_SXM = {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5, "fp8": 1979, "int8": 1979}
_HOPPER_NVL = {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5, "int8": 1670.5}
_A100_TFLOPS = {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624, "int4": 1248}

# key -> peak TFLOP/s (TOPS for integers) per precision, memory GB/s, rated W, source, dense
PEAKS: dict[str, dict] = {
    # nvidia-smi names the SXM5 board "NVIDIA H100 80GB HBM3"; the PCIe and NVL boards carry their suffix.
    "H100": {"tflops": _HOPPER_SXM, "mem_gbs": 3350, "rated_w": 700, "source": _H100 + ", H100 SXM",
             "dense": True},
    "H100 PCIe": {"tflops": {"fp32": 51, "tf32": 378, "bf16": 756, "fp16": 756, "fp8": 1513, "int8": 1513},
                  "mem_gbs": 2000, "rated_w": 350, "source": _H100 + ", H100 PCIe", "dense": True},
    "H100 NVL": {"tflops": _HOPPER_NVL, "mem_gbs": 3900, "rated_w": 400, "source": _H100 + ", H100 NVL",
                 "dense": True},
    "H200": {"tflops": _HOPPER_SXM, "mem_gbs": 4800, "rated_w": 700, "source": _H200 + ", H200 SXM",
             "dense": True},
    "H200 NVL": {"tflops": _HOPPER_NVL, "mem_gbs": 4800, "rated_w": 600, "source": _H200 + ", H200 NVL",
                 "dense": True},
    # One A100 die, four boards that differ in memory bandwidth and power; no key for a bare "A100".
    "A100-SXM4-80GB": {"tflops": _A100_TFLOPS, "mem_gbs": 2039, "rated_w": 400, "source": _A100 + ", 80GB SXM",
                       "dense": True},
    "A100-SXM4-40GB": {"tflops": _A100_TFLOPS, "mem_gbs": 1555, "rated_w": 400, "source": _A100 + ", 40GB SXM",
                       "dense": True},
    "A100 80GB PCIe": {"tflops": _A100_TFLOPS, "mem_gbs": 1935, "rated_w": 300, "source": _A100 + ", 80GB PCIe",
                       "dense": True},
    "A100-PCIE-40GB": {"tflops": _A100_TFLOPS, "mem_gbs": 1555, "rated_w": 250, "source": _A100 + ", 40GB PCIe",
                       "dense": True},
    "L4": {"tflops": {"fp32": 30.3, "tf32": 60, "bf16": 121, "fp16": 121, "fp8": 242.5, "int8": 242.5},
           "mem_gbs": 300, "rated_w": 72, "source": _L4, "dense": True},
    # "Mixed precision (FP16/FP32)" is the fp16 tensor-core figure; the datasheet gives "320+ GB/s".
    "T4": {"tflops": {"fp32": 8.1, "fp16": 65, "int8": 130, "int4": 260}, "mem_gbs": 320, "rated_w": 70,
           "source": _T4, "dense": True},
}

# The precision whose peak bounds a variant. Dynamic and static int8 run int8 GEMMs. Weight-only variants
# (-wo) store int8/int4 weights but dequantize them and multiply at the activation precision, which the row
# does not record: bf16 is assumed, the usual pairing. Override with `precision_of_quant` in a peaks file.
PRECISION_OF_QUANT = {
    **{name: q.precision for name, q in QUANTS.items() if q.precision},
    # Names a peaks file or an older row may use.
    "tf32": "tf32", "fp8": "fp8", "int8-dynamic": "int8", "int4": "int4",
}
