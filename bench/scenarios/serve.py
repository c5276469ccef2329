"""Serving (docs/serving.md): a real OpenAI-compatible server on this host, driven by a seeded load.

The harness starts llama.cpp's server (llama-cpp-python) on loopback with the variant's GGUF file, or uses a
server already running on this host (serve.url). With the model loaded and no requests it measures the
server's idle power; after a few warm-up requests it runs the load (bench/load.py) for serve.duration_s while
the meter is read in short consecutive ticks. The steady state runs from serve.ramp_s until arrivals stop; the
ramp and the drain after it are recorded but excluded. The steady state's ticks are grouped into windows of at
least the profile's window length and one request's worth of output tokens; each window's net joules (gross -
idle power x seconds) over the output tokens streamed in it is one sample of joules per output token, and the
figure and its interval are the protocol's (bench/measure.py). A request is charged its share of the net
energy by its tokens, so J/request = new_tokens x J/output token: prefill included, since the server's whole
net energy is charged to the tokens it streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import PretrainedConfig, PreTrainedModel

from bench import backends, load, models, server
from bench import progress as display  # `progress` is this scenario's end-of-run line
from bench.config import BenchConfig, ConfigError, ServeConfig, choice, resolve_device
from bench.digits import figure, plain
from bench.llama_server import runtime_columns
from bench.load import OK, TIMED_OUT, Record
from bench.measure import (CI_METHOD, Idle, Measurement, cpu_busy_seconds, idle_baseline, interval,
                           interval_columns)
from bench.meters import EnergyMeter, open_meter
from bench.meters.estimate import processes_cpu_time
from bench.quality.perplexity import text_ids
from bench.row import Column, with_interval
from bench.scenarios import EnergyAxis, RunContext
from bench.variants.gguf import find_gguf, variant_file

EVAL_KINDS = ("perplexity",)  # the prompts are cut from its text
AXIS = EnergyAxis("energy_j_per_output_token", "output token", "energy_j_per_request")
CAUSAL_LM = True
PERCENTILES = ("p50", "p90", "p99")
log = logging.getLogger(__name__)
COLUMNS = [
    Column("prompt_len", "int", "tokens", "tokens per prompt (as the server's tokenizer counts them)"),
    Column("new_tokens", "int", "tokens", "tokens generated per request, exactly"),
    Column("prompt_source", "str", "", "text (slices of the eval text)"),
    Column("prompt_count_by", "str", "", "what counted each prompt's tokens: the server's tokenize endpoint, or the "
           "local tokenizer where it has none"),
    Column("prompts_distinct", "int", "", "distinct prompts the requests cycle through"),
    Column("serve_server", "str", "", "llama_cpp.server (started by the harness) | external:<serve.url>", key=True),
    Column("serve_mode", "str", "", "open (Poisson arrivals at serve_rate) | closed (serve_concurrency clients)",
           key=True),
    Column("serve_rate", "float", "1/s", "open loop: mean arrival rate asked for", key=True),
    Column("serve_concurrency", "int", "", "closed loop: clients sending back to back", key=True),
    Column("serve_duration_s", "float", "s", "time arrivals ran (then in-flight requests drained)", key=True),
    Column("serve_ramp_s", "float", "s", "start of the load excluded as ramp-up"),
    Column("steady_start_s", "float", "s", "start of the steady state, from the load's start"),
    Column("steady_end_s", "float", "s", "end of the steady state (arrivals stop), from the load's start"),
    Column("drain_s", "float", "s", "time from the steady state's end until the last request ended"),
    Column("requests_sent", "int", "", "requests of the load (warm-up excluded), ramp and steady state"),
    Column("requests_ok", "int", "", "of them, complete: exactly new_tokens streamed"),
    Column("requests_failed", "int", "", "of them, failed (an error, or another count of tokens)"),
    Column("requests_timed_out", "int", "", "of them, without a complete answer within serve.request_timeout_s"),
    Column("request_errors", "list[str]", "", "each distinct failure reason with its count"),
    Column("steady_requests", "int", "", "requests sent in the steady state (SLO attainment's denominator)"),
    Column("warmup_requests", "int", "", "requests sent one by one before the load, not measured"),
    Column("achieved_rps", "float", "1/s", "complete requests that ended in the steady state per second"),
    Column("output_tokens_s", "float", "1/s", "output tokens streamed in the steady state per second"),
    *[Column(f"{what}_ms_{p}", "float", "ms", f"{meaning}, {p}, over the steady state's complete requests")
      for what, meaning in (("ttft", "time to first token from sending, queueing included"),
                            ("itl", "inter-token latency (gap between streamed chunks)"),
                            ("e2e", "request latency from sending to the last token"))
      for p in PERCENTILES],
    *with_interval("energy_j_per_output_token", "J", "mean over windows of net joules per output token streamed "
                   "in the window (prefill included)"),
    *with_interval("energy_j_per_request", "J", "new_tokens x energy_j_per_output_token: a request charged by its "
                   "share of the tokens (docs/serving.md)"),
    Column("window_output_tokens", "list[int]", "tokens", "output tokens streamed in each window"),
    Column("slo_ttft_ms", "float", "ms", "serve.slo_ttft_ms: a request meets it with TTFT at most this"),
    Column("slo_itl_ms", "float", "ms", "serve.slo_itl_ms: a request meets it with its mean inter-token time at "
           "most this"),
    Column("slo_attainment", "float", "fraction", "share of the steady state's requests (failed ones as misses) "
           "meeting every SLO given"),
    Column("goodput_rps", "float", "1/s", "steady-state requests meeting every SLO given, per second"),
    Column("server_idle_power_w", "float", "W", "the server's power with the model loaded and no requests"),
    Column("server_url", "str", "", "the server's base URL"),
    Column("server_command", "str", "", "the command that started the server, or `external`"),
]
SUMMARY_COLUMNS = {
    "model": "model",
    "quant": "quant",
    "serve_rate": "rate",
    "serve_concurrency": "clients",
    "status": "status",
    "requests_ok": "ok",
    "requests_failed": "failed",
    "requests_timed_out": "timed out",
    "achieved_rps": "req/s",
    "output_tokens_s": "tok/s",
    "ttft_ms_p50": "TTFT p50",
    "ttft_ms_p99": "TTFT p99",
    "itl_ms_p50": "ITL p50",
    "energy_j_per_output_token": "J/out tok",
    "energy_j_per_output_token_ci_low": "ci low",
    "energy_j_per_output_token_ci_high": "ci high",
    "energy_j_per_request": "J/request",
    "slo_attainment": "SLO met",
    "energy_source": "source",
    "quality": "quality",
}
PROMPT_SOURCES = ("auto", "text")  # a server takes text: random ids have none


def ramp_s(v: ServeConfig) -> float:
    return v.duration_s / 10 if v.ramp_s is None else v.ramp_s


def validate(cfg: BenchConfig) -> None:
    s, v, p = cfg.scenario, cfg.serve, cfg.profile
    choice("scenario.prompt_source", s.prompt_source, PROMPT_SOURCES)
    if s.prompt_len < 1 or s.new_tokens < 2:
        raise ConfigError(f"scenario.prompt_len={s.prompt_len} and scenario.new_tokens={s.new_tokens} are not valid; "
                          "need prompt_len >= 1 and new_tokens >= 2")
    if cfg.preprocess:
        raise ConfigError("preprocess=true does not apply to scenario=serve: the server tokenises inside its own "
                          "process, and its joules are already in the request's figure; set preprocess=false")
    if (v.rate is None) == (v.concurrency is None):
        raise ConfigError(f"serve.rate={v.rate} and serve.concurrency={v.concurrency}: give exactly one, serve.rate=<"
                          "requests/s> (open loop) or serve.concurrency=<clients> (closed loop; with the default "
                          "grid's rates, add serve.rate=null)")
    if v.rate is not None and not (v.rate > 0 and math.isfinite(v.rate)):
        raise ConfigError(f"serve.rate={v.rate} is not valid; it must be a number of requests/s > 0, e.g. 0.5, 1, 2")
    if v.concurrency is not None and v.concurrency < 1:
        raise ConfigError(f"serve.concurrency={v.concurrency} is not valid; it must be an integer >= 1")
    ramp = ramp_s(v)
    if not 0 <= ramp < v.duration_s:
        raise ConfigError(f"serve.duration_s={v.duration_s} and serve.ramp_s={v.ramp_s} are not valid; need "
                          "0 <= ramp_s < duration_s (ramp_s=null: 10% of duration_s)")
    if v.duration_s - ramp < p.min_windows * p.min_window_s:
        raise ConfigError(f"serve.duration_s={v.duration_s} leaves a steady state of {v.duration_s - ramp:.3g} s after "
                          f"the {ramp:.3g} s ramp, shorter than profile.min_windows={p.min_windows} windows of "
                          f"profile.min_window_s={p.min_window_s} s; raise serve.duration_s")
    for key in ("ready_timeout_s", "request_timeout_s"):
        if not getattr(v, key) > 0:
            raise ConfigError(f"serve.{key}={getattr(v, key)} is not valid; it must be > 0 seconds")
    for key in ("slo_ttft_ms", "slo_itl_ms"):
        if getattr(v, key) is not None and not getattr(v, key) > 0:
            raise ConfigError(f"serve.{key}={getattr(v, key)} is not valid; give milliseconds > 0, or null")
    if v.stop_grace_s < 0 or v.warmup_requests < 0 or not 0 <= v.max_failed_fraction < 1:
        raise ConfigError(f"serve.stop_grace_s={v.stop_grace_s}, serve.warmup_requests={v.warmup_requests}, "
                          f"serve.max_failed_fraction={v.max_failed_fraction} are not valid; need stop_grace_s >= 0, "
                          "warmup_requests >= 0 and 0 <= max_failed_fraction < 1")
    if cfg.batch_size != 1 or cfg.prune.name != "none":
        raise ConfigError(f"scenario=serve: the server forms its own batches from the requests in flight; got "
                          f"batch_size={cfg.batch_size}, prune={cfg.prune.name!r}: leave batch_size=1 and prune=none")
    if v.url is None and cfg.backend != "llamacpp":
        raise ConfigError(f"scenario=serve starts llama.cpp's server on the model's GGUF file: backend=llamacpp, not "
                          f"backend={cfg.backend!r}; or measure a server already running here with serve.url=")
    if v.pid is not None and v.url is None:
        raise ConfigError(f"serve.pid={v.pid} names the process of an external server; it goes with serve.url=")
    if cfg.model.weights != "pretrained":
        raise ConfigError("scenario=serve cuts its prompts from the eval text with the model's tokenizer: "
                          f"model.weights=pretrained, not {cfg.model.weights!r}")


def check_model(cfg: BenchConfig) -> tuple[PretrainedConfig, str, str]:
    """A decoder LM whose positions hold the request; its GGUF file (own server) or a server on this host."""
    s, v = cfg.scenario, cfg.serve
    # The server reads the GGUF file itself: only the config and tokenizer are needed here, never a PyTorch copy.
    config, ref, revision = models.load_config(cfg.model, s.prompt_len + s.new_tokens,
                                               "scenario.prompt_len + scenario.new_tokens",
                                               torch_weights=backends.torch_model(cfg.backend))
    if not models.is_decoder_lm(config):
        raise ConfigError(f"scenario=serve needs a decoder-only causal language model; model {cfg.model.name!r} "
                          f"({ref}) is a {config.model_type!r} model. Choose model=smollm2 or a GGUF causal LM")
    if v.url is None:
        find_gguf(cfg.model, "scenario=serve")
        server.check_port(v.port)
        return config, ref, revision
    server.check_local_url(v.url)
    if v.pid is not None and not Path(f"/proc/{v.pid}").exists():
        raise ConfigError(f"serve.pid={v.pid}: no such process on this host; give the external server's process id")
    meter = open_meter(cfg.meter, resolve_device(cfg.device), cores_in_use=1)
    meter.close()
    if meter.source == "estimate" and v.pid is None:
        raise ConfigError(f"serve.url={v.url!r} with meter={cfg.meter.source} (the estimate, from a process's CPU "
                          "time): the harness cannot see the external server's CPU time; give its process id with "
                          "serve.pid=<pid>, or read a counter (meter=rapl, or nvml on a GPU)")
    return config, ref, revision


def shape(cfg: BenchConfig) -> dict[str, Any]:
    """The request and the load, as row columns (their key=True columns are part of the configuration key)."""
    s, v = cfg.scenario, cfg.serve
    return {"prompt_len": s.prompt_len, "new_tokens": s.new_tokens, "seq_len": s.prompt_len + s.new_tokens,
            "serve_server": f"external:{v.url}" if v.url else "llama_cpp.server",
            "serve_mode": "open" if v.rate is not None else "closed", "serve_rate": v.rate,
            "serve_concurrency": v.concurrency, "serve_duration_s": v.duration_s}


def progress(row: dict[str, Any]) -> str:
    return (f"{row['requests_ok']}/{row['requests_sent']} requests ok, {plain(row['achieved_rps'])} req/s, TTFT p99 "
            f"{plain(row['ttft_ms_p99'])} ms, ITL p50 {plain(row['itl_ms_p50'])} ms, "
            f"{figure(row, 'energy_j_per_output_token')} J/output token, {figure(row, 'energy_j_per_request')} "
            "J/request")


# --- the run ---


@dataclass(frozen=True)
class Tick:
    """One reading of the meter during the load, seconds from the load's start."""

    start: float
    end: float
    joules: float


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    joules: float
    tokens: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


