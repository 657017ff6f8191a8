"""The minimax solver's own cost per step, as a share of a training step.

    python bench/bench_solver.py [--threads 2] [--repeats 20] [--train-repeats 10]
                                 [--synthetic-weights 10000000] [--granularity global layer]
                                 [--clock wall|thread] [--statistic median|min] [--tree PATH]

Per search step, ``compress.Compression._search`` runs, besides the training step:

    penalty   ``Minimax.penalty(state, hard_pruned)``: one read-only comparison of |w| with
              the values the last ``step`` selected on; they are equal in a search, so its
              least-s sets are reused (else: a selection, as in ``step``) -- before the training step
    add       the returned ``optim.Penalty``'s ``grads += 2 y w`` on the set, by comparing each
              weight's key with the set's bound (no mask), inside the training step: from
              ``Adam.fuse_from`` weights in Adam's own pass (which also writes the |w| that
              ``step`` reads), else as a pass of its own; timed as the Adam step's excess
              over a plain one
    step      ``Minimax.step(state, costs, hard_pruned, budget)``: the flat |w| (written by
              Adam's pass in a search's order), the rank, then one jitted call
              (``kernels.search_step.search_step``): one survey pass (per group: the keys below
              its window, the window's members, the sum of squares), the least-s set before the
              s step refined in the window, the s step, the set after it (the same window), one
              pass for the squares and cost of the first and the cost of the second
              (kernels/selection.py's loops), the dual steps, the windows moved to the new
              boundaries (kernels/windows.py)

These three are timed through the solver's own API, from the same mid-search state
every repeat (``penalty`` right after a ``step`` from it, as in a search;
s = half the prunable weights, y = 0.3, z = 0.1 (the s step moves s by about 0.6 %, a typical
step: in mnist_mlp's searches the median |ds| is 0.3 % and 77 % of the steps move it by at most
2.5 %, so that the set after the s step lies in the window), nothing hard-pruned,
resource ``params``, budget 0.1, the CompressConfig step sizes, the rank compress.py gives it:
each output neuron's strongest synapse last, ``compress_rank``; before 2026-12-01 the bench ranked
by |w| alone and left out that rank's cost), and compared with
a training step of the same model: forward + loss + backward + Adam (the core of
``Trainer.train_step``, as in bench_train_step.py) at ``--batch`` (64) and T = 8 on
the embedded digits. The operations inside them are also timed one by one, on the
same weights, to show which dominates.

Each call is timed twice: back to back (warm caches: the least it can cost), and in a search's
order with the training step's work between them (``time_search_order``: ``penalty`` right
after a ``step``, a forward and backward, the Adam step given the penalty, then ``step``), where
a forward and backward has evicted what the solver's passes read. There ``add`` is what the
penalty adds to Adam's own pass (Adam adds its gradient and writes |w| for the next ``step``,
``optim.Penalty``): the Adam step's median excess over a plain one. **The solver's share is the
second: penalty + add + step in a search's order, over the training step.** (Tables before
2026-11-30 21:00 UTC gave the warm ``step`` row alone, without the penalty, its add and the
caches a search leaves: on mnist_mlp a third to a half of the full cost.)

Models: the four samples (``digits_mlp``, ``digits_conv``, ``mnist_mlp``, ``mnist_conv``, each
on its own data) with the paper's default prunable layers (all synapse layers but the first), and ``synthetic``: an MLP
64 -> H -> H -> 10 of the samples' LIF neurons with H chosen so that the prunable
layers (H -> H and H -> 10) hold ``--synthetic-weights`` synapses (10 M: H = 3,157).
Its random weights are scaled so that its hidden layers fire; it is not trained.

Medians over the repeats (the first call of everything is a warm-up: JIT, caches).
``--clock thread`` times by the CPU time of the calling thread (``time.thread_time``) instead of
the wall clock: with ``--threads 1`` (which it requires) that is all the work, and other
processes on a busy machine cost it little (they still share the caches); ``--statistic min``
reports the least time instead of the median, the figure a busy machine disturbs least.
``--tree``: the source tree whose library and kernels run (default: this file's), whatever is
installed (``tree.use_tree``), so the same Python can time two trees in turn. Not a test: the
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the solver timings")
    parser.add_argument("--train-repeats", type=int, default=10, help="repeats of the training step")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--synthetic-weights", type=float, default=10e6)
    parser.add_argument("--models", nargs="+", default=["digits_mlp", "digits_conv", "mnist_mlp", "mnist_conv", "synthetic"])
    parser.add_argument("--granularity", nargs="+", default=["global", "layer"], choices=["global", "layer"])
    parser.add_argument("--clock", default="wall", choices=["wall", "thread"],
                        help="thread: CPU time of the calling thread (with --threads 1 on a busy machine)")
    parser.add_argument("--statistic", default="median", choices=["median", "min"])
    parser.add_argument("--search-every", type=int, default=None,
                        help="training steps per search step in the search-order timing (default: compress's, 1)")
    from tree import add_tree_option

    add_tree_option(parser)
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)
    from tree import use_tree  # (a script that imports this module chooses the tree itself)

    use_tree(ARGS.tree)

import numba
import numpy as np
from onnx_snn_compress.samples import digits_path, sample_data_path, sample_model_path

from onnx_snn_compress import backprop, ir, pruning
from onnx_snn_compress.backprop import backward, forward_train, trainable
from onnx_snn_compress.compress import CompressConfig
from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.losses import LOSSES
from onnx_snn_compress.optim import Adam
from onnx_snn_compress.pruning import FlatWeights, default_prunable
from onnx_snn_compress.resources import weight_costs
from onnx_snn_compress.solvers import Budget, Minimax, MinimaxState

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_step import OtherLoad, synthetic_graph


clock = time.perf_counter  # --clock thread: time.thread_time
statistic = statistics.median  # --statistic min: min


def median_seconds(function, repeats: int, setup=None) -> float:
    """The median (``statistic``) time (``clock``) of ``function()`` over ``repeats`` calls after
    one warm-up call; ``setup()`` (untimed) runs before each call."""
    times = []
    for index in range(repeats + 1):
        argument = setup() if setup is not None else None
        start = clock()
        function() if setup is None else function(argument)
        if index:
            times.append(clock() - start)
    return statistic(times)


# -- models ------------------------------------------------------------------------------
def model(name: str, synthetic_weights: float) -> ir.Graph:
    if name == "synthetic":
        return synthetic_graph(synthetic_weights)  # from bench_train_step.py, beside this file
    return load_model(sample_model_path(name))


# -- the training step -----------------------------------------------------------------
def training_step_seconds(graph: ir.Graph, data_path, batch: int, time_steps: int, repeats: int):
    """Median training step and its parts (on the data at ``data_path``); also each Linear
    backward's time beside what numpy's own (multi-threaded BLAS) GEMMs of the same shapes take."""
    data = load_for_model(data_path, graph.input.shape, graph.num_classes, "train", time_steps)
    x, y = data.inputs(slice(0, batch)), data.y[:batch]
    optimizer = Adam(trainable(graph), lr=1e-4)
    rng = np.random.default_rng(0)
    loss_function = LOSSES["mse_rate"]
    parts = {"forward": [], "backward": [], "adam": []}
    rates = {}
    linear_times: dict[str, list[float]] = {}
    linear_shapes: dict[str, tuple] = {}
    original = backprop.BACKWARD[ir.Linear.kind]

    def timed_linear(node, x_in, grad, needs, param_grads):
        start = clock()
        value = original(node, x_in, grad, needs, param_grads)
        linear_times.setdefault(node.name, []).append(clock() - start)
        linear_shapes[node.name] = (x_in.shape, grad.shape, needs[0])
        return value

    backprop.BACKWARD[ir.Linear.kind] = timed_linear
    try:
        result = _train_steps(graph, x, y, optimizer, rng, loss_function, parts, repeats)
    finally:
        backprop.BACKWARD[ir.Linear.kind] = original
    rates, grads = result

    def gradients():  # a forward and backward as a search runs them between two solver calls
        output, tape = forward_train(graph, x, rng)
        return backward(graph, tape, loss_function(output, y)[1])

    total = statistic([sum(p) for p in zip(*parts.values())])
    linear = {}
    for name, (x_shape, grad_shape, input_grad) in linear_shapes.items():
        rows = x_shape[0] * x_shape[1]
        inputs = np.ones((rows, x_shape[-1]), np.float32)
        grad_out = np.ones((rows, grad_shape[-1]), np.float32)
        weight = graph[name].weight

        def numpy_gemms(inputs=inputs, grad_out=grad_out, weight=weight, input_grad=input_grad):
            grad_out.T @ inputs
            if input_grad:
                grad_out @ weight

        linear[name] = (statistic(linear_times[name][1:]), median_seconds(numpy_gemms, 3))
    return total, {k: statistic(v) for k, v in parts.items()}, rates, grads, linear, gradients


def _train_steps(graph, x, y, optimizer, rng, loss_function, parts, repeats):
    rates = {}
    for index in range(repeats + 1):
        start = clock()
        output, tape = forward_train(graph, x, rng)
        middle = clock()
        _, grad_output = loss_function(output, y)
        grads = backward(graph, tape, grad_output)
        after_backward = clock()
        optimizer.step(grads)
        end = clock()
        if index:
            parts["forward"].append(middle - start)
            parts["backward"].append(after_backward - middle)
            parts["adam"].append(end - after_backward)
        else:
            rates = tape.firing_rates()
    return rates, grads


# -- the solver ------------------------------------------------------------------------
def solver_setup(graph: ir.Graph, granularity: str, budget_fraction: float = 0.1):
    config = CompressConfig()
    layers = default_prunable(graph)
    flat = FlatWeights(graph, layers)
    groups = [part for _, part in flat.layer_slices()] if granularity == "layer" else [slice(0, flat.size)]
    solver = Minimax(flat, groups, config.lr_s, config.dual_lr_y, config.dual_lr_z, rank=compress_rank(graph, flat))
    per_layer = weight_costs(graph, "params")
    costs = flat.flatten({name: per_layer[name] for name in layers})
    fixed = float(sum(np.sum(c) for name, c in per_layer.items() if name not in layers))
    reference = fixed + float(np.sum(costs))
    budget = Budget(target=budget_fraction, reference=reference, fixed=fixed)
    hard_pruned = np.zeros(flat.size, dtype=bool)
    return flat, solver, costs, budget, hard_pruned, len(groups)


def compress_rank(graph: ir.Graph, flat: FlatWeights):
    """The rank ``compress.py`` gives the solver: each output neuron's strongest synapses last
    (``min_output_synapses``) when the output layer is pruned; ranked in place where the tree has
    ``pruning.ProtectStrongest``, else into the solver's buffers (as ``Compression._rank`` did)."""
    count, output = CompressConfig().min_output_synapses, graph.prunable()[-1].name
    part = dict(flat.layer_slices()).get(output)
    if count == 0 or part is None:
        return lambda magnitudes, out=None: magnitudes
    rows = graph[output].weight.shape[0]
    if hasattr(pruning, "ProtectStrongest"):
        return pruning.ProtectStrongest(part, rows, count)
    return lambda magnitudes, out=None: pruning.protect_strongest(magnitudes, part, rows, count, out)


