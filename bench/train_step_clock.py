"""CPU time of this thread for our training step and for each node's forward and backward.

    NUMBA_NUM_THREADS=1 python bench/train_step_clock.py [--model mnist_conv] [--repeats 15] [--tree PATH]

bench_train_step.py's step (its models, batch 64, T=8, mse_rate, Adam; the same calls as its
``--layers``) timed with ``time.thread_time``: on a machine that other jobs share, the wall clock
says more about them than about us, while the CPU time of one thread is the whole cost of a
one-thread step. Two trees are compared by running this once per tree, alternated (``--tree``,
bench/tree.py), a few times. Prints the median step and the nodes that cost most, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tree import add_tree_option, use_tree  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist_conv")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=10, help="how many of the costliest nodes to print")
    add_tree_option(parser)
    args = parser.parse_args()
    use_tree(args.tree)

    from bench_train_step import load_case, timed_nodes
    from onnx_snn_compress import backprop
    from onnx_snn_compress.losses import LOSSES
    from onnx_snn_compress.memory import keep_freed_memory
    from onnx_snn_compress.optim import Adam

    keep_freed_memory()  # as Trainer does
    graph, x, y = load_case(args.model, 64, 8)
    optimizer = Adam(backprop.trainable(graph), lr=1e-3)
    rng = np.random.default_rng(0)

    def step():
        output, tape = backprop.forward_train(graph, x, rng)
        optimizer.step(backprop.backward(graph, tape, LOSSES["mse_rate"](output, y)[1]))

    for _ in range(3):  # compile or load the kernels
        step()
    steps = []
    for _ in range(args.repeats):
        start = time.thread_time()
        step()
        steps.append(time.thread_time() - start)
    with timed_nodes(time.thread_time) as node_times:
        for _ in range(args.repeats):
            step()
    nodes = sorted(((1e3 * statistics.median(v), f"{direction} {name}") for (direction, name, _), v
                    in node_times.items()), reverse=True)
    print(f"{args.tree}: step {1e3 * statistics.median(steps):.2f} ms | "
          + ", ".join(f"{name} {ms:.2f}" for ms, name in nodes[:args.nodes]))


if __name__ == "__main__":
    main()
