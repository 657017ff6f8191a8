"""Fully connected layer ``Y = X @ weight.T + bias`` over ``[B, in]``, float32.

Not BLAS: a GEMM sums in an order that depends on the number of rows, so a
sample's output (and, one ulp later, its spikes) would depend on the batch
size. Here every output sums its inputs in index order, then adds the bias.
Zero inputs are skipped, which makes the layer event-driven on spike trains
(exact: adding ``0 * w`` changes nothing): each row's nonzero inputs are listed
first, without a branch (kernels/events.py), then their weight rows are added in
that order, four per pass over the row's sums.

Narrow layers (fewer than ``_NARROW`` outputs, e.g. a classifier) have too few outputs
to fill a vector register; they run with the rows as vector lanes instead
(:func:`_linear_narrow_kernel`), dense but in the same order per output: the sum starts
at +0.0, adds ``x[k] * w[k]`` for k ascending, then the bias. A sum that starts at +0.0
never becomes -0.0, so adding the skipped ``+-0`` terms changes no bit, and both kernels
give identical results (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blas import KERNEL_BLAS_PINNED, KERNEL_GEMM
from .events import nonzero_indices

# Rows per parallel work item (its buffers are allocated once per item).
_ROWS = 8
# Below this many outputs the rows are the vector lanes (4x faster for 10 outputs).
_NARROW = 16
# Rows per work item of the narrow kernel (its lanes).
_LANES = 64


def linear_forward(x, weight_t, bias):
    """x float32 ``[B, in]``, weight_t the transposed weight ``[in, out]`` (C-contiguous),
    bias ``[out]`` or zero-length for none. Returns float32 ``[B, out]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((x.shape[0], weight_t.shape[1]), dtype=np.float32)
    if weight_t.shape[1] < _NARROW:
        _linear_narrow_kernel(x, weight_t, bias, y)
    else:
        _linear_kernel(x, weight_t, bias, y)
    return y


