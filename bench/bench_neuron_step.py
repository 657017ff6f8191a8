"""The neuron step's op choices in onnxruntime: which exact spike and reset ops are cheapest.

    python bench/bench_neuron_step.py [--shape 64 7 28 28] [--time-steps 8] [--repeats 30]

Every form is checked against numpy (equal values, and the same float32 bits), then all
are timed on one thread in turns; prints the fastest and the median ms of each. Two
parts, for a neuron with threshold 1, firing on ``H >= 1`` (snnTorch's ``H > 1`` for the
forms marked "strict"), subtract reset, beta 0.9:

- **one op choice on one tensor** ``--shape`` (default: one time step of the structured
  mnist_conv's first neuron layer at batch 64): the float spike S from the potential H
  (``GreaterOrEqual`` + ``Cast``, the profile's; ``Floor`` + ``Clip``; ``Where`` on
  constant tensors; ``Sub`` + ``Ceil`` + ``Clip`` and ``Sub`` + ``Relu`` + ``Sign``,
  strict), and the reset after a spike (``Where(fired, H - 1, H)`` against ``H - S``);
- **one neuron layer** ``[T, *shape]`` as a ``Scan`` over ``--time-steps``: the profile's
  5-op step, the spike by ``Floor`` + ``Clip``, the loop giving out the bool spike (one
  ``Cast`` over all steps after it), and the reset by ``Where``.

ONNX at opset 17 has no op that reinterprets a float's bits, so no bit trick is a candidate.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

F, B = TensorProto.FLOAT, TensorProto.BOOL
node = helper.make_node
CONSTANTS = {"one": 1.0, "zero": 0.0, "beta": 0.9}

SPIKE_FORMS = {  # H -> S; each with whether it fires on equality
    "GreaterOrEqual + Cast": (True, [node("GreaterOrEqual", ["h", "one"], ["fired"]),
                                     node("Cast", ["fired"], ["s"], to=F)]),
    "Floor + Clip": (True, [node("Floor", ["h"], ["floor"]), node("Clip", ["floor", "zero", "one"], ["s"])]),
    "GreaterOrEqual + Where": (True, [node("GreaterOrEqual", ["h", "one"], ["fired"]),
                                      node("Where", ["fired", "one", "zero"], ["s"])]),
    "strict: Greater + Cast": (False, [node("Greater", ["h", "one"], ["fired"]), node("Cast", ["fired"], ["s"], to=F)]),
    "strict: Sub + Ceil + Clip": (False, [node("Sub", ["h", "one"], ["above"]), node("Ceil", ["above"], ["ceil"]),
                                          node("Clip", ["ceil", "zero", "one"], ["s"])]),
    "strict: Sub + Relu + Sign": (False, [node("Sub", ["h", "one"], ["above"]), node("Relu", ["above"], ["relu"]),
                                          node("Sign", ["relu"], ["s"])]),
}
RESET_FORMS = {  # H, S -> V after the subtract reset (the spike is an input: only the reset is timed)
    "H - S": [node("Sub", ["h", "s"], ["v_next"])],
    "Where(fired, H - 1, H)": [node("Cast", ["s"], ["fired"], to=B), node("Sub", ["h", "one"], ["lowered"]),
                               node("Where", ["fired", "lowered", "h"], ["v_next"])],
}
CHARGE = [node("Mul", ["v_prev", "beta"], ["decayed"]), node("Add", ["decayed", "x"], ["h"])]
BOOL_OUT = [node("Identity", ["fired"], ["fired_out"])]
LOOP_FORMS = {  # step nodes, the Scan's output and its type
    "the profile's 5 ops": (CHARGE + SPIKE_FORMS["GreaterOrEqual + Cast"][1] + RESET_FORMS["H - S"], "s", F),
    "spike by Floor + Clip": (CHARGE + SPIKE_FORMS["Floor + Clip"][1] + RESET_FORMS["H - S"], "s", F),
    "bool out, one Cast after": (CHARGE + SPIKE_FORMS["GreaterOrEqual + Cast"][1] + RESET_FORMS["H - S"] + BOOL_OUT,
                                 "fired_out", B),
    "reset by Where, bool out": (CHARGE + [node("GreaterOrEqual", ["h", "one"], ["fired"]),
                                           node("Sub", ["h", "one"], ["lowered"]),
                                           node("Where", ["fired", "lowered", "h"], ["v_next"])] + BOOL_OUT,
                                 "fired_out", B),
}


def _values(names) -> list:
    return [numpy_helper.from_array(np.array(CONSTANTS[name], np.float32), name) for name in names]


def _model(nodes, inputs: list[str], output: str, shape) -> bytes:
    graph = helper.make_graph(nodes, "form", [helper.make_tensor_value_info(n, F, shape) for n in inputs],
                              [helper.make_tensor_value_info(output, F, shape)], _values(CONSTANTS))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _loop_model(step, scan_output: str, kind: int, shape) -> bytes:
    """X ``shape`` = ``[T, ...]`` -> S: a Scan of ``step`` from V = 0, its output cast to float if bool."""
    body = helper.make_graph(step, "step", [helper.make_tensor_value_info(n, F, None) for n in ("v_prev", "x")],
                             [helper.make_tensor_value_info("v_next", F, None),
                              helper.make_tensor_value_info(scan_output, kind, None)], _values(CONSTANTS))
    nodes = [node("Shape", ["X"], ["step_shape"], start=1),
             node("ConstantOfShape", ["step_shape"], ["v_first"], value=numpy_helper.from_array(np.zeros(1, np.float32))),
             node("Scan", ["v_first", "X"], ["v_last", "scanned"], body=body, num_scan_inputs=1),
             node("Cast", ["scanned"], ["S"], to=F) if kind == B else node("Identity", ["scanned"], ["S"])]
    return _model(nodes, ["X"], "S", shape)


def _reference_loop(drive: np.ndarray) -> np.ndarray:
    """The spikes in numpy, in the loop's order of float32 operations (decay, input, fire, reset)."""
    v, spikes = np.zeros(drive.shape[1:], np.float32), np.empty_like(drive)
    for t, x in enumerate(drive):
        h = v * np.float32(CONSTANTS["beta"]) + x
        spikes[t] = h >= 1
        v = h - spikes[t]
    return spikes


