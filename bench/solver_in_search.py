"""The minimax solver's cost inside real searches (``bench_solver.py`` times one mid-search state).

    python bench/solver_in_search.py [--model mnist_mlp] [--seed 0] [--tree PATH] [--clock wall|thread]

Runs ``api.compress`` (minimax, budgets 0.05 0.02 0.01, 200 steps per budget, as
``quality.py``) and times ``Minimax.step``, ``Minimax.penalty``, the ``add`` it returns (where Adam adds
a penalty in its own pass, as since branch fuse8, ``add`` times only the calls outside it: none
in a search, so its median is 0) and the
training step of every search step (``Trainer.train_step`` given a penalty: forward, backward,
the penalty's add, the optimizer); prints their medians per call (the first three calls of
each left out: JIT and caches; ``step`` also its mean over the steps that did not meet a
budget, which counts the sets that left their windows), the solver's share ``(step + penalty +
add) / (training step + step)`` of medians, the test accuracies and, where ``least_sets.LeastSets`` exists, how many selections
left their window and how much of the group the windows held. ``--tree``: the source tree to
time (default: this file's), its library and kernels whatever is installed (``tree.use_tree``),
so two trees can be run in turn by this one script and one Python. Run it with one thread
(NUMBA_NUM_THREADS=1) when the machine is shared; ``--clock thread`` then times by the calling
thread's CPU time, which other processes disturb less (they still share the caches).
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tree import add_tree_option, use_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_mlp")
    parser.add_argument("--seed", type=int, default=0)
    add_tree_option(parser)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    args = parser.parse_args()
    tree = use_tree(args.tree)
    from onnx_snn_compress import api, solvers, train
    from onnx_snn_compress.samples import sample_data_path, sample_model_path

    times = {"step": [], "penalty": [], "add": [], "training step": []}
    step, penalty, train_step = solvers.Minimax.step, solvers.Minimax.penalty, train.Trainer.train_step

    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    unmet = []  # the steps that did not meet a budget (one that does takes the whole flat's order)

    def timed(name, function, *arguments, **options):
        started = clock()
        result = function(*arguments, **options)
        times[name].append(clock() - started)
        if name == "step" and result is None and len(times[name]) > 3:
            unmet.append(times[name][-1])
        return result

    def timed_penalty(self, *arguments, **options):
        result = timed("penalty", penalty, self, *arguments, **options)
        if not hasattr(result, "add"):  # a tree before optim.Penalty: the add is a closure
            return lambda grads: timed("add", result, grads)
        add = result.add  # Adam adds a Penalty's gradient in its own pass: times only a fallback's add
        result.add = lambda grads: timed("add", add, grads)
        return result

    def timed_train_step(self, penalty=None):
        if penalty is None:  # a finetune step
            return train_step(self)
        return timed("training step", train_step, self, penalty)

    solvers.Minimax.step = lambda self, *arguments, **options: timed("step", step, self, *arguments, **options)
    solvers.Minimax.penalty = timed_penalty
    train.Trainer.train_step = timed_train_step
    windows = _watch_windows()
    prune = ["fc1", "fc2"] if "mlp" in args.model else None  # as bench/quality.py
    with tempfile.TemporaryDirectory() as folder:
        result = api.compress(sample_model_path(args.model), data=sample_data_path(args.model),
                              budget=[0.05, 0.02, 0.01], method="minimax", seed=args.seed, steps_per_budget=200,
                              out=Path(folder) / "run", progress=False, prune=prune)
    medians = {name: 1e3 * statistics.median(values[3:]) if values[3:] else 0.0 for name, values in times.items()}
    solver = medians["step"] + medians["penalty"] + medians["add"]
    print(f"{args.model} seed {args.seed} ({tree.name}, load {os.getloadavg()[0]:.2f}): {len(times['step'])} search "
          f"steps; median ms per call ({args.clock} clock): "
          + ", ".join(f"{name} {value:.3f}" for name, value in medians.items())
          + f"; mean step not meeting a budget {1e3 * statistics.mean(unmet):.3f}"
          + f"; solver {solver:.3f} ({100 * solver / (medians['training step'] + medians['step']):.1f} %); test % "
          + " / ".join(f"{100 * entry['accuracy']['test']:.1f}" for entry in result.report["budgets"]))
    if windows is not None and not windows["shares"]:
        print("(the windows are kept in the kernels, one call a step: least_sets.KERNEL_WINDOWS; no count of the sets "
              "that left them)")
    elif windows is not None:
        shares = windows["shares"]
        print(f"selections {len(shares)}, left their window {windows['missed']} (then {windows['surveys']} surveys of "
              f"one group and {windows['histograms']} histograms); window share of the group: "
              f"median {statistics.median(shares):.3f}, quartiles {statistics.quantiles(shares, n=4)[0]:.3f} "
              f"{statistics.quantiles(shares, n=4)[2]:.3f}; in all {windows['all surveys']} surveys of a group "
              f"gathered {windows['members']} members")


def _watch_windows():
    try:
        from onnx_snn_compress.least_sets import LeastSets
    except ImportError:  # before least_sets.py
        return None
    watched = {"missed": 0, "shares": [], "surveys": 0, "histograms": 0, "in_least": False, "all surveys": 0,
               "members": 0}
    least, in_window = LeastSets.least, LeastSets._in_window
    survey, from_histogram = LeastSets._survey, LeastSets._window_from_histogram

    def watched_survey(self, first, stop):
        watched["surveys"] += watched["in_least"]  # a survey inside ``least``: a set left its window
        survey(self, first, stop)
        watched["all surveys"] += stop - first
        watched["members"] += sum(self._inside[first:stop])

    def watched_histogram(self, p, k):
        watched["histograms"] += watched["in_least"]
        return from_histogram(self, p, k)

    def watched_least(self, g, k):
        p = self.position[g]
        watched["missed"] += in_window(self, p, k) is None
        watched["shares"].append(self._inside[p] / max(1, self.groups[p].stop - self.groups[p].start))
        watched["in_least"] = True
        try:
            return least(self, g, k)
        finally:
            watched["in_least"] = False

    LeastSets.least, LeastSets._survey, LeastSets._window_from_histogram = watched_least, watched_survey, \
        watched_histogram
    return watched


if __name__ == "__main__":
    main()
