"""Batch normalisation over the channel axis of ``[B, C, S]`` (S = H*W, or 1 for vectors), float32.

Inference folds the running statistics into one scale and shift per channel
(the usual folding; it may round an ulp away from the IR's formula)::

    scale = weight / sqrt(running_var + eps);  shift = bias - running_mean * scale
    Y = X * scale + shift
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def batchnorm_eval_scale_shift(weight, bias, running_mean, running_var, eps):
    """Per-channel float32 ``(scale, shift)`` of inference-mode batch normalisation."""
    scale = np.empty_like(weight)
    shift = np.empty_like(weight)
    eps = np.float32(eps)
    for c in range(weight.shape[0]):
        scale[c] = weight[c] / np.sqrt(running_var[c] + eps)
        shift[c] = bias[c] - running_mean[c] * scale[c]
    return scale, shift


def batchnorm_eval_forward(x, weight, bias, running_mean, running_var, eps):
    """Inference-mode batch normalisation of float32 ``x`` ``[B, C, S]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    scale, shift = batchnorm_eval_scale_shift(weight, bias, running_mean, running_var, np.float32(eps))
    y = np.empty(x.shape, dtype=np.float32)
    _scale_shift_kernel(x, scale, shift, y)
    return y


@njit(cache=True, parallel=True)
def _scale_shift_kernel(x, scale, shift, y):
    batch, channels, size = x.shape
    for item in prange(batch * channels):
        b = item // channels
        c = item % channels
        for k in range(size):
            y[b, c, k] = x[b, c, k] * scale[c] + shift[c]


# -- training mode -------------------------------------------------------------------
#
# Statistics per channel over all B*S values (B = T*N: SpikingJelly's multi-step
# BatchNorm on [T*N, C, H, W]), accumulated in float64:
#
#     mean = sum(X) / n,   var = sum((X - mean)^2) / n   (biased: what normalises)
#     invstd = 1 / sqrt(var + eps);  X^ = (X - mean) * invstd;  Y = X^ * weight + bias
#
# computed as PyTorch's CPU kernel does, ``Y = X * scale + shift`` with
# ``scale = invstd * weight``, ``shift = bias - mean * scale``. Backward (PyTorch's formula):
#
#     dL/dbias = sum dL/dY,   dL/dweight = sum dL/dY * X^
#     dL/dX    = weight * invstd * (dL/dY - dL/dbias / n - X^ * dL/dweight / n)
#
# In inference mode (running statistics, constants): dL/dX = dL/dY * scale, and the
# same parameter gradients with X^ = (X - running_mean) / sqrt(running_var + eps).


# Sums over the batch run as float64 accumulators per (channel, position), one flat row
# of ``[B, C*S]`` at a time, with per-channel constants spread along the row: the inner
# loop is contiguous and independent per lane, so it vectorises for images and vectors
# alike (a single float64 running sum per channel could not). The rows are cut into
# fixed slices whose partial sums are added in order: the result does not depend on the
# number of threads.
_SLICES = 8


def _spread(per_channel, size):
    """``[C]`` -> ``[C*S]``: each channel's value repeated along its positions."""
    return np.repeat(np.asarray(per_channel), size)


