"""Does compression save energy here? Speed and energy ratios of backends, quantization and pruning, one run.

    python benchmarks/compression.py [--out results/compression] [--profile standard|quick]

Part 1, bert-base shape (random weights, offline), batch 1, seq 128: PyTorch fp32 (the baseline), compiled
(torch.compile default), dynamic int8, ONNX Runtime fp32 (fused graph and graph level all), int8 and int8-static.
Part 2, MiniLM on bbc-topics: unpruned against 50% unstructured (l1), attention-head and feed-forward pruning,
with their accuracy. Part 3, MiniLM on bbc-topics: PyTorch fp32 compiled, ONNX Runtime fp32 and static int8 by
calibration method (min-max, entropy, percentile), with their accuracy against fp32 PyTorch. Every configuration is a
normal harness run under --out, so `python -m analysis <out>` draws the fronts afterwards. Ratios are taken
between rows measured in this process, minutes apart; energy is whatever the meter gives (on a machine
without RAPL or NVML, an estimate, labelled so).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

from bench.config import BenchConfig, EvalConfig, ModelConfig, PruneConfig, load_profile
from bench.digits import figure, plain
from bench.run import run

BERT_BASE = ModelConfig(name="bert-base", name_or_path="bert-base-uncased", weights="random",
                        random_init_config="BertConfig", family="bert")


def _line(label: str, row: dict, base: dict) -> str:
    """One configuration: its figures to the digits their intervals support, and ratios to an ok baseline only."""
    if row["status"] != "ok":
        return f"  {label:<28} {row['status']}: {row.get('error_message', row.get('invalid_reasons'))}"
    estimate = not row.get("energy_measured")
    if base["status"] == "ok":
        # Two significant digits: a ratio of two figures each known to a few percent at best.
        speed = f"{plain(base['latency_ms_p50'] / row['latency_ms_p50'], 2)}x faster"
        energy = f"{plain(base['energy_j_per_inference'] / row['energy_j_per_inference'], 2)}x less energy"
    else:
        speed = energy = f"(no ratio: the baseline is {base['status']})"
    accuracy = row.get("quality")
    quality = (f"  accuracy {figure(row, 'quality')}" if isinstance(accuracy, float) and not math.isnan(accuracy)
               else "")
    return (f"  {label:<28} p50 {plain(row['latency_ms_p50'])} ms  {speed}  "
            f"{figure(row, 'energy_j_per_inference')} J/inf{' (estimate)' if estimate else ''}  {energy}  "
            f"{plain(row['flops_per_inference'] / 1e9)} GFLOP  nonzero params {plain(row['params_nonzero'] / 1e6)}M"
            f"{quality}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/compression") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--amount", type=float, default=0.5, help="pruning fraction in part 2")
    parser.add_argument("--max-test-samples", type=int, default=None,
                        help="score on a seeded subsample of the test split (smoke tests); default: all of it")
    args = parser.parse_args()
    base = BenchConfig(profile=load_profile(args.profile), batch_size=1, seq_len=128, results_dir=str(args.out),
                       eval=EvalConfig(max_test_samples=args.max_test_samples))

    # (label, overrides): the graph and compiler variants beside the precisions.
    part1 = [("pytorch fp32", {}), ("pytorch fp32 compile=default", {"compile": "default"}),
             ("pytorch int8 (dynamic)", {"quant": "int8"}),
             ("onnxruntime fp32 (fused)", {"backend": "onnxruntime"}),
             ("onnxruntime fp32 graph all", {"backend": "onnxruntime", "onnx_graph": "all"}),
             ("onnxruntime int8 (dynamic)", {"backend": "onnxruntime", "quant": "int8"}),
             ("onnxruntime int8-static", {"backend": "onnxruntime", "quant": "int8-static"})]
    rows1 = []
    for i, (label, overrides) in enumerate(part1):
        cfg = replace(base, model=BERT_BASE, eval=EvalConfig(name="none", kind="none"), **overrides)
        rows1.append((label, run(cfg, args.out / f"bert-base-{i}")))

    part2 = [("unpruned", "none"), ("l1-unstructured", "l1-unstructured"), ("heads", "heads"), ("ffn", "ffn")]
    rows2 = []
    for i, (label, prune) in enumerate(part2):
        cfg = replace(base, prune=PruneConfig(name=prune, amount=args.amount))
        rows2.append((f"{label} {args.amount:.0%}" if prune != "none" else label, run(cfg, args.out / f"minilm-{i}")))

    # MiniLM on bbc-topics through ONNX Runtime: the fp32 graph, and static int8 by calibration method, each with
    # its accuracy against fp32 PyTorch.
    part3 = [("pytorch fp32", {}), ("pytorch fp32 compile=default", {"compile": "default"}),
             ("onnxruntime fp32 (fused)", {"backend": "onnxruntime"})] + [
        (f"int8-static {method}", {"backend": "onnxruntime", "quant": "int8-static", "calibration_method": method})
        for method in ("minmax", "entropy", "percentile")]
    rows3 = [(label, run(replace(base, **overrides), args.out / f"minilm-ort-{i}"))
             for i, (label, overrides) in enumerate(part3)]

    source = rows1[0][1].get("energy_source")
    print(f"\nResults under {args.out} (energy source: {source}"
          f"{'' if rows1[0][1].get('energy_measured') else ', an ESTIMATE, not a measurement'})")
    print("\nbert-base shape, random weights, batch 1, seq 128; ratios against PyTorch fp32:")
    for label, row in rows1:
        print(_line(label, row, rows1[0][1]))
    print("\nMiniLM on bbc-topics, batch 1, seq 128, PyTorch fp32; ratios against unpruned:")
    for label, row in rows2:
        print(_line(label, row, rows2[0][1]))
    print("\nMiniLM on bbc-topics, batch 1, seq 128; ratios against PyTorch fp32:")
    for label, row in rows3:
        print(_line(label, row, rows3[0][1]) + (f" (x{plain(row['quality_ratio'], 3)} of fp32)"
                                               if isinstance(row.get("quality_ratio"), float) else ""))
    l1 = rows2[1][1]
    for label, row in rows2[2:]:
        if row["status"] == l1["status"] == "ok":
            flops = row["flops_per_inference"] / l1["flops_per_inference"]
            energy = row["energy_j_per_inference"] / l1["energy_j_per_inference"]
            print(f"  {label} against {rows2[1][0]}: FLOPs x{plain(flops, 2)}, energy x{plain(energy, 2)}")

    scored = next((row for _, row in rows3 if row.get("quality_ci_method")), None)
    print(f"\n[low, high]: energy {rows1[0][1].get('energy_ci_method')}, stated at "
          f"{rows1[0][1].get('energy_ci_level', 0.95):.0%} (its coverage: docs/protocol.md §3)"
          + (f"; accuracy {scored['quality_ci_method']}, at {scored['quality_ci_level']:.0%} (docs/quality.md)"
             if scored else ""))


if __name__ == "__main__":
    main()