def mid_search_state(groups: int) -> MinimaxState:
    return MinimaxState(sigma=np.full(groups, 0.5), y=np.full(groups, 0.3), z=0.1)


def time_solver(graph, grads, granularity, repeats):
    """The solver's calls (and, for global s, the operations inside them) back to back: warm caches."""
    flat, solver, costs, budget, hard_pruned, groups = solver_setup(graph, granularity)
    params = trainable(graph)
    saved = {name: param.copy() for name, param in params.items()}

    def restore():  # after the Adam steps of ``add`` (the penalty and step leave the weights alone)
        for name, value in saved.items():
            params[name][...] = value

    grads_copy = lambda: {k: v.copy() for k, v in grads.items()}
    def stepped_state():  # as in a search: the penalty follows the step of the last training step
        state = mid_search_state(groups)
        solver.step(state, costs, hard_pruned, budget)
        return state

    timings = {
        "penalty": median_seconds(lambda state: solver.penalty(state, hard_pruned), repeats, stepped_state),
    }
    # add: what the penalty adds to an Adam step (in its pass, or as its own, below Adam.fuse_from)
    penalty, optimizer = solver.penalty(stepped_state(), hard_pruned), Adam(params, lr=1e-4)
    timings["add"] = max(0.0, median_seconds(lambda g: optimizer.step(g, penalty), repeats, grads_copy)
                         - median_seconds(lambda g: optimizer.step(g), repeats, grads_copy))
    restore()
    timings["step"] = median_seconds(lambda state: solver.step(state, costs, hard_pruned, budget),
                                     repeats, lambda: mid_search_state(groups))
    restore()
    # the operations inside, one by one
    from onnx_snn_compress.kernels import selection as kernels
    from onnx_snn_compress.least_sets import LeastSets, Window

    values = flat.native_magnitudes()
    keys = kernels.key_bits(values)
    k = int(0.5 * flat.size)
    finder = LeastSets([slice(0, flat.size)], flat.size)
    finder.survey(values, keys, [k])
    least = finder.least(0, k)
    mask = np.zeros(flat.size, dtype=bool)
    kernels.least_mask(keys, 0, flat.size, least, mask)
    buffer = np.empty_like(values)
    shift = kernels.top_shift(keys, flat.size)
    ops = {
        "flat float32 |w| of the weights (native_magnitudes)": median_seconds(lambda: flat.native_magnitudes(buffer),
                                                                              repeats),
        "survey: keys below the window, its members, the squares (one pass)": median_seconds(
            lambda: finder.survey(values, keys, [k]), repeats),
        "the window sorted by its top digit, the boundary refined (Window)": median_seconds(
            lambda: Window(*finder._window(0)._pairs, finder.lo[0], finder.hi[0]).key_of_rank(k - finder._below[0]),
            repeats),
        "squares and costs of two sets (set_sums, one pass)": median_seconds(
            lambda: finder.sums(np.ones(1), np.zeros(1, np.uint8), [least], [least]), repeats),
        "histogram of the rank bits (a window's fallback, one pass)": median_seconds(
            lambda: kernels.histogram(keys, 0, flat.size, shift), repeats),
        "penalty's check: |w| equal to the last step's (same_magnitudes)": median_seconds(
            lambda: flat.same_magnitudes(values), repeats),
        "grads += 2 y w on the set (add_scaled_least)": median_seconds(
            lambda g: flat.add_scaled_least(g, keys, least, slice(0, flat.size), 2.0), repeats, grads_copy),
    }
    # numpy primitives the solver used before, for comparison (bench/README.md)
    squared = values.astype(np.float64) ** 2
    leaner = {
        "np.argpartition of the float64 squares (the selection of 2026-11-24)": median_seconds(
            lambda: np.argpartition(squared, k), repeats),
        "np.sum(costs[~pruned]) (the resource of 2026-11-24)": median_seconds(lambda: np.sum(costs[~mask]), repeats),
    }
    return flat.size, timings, ops, leaner


