"""Run a profile model in stock onnxruntime (no custom ops), batch by batch.

Besides the model's own output, the spike trains of chosen neuron layers can be
fetched (they are ordinary tensors named after the layers), so firing rates
measured by onnxruntime can be compared with the simulator's.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from .errors import DataError, ModelError
from .simulate import SimulationResult


def session(model: onnx.ModelProto, watch: tuple[str, ...] = (), threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session on ``model`` that also outputs the tensors named in ``watch``."""
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    present = {o.name for o in model_copy.graph.output}
    for name in watch:
        if name not in present:
            model_copy.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_copy.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"onnxruntime cannot load the model: {first_line}") from None


def check_time_steps(model: onnx.ModelProto, time_steps: int) -> None:
    """DataError unless the model runs ``time_steps`` steps (a model written with
    ``--fixed-time-steps`` runs only its own T; the default profile runs any)."""
    inputs = {t.name for t in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in inputs)
    dims = first.type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value != time_steps:
        raise DataError(
            f"the model was written for T={dims[0].dim_value} only (--fixed-time-steps); the inputs have T={time_steps}"
        )


def run(
    model: onnx.ModelProto,
    x: np.ndarray,
    watch: tuple[str, ...] = (),
    batch_size: int = 256,
    threads: int = 0,
    after_batch: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run ``x`` ``[T, N, ...]`` through ``model`` in batches along N (same result type as the simulator).

    ``after_batch(samples)``, if given, is called after each batch (progress)."""
    check_time_steps(model, x.shape[0])
    sess = session(model, watch, threads)
    input_name = sess.get_inputs()[0].name
    output_name = model.graph.output[0].name
    names = [output_name, *watch]
    outputs, counts = [], {name: None for name in watch}
    spikes_output = len(sess.get_outputs()[0].shape or ()) == 3
    for start in range(0, x.shape[1], batch_size):
        values = sess.run(names, {input_name: np.ascontiguousarray(x[:, start : start + batch_size])})
        outputs.append(values[0])
        for name, spikes in zip(watch, values[1:]):
            total = spikes.sum(axis=(0, 1), dtype=np.float64).astype(np.int64)
            counts[name] = total if counts[name] is None else counts[name] + total
        if after_batch is not None:
            after_batch(values[0].shape[1 if spikes_output else 0])
    output = np.concatenate(outputs, axis=1 if spikes_output else 0)
    return SimulationResult(output=output, spike_counts=counts, time_steps=x.shape[0], samples=x.shape[1])