def _time(sessions: dict, feed: dict, expected: dict, repeats: int) -> None:
    """Check every session's output against ``expected`` (equal, same bits), then time them in turns."""
    seconds = {name: [] for name in sessions}
    for repeat in range(repeats + 1):
        for name, session in sessions.items():
            start = time.perf_counter()
            (out,) = session.run(None, feed)
            seconds[name].append(time.perf_counter() - start)
            if repeat == 0:
                want = expected[name]
                exact = "same bits" if np.array_equal(out.view(np.uint32), want.view(np.uint32)) else (
                    "equal values, other bits (-0.0)" if np.array_equal(out, want) else "WRONG")
                print(f"  {name:<28} {exact}")
    for name, values in seconds.items():
        print(f"  {name:<28} fastest {1e3 * min(values[1:]):.3f} ms, median {1e3 * np.median(values[1:]):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 7, 28, 28])
    parser.add_argument("--time-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = lambda model: ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])  # noqa: E731
    rng = np.random.default_rng(0)
    one, below = np.float32(1.0), np.nextafter(np.float32(1.0), np.float32(0.0))
    h = (1.5 * rng.standard_normal(args.shape)).astype(np.float32)
    h.reshape(-1)[:6] = [one, below, np.nextafter(one, np.float32(2.0)), 0.0, -0.0, 2.0]  # the edges
    print(f"one tensor {args.shape}, 1 thread, load average {os.getloadavg()[0]:.1f}")
    fires = {True: (h >= one).astype(np.float32), False: (h > one).astype(np.float32)}
    _time({name: session(_model(nodes, ["h"], "s", args.shape)) for name, (_, nodes) in SPIKE_FORMS.items()},
          {"h": h}, {name: fires[on_equal] for name, (on_equal, _) in SPIKE_FORMS.items()}, args.repeats)
    _time({name: session(_model(nodes, ["h", "s"], "v_next", args.shape)) for name, nodes in RESET_FORMS.items()},
          {"h": h, "s": fires[True]}, dict.fromkeys(RESET_FORMS, h - fires[True]), args.repeats)
    drive = (0.8 * rng.random((args.time_steps, *args.shape))).astype(np.float32)
    print(f"one neuron layer {[args.time_steps, *args.shape]} (Scan), load average {os.getloadavg()[0]:.1f}")
    _time({name: session(_loop_model(*form, drive.shape)) for name, form in LOOP_FORMS.items()},
          {"X": drive}, dict.fromkeys(LOOP_FORMS, _reference_loop(drive)), args.repeats)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
