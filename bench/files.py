"""Writing caches and results safely: atomic writes, stable keys for cached artefacts, digests of big files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def stable_key(parts: dict[str, Any]) -> str:
    """A short hash of `parts` that is the same in every process and Python version (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# (resolved path, mtime, size) -> sha256: a run hashes each big file (weights, GGUF, eval data) once.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The sha256 of a file's content, computed once per process for each (path, mtime, size)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(target: Path, write: Callable[[Path], None], directory: bool = False) -> Path:
    """Calls `write(tmp)` on a temporary sibling of `target` (a file, or a directory) and renames it onto
    `target`, so a killed process never leaves half a file where a reader would take it for whole.

    The temporary gets the permissions a plain `open` or `mkdir` would have given (mkstemp and mkdtemp make
    them private), and so does everything `write` puts in a temporary directory (save_pretrained writes its
    safetensors owner-only), so a cache shared by the users of a machine stays readable by them. A directory
    that another process finished first is kept: both built the same thing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        tmp.chmod(0o777 & ~_umask())
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o666 & ~_umask())
    try:
        write(tmp)
        if directory:
            mask = _umask()
            for path in tmp.rglob("*"):
                path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
        os.replace(tmp, target)
    except OSError:
        if not (directory and target.is_dir() and any(target.iterdir())):
            raise
    finally:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return target
