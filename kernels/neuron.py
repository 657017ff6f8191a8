"""Spiking neuron dynamics over all time steps in one call (forward; backward to sit beside it).

The equations are those of :class:`onnx_snn_compress.ir.Neuron`. Everything is
float32 in a fixed operation order, the same as the ONNX export's Scan body, so
the simulator and onnxruntime agree bit for bit given identical inputs::

    leak    = (1 - beta) * v_leak                       once, in float32
    charge  D = beta * V + leak
            D = reset(D, S_prev)                        only with reset_delay
            H = D + gain * X[t]
    fire    S = H >= v_threshold   (or H > v_threshold)
    reset   V = reset(H, S)                             (V = H with reset_delay)

    reset(P, s) = P - v_threshold (subtract) | v_reset (hard) | P (none)  if s else P

with ``V = v_init`` and ``S_prev = 0`` before the first step. No fastmath: a
fused multiply-add would round differently from onnxruntime.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

RESET_SUBTRACT = 0
RESET_HARD = 1
RESET_NONE = 2
RESET_CODES = {"subtract": RESET_SUBTRACT, "hard": RESET_HARD, "none": RESET_NONE}

# Neurons per parallel work item: the state of a block stays in L1 while t runs,
# and the inner loop over neighbouring neurons reads X[t] contiguously.
_BLOCK = 512


@njit(cache=True, inline="always")
def _reset(potential, spiked, reset_mode, v_threshold, v_reset):
    # Written as selects, not branches, so the loop over neurons vectorises.
    if reset_mode == RESET_SUBTRACT:
        reset = potential - v_threshold
    elif reset_mode == RESET_HARD:
        reset = v_reset
    else:
        reset = potential
    return reset if spiked else potential


@njit(cache=True)
def _run_block(x, spikes, potential, spike_counts, start, stop, beta, gain, leak,
               v_threshold, v_reset, v_init, reset_mode, reset_delay, fire_on_equal,
               record_potential):
    width = stop - start
    v = np.full(width, v_init, dtype=np.float32)
    fired = np.zeros(width, dtype=np.bool_)
    count = np.zeros(width, dtype=np.int32)  # int32 vectorises twice as wide
    for t in range(x.shape[0]):
        for j in range(width):
            # charge
            d = beta * v[j] + leak
            if reset_delay:
                d = _reset(d, fired[j], reset_mode, v_threshold, v_reset)
            h = d + gain * x[t, start + j]
            # fire
            s = (h >= v_threshold) if fire_on_equal else (h > v_threshold)
            # reset
            v[j] = h if reset_delay else _reset(h, s, reset_mode, v_threshold, v_reset)
            fired[j] = s
            spikes[t, start + j] = np.float32(s)
            count[j] += np.int32(s)
            if record_potential:
                potential[t, start + j] = h
    for j in range(width):
        spike_counts[start + j] = count[j]


def lif_forward(x, beta, gain, v_threshold, v_reset, v_leak, v_init,
                reset_mode, reset_delay, fire_on_equal, record_potential=False):
    """Run a layer of LIF/IF neurons over time.

    x: ``[T, M]`` (M = every neuron of every sample), made float32 C-contiguous;
    scalars are rounded to float32; reset_mode is one of ``RESET_CODES``.

    Returns ``(spikes, potential, spike_counts)``: spikes float32 ``[T, M]`` of
    0/1; potential the pre-reset membrane potential ``H`` as float32 ``[T, M]``
    when ``record_potential`` (what BPTT needs), else an empty ``[0, M]``;
    spike_counts int64 ``[M]``, spikes per neuron summed over time.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    time_steps, neurons = x.shape
    # numpy, not Numba, allocates the outputs: it asks for huge pages, which
    # halves the cost of first touching a large array.
    spikes = np.empty((time_steps, neurons), dtype=np.float32)
    potential = np.empty((time_steps if record_potential else 0, neurons), dtype=np.float32)
    spike_counts = np.empty(neurons, dtype=np.int64)
    f32 = np.float32
    _lif_forward_kernel(
        x, f32(beta), f32(gain), f32(v_threshold), f32(v_reset), f32(v_leak), f32(v_init),
        int(reset_mode), bool(reset_delay), bool(fire_on_equal), bool(record_potential),
        spikes, potential, spike_counts,
    )
    return spikes, potential, spike_counts


@njit(cache=True, parallel=True)
def _lif_forward_kernel(x, beta, gain, v_threshold, v_reset, v_leak, v_init, reset_mode,
                        reset_delay, fire_on_equal, record_potential, spikes, potential, spike_counts):
    """:func:`lif_forward` into given outputs; every scalar float32 already."""
    neurons = x.shape[1]
    leak = (np.float32(1.0) - beta) * v_leak
    blocks = (neurons + _BLOCK - 1) // _BLOCK
    for block in prange(blocks):
        start = block * _BLOCK
        stop = min(start + _BLOCK, neurons)
        _run_block(x, spikes, potential, spike_counts, start, stop, beta, gain, leak,
                   v_threshold, v_reset, v_init, reset_mode, reset_delay, fire_on_equal,
                   record_potential)