def time_search_order(graph, gradients, granularity, repeats, every=1):
    """The solver's calls in a search's order, with its training step's work between them, over
    a cycle of ``every`` training steps (``--search-every``) as ``compress.py`` runs it: per
    training step ``penalty`` (the first right after a ``step``, the others holding its sets); an
    untimed forward and backward (``gradients()``); the Adam step given that penalty (Adam adds
    its gradient in its own pass, and before a ``step`` writes |w| there too: ``optim.Penalty``),
    of which the penalty's share, ``add``, is the excess over as many plain Adam steps after the
    same kind of forward and backward; then one ``step`` over the cycle, which reads the |w| Adam
    wrote. Returns the medians over the cycles, per training step (a cycle's sums over
    ``every``): ``{"penalty", "add", "step"}`` (seconds)."""
    flat, solver, costs, budget, hard_pruned, groups = solver_setup(graph, granularity)
    params = trainable(graph)
    saved = {name: param.copy() for name, param in params.items()}  # Adam moves them: restored after
    optimizer = Adam(params, lr=1e-4)
    times = {"penalty": [], "fused": [], "plain": [], "step": []}
    for index in range(repeats + 1):
        state = mid_search_state(groups)
        solver.step(state, costs, hard_pruned, budget)
        cycle = dict.fromkeys(times, 0.0)
        for position in range(every):
            start = clock()
            # (keywords only where they are needed: a --tree of before --search-every takes none)
            penalty = solver.penalty(state, hard_pruned, **(
                {"held": position > 0, "then_step": position == every - 1} if every > 1 else {}))
            middle = clock()
            grads = gradients()
            before = clock()
            optimizer.step(grads, penalty)
            cycle["penalty"] += middle - start
            cycle["fused"] += clock() - before
        start = clock()
        solver.step(state, costs, hard_pruned, budget, **({"steps": every} if every > 1 else {}))
        cycle["step"] = clock() - start
        for _ in range(every):
            grads = gradients()
            plain = clock()
            optimizer.step(grads)
            cycle["plain"] += clock() - plain
        if index:
            for key, seconds in cycle.items():
                times[key].append(seconds / every)
    for name, value in saved.items():
        params[name][...] = value
    return {"penalty": statistic(times["penalty"]), "add": max(0.0, statistic(times["fused"]) - statistic(times["plain"])),
            "step": statistic(times["step"])}


