"""Replay a real search's least-s selections through ``least_sets.LeastSets`` alone, to compare
how two trees' windows find the same sets (counts and time), without the training around them.

    python bench/solver_windows_replay.py record FOLDER [--model mnist_mlp]
    python bench/solver_windows_replay.py replay FOLDER [--tree PATH] [--repeats 5]

``record`` runs the search of ``solver_in_search.py`` (minimax, budgets 0.05 0.02 0.01, 200
steps per budget) and keeps, in FOLDER, the values and keys of every survey (about 2 x 220 MB
for mnist_mlp) and every call of ``LeastSets`` (survey, least, recentre) in order. ``replay``
makes those calls on a fresh ``LeastSets`` of ``--tree`` (default: this file's; its library and
kernels whatever is installed: ``tree.use_tree``), writing 16 MB before each survey (a
training step's traffic evicts the caches), and prints the surveys of a group, the histograms
and the members gathered, and per repeat the thread CPU time of the calls per search step (the
first repeat compiles). Not a test: the time depends on the machine and its load.
"""

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from tree import add_tree_option, use_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="mnist_mlp")
    add_tree_option(parser)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    use_tree(args.tree)
    from onnx_snn_compress.least_sets import LeastSets
    (record if args.action == "record" else replay)(LeastSets, args)


def record(LeastSets, args) -> None:
    from onnx_snn_compress import api
    from onnx_snn_compress.samples import sample_data_path, sample_model_path

    calls, arrays = [], []
    init, survey, least, recentre = LeastSets.__init__, LeastSets.survey, LeastSets.least, LeastSets.recentre

    def recorded(name, method, keep=None):
        def call(self, *arguments):
            if keep is not None:
                arrays.append((arguments[0].copy(), arguments[1].copy()))
            calls.append((name, *([len(arrays) - 1, arguments[2]] if keep else arguments)))
            return method(self, *arguments)
        return call

    LeastSets.survey, LeastSets.least = recorded("survey", survey, keep=True), recorded("least", least)
    LeastSets.recentre = recorded("recentre", recentre)
    LeastSets.__init__ = lambda self, groups, size: calls.append(("init", groups, size)) or init(self, groups, size)
    prune = ["fc1", "fc2"] if "mlp" in args.model else None  # as bench/quality.py
    with tempfile.TemporaryDirectory() as folder:
        api.compress(sample_model_path(args.model), data=sample_data_path(args.model), budget=[0.05, 0.02, 0.01],
                     method="minimax", seed=0, steps_per_budget=200, out=Path(folder) / "run", progress=False,
                     prune=prune)
    args.folder.mkdir(parents=True, exist_ok=True)
    np.save(args.folder / "values.npy", np.stack([values for values, _ in arrays]))
    np.save(args.folder / "keys.npy", np.stack([keys for _, keys in arrays]))
    with open(args.folder / "calls.pkl", "wb") as file:
        pickle.dump(calls, file)
    print(f"{len(arrays)} surveys and {len(calls)} calls recorded in {args.folder}")


def replay(LeastSets, args) -> None:
    with open(args.folder / "calls.pkl", "rb") as file:
        calls = pickle.load(file)
    values, keys = np.load(args.folder / "values.npy", mmap_mode="r"), np.load(args.folder / "keys.npy", mmap_mode="r")
    counts = {"surveys": 0, "histograms": 0, "members": 0}
    survey, from_histogram = LeastSets._survey, LeastSets._window_from_histogram

    def counted_survey(self, first, stop):
        survey(self, first, stop)
        counts["surveys"] += stop - first
        counts["members"] += sum(self._inside[first:stop])

    def counted_histogram(self, p, k):
        counts["histograms"] += 1
        return from_histogram(self, p, k)

    LeastSets._survey, LeastSets._window_from_histogram = counted_survey, counted_histogram
    evict = np.empty(16 << 20, np.uint8)
    steps = sum(call[0] == "recentre" for call in calls)
    totals = []
    for repeat in range(args.repeats):
        counts.update(surveys=0, histograms=0, members=0)
        total, finder = 0.0, None
        for name, *arguments in calls:
            if name == "init":
                finder = LeastSets(*arguments)
                continue
            if name == "survey":
                arguments = [np.array(values[arguments[0]]), np.array(keys[arguments[0]]), arguments[1]]
                evict[:] = repeat
            started = time.thread_time()
            getattr(finder, name)(*arguments)
            total += time.thread_time() - started
        totals.append(total)
    print(f"{args.tree.resolve().name}: {steps} steps; {counts['surveys']} surveys of a group, {counts['histograms']} "
          f"histograms, {counts['members']} members; ms per step: " + " ".join(f"{1e3 * t / steps:.3f}" for t in totals))


if __name__ == "__main__":
    main()
