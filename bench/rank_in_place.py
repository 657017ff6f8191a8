"""The solver in a search's order with its rank copied or written in place, in one process.

    NUMBA_NUM_THREADS=1 python bench/rank_in_place.py [--models digits_mlp mnist_mlp] [--rounds 6]

``bench_solver.time_search_order`` (global s, thread CPU time, least of 40 per round), alternating
per round between the rank ``compress.py`` gives the solver (``pruning.ProtectStrongest``, applied
in place over the |w| buffer from ``solvers.RANK_IN_PLACE_FROM`` weights) and the same rank as a
plain function (written into the solver's rank buffers, a copy of all ranks a selection, as
before branch keys9; Adam then reads the keys in every layer). Prints per model and rank the
least over the rounds of penalty, add and step, and the least and median of their total. Not a test.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.argv, arguments = sys.argv[:1], sys.argv[1:]  # bench_solver parses its own options on import
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_solver  # noqa: E402
import numba  # noqa: E402
from onnx_snn_compress import pruning  # noqa: E402
from onnx_snn_compress.samples import sample_data_path  # noqa: E402


def copied_rank(graph, flat):
    rank = compress_rank(graph, flat)
    if not isinstance(rank, pruning.ProtectStrongest):
        return rank
    return lambda magnitudes, out=None: pruning.protect_strongest(magnitudes, rank.part, rank.rows, rank.count, out)


compress_rank = bench_solver.compress_rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits_mlp", "mnist_mlp"])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(arguments)
    numba.set_num_threads(1)
    bench_solver.clock, bench_solver.statistic = time.thread_time, min
    for name in args.models:
        graph = bench_solver.model(name, 1e6)
        gradients = bench_solver.training_step_seconds(graph, sample_data_path(name), 64, 8, 3)[-1]
        results = {"copied": [], "in place": []}
        for _ in range(args.rounds):
            for label, rank in (("copied", copied_rank), ("in place", compress_rank)):
                bench_solver.compress_rank = rank
                results[label].append(bench_solver.time_search_order(graph, gradients, "global", 40))
        for label, runs in results.items():
            parts = ", ".join(f"{key} {1e3 * min(run[key] for run in runs):.3f}" for key in runs[0])
            totals = [1e3 * sum(run.values()) for run in runs]
            print(f"{name} {label}: least {parts} ms; total least {min(totals):.3f}, "
                  f"median {statistics.median(totals):.3f} ms")


if __name__ == "__main__":
    main()