def run(model: PreTrainedModel, ctx: RunContext) -> tuple[dict[str, Any], list[Measurement], Any]:
    cfg, s, v = ctx.cfg, ctx.cfg.scenario, ctx.cfg.serve
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    row: dict[str, Any] = {}
    ids = text_ids(ctx.tokenizer, ctx.eval_set.test_texts[0]).tolist()
    with contextlib.ExitStack() as stack:
        if v.url:
            display.phase(f"serve: connecting to {v.url}")
            running = stack.enter_context(server.external(v.url, v.pid, v.ready_timeout_s))
        else:
            display.phase(f"serve: the GGUF file of quant={cfg.quant}")
            gguf, built = variant_file(cfg.model, cfg.quant, Path(cfg.eval.cache_dir).expanduser(), threads)
            row.update(built, **runtime_columns())
            port = v.port or server.free_port()
            command = server.llama_cpp_command(gguf, port, threads, s.prompt_len + s.new_tokens)
            display.phase("serve: starting the server")
            running = stack.enter_context(server.started(command, port, v.ready_timeout_s, v.stop_grace_s))
        meter = ctx.meter
        if meter.source == "estimate":  # the only meter that sees one process, not the whole package
            meter = stack.enter_context(contextlib.closing(
                open_meter(cfg.meter, ctx.device, threads, processes=(running.pid,))))
            row["energy_params"] = meter.params()
        model_id = load.served_model(running.url)
        texts, counted_by = load.prompts(running.url, model_id, ctx.tokenizer, ids, s.prompt_len)
        if len(texts) < 2:  # one prompt repeated would let the server reuse its cached prefix
            raise ConfigError(f"the eval text gives {len(texts)} prompt of {s.prompt_len} tokens; serving needs at "
                              "least 2 distinct ones: give a longer eval.path or a smaller scenario.prompt_len")
        row.update(prompt_source="text", prompt_count_by=counted_by, prompts_distinct=len(texts),
                   server_url=running.url, server_command=running.command, prepare_seconds=time.perf_counter() - t0)
        idle = idle_baseline(meter, lambda: None, cfg.profile, ctx.device.startswith("cuda"))
        session = Session(running.url, model_id, texts, cfg, min(ctx.min_window_s, 0.5), meter)
        busy_before = cpu_busy_seconds()
        server_cpu = processes_cpu_time((running.pid,)) if running.pid else None
        server_before = server_cpu() if server_cpu else 0.0
        log.info("load on %s: %s for %s s after %d warm-up request(s)", running.url,
                 f"{v.rate} requests/s (open loop)" if v.rate is not None else f"{v.concurrency} clients (closed loop)",
                 v.duration_s, v.warmup_requests)
        display.phase(f"serve: {v.warmup_requests} warm-up request(s)")
        records, ticks = asyncio.run(session.run())
        busy_after = cpu_busy_seconds()
        other = None
        if busy_before and busy_after and server_cpu and ticks:
            # Cores' worth of CPU time neither the harness nor the server used while the load ran.
            used = (busy_after[0] - busy_before[0]) - (busy_after[1] - busy_before[1]) - (server_cpu() - server_before)
            other = max(0.0, used) / (ticks[-1].end - ticks[0].start)
    measurement, columns_ = measured(records, ticks, idle, other, v, s.new_tokens, cfg.profile.target_ci,
                                     ctx.min_window_s, cfg.profile.confidence, cfg.profile.min_windows)
    display.phase(f"serve: load over: {len(records)} requests, drained in {columns_['drain_s']:.1f} s")
    found = measurement.interval(cfg.profile.confidence)
    display.window("serve steady state", len(measurement.window_calls), found and found.relative_half_width,
                   cfg.profile.target_ci)
    row.update(columns_, warmup_requests=v.warmup_requests, warmup_seconds=session.warmup_seconds,
               warmup_calls=v.warmup_requests, warmup_settled=True)
    # The quality of the variant the server ran, scored in this process after the server has stopped.
    backend = ctx.build(model, {})[0] if ctx.eval_set else None
    return row, [measurement], backend