@njit(cache=True, parallel=True)
def _linear_kernel(x, weight_t, bias, y):
    rows, in_features = x.shape
    out_features = weight_t.shape[1]
    for block in prange((rows + _ROWS - 1) // _ROWS):
        inputs = np.empty(in_features, dtype=np.int64)
        sums = np.empty(out_features, dtype=np.float32)
        for r in range(block * _ROWS, min(block * _ROWS + _ROWS, rows)):
            row = x[r]
            events = nonzero_indices(row, inputs)
            sums[:] = np.float32(0.0)
            # four events per pass over the sums, added one after the other as in the plain
            # loop below (the same roundings): a quarter of the loads and stores of ``sums``
            quads = events - events % 4
            for e in range(0, quads, 4):
                k0, k1, k2, k3 = inputs[e], inputs[e + 1], inputs[e + 2], inputs[e + 3]
                v0, v1, v2, v3 = row[k0], row[k1], row[k2], row[k3]
                w0, w1, w2, w3 = weight_t[k0], weight_t[k1], weight_t[k2], weight_t[k3]
                for o in range(out_features):
                    sums[o] = (((sums[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]
            for e in range(quads, events):
                value, weights = row[inputs[e]], weight_t[inputs[e]]
                for o in range(out_features):
                    sums[o] += value * weights[o]
            if bias.shape[0] > 0:
                for o in range(out_features):
                    sums[o] += bias[o]
            y[r] = sums


@njit(cache=True, parallel=True)
def _linear_narrow_kernel(x, weight_t, bias, y):
    """:func:`_linear_kernel`'s sums with the rows as lanes: ``Y.T[o] += w[k, o] * X.T[k]``."""
    rows, in_features = x.shape
    out_features = weight_t.shape[1]
    for block in prange((rows + _LANES - 1) // _LANES):
        first = block * _LANES
        width = min(first + _LANES, rows) - first
        inputs = np.empty((in_features, width), dtype=np.float32)
        for r in range(width):
            for k in range(in_features):
                inputs[k, r] = x[first + r, k]
        sums = np.zeros((out_features, width), dtype=np.float32)
        for k in range(in_features):
            source = inputs[k]
            for o in range(out_features):
                w = weight_t[k, o]
                target = sums[o]
                for r in range(width):
                    target[r] += source[r] * w
        for r in range(width):
            for o in range(out_features):
                y[first + r, o] = sums[o, r]
                if bias.shape[0] > 0:
                    y[first + r, o] += bias[o]


# -- backward --------------------------------------------------------------------------
#
#     dL/dX = dL/dY @ weight            [B, in]
#     dL/dW = dL/dY.T @ X               [out, in]
#     dL/db = sum_B dL/dY               [out]
#
# BLAS GEMMs from Numba threads, on fixed slices of the rows, so the result does not
# depend on the thread count; the weight gradient sums its per-slice parts in slice order.
# Within a slice the rows go in chunks of at most _CHUNK_GEMM multiply-adds, each one GEMM
# (kernels/blas.py): with the kernels' BLAS on one thread, four times KERNEL_GEMM, since every
# chunk's weight-gradient product is added to the slice's sum (mnist_conv's fc1: a slice's
# 64 rows in one chunk instead of 20 + 20 + 20 + 4, the backward 4.4 -> 3.0 ms, bench/README.md).

_SLICES = 8
_CHUNK_GEMM = 4 * KERNEL_GEMM if KERNEL_BLAS_PINNED else KERNEL_GEMM


@njit(cache=True, parallel=True)
def _linear_backward_kernel(x, weight, grad_y, chunk_rows, need_input_grad, grad_x, partial_weight):
    rows = x.shape[0]
    slices = partial_weight.shape[0]
    for part in prange(slices):
        accumulated = partial_weight[part]
        accumulated[:, :] = np.float32(0.0)
        product = np.empty(accumulated.shape, dtype=np.float32)
        for first in range(part * rows // slices, (part + 1) * rows // slices, chunk_rows):
            last = min(first + chunk_rows, (part + 1) * rows // slices)
            gy = grad_y[first:last]
            if first == part * rows // slices:  # the first chunk's product is the sum so far
                np.dot(gy.T, x[first:last], accumulated)
            else:
                np.dot(gy.T, x[first:last], product)
                accumulated += product
            if need_input_grad:
                np.dot(gy, weight, grad_x[first:last])


_MIN_CHUNK_ROWS = 8  # below this many rows per GEMM chunk, the big layers' kernel below


@njit(cache=True, parallel=True)
def _big_linear_backward_kernel(x, weight, grad_y, grad_y_t, need_input_grad, grad_x, grad_weight):
    # Layers too big for row chunks: each product is cut along its outputs into _SLICES fixed
    # blocks, one GEMM each: the weight gradient's by rows of the weight (K = B), the input
    # gradient's by rows of the batch (K = out). Every output is one GEMM's whatever the thread
    # count; the weight is read once per input-gradient block (_SLICES times in all, where row
    # chunks of a few rows read it once per chunk). grad_y_t: dL/dY transposed, [out, B].
    out_features, rows = grad_y_t.shape
    for part in prange(_SLICES):
        first, last = part * out_features // _SLICES, (part + 1) * out_features // _SLICES
        if last > first:
            np.dot(grad_y_t[first:last], x, grad_weight[first:last])
        if need_input_grad:
            first, last = part * rows // _SLICES, (part + 1) * rows // _SLICES
            if last > first:
                np.dot(grad_y[first:last], weight, grad_x[first:last])


def linear_backward(x, weight, grad_y, need_input_grad=True, need_bias_grad=True):
    """Gradients of ``Y = X @ weight.T + bias`` given dL/dY ``[B, out]``.

    x ``[B, in]`` (the forward's input), weight ``[out, in]``. Returns
    ``(grad_x or None, grad_weight, grad_bias or None)``, float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    if KERNEL_GEMM // weight.size < _MIN_CHUNK_ROWS:
        # a big layer: GEMM chunks of a few rows would each sweep the whole weight (a 3157x3157
        # layer took 5.5 s instead of 70 ms): the products are cut along their outputs instead
        grad_bias = grad_y.sum(axis=0, dtype=np.float32) if need_bias_grad else None
        if not KERNEL_BLAS_PINNED:  # whole-matrix products from Python: BLAS uses its own threads
            return (grad_y @ weight if need_input_grad else None), grad_y.T @ x, grad_bias
        grad_x = np.empty(x.shape if need_input_grad else (0, x.shape[1]), dtype=np.float32)
        grad_weight = np.empty(weight.shape, dtype=np.float32)
        _big_linear_backward_kernel(x, weight, grad_y, np.ascontiguousarray(grad_y.T), bool(need_input_grad),
                                    grad_x, grad_weight)
        return (grad_x if need_input_grad else None), grad_weight, grad_bias
    slices = max(1, min(_SLICES, x.shape[0]))
    chunk_rows = max(1, _CHUNK_GEMM // weight.size)
    partial_weight = np.empty((slices, *weight.shape), dtype=np.float32)
    grad_x = np.empty(x.shape if need_input_grad else (0, x.shape[1]), dtype=np.float32)
    _linear_backward_kernel(x, weight, grad_y, chunk_rows, bool(need_input_grad), grad_x, partial_weight)
    grad_weight = partial_weight[0].copy()
    for part in range(1, slices):
        grad_weight += partial_weight[part]
    grad_bias = grad_y.sum(axis=0, dtype=np.float32) if need_bias_grad else None
    return (grad_x if need_input_grad else None), grad_weight, grad_bias
