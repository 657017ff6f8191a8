"""The parts of one ``Minimax.step`` on a sample, in thread CPU time: the survey (the rank and the
pass), the least-s sets (before and after the s step, in their windows), the sums, the windows
moved, and the rest (the |w| buffer, the s step and the dual steps in Python).

    NUMBA_NUM_THREADS=1 python bench/solver_step_parts.py [--models digits_mlp digits_conv mnist_mlp]
                                                        [--granularity global layer] [--repeats 200]
                                                        [--tree PATH]

Each part is timed by wrapping the ``LeastSets`` method that does it (a wrapper costs well under a
microsecond a call), from the mid-search state of bench_solver.py (s = 0.5, y = 0.3, z = 0.1, the
rank compress.py gives, back to back: warm caches); medians over ``--repeats`` steps after 20
untimed ones. The library and kernels are ``--tree``'s (default: this file's tree), whatever is
installed (``tree.use_tree``): run it on two trees alternately to compare them on a busy machine.
Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits_mlp", "digits_conv", "mnist_mlp"])
    parser.add_argument("--granularity", nargs="+", default=["global", "layer"], choices=["global", "layer"])
    parser.add_argument("--repeats", type=int, default=200)
    from tree import add_tree_option

    add_tree_option(parser)
    return parser.parse_args()


PARTS = ("survey", "least", "sums", "recentre")


def time_parts(name: str, granularity: str, repeats: int) -> dict[str, float]:
    """Median seconds of each part of a step and of the whole step (``step``; ``rest``: what
    the parts leave of it)."""
    from bench_solver import mid_search_state, model, solver_setup
    from onnx_snn_compress.least_sets import LeastSets

    graph = model(name, 0)
    flat, solver, costs, budget, hard_pruned, groups = solver_setup(graph, granularity)
    spent = dict.fromkeys(PARTS, 0.0)
    originals = {part: getattr(LeastSets, part) for part in PARTS}

    def timed(part):
        original = originals[part]

        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[part] += time.thread_time() - start
        return wrapper

    for part in PARTS:
        setattr(LeastSets, part, timed(part))
    samples = {part: [] for part in (*PARTS, "rest", "step")}
    try:
        for index in range(repeats + 20):
            state = mid_search_state(groups)
            for part in PARTS:
                spent[part] = 0.0
            start = time.thread_time()
            solver.step(state, costs, hard_pruned, budget)
            total = time.thread_time() - start
            if index >= 20:
                for part in PARTS:
                    samples[part].append(spent[part])
                samples["rest"].append(total - sum(spent.values()))
                samples["step"].append(total)
    finally:
        for part, original in originals.items():
            setattr(LeastSets, part, original)
    return {part: statistics.median(values) for part, values in samples.items()}


def main() -> None:
    args = parse_args()
    from tree import use_tree

    use_tree(args.tree)
    import numba

    print(f"thread CPU time, {numba.get_num_threads()} Numba threads, medians of {args.repeats} steps; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<12} {'s':<7}" + "".join(f"{part:>10}" for part in (*PARTS, "rest", "step")) + "   (us)")
    for name in args.models:
        for granularity in args.granularity:
            parts = time_parts(name, granularity, args.repeats)
            print(f"{name:<12} {granularity:<7}" + "".join(f"{1e6 * parts[p]:10.1f}" for p in (*PARTS, "rest", "step")))


if __name__ == "__main__":
    main()
