"""The solver's cost per search step in two trees, back to back, for a busy machine.

    python bench/solver_back_to_back.py BASE_TREE NEW_TREE [--rounds 6] [--repeats 100]
                                        [--models mnist_mlp digits_mlp]

Each round runs one process per tree, one after the other, that times the operations of
``bench_solver.time_solver`` (``penalty``, ``add``, ``step`` and the passes inside; one thread,
the calling thread's CPU time, the least of ``--repeats``; random gradients: the add's cost does
not depend on their values). Each process imports its tree's library and kernels whatever is
installed (``python bench/tree.py TREE -c CODE``), under the tree's ``.venv/bin/python`` where it
has one, else this Python; this file's ``bench_solver.py`` times both.
Prints per model and granularity the least total over the rounds for each tree and the range of
the base/new ratio within a round, then the operations' least times (global s, first model).
Not a test: numbers depend on the machine and its load (the load average is printed).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, time
import numpy as np
import bench_solver
bench_solver.clock, bench_solver.statistic = time.thread_time, min
out = {{}}
for name in {models!r}:
    graph = bench_solver.model(name, 0)
    rng = np.random.default_rng(0)
    grads = {{f"{{node.name}}.weight": rng.standard_normal(node.weight.shape).astype(np.float32)
              for node in graph.prunable()}}
    for granularity in ("global", "layer"):
        _, timings, ops, _ = bench_solver.time_solver(graph, grads, granularity, {repeats})
        out[f"{{name}} {{granularity}}"] = dict(timings, total=sum(timings.values()),
                                              **({{key.split(" (")[0]: value for key, value in ops.items()}}
                                                 if granularity == "global" else {{}}))
print(json.dumps(out))
"""


def run(tree: Path, models: list[str], repeats: int) -> dict:
    python = tree / ".venv" / "bin" / "python"
    environment = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if not python.exists():
        python = Path(sys.executable)
    code = CHILD.format(models=models, repeats=repeats)
    result = subprocess.run([str(python), str(HERE / "tree.py"), str(tree), "-c", code], cwd=tree, env=environment,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="the base tree, then the new one")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["mnist_mlp", "digits_mlp"])
    args = parser.parse_args()
    results, loads = {tree: [] for tree in args.trees}, []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for tree in args.trees:
            results[tree].append(run(tree.resolve(), args.models, args.repeats))
    base, new = (results[tree] for tree in args.trees)
    print(f"{args.rounds} rounds, load average at their starts {min(loads):.2f}-{max(loads):.2f}; "
          f"least total per search step (ms), base -> new, and base/new within a round:")
    for key in base[0]:
        ratios = [b[key]["total"] / n[key]["total"] for b, n in zip(base, new)]
        print(f"  {key:<20} {1e3 * min(r[key]['total'] for r in base):7.3f} -> "
              f"{1e3 * min(r[key]['total'] for r in new):7.3f}   ratio {min(ratios):.2f}-{max(ratios):.2f}")
    first = next(iter(base[0]))
    print(f"operations, {first} (least, ms):")
    for operation in base[0][first]:
        print(f"  {operation:<64} {1e3 * min(r[first][operation] for r in base):7.3f} -> "
              f"{1e3 * min(r[first][operation] for r in new):7.3f}")


if __name__ == "__main__":
    main()