class Session:
    """The warm-up, then the load with the meter read in ticks alongside, in one event loop."""

    def __init__(self, url: str, model_id: str | None, texts: list[str], cfg: BenchConfig, tick_s: float,
                 meter: EnergyMeter) -> None:
        self.url, self.model_id, self.texts, self.cfg, self.tick_s, self.meter = url, model_id, texts, cfg, tick_s, meter
        self.clock = time.perf_counter
        self.warmup_seconds = 0.0

    def body(self, i: int) -> dict[str, Any]:
        return load.completion_body(self.texts[i % len(self.texts)], self.cfg.scenario.new_tokens, self.model_id,
                                    self.cfg.seed + i)

    async def run(self) -> tuple[list[Record], list[Tick]]:
        import httpx  # the llamacpp extra's

        v, s = self.cfg.serve, self.cfg.scenario
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=None, limits=limits) as client:
            def request(i: int, now: float, t0: float) -> Any:
                return load.send(client, self.url, self.body(i), Record(i, now), v.request_timeout_s, self.clock, t0,
                                 s.prompt_len)

            start = self.clock()
            for i in range(v.warmup_requests):
                warm = await request(i, 0.0, self.clock())
                if warm.status != OK:
                    raise RuntimeError(f"warm-up request {i + 1} of {v.warmup_requests} failed: {warm.error}")
            self.warmup_seconds = self.clock() - start
            # The whole load is metered, so the display shows its plan now and nothing until it has drained.
            ends = time.strftime("%H:%M:%S", time.localtime(time.time() + v.duration_s))
            display.phase(f"serve: load, ramp {ramp_s(v):.3g} s, steady state until {v.duration_s:.3g} s ({ends}), "
                          "then drain; no updates while it runs")
            t0 = self.clock()
            done = asyncio.Event()
            ticks = asyncio.create_task(self.read_meter(t0, done))
            try:
                if v.rate is not None:
                    records = await load.open_loop(load.arrivals(v.rate, v.duration_s, self.cfg.seed),
                                                   lambda i, now: request(i, now, t0), self.clock, t0)
                else:
                    records = await load.closed_loop(v.concurrency, v.duration_s, lambda i, now: request(i, now, t0),
                                                     self.clock, t0)
            finally:
                done.set()
            return records, await ticks

    async def read_meter(self, t0: float, done: asyncio.Event) -> list[Tick]:
        """Back-to-back readings of tick_s until the load has drained."""
        ticks: list[Tick] = []
        self.meter.start()
        start = self.clock() - t0
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.tick_s)
            joules = self.meter.stop()
            end = self.clock() - t0
            self.meter.start()
            ticks.append(Tick(start, end, joules))
            start = end
        return ticks


