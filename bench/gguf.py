"""A GGUF checkpoint as a cached transformers directory (safetensors, config, tokenizer).

Reading a GGUF file dequantises every tensor (tens of seconds) and transformers cannot save the model it
yields, so the first run converts the file once and every later run loads the cached copy in about a second.
The copy holds the dequantised weights: a 4-bit GGUF gives fp32 weights that carry the 4-bit error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench.errors import ConfigError
from bench.files import write_atomically

log = logging.getLogger(__name__)
CACHE_DIR = Path("~/.cache/energy-bench/models")


def converted(gguf_file: Path, name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """The directory of the converted copy of `gguf_file`, cached under `cache_dir/name`."""
    target = cache_dir.expanduser() / name
    if (target / "config.json").is_file():
        return target
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
        import gguf  # noqa: F401  (transformers needs it to read the file; fail here with the fix)
    except ImportError as e:
        raise ConfigError(f"reading {gguf_file.name} needs the gguf package (pip install --no-deps gguf)") from e
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
