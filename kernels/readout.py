"""Readouts from ``[T, M]`` to ``[M]``: mean firing rate and a non-spiking leaky integrator, float32."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def rate_readout_forward(x):
    """``Y = (sum_t X[t]) / T``, summed over t in order, in float32."""
    time_steps, width = x.shape
    total = np.zeros(width, dtype=np.float32)
    for t in range(time_steps):
        for i in range(width):
            total[i] += x[t, i]
    return total / np.float32(time_steps)


@njit(cache=True)
def leaky_readout_forward(x, beta):
    """``U[t] = beta * U[t-1] + X[t]`` with ``U[-1] = 0``; ``Y = (sum_t U[t]) / T``, in float32."""
    time_steps, width = x.shape
    beta = np.float32(beta)
    potential = np.zeros(width, dtype=np.float32)
    total = np.zeros(width, dtype=np.float32)
    for t in range(time_steps):
        for i in range(width):
            potential[i] = beta * potential[i] + x[t, i]
            total[i] += potential[i]
    return total / np.float32(time_steps)


# -- backward --------------------------------------------------------------------------


@njit(cache=True)
def rate_readout_backward(grad_y, time_steps):
    """dL/dX ``[T, M]`` of the rate readout: ``dL/dY / T`` at every step."""
    width = grad_y.shape[0]
    share = grad_y / np.float32(time_steps)
    grad_x = np.empty((time_steps, width), dtype=np.float32)
    for t in range(time_steps):
        grad_x[t] = share
    return grad_x


@njit(cache=True)
def leaky_readout_backward(grad_y, time_steps, beta):
    """dL/dX ``[T, M]`` of the leaky readout: ``dL/dX[t] = (dL/dY / T) * sum_{s>=t} beta^(s-t)``,
    accumulated backwards in time as ``G[t] = dL/dY / T + beta * G[t+1]``."""
    width = grad_y.shape[0]
    beta = np.float32(beta)
    share = grad_y / np.float32(time_steps)
    grad_x = np.empty((time_steps, width), dtype=np.float32)
    carried = np.zeros(width, dtype=np.float32)
    for t in range(time_steps - 1, -1, -1):
        for i in range(width):
            carried[i] = share[i] + beta * carried[i]
            grad_x[t, i] = carried[i]
    return grad_x
