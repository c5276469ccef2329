"""Cache keys that follow content: model weights, hub commits, GGUF copies; cached files readable by all users."""

import hashlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import files
from bench.config import ConfigError, ModelConfig
from bench.files import file_digest, write_atomically
from bench.gguf import copy_dir
from bench.models import identity, resolve, weights_identity


def test_a_file_digest_follows_content_and_is_computed_once_per_version_of_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights one")
    first = file_digest(path)
    reads = []
    monkeypatch.setattr(files, "hashlib", SimpleNamespace(sha256=lambda: reads.append(1) or hashlib.sha256()))
    assert file_digest(path) == first and not reads  # the same path, mtime and size: not read again
    path.write_bytes(b"weights two")  # same size, new content and mtime
    os.utime(path, ns=(1, 1))
    assert file_digest(path) != first and reads == [1]


def test_a_local_model_is_identified_by_its_files_content_not_its_path(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"first training run")
    (model_dir / "README.md").write_text("notes")
    cfg = ModelConfig(name="local", name_or_path=str(model_dir))
    before = identity(cfg, str(model_dir), "local", seed=0)
    (model_dir / "README.md").write_text("other notes")  # not part of what the model computes
    assert identity(cfg, str(model_dir), "local", seed=0) == before
    (model_dir / "model.safetensors").write_bytes(b"retrained, same path")
    after = identity(cfg, str(model_dir), "local", seed=0)
    assert after["content"] != before["content"] and after["content"].startswith("sha256:")
    assert weights_identity(ModelConfig(weights="random"), str(model_dir)) is None


def test_a_hub_model_is_identified_by_the_commit_its_revision_resolves_to(tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "models--org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert weights_identity(ModelConfig(name_or_path="org/tiny"), "org/tiny") == f"commit:{commit}"
    (repo / "refs" / "main").write_text("f" * 40)  # main moved to a commit not in the cache
    assert weights_identity(ModelConfig(name_or_path="org/tiny"), "org/tiny") == "revision:main"


@pytest.fixture
def gguf_package(tmp_path, monkeypatch):
    """An installed registry package (a module and its dist-info) carrying two GGUF files."""
    package = tmp_path / "fake_gguf_models"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('the harness reads GGUF packages without importing')\n")
    for name in ("small.Q4_1.gguf", "small.Q8_0.gguf"):
        (package / name).write_bytes(name.encode())
    dist = tmp_path / "fake_gguf_models-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-gguf-models\nVersion: 0.3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    sys.modules.pop("fake_gguf_models", None)


def test_several_gguf_files_are_refused_with_the_list_or_chosen_by_name(gguf_package, monkeypatch):
    import bench.gguf

    monkeypatch.setattr(bench.gguf, "converted", lambda path, name: path.parent / f"copy-of-{path.name}")
    cfg = ModelConfig(name="small", name_or_path="package:fake_gguf_models")
    with pytest.raises(ConfigError, match="2 GGUF files; choose one with model.gguf_file=<name>: small.Q4_1.gguf, "
                                          "small.Q8_0.gguf"):
        resolve(cfg)
    ref, revision = resolve(ModelConfig(name="small", name_or_path="package:fake_gguf_models",
                                        gguf_file="small.Q8_0.gguf"))
    assert ref.endswith("copy-of-small.Q8_0.gguf") and revision == "fake-gguf-models==0.3:small.Q8_0.gguf"
    with pytest.raises(ConfigError, match="model.gguf_file='big.gguf' is not in package fake-gguf-models==0.3; "
                                          "choose one of: small.Q4_1.gguf, small.Q8_0.gguf"):
        resolve(ModelConfig(name="small", name_or_path="package:fake_gguf_models", gguf_file="big.gguf"))
    with pytest.raises(ConfigError, match="model.gguf_file='x.gguf': 'org/model' carries no GGUF file"):
        resolve(ModelConfig(name_or_path="org/model", gguf_file="x.gguf"))


def test_the_gguf_copy_is_keyed_by_the_files_content_and_the_converting_libraries(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    import importlib.metadata

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"quantized weights")
    first = copy_dir(gguf, "pkg-1.0", tmp_path)
    assert first == copy_dir(gguf, "pkg-1.0", tmp_path) and first.name.startswith("pkg-1.0-")
    gguf.write_bytes(b"requantized weights")
    assert copy_dir(gguf, "pkg-1.0", tmp_path) != first
    second = copy_dir(gguf, "pkg-1.0", tmp_path)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "9.9" if d == "transformers" else real(d))
    assert copy_dir(gguf, "pkg-1.0", tmp_path) != second  # another transformers may dequantise differently


def test_a_cached_directory_is_readable_as_its_folder_is(tmp_path):
    """save_pretrained writes its safetensors owner-only; another user would skip the copy and fail to read it."""
    mask = os.umask(0o022)
    try:
        def write(tmp: Path) -> None:
            (tmp / "sub").mkdir()
            for path in (tmp / "model.safetensors", tmp / "sub" / "config.json"):
                path.write_bytes(b"x")
                path.chmod(0o600)

        target = write_atomically(tmp_path / "copy", write, directory=True)
    finally:
        os.umask(mask)
    modes = {p.relative_to(target).as_posix(): p.stat().st_mode & 0o777 for p in [target, *target.rglob("*")]}
    assert modes == {".": 0o755, "model.safetensors": 0o644, "sub": 0o755, "sub/config.json": 0o644}
