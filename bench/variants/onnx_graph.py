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
# its optimiser fuses into, static int8's QLinearMatMul among them): what the row's onnx_fusions counts.
FUSED_DOMAINS = ("com.microsoft",)
FUSED_STANDARD = ("Gemm", "LayerNormalization", "Gelu", "QLinearMatMul")


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
    """onnxscript's transformer fusions for ONNX Runtime (attention, GELU, rotary...) applied to `source`, written
    to `path`; returns the fusions that matched. Skip layer norm is undone (split_skip_layer_norm)."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, counts = optimize_for_ort(ir.load(str(source)))
    proto = ir.to_proto(model)
    split_skip_layer_norm(proto)
    save(proto, path)
    return {name: n for name, n in counts.items() if n and name != "skip_layer_normalization"}


# ONNX Runtime 1.32's CPU SkipLayerNormalization kernel is 3x slower than the Add, Add and LayerNormalization it
# replaces on a (8, 128, 384) batch (benchmarks/skip_layer_norm.py; 2-core AVX-512 VM), about 8% of MiniLM's whole
# batch-8 call. So the fused graph keeps them apart, and a CPU session is told not to fuse them again.
UNFUSED_ON_CPU = ["SkipLayerNormFusion"]


def split_skip_layer_norm(model: onnx.ModelProto) -> int:
    """Each SkipLayerNormalization(x, skip, gamma[, beta[, bias]]) as LayerNormalization(x + bias + skip), in place;
    its sum output, where the graph reads it, is the sum. Returns how many were split."""
    nodes, split = [], 0
    read = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        if (node.domain, node.op_type) != ("com.microsoft", "SkipLayerNormalization"):
            nodes.append(node)
            continue
        x, skip, gamma, beta, bias = (list(node.input) + ["", ""])[:5]
        total = node.output[3] if len(node.output) > 3 and node.output[3] in read else f"{node.output[0]}_sum"
        if bias:
            nodes.append(onnx.helper.make_node("Add", [x, bias], [f"{total}_biased"]))
            x = f"{total}_biased"
        nodes.append(onnx.helper.make_node("Add", [x, skip], [total]))
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        nodes.append(onnx.helper.make_node("LayerNormalization", [total, gamma] + ([beta] if beta else []),
                                           [node.output[0]], axis=-1, epsilon=epsilon))
        split += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return split


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


def new_session(path: Path, graph: str, threads: int, providers: list, stored: onnx.ModelProto | None = None
                ) -> tuple[ort.InferenceSession, dict[str, int]]:
    """A session at `graph`'s level and the census of the graph its optimiser made: ONNX Runtime writes that graph
    while it builds the session. A model with external data (over the protobuf limit) is counted as stored instead:
    writing a copy of its weights would cost gigabytes. `stored`: the file's graph, where the caller has read it."""
    options = session_options(graph, threads)
    disabled = UNFUSED_ON_CPU if graph == "fused" and providers == ["CPUExecutionProvider"] else []
    stored = stored or onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer):
        return ort.InferenceSession(str(path), options, providers=providers, disabled_optimizers=disabled), census(
            stored)
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(path), options, providers=providers, disabled_optimizers=disabled)
        return session, census(onnx.load(options.optimized_model_filepath, load_external_data=False))
