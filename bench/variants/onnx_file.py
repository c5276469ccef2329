"""A given .onnx file (model.onnx_path), made by any exporter or framework: checked before any work, fed the token
ids its graph asks for, and read the way the quality eval reads the harness's own exports (docs/compression.md,
"Models from other frameworks").

The harness feeds token ids only: input_ids, attention_mask and token_type_ids (zeros: one segment, as a tokenizer
gives for a single text), as int64 or int32, shaped (batch, sequence). The quality eval reads class scores from an
output named `logits`, or token states from `last_hidden_state`; a foreign graph's outputs often have other names
(output_0, token_embeddings...), so its first float output of rank 3 (batch, sequence, hidden) is read as the
token states. A rank-2 output under another name could be class scores or a pooled embedding, which the graph does
not say: such a file is refused for quality (eval=none still measures its energy).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from bench.errors import ConfigError
from bench.files import file_digest

FEEDABLE = ("input_ids", "attention_mask", "token_type_ids")
ID_TYPES = {onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}
# What the quality eval reads (bench/quality/evaluate.py represent()), by the rank it needs.
ROLES = {"logits": 2, "last_hidden_state": 3}
HARNESS_FEEDS = ("input_ids (required), attention_mask, token_type_ids: int64 or int32 token ids shaped "
                 "(batch, sequence)")


@dataclass(frozen=True)
class GivenFile:
    path: Path
    producer: str  # what made it, as the file says: e.g. "pytorch 2.13.0"
    opset: int  # of the default ONNX domain
    input_shapes: dict[str, tuple[int | str, ...]]  # a fixed dimension as its size, a free one by its name
    outputs: dict[str, int | None]  # name -> rank (None: not recorded); float outputs only
    vocab_rows: int | None  # rows of the embedding table input_ids index, where the graph shows it
    digest: str  # sha256 of the file (as sha256sum prints it), or of it and its external data files

    def quality_output(self) -> tuple[str, str] | None:
        """(graph output, what the quality eval reads it as), or None when no output can be read."""
        for role, rank in ROLES.items():
            if self.outputs.get(role) == rank:
                return role, role
        hidden = next((name for name, rank in self.outputs.items() if rank == 3), None)
        return (hidden, "last_hidden_state") if hidden else None

    def describe_outputs(self) -> str:
        return ", ".join(f"{name} (rank {rank})" for name, rank in self.outputs.items()) or "no float outputs"


def _where(path: Path) -> str:
    return f"model.onnx_path={str(path)!r}"


def _shape(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in value.type.tensor_type.shape.dim)


def _rank(value: onnx.ValueInfoProto) -> int | None:
    tensor = value.type.tensor_type
    return len(tensor.shape.dim) if tensor.HasField("shape") else None


def external_files(graph: onnx.GraphProto, path: Path) -> list[Path]:
    """The data files the weights are stored in beside the model (one over protobuf's 2 GiB limit)."""
    names = {entry.value for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for entry in t.external_data if entry.key == "location"}
    return [path.parent / name for name in sorted(names)]


def _vocab_rows(graph: onnx.GraphProto) -> int | None:
    tables = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Gather" and node.input[1:2] == ["input_ids"] and node.input[0] in tables:
            return int(tables[node.input[0]].dims[0])
    return None


def inspect(onnx_path: str) -> GivenFile:
    """The file at onnx_path, checked: a readable ONNX model whose inputs the harness can feed (ConfigError
    naming the path and what is wrong otherwise). Read once per process for each version of the file."""
    path = Path(onnx_path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{_where(path)}: no such file" + (" (it is a directory)" if path.is_dir() else "")
                          + "; give the path of an .onnx model file")
    stat = path.stat()
    return _inspect(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _inspect(path: Path, mtime_ns: int, size: int) -> GivenFile:
    try:
        # The graph and the weights' locations only: the weights are read by ONNX Runtime.
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError) as e:
        raise ConfigError(f"{_where(path)} is not a readable ONNX model ({type(e).__name__}: {e}); give a file "
                          "written by an ONNX exporter (torch.onnx.export, tf2onnx, optimum...)") from None
    graph = model.graph
    external = external_files(graph, path)
    if missing := [str(f) for f in external if not f.is_file()]:
        raise ConfigError(f"{_where(path)} keeps its weights in external data files that are not beside it: "
                          f"{', '.join(missing)}; copy them next to the model file")
    weights = {t.name for t in graph.initializer}  # older IR versions list initializers among the inputs too
    values = [i for i in graph.input if i.name not in weights]
    fed = {i.name: ID_TYPES.get(i.type.tensor_type.elem_type) for i in values}
    unfit = [i for i in values if i.name not in FEEDABLE or fed[i.name] is None or _rank(i) != 2]
    if unfit or "input_ids" not in fed:
        listed = ", ".join(f"{i.name} ({onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()}, "
                           f"shape {list(_shape(i))})" for i in values)
        raise ConfigError(f"{_where(path)}: the harness cannot feed this graph's inputs [{listed}]; it feeds "
                          f"{HARNESS_FEEDS}. Export the model with inputs named and typed so")
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    outputs = {o.name: _rank(o) for o in graph.output if o.type.tensor_type.elem_type in floats}
    producer = f"{model.producer_name} {model.producer_version}".strip() or "producer not recorded"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    files = [path, *external]
    digest = file_digest(path) if not external else hashlib.sha256(
        "".join(f"{f.name}:{file_digest(f)}\n" for f in files).encode()).hexdigest()
    return GivenFile(path, producer, opset, {i.name: _shape(i) for i in values}, outputs, _vocab_rows(graph), digest)


def check(cfg: Any) -> None:
    """What a run of the given file needs beyond the file itself (a BenchConfig), before any work."""
    given = inspect(cfg.model.onnx_path)
    where = _where(given.path)
    if cfg.model.weights != "pretrained":
        raise ConfigError(f"{where} carries its own weights; model.weights={cfg.model.weights!r} does not apply "
                          "to it: leave model.weights=pretrained")
    if cfg.prune.name != "none":
        raise ConfigError(f"prune={cfg.prune.name} prunes a PyTorch model, and {where} is run as it is: leave "
                          "prune=none (or prune the model before exporting it)")
    scored = cfg.eval.kind != "none"
    for name, shape in given.input_shapes.items():
        fixed = [(axis, size, asked) for axis, size, asked in zip(("batch", "sequence"), shape,
                                                                  (cfg.batch_size, cfg.seq_len))
                 if isinstance(size, int) and size > 0]
        if scored and fixed:
            # The quality eval pads each batch to its longest text, and its last batch may be partial.
            raise ConfigError(f"{where}: input {name} has a fixed {fixed[0][0]} size {fixed[0][1]}, and the quality "
                              "eval feeds batches of other shapes; export with dynamic batch and sequence axes, "
                              "or run eval=none")
        for axis, size, asked in fixed:
            setting = "batch_size" if axis == "batch" else "seq_len"
            if size != asked:
                raise ConfigError(f"{where}: input {name} has a fixed {axis} size {size}; set {setting}={size} "
                                  f"(not {asked}), or export with a dynamic {axis} axis")
    if scored and given.quality_output() is None:
        raise ConfigError(f"{where}: the quality eval reads an output named logits (batch, classes) or token states "
                          f"(batch, sequence, hidden), and this graph has neither: {given.describe_outputs()}. "
                          "Run eval=none to measure its energy only, or export it with such an output")


def model_config(given: GivenFile, tokenizer: Any) -> Any:
    """The PretrainedConfig a scenario needs from a given file: the vocabulary synthetic batches draw ids from (the
    tokenizer's) and the longest sequence (the tokenizer's model_max_length, where it gives one)."""
    from transformers import PretrainedConfig
    from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

    vocab = len(tokenizer)
    if given.vocab_rows is not None and given.vocab_rows < vocab:
        raise ConfigError(f"{_where(given.path)}: the graph's embedding table has {given.vocab_rows} rows, but the "
                          f"tokenizer ({tokenizer.name_or_path}) has {vocab} tokens: they are not the same model's. "
                          "Give the tokenizer the model was trained with in model.tokenizer_path")
    longest = tokenizer.model_max_length if tokenizer.model_max_length < VERY_LARGE_INTEGER else None
    return PretrainedConfig(vocab_size=vocab, max_position_embeddings=longest, name_or_path=str(given.path))
