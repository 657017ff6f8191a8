"""Record every s, y, z, penalty gradient and pruned vector of 52 minimax searches, to check
that a change of the solver's mechanics leaves every result bit for bit.

    python bench/solver_record.py record a.pkl --tree <tree A>
    python bench/solver_record.py record b.pkl --tree <tree B>
    python bench/solver_record.py compare a.pkl b.pkl

The searches (12-40 steps) run on digits_mlp and mnist_mlp with random 'optimizer steps':
global and per-layer s, ``Minimax`` and ``PaperMinimax``, one cost and random costs per weight,
with and without ``pruning.protect_strongest``, small and large s steps; a tenth of the weights
is hard-pruned halfway, and a met budget is frozen and halved. Run it with NUMBA_NUM_THREADS=1
and =2 (the parallel passes start at 262,144 weights: mnist_mlp). The library, kernels included,
is ``--tree``'s (default: this file's tree), whatever is installed (``tree.use_tree``; PYTHONPATH
would load the installed tree's kernels), so two trees can be compared with one Python.
"""

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np


def search(model, per_layer, solver_class, cost_kind, protect, lr_s, steps, seed):
    from onnx_snn_compress import pruning
    from onnx_snn_compress.frontends import load_model
    from onnx_snn_compress.pruning import FlatWeights, protect_strongest
    from onnx_snn_compress.samples import sample_model_path
    from onnx_snn_compress.solvers import Budget

    graph = load_model(sample_model_path(model))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    parts = [part for _, part in flat.layer_slices()]
    rows = graph[layers[-1]].weight.shape[0]
    rank = (lambda m, out=None: protect_strongest(m, parts[-1], rows, 1, out)) if protect else (lambda m, out=None: m)
    if protect and hasattr(pruning, "ProtectStrongest"):  # compress's rank, applied in place, where the tree has it
        rank = pruning.ProtectStrongest(parts[-1], rows, 1)
    solver = solver_class(flat, parts if per_layer else [slice(0, flat.size)], lr_s=lr_s, lr_y=1.0, lr_z=0.1,
                          rank=rank)
    rng = np.random.default_rng(seed)
    costs = np.full(flat.size, 3.0) if cost_kind == "uniform" else rng.uniform(0.5, 2.0, flat.size)
    budget = Budget(target=0.3, reference=float(costs.sum()) * 1.1, fixed=float(costs.sum()) * 0.1)
    hard = np.zeros(flat.size, bool)
    state = solver.start(hard)
    state.y[:], state.z = 0.5, 0.1
    results = []

    def move_weights():
        for name in layers:
            graph[name].weight += 0.01 * rng.standard_normal(graph[name].weight.shape).astype(np.float32)

    for step in range(steps):
        grads = {f"{name}.weight": rng.standard_normal(graph[name].weight.shape).astype(np.float32)
                 for name in layers}
        add = solver.penalty(state, hard)
        if add is not None:
            add(grads)
        results.append(flat.flatten({name: grads[f"{name}.weight"] for name in layers}))
        move_weights()  # the optimizer step
        if step == steps // 2:
            hard = hard.copy()
            hard[rng.choice(flat.size, flat.size // 10, replace=False)] = True
            flat.zero(hard)
        pruned = solver.step(state, costs, hard, budget, 0.01)
        results.append(None if pruned is None else pruned.copy())
        results.append((state.sigma.copy(), state.y.copy(), state.z))
        if pruned is not None:  # the next budget
            hard = pruned.copy()
            flat.zero(hard)
            budget = Budget(target=budget.target * 0.5, reference=budget.reference, fixed=budget.fixed)
        if step % 3 == 0:  # something else moves the weights before the next penalty
            move_weights()
    return results


def record(path: str, tree: Path) -> None:
    from tree import use_tree

    use_tree(tree)
    from onnx_snn_compress import solvers
    from onnx_snn_compress.kernels import selection
    from onnx_snn_compress.solvers import Minimax, PaperMinimax

    print(f"library {solvers.__file__}, kernels {selection.__file__}")

    results = {}
    for model, steps in (("digits_mlp", 40), ("mnist_mlp", 12)):
        for per_layer in (False, True):
            for solver_class in (Minimax, PaperMinimax):
                for cost_kind in ("uniform", "random"):
                    for protect in (False, True):
                        for lr_s in (0.1, 3.0):
                            if model == "mnist_mlp" and lr_s == 3.0 and (
                                    solver_class is PaperMinimax or cost_kind == "random"):
                                continue
                            key = (model, per_layer, solver_class.__name__, cost_kind, protect, lr_s)
                            results[key] = search(*key[:2], solver_class, *key[3:], steps, seed=len(results))
    with open(path, "wb") as file:
        pickle.dump(results, file)
    print(f"{len(results)} searches recorded in {path}")


def same(a, b) -> bool:
    """Whether two recorded results are equal bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):  # (s, y, z)
        return all(same(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    return a is None or (a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


def compare(first: str, second: str) -> None:
    with open(first, "rb") as a, open(second, "rb") as b:
        ours, theirs = pickle.load(a), pickle.load(b)
    differing = [key for key in ours if len(ours[key]) != len(theirs.get(key, ())) or
                 not all(same(x, y) for x, y in zip(ours[key], theirs[key]))]
    for key in differing:
        print("differs:", key)
    print(f"{len(ours)} searches, {len(differing)} differing")
    sys.exit(1 if differing or ours.keys() != theirs.keys() else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    recording = actions.add_parser("record", help="run the searches and keep their results in PATH")
    recording.add_argument("path")
    from tree import add_tree_option

    add_tree_option(recording)
    comparing = actions.add_parser("compare", help="whether two records are equal bit for bit (exit 1 if not)")
    comparing.add_argument("first")
    comparing.add_argument("second")
    args = parser.parse_args()
    if args.action == "record":
        record(args.path, args.tree)
    else:
        compare(args.first, args.second)


if __name__ == "__main__":
    main()
