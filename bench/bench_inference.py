"""Inference throughput: the Numba simulator vs onnxruntime on the same exported sample models,
and (``--peers``) our profile models vs the frameworks' own unrolled torch.onnx exports.

    python bench/bench_inference.py [--repeats 30] [--threads 2] [--batch 256] [--time-steps 8]
    python bench/bench_inference.py --peers [--repeats 300] [--threads 1]

Both run the same profile model on the same encoded digits batch with the same
thread count; the first (compiling / session-building) call is excluded and
the median of the repeats is reported. Not a test: numbers depend on the machine,
and on other processes: run it on idle cores.

``--peers`` imports torch.onnx exports of tests/fixtures/interop (T = 6, the fixtures'
own) with our frontend, writes them as the profile (the Scan, any T) and with
``--fixed-time-steps`` (unrolled), and times the three in turns, three rounds, so a
busy machine slows all of them alike; the medians of the rounds are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba

from pathlib import Path

import numpy as np

from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_model, load_with_proto
from onnx_snn_compress.runtime import session
from onnx_snn_compress.samples import SAMPLE_MODELS, digits_path, sample_model_path
from onnx_snn_compress.simulate import simulate


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: JIT compilation, session initialisation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


INTEROP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interop"
# torch.onnx exports: (file, batch sizes it runs at). The snnTorch exports run batch 3 only
# (their "dynbatch" legacy file bakes batch 3 into the initial state and broadcasts batch 1 to 3).
PEER_EXPORTS = (
    ("snntorch_leaky_subtract_mlp.dynamo.onnx", (3,)),
    ("spikingjelly_lif_hard_decay_m_mlp.dynamo.dynbatch.onnx", (1, 64)),
    ("norse_lifboxcell_mlp.legacy.dynbatch.onnx", (1, 64)),
    ("spikingjelly_lif_hard_decay_m_conv.dynamo.onnx", (3,)),
)


def compare_with_unrolled_exports(threads: int, repeats: int) -> None:
    print(f"onnxruntime, {threads} thread(s), median of 3 rounds of medians of {repeats}")
    print(f"{'torch.onnx export':<52} {'T':>2} {'batch':>5} {'export ms':>10} {'Scan ms':>8} {'unrolled ms':>12} "
          f"{'Scan/export':>12} {'unrolled/export':>16}")
    for name, batches in PEER_EXPORTS:
        graph = load_model(INTEROP / name)
        peer = session_of_file(INTEROP / name, threads)
        time_steps = peer.get_inputs()[0].shape[0]
        scan = session(to_model(graph), threads=threads)
        unrolled = session(to_model(graph, time_steps=time_steps), threads=threads)
        for batch in batches:
            x = np.random.default_rng(0).random((time_steps, batch, *graph.input.shape), dtype=np.float32)
            runs = {label: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x}))
                    for label, s in (("export", peer), ("scan", scan), ("unrolled", unrolled))}
            rounds = {label: [] for label in runs}
            for _ in range(3):
                for label, run in runs.items():
                    rounds[label].append(median_seconds(run, repeats))
            ms = {label: 1e3 * statistics.median(values) for label, values in rounds.items()}
            print(f"{name:<52} {time_steps:>2} {batch:>5} {ms['export']:10.3f} {ms['scan']:8.3f} {ms['unrolled']:12.3f} "
                  f"{ms['scan'] / ms['export']:12.2f} {ms['unrolled'] / ms['export']:16.2f}")


def session_of_file(path: Path, threads: int):
    import onnx

    return session(onnx.load(str(path)), threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--peers", action="store_true", help="compare with the frameworks' unrolled torch.onnx exports")
    args = parser.parse_args()
    if args.peers:
        compare_with_unrolled_exports(args.threads, args.repeats)
        return
    numba.set_num_threads(args.threads)
    print(f"T={args.time_steps}, batch {args.batch}, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':<12} {'simulator ms':>13} {'onnxruntime ms':>15} {'ort/sim':>8} {'sim samples/s':>14}")
    # The simulator is timed first, with no onnxruntime session alive: onnxruntime's pool
    # threads spin after each run and would steal the cores Numba's threads need.
    cases = []
    for name in SAMPLE_MODELS:
        graph, model = load_with_proto(sample_model_path(name))
        data = load_for_model(digits_path(), graph.input.shape, graph.num_classes, "train", args.time_steps)
        x = data.inputs(slice(0, args.batch))
        cases.append((name, graph, model, x, median_seconds(lambda: simulate(graph, x, batch_size=None), args.repeats)))
    for name, graph, model, x, sim_seconds in cases:
        sess = session(model, threads=args.threads)
        feed = {graph.input.name: x}
        ort_seconds = median_seconds(lambda: sess.run(None, feed), args.repeats)
        print(f"{name:<12} {1e3 * sim_seconds:13.2f} {1e3 * ort_seconds:15.2f} {ort_seconds / sim_seconds:8.2f} "
              f"{args.batch / sim_seconds:14,.0f}")


if __name__ == "__main__":
    main()
