"""What fusing the solver's survey into Adam's pass could save: the survey's cost where it runs.

    NUMBA_NUM_THREADS=1 python bench/survey_after_adam.py [--model mnist_mlp] [--repeats 200]

On the model's prunable weights (one global group, the least-s set at half of them), times
(thread CPU time, median) ``LeastSets.survey`` (i) back to back, caches warm, as
``bench_solver.py``; (ii) after a 64 MiB write evicts the caches; (iii) right after a fused Adam
step (``optim.Penalty``: penalty and |w| in its pass) that itself follows the eviction, the order
of a search step, and that Adam step itself. A survey fused into Adam would save at most (iii),
and at least (iii) - (i) (the compare, gather and sums stay, in Adam's pass). The library and
kernels are this file's tree's, whatever is installed (``tree.use_tree``). Not a test.
"""

import argparse
import statistics
import time

import numpy as np
from tree import OWN_TREE, use_tree

use_tree(OWN_TREE)
from onnx_snn_compress.frontends import load_model  # noqa: E402
from onnx_snn_compress.kernels.selection import key_bits  # noqa: E402
from onnx_snn_compress.least_sets import LeastSets  # noqa: E402
from onnx_snn_compress.optim import Adam, Penalty  # noqa: E402
from onnx_snn_compress.pruning import FlatWeights  # noqa: E402
from onnx_snn_compress.samples import sample_model_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_mlp")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    graph = load_model(sample_model_path(args.model))
    flat = FlatWeights(graph, [node.name for node in graph.prunable()])
    params = {f"{name}.weight": graph[name].weight for name in flat.layers}
    optimizer = Adam(params, lr=1e-6)  # tiny steps: the weights, and so the survey's work, stay put
    rng = np.random.default_rng(0)
    grads = {name: rng.standard_normal(param.shape).astype(np.float32) for name, param in params.items()}
    values = flat.native_magnitudes()
    keys = key_bits(values)
    k = flat.size // 2
    finder = LeastSets([slice(0, flat.size)], flat.size)
    finder.survey(values, keys, [k])
    least = finder.least(0, k)
    evictor = np.zeros(1 << 24, np.float32)  # 64 MiB, twice the L3 of the machine measured

    def adam():
        penalty = Penalty(lambda g: None, flat.least_terms(keys, least, slice(0, flat.size), 0.6),
                          flat.magnitude_views(values))
        optimizer.step(grads, penalty)

    def timed(function, before=None):
        times = []
        for _ in range(args.repeats):
            if before is not None:
                before()
            started = time.thread_time()
            function()
            times.append(time.thread_time() - started)
        return 1e3 * statistics.median(times)

    survey = lambda: finder.survey(values, keys, [k])  # noqa: E731
    evict = lambda: evictor.fill(1.0)  # noqa: E731
    print(f"{args.model}: {flat.size} weights; ms, median of {args.repeats}:")
    print(f"  (i)   survey, warm                        {timed(survey):.3f}")
    print(f"  (ii)  survey after the eviction           {timed(survey, evict):.3f}")
    print(f"  (iii) survey after eviction + fused Adam  {timed(survey, lambda: (evict(), adam())):.3f}")
    print(f"        fused Adam after the eviction       {timed(adam, evict):.3f}")


if __name__ == "__main__":
    main()
