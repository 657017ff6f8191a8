"""Where onnxruntime spends its time on a model: its own profiler, summed by op type.

    python bench/bench_ort_profile.py MODEL.onnx [MODEL.onnx ...] [--batch 64] [--time-steps 8] [--runs 10]

Runs each model (any file the ``bench`` command reads, converted to the profile as it
would be) ``--runs`` times on one thread with ``SessionOptions.enable_profiling`` and
prints, per model, the share of the kernel time of each op type and the number of
kernel calls per run (the ops inside the neuron loops once per time step): a count
that no other process on the machine changes. The neuron loops (``Scan``) are given
apart, as a share of the whole: their inner ops are also counted under their own
types. Shares, not times, so a busy machine matters less.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort

from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.frontends import load_with_proto


def op_shares(path: str, batch: int, time_steps: int, runs: int) -> tuple[float, float, dict[str, float], int]:
    """(ms per run, share of the Scan nodes, share per op type of the kernel time without them,
    kernel calls per run without the Scan nodes themselves)."""
    graph, model = load_with_proto(path)
    model = to_model(graph) if model is None else model
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(
            (time_steps, batch, *graph.input.shape), dtype=np.float32)}
        for _ in range(3 + runs):
            session.run(None, feed)
        with open(session.end_profiling()) as file:
            events = json.load(file)
    per_op, calls = collections.Counter(), 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            per_op[op] += event["dur"]
            calls += op != "Scan"
    scan = per_op.pop("Scan", 0)
    total = sum(per_op.values())
    shares = {op: time / total for op, time in per_op.most_common()}
    return total / (3 + runs) / 1e3, scan / total, shares, calls // (3 + runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"onnxruntime profile, 1 thread, batch {args.batch}, T={args.time_steps}, load average {os.getloadavg()[0]:.1f}")
    for path in args.models:
        ms, scan, shares, calls = op_shares(path, args.batch, args.time_steps, args.runs)
        top = ", ".join(f"{op} {100 * share:.0f} %" for op, share in list(shares.items())[:8])
        print(f"{path}: {calls} kernel calls, {ms:.1f} ms of kernels per run; neuron loops (Scan) {100 * scan:.0f} %; "
              f"{top}")


if __name__ == "__main__":
    main()
