"""Where onnxruntime spends its time on a model: its own profiler, summed by op type, or the floor.

    python bench/bench_ort_profile.py MODEL.onnx [MODEL.onnx ...] [--batch 64] [--time-steps 8] [--runs 10]
    python bench/bench_ort_profile.py DENSE.onnx PRUNED.onnx --floor [--batch 1] [--runs 300] [--rounds 7]
    python bench/bench_ort_profile.py MODEL.onnx [MODEL.onnx ...] --by-node [--floor] [--batch 1] [--runs 200]

Runs each model (any file the ``bench`` command reads, converted to the profile as it
would be) ``--runs`` times on one thread with ``SessionOptions.enable_profiling`` and
prints, per model, the share of the kernel time of each op type and the number of
kernel calls per run (the ops inside the neuron loops once per time step): a count
that no other process on the machine changes. The neuron loops (``Scan``) are given
apart, as a share of the whole: their inner ops are also counted under their own
types. Shares, not times, so a busy machine matters less. The profiler's own cost per
kernel call (several microseconds) swamps the small kernels of a batch-1 run, so at
batch 1 its shares are not the wall-clock's.

``--floor`` times without the profiler (wall clock, the fastest of ``--rounds`` rounds of
``--runs`` runs, all variants in turns) each model as it is, with every neuron layer
replaced by ``Identity`` (the floor: what the rest of the graph costs), with every
neuron layer replaced by one elementwise op over all its time steps (``Relu``: a neuron
layer at the cost of one kernel call), and with each neuron layer alone replaced by
``Identity`` (what that layer costs: the difference to the model as it is). Each
column after the first model's gives its speed-up over the first model in that row.

``--by-node`` prints the profiler's kernel time per node (its fastest of ``--runs`` runs,
the figure other processes disturb least) and its calls per run, slowest first, then the
sums by kind (convolutions, ``Gemm``, NCHWc reorders, pools, neuron loops, other): which
part costs what (with ``--floor``, in the model whose neuron layers are ``Identity``).
The profiler's own cost is in every figure: compare nodes of similar cost, or the same
node in two models.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

from onnx_snn_compress import profile
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.frontends import load_with_proto

NEURON_OPS = {profile.LIF, profile.IF, profile.LIF_PER_NEURON, profile.CUBALIF, profile.RECURRENT_CUBALIF,
              profile.CUBALIF_PER_NEURON, profile.RECURRENT_CUBALIF_PER_NEURON}


def profile_model(path: str) -> tuple[tuple[int, ...], onnx.ModelProto]:
    """(per-sample input shape, the model in the profile) of any file the ``bench`` command reads."""
    graph, model = load_with_proto(path)
    return graph.input.shape, to_model(graph) if model is None else model


def session(model: onnx.ModelProto, profile_prefix: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def kernel_times(model: onnx.ModelProto, shape, batch: int, time_steps: int, runs: int) -> list[tuple[str, str, float]]:
    """(node name, op type, microseconds) of every kernel call in ``runs`` profiled runs, after
    3 warm-up runs (every run makes the same calls, so theirs are the first 3 / (3 + runs))."""
    with tempfile.TemporaryDirectory() as folder:
        runner = session(model, os.path.join(folder, "profile"))
        feed = {runner.get_inputs()[0].name: np.random.default_rng(0).random(
            (time_steps, batch, *shape), dtype=np.float32)}
        for _ in range(3 + runs):
            runner.run(None, feed)
        with open(runner.end_profiling()) as file:
            calls = [(event["name"][: -len("_kernel_time")], event["args"].get("op_name", "?"), event["dur"])
                     for event in json.load(file)
                     if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    return calls[len(calls) * 3 // (3 + runs):]


def op_shares(path: str, batch: int, time_steps: int, runs: int) -> tuple[float, float, dict[str, float], int]:
    """(ms per run, share of the Scan nodes, share per op type of the kernel time without them,
    kernel calls per run without the Scan nodes themselves)."""
    shape, model = profile_model(path)
    per_op, calls = collections.Counter(), 0
    for _, op, microseconds in kernel_times(model, shape, batch, time_steps, runs):
        per_op[op] += microseconds
        calls += op != "Scan"
    scan = per_op.pop("Scan", 0)
    total = sum(per_op.values())
    shares = {op: time / total for op, time in per_op.most_common()}
    return total / runs / 1e3, scan / total, shares, calls // runs


def node_times(path: str, batch: int, time_steps: int, runs: int, floor: bool) -> list[tuple[str, str, float, float]]:
    """(node, op type, kernel calls per run, fewest microseconds in one run) of each node of the
    model (with ``floor``, of its floor: every neuron layer ``Identity``), slowest first. The
    ops inside the neuron loops are one node for every layer and time step, as onnxruntime
    names them by the function's body; a ``Scan`` node's time is its whole loop, those ops
    included."""
    shape, model = profile_model(path)
    calls = kernel_times(neurons_replaced(model, "Identity") if floor else model, shape, batch, time_steps, runs)
    per_run = len(calls) // runs
    totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0] * runs)
    for index, (name, op, microseconds) in enumerate(calls):
        totals[name, op][index // per_run] += microseconds
    counts = collections.Counter((name, op) for name, op, _ in calls)
    rows = [(name, op, counts[name, op] / runs, min(values)) for (name, op), values in totals.items()]
    return sorted(rows, key=lambda row: -row[3])


NODE_KINDS = {"Conv": "convolutions", "Gemm": "Gemm", "MatMul": "Gemm", "ReorderInput": "NCHWc reorders",
              "ReorderOutput": "NCHWc reorders", "MaxPool": "pools", "AveragePool": "pools", "Scan": "neuron loops"}


def node_kinds(rows: list[tuple[str, str, float, float]]) -> dict[str, float]:
    """Microseconds per run of each kind of node of :func:`node_times`'s rows; the ops inside
    the loops of the Scan form (more than one call per run) are in "neuron loops" with their
    Scan, the other nodes in "other"."""
    kinds = collections.Counter()
    for _, op, calls, microseconds in rows:
        if op in NODE_KINDS or calls <= 1:
            kinds[NODE_KINDS.get(op, "other")] += microseconds
    return dict(kinds)


def neurons_replaced(model: onnx.ModelProto, op: str, layer: str | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose neuron layers (only ``layer``, if given) are one standard ``op`` on
    their input ``[T, N, ...]``: not the same model, a yardstick for what the neurons cost."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.domain == profile.DOMAIN and node.op_type in NEURON_OPS and layer in (None, node.name):
            node.op_type, node.domain = op, ""
            del node.input[1:]
            del node.attribute[:]
    return copy


def floor_times(paths: list[str], batch: int, time_steps: int, runs: int, rounds: int) -> dict[str, list[float]]:
    """Variant label -> fastest ms of each model (see the module docstring, ``--floor``)."""
    variants: dict[str, list[onnx.ModelProto]] = collections.defaultdict(list)
    feeds = []
    for path in paths:
        shape, model = profile_model(path)
        feeds.append(np.random.default_rng(0).random((time_steps, batch, *shape), dtype=np.float32))
        variants["as it is"].append(model)
        variants["neurons as Identity (floor)"].append(neurons_replaced(model, "Identity"))
        variants["neurons as one Relu each"].append(neurons_replaced(model, "Relu"))
        for node in model.graph.node:
            if node.domain == profile.DOMAIN and node.op_type in NEURON_OPS:
                variants[f"without {node.name}"].append(neurons_replaced(model, "Identity", node.name))
    variants = {label: models for label, models in variants.items() if len(models) == len(paths)}
    runners = {label: [session(model) for model in models] for label, models in variants.items()}
    fastest = {label: [np.inf] * len(paths) for label in variants}
    for _ in range(rounds):
        for label, sessions in runners.items():
            for i, (runner, feed) in enumerate(zip(sessions, feeds)):
                inputs = {runner.get_inputs()[0].name: feed}
                for _ in range(3):
                    runner.run(None, inputs)
                for _ in range(runs):
                    start = time.perf_counter()
                    runner.run(None, inputs)
                    fastest[label][i] = min(fastest[label][i], 1e3 * (time.perf_counter() - start))
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--floor", action="store_true", help="wall-clock times with neuron layers replaced")
    parser.add_argument("--rounds", type=int, default=5, help="--floor: rounds of --runs runs, the fastest run kept")
    parser.add_argument("--by-node", action="store_true",
                        help="the profiler's time per node (with --floor: of the floor, every neuron layer Identity)")
    parser.add_argument("--top", type=int, default=15, help="--by-node: the slowest nodes shown")
    args = parser.parse_args()
    if args.by_node:
        print(f"onnxruntime profile, 1 thread, batch {args.batch}, T={args.time_steps}, fastest of {args.runs} runs"
              f"{', neuron layers as Identity' if args.floor else ''}; load average {os.getloadavg()[0]:.1f}")
        for path in args.models:
            rows = node_times(path, args.batch, args.time_steps, args.runs, args.floor)
            print(f"{path}: {sum(row[3] for row in rows if row[1] != 'Scan'):.0f} us of kernels per run")
            for name, op, calls, microseconds in rows[:args.top]:
                op = "Scan (its loop)" if op == "Scan" else op
                print(f"  {name:<36} {op:<16} {calls:4.0f} calls {microseconds:9.1f} us")
            print("  by kind: " + ", ".join(f"{kind} {value:.0f} us" for kind, value in node_kinds(rows).items()))
        return
    if args.floor:
        print(f"onnxruntime, 1 thread, batch {args.batch}, T={args.time_steps}, fastest of {args.rounds} rounds of "
              f"{args.runs} runs; load average at start {os.getloadavg()[0]:.1f}")
        fastest = floor_times(args.models, args.batch, args.time_steps, args.runs, args.rounds)
        print("| variant | " + " | ".join(args.models) + " |")
        print("|---|" + "---|" * len(args.models))
        for label, ms in fastest.items():
            cells = [f"{ms[0]:.3f} ms"] + [f"{value:.3f} ms ({ms[0] / value:.2f}x)" for value in ms[1:]]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print(f"load average at end {os.getloadavg()[0]:.1f}")
        return
    print(f"onnxruntime profile, 1 thread, batch {args.batch}, T={args.time_steps}, load average {os.getloadavg()[0]:.1f}")
    for path in args.models:
        ms, scan, shares, calls = op_shares(path, args.batch, args.time_steps, args.runs)
        top = ", ".join(f"{op} {100 * share:.0f} %" for op, share in list(shares.items())[:8])
        print(f"{path}: {calls} kernel calls, {ms:.1f} ms of kernels per run; neuron loops (Scan) {100 * scan:.0f} %; "
              f"{top}")


if __name__ == "__main__":
    main()
