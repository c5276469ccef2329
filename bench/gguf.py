"""A GGUF checkpoint as a cached transformers directory (safetensors, config, tokenizer).

Reading a GGUF file dequantises every tensor (tens of seconds) and transformers cannot save the model it
yields, so the first run converts the file once and every later run loads the cached copy in about a second.
The copy holds the dequantised weights: a 4-bit GGUF gives fp32 weights that carry the 4-bit error. It is
keyed by the file's content and the versions of the libraries that dequantise it, so another file, or a
transformers or gguf release that reads it differently, makes another copy.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

from bench.errors import ConfigError
from bench.files import file_digest, stable_key, write_atomically

log = logging.getLogger(__name__)
CACHE_DIR = Path("~/.cache/energy-bench/models")


def choose(files: list[Path], wanted: str | None, where: str) -> Path:
    """The one GGUF file of a package, or the one model.gguf_file names; several without a choice are refused."""
    names = ", ".join(f.name for f in files)
    if wanted is not None:
        chosen = [f for f in files if f.name == wanted]
        if not chosen:
            raise ConfigError(f"model.gguf_file={wanted!r} is not in {where}; choose one of: {names}")
        return chosen[0]
    if len(files) > 1:
        raise ConfigError(f"{where} carries {len(files)} GGUF files; choose one with model.gguf_file=<name>: {names}")
    return files[0]


def copy_dir(gguf_file: Path, name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the converted copy of `gguf_file` lives: `cache_dir/<name>-<key of its content and readers>`."""
    try:
        gguf_version = importlib.metadata.version("gguf")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"reading {gguf_file.name} needs the gguf package (pip install --no-deps gguf)") from None
    key = stable_key({"file": gguf_file.name, "sha256": file_digest(gguf_file), "gguf": gguf_version,
                      "transformers": importlib.metadata.version("transformers")})
    return cache_dir.expanduser() / f"{name}-{key}"


def converted(gguf_file: Path, name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """The directory of the converted copy of `gguf_file` (made on first use)."""
    target = copy_dir(gguf_file, name, cache_dir)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    log.info("converting %s once to a transformers copy in %s (about 30 s)", gguf_file.name, target)
    directory, filename = str(gguf_file.parent), gguf_file.name
    config = AutoConfig.from_pretrained(directory, gguf_file=filename)
    # The copy is plain dequantised weights: a quantization_config would make transformers expect GGUF again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf_file), return_tensors=True, model_to_load=model)["tensors"]
    missing = set(model.load_state_dict(tensors, strict=False).missing_keys)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if missing - tied:
        raise ConfigError(f"{gguf_file} lacks weights for {sorted(missing - tied)}: not a complete causal LM")

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(directory, gguf_file=filename).save_pretrained(tmp)

    write_atomically(target, save, directory=True)  # a killed conversion never leaves a half copy to load
    return target
