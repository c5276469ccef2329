"""Is ONNX Runtime at its best here? Its fp32 p50 over PyTorch's, MiniLM, in interleaved rounds.

    python benchmarks/onnxruntime_parity.py [--rounds 3] [--batch-sizes 1,8] [--graphs fused,all]
                                           [--profile standard] [--out DIR]

Each round measures, for each batch size, PyTorch fp32 and ONNX Runtime fp32 at each `onnx_graph=` level, back to
back, as normal harness runs (energy-only: eval=none); the side that goes first alternates between rounds, so
drift and neighbours on a shared machine hit both alike. It prints each round's ratio of p50 latencies and their
median: single runs on a small shared VM move by 15-25%, a median of interleaved rounds much less. The CPU's
model and the instruction-set flags that decide which kernels run (AVX2, AVX-512, VNNI, AMX) are printed with
it, since the ratio depends on them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

from bench.config import BenchConfig, EvalConfig, load_profile
from bench.digits import plain
from bench.environment import cpu_flags, cpu_model
from bench.run import run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--graphs", default="fused", help="onnx_graph= levels to compare, comma-separated")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--out", type=Path, default=Path("results/parity") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    graphs = args.graphs.split(",")
    base = BenchConfig(profile=load_profile(args.profile), seq_len=128, eval=EvalConfig(name="none", kind="none"),
                       results_dir=str(args.out), progress=False)
    sides = [("pytorch", None)] + [("onnxruntime", g) for g in graphs]
    ratios: dict[tuple[int, str], list[float]] = {}
    p50: dict[tuple[int, str], list[float]] = {}
    for r in range(args.rounds):
        for batch in batches:
            order = sides if r % 2 == 0 else sides[::-1]
            latency = {}
            for backend, graph in order:
                cfg = replace(base, backend=backend, onnx_graph=graph, batch_size=batch)
                row = run(cfg, args.out / f"round-{r}" / f"b{batch}-{backend}-{graph or 'eager'}")
                if row["status"] != "ok":
                    raise SystemExit(f"{backend} {graph} batch {batch}: {row['status']}: "
                                     f"{row.get('error_message') or row.get('invalid_reasons')}")
                latency[graph] = row["latency_ms_p50"]
            for graph in graphs:
                ratios.setdefault((batch, graph), []).append(latency[graph] / latency[None])
                p50.setdefault((batch, graph), []).append(latency[graph])
            p50.setdefault((batch, "pytorch"), []).append(latency[None])
    print(f"\nMiniLM fp32, seq 128, {args.rounds} interleaved rounds, profile {args.profile}; CPU {cpu_model()} "
          f"({cpu_flags()}); rows under {args.out}")
    for batch in batches:
        print(f"  batch {batch}: pytorch p50 {plain(statistics.median(p50[(batch, 'pytorch')]))} ms (median)")
        for graph in graphs:
            each = ", ".join(f"{x:.2f}" for x in ratios[(batch, graph)])
            print(f"    onnxruntime onnx_graph={graph}: p50 {plain(statistics.median(p50[(batch, graph)]))} ms; "
                  f"ORT/PyTorch per round {each}; median {statistics.median(ratios[(batch, graph)]):.2f}")


if __name__ == "__main__":
    main()
