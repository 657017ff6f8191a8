"""A/B of the convolution kernels on a conv layer that reads spikes (issue 10).

    python bench/bench_spike_conv.py [--models mnist_conv digits_conv] [--layer conv2] [--repeats 10]

Records the layer's real input (the pooled spikes of the first LIF layer) and the gradient
that reaches it in one training step of bench_train_step.py's model (batch 64, T=8), then
times, interleaved call by call in one process, the dense kernels (im2col + GEMM forward,
the blocked backward of kernels/conv.py) against what the trainer now runs on spikes (the
event-driven forward and weight gradient and the channels-last input gradient of
kernels/spike_conv.py; kernels/conv.py's per-image input gradient of every geometry beside it). Prints the median CPU ms of this thread (``time.thread_time``)
per call: run it with NUMBA_NUM_THREADS=1 so that the CPU time is the whole cost, and
say the machine's load next to any number taken from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def record_layer(model: str, layer: str):
    """The layer's node, its input ``[T*N, C, H, W]`` and dL/dY ``[T*N, O, H', W']`` in the first step."""
    from bench_train_step import load_case
    from onnx_snn_compress import backprop
    from onnx_snn_compress.losses import LOSSES

    graph, x, y = load_case(model, 64, 8)
    output, tape = backprop.forward_train(graph, x, np.random.default_rng(0))
    recorded = {}
    conv_backward = backprop.BACKWARD["Conv2d"]

    def capture(node, record, grad, needs, param_grads):
        if node.name == layer:
            recorded["x"], recorded["grad"] = record[0], grad
        return conv_backward(node, record, grad, needs, param_grads)

    backprop.BACKWARD["Conv2d"] = capture
    try:
        backprop.backward(graph, tape, LOSSES["mse_rate"](output, y)[1])
    finally:
        backprop.BACKWARD["Conv2d"] = conv_backward
    x, grad = (np.ascontiguousarray(recorded[k]) for k in ("x", "grad"))
    return graph[layer], x.reshape(-1, *x.shape[2:]), grad.reshape(-1, *grad.shape[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mnist_conv", "digits_conv"])
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from onnx_snn_compress.kernels.conv import conv2d_backward, conv2d_forward
    from onnx_snn_compress.kernels.spike_conv import (spike_conv2d_forward, spike_conv2d_input_grad,
                                                      spike_conv2d_weight_grad)

    print(f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}")
    for model in args.models:
        node, x, grad = record_layer(model, args.layer)
        geometry = (node.stride, node.padding, node.dilation, node.groups)
        calls = {
            "dense forward": lambda: conv2d_forward(x, node.weight, node.bias, *geometry),
            "event forward": lambda: spike_conv2d_forward(x, node.weight, node.bias, node.padding),
            "dense backward (input + weight)": lambda: conv2d_backward(x, node.weight, grad, *geometry),
            "input gradient, channels-last": lambda: spike_conv2d_input_grad(node.weight, grad, x.shape, node.padding),
            "event weight gradient": lambda: spike_conv2d_weight_grad(x, node.weight.shape, grad, node.padding),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for repeat in range(args.repeats + 1):  # the first round compiles or loads the kernels
            for name, call in calls.items():
                start = time.thread_time()
                call()
                if repeat:
                    times[name].append(1e3 * (time.thread_time() - start))
        ones = np.count_nonzero(x) / x.size
        print(f"\n{model} {node.name}: {x.shape[0]} images {list(x.shape[1:])} -> {list(grad.shape[1:])}, "
              f"{100 * ones:.1f} % of the inputs nonzero")
        for name, values in times.items():
            print(f"  {name:<32} {statistics.median(values):8.2f} ms")
        dense = times["dense forward"], times["dense backward (input + weight)"]
        event = times["event forward"], times["input gradient, channels-last"], times["event weight gradient"]
        print(f"  forward + backward: dense {sum(map(statistics.median, dense)):.2f} ms, "
              f"spike kernels {sum(map(statistics.median, event)):.2f} ms")


if __name__ == "__main__":
    main()
