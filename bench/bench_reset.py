"""The neuron reset in onnxruntime: ``Where`` against the arithmetic form the profile writes.

    python bench/bench_reset.py [--shape 64 16 28 28] [--repeats 30]

Times, on one thread, ``Where(fired, P - v_threshold, P)`` and
``P + S * reset_value`` (S = Cast(fired), reset_value = -v_threshold: the subtract
reset of backends/onnx_profile.py ``_reset``) on one tensor of ``--shape`` (default: one time step of mnist_conv's first
neuron layer at batch 64), the two in turns; prints the median milliseconds of each.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def reset_model(nodes, shape):
    graph = helper.make_graph(
        nodes, "reset",
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("fired", TensorProto.BOOL, shape)],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, shape)],
        [helper.make_tensor("reset_value", TensorProto.FLOAT, [], [-1.0]),
         helper.make_tensor("v_threshold", TensorProto.FLOAT, [], [1.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 16, 28, 28])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    node = helper.make_node
    forms = {
        "Where": [node("Sub", ["p", "v_threshold"], ["after"]), node("Where", ["fired", "after", "p"], ["v"])],
        "arithmetic": [node("Cast", ["fired"], ["s"], to=TensorProto.FLOAT),
                       node("Mul", ["s", "reset_value"], ["jump"]), node("Add", ["p", "jump"], ["v"])],
    }
    rng = np.random.default_rng(0)
    feed = {"p": rng.random(args.shape, dtype=np.float32), "fired": rng.random(args.shape) < 0.2}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    sessions = {name: ort.InferenceSession(reset_model(nodes, args.shape).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"]) for name, nodes in forms.items()}
    expected = np.where(feed["fired"], feed["p"] - 1.0, feed["p"])
    seconds = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            (v,) = session.run(None, feed)
            seconds[name].append(time.perf_counter() - start)
            assert np.array_equal(v, expected), name
    print(f"shape {args.shape}, 1 thread, load average {os.getloadavg()[0]:.1f}")
    for name, values in seconds.items():
        print(f"{name:<11} {1e3 * np.median(values):.3f} ms")


if __name__ == "__main__":
    main()
