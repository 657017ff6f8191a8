"""onnxruntime's convolutions per MAC against their channel counts: why fewer channels are not proportionally faster.

    python bench/bench_conv_channels.py [--images 8 512] [--repeats 300 15]

Times, on one thread, one 3x3 convolution (padding 1) alone in a model, as onnxruntime
runs it by default (its NCHWc blocked kernels, with the layout reorders that the neuron
layers around it need) and without NCHWc (``ORT_ENABLE_EXTENDED``, im2col + GEMM), all
in turns; prints the fastest ms and GMAC/s of each. The channel counts are
mnist_conv's: conv1 (1 -> 16) and conv2 (16 -> 32) dense, 1 -> 7 and 7 -> 16 in its
structured 0.25 model, and 1 -> 8, 8 -> 16 padded to a multiple of 8. ``--images``:
T * N images per call (8: batch 1 at T = 8; 512: batch 64), each with its ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

CONVOLUTIONS = [(1, 16, 28), (1, 7, 28), (1, 8, 28), (16, 32, 14), (7, 16, 14), (8, 16, 14)]  # in, out, H = W
LEVELS = {"NCHWc": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "plain": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def conv_model(images: int, in_channels: int, out_channels: int, size: int) -> bytes:
    weight = np.random.default_rng(0).standard_normal((out_channels, in_channels, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [images, in_channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [images, out_channels, size, size])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[8, 512])
    parser.add_argument("--repeats", type=int, nargs="+", default=[300, 15])
    args = parser.parse_args()
    for images, repeats in zip(args.images, args.repeats):
        sessions = {}
        for conv in CONVOLUTIONS:
            for level, value in LEVELS.items():
                options = ort.SessionOptions()
                options.intra_op_num_threads = options.inter_op_num_threads = 1
                options.graph_optimization_level = value
                options.log_severity_level = 3
                sessions[conv, level] = ort.InferenceSession(conv_model(images, *conv), options,
                                                             providers=["CPUExecutionProvider"])
        feeds = {conv: np.random.default_rng(1).random((images, conv[0], conv[2], conv[2]), dtype=np.float32)
                 for conv in CONVOLUTIONS}
        fastest = dict.fromkeys(sessions, np.inf)
        print(f"{images} images per call, 1 thread, fastest of {repeats}; load average {os.getloadavg()[0]:.1f}")
        for _ in range(repeats):
            for (conv, level), session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"x": feeds[conv]})
                fastest[conv, level] = min(fastest[conv, level], time.perf_counter() - start)
        for conv in CONVOLUTIONS:
            macs = images * conv[0] * conv[1] * 9 * conv[2] ** 2
            cells = [f"{level} {1e3 * fastest[conv, level]:.3f} ms ({macs / fastest[conv, level] / 1e9:.1f} GMAC/s)"
                     for level in LEVELS]
            print(f"  {conv[0]:2d} -> {conv[1]:2d} channels, {conv[2]}x{conv[2]}: " + ", ".join(cells))
        print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
