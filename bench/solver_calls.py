"""The Python-level calls of one ``Minimax.step``: how many of each function (Python and
builtin, Numba dispatchers included) a step makes and the thread CPU time spent in each
(cProfile, its own overhead included: compare counts and shares, not absolute times).

    NUMBA_NUM_THREADS=1 python bench/solver_calls.py [--model digits_mlp] [--granularity global]
                                                   [--steps 200] [--top 30] [--tree PATH]

From the mid-search state of bench_solver.py (s = 0.5, y = 0.3, z = 0.1, the rank compress.py
gives), back to back, after 20 unprofiled steps. The library and kernels are ``--tree``'s
(default: this file's tree), whatever is installed (``tree.use_tree``). Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_mlp")
    parser.add_argument("--granularity", default="global", choices=["global", "layer"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    from tree import add_tree_option, use_tree

    add_tree_option(parser)
    args = parser.parse_args()
    use_tree(args.tree)
    from bench_solver import mid_search_state, model, solver_setup

    flat, solver, costs, budget, hard_pruned, groups = solver_setup(model(args.model, 0), args.granularity)
    for _ in range(20):
        solver.step(mid_search_state(groups), costs, hard_pruned, budget)
    states = [mid_search_state(groups) for _ in range(args.steps)]
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for state in states:
        solver.step(state, costs, hard_pruned, budget)
    profile.disable()
    stats = pstats.Stats(profile)
    rows = []
    for (path, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        where = function if path == "~" else f"{os.path.basename(path)}:{line}({function})"
        rows.append((calls / args.steps, own / args.steps, cumulative / args.steps, where))
    calls = sum(row[0] for row in rows)
    total = sum(row[1] for row in rows)
    print(f"{args.model}, {args.granularity} s: {calls:.0f} calls per step, {1e6 * total:.1f} us per step under "
          "the profiler (thread CPU time)")
    print(f"{'calls':>7} {'own us':>8} {'cum us':>8}  function")
    for per_step, own, cumulative, where in sorted(rows, key=lambda row: -row[1])[:args.top]:
        print(f"{per_step:7.1f} {1e6 * own:8.2f} {1e6 * cumulative:8.2f}  {where}")


if __name__ == "__main__":
    main()
