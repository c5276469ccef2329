"""Where a model's GGUF file is, and the file as a cached transformers directory (safetensors, config, tokenizer).

Reading a GGUF file dequantises every tensor (tens of seconds) and transformers cannot save the model it
yields, so the first run converts the file once and every later run loads the cached copy in about a second.
The copy holds the dequantised weights: a 4-bit GGUF gives fp32 weights that carry the 4-bit error. It is
keyed by the file's content and the versions of the libraries that dequantise it, so another file, or a
transformers or gguf release that reads it differently, makes another copy. A backend that runs the GGUF file
itself (llama.cpp) needs only the config and the tokenizer: `described` caches those alone, in seconds.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Source:
    file: Path
    revision: str  # as the row records it: the package==version or `local`, with the file where there are several
    name: str  # what its cached copies are named after


def locate(cfg: Any) -> Source | None:
    """The GGUF file a ModelConfig names, found without reading it: the one (or model.gguf_file) of a
    package:<module> that carries .gguf files, a local .gguf file, or one in a local directory that has no
    config.json. None for any other model."""
    from bench.models import PACKAGE_PREFIX, package

    ref = cfg.name_or_path
    if ref.startswith(PACKAGE_PREFIX):
        directory, dist, version = package(cfg)
        files, where, revision, name = sorted(directory.glob("*.gguf")), f"package {dist}=={version}", \
            f"{dist}=={version}", f"{dist}-{version}"
    else:
        path = Path(ref).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            files = [path]
        elif path.is_dir() and not (path / "config.json").is_file():
            files = sorted(path.glob("*.gguf"))
        else:
            files = []
        where, revision, name = repr(ref), "local", path.stem
    if not files:
        return None
    chosen = choose(files, cfg.gguf_file, where)
    # The file is part of the revision where there are several, so their rows stay apart.
    return Source(chosen, revision + (f":{chosen.name}" if len(files) > 1 else ""), name)


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


def described(gguf_file: Path, name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """A directory with the config and the tokenizer of `gguf_file` and no weights (made on first use, a few
    seconds): what a run needs when llama.cpp reads the weights. source.json names the file and its digest, so the
    directory's content identifies the weights too."""
    copy = copy_dir(gguf_file, name, cache_dir)
    target = copy.with_name(f"{copy.name}-described")
    if (target / "config.json").is_file():
        return target
    from transformers import AutoConfig, AutoTokenizer

    directory, filename = str(gguf_file.parent), gguf_file.name

    def save(tmp: Path) -> None:
        config = AutoConfig.from_pretrained(directory, gguf_file=filename)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(directory, gguf_file=filename).save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf_file": filename, "sha256": file_digest(gguf_file)}))

    write_atomically(target, save, directory=True)
    return target