def masked_adam_seconds(graph: ir.Graph, grads, repeats):
    """Adam.step with every prunable weight masked at 50 % vs no masks (after a budget is frozen)."""
    params = trainable(graph)
    copies = {k: v.copy() for k, v in params.items()}
    plain = Adam(copies, lr=1e-4)
    masks = {f"{name}.weight": np.random.default_rng(1).random(graph[name].weight.shape) < 0.5
             for name in default_prunable(graph)}
    masked = Adam({k: v.copy() for k, v in params.items()}, lr=1e-4, masks=masks)
    return median_seconds(lambda: plain.step(grads), repeats), median_seconds(lambda: masked.step(grads), repeats)


def main() -> None:
    global clock, statistic
    args = ARGS
    statistic = min if args.statistic == "min" else statistics.median
    if args.clock == "thread":
        if args.threads != 1:
            sys.exit("--clock thread times the calling thread only: use it with --threads 1")
        clock = time.thread_time
    numba.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"training step: batch {args.batch}, T={args.time_steps}, {args.statistic} of {args.train_repeats}; "
          f"solver: {args.statistic} of {args.repeats}; {args.clock} clock; "
          f"{args.threads} threads ({os.cpu_count()} cores); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("(other load: cores kept busy by other processes while a block was timed; rerun if not ~0)")
    for name in args.models:
        graph = model(name, args.synthetic_weights)
        total_weights = sum(node.weight.size for node in graph.prunable())
        with OtherLoad() as load:
            step_seconds, parts, rates, grads, linear, gradients = training_step_seconds(
                graph, digits_path() if name == "synthetic" else sample_data_path(name), args.batch, args.time_steps,
                args.train_repeats)
        rates_text = ", ".join(f"{k} {v:.3f}" for k, v in rates.items())
        print()
        print(f"== {name}: {total_weights:,} synapses; firing rates {rates_text}")
        print(f"  training step {1e3 * step_seconds:.2f} ms (forward {1e3 * parts['forward']:.2f}, "
              f"loss + backward {1e3 * parts['backward']:.2f}, Adam {1e3 * parts['adam']:.2f}); "
              f"other load {_cores(load)}")
        ours_linear = sum(v[0] for v in linear.values())
        numpy_linear = sum(v[1] for v in linear.values())
        print("  Linear backward per layer, ours vs numpy's GEMMs of the same shapes: "
              + ", ".join(f"{k} {1e3 * a:.2f} vs {1e3 * b:.2f} ms" for k, (a, b) in linear.items()))
        fast_step = step_seconds - ours_linear + min(ours_linear, numpy_linear)
        if ours_linear > 2 * numpy_linear:
            print(f"  a training step with Linear backward at numpy GEMM speed would take about "
                  f"{1e3 * fast_step:.2f} ms (estimate)")
        for granularity in args.granularity:
            with OtherLoad() as load:
                size, warm, ops, leaner = time_solver(graph, grads, granularity, args.repeats)
                every = args.search_every or CompressConfig().search_every or 1
                cold = time_search_order(graph, gradients, granularity, args.repeats, every)
            print(f"  minimax, granularity {granularity}: {size:,} prunable weights; other load {_cores(load)}")
            print(f"    {'':<8} {'warm, back to back':>31} {'in a search order (add: in Adam)':>47}, per training step "
                  f"with a search step every {every}")
            for key in (*cold, "total"):
                seconds = sum(warm.values()) if key == "total" else warm[key]
                after = sum(cold.values()) if key == "total" else cold[key]
                print(f"    {key:<8} {1e3 * seconds:10.3f} ms {100 * seconds / step_seconds:5.1f} % of a step "
                      f"{1e3 * after:26.3f} ms {100 * after / step_seconds:5.1f} % of a step")
            solver_total = sum(cold.values())
            print(f"    the solver's share: {100 * solver_total / step_seconds:.1f} % (penalty + add + step in a search's "
                  f"order, a search step every {every} training steps; a training step of the search "
                  f"takes {(step_seconds + solver_total) / step_seconds:.2f}x one without it)")
            if ours_linear > 2 * numpy_linear:
                print(f"    {100 * solver_total / fast_step:.1f} % of the estimated step with Linear backward at numpy speed")
            if granularity == args.granularity[0]:
                print("    operations inside, one call each (a search step runs the |w| copy, the survey and"
                      " set_sums once each, the window's sort once and a refinement in one of its buckets 2x; the"
                      " histogram only when a set left its window):")
                for key, seconds in ops.items():
                    print(f"      {key:<68} {1e3 * seconds:10.3f} ms")
                print("    other primitives, for comparison:")
                for key, seconds in leaner.items():
                    print(f"      {key:<68} {1e3 * seconds:10.3f} ms")
        plain, masked = masked_adam_seconds(graph, grads, args.repeats)
        print(f"  Adam step without masks {1e3 * plain:.3f} ms, with 50 % of the prunable weights masked "
              f"{1e3 * masked:.3f} ms (finetuning with a frozen mask)")


def _cores(load: OtherLoad) -> str:
    return "n/a" if load.cores is None else f"{load.cores:.2f}"


if __name__ == "__main__":
    main()
