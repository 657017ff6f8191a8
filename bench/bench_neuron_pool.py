"""A Neuron and the MaxPool2d that alone reads its spikes: the fused kernels (kernels/neuron_pool.py)
against the two nodes' kernels apart, forward and backward, at the layers' sizes of the sample nets.

    python bench/bench_neuron_pool.py [--batch 64] [--time-steps 8] [--repeats 40]

Per layer (mnist_conv's lif1 -> pool1 on a static input, as direct encoding gives it, and lif2 ->
pool2 on a per-step one; digits_conv's two), the four calls are timed in turns (wall clock, the
threads Numba has), medians after 5 untimed rounds: apart, ``lif_forward`` (recording H) +
``maxpool2d_forward_indices``, and ``maxpool2d_backward`` + ``lif_backward`` (+ numpy's time sum
for a static input); fused, ``lif_maxpool_forward`` and ``lif_maxpool_backward``. The inputs are
normal with mean 0.2 and deviation 0.6 (13-19 % of the neuron-steps spike), subtract reset, beta
0.5, the atan surrogate. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from onnx_snn_compress.kernels.neuron import lif_backward, lif_forward  # noqa: E402
from onnx_snn_compress.kernels.neuron_pool import lif_maxpool_backward, lif_maxpool_forward  # noqa: E402
from onnx_snn_compress.kernels.pool import maxpool2d_backward, maxpool2d_forward_indices  # noqa: E402
from onnx_snn_compress.memory import keep_freed_memory  # noqa: E402

LAYERS = {  # name: (channels, height = width, static input)
    "mnist_conv lif1": (16, 28, True),
    "mnist_conv lif2": (32, 14, False),
    "digits_conv lif1": (8, 8, True),
    "digits_conv lif2": (32, 4, False),
}
NEURON = (0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0, False, True)  # beta, gain, threshold, v_reset, v_leak, v_init, subtract, ...


def calls(batch: int, time_steps: int, channels: int, size: int, static: bool, rng):
    neurons = batch * channels * size * size
    x = (rng.standard_normal((1 if static else time_steps, neurons)) * 0.6 + 0.2).astype(np.float32)
    pool = (2, 2, 2, 2, 0, 0, size // 2, size // 2)
    grad = rng.standard_normal((time_steps * batch, channels, size // 2, size // 2)).astype(np.float32)
    kept = {}

    def forward_apart():
        spikes, kept["potential"], _ = lif_forward(x, *NEURON, True, time_steps)
        _, kept["where"] = maxpool2d_forward_indices(spikes.reshape(-1, channels, size, size), *pool)

    def backward_apart():
        grad_spikes = maxpool2d_backward(grad, kept["where"], size, size).reshape(time_steps, -1)
        grad_x = lif_backward(grad_spikes, kept["potential"], *NEURON[:5], 0, False, True, 0, 2.0, False)
        return grad_x.sum(axis=0, keepdims=True) if static else grad_x

    return {
        "forward apart": forward_apart,
        "backward apart": backward_apart,
        "forward fused": lambda: lif_maxpool_forward(x, time_steps, size, size, pool, *NEURON),
        "backward fused": lambda: lif_maxpool_backward(x, grad.reshape(time_steps, -1), size, size, pool, *NEURON,
                                                       0, 2.0, False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    keep_freed_memory()  # as Trainer does: no page faults in the steady state
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, T={args.time_steps}, medians of {args.repeats} turns (ms); "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'layer':<18} {'spikes MB':>9} {'fwd apart':>10} {'fwd fused':>10} {'bwd apart':>10} {'bwd fused':>10}"
          f" {'apart/fused':>12}")
    for name, (channels, size, static) in LAYERS.items():
        functions = calls(args.batch, args.time_steps, channels, size, static, rng)
        times = {label: [] for label in functions}
        for turn in range(args.repeats + 5):
            for label, function in functions.items():
                start = time.perf_counter()
                function()
                if turn >= 5:
                    times[label].append(time.perf_counter() - start)
        ms = {label: 1e3 * statistics.median(values) for label, values in times.items()}
        spikes_mb = args.time_steps * args.batch * channels * size * size * 4 / 2**20
        ratio = (ms["forward apart"] + ms["backward apart"]) / (ms["forward fused"] + ms["backward fused"])
        print(f"{name:<18} {spikes_mb:>9.1f} {ms['forward apart']:>10.2f} {ms['forward fused']:>10.2f}"
              f" {ms['backward apart']:>10.2f} {ms['backward fused']:>10.2f} {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