# --- the figures (pure functions of the records and the ticks) ---


def output_token_times(records: Sequence[Record]) -> np.ndarray:
    """Every streamed output token's time, sorted; a failed request's streamed tokens count too (the server spent
    their energy)."""
    times = [t for r in records for t in (r.token_times if r.status == OK else r.chunk_times)]
    return np.sort(np.asarray(times, dtype=float))


def steady_bounds(ticks: Sequence[Tick], ramp: float, duration_s: float) -> tuple[float, float]:
    """The steady state on tick boundaries: from the first tick starting at or after the ramp to the last tick
    ending at or before arrivals stop."""
    starts = [t.start for t in ticks if t.start >= ramp]
    ends = [t.end for t in ticks if t.end <= duration_s]
    if not starts or not ends or ends[-1] <= starts[0]:
        raise RuntimeError(f"no meter reading lies between the ramp ({ramp:.3g} s) and the end of arrivals "
                           f"({duration_s:.3g} s); raise serve.duration_s")
    return starts[0], ends[-1]


def windows(ticks: Sequence[Tick], token_times: np.ndarray, start: float, end: float, min_window_s: float,
            min_tokens: int) -> list[Window]:
    """The ticks in [start, end] grouped, in order, into windows of at least min_window_s and min_tokens output
    tokens; a last group short of either joins the window before it (readings of consecutive ticks add up)."""
    found: list[Window] = []
    group: list[Tick] = []

    def tokens(a: float, b: float) -> int:
        return int(np.searchsorted(token_times, b, "left") - np.searchsorted(token_times, a, "left"))

    for tick in (t for t in ticks if t.start >= start and t.end <= end):
        group.append(tick)
        a, b = group[0].start, tick.end
        if b - a >= min_window_s and tokens(a, b) >= min_tokens:
            found.append(Window(a, b, sum(t.joules for t in group), tokens(a, b)))
            group = []
    if group and found:
        last = found.pop()
        b = group[-1].end
        found.append(Window(last.start, b, last.joules + sum(t.joules for t in group), tokens(last.start, b)))
    return found


