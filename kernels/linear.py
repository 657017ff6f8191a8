"""Fully connected layer ``Y = X @ weight.T + bias`` over ``[B, in]``, float32.

Not BLAS: a GEMM sums in an order that depends on the number of rows, so a
sample's output (and, one ulp later, its spikes) would depend on the batch
size. Here every output sums its inputs in index order, then adds the bias.
Zero inputs are skipped, which makes the layer event-driven on spike trains
(exact: adding ``0 * w`` changes nothing).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Rows per parallel work item: a row of weight_t is reused this many times from cache.
_ROWS = 8


def linear_forward(x, weight_t, bias):
    """x float32 ``[B, in]``, weight_t the transposed weight ``[in, out]`` (C-contiguous),
    bias ``[out]`` or zero-length for none. Returns float32 ``[B, out]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((x.shape[0], weight_t.shape[1]), dtype=np.float32)
    _linear_kernel(x, weight_t, bias, y)
    return y


@njit(cache=True, parallel=True)
def _linear_kernel(x, weight_t, bias, y):
    rows, in_features = x.shape
    out_features = weight_t.shape[1]
    for block in prange((rows + _ROWS - 1) // _ROWS):
        first = block * _ROWS
        last = min(first + _ROWS, rows)
        y[first:last] = np.float32(0.0)
        for k in range(in_features):
            for r in range(first, last):
                value = x[r, k]
                if value != 0:
                    for o in range(out_features):
                        y[r, o] += value * weight_t[k, o]
        if bias.shape[0] > 0:
            for r in range(first, last):
                for o in range(out_features):
                    y[r, o] += bias[o]
