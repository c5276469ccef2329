"""PyTorch on CPU or CUDA: batches (eager or torch.compile'd), and generation over a transformers KV cache."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from transformers import DynamicCache, PreTrainedModel

from bench import scenarios
from bench.backends import BATCHES, GENERATION, BuildRequest, DecodeSteps
from bench.errors import ConfigError
from bench.footprint import model_bytes
from bench.variants.compile import check_available, compile_model
from bench.variants.quant import apply_quant

CAPABILITIES = (BATCHES, GENERATION)
TORCH_MODEL = True
REFERENCE = ("fp32", "pytorch")


def check(cfg: Any, device: str) -> None:
    """Eager PyTorch runs wherever torch sees the device (checked with the device itself); compile= needs a scenario
    whose calls are batch forwards, and inductor's compilers."""
    if cfg.compile == "none":
        return
    # A KV-cache decode changes shape every step (the cache grows, then is cut back): compiled, it would recompile
    # inside the windows. Those scenarios load the model with its LM head.
    if scenarios.get(cfg.scenario.name).CAUSAL_LM:
        batch_scenarios = [n for n in scenarios.names() if not scenarios.get(n).CAUSAL_LM]
        raise ConfigError(f"compile={cfg.compile!r} does not run with scenario={cfg.scenario.name}, which runs eager "
                          f"PyTorch: use compile=none, or compile with scenario={'|'.join(batch_scenarios)}")
    check_available(cfg.compile, device)


def build(req: BuildRequest) -> tuple[PyTorchBackend, dict[str, Any]]:
    variant, info = apply_quant(req.model, req.quant, req.device)
    info["model_bytes"] = model_bytes(variant)
    if req.compile != "none":
        variant, compiled = compile_model(variant, req.compile, req.inputs, req.device)
        info.update(compiled)
    return PyTorchBackend(variant, req.device), info


def logits_path(model: torch.nn.Module) -> str:
    """How lm_logits gets the scored positions' logits from this model: recorded in the row."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        return "logits_to_keep"
    return "all positions"  # the model computes every position's logits; the unscored ones are dropped


def lm_logits(model: torch.nn.Module, device: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Logits of a transformers causal LM, computed for the needed positions only where the model allows."""
    keep_arg = logits_path(model) == "logits_to_keep"

    @torch.inference_mode()
    def logits(ids: torch.Tensor, keep: int) -> torch.Tensor:
        extra = {"logits_to_keep": keep} if keep_arg else {}
        out = model(input_ids=ids.to(device), use_cache=False, **extra).logits
        return out[:, -keep:].float()

    return logits


class PyTorchBackend:
    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model = model
        self.device = torch.device(device)
        self.logits_path = logits_path(model)
        self.causal_logits = lm_logits(model, device)

    def prepare(self, inputs: dict[str, torch.Tensor]) -> Callable[[], Any]:
        on_device = {k: v.to(self.device) for k, v in inputs.items()}
        model = self.model

        @torch.inference_mode()
        def call() -> Any:
            return model(**on_device)

        return call

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**{k: v.to(self.device) for k, v in inputs.items()})

    def generation(self, prompt_ids: torch.Tensor, new_tokens: int) -> TorchGeneration:
        return TorchGeneration(self.model, str(self.device), prompt_ids, new_tokens)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TorchGeneration:
    """The two calls of a request on one model and batch of prompts, inputs already on the device."""

    def __init__(self, model: PreTrainedModel, device: str, prompt_ids: torch.Tensor, new_tokens: int) -> None:
        self.model = model
        self.prompt = prompt_ids.to(device)
        self.new_tokens = new_tokens
        # Serving computes the LM head for the last position only; the full (prompt_len x vocab) logits would
        # charge the prefill for work no deployment does.
        accepts = inspect.signature(model.forward).parameters
        self.head = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        # transformers renamed past_key_values to cache (5.x); older releases know only the first.
        self.cache_arg = "cache" if "cache" in accepts else "past_key_values"

    @torch.inference_mode()
    def filled(self) -> tuple[DynamicCache, torch.Tensor]:
        """One prefill from an empty cache: the cache, allocated afresh as each request's is, and the first token."""
        cache = DynamicCache()
        out = self.model(input_ids=self.prompt, **{self.cache_arg: cache}, use_cache=True, **self.head)
        return cache, out.logits[:, -1:].argmax(-1)

    def prefill(self) -> torch.Tensor:
        return self.filled()[1]

    def decode_steps(self) -> DecodeSteps:
        cache, first = self.filled()
        kwargs = {**self.head, self.cache_arg: cache, "use_cache": True}

        @torch.inference_mode()
        def advance(token: torch.Tensor, position: int) -> torch.Tensor:
            return self.model(input_ids=token, **kwargs).logits[:, -1:].argmax(-1)

        return DecodeSteps(first, self.prompt.shape[1], self.new_tokens, advance,
                           lambda length: cache.crop(length - cache.get_seq_length()), cache)
