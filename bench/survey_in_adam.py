"""The survey folded into Adam's pass (``LeastSets.fold``) against the solver's own survey, in one process.

    NUMBA_NUM_THREADS=1 python bench/survey_in_adam.py [--model mnist_mlp] [--repeats 300]

On the model's prunable weights (one global group, compress.py's rank: each output neuron's
``--protect`` strongest synapses last, in place), runs search steps in a search's order:
``Minimax.penalty``, a 64 MiB write that evicts the caches (as a forward and backward does), the
fused Adam step given the penalty, ``Minimax.step``; every other step with the fold switched off
(``Minimax._fold`` returning {}: the step surveys every chunk itself); every step from the
same mid-search state (s = 0.5, y = 0.3, z = 0.1; the penalty selects anew, untimed). Times (thread CPU time, median) the Adam step, the solver's step and their sum, and
counts the chunks taken from Adam's pass. Not a test: the numbers depend on the machine and its load.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from onnx_snn_compress import least_sets  # noqa: E402
from onnx_snn_compress.frontends import load_model  # noqa: E402
from onnx_snn_compress.optim import Adam  # noqa: E402
from onnx_snn_compress.pruning import FlatWeights, ProtectStrongest  # noqa: E402
from onnx_snn_compress.samples import sample_model_path  # noqa: E402
from onnx_snn_compress.solvers import Budget, Minimax, MinimaxState  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_mlp")
    parser.add_argument("--repeats", type=int, default=300, help="search steps of each kind")
    parser.add_argument("--protect", type=int, default=10)
    args = parser.parse_args()
    graph = load_model(sample_model_path(args.model))
    flat = FlatWeights(graph, [node.name for node in graph.prunable()])
    params = {f"{name}.weight": graph[name].weight for name in flat.layers}
    output = list(flat.layer_slices())[-1]
    rank = ProtectStrongest(output[1], graph[output[0]].weight.shape[0], args.protect)
    solver = Minimax(flat, [slice(0, flat.size)], lr_s=0.1, lr_y=1.0, lr_z=0.1, rank=rank)
    optimizer = Adam(params, lr=1e-4)
    rng = np.random.default_rng(0)
    grads = {name: rng.standard_normal(param.shape).astype(np.float32) for name, param in params.items()}
    costs, hard_pruned = np.ones(flat.size), np.zeros(flat.size, bool)
    budget = Budget(target=0.01, reference=float(flat.size), fixed=0.0)  # never met: every step searches
    evictor = np.zeros(1 << 24, np.float32)
    taken, survey = [], least_sets.survey

    def watched(*arguments):
        surveyed = arguments[-1]
        taken.append(0 if surveyed is None else int(surveyed[0].sum()))
        return survey(*arguments)

    least_sets.survey = watched
    times = {kind: {"adam": [], "step": []} for kind in ("folded", "own")}
    chunks = {"folded": 0, "own": 0}
    for index in range(2 * args.repeats + 10):
        kind = "folded" if index % 2 else "own"
        if kind == "own":
            solver._fold = lambda spare: {}
        else:
            del solver._fold
        state = MinimaxState(sigma=np.array([0.5]), y=np.array([0.3]), z=0.1)  # each step from one mid-search state
        penalty = solver.penalty(state, hard_pruned)
        evictor.fill(1.0)
        started = time.thread_time()
        optimizer.step(grads, penalty)
        middle = time.thread_time()
        taken.clear()
        solver.step(state, costs, hard_pruned, budget)
        ended = time.thread_time()
        if index >= 10:  # JIT and buffers first
            times[kind]["adam"].append(middle - started)
            times[kind]["step"].append(ended - middle)
            chunks[kind] += sum(taken)
    print(f"{args.model}: {flat.size} weights, {least_sets.LeastSets([slice(0, flat.size)], flat.size)._starts.size} "
          f"chunks; thread CPU ms, median of {args.repeats}; load {os.getloadavg()[0]:.2f}")
    for kind, measured in times.items():
        adam, step = (1e3 * statistics.median(measured[key]) for key in ("adam", "step"))
        total = 1e3 * statistics.median(np.add(measured["adam"], measured["step"]))
        print(f"  {kind:>6}: Adam step {adam:.3f}, solver step {step:.3f}, sum {total:.3f}; "
              f"chunks taken from Adam's pass {chunks[kind] / args.repeats:.1f} a step")


if __name__ == "__main__":
    main()
