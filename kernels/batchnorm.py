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
