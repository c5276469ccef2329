"""The load generator of scenario=serve: seeded arrivals, streamed completions, one record per request.

Open loop: Poisson arrivals at `rate` requests/s (exponential gaps from a numpy Generator seeded with the run's
seed), each request sent at its time whatever the server is doing, as independent users do. Closed loop:
`concurrency` clients, each sending its next request when its last one ends. Either stops sending at
`duration_s`; the requests in flight then drain, each bounded by its own timeout.

Every request asks for exactly `new_tokens` tokens (max_tokens = min_tokens = new_tokens, ignore_eos, greedy)
and is streamed, so each chunk's arrival time is recorded. llama-cpp-python streams one chunk per token except
where a character spans tokens (they come in one chunk), so a request is complete when the server ends it for
length with at most new_tokens chunks (and, where the server reports usage, exactly new_tokens tokens); the
tokens a chunk held beyond one are counted at its time. Anything else is a failed request with its reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import numpy as np

from bench.errors import ConfigError

if TYPE_CHECKING:  # httpx comes with the llamacpp extra: the row declarations import this module without it
    import httpx

logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
Clock = Callable[[], float]
OK, FAILED, TIMED_OUT = "ok", "failed", "timed out"


@dataclass
class Record:
    """One request, its times in seconds from the load's start."""

    index: int
    sent: float
    chunk_times: list[float] = field(default_factory=list)
    tokens: int = 0  # output tokens the request produced (new_tokens when ok)
    end: float | None = None
    status: str = FAILED
    error: str | None = None

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times[0] - self.sent if self.chunk_times else None

    @property
    def e2e_s(self) -> float | None:
        return self.end - self.sent if self.end is not None else None

    @property
    def itl_s(self) -> list[float]:
        """Gaps between consecutive chunks (tokens that shared a chunk have no gap of their own)."""
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]

    @property
    def token_times(self) -> list[float]:
        """Each output token's arrival: a chunk's time, tokens beyond one per chunk at the last chunk's."""
        extra = self.tokens - len(self.chunk_times)
        return self.chunk_times + self.chunk_times[-1:] * extra if extra > 0 else self.chunk_times[:self.tokens]


def arrivals(rate: float, duration_s: float, seed: int) -> np.ndarray:
    """Poisson arrival times in [0, duration_s): exponential gaps of mean 1/rate, seeded."""
    rng = np.random.default_rng(seed)
    times: list[np.ndarray] = []
    last = 0.0
    while last < duration_s:
        gaps = rng.exponential(1 / rate, size=max(16, int(rate * duration_s)))
        chunk = last + np.cumsum(gaps)
        times.append(chunk)
        last = float(chunk[-1])
    every = np.concatenate(times)
    return every[every < duration_s]


