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


# -- backward --------------------------------------------------------------------------
#
#     dL/dX = dL/dY @ weight            [B, in]
#     dL/dW = dL/dY.T @ X               [out, in]
#     dL/db = sum_B dL/dY               [out]
#
# BLAS GEMMs from Numba threads, on fixed slices of the rows, so the result does not
# depend on the thread count; the weight gradient sums its per-slice parts in slice order.

_SLICES = 8


@njit(cache=True, parallel=True)
def _linear_backward_kernel(x, weight, grad_y, need_input_grad, grad_x, partial_weight):
    rows = x.shape[0]
    slices = partial_weight.shape[0]
    for part in prange(slices):
        first = part * rows // slices
        last = (part + 1) * rows // slices
        if last > first:
            gy = grad_y[first:last]
            np.dot(gy.T, x[first:last], partial_weight[part])
            if need_input_grad:
                np.dot(gy, weight, grad_x[first:last])
        else:
            partial_weight[part] = np.float32(0.0)


def linear_backward(x, weight, grad_y, need_input_grad=True, need_bias_grad=True):
    """Gradients of ``Y = X @ weight.T + bias`` given dL/dY ``[B, out]``.

    x ``[B, in]`` (the forward's input), weight ``[out, in]``. Returns
    ``(grad_x or None, grad_weight, grad_bias or None)``, float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    slices = max(1, min(_SLICES, x.shape[0]))
    partial_weight = np.empty((slices, *weight.shape), dtype=np.float32)
    grad_x = np.empty(x.shape if need_input_grad else (0, x.shape[1]), dtype=np.float32)
    _linear_backward_kernel(x, weight, grad_y, bool(need_input_grad), grad_x, partial_weight)
    grad_weight = partial_weight[0].copy()
    for part in range(1, slices):
        grad_weight += partial_weight[part]
    grad_bias = grad_y.sum(axis=0, dtype=np.float32) if need_bias_grad else None
    return (grad_x if need_input_grad else None), grad_weight, grad_bias
