"""Memory footprint: what a run will need, estimated from shapes before it allocates, against what the machine has.

A run that cannot fit is refused in one line that says how much it needs,
instead of dying in a MemoryError (or the kernel's OOM killer) halfway through.
The estimate (bytes, float32 everywhere) counts what a run cannot do without,
so it refuses only what certainly does not fit::

    encoded split   = T * N_largest * prod(input shape) * 4     (a whole split is
                      encoded at once to measure accuracy)
    inference       = T * n * max_node(inputs + output elements per sample) * 4,
                      n = the simulator's batch (256 while training)
    training tape   = T * batch * sum_nodes(output elements per sample) * 4
                      (every node's output is kept for BPTT)
    total           = encoded split + max(inference, training tape)

It leaves out what is already allocated (the loaded data) and the model's
parameters (small beside the rest). Measured as the growth of the peak resident
memory over the same command at T = 1 (`/usr/bin/time -f %M`):

    snn-compress evaluate samples/digits_conv.onnx --time-steps 1000           1149 MiB, estimate 1088 MiB
    snn-compress evaluate samples/digits_mlp.onnx --time-steps 1000             383 MiB, estimate  338 MiB
    snn-compress train samples/digits_conv.onnx --epochs 1 --time-steps 200     276 MiB, estimate  253 MiB
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

from .errors import SNNError

SIMULATION_BATCH = 256  # samples the simulator runs at once when measuring accuracy
_FLOAT = 4
_TAPE_FACTOR = 1


class MemoryLimitError(SNNError):
    """The run would need more memory than the machine has available."""


def available_bytes(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of the machine in bytes (Linux), or None where it cannot be read."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human_size(size: float) -> str:
    """``size`` bytes for a message: ``'373 GiB'``, ``'16 MiB'``."""
    return f"{size / 2**30:.3g} GiB" if size >= 2**30 else f"{size / 2**20:.3g} MiB"


def check_fits(needed: int, what: str, advice: str) -> None:
    """Raise MemoryLimitError when ``needed`` bytes exceed the machine's available memory."""
    available = available_bytes()
    if available is not None and needed > available:
        raise MemoryLimitError(f"{what} needs about {human_size(needed)} of memory but {human_size(available)} are available; {advice}")


def elements(shape: Sequence[int]) -> int:
    """Number of elements of ``shape`` as an exact Python int (no numpy overflow)."""
    return math.prod(int(d) for d in shape)


def run_bytes(graph, splits: Iterable, batch_size: int, training: bool) -> int:
    """Bytes a simulation or training run of ``graph`` on ``splits`` (ModelData or None) will allocate."""
    splits = [s for s in splits if s is not None]
    if not splits:
        return 0
    time_steps = max(s.time_steps for s in splits)
    largest = max(len(s) for s in splits)
    encoded = time_steps * largest * elements(graph.input.shape) * _FLOAT
    sizes = {node.name: elements(graph.shapes[node.name]) for node in graph}
    live = max(sizes[node.name] + sum(sizes[i] for i in node.inputs) for node in graph)  # a node's inputs and output
    inference_batch = SIMULATION_BATCH if training else max(batch_size, 1)
    inference = time_steps * min(largest, inference_batch) * live * _FLOAT
    tape = time_steps * min(largest, max(batch_size, 1)) * sum(sizes.values()) * _FLOAT * _TAPE_FACTOR if training else 0
    return encoded + max(inference, tape)


def check_run(graph, splits: Iterable, batch_size: int = SIMULATION_BATCH, training: bool = False) -> None:
    """Refuse a run whose estimated memory (:func:`run_bytes`) the machine does not have."""
    splits = list(splits)
    what = "training" if training else "simulating"
    time_steps = max((s.time_steps for s in splits if s is not None), default=0)
    check_fits(
        run_bytes(graph, splits, batch_size, training),
        f"{what} this model over {time_steps} time steps",
        "lower --time-steps or --batch-size, or use fewer samples",
    )
