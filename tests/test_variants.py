"""Pruning and the static footprint of a variant: parameters, zeros, bytes and FLOPs."""

import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel, GPT2Config, GPT2Model

from bench.config import BenchConfig, ConfigError, PruneConfig, validate_for_device, validate_values
from bench.footprint import flops_per_inference, model_bytes, parameters
from bench.variants.prune import apply_prune
from bench.variants.quant import apply_quant

HIDDEN, HEADS, FFN, LAYERS, SEQ = 64, 4, 256, 2, 16


def _bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=FFN, max_position_embeddings=SEQ)
    return BertModel(config).eval()


def _inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 100, (batch, SEQ), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _prune(model, name: str, amount: float = 0.5):
    return apply_prune(model, PruneConfig(name=name, amount=amount), "cpu", torch.float32)


def _linear_flops(batch_tokens: int, in_features: int, out_features: int) -> int:
    return 2 * batch_tokens * in_features * out_features


def test_unstructured_pruning_zeroes_weights_but_leaves_shapes_and_dense_flops():
    dense = _bert()
    before = flops_per_inference(dense, _inputs(), 2)["flops_per_inference"]
    pruned, info = _prune(_bert(), "l1-unstructured", 0.7)
    after = parameters(pruned)
    assert after["linear_sparsity"] == pytest.approx(0.7, abs=0.01)
    assert after["params_total"] == parameters(dense)["params_total"]
    assert after["params_nonzero"] < parameters(dense)["params_nonzero"]
    # Dense kernels multiply the zeros too: nothing is saved in FLOPs.
    assert flops_per_inference(pruned, _inputs(), 2)["flops_per_inference"] == before
    assert not any(hasattr(m, "weight_mask") for m in pruned.modules())  # permanent, no mask hooks left


def test_head_pruning_removes_the_lowest_norm_heads_and_their_flops():
    model = _bert()
    query = model.encoder.layer[0].attention.self.query
    head = HIDDEN // HEADS
    with torch.no_grad():
        query.weight[1 * head:2 * head] *= 1e-3  # head 1 of layer 0 is the weakest by far
        model.encoder.layer[0].attention.self.key.weight[1 * head:2 * head] *= 1e-3
        model.encoder.layer[0].attention.self.value.weight[1 * head:2 * head] *= 1e-3
    kept_rows = torch.cat([query.weight[i * head:(i + 1) * head] for i in range(HEADS)
                           if i != 1]).clone()
    dense_flops = flops_per_inference(_bert(), _inputs(), 2)["flops_per_inference"]
    pruned, info = _prune(model, "heads", 0.25)
    layer0 = pruned.encoder.layer[0].attention
    assert info["prune_removed"] == LAYERS * 1
    assert layer0.self.query.weight.shape == (HIDDEN - head, HIDDEN)
    assert layer0.output.dense.weight.shape == (HIDDEN, HIDDEN - head)
    assert torch.equal(layer0.self.query.weight, kept_rows)  # the weak head went, the others kept their order
    assert pruned(**_inputs()).last_hidden_state.shape == (2, SEQ, HIDDEN)
    # Q, K, V and the output projection each lose a quarter of their width in every layer (the attention
    # scores and mixing lose a quarter too, so the drop is at least this).
    saved = LAYERS * 4 * _linear_flops(SEQ, HIDDEN, head)
    assert flops_per_inference(pruned, _inputs(), 2)["flops_per_inference"] <= dense_flops - saved


def test_ffn_pruning_shrinks_the_intermediate_layer():
    dense = _bert()
    pruned, info = _prune(_bert(), "ffn", 0.5)
    assert info["prune_removed"] == LAYERS * FFN // 2
    assert pruned.encoder.layer[1].intermediate.dense.out_features == FFN // 2
    assert pruned.encoder.layer[1].output.dense.in_features == FFN // 2
    saved = LAYERS * 2 * _linear_flops(SEQ, HIDDEN, FFN // 2)
    dense_flops = flops_per_inference(dense, _inputs(), 2)["flops_per_inference"]
    assert flops_per_inference(pruned, _inputs(), 2)["flops_per_inference"] == pytest.approx(dense_flops - saved)
    assert parameters(pruned)["params_total"] < parameters(dense)["params_total"]


def test_structured_pruning_always_keeps_one_head_and_one_neuron():
    pruned, _ = _prune(_bert(), "heads", 0.99)
    assert pruned.encoder.layer[0].attention.self.query.out_features == HIDDEN // HEADS
    pruned, _ = _prune(_bert(), "ffn", 0.999)
    assert pruned.encoder.layer[0].intermediate.dense.out_features == 1
    assert pruned(**_inputs()).last_hidden_state.isfinite().all()


def test_distilbert_layout_is_supported():
    torch.manual_seed(0)
    model = DistilBertModel(DistilBertConfig(vocab_size=100, dim=HIDDEN, n_layers=2, n_heads=HEADS,
                                             hidden_dim=FFN, max_position_embeddings=SEQ)).eval()
    pruned, info = _prune(model, "heads", 0.5)
    assert info["prune_removed"] == 2 * HEADS // 2
    assert pruned.transformer.layer[0].attention.q_lin.out_features == HIDDEN // 2
    assert pruned(**_inputs()).last_hidden_state.shape == (2, SEQ, HIDDEN)


def test_structured_pruning_of_an_unknown_layout_names_the_supported_ones():
    model = GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    with pytest.raises(ConfigError, match="model_type='gpt2'.*bert, roberta, distilbert.*l1-unstructured"):
        _prune(model, "ffn")


def test_int8_weights_take_a_quarter_of_the_bytes():
    fp32 = _bert()
    int8, info = apply_quant(_bert(), "int8", "cpu")
    linear_fp32 = sum(m.weight.numel() * 4 for m in fp32.modules() if isinstance(m, torch.nn.Linear))
    saved = model_bytes(fp32) - model_bytes(int8)
    assert info["quantized_layers"] == LAYERS * 6 + 1
    assert saved == pytest.approx(linear_fp32 * 3 / 4, rel=0.02)  # scales and zero points cost a few bytes


@pytest.mark.parametrize("overrides,message", [
    ({"prune": PruneConfig(name="heads", amount=1.5)}, r"prune.amount=1.5.*\(0, 1\)"),
    ({"prune": PruneConfig(name="magnitude")}, r"prune='magnitude'.*l1-unstructured, heads, ffn"),
    ({"calibration_samples": 0}, r"calibration_samples=0"),
])
def test_bad_prune_and_calibration_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_values(BenchConfig(**overrides))


@pytest.mark.parametrize("cfg,device,message", [
    (BenchConfig(prune=PruneConfig(name="semi-structured-2of4"), quant="bf16"), "cpu",
     r"semi-structured-2of4.*device=cuda.*l1-unstructured"),
    (BenchConfig(prune=PruneConfig(name="semi-structured-2of4"), quant="fp32"), "cuda:0", r"quant=fp16 or bf16"),
    (BenchConfig(quant="int8-wo"), "cpu", r"int8-wo.*backend=pytorch on CUDA only.*fp32, bf16, int8"),
    (BenchConfig(quant="int8-static"), "cpu", r"int8-static.*backend=onnxruntime on the CPU only"),
    (BenchConfig(quant="bf16", backend="onnxruntime"), "cpu", r"bf16.*fp32, int8, int8-static"),
])
def test_variants_a_device_cannot_run_are_refused_with_the_valid_ones(cfg, device, message):
    with pytest.raises(ConfigError, match=message):
        validate_for_device(cfg, device)
