"""Accuracy and firing rates of a model on a data split, in the simulator or in onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from . import ir
from .backends.onnx_profile import to_model
from .data import ModelData
from .errors import SNNError
from .footprint import check_run
from .progress import Progress
from .runtime import check_time_steps, run
from .simulate import SimulationResult, simulate

RUNTIMES = ("sim", "onnxruntime")


@dataclass
class Evaluation:
    runtime: str
    samples: int
    time_steps: int
    accuracy: float
    firing_rates: dict[str, float]
    predictions: np.ndarray

    def to_json(self) -> dict:
        return {
            "runtime": self.runtime,
            "samples": self.samples,
            "time_steps": self.time_steps,
            "accuracy": self.accuracy,
            "firing_rates": self.firing_rates,
        }


def run_model(
    graph: ir.Graph,
    x: np.ndarray,
    runtime: str = "sim",
    model: onnx.ModelProto | None = None,
    batch_size: int = 256,
    after_batch: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Outputs and spike counts of ``graph`` on ``x`` ``[T, N, ...]``.

    With ``runtime="onnxruntime"`` the ONNX ``model`` runs (the file as the user
    has it); without one the graph is exported to the profile first.
    ``after_batch(samples)`` is called after each batch (progress).
    """
    if runtime == "sim":
        return simulate(graph, x, batch_size=batch_size, after_batch=after_batch)
    if runtime == "onnxruntime":
        model = to_model(graph) if model is None else model
        return run(model, x, watch=tuple(n.name for n in graph.neurons()), batch_size=batch_size,
                   after_batch=after_batch)
    raise SNNError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def evaluate(
    graph: ir.Graph,
    data: ModelData,
    runtime: str = "sim",
    model: onnx.ModelProto | None = None,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> Evaluation:
    """Classification accuracy and per-layer firing rates on ``data``; ``progress``
    (default: none) shows the samples done. ``model``: the profile file as the user has it,
    if any. Raises MemoryLimitError before any work when the run would not fit in memory,
    and DataError when ``model`` was written for another T (``--fixed-time-steps``), in
    either runtime: the simulator would run a model the user does not have."""
    if model is not None:
        check_time_steps(model, data.time_steps)
    check_run(graph, (data,), batch_size)
    progress = Progress(quiet=True) if progress is None else progress
    if runtime == "sim":
        progress.say_if_compiling(training=False)
    with progress.task(f"evaluate ({runtime})", len(data), unit="samples") as task:
        result = run_model(graph, data.inputs(), runtime, model, batch_size, after_batch=lambda n: task.advance(n))
    predictions = result.predictions()
    return Evaluation(
        runtime=runtime,
        samples=len(data),
        time_steps=data.time_steps,
        accuracy=float(np.mean(predictions == data.y)),
        firing_rates=result.firing_rates(),
        predictions=predictions,
    )
