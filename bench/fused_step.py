"""The optimizer step with the solver's passes fused into it, against the separate passes, in real searches.

    python bench/fused_step.py BASE_TREE NEW_TREE [--rounds 3] [--models mnist_mlp digits_mlp]

Each round runs one ``api.compress`` per tree and model, one after the other (minimax, budgets
0.05 0.02 0.01, 200 steps per budget, as ``solver_in_search.py``; one thread), and times, in each
search step, the work the fusion moves into Adam's pass: ``Adam.step``, the penalty's
``FlatWeights.add_scaled_least`` calls and the solver's ``FlatWeights.native_magnitudes`` copies
(none of them, in a tree that fused them, once its buffers exist). Times are the calling thread's
CPU time (``time.thread_time``), and the wall clock. Prints per model and tree the median over the
search steps (the first three left out: JIT and buffers) of the rounds' medians, the saving per
step, the range of base - new within a round, and each run's test accuracies (equal trees give
equal ones). Each run imports its tree's library and kernels whatever is installed (``python
bench/tree.py TREE -c CODE``), under the tree's ``.venv/bin/python`` where it has one, else this
Python. Not a test: numbers depend on the machine and its load (printed).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, statistics, sys, tempfile, time
from pathlib import Path
from onnx_snn_compress import api, optim, pruning, solvers
from onnx_snn_compress.samples import sample_data_path, sample_model_path

model = {model!r}
steps, current = [], None  # per search step: [cpu, wall] of the timed work
searching = [False]

def timed(function):
    def wrapper(*arguments, **options):
        if not searching[0]:
            return function(*arguments, **options)
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return function(*arguments, **options)
        finally:
            current[0] += time.thread_time() - cpu
            current[1] += time.perf_counter() - wall
    return wrapper

penalty, step = solvers.Minimax.penalty, solvers.Minimax.step

def marked_penalty(self, *arguments, **options):
    global current
    current = [0.0, 0.0]
    searching[0] = True
    return penalty(self, *arguments, **options)

def marked_step(self, *arguments, **options):
    try:
        return step(self, *arguments, **options)
    finally:
        searching[0] = False
        steps.append(current)

solvers.Minimax.penalty, solvers.Minimax.step = marked_penalty, marked_step
optim.Adam.step = timed(optim.Adam.step)
pruning.FlatWeights.add_scaled_least = timed(pruning.FlatWeights.add_scaled_least)
pruning.FlatWeights.native_magnitudes = timed(pruning.FlatWeights.native_magnitudes)
prune = ["fc1", "fc2"] if "mlp" in model else None
with tempfile.TemporaryDirectory() as folder:
    result = api.compress(sample_model_path(model), data=sample_data_path(model), budget=[0.05, 0.02, 0.01],
                          method="minimax", seed=0, steps_per_budget=200, out=Path(folder) / "run", progress=False,
                          prune=prune)
kept = steps[3:]
print(json.dumps({{"steps": len(steps), "cpu": statistics.median(s[0] for s in kept),
                  "wall": statistics.median(s[1] for s in kept),
                  "test": [entry["accuracy"]["test"] for entry in result.report["budgets"]]}}))
"""


def run(tree: Path, model: str) -> dict:
    python = tree / ".venv" / "bin" / "python"
    environment = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if not python.exists():
        python = Path(sys.executable)
    result = subprocess.run([str(python), str(HERE / "tree.py"), str(tree), "-c", CHILD.format(model=model)],
                            cwd=tree, env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="the base tree, then the new one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["mnist_mlp", "digits_mlp"])
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    results = {(model, tree): [] for model in args.models for tree in trees}
    loads = []
    for round_number in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for model in args.models:
            for tree in trees if round_number % 2 == 0 else trees[::-1]:  # alternate which tree runs first
                results[model, tree].append(run(tree, model))
    print(f"{args.rounds} rounds, load average at their starts {min(loads):.2f}-{max(loads):.2f}; per search "
          "step, Adam.step + add_scaled_least + native_magnitudes (ms, median of the rounds' medians):")
    base, new = trees
    for model in args.models:
        for clock in ("cpu", "wall"):
            b = [1e3 * r[clock] for r in results[model, base]]
            n = [1e3 * r[clock] for r in results[model, new]]
            saved = [x - y for x, y in zip(b, n)]
            print(f"  {model:<10} {clock:<4} base {statistics.median(b):6.3f} -> new {statistics.median(n):6.3f}: "
                  f"saves {statistics.median(b) - statistics.median(n):6.3f} (per round {min(saved):.3f}-{max(saved):.3f})")
        for tree in trees:
            runs = results[model, tree]
            print(f"  {model:<10} {tree.name}: {runs[0]['steps']} search steps; test % "
                  + "; ".join(" / ".join(f"{100 * a:.1f}" for a in r["test"]) for r in runs))


if __name__ == "__main__":
    main()
