"""The ONNX graph a session runs: the fp32 export, the transformer fusions of onnx_graph=fused, and the census of
what ONNX Runtime's optimiser left in it (docs/compression.md, "ONNX Runtime graphs").

Exporter: torch.onnx.export(dynamo=True) (torch.export + onnxscript), batch and sequence dynamic. Its graphs are
not the TorchScript exporter's, so ONNX Runtime's own fusions (online at level all, or its offline
onnxruntime.transformers optimizer) find almost no attention pattern in them; onnxscript's rewriter, written for
this exporter's output, does. On MiniLM at batch 8 that is the difference between 1.2x and 0.9x PyTorch's latency.
"""

from __future__ import annotations

import collections
import logging
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import onnx
import onnxruntime as ort
import torch

# Protobuf cannot hold more than 2 GiB: larger models keep their weights in an external data file.
PROTOBUF_LIMIT = 2 * 1024**3 - 1024**2
LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "fused": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
# Operators that stand for several of the exported graph's (ONNX Runtime's contrib domain, and the standard ops
# its optimiser fuses into): what the row's onnx_fusions counts.
FUSED_DOMAINS = ("com.microsoft",)
FUSED_STANDARD = ("Gemm", "LayerNormalization", "Gelu")


def save(model: onnx.ModelProto, path: Path) -> None:
    external = model.ByteSize() > PROTOBUF_LIMIT
    onnx.save(model, str(path), save_as_external_data=external, location=f"{path.name}.data" if external else None)


@contextmanager
def quiet() -> Iterator[None]:
    """The exporter, the rewriter and the quantizer log a line per tensor (root and onnx_ir loggers, which Hydra
    shows at INFO) and warn about axis names: noise around a step whose result the row records anyway."""
    loggers = [logging.getLogger(), logging.getLogger("onnx_ir"), logging.getLogger("onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@quiet()
def export(model: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """The fp32 model as ONNX with dynamic batch and sequence, outputs named as the model names them."""
    with torch.inference_mode():
        output_names = list(model(**inputs).keys())
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    program = torch.onnx.export(
        model, (), kwargs=dict(inputs), input_names=list(inputs), output_names=output_names,
        dynamic_shapes={name: {0: batch, 1: seq} for name in inputs}, opset_version=opset, dynamo=True,
        verbose=False)
    save(program.model_proto, path)


@quiet()
def fuse(source: Path, path: Path) -> dict[str, int]:
    """onnxscript's transformer fusions for ONNX Runtime (attention, skip layer norm, GELU, rotary...) applied to
    `source`, written to `path`; returns the fusions that matched."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, counts = optimize_for_ort(ir.load(str(source)))
    save(ir.to_proto(model), path)
    return {name: n for name, n in counts.items() if n}


def session_options(graph: str, threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[graph]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initializers are noise for a benchmark
    return options


def census(model: onnx.ModelProto) -> dict[str, int]:
    """The fused operators in a graph, by type."""
    nodes = [n for n in model.graph.node if n.domain in FUSED_DOMAINS or n.op_type in FUSED_STANDARD]
    return dict(sorted(collections.Counter(n.op_type for n in nodes).items()))


def new_session(path: Path, graph: str, threads: int, providers: list) -> tuple[ort.InferenceSession, dict[str, int]]:
    """A session at `graph`'s level and the census of the graph its optimiser made: ONNX Runtime writes that graph
    while it builds the session. A model with external data (over the protobuf limit) is counted as stored instead:
    writing a copy of its weights would cost gigabytes."""
    options = session_options(graph, threads)
    stored = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer):
        return ort.InferenceSession(str(path), options, providers=providers), census(stored)
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(path), options, providers=providers)
        return session, census(onnx.load(options.optimized_model_filepath, load_external_data=False))
