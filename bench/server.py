"""A server process's life: started on loopback in its own process group, ready, and always stopped.

The harness starts the server as a child in a new session (so a Ctrl-C at the terminal reaches the harness
only, which then stops the server in order) and asks the kernel to send it SIGTERM if the harness dies without
cleaning up (PR_SET_PDEATHSIG, Linux). While a server runs, SIGTERM to the harness raises SystemExit, so every
`finally` runs and the server is stopped: SIGTERM to its group, SIGKILL after a grace period, then the port is
checked free. An external server (serve.url) is only checked: it must be on this host, whose energy is read.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from bench.errors import ConfigError

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
READY_PATH = "/v1/models"  # every OpenAI-compatible server answers it once its model is loaded
LOG_TAIL_CHARS = 3000


class ServerError(RuntimeError):
    """The server did not become ready, exited early, or did not free its port."""


@dataclass
class Server:
    url: str  # base URL, no trailing slash
    command: str  # what was started, or "external"
    pid: int | None  # the serving process (None: an external server whose pid was not given)
    log_path: Path | None


def port_free(port: int, host: str = HOST) -> bool:
    """No socket listens on host:port. SO_REUSEADDR, as servers set it, so a closed connection's TIME_WAIT
    (which lingers for a minute and blocks no new server) does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    """ConfigError when a fixed port is taken (0 picks a free one when the server starts)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"serve.port={port} is not valid; give 1..65535, or serve.port=0 to pick a free port")
    if port and not port_free(port):
        raise ConfigError(f"serve.port={port} is already in use on {HOST}; stop what listens there, choose another "
                          "port, or give serve.port=0 to pick a free one")


def _is_local(address: str) -> bool:
    """True for this host's own addresses: loopback, or any address a socket can bind to here."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def check_local_url(url: str) -> str:
    """The URL without a trailing slash; ConfigError unless it is http(s) on this host."""
    parsed = urlparse(url)
    why = ("energy is read on this host (its CPU package, its GPUs, or the server process's CPU time), so the "
           "server must run here: give http://127.0.0.1:<port>, http://localhost:<port> or one of this host's own "
           "addresses")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"serve.url={url!r} is not an http(s) URL with a host; {why}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or 80)}
    except socket.gaierror as e:
        raise ConfigError(f"serve.url={url!r}: its host {parsed.hostname!r} does not resolve ({e}); {why}") from None
    remote = sorted(a for a in addresses if not _is_local(a))
    if remote:
        raise ConfigError(f"serve.url={url!r} is not on this host ({parsed.hostname} is {', '.join(remote)}); {why}")
    return url.rstrip("/")


def llama_cpp_command(gguf: Path, port: int, threads: int, n_ctx: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server (bench/llama_server.py) on loopback, on `threads` cores.

    interrupt_requests=False: its default cuts a streaming request short when the next one arrives, which
    would end requests early under load. logits_all=False: its default computes the logits of every prompt
    position, work no deployment does (the same reason the generate scenario keeps only the last position's).
    """
    return [sys.executable, "-m", "bench.llama_server", "--model", str(gguf), "--host", HOST, "--port", str(port),
            "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx),
            "--interrupt_requests", "False", "--logits_all", "False"]


def log_tail(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    text = path.read_text(errors="replace")
    return text[-LOG_TAIL_CHARS:] if text.strip() else "(the log is empty)"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """For the block's duration, SIGTERM raises SystemExit(143) in the main thread, so `finally` blocks run;
    SIGINT already raises KeyboardInterrupt. The previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_ready(url: str, timeout_s: float, process: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    """Polls url + READY_PATH until it answers 200; ServerError on timeout or when the process exits."""
    import httpx  # the llamacpp extra's

    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise ServerError(f"the server exited with code {process.returncode} before it was ready; the end "
                                  f"of its log ({log_path}):\n{log_tail(log_path)}")
            try:
                response = client.get(url + READY_PATH)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                raise ServerError(f"the server at {url} was not ready within serve.ready_timeout_s={timeout_s} s "
                                  f"({last}); raise serve.ready_timeout_s if it is still loading. The end of its log "
                                  f"({log_path}):\n{log_tail(log_path)}")
            time.sleep(0.2)


def stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the server's process group, SIGKILL after grace_s; reaps it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("the server (pid %d) did not stop within %.3g s of SIGTERM; killing it", process.pid, grace_s)
    # Whatever else its group started goes too, and a server that ignored SIGTERM is killed.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_port_free(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_free(port):
        if time.monotonic() >= deadline:
            raise ServerError(f"port {port} is still in use {timeout_s} s after the server stopped")
        time.sleep(0.05)


@contextlib.contextmanager
def started(command: list[str], port: int, ready_timeout_s: float, grace_s: float) -> Iterator[Server]:
    """Starts `command` (which must listen on HOST:port), waits until ready, yields it, and always stops it."""
    check_port(port)
    log_path = Path(tempfile.mkdtemp(prefix="energy-bench-server-")) / "server.log"
    url = f"http://{HOST}:{port}"
    with sigterm_raises(), open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.info("server pid %d on %s, log %s: %s", process.pid, url, log_path, shlex.join(command))
        try:
            wait_ready(url, ready_timeout_s, process, log_path)
            yield Server(url, shlex.join(command), process.pid, log_path)
        finally:
            stop(process, grace_s)
            wait_port_free(port)
            log.info("server pid %d stopped, port %d free", process.pid, port)


@contextlib.contextmanager
def external(url: str, pid: int | None, ready_timeout_s: float) -> Iterator[Server]:
    """An already running server on this host: checked, never started or stopped."""
    base = check_local_url(url)
    wait_ready(base, ready_timeout_s)
    yield Server(base, "external", pid, None)
