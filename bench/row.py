"""The result row, declared: every column once (name, type, unit, meaning, scenario), and the configuration key.

The columns every scenario shares are declared here; a scenario's own columns are declared in its module
(`COLUMNS`), so a new scenario is one module. Producers write only declared columns (`results.write_row`
refuses any other), the column reference docs/columns.md is generated from both (`python -m bench.row >
docs/columns.md`, kept current by a test), and the analysis relies on nothing else. This module is pure data
and imports nothing heavy, so the analysis reads it without the measuring code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

SCHEMA_VERSION = 2
ALL = "all"  # a column of every scenario


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # str | int | float | bool | list[float] | list[int] | list[str] | json
    unit: str  # "" where the value has none
    meaning: str
    scenario: str = ALL
    key: bool = False  # part of the configuration key (beyond KEY_COLUMNS): e.g. a serve run's arrival rate


_c = Column


def with_interval(name: str, unit: str, meaning: str, scenario: str = ALL) -> list[Column]:
    """A figure with its interval bounds (docs/protocol.md §3)."""
    return [Column(name, "float", unit, meaning, scenario),
            Column(f"{name}_ci_low", "float", unit, f"lower end of the interval of {name}", scenario),
            Column(f"{name}_ci_high", "float", unit, f"upper end of the interval of {name}", scenario)]


GROUPS: dict[str, list[Column]] = {
    "identity": [
        _c("schema_version", "int", "", "version of this table the row was written with (load() migrates older rows)"),
        _c("run_id", "str", "", "unique id of the run"),
        _c("sweep_id", "str", "", "the sweep (or single run) the row belongs to"),
        _c("config_key", "str", "", "the configuration key: same key, same configuration on the same machine"),
        _c("status", "str", "", "ok | invalid (kept, see invalid_reasons) | failed (see error_*)"),
        _c("timestamp", "str", "", "UTC time the run started (ISO 8601)"),
        _c("row_file", "str", "", "where load() read the row from (added on load, never written)"),
    ],
    "configuration": [
        _c("model", "str", "", "model preset name (model.name)"),
        _c("model_family", "str", "", "family whose front the model joins (distilled students share the teacher's)"),
        _c("model_name_or_path", "str", "", "hub id, the local directory the weights were read from, or the given "
           ".onnx file (model.onnx_path)"),
        _c("model_revision", "str", "", "hub revision, `local`, the registry package==version, the random config, "
           "or `file sha256:<first 12 hex digits>` of a given .onnx file"),
        _c("weights", "str", "", "pretrained | random (architecture only: energy, no quality)"),
        _c("quant", "str", "", "precision or quantization (bench/quants.py)"),
        _c("prune", "str", "", "pruning method, none when unpruned"),
        _c("prune_amount", "float", "fraction", "fraction pruned (0 for none, 0.5 for 2:4)"),
        _c("backend", "str", "", "pytorch | onnxruntime | llamacpp"),
        _c("compile", "str", "", "backend=pytorch: the torch.compile mode (default | reduce-overhead | "
           "max-autotune); empty for eager", key=True),
        _c("onnx_graph", "str", "", "backend=onnxruntime: what was done to the graph: basic | extended | all "
           "(ONNX Runtime's optimisation level) | fused (transformer fusions, then all)", key=True),
        _c("device", "str", "", "torch device the run used (cpu, cuda:0)"),
        _c("batch_size", "int", "sequences", "sequences per call"),
        _c("seq_len", "int", "tokens", "sequence length (generate: prompt_len + new_tokens)"),
        _c("threads", "int", "", "torch intra-op threads"),
        _c("scenario", "str", "", "classify | generate (bench/scenarios/)"),
        _c("profile", "str", "", "measurement profile (standard | quick)"),
        _c("config", "json", "", "the whole configuration as composed"),
        _c("energy_axis", "str", "", "the column this row is judged by on fronts and in recommendations"),
        _c("energy_unit", "str", "", "what energy_axis is per (inference, output token)"),
        _c("energy_request_axis", "str", "", "the column holding one request's joules (costs and carbon)"),
    ],
    "machine and software": [
        _c("device_name", "str", "", "GPU name, else CPU model: the machine identity in the configuration key"),
        _c("hostname", "str", "", "host the run ran on"),
        _c("cpu_model", "str", "", "CPU model name from /proc/cpuinfo"),
        _c("cpu_cores", "int", "", "logical CPUs of the machine"),
        _c("cpu_flags", "str", "", "the CPU's instruction sets among avx2, avx512f, avx512_vnni, avx_vnni, "
           "avx512_bf16, amx_bf16, amx_int8: they decide which kernels run, so how variants compare"),
        _c("python_version", "str", "", "Python version"),
        _c("torch_version", "str", "", "torch version"),
        _c("transformers_version", "str", "", "transformers version"),
        _c("bench_version", "str", "", "this package's version"),
        _c("git_commit", "str", "", "the project's commit (-dirty with uncommitted changes)"),
        _c("gpu_name", "str", "", "NVML device name (CUDA runs)"),
        _c("gpu_uuid", "str", "", "NVML UUID of the board measured (GPU-...), found from torch's device UUID"),
        _c("gpu_driver", "str", "", "NVIDIA driver version"),
        _c("gpu_power_limit_w", "float", "W", "enforced power limit"),
        *[_c(f"gpu_{what}_{when}", kind, unit, f"{meaning} at the {when} of the run")
          for when in ("start", "end")
          for what, kind, unit, meaning in (
              ("sm_clock_mhz", "float", "MHz", "SM clock"), ("mem_clock_mhz", "float", "MHz", "memory clock"),
              ("temperature_c", "float", "°C", "GPU temperature"),
              ("clock_event_reasons", "str", "", "NVML clock-event (throttle) reasons, comma-separated or `none`,"),
              ("other_processes", "float", "", "other compute processes on the GPU (this one's context held)"))],
    ],
    "energy source": [
        _c("energy_source", "str", "", "rapl | nvml_counter | nvml_power | pyrapl | estimate | zeus-amdsmi | "
           "zeus-apple | zeus-jetson | zeus-nvml | zeus-rapl (docs/protocol.md §1)"),
        _c("energy_measured", "bool", "", "false for the estimate: a power model, never a measurement"),
        _c("energy_params", "json", "", "parameters of the source (the estimate's model, RAPL zones, GPU UUID, "
           "what Zeus read and how)"),
    ],
    "protocol": [
        _c("load_seconds", "float", "s", "loading the fp32 PyTorch model (absent where the backend reads the "
           "model's own file: llamacpp, model.onnx_path)"),
        _c("prepare_seconds", "float", "s", "making the variant, exporting, building the session, preparing inputs"),
        _c("compile_seconds", "float", "s", "compile=: torch.compile's first calls at the run's shape, before the "
           "idle baseline (never inside a window)"),
        _c("compile_graphs", "int", "", "compile=: graphs torch.compile captured the model in; 1: the whole model, "
           "more: graph breaks, with the code between them run eager"),
        _c("idle_power_w", "float", "W", "power with the model loaded and idle, before the warm-up: the mean of "
           "idle_segment_w"),
        _c("idle_segment_w", "list[float]", "W", "power of each idle segment; their spread is the baseline's error"),
        _c("idle_seconds", "float", "s", "time the idle baseline was measured"),
        _c("warmup_calls", "int", "calls", "warm-up calls made (generate: both phases)"),
        _c("warmup_seconds", "float", "s", "warm-up time (generate: both phases)"),
        _c("warmup_settled", "bool", "", "latency settled before profile.warmup_max_s (false: the cap ended it)"),
        _c("windows", "int", "", "measurement windows (generate: decode windows)"),
        _c("calls", "int", "", "calls over all windows"),
        _c("measured_seconds", "float", "s", "time inside the windows"),
        _c("window_calls", "list[int]", "calls", "calls per window (generate: decode windows)"),
        _c("window_seconds", "list[float]", "s", "duration of each window (generate: decode windows)"),
        _c("window_j_per_inference", "list[float]", "J", "net joules per inference of each window (raw samples; "
           "generate: per request, each decode window's with the prefill's mean)"),
        _c("latency_ms_samples", "list[float]", "ms", "every call's latency (generate: every decode step)"),
        _c("avg_power_w", "float", "W", "gross average power over the windows"),
        _c("energy_gross_j", "float", "J", "energy read over all windows"),
        _c("energy_net_j", "float", "J", "gross minus idle power x window time"),
        _c("energy_cv", "float", "", "coefficient of variation of the per-window figure (generate: decode)"),
        _c("energy_ci_method", "str", "", "how the energy intervals (every energy `_ci_low`/`_ci_high`) were made "
           "(docs/protocol.md §3)"),
        _c("energy_ci_level", "float", "", "the coverage the interval method states (docs/protocol.md §3 gives what "
           "simulation finds)"),
        _c("energy_ci_lag1", "float", "", "lag-1 autocorrelation of the windows the interval corrected for "
           "(generate: decode)"),
        _c("energy_ci_idle_share", "float", "fraction", "share of the interval's variance from the idle baseline"),
        _c("ci_target", "float", "fraction", "profile.target_ci: the relative half-width windows were added for"),
        _c("ci_target_met", "bool", "", "the interval reached ci_target (generate: both phases'); false: flagged, "
           "measure longer"),
        _c("ci_stop", "str", "", "why windows stopped: target | time cap (profile.max_seconds) | idle baseline "
           "(its error alone exceeds the target); generate: per phase that missed"),
    ],
    "speed and energy": [
        _c("latency_ms_p50", "float", "ms", "median latency of a call (generate: of a decode step)"),
        _c("latency_ms_p90", "float", "ms", "90th percentile latency"),
        _c("latency_ms_p99", "float", "ms", "99th percentile latency"),
        _c("throughput_samples_s", "float", "1/s", "sequences (generate: requests) per second"),
        _c("throughput_tokens_s", "float", "1/s", "input tokens (generate: generated tokens) per second"),
        *with_interval("energy_j_per_inference", "J", "mean over windows of net joules per sequence "
                     "(generate: per request)"),
        _c("energy_j_per_token", "float", "J", "net joules per input token (generate: per generated token, "
           "prefill included)"),
    ],
    "variant": [
        _c("quantized_layers", "int", "", "layers (weight matrices for ONNX) the quantizer converted"),
        _c("prune_removed", "int", "", "heads or neurons removed (2:4: Linear layers converted)"),
        _c("params_total", "int", "", "parameters of the (pruned) model"),
        _c("params_nonzero", "int", "", "nonzero parameters"),
        _c("linear_sparsity", "float", "fraction", "share of zeros among Linear weights"),
        _c("model_bytes", "int", "B", "the variant's weights in their stored format (llamacpp: the GGUF file)"),
        _c("onnx_exporter", "str", "", "exporter and its version; `given file (<producer> <version>)` for "
           "model.onnx_path, as the file records what made it, with the output the quality eval reads when it is "
           "named otherwise"),
        _c("onnx_opset", "int", "", "ONNX opset of the export (of the given file)"),
        _c("onnxruntime_version", "str", "", "ONNX Runtime version"),
        _c("onnx_model_path", "str", "", "the model file the session ran: the cached export or variant, or the "
           "given file itself"),
        _c("onnx_providers", "list[str]", "", "execution providers of the session, as it reports them"),
        _c("onnx_fusions", "json", "", "fused operators in the graph the session runs, by type (e.g. Attention: 6), "
           "as ONNX Runtime's optimiser left it (as stored, for a model with external data: over 2 GiB)"),
        _c("calibration_method", "str", "", "static quantization's calibration method (minmax | entropy | "
           "percentile)", key=True),
        _c("calibration_data", "str", "", "where the calibration inputs came from"),
        _c("calibration_samples", "int", "sequences", "calibration sequences"),
        _c("gguf_file", "str", "", "the GGUF file llama.cpp ran: the shipped file or its cached variant"),
        _c("gguf_type", "str", "", "the file's type as llama.cpp names it (general.file_type): Q4_1, Q4_K_M, F16"),
        _c("gguf_tensor_types", "json", "", "tensors per GGML type in the file: where a tensor's rows do not fit "
           "a type's blocks, llama.cpp's quantizer falls back to another type"),
        _c("gguf_source", "str", "", "as shipped | dequantised from <the shipped type> (f16) | quantized by "
           "llama.cpp from f16"),
        _c("gguf_shipped_type", "str", "", "type of the model's GGUF file as it ships: f16, and every type made "
           "from it, carry its error"),
        _c("gguf_tools", "str", "", "what made the file and their versions (gguf, llama-cpp-python); empty as "
           "shipped"),
        _c("llama_cpp_version", "str", "", "llama-cpp-python version that ran the file"),
        _c("llama_extra_buffers", "bool", "", "llama.cpp's extra CPU buffer types (AMX, repacked weights) were on; "
           "off on CPUs with AMX int8, where llama-cpp-python 0.3.36 crashes in them on some quantised files"),
        _c("llama_gpu_layers", "int", "", "layers llama.cpp offloaded to the GPU (-1: all; 0 on the CPU)"),
    ],
    "quality": [
        _c("eval", "str", "", "eval set name, none when not scored"),
        _c("eval_key", "str", "", "digest of the eval settings that decide the quality figure (file, split, "
           "subsample, perplexity windows); empty when not scored", key=True),
        _c("eval_file_format", "str", "", "how eval.path was read: parquet | jsonl | json | csv (delimiter comma, "
           "tab, semicolon, pipe or the one given; detected, given, or from the .tsv extension) | hub (glue sst2 "
           "validation); empty for bbc-topics and perplexity text"),
        _c("quality_metric", "str", "", "accuracy | spearman | perplexity | none"),
        _c("quality", "float", "", "the variant's score on the eval's test split"),
        _c("quality_ref", "float", "", "the reference's score on the same items (fp32 PyTorch; llamacpp: its f16 GGUF; "
           "a given .onnx file: the file itself at fp32, graph level all)"),
        _c("quality_ci_low", "float", "", "lower end of the interval of quality (docs/quality.md)"),
        _c("quality_ci_high", "float", "", "upper end of the interval of quality"),
        _c("quality_ci_method", "str", "", "wilson (accuracy) | percentile bootstrap over pairs or windows, "
           "with its resamples and seed"),
        _c("quality_ci_level", "float", "", "nominal level of the quality intervals (eval.ci_level)"),
        _c("quality_ratio", "float", "", "quality / reference (reference / quality for perplexity): >= gate passes"),
        _c("quality_ratio_ci_low", "float", "", "lower end of the paired bootstrap interval of quality_ratio"),
        _c("quality_ratio_ci_high", "float", "", "upper end of the paired bootstrap interval of quality_ratio"),
        _c("quality_gate", "float", "", "eval.gate, the ratio a variant must reach"),
        _c("quality_gate_rule", "str", "", "point: quality_ratio is judged | lower: quality_ratio_ci_low is"),
        _c("passes_quality_gate", "bool", "", "the ratio quality_gate_rule names >= quality_gate"),
        _c("fidelity_cosine_mean", "float", "", "mean cosine similarity to the reference's embeddings"),
        _c("fidelity_cosine_min", "float", "", "smallest cosine similarity to the reference's embeddings"),
        _c("fidelity_top1_agreement", "float", "fraction", "share of items (tokens) where the top class matches"),
        _c("fidelity_kl_mean", "float", "nats", "mean KL(reference || variant) per scored token (perplexity)"),
        _c("eval_samples", "int", "", "test items (perplexity: windows) scored"),
        _c("eval_subsample", "int", "", "test items (windows) eval.max_test_samples kept: stratified by label for "
           "classification, random for STS and windows; empty when every item was scored"),
        _c("eval_subsample_of", "int", "", "test items (windows) the subsample was drawn from"),
        _c("eval_subsample_seed", "int", "", "seed of the subsample (eval.seed)"),
        _c("eval_seconds", "float", "s", "time the quality evaluation took"),
        _c("perplexity_definition", "str", "", "hf-strided | min-context: which tokens each window scores "
           "(docs/generation.md)"),
        _c("eval_text_tokens", "int", "tokens", "perplexity: tokens of the text after the eval.max_tokens cut"),
        _c("eval_tokens_scored", "int", "tokens", "perplexity: tokens whose prediction was scored"),
        _c("eval_logits_path", "str", "", "perplexity: logits_to_keep (only the scored positions' logits) | "
           "all positions (the model computes every position's) | llama.cpp, the scored positions' logits only"),
        _c("eval_context", "int", "tokens", "perplexity window length"),
        _c("eval_stride", "int", "tokens", "perplexity window stride"),
        _c("eval_max_tokens", "int", "tokens", "perplexity text cut"),
    ],
    "validity": [
        _c("invalid_reasons", "str", "", "why the row is invalid; empty when it is not (docs/protocol.md §5)"),
        _c("windows_nonpositive", "int", "", "windows with zero or negative energy"),
        _c("windows_net_nonpositive", "int", "", "windows whose net energy (above the idle baseline) is zero or "
           "negative"),
        _c("energy_ci_includes_zero", "bool", "", "a phase's net energy interval reaches zero"),
        _c("windows_power_out_of_bounds", "int", "", "windows with average power outside [0.1 x idle, 1.2 x rated]"),
        _c("rated_power_w", "float", "W", "ceiling power is checked against (RAPL limit, GPU limit, estimate P_max)"),
        _c("energy_cv_high", "bool", "", "a phase's window CV above profile.max_cv (flag only)"),
        _c("energy_cv_high_phases", "str", "", "generate: the phases whose CV is high (prefill, decode)"),
        _c("cpu_other_cores", "float", "cores", "other processes' CPU use during the windows"),
        _c("cpu_contended", "bool", "", "cpu_other_cores above profile.max_other_cpu_cores (flag only)"),
        _c("nvml_window_updates_min", "int", "", "fewest NVML energy-counter updates seen in one window (idle "
           "baseline included)"),
        _c("nvml_few_updates", "bool", "", "a window saw fewer than 10 counter updates (flag only)"),
        _c("gpu_thermal_throttled", "bool", "", "thermal clock slowdown seen at the start, end or during a window "
           "(flag only)"),
        _c("gpu_power_throttled", "bool", "", "power-cap or power-brake clock slowdown seen at the start, end or "
           "during a window (flag only)"),
    ],
    "failure": [
        _c("error_type", "str", "", "exception class of a failed run"),
        _c("error_message", "str", "", "its message"),
        _c("error_traceback", "str", "", "its traceback"),
    ],
}
COLUMNS: dict[str, Column] = {c.name: c for group in GROUPS.values() for c in group}


def declared() -> dict[str, Column]:
    """Every column: the shared ones above and those each scenario module declares as its COLUMNS.

    A column several scenarios declare (generate's and serve's TTFT, say) is one column of the table: they must
    agree on its type, unit and whether it is in the key; its meaning is each scenario's, and its scenario
    lists them all. A scenario cannot redeclare a shared column.
    """
    from bench import scenarios

    own: dict[str, list[Column]] = {}
    for name in scenarios.names():
        for c in scenarios.get(name).COLUMNS:
            if c.name in COLUMNS:
                raise TypeError(f"bench/scenarios/{name}.py declares {c.name}, a column bench/row.py declares for "
                                "every scenario")
            own.setdefault(c.name, []).append(replace(c, scenario=name))
    for column, versions in own.items():
        if len({(c.type, c.unit, c.key) for c in versions}) > 1:
            raise TypeError(f"{column} is declared with another type, unit or key by "
                            f"{', '.join(c.scenario for c in versions)}; one column has one type")
    return {**COLUMNS, **{column: _combined(versions) for column, versions in own.items()}}


def _combined(versions: list[Column]) -> Column:
    if len(versions) == 1:
        return versions[0]
    meanings = {c.meaning for c in versions}
    meaning = versions[0].meaning if len(meanings) == 1 else "; ".join(f"{c.scenario}: {c.meaning}" for c in versions)
    return replace(versions[0], scenario=", ".join(c.scenario for c in versions), meaning=meaning)

# What makes two rows "the same configuration" (docs/protocol.md §8): the model and its variant, the
# scenario's shape, and the machine. Used by resume, the gate, recommend, the summary and the fronts.
KEY_COLUMNS = ("model", "model_revision", "weights", "quant", "prune", "prune_amount", "backend", "scenario",
               "prompt_len", "new_tokens", "batch_size", "seq_len", "threads", "device_type", "device_name", "eval",
               "profile")


def _plain(value: Any) -> Any:
    """A cell as JSON-stable Python: NaN and None alike, numpy scalars as numbers, 8.0 as 8."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@functools.cache
