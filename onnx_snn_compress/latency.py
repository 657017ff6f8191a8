"""What a deployed model costs on this CPU: onnxruntime latency and throughput, file size, size figures.

One model, or every model of a ``compress`` output folder (the input model beside
each budget's model). Latency is measured on random inputs ``[T, batch, *shape]``
uniform in [0, 1): onnxruntime computes dense tensors, so its time does not
depend on the input values or on the firing rates. The first runs (session
warm-up) are excluded; p50 and p95 are over ``repeats`` timed runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import SNNError
from .frontends import load_with_proto
from .backends.onnx_profile import to_model
from .resources import summarize
from .runtime import check_time_steps, session

WARMUP_RUNS = 3


@dataclass
class Timing:
    batch: int
    p50_ms: float
    p95_ms: float
    samples_per_s: float  # batch / p50
    min_ms: float = 0.0  # the fastest run: the least disturbed by other processes on a busy machine


@dataclass
class ModelCost:
    """One model: its file, what its tensors hold, and its onnxruntime timings."""

    label: str  # "input" or "budget 0.05" in a report folder, else the file name
    path: str
    file_bytes: int
    params: int  # stored parameters (what the file's tensors hold)
    nonzero: int  # nonzero parameters
    macs: int  # MACs per inference of the stored (dense) tensors: what onnxruntime computes, T steps
    synops: float | None  # from report.json (firing-rate aware), when the model comes from one
    timings: list[Timing] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,64"`` -> ``(1, 64)``; anything but positive integers is a one-line SNNError."""
    try:
        batches = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SNNError(f"--batch {text!r}: give batch sizes as integers separated by commas, e.g. 1,64") from None
    if not batches or min(batches) < 1:
        raise SNNError(f"--batch {text!r}: batch sizes must be at least 1")
    return batches


def time_model(path: str | os.PathLike, batches=(1, 64), time_steps: int = 8, threads: int = 1,
               repeats: int = 100, label: str | None = None, synops: float | None = None, seed: int = 0) -> ModelCost:
    """Size figures and onnxruntime p50/p95 latency of the model file ``path`` at each batch size.

    Non-profile files (NIR, torch.onnx exports) are converted to the profile first, as
    ``convert`` would write them. Raises SNNError for unreadable files and bad settings.
    """
    if time_steps < 1 or threads < 0 or repeats < 1:
        raise SNNError("time steps and repeats must be at least 1, threads at least 0 (0: onnxruntime's default)")
    path = Path(path)
    graph, model = load_with_proto(path)
    model = to_model(graph) if model is None else model
    check_time_steps(model, time_steps)
    summary = summarize(graph)
    cost = ModelCost(
        label=label or path.name, path=str(path), file_bytes=path.stat().st_size, params=summary["parameters"],
        nonzero=summary["parameters_nonzero"], macs=summary["macs_per_step"] * time_steps, synops=synops,
    )
    runner = session(model, threads=threads)
    input_name = runner.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    for batch in batches:
        feed = {input_name: rng.random((time_steps, batch, *graph.input.shape), dtype=np.float32)}
        for _ in range(WARMUP_RUNS):
            runner.run(None, feed)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.run(None, feed)
            seconds.append(time.perf_counter() - start)
        p50, p95 = np.percentile(seconds, [50, 95])
        cost.timings.append(Timing(batch, 1e3 * p50, 1e3 * p95, batch / p50, 1e3 * min(seconds)))
    return cost


def _report(folder: Path) -> dict:
    path = folder / "report.json"
    if not path.is_file():
        raise SNNError(f"{folder}: a folder to bench must hold the report.json of a compress run")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("budgets"), list) or not all(
            isinstance(entry, dict) and "model" in entry for entry in report["budgets"]):
        raise SNNError(f"{path}: not a report.json written by compress")
    return report


def bench(target: str | os.PathLike, batches=(1, 64), time_steps: int = 8, threads: int = 1,
          repeats: int = 100) -> tuple[list[ModelCost], list[str]]:
    """Costs of the model file ``target``, or of the input model and every budget's model of the
    compress output folder ``target``; returns them and notes (what could not be timed and why)."""
    target = Path(target)
    if not target.exists():
        raise SNNError(f"{target}: no such file or folder")
    settings = dict(batches=batches, time_steps=time_steps, threads=threads, repeats=repeats)
    if target.is_file():
        return [time_model(target, **settings)], []
    report = _report(target)
    costs, notes = [], []
    source = Path(report.get("input_model", ""))
    if source.is_file():
        costs.append(time_model(source, label="input", synops=report["input"]["figures"].get("synops"), **settings))
    else:
        notes.append(f"input model {str(source)!r} of the report is not a file here; the table has the budgets only")
    for entry in report["budgets"]:
        costs.append(time_model(target / entry["model"], label=f"budget {entry['budget']:g}",
                                synops=entry["figures"].get("synops"), **settings))
    return costs, notes
