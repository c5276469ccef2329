"""llama.cpp in process (llama-cpp-python): a GGUF file of the model, one sequence at a time, on the run's threads.

The variant is a GGUF file (bench/variants/gguf.py); the PyTorch model is never loaded. Generation drives
llama.cpp's C API directly: a batch of the prompt with logits for its last position only, greedy argmax over
those logits, one token per decode step, and the KV cache cut back to the prompt (llama_memory_seq_rm) when a
request's steps are done. No sampler and no end-of-sequence check: every request yields exactly new_tokens
tokens, as with PyTorch. On CUDA (a llama-cpp-python built with GGML_CUDA) every layer is offloaded.
"""

from __future__ import annotations

import importlib.util
import weakref
from typing import Any

import numpy as np
import torch

from bench.backends import GENERATION, BuildRequest, DecodeSteps
from bench.errors import ConfigError
from bench.llama_server import avoid_amx_crash, runtime_columns
from bench.variants.gguf import find_gguf, variant_file

CAPABILITIES = (GENERATION,)
TORCH_MODEL = False
# The 16-bit GGUF of the same shipped file, through llama.cpp too: what its quantizations are made from.
REFERENCE = ("f16", "llamacpp")
INSTALL = 'pip install "energy-bench[llamacpp]"'
SEQUENCE = 0  # the one sequence of the context


def check(cfg: Any, device: str) -> None:
    """Before any work: one sequence per call, a GGUF model, llama-cpp-python installed (with CUDA for cuda)."""
    if cfg.batch_size != 1:
        raise ConfigError(f"backend=llamacpp runs one sequence at a time: batch_size={cfg.batch_size} is not "
                          "supported; choose batch_size=1 (for concurrent requests measure llama.cpp's server: "
                          "scenario=serve with serve.concurrency=N)")
    find_gguf(cfg.model)
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"backend=llamacpp needs llama-cpp-python, which is not installed: {INSTALL} (it builds "
                          "llama.cpp from source: a few minutes)")
    if device.startswith("cuda"):
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            raise ConfigError(f"backend=llamacpp on device={device!r} needs llama-cpp-python built with CUDA; this "
                              "one runs on the CPU only. Rebuild it: CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install "
                              "--force-reinstall --no-cache-dir llama-cpp-python; or run on device=cpu")


def build(req: BuildRequest) -> tuple[LlamaCppBackend, dict[str, Any]]:
    path, info = variant_file(req.source, req.quant, req.cache_dir, req.threads)
    backend = LlamaCppBackend(str(path), req.device, req.threads, req.context, req.seed)
    return backend, {**info, **runtime_columns(), "llama_gpu_layers": backend.gpu_layers}


class LlamaCppBackend:
    name = "llamacpp"
    logits_path = "llama.cpp, the scored positions' logits only"

    def __init__(self, path: str, device: str, threads: int, context: int, seed: int) -> None:
        import llama_cpp

        avoid_amx_crash()  # llama.cpp's AMX path crashes on quantised files here (bench/llama_server.py)
        self.api = llama_cpp
        on_cuda = device.startswith("cuda")
        self.gpu_layers = -1 if on_cuda else 0  # -1: every layer
        # n_batch = n_ctx: a prompt or a perplexity window is one llama_decode call, as it is one forward in PyTorch.
        self.llama = llama_cpp.Llama(
            model_path=path, n_gpu_layers=self.gpu_layers, split_mode=llama_cpp.LLAMA_SPLIT_MODE_NONE,
            main_gpu=int(device.partition(":")[2] or 0) if on_cuda else 0, n_ctx=context, n_batch=context,
            n_threads=threads, n_threads_batch=threads, seed=seed, logits_all=False, verbose=False)
        self.ctx = self.llama.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = self.llama.n_vocab()
        self.capacity = self.llama.n_ctx()
        self.batch = llama_cpp.llama_batch_init(self.capacity, 0, 1)
        weakref.finalize(self, llama_cpp.llama_batch_free, self.batch)

    def run(self, tokens: list[int], start: int, outputs: int) -> None:
        """Decodes `tokens` at positions start.. of the sequence, with logits for the last `outputs` of them."""
        if start + len(tokens) > self.capacity:
            raise ValueError(f"{start + len(tokens)} positions exceed the context of {self.capacity}")
        batch, first_output = self.batch, len(tokens) - outputs
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
            batch.seq_id[i][0] = SEQUENCE
            batch.logits[i] = i >= first_output
        if (code := self.api.llama_decode(self.ctx, batch)) != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def logits(self, i: int) -> np.ndarray:
        """The logits of output i of the last call (a view into llama.cpp's buffer, valid until the next call)."""
        return np.ctypeslib.as_array(self.api.llama_get_logits_ith(self.ctx, i), shape=(self.vocab,))

    def clear(self) -> None:
        self.api.llama_memory_clear(self.memory, True)

    def cut(self, length: int) -> None:
        """Drops every position from `length` on: the sequence's cache goes back to its first `length` tokens."""
        if not self.api.llama_memory_seq_rm(self.memory, SEQUENCE, length, -1):
            raise RuntimeError(f"llama.cpp could not cut the KV cache back to {length} tokens")

    def generation(self, prompt_ids: torch.Tensor, new_tokens: int) -> LlamaGeneration:
        return LlamaGeneration(self, prompt_ids, new_tokens)

    def causal_logits(self, ids: torch.Tensor, keep: int) -> torch.Tensor:
        rows = []
        for sequence in ids.tolist():  # one sequence at a time, each from an empty cache
            self.clear()
            self.run(sequence, 0, keep)
            rows.append(np.stack([self.logits(j) for j in range(len(sequence) - keep, len(sequence))]))
        return torch.from_numpy(np.stack(rows))

    def sync(self) -> None:
        self.api.llama_synchronize(self.ctx)


class LlamaGeneration:
    """A request's prefill and decode steps on one prompt, greedy from llama.cpp's logits."""

    def __init__(self, backend: LlamaCppBackend, prompt_ids: torch.Tensor, new_tokens: int) -> None:
        if prompt_ids.shape[0] != 1:
            raise ValueError(f"llama.cpp generation runs one sequence, not {prompt_ids.shape[0]}")
        self.backend = backend
        self.prompt = prompt_ids[0].tolist()
        self.new_tokens = new_tokens

    def prefill(self) -> int:
        self.backend.clear()
        self.backend.run(self.prompt, 0, 1)
        return int(self.backend.logits(-1).argmax())

    def decode_steps(self) -> DecodeSteps:
        backend = self.backend

        def advance(token: int, position: int) -> int:
            backend.run([token], position, 1)
            return int(backend.logits(-1).argmax())

        return DecodeSteps(self.prefill(), len(self.prompt), self.new_tokens, advance, backend.cut, backend.memory)
