"""Why onnx_graph=fused splits skip layer norm on the CPU: ONNX Runtime's SkipLayerNormalization kernel against the
Add, Add and LayerNormalization it replaces, side by side in one process.

    python benchmarks/skip_layer_norm.py [--rounds 5] [--calls 200] [--shape 8,128,384] [--threads 2]

Each round times both one-node-graph sessions (the unfused one built with ONNX Runtime's SkipLayerNormFusion
disabled, as the fused graph's CPU sessions are), the order alternating between rounds, and prints their p50s and
the ratio; then the median ratio over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.environment import cpu_flags, cpu_model
from bench.variants.onnx_graph import UNFUSED_ON_CPU


def graphs(hidden: int) -> dict[str, tuple[bytes, list[str]]]:
    """The two graphs as serialized models, each with the optimizers its session disables."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", hidden]) for n in ("x", "skip")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weights = [numpy_helper.from_array(np.full(hidden, v, np.float32), n)
               for n, v in (("gamma", 1.0), ("beta", 0.0), ("bias", 0.1))]
    fused = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"],
                             domain="com.microsoft", epsilon=1e-12)
    split = [helper.make_node("Add", ["x", "bias"], ["biased"]), helper.make_node("Add", ["biased", "skip"], ["sum"]),
             helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]

    def model(nodes: list) -> bytes:
        return helper.make_model(helper.make_graph(nodes, "g", inputs, [output], weights),
                                 opset_imports=opsets).SerializeToString()

    return {"SkipLayerNormalization": (model([fused]), []), "Add+Add+LayerNormalization": (model(split), UNFUSED_ON_CPU)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--shape", default="8,128,384", help="batch,sequence,hidden")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    batch, seq, hidden = (int(x) for x in args.shape.split(","))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {name: ort.InferenceSession(model, options, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=disabled)
                for name, (model, disabled) in graphs(hidden).items()}
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((batch, seq, hidden), dtype=np.float32) for n in ("x", "skip")}
    fused, split = sessions
    ratios = []
    for r in range(args.rounds):
        p50 = {}
        for name in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
            session = sessions[name]
            for _ in range(10):
                session.run(None, feed)
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - t0)
            p50[name] = statistics.median(times) * 1e3
        ratios.append(p50[fused] / p50[split])
        print(f"round {r}: {fused} p50 {p50[fused]:.3f} ms, {split} p50 {p50[split]:.3f} ms, ratio {ratios[-1]:.2f}")
    print(f"shape {batch}x{seq}x{hidden}, {args.threads} threads, ONNX Runtime {ort.__version__}, CPU {cpu_model()} "
          f"({cpu_flags()}): {fused} / {split} median ratio {statistics.median(ratios):.2f} over {args.rounds} rounds")


if __name__ == "__main__":
    main()
