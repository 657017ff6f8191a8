"""Which core our one-thread training step shares with other CPU-bound processes, step by step.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/busy_placement.py [--model digits_conv]
                                                   [--busy 2] [--steps 400] [--threads 1]

Starts ``--busy`` CPU-bound processes (bench_train_step.py's ``spinners``, as its ``--busy``),
then runs ``--steps`` training steps (forward + loss + backward + Adam, bench_train_step.py's
step on its data) on ``--threads`` threads, and records per step its wall time and the core
this thread ran on at its end and each spinner's core (``/proc/.../stat``, field 39). Prints
the steps grouped by how many spinners shared our core: with three CPU-bound threads on two
cores the scheduler puts two on one core, and a step's time depends on whether ours is one of
them. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def core_of(path: str) -> int:
    with open(path) as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[36])  # field 39: the last CPU it ran on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_conv")
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import numpy as np

    from bench_train_step import load_case, spinners
    from onnx_snn_compress.backprop import backward, forward_train, trainable
    from onnx_snn_compress.losses import LOSSES
    from onnx_snn_compress.optim import Adam
    from onnx_snn_compress.threads import use_threads

    use_threads(args.threads, None)
    graph, x, y = load_case(args.model, 64, 8)
    optimizer, rng, loss_function = Adam(trainable(graph), lr=1e-4), np.random.default_rng(0), LOSSES["mse_rate"]

    def step():
        output, tape = forward_train(graph, x, rng)
        optimizer.step(backward(graph, tape, loss_function(output, y)[1]))

    for _ in range(20):
        step()  # compiled and warm
    quiet = []
    for _ in range(100):
        start = time.perf_counter()
        step()
        quiet.append(time.perf_counter() - start)
    rows = []
    with spinners(args.busy) as busy:
        time.sleep(1.0)
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            ours = core_of("/proc/thread-self/stat")
            shared = sum(core_of(f"/proc/{p.pid}/stat") == ours for p in busy)
            rows.append((shared, seconds))
    print(f"{args.model}, {args.threads} thread(s), {args.busy} CPU-bound processes beside; "
          f"quiet median {1e3 * statistics.median(quiet):.2f} ms over 100 steps")
    for shared in sorted({s for s, _ in rows}):
        times = [t for s, t in rows if s == shared]
        print(f"  our core shared with {shared} spinner(s) at the step's end: {len(times)} steps, median "
              f"{1e3 * statistics.median(times):.2f} ms ({statistics.median(times) / statistics.median(quiet):.2f}x quiet)")
    print(f"  all steps: median {1e3 * statistics.median([t for _, t in rows]):.2f} ms")


if __name__ == "__main__":
    main()