def percentiles(values: Sequence[float], name: str) -> dict[str, float | None]:
    found = np.percentile(np.asarray(values) * 1e3, [50, 90, 99]) if len(values) else [None] * 3
    return {f"{name}_ms_{p}": (float(x) if x is not None else None) for p, x in zip(PERCENTILES, found)}


def meets_slo(r: Record, slo_ttft_ms: float | None, slo_itl_ms: float | None) -> bool:
    """Complete, TTFT within its SLO, and mean time per output token after the first within its SLO."""
    if r.status != OK:
        return False
    if slo_ttft_ms is not None and r.ttft_s * 1e3 > slo_ttft_ms:
        return False
    mean_itl_s = (r.chunk_times[-1] - r.chunk_times[0]) / (r.tokens - 1)
    return slo_itl_ms is None or mean_itl_s * 1e3 <= slo_itl_ms


def failure_summary(records: Sequence[Record]) -> list[str]:
    counts: dict[str, int] = {}
    for r in records:
        if r.status != OK:
            counts[r.error or r.status] = counts.get(r.error or r.status, 0) + 1
    return [f"{n} x {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def measured(records: Sequence[Record], ticks: Sequence[Tick], idle: Idle, other_cpu_cores: float | None,
             v: ServeConfig, new_tokens: int, target_ci: float, min_window_s: float, confidence: float,
             min_windows: int) -> tuple[Measurement, dict[str, Any]]:
    """The steady state's windows as the protocol's Measurement (a window's calls are its output tokens) and the
    row's serve columns."""
    start, end = steady_bounds(ticks, ramp_s(v), v.duration_s)
    found = windows(ticks, output_token_times(records), start, end, min_window_s, new_tokens)
    steady_s = end - start
    if not found:
        raise RuntimeError(f"the steady state ({steady_s:.3g} s) streamed fewer than new_tokens={new_tokens} output "
                           "tokens: no window to measure; raise serve.duration_s or the load")
    steady = [r for r in records if start <= r.sent < end]
    complete = [r for r in steady if r.status == OK]
    itl = [gap for r in complete for gap in r.itl_s]
    m = Measurement([round(g * 1e9) for g in itl], [w.tokens for w in found], [w.seconds for w in found],
                    [w.joules for w in found], idle, other_cpu_cores, "", target=target_ci, seconds=steady_s)
    per_token = m.figure()
    ci = interval(per_token, idle, confidence)
    m.stop = "target" if ci is not None and ci.relative_half_width <= target_ci else "serve.duration_s ended the load"
    failed = sum(r.status not in (OK, TIMED_OUT) for r in records)
    timed_out = sum(r.status == TIMED_OUT for r in records)
    reasons = []
    if records and (failed + timed_out) / len(records) > v.max_failed_fraction:
        reasons.append(f"{failed + timed_out} of {len(records)} requests failed or timed out, more than "
                       f"serve.max_failed_fraction={v.max_failed_fraction}")
    if len(found) < min_windows:
        reasons.append(f"the steady state gave {len(found)} window(s), fewer than profile.min_windows={min_windows}; "
                       "raise serve.duration_s")
    judged = v.slo_ttft_ms is not None or v.slo_itl_ms is not None
    met = sum(meets_slo(r, v.slo_ttft_ms, v.slo_itl_ms) for r in steady)
    gross, tokens = sum(w.joules for w in found), sum(w.tokens for w in found)
    e2e = percentiles([r.e2e_s for r in complete], "e2e")
    net = [(w.joules - idle.power_w * w.seconds) / w.tokens for w in found]
    return m, {
        "serve_ramp_s": ramp_s(v),
        "steady_start_s": start,
        "steady_end_s": end,
        "drain_s": max([r.end for r in records if r.end is not None] + [end]) - end,
        "requests_sent": len(records),
        "requests_ok": sum(r.status == OK for r in records),
        "requests_failed": failed,
        "requests_timed_out": timed_out,
        "request_errors": failure_summary(records),
        "steady_requests": len(steady),
        "achieved_rps": sum(r.status == OK and start <= r.end < end for r in records) / steady_s,
        "output_tokens_s": tokens / steady_s,
        **percentiles([r.ttft_s for r in complete], "ttft"),
        **percentiles(itl, "itl"),
        **e2e,
        **interval_columns("energy_j_per_output_token", per_token, idle, confidence),
        **interval_columns("energy_j_per_request", per_token.scaled(new_tokens), idle, confidence),
        # The columns every row has, so the summary, the fronts and the gate read serve rows too: an inference
        # is a request, a token an output token, a call an output token of a window.
        **interval_columns("energy_j_per_inference", per_token.scaled(new_tokens), idle, confidence),
        "energy_j_per_token": per_token.mean,
        "window_output_tokens": [w.tokens for w in found],
        "window_j_per_inference": [j * new_tokens for j in net],
        "window_calls": [w.tokens for w in found],
        "window_seconds": [w.seconds for w in found],
        "slo_ttft_ms": v.slo_ttft_ms,
        "slo_itl_ms": v.slo_itl_ms,
        "slo_attainment": (met / len(steady) if steady else None) if judged else None,
        "goodput_rps": met / steady_s if judged else None,
        "server_idle_power_w": idle.power_w,
        "energy_ci_method": CI_METHOD if ci else None,
        "energy_ci_level": ci.level if ci else None,
        "energy_ci_lag1": per_token.lag1,
        "energy_ci_idle_share": ci.idle_share if ci else None,
        "ci_target": target_ci,
        "ci_target_met": m.stop == "target",
        "ci_stop": m.stop,
        "energy_cv": m.cv(),
        "throughput_samples_s": len(complete) / steady_s,
        "throughput_tokens_s": tokens / steady_s,
        **{f"latency_ms_{p}": e2e[f"e2e_ms_{p}"] for p in PERCENTILES},
        "latency_ms_samples": [round(r.e2e_s * 1e3, 4) for r in complete],
        "energy_gross_j": gross,
        "energy_net_j": gross - idle.power_w * sum(w.seconds for w in found),
        "idle_power_w": idle.power_w,
        "idle_segment_w": idle.segment_w,
        "idle_seconds": idle.seconds,
        "avg_power_w": gross / sum(w.seconds for w in found),
        "windows": len(found),
        "calls": tokens,
        "measured_seconds": sum(w.seconds for w in found),
        "invalid_reasons": "; ".join(reasons) or None,
    }
