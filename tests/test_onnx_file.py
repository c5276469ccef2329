"""model.onnx_path: an .onnx file made by another exporter (here torch.onnx's TorchScript exporter, not the harness's
dynamo export) run through ONNX Runtime, quantized, scored against itself at fp32, and refused before any work when
the harness cannot run it."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from transformers import AutoModel, AutoTokenizer

from bench.backends import BuildRequest, build
from bench.config import BenchConfig, ConfigError, EvalConfig, ModelConfig, PruneConfig
from bench.inputs import calibration_batches, synthetic_batch
from bench.models import identity, load_config
from bench.results import load
from bench.run import check
from tests.conftest import run_bench

TEXTS = ["the market fell sharply today", "a late goal won the cup final after extra time", "new phones",
         "parliament votes on the budget", "the film opens in cinemas next friday"]
NO_EVAL = EvalConfig(name="none", kind="none")


class HiddenStates(torch.nn.Module):
    """The model as a function of (input_ids, attention_mask) returning a tuple: what the TorchScript exporter
    traces (transformers' keyword-only forward and output dataclass trip it)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def torchscript_file(tiny, tmp_path_factory) -> Path:
    """The tiny BERT exported by the TorchScript exporter, its outputs named as such exporters leave them."""
    path = tmp_path_factory.mktemp("torchscript") / "tiny.onnx"
    ids = torch.randint(1000, 30000, (2, 8), generator=torch.Generator().manual_seed(0))
    axes = {"batch": 0, "sequence": 1}
    # eval(): the exporter puts every submodule back in the wrapper's mode afterwards (a new module's is training)
    torch.onnx.export(HiddenStates(tiny[0]).eval(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                      opset_version=17, input_names=["input_ids", "attention_mask"],
                      output_names=["output_0", "output_1"],
                      dynamic_axes={name: {i: axis for axis, i in axes.items()}
                                    for name in ("input_ids", "attention_mask", "output_0")})
    return path


def _model(path: Path, tokenizer_dir: Path) -> ModelConfig:
    return ModelConfig(name="tiny", onnx_path=str(path), tokenizer_path=str(tokenizer_dir))


def _build(model_cfg: ModelConfig, quant: str, graph: str, cache: Path, texts=TEXTS * 4):
    config, ref, revision = load_config(model_cfg, 16)
    tokenizer = AutoTokenizer.from_pretrained(model_cfg.tokenizer_path)
    batch = synthetic_batch(config, 2, 16, seed=0)
    return build("onnxruntime", BuildRequest(
        None, quant, "cpu", 1, batch.inputs, identity(model_cfg, ref, revision, 0), cache, 18,
        lambda: calibration_batches(config, tokenizer, list(texts), 8, 16, seed=0), source=model_cfg,
        onnx_graph=graph))


def test_a_file_from_another_exporter_computes_what_pytorch_does_at_every_graph_and_quant(
        tiny, tiny_model_dir, torchscript_file, tmp_path):
    model, tokenizer = tiny
    model_cfg = _model(torchscript_file, tiny_model_dir)
    config, ref, revision = load_config(model_cfg, 16)
    digest = hashlib.sha256(torchscript_file.read_bytes()).hexdigest()
    assert (ref, revision) == (str(torchscript_file.resolve()), f"file sha256:{digest[:12]}")
    assert config.vocab_size == len(tokenizer) and config.max_position_embeddings == tokenizer.model_max_length
    enc = dict(tokenizer(TEXTS[:3], padding=True, return_tensors="pt"))
    with torch.inference_mode():
        expected = model(**enc).last_hidden_state
    for quant, graph, close in (("fp32", "all", 1e-4), ("fp32", "fused", 1e-4), ("int8", "all", None),
                                ("int8-static", "all", None)):
        backend, info = _build(model_cfg, quant, graph, tmp_path)
        assert info["onnx_exporter"].startswith(f"given file (pytorch {torch.__version__.split('+')[0]})")
        assert info["onnx_exporter"].endswith("output 'output_0' read as last_hidden_state")
        assert info["onnx_opset"] == 17 and info["model_bytes"] > 0
        got = backend.forward(enc).last_hidden_state
        if close:
            torch.testing.assert_close(got, expected, atol=close, rtol=close)
        else:
            assert info["quantized_layers"] > 0
            assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) > 0.95
        assert backend.prepare(synthetic_batch(config, 2, 16, seed=1).inputs)()[0].shape == (2, 16, 32)
        if (quant, graph) == ("fp32", "all"):  # the file as given: nothing copied
            assert info["onnx_model_path"] == str(torchscript_file.resolve())
            assert info["model_bytes"] == torchscript_file.stat().st_size
        if graph == "fused":  # onnxscript's fusions expect the dynamo exporter's patterns; some still match here
            assert "fused by onnxscript" in info["onnx_exporter"]


def test_the_identity_of_a_given_file_is_its_content_and_its_tokenizer(tiny_model_dir, torchscript_file, tmp_path):
    """The fp32 reference and the ONNX caches are keyed by it: a changed file never reuses them."""
    model_cfg = _model(torchscript_file, tiny_model_dir)

    def key(cfg: ModelConfig) -> dict:
        _, ref, revision = load_config(cfg, 16)
        return identity(cfg, ref, revision, 0)

    changed = tmp_path / "tiny.onnx"
    proto = onnx.load(str(torchscript_file))
    proto.doc_string = "the same weights, saved again with another description"
    onnx.save(proto, str(changed))
    other_tokenizer = tmp_path / "tokenizer"
    AutoTokenizer.from_pretrained(tiny_model_dir, model_max_length=128).save_pretrained(other_tokenizer)
    base = key(model_cfg)
    assert base == key(model_cfg)
    assert base["content"] == f"sha256:{hashlib.sha256(torchscript_file.read_bytes()).hexdigest()}"
    assert key(replace(model_cfg, onnx_path=str(changed)))["content"] != base["content"]
    assert key(replace(model_cfg, tokenizer_path=str(other_tokenizer)))["tokenizer"] != base["tokenizer"]


def _graph(path: Path, inputs: list, outputs: list, nodes: list, initializers: list = ()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test"), str(path))
    return path


def _embedding(path: Path, rows: int = 30522, pooled: bool = False, shape=("batch", "sequence")) -> Path:
    """A graph of an embedding lookup: token states, or (pooled) only their mean (a rank-2 output)."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [rows, 4], np.ones(rows * 4, dtype=np.float32))
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["states"])]
    if pooled:
        nodes.append(helper.make_node("ReduceMean", ["states"], ["sentence_embedding"], axes=[1], keepdims=0))
        output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 4])
    else:
        output = helper.make_tensor_value_info("states", TensorProto.FLOAT, [*shape, 4])
    return _graph(path, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, list(shape))], [output],
                  nodes, [table])


def _cfg(path: Path, tokenizer_dir: Path, model: ModelConfig | None = None, **overrides) -> BenchConfig:
    settings = {"eval": NO_EVAL, "seq_len": 16, "backend": "onnxruntime", "quant": "fp32", **overrides}
    return BenchConfig(model=model or _model(path, tokenizer_dir), **settings)


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_a_small_graph_of_token_ids_is_accepted_and_fed(tiny_model_dir, tmp_path):
    """Inputs read from the graph: input_ids alone; outputs of other names read as token states."""
    checked = check(_cfg(_embedding(tmp_path / "lookup.onnx"), tiny_model_dir))
    assert checked.model_revision.startswith("file sha256:") and checked.model_config.vocab_size == 30522
    backend, info = _build(_model(tmp_path / "lookup.onnx", tiny_model_dir), "fp32", "all", tmp_path)
    assert info["onnx_exporter"] == "given file (test); output 'states' read as last_hidden_state"
    assert backend.forward(synthetic_batch(checked.model_config, 2, 5, 0).inputs).last_hidden_state.shape == (2, 5, 4)


@pytest.mark.parametrize("make, refusal", [
    (lambda d: d / "missing.onnx", r"model.onnx_path='.*missing.onnx': no such file"),
    (lambda d: d, r"no such file \(it is a directory\)"),
    (lambda d: _write(d / "notes.onnx", b"these are my notes\n"),
     r"notes.onnx' is not a readable ONNX model \(DecodeError"),
    (lambda d: _write(d / "empty.onnx", b""),
     r"empty.onnx' is not a readable ONNX model \(ValidationError: .*ir_version"),
    (lambda d: _graph(d / "image.onnx", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                      [helper.make_node("Identity", ["pixel_values"], ["y"])]),
     r"cannot feed this graph's inputs \[pixel_values \(float, shape \[1, 3\]\)\]; it feeds input_ids \(required\), "
     r"attention_mask, token_type_ids: int64 or int32"),
    (lambda d: _embedding(d / "small.onnx", rows=100),
     r"embedding table has 100 rows, but the tokenizer .* has 30522 tokens.*model.tokenizer_path"),
])
def test_a_file_the_harness_cannot_run_is_refused_naming_it(tiny_model_dir, tmp_path, make, refusal):
    with pytest.raises(ConfigError, match=refusal):
        check(_cfg(make(tmp_path), tiny_model_dir))


def test_what_the_quality_eval_cannot_read_is_refused_unless_eval_is_none(tiny_model_dir, tmp_path):
    pooled = _embedding(tmp_path / "pooled.onnx", pooled=True)
    news = tmp_path / "news.csv"
    news.write_text("text,label\n" + "".join(f"report {i},{i % 2}\n" for i in range(20)))
    scored = EvalConfig(name="text-classification", path=str(news))
    with pytest.raises(ConfigError, match=r"neither: sentence_embedding \(rank 2\)\. Run eval=none"):
        check(_cfg(pooled, tiny_model_dir, eval=scored))
    check(_cfg(pooled, tiny_model_dir))  # energy only
    fixed = _embedding(tmp_path / "fixed.onnx", shape=(1, 16))
    with pytest.raises(ConfigError, match=r"input input_ids has a fixed batch size 1, and the quality eval"):
        check(_cfg(fixed, tiny_model_dir, eval=scored))
    with pytest.raises(ConfigError, match=r"fixed batch size 1; set batch_size=1 \(not 2\)"):
        check(_cfg(fixed, tiny_model_dir, batch_size=2))
    check(_cfg(fixed, tiny_model_dir, batch_size=1))


@pytest.mark.parametrize("overrides, refusal", [
    ({"backend": "pytorch"}, r"runs through ONNX Runtime; set backend=onnxruntime"),
    ({"compile": "default"}, r"compile='default' is a torch.compile mode, which backend='onnxruntime' does not"),
    ({"prune": PruneConfig(name="l1-unstructured", amount=0.3)}, r"prune=l1-unstructured prunes a PyTorch model"),
    ({"weights": "random"}, r"carries its own weights; model.weights='random' does not apply"),
    ({"tokenizer": "empty"}, r"(?s)needs a tokenizer .* none loads from .*model.tokenizer_path"),
    ({"seq_len": 600}, r"seq_len=600 is longer than model 'tiny' allows \(max_position_embeddings=512\)"),
])
def test_options_a_given_file_cannot_take_are_refused(tiny_model_dir, tmp_path, overrides, refusal):
    path = _embedding(tmp_path / "lookup.onnx")
    model = _model(path, tiny_model_dir)
    if "weights" in overrides:
        model = replace(model, weights=overrides.pop("weights"))
    if overrides.pop("tokenizer", None):
        (tmp_path / "no-tokenizer").mkdir()
        model = replace(model, tokenizer_path=str(tmp_path / "no-tokenizer"))
    with pytest.raises(ConfigError, match=refusal):
        check(_cfg(path, tiny_model_dir, model=model, **overrides))


@pytest.mark.slow
def test_a_given_file_is_measured_and_scored_against_itself_end_to_end(tiny_model_dir, torchscript_file, tmp_path):
    news = tmp_path / "news.csv"
    news.write_text("text,label\n" + "".join(f"{['the match report', 'parliament debates'][i % 2]} {i},{i % 2}\n"
                                             for i in range(60)))
    result = run_bench(f"model.onnx_path={torchscript_file}", f"model.tokenizer_path={tiny_model_dir}",
                       "model.name=tiny", "backend=onnxruntime", "quant=fp32,int8", "profile=quick", "batch_size=2",
                       "seq_len=16", "eval=text-classification", f"eval.path={news}",
                       f"hydra.sweep.dir={tmp_path}/sweep", "-m")
    assert result.returncode == 0, result.stderr
    rows = load(tmp_path / "sweep").set_index("quant")
    assert (rows["status"] == "ok").all() and sorted(rows.index) == ["fp32", "int8"]
    digest = hashlib.sha256(torchscript_file.read_bytes()).hexdigest()
    assert set(rows["model_name_or_path"]) == {str(torchscript_file.resolve())}
    assert set(rows["model_revision"]) == {f"file sha256:{digest[:12]}"}
    assert rows["onnx_exporter"].str.startswith("given file (pytorch").all()
    assert "load_seconds" not in rows or rows["load_seconds"].isna().all()  # no PyTorch model was loaded
    # fp32 (fused by default) and int8 are both scored against the file at fp32 as given.
    assert (rows["quality_metric"] == "accuracy").all() and (rows["quality_ref"] > 0).all()
    assert rows.loc["fp32", "quality_ratio"] == pytest.approx(1, abs=0.05)
    assert rows.loc["int8", "quality_ratio"] > 0 and rows.loc["int8", "quantized_layers"] > 0
    assert (rows["energy_j_per_inference"] > 0).all()