def completion_body(prompt: str, new_tokens: int, model: str | None, seed: int) -> dict[str, Any]:
    """Exactly new_tokens out: llama-cpp-python and vLLM honour min_tokens, vLLM and llama.cpp's llama-server
    ignore_eos; an OpenAI-compatible server ignores fields it does not know."""
    body = {"prompt": prompt, "max_tokens": new_tokens, "min_tokens": new_tokens, "ignore_eos": True,
            "temperature": 0.0, "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    return {**body, "model": model} if model else body


def _verdict(record: Record, finish: str | None, usage: dict[str, Any] | None, new_tokens: int,
             prompt_len: int | None) -> None:
    chunks = len(record.chunk_times)
    if usage and usage.get("completion_tokens") not in (None, new_tokens):
        record.error = f"the server counted {usage['completion_tokens']} output tokens, not {new_tokens}"
    elif usage and prompt_len and usage.get("prompt_tokens") not in (None, prompt_len):
        record.error = f"the server counted {usage['prompt_tokens']} prompt tokens, not {prompt_len}"
    elif finish != "length" or not 0 < chunks <= new_tokens:
        record.error = (f"the stream ended after {chunks} token chunk(s) with finish_reason={finish!r}, not "
                        f"{new_tokens} tokens ended for length (an early end of sequence or a stop)")
    else:
        record.tokens, record.status = new_tokens, OK


async def send(client: httpx.AsyncClient, url: str, body: dict[str, Any], record: Record, timeout_s: float,
               clock: Clock, t0: float, prompt_len: int | None = None) -> Record:
    """One streamed completion into `record`; never raises for what the server or the network does."""
    import httpx

    finish = usage = None
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url + "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")[:300]
                    raise RuntimeError(f"HTTP {response.status_code}: {text}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        raise RuntimeError(f"the server reported: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        # A chunk that only closes the stream (llama-cpp-python's last one) carries no token.
                        if choice.get("finish_reason") is None or choice.get("text"):
                            record.chunk_times.append(clock() - t0)
                        finish = choice.get("finish_reason") or finish
        record.end = clock() - t0
        _verdict(record, finish, usage, body["max_tokens"], prompt_len)
    except TimeoutError:
        record.end, record.status = clock() - t0, TIMED_OUT
        record.error = f"no complete answer within serve.request_timeout_s={timeout_s} s"
    except (httpx.HTTPError, RuntimeError, ValueError) as e:
        record.end, record.error = clock() - t0, f"{type(e).__name__}: {e}"
    return record


async def open_loop(times: Sequence[float], request: Callable[[int, float], Awaitable[Record]], clock: Clock,
                    t0: float) -> list[Record]:
    """Each request at its arrival time, in flight alongside the others; returns once all have ended."""
    tasks = []
    for i, at in enumerate(times):
        delay = at - (clock() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(request(i, clock() - t0)))
    return list(await asyncio.gather(*tasks))


async def closed_loop(concurrency: int, duration_s: float, request: Callable[[int, float], Awaitable[Record]],
                      clock: Clock, t0: float) -> list[Record]:
    """`concurrency` clients back to back until duration_s; returns once the last request has ended."""
    numbers = itertools.count()
    records: list[Record] = []

    async def client() -> None:
        while (now := clock() - t0) < duration_s:
            records.append(await request(next(numbers), now))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return sorted(records, key=lambda r: r.index)


def served_model(url: str, timeout_s: float = 10.0) -> str | None:
    """The first model id the server lists (vLLM requires it in each request)."""
    import httpx

    data = httpx.get(url + "/v1/models", timeout=timeout_s).json().get("data") or []
    return data[0].get("id") if data else None


def _server_counter(client: httpx.Client, url: str, model: str | None) -> tuple[Callable[[str], int] | None, str]:
    """A function counting a text's tokens with the server's own tokenizer, and its name; None without one."""
    import httpx

    endpoints = (("/extras/tokenize", lambda t: {"input": t}),  # llama-cpp-python
                 ("/tokenize", lambda t: {"prompt": t, **({"model": model} if model else {})}))  # vLLM, llama-server
    for path, body in endpoints:
        try:
            response = client.post(url + path, json=body("a"))
        except httpx.HTTPError:
            continue
        if response.status_code == 200 and "tokens" in response.json():
            return (lambda text, path=path, body=body:
                    len(client.post(url + path, json=body(text)).raise_for_status().json()["tokens"])), path
    return None, ""


def prompts(url: str, model: str | None, tokenizer: Any, ids: Sequence[int], prompt_len: int, most: int = 64
            ) -> tuple[list[str], str]:
    """Texts of exactly prompt_len tokens as the server counts them, cut from consecutive slices of the eval
    text's ids, and how they were counted.

    A server takes text, so each slice is decoded and counted again by the server's tokenizer (which adds BOS
    where the model wants it); a slice that counts differently is lengthened or shortened by the difference,
    a few times, and dropped if it never matches. Without a tokenize endpoint the local tokenizer counts, and
    the usage a server reports is checked per request instead.
    """
    import httpx

    with httpx.Client(timeout=30.0) as client:
        count, how = _server_counter(client, url, model)
        if count is None:
            count, how = (lambda text: len(tokenizer(text)["input_ids"])), "local tokenizer"
        texts = _cut(count, tokenizer, ids, prompt_len, most)
    if not texts:
        raise ConfigError(f"no slice of the eval text makes exactly scenario.prompt_len={prompt_len} tokens on the "
                          f"server ({how}); give a longer eval.path or another prompt_len")
    return texts, how


def _cut(count: Callable[[str], int], tokenizer: Any, ids: Sequence[int], prompt_len: int, most: int) -> list[str]:
    texts: list[str] = []
    for start in range(0, len(ids) - prompt_len + 1, prompt_len):
        length = prompt_len
        for _ in range(4):
            if not 0 < length <= len(ids) - start:
                break
            text = tokenizer.decode(list(ids[start:start + length]))
            n = count(text)
            if n == prompt_len:
                texts.append(text)
                break
            length += prompt_len - n
        if len(texts) == most:
            break
    return texts
