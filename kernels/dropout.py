"""Dropout with one mask per sample shared across time, over ``[T, N, M]``, float32.

    Y[t, n] = X[t, n] * mask[n],   mask[n] = keep[n] / (1 - p)   (0 or 1/(1-p))
    dL/dX[t, n] = dL/dY[t, n] * mask[n]

The mask is drawn by the caller (it owns the random generator); see :func:`dropout_mask`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def dropout_mask(rng: np.random.Generator, p: float, shape) -> np.ndarray:
    """A float32 mask of ``shape`` (``[N, M]``): ``1/(1-p)`` with probability ``1 - p``, else 0."""
    keep = rng.random(shape, dtype=np.float32) >= np.float32(p)
    return keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))


@njit(cache=True, parallel=True)
def _apply_mask(x, mask, y):
    time_steps, samples, width = x.shape
    for item in prange(time_steps * samples):
        t = item // samples
        n = item % samples
        for i in range(width):
            y[t, n, i] = x[t, n, i] * mask[n, i]


def dropout_forward(x, mask):
    """``Y = X * mask`` for ``x`` ``[T, N, M]`` and ``mask`` ``[N, M]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty(x.shape, dtype=np.float32)
    _apply_mask(x, np.ascontiguousarray(mask, dtype=np.float32), y)
    return y


def dropout_backward(grad_y, mask):
    """``dL/dX = dL/dY * mask``: the same product (the mask is a constant)."""
    return dropout_forward(grad_y, mask)
