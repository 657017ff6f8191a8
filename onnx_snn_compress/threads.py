"""How many threads the Numba kernels use: by default, the cores free when a command starts.

A Numba parallel region ends only when each of its threads has done its share, so on a
machine whose cores are busy with other work every region waits for a scheduler time
slice: with two other CPU-bound processes on 2 cores, a 2-thread training step of the
digits MLP took 70x its quiet time, a 1-thread step about the same as quiet
(bench/README.md). So the default is as many threads as there are cores free at start:
the cores this process may run on (``os.sched_getaffinity``) minus the cores that other
processes kept busy over a short sample of ``/proc/stat`` (busy time of the machine minus
this process's own), rounded to the nearest integer, at least 1. ``--threads`` overrides it.

Except for large training steps: a region that computes for many time slices loses only
its last slice to a descheduled thread, so there every usable core wins even when other
processes keep them busy. With two CPU-bound processes beside it on 2 cores, the 28x28
MNIST conv SNN's step (0.58 G MACs at batch 64, T=8) took 237 ms on 2 threads and 356 ms
on 1, against 132 ms on 2 idle cores, while the MNIST MLP's (0.33 G MACs) took 25.5 ms on
2 threads and 18.4 ms on 1 (quiet: 10.3 ms; bench/README.md). So a step of at least
``LARGE_STEP_MACS`` dense MACs runs on every usable core.

The count is given to Numba and to numpy's BLAS. Numba's kernels cut their work into
pieces fixed by the data, never by the thread count, and sum the pieces in a fixed order
(kernels/*.py), so their results do not depend on it; only where SciPy's BLAS cannot be
pinned to one thread (kernels/blas.py) does a large Linear layer's backward fall back to
numpy's threaded GEMMs, which sum in an order that does. Results are bit-identical per seed
and thread count (report.json names the count): pass ``--threads`` for runs that must
reproduce bit for bit on another load.
"""

from __future__ import annotations

import os
import time

from .errors import SNNError
from .kernels.blas import set_numpy_blas_threads


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 0.25) -> float | None:
    """Cores kept busy by *other* processes over the next ``seconds`` (a float, 0 on an idle
    machine), or None where ``/proc/stat`` cannot be read."""
    start, own_start, wall_start = _machine_busy_seconds(), time.process_time(), time.monotonic()
    if start is None:
        return None
    time.sleep(seconds)
    end, own_end, wall_end = _machine_busy_seconds(), time.process_time(), time.monotonic()
    if end is None:
        return None
    return max(0.0, ((end - start) - (own_end - own_start)) / max(wall_end - wall_start, 1e-9))


#: Dense MACs of one training step's forward pass (MACs per sample and time step x batch x T)
#: from which every usable core is used, busy or not: the crossover was measured between
#: 0.33 G and 0.58 G (above); this is about their geometric mean.
LARGE_STEP_MACS = 0.45e9


def default_threads(step_macs: float | None = None) -> tuple[int, str]:
    """The thread count for a run started now, and how it was chosen (for a ``note:``).
    ``step_macs``: the dense MACs of one training step's forward pass, if known."""
    import numba

    cores = usable_cores()
    busy = busy_cores()
    if busy is None:
        threads, why = cores, f"{cores} usable cores"
    else:
        threads = int(cores - busy + 0.5)
        why = f"{max(0.0, cores - busy):.1f} of {cores} usable cores free at start"
        if threads < cores and step_macs is not None and step_macs >= LARGE_STEP_MACS:
            threads = cores
            why += f"; a training step of {step_macs / 1e9:.2g} G MACs runs faster on all of them"
    return max(1, min(threads, cores, numba.config.NUMBA_NUM_THREADS)), why


def training_step_macs(graph, batch_size: int, time_steps: int) -> float:
    """Dense MACs of one training step's forward pass: the graph's MACs per sample and time
    step (``resources.summarize``) x ``batch_size`` x ``time_steps``."""
    from .resources import summarize

    return float(summarize(graph)["macs_per_step"]) * batch_size * time_steps


def use_threads(threads: int | None, step_macs: float | None = None) -> tuple[int, str | None]:
    """Set the kernels' thread count: ``threads``, or :func:`default_threads` (given
    ``step_macs``, see there) for None.

    Returns the count and, when it was chosen here, a note saying how (the CLI prints it
    with the option that overrides it). Raises SNNError for a count below 1 or above the
    most Numba can start (``NUMBA_NUM_THREADS``, by default the machine's cores).
    """
    import numba

    note = None
    if threads is None:
        threads, why = default_threads(step_macs)
        note = f"{threads} thread{'s' if threads != 1 else ''} ({why}); --threads overrides"
    elif threads < 1:
        raise SNNError(f"--threads must be at least 1, got {threads}")
    elif threads > numba.config.NUMBA_NUM_THREADS:
        raise SNNError(f"--threads {threads} is more than the {numba.config.NUMBA_NUM_THREADS} threads Numba can "
                       "start here (set NUMBA_NUM_THREADS to raise it)")
    numba.set_num_threads(threads)
    set_numpy_blas_threads(threads)
    return threads, note