@njit(cache=True, parallel=True)
def _sum_rows(rows, shift, squares, slices):
    """Per slice of ``rows`` ``[B, L]``: float64 ``[slices, L]`` sums of the rows, or of
    ``(row - shift)^2`` with ``squares``."""
    batch, length = rows.shape
    partial = np.zeros((slices, length), dtype=np.float64)
    for part in prange(slices):
        total = partial[part]
        for b in range(part * batch // slices, (part + 1) * batch // slices):
            row = rows[b]
            if squares:
                for i in range(length):
                    d = row[i] - shift[i]
                    total[i] += d * d
            else:
                for i in range(length):
                    total[i] += row[i]
    return partial


def batchnorm_statistics(x):
    """Per-channel ``(mean, biased variance)`` of ``x`` ``[B, C, S]`` as float64 ``[C]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch, channels, size = x.shape
    rows = x.reshape(batch, channels * size)
    count = batch * size
    slices = max(1, min(_SLICES, batch))
    mean = _sum_rows(rows, np.zeros(0), False, slices).sum(axis=0).reshape(channels, size).sum(axis=1) / count
    squares = _sum_rows(rows, _spread(mean, size), True, slices)
    var = squares.sum(axis=0).reshape(channels, size).sum(axis=1) / count
    return mean, var


@njit(cache=True, parallel=True)
def _scale_shift_rows(rows, scale, shift, out):
    """``out[b, i] = rows[b, i] * scale[i] + shift[i]`` (the same float32 operations as the
    inference kernel, with the constants spread along the row)."""
    for b in prange(rows.shape[0]):
        row = rows[b]
        target = out[b]
        for i in range(rows.shape[1]):
            target[i] = row[i] * scale[i] + shift[i]


def batchnorm_train_forward(x, weight, bias, eps):
    """Training-mode batch normalisation of float32 ``x`` ``[B, C, S]`` with batch statistics.

    Returns ``(y, mean, var, invstd)``: y float32 ``[B, C, S]``; mean and the biased var as
    float64 ``[C]`` (for the running statistics); invstd float32 ``[C]`` (for the backward).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch, channels, size = x.shape
    mean, var = batchnorm_statistics(x)
    invstd = (1.0 / np.sqrt(var + np.float64(np.float32(eps)))).astype(np.float32)
    scale = invstd * weight
    shift = bias - mean.astype(np.float32) * scale
    y = np.empty(x.shape, dtype=np.float32)
    _scale_shift_rows(x.reshape(batch, -1), _spread(scale, size), _spread(shift, size), y.reshape(batch, -1))
    return y, mean, var, invstd


@njit(cache=True, parallel=True)
def _gradient_sums(rows, grad_rows, mean, invstd, slices):
    """Per slice of rows ``[B, L]``: float64 ``[slices, 2, L]`` sums of dL/dY and of
    dL/dY * X^, with X^ = (X - mean) * invstd (both spread along the row)."""
    batch, length = rows.shape
    partial = np.zeros((slices, 2, length), dtype=np.float64)
    for part in prange(slices):
        sum_grad = partial[part, 0]
        sum_grad_normalised = partial[part, 1]
        for b in range(part * batch // slices, (part + 1) * batch // slices):
            row = rows[b]
            grad = grad_rows[b]
            for i in range(length):
                g = grad[i]
                sum_grad[i] += g
                sum_grad_normalised[i] += g * ((row[i] - mean[i]) * invstd[i])
    return partial


@njit(cache=True, parallel=True)
def _input_grad_rows(rows, grad_rows, mean, invstd, scale, mean_grad, mean_grad_normalised, out):
    """dL/dX = scale * (dL/dY - mean_grad - X^ * mean_grad_normalised), constants spread
    along the row (mean_grad = mean_grad_normalised = 0 in inference mode)."""
    for b in prange(rows.shape[0]):
        row = rows[b]
        grad = grad_rows[b]
        target = out[b]
        for i in range(rows.shape[1]):
            target[i] = scale[i] * (grad[i] - mean_grad[i] - ((row[i] - mean[i]) * invstd[i]) * mean_grad_normalised[i])


def batchnorm_backward(x, grad_y, weight, mean, invstd, train, need_input_grad=True):
    """Gradients of batch normalisation over ``[B, C, S]`` given dL/dY.

    train: the forward used batch statistics ``mean`` and ``invstd`` (from
    :func:`batchnorm_train_forward`); else they are the running mean and
    ``1 / sqrt(running_var + eps)``, constants. Returns ``(grad_x or None, grad_weight, grad_bias)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    batch, channels, size = x.shape
    rows, grad_rows = x.reshape(batch, -1), grad_y.reshape(batch, -1)
    mean_spread = _spread(np.asarray(mean, dtype=np.float32), size)
    invstd_spread = _spread(np.asarray(invstd, dtype=np.float32), size)
    slices = max(1, min(_SLICES, batch))
    sums = _gradient_sums(rows, grad_rows, mean_spread, invstd_spread, slices).sum(axis=0)
    sums = sums.reshape(2, channels, size).sum(axis=2)
    grad_bias, grad_weight = sums[0].astype(np.float32), sums[1].astype(np.float32)
    if not need_input_grad:
        return None, grad_weight, grad_bias
    count = batch * size
    scale = np.asarray(weight, dtype=np.float32) * np.asarray(invstd, dtype=np.float32)
    if train:
        mean_grad = (sums[0] / count).astype(np.float32)
        mean_grad_normalised = (sums[1] / count).astype(np.float32)
    else:
        mean_grad = mean_grad_normalised = np.zeros(channels, dtype=np.float32)
    grad_x = np.empty(x.shape, dtype=np.float32)
    _input_grad_rows(rows, grad_rows, mean_spread, invstd_spread, _spread(scale, size), _spread(mean_grad, size),
                     _spread(mean_grad_normalised, size), grad_x.reshape(batch, -1))
    return grad_x, grad_weight, grad_bias
