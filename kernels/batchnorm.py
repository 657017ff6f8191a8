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


@njit(cache=True, parallel=True)
def batchnorm_statistics(x):
    """Per-channel ``(mean, biased variance)`` of ``x`` ``[B, C, S]`` as float64 ``[C]``."""
    batch, channels, size = x.shape
    mean = np.empty(channels, dtype=np.float64)
    var = np.empty(channels, dtype=np.float64)
    count = batch * size
    for c in prange(channels):
        total = 0.0
        for b in range(batch):
            for k in range(size):
                total += x[b, c, k]
        m = total / count
        squares = 0.0
        for b in range(batch):
            for k in range(size):
                d = x[b, c, k] - m
                squares += d * d
        mean[c] = m
        var[c] = squares / count
    return mean, var


def batchnorm_train_forward(x, weight, bias, eps):
    """Training-mode batch normalisation of float32 ``x`` ``[B, C, S]`` with batch statistics.

    Returns ``(y, mean, var, invstd)``: y float32 ``[B, C, S]``; mean and the biased var as
    float64 ``[C]`` (for the running statistics); invstd float32 ``[C]`` (for the backward).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    mean, var = batchnorm_statistics(x)
    invstd = (1.0 / np.sqrt(var + np.float64(np.float32(eps)))).astype(np.float32)
    scale = invstd * weight
    shift = bias - mean.astype(np.float32) * scale
    y = np.empty(x.shape, dtype=np.float32)
    _scale_shift_kernel(x, scale, shift, y)
    return y, mean, var, invstd


@njit(cache=True, parallel=True)
def _batchnorm_backward_kernel(x, grad_y, weight, mean, invstd, train, need_input_grad,
                               grad_x, grad_weight, grad_bias):
    batch, channels, size = x.shape
    count = batch * size
    for c in prange(channels):
        m = mean[c]
        inv = invstd[c]
        sum_grad = 0.0
        sum_grad_normalised = 0.0
        for b in range(batch):
            for k in range(size):
                g = grad_y[b, c, k]
                sum_grad += g
                sum_grad_normalised += g * ((x[b, c, k] - m) * inv)
        grad_bias[c] = sum_grad
        grad_weight[c] = sum_grad_normalised
        if need_input_grad:
            scale = weight[c] * inv
            if train:
                mean_grad = np.float32(sum_grad / count)
                mean_grad_normalised = np.float32(sum_grad_normalised / count)
                for b in range(batch):
                    for k in range(size):
                        normalised = (x[b, c, k] - m) * inv
                        grad_x[b, c, k] = scale * (grad_y[b, c, k] - mean_grad - normalised * mean_grad_normalised)
            else:
                for b in range(batch):
                    for k in range(size):
                        grad_x[b, c, k] = grad_y[b, c, k] * scale


def batchnorm_backward(x, grad_y, weight, mean, invstd, train, need_input_grad=True):
    """Gradients of batch normalisation over ``[B, C, S]`` given dL/dY.

    train: the forward used batch statistics ``mean`` and ``invstd`` (from
    :func:`batchnorm_train_forward`); else they are the running mean and
    ``1 / sqrt(running_var + eps)``, constants. Returns ``(grad_x or None, grad_weight, grad_bias)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    channels = x.shape[1]
    grad_x = np.empty(x.shape if need_input_grad else (0, channels, x.shape[2]), dtype=np.float32)
    grad_weight = np.empty(channels, dtype=np.float32)
    grad_bias = np.empty(channels, dtype=np.float32)
    _batchnorm_backward_kernel(x, grad_y, np.ascontiguousarray(weight, dtype=np.float32),
                               np.ascontiguousarray(mean, dtype=np.float32),
                               np.ascontiguousarray(invstd, dtype=np.float32), bool(train),
                               bool(need_input_grad), grad_x, grad_weight, grad_bias)
    return (grad_x if need_input_grad else None), grad_weight, grad_bias
