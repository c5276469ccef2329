"""One measuring run per device at a time, across processes: overlapping windows would share joules."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def lock_path(device: str, lock_dir: str | None = None) -> Path:
    directory = Path(lock_dir or os.path.join(tempfile.gettempdir(), "energy-bench-locks"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{socket.gethostname()}-{device.replace(':', '')}.lock"


@contextlib.contextmanager
def device_lock(device: str, lock_dir: str | None = None) -> Iterator[Path]:
    """Holds an exclusive flock on the device's lock file; says so when it has to wait for another run."""
    path = lock_path(device, lock_dir)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            log.warning("waiting for %s to finish measuring %s (lock %s)", holder, device, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield path
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
