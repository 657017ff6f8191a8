"""The Adam/AdamW update of one float32 parameter array in one pass (see ``optim.Adam``).

numpy takes ten passes over the arrays for one update (each operator writes a temporary);
this kernel reads the parameter, gradient and moments once and writes them once, with
exactly numpy's float32 operations in numpy's order (no fastmath, so no fused multiply-add):
its results are bit-identical to ``optim.Adam``'s numpy formulas. Entries are independent,
so the result does not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Below this many entries one thread does the update (a parallel region costs more).
_PARALLEL_ENTRIES = 1 << 16


@njit(cache=True, inline="always")
def _adam_entry(param, grad, m, v, keep, i, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                one_minus_beta2, neg_step_size, bias_correction2, eps):
    # pruned entries compute too and select +0.0 at the end: no branch on the mask, so the
    # loop vectorises (a branch on a random mask mispredicted: 5x slower at 50 % pruned)
    kept = not masked or keep[i] != 0
    g = grad[i]
    p = param[i]
    if decoupled:
        p = p * decay
    elif l2:
        g = g + weight_decay * p
    m_i = m[i] + one_minus_beta1 * (g - m[i])
    v_i = v[i] * beta2
    v_i = v_i + one_minus_beta2 * g * g
    denominator = np.sqrt(v_i) / bias_correction2 + eps
    zero = np.float32(0.0)
    param[i] = p + neg_step_size * m_i / denominator if kept else zero
    m[i] = m_i if kept else zero
    v[i] = v_i if kept else zero


@njit(cache=True, parallel=True)
def _adam_parallel(param, grad, m, v, keep, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                   one_minus_beta2, neg_step_size, bias_correction2, eps):
    for i in prange(param.shape[0]):
        _adam_entry(param, grad, m, v, keep, i, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                    one_minus_beta2, neg_step_size, bias_correction2, eps)


@njit(cache=True)
def _adam_serial(param, grad, m, v, keep, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                 one_minus_beta2, neg_step_size, bias_correction2, eps):
    for i in range(param.shape[0]):
        _adam_entry(param, grad, m, v, keep, i, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                    one_minus_beta2, neg_step_size, bias_correction2, eps)


def adam_update(param, grad, m, v, keep, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, step):
    """Update C-contiguous float32 ``param``, ``m`` and ``v`` in place from ``grad`` (same shape).

    keep: float32 of the same shape, 1 where kept and 0 where pruned (pruned entries: gradient
    taken as 0, weight and moments set to +0.0), or None. The other arguments are Python
    numbers as ``optim.Adam`` holds them; ``step`` counts from 1. The formulas (torch's):

        g <- g + weight_decay * w             (or, decoupled: w <- w * (1 - lr * weight_decay))
        m <- m + (1 - beta1) * (g - m);   v <- beta2 * v + (1 - beta2) * g * g
        w <- w + (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    f32 = np.float32
    arrays = (param, grad, m, v) if keep is None else (param, grad, m, v, keep)
    if not all(a.dtype == np.float32 and a.flags.c_contiguous and a.shape == param.shape for a in arrays):
        raise ValueError("adam_update needs C-contiguous float32 arrays of one shape")
    masked = keep is not None
    keep_flat = keep.reshape(-1) if masked else np.zeros(0, dtype=np.float32)
    kernel = _adam_parallel if param.size >= _PARALLEL_ENTRIES else _adam_serial
    kernel(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), keep_flat, masked,
           bool(weight_decay and decoupled_weight_decay), bool(weight_decay and not decoupled_weight_decay),
           f32(weight_decay), f32(1.0 - lr * weight_decay), f32(1.0 - beta1), f32(beta2), f32(1.0 - beta2),
           f32(-(lr / (1.0 - beta1**step))), f32(math.sqrt(1.0 - beta2**step)), f32(eps))
