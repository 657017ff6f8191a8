"""The minimax solver's cost inside real searches (``bench_solver.py`` times one mid-search state).

    python bench/solver_in_search.py [--model mnist_mlp] [--seed 0]

Runs ``api.compress`` (minimax, budgets 0.05 0.02 0.01, 200 steps per budget, as
``quality.py``) and times ``Minimax.step``, ``Minimax.penalty`` and the ``add`` it returns
around every call (where Adam adds a penalty in its own pass, as since branch fuse8, ``add``
times only the calls outside it: none in a search, so its mean is 0); prints their mean per search step (without the first three calls of each:
JIT and caches), the step's median, the test accuracies, and, where ``least_sets.LeastSets``
exists, how many selections left their window and how much of the group the windows held.
Run it with one thread (NUMBA_NUM_THREADS=1) when the machine is shared.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from onnx_snn_compress import api, solvers  # noqa: E402
from onnx_snn_compress.samples import sample_data_path, sample_model_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_mlp")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    times = {"step": [], "penalty": [], "add": []}
    step, penalty = solvers.Minimax.step, solvers.Minimax.penalty

    def timed(name, function, *arguments, **options):
        started = time.perf_counter()
        result = function(*arguments, **options)
        times[name].append(time.perf_counter() - started)
        return result

    def timed_penalty(self, *arguments, **options):
        result = timed("penalty", penalty, self, *arguments, **options)
        if not hasattr(result, "add"):  # a tree before optim.Penalty: the add is a closure
            return lambda grads: timed("add", result, grads)
        add = result.add  # Adam adds a Penalty's gradient in its own pass: times only a fallback's add
        result.add = lambda grads: timed("add", add, grads)
        return result

    solvers.Minimax.step = lambda self, *arguments, **options: timed("step", step, self, *arguments, **options)
    solvers.Minimax.penalty = timed_penalty
    windows = _watch_windows()
    prune = ["fc1", "fc2"] if "mlp" in args.model else None  # as bench/quality.py
    with tempfile.TemporaryDirectory() as folder:
        result = api.compress(sample_model_path(args.model), data=sample_data_path(args.model),
                              budget=[0.05, 0.02, 0.01], method="minimax", seed=args.seed, steps_per_budget=200,
                              out=Path(folder) / "run", progress=False, prune=prune)
    means = {name: 1e3 * statistics.mean(values[3:]) if values[3:] else 0.0 for name, values in times.items()}
    print(f"{args.model} seed {args.seed}: {len(times['step'])} search steps; ms per call: "
          + ", ".join(f"{name} {value:.3f}" for name, value in means.items())
          + f"; total {sum(means.values()):.3f}; step median {1e3 * statistics.median(times['step']):.3f}; test % "
          + " / ".join(f"{100 * entry['accuracy']['test']:.1f}" for entry in result.report["budgets"]))
    if windows is not None:
        shares = windows["shares"]
        print(f"selections {len(shares)}, left their window {windows['missed']} (then {windows['surveys']} surveys of "
              f"one group and {windows['histograms']} histograms); window share of the group: "
              f"median {statistics.median(shares):.3f}, quartiles {statistics.quantiles(shares, n=4)[0]:.3f} "
              f"{statistics.quantiles(shares, n=4)[2]:.3f}")


def _watch_windows():
    try:
        from onnx_snn_compress.least_sets import LeastSets
    except ImportError:  # before least_sets.py
        return None
    watched = {"missed": 0, "shares": [], "surveys": 0, "histograms": 0, "in_least": False}
    least, in_window = LeastSets.least, LeastSets._in_window
    survey, from_histogram = LeastSets._survey, LeastSets._window_from_histogram

    def watched_survey(self, first, stop):
        watched["surveys"] += watched["in_least"]  # a survey inside ``least``: a set left its window
        return survey(self, first, stop)

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