def key_columns() -> tuple[str, ...]:
    """KEY_COLUMNS, then every declared column marked `key` (a scenario's own settings, the eval's), by name."""
    return KEY_COLUMNS + tuple(sorted(c.name for c in declared().values() if c.key))


def key_values(row: Mapping[str, Any], without: tuple[str, ...] = ()) -> tuple[Any, ...]:
    """The key's values of a row (a dict or a pandas Series): KEY_COLUMNS' (missing ones as None), then the
    other key columns' that the row has, as (name, value). Only set values are appended so that a row without
    them (an older row, another scenario's) keeps the key it was written with."""
    device = row.get("device")
    values = {**row, "device_type": str(device).split(":")[0] if isinstance(device, str) else None}
    base = tuple(_plain(values.get(c)) for c in KEY_COLUMNS if c not in without)
    extra = tuple((c, v) for c in key_columns()[len(KEY_COLUMNS):]
                  if c not in without and (v := _plain(values.get(c))) is not None)
    return base + extra


def config_key(row: Mapping[str, Any], without: tuple[str, ...] = ()) -> str:
    """The configuration key as one string; `without` drops columns (e.g. quant: "the same but for quant")."""
    from bench.files import stable_key

    return stable_key({"key": key_values(row, without)})


def undeclared(row: Mapping[str, Any]) -> list[str]:
    """Columns of `row` that neither this table nor a scenario declares."""
    return sorted(set(row) - set(declared()))


def reference_markdown() -> str:
    lines = ["# Row columns", "",
             f"Generated from `bench/row.py` (schema version {SCHEMA_VERSION}) by `python -m bench.row`; a test "
             "keeps it current. Scenario `all`: rows of any scenario may have the column (a failed row has only the "
             "configuration, machine and failure columns; a column of one backend or meter only where it ran).", ""]
    from bench import scenarios

    every = declared()
    # Each scenario's section lists its columns with its own meaning; the scenario cell names every scenario
    # that writes the column.
    groups = {**GROUPS, **{f"scenario={name} (bench/scenarios/{name}.py)":
                           [replace(c, scenario=every[c.name].scenario) for c in scenarios.get(name).COLUMNS]
                           for name in scenarios.names()}}
    for group, columns in groups.items():
        lines += [f"## {group.capitalize()}", "", "| column | type | unit | scenario | meaning |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.scenario} | {c.meaning.replace('|', chr(92) + '|')} |"
                  for c in columns]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
