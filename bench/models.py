"""Load a model by preset, hub id, local directory or registry package; `weights=random` builds it from its config."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import transformers
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer,
                          PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase)

from bench.config import ConfigError, ModelConfig

transformers.utils.logging.disable_progress_bar()

PACKAGE_PREFIX = "package:"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def resolve(cfg: ModelConfig) -> tuple[str, str]:
    """(path or hub id, revision as recorded in the row)."""
    ref = cfg.name_or_path
    if ref.startswith(PACKAGE_PREFIX):
        module_name = ref[len(PACKAGE_PREFIX):]
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"model {cfg.name!r}: registry package {module_name!r} is not installed "
                f"(pip install {module_name.replace('_', '-')})"
            ) from e
        dist = module_name.replace("_", "-")
        return str(module.get_model_path()), f"{dist}=={importlib.metadata.version(dist)}"
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith(("/", "./", "../", "~")):
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.name_or_path={ref!r}: no config.json in that directory "
                              "(give a directory written by save_pretrained, or a hub id)")
        return str(path), "local"
    return ref, cfg.revision


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


def load_config(cfg: ModelConfig, seq_len: int) -> tuple[PretrainedConfig, str, str]:
    """The architecture config, found before any weights load; checks seq_len against it."""
    if cfg.weights == "random" and cfg.random_init_config:
        try:
            config = getattr(transformers, cfg.random_init_config)()
        except AttributeError as e:
            raise ConfigError(f"model.random_init_config={cfg.random_init_config!r} is not a transformers "
                              "config class (e.g. BertConfig, DistilBertConfig)") from e
        ref, revision = cfg.name_or_path, f"{cfg.random_init_config}()"
    else:
        ref, revision = resolve(cfg)
        try:
            config = AutoConfig.from_pretrained(ref, revision=cfg.revision, local_files_only=True)
        except OSError:
            if not hub_reachable():
                raise _offline_error(cfg, ref) from None
            config = AutoConfig.from_pretrained(ref, revision=cfg.revision)
    max_len = getattr(config, "max_position_embeddings", None)
    if max_len is not None and seq_len > max_len:
        raise ConfigError(f"seq_len={seq_len} is longer than model {cfg.name!r} allows; choose 2..{max_len}")
    if cfg.weights == "pretrained" and Path(ref).is_dir() and not any((Path(ref) / f).exists() for f in WEIGHT_FILES):
        raise ConfigError(f"model directory {ref!r} has a config but no weights ({', '.join(WEIGHT_FILES)}); "
                          "give a directory with weights, or use model.weights=random")
    return config, ref, revision


def has_classification_head(config: PretrainedConfig) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])


def load_model(cfg: ModelConfig, config: PretrainedConfig, ref: str, seed: int) -> PreTrainedModel:
    """The fp32 model in eval mode, on the CPU; with its classification head when it has one."""
    auto = AutoModelForSequenceClassification if has_classification_head(config) else AutoModel
    if cfg.weights == "random":
        torch.manual_seed(seed)
        model = auto.from_config(config)
    else:
        model = auto.from_pretrained(ref, revision=cfg.revision, dtype=torch.float32)
    return model.eval()


def load_tokenizer(cfg: ModelConfig, ref: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(ref, revision=cfg.revision)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model {cfg.name!r} ({ref!r}) has no loadable tokenizer ({e}); the quality eval needs "
                          "one: give a directory with tokenizer files, or run eval=none") from e

