"""Inference throughput: the Numba simulator vs onnxruntime on the same exported sample models.

    python bench/bench_inference.py [--repeats 30] [--threads 2] [--batch 256] [--time-steps 8]

Both run the same profile model on the same encoded digits batch with the same
thread count; the first (compiling / session-building) call is excluded and
the median of the repeats is reported. Not a test: numbers depend on the machine,
and on other processes: run it on idle cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba

from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_with_proto
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--time-steps", type=int, default=8)
    args = parser.parse_args()
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
