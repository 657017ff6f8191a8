"""The Adam/AdamW update of one float32 parameter array in one pass (see ``optim.Adam``).

numpy takes ten passes over the arrays for one update (each operator writes a temporary);
this kernel reads the parameter, gradient and moments once and writes them once, with
exactly numpy's float32 operations in numpy's order (no fastmath, so no fused multiply-add):
its results are bit-identical to ``optim.Adam``'s numpy formulas. Entries are independent,
so the result does not depend on the thread count.

Two passes the compression solver would otherwise make over the same weights ride along
(``adam_update``'s ``least`` and ``magnitudes``): the gradient of its sparsity penalty on a
least-s set, added per entry before the moments as ``kernels.selection.add_scaled_least``
adds it, and |w| of the updated weights, as ``kernels.selection.magnitudes_into`` writes it.
Both are the same float32 operations as those passes, so the results are bit for bit the
unfused ones.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange


@njit(cache=True, inline="always")
def _adam_entry(param, g, m, v, kept, i, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                one_minus_beta2, neg_step_size, bias_correction2, eps):
    # pruned entries compute too and select +0.0 at the end: no branch on the mask, so the
    # loop vectorises (a branch on a random mask mispredicted: 5x slower at 50 % pruned)
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
    p = p + neg_step_size * m_i / denominator if kept else zero
    param[i] = p
    m[i] = m_i if kept else zero
    v[i] = v_i if kept else zero
    return p


# Below this many entries at two threads or more, a plain loop (the parallel region's wake-up,
# about 20 us, costs more); at one thread, and above it, the prange loop, which vectorises
# (0.6-0.8 ns an entry at one thread against 4 for the plain loop: bench/adam_loops.py)
_PARALLEL_ENTRIES = 1 << 12


@njit(cache=True, parallel=True)
def _adam_parallel(param, grad, m, v, keep, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                   one_minus_beta2, neg_step_size, bias_correction2, eps):
    for i in prange(param.shape[0]):
        _adam_entry(param, grad[i], m, v, not masked or keep[i] != 0, i, decoupled, l2, weight_decay, decay,
                    one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2, eps)


@njit(cache=True)
def _adam_serial(param, grad, m, v, keep, masked, decoupled, l2, weight_decay, decay, one_minus_beta1, beta2,
                 one_minus_beta2, neg_step_size, bias_correction2, eps):
    for i in range(param.shape[0]):
        _adam_entry(param, grad[i], m, v, not masked or keep[i] != 0, i, decoupled, l2, weight_decay, decay,
                    one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2, eps)


@njit(cache=True, inline="always")
def _adam_fused_entry(param, grad, m, v, keep, keys, magnitudes, i, limit, factor, masked, decoupled, l2,
                      weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2,
                      eps):
    g = np.float32(grad[i] + factor * param[i]) if keys[i] < limit else grad[i]
    magnitudes[i] = abs(_adam_entry(param, g, m, v, not masked or keep[i] != 0, i, decoupled, l2, weight_decay, decay,
                                    one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2, eps))


# One loop with one limit for the whole range (the caller splits at the set's edges): an index
# test in the loop, flags for the penalty or the write, or inner loops per range or per block
# kept the compiler from vectorising it (3-20x slower, measured while writing it).
@njit(cache=True, parallel=True)
def _adam_fused_parallel(param, grad, m, v, keep, keys, magnitudes, limit, factor, masked, decoupled, l2,
                         weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                         bias_correction2, eps):
    for i in prange(param.shape[0]):
        _adam_fused_entry(param, grad, m, v, keep, keys, magnitudes, i, limit, factor, masked, decoupled, l2,
                          weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                          bias_correction2, eps)


@njit(cache=True)
def _adam_fused_serial(param, grad, m, v, keep, keys, magnitudes, limit, factor, masked, decoupled, l2, weight_decay,
                       decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2, eps):
    for i in range(param.shape[0]):
        _adam_fused_entry(param, grad, m, v, keep, keys, magnitudes, i, limit, factor, masked, decoupled, l2,
                          weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                          bias_correction2, eps)


@njit(cache=True, inline="always")
def _adam_by_magnitude_entry(param, grad, m, v, keep, magnitudes, i, threshold, factor, masked, decoupled, l2,
                             weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                             bias_correction2, eps):
    # the set's membership from the weight itself: |w| <= the float whose bits are the limit - 1
    g = np.float32(grad[i] + factor * param[i]) if abs(param[i]) <= threshold else grad[i]
    magnitudes[i] = abs(_adam_entry(param, g, m, v, not masked or keep[i] != 0, i, decoupled, l2, weight_decay, decay,
                                    one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2, eps))


@njit(cache=True, parallel=True)
def _adam_by_magnitude_parallel(param, grad, m, v, keep, magnitudes, threshold, factor, masked, decoupled, l2,
                                weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                                bias_correction2, eps):
    for i in prange(param.shape[0]):
        _adam_by_magnitude_entry(param, grad, m, v, keep, magnitudes, i, threshold, factor, masked, decoupled, l2,
                                 weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                                 bias_correction2, eps)


@njit(cache=True)
def _adam_by_magnitude_serial(param, grad, m, v, keep, magnitudes, threshold, factor, masked, decoupled, l2,
                              weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                              bias_correction2, eps):
    for i in range(param.shape[0]):
        _adam_by_magnitude_entry(param, grad, m, v, keep, magnitudes, i, threshold, factor, masked, decoupled, l2,
                                 weight_decay, decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size,
                                 bias_correction2, eps)


def _magnitude_below(limit: int) -> np.float32:
    """The float32 t with ``|w| <= t`` exactly when the bits of |w| are below ``limit`` (<= the key
    of +inf plus one): the float of bits ``limit - 1``, or -1 (no |w|) for a limit <= 0."""
    return np.array(limit - 1, np.int32).view(np.float32)[()] if limit > 0 else np.float32(-1.0)


def _parallel(entries: int) -> bool:
    return entries >= _PARALLEL_ENTRIES or get_num_threads() == 1


def adam_update(param, grad, m, v, keep, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, step,
                least=None, magnitudes=None):
    """Update C-contiguous float32 ``param``, ``m`` and ``v`` in place from ``grad`` (same shape).

    keep: float32 of the same shape, 1 where kept and 0 where pruned (pruned entries: gradient
    taken as 0, weight and moments set to +0.0), or None. The other arguments are Python
    numbers as ``optim.Adam`` holds them; ``step`` counts from 1. The formulas (torch's):

        g <- g + weight_decay * w             (or, decoupled: w <- w * (1 - lr * weight_decay))
        m <- m + (1 - beta1) * (g - m);   v <- beta2 * v + (1 - beta2) * g * g
        w <- w + (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    least: ``(keys, first, split, last, bound, factor)`` or None: first, before everything else,
    ``g <- float32(g + float32(factor) * w)`` at the flat entries i in [first, last) whose
    ``keys[i]`` (int32 or int64, C-contiguous, one per entry) are below ``bound``, or equal to it
    with i < split: bit for bit ``kernels.selection.add_scaled_least`` on the gradient before the
    update (the set of a least-s selection). ``keys`` None: the keys are the bits of |w| now (a
    selection ranked on these very |w|), so membership is read from the weight itself, as
    ``|w| <= the float of bits bound`` (``bound - 1`` from ``split``): no keys read. magnitudes:
    float32 ``[param.size]`` or None: receives |w| of the updated weights, bit for bit
    ``np.abs(param)`` after the update.
    """
    f32 = np.float32
    arrays = (param, grad, m, v) if keep is None else (param, grad, m, v, keep)
    if not all(a.dtype == np.float32 and a.flags.c_contiguous and a.shape == param.shape for a in arrays):
        raise ValueError("adam_update needs C-contiguous float32 arrays of one shape")
    masked = keep is not None
    keep_flat = keep.reshape(-1) if masked else np.zeros(0, dtype=np.float32)
    constants = (bool(weight_decay and decoupled_weight_decay), bool(weight_decay and not decoupled_weight_decay),
                 f32(weight_decay), f32(1.0 - lr * weight_decay), f32(1.0 - beta1), f32(beta2), f32(1.0 - beta2),
                 f32(-(lr / (1.0 - beta1**step))), f32(math.sqrt(1.0 - beta2**step)), f32(eps))
    flats = (param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), keep_flat)
    if least is None and magnitudes is None:
        (_adam_parallel if _parallel(param.size) else _adam_serial)(*flats, masked, *constants)
        return
    if least is None:  # |w| alone: one range that no key is below
        keys, first, split, last, bound, factor = _no_keys(param.size), 0, 0, 0, 0, 0.0
    else:
        keys, first, split, last, bound, factor = least
        if keys is not None and (keys.shape != (param.size,) or keys.dtype not in (np.int32, np.int64)
                                 or not keys.flags.c_contiguous):
            raise ValueError("adam_update needs one C-contiguous int32 or int64 key per entry")
    if magnitudes is None:
        magnitudes = np.empty(param.size, np.float32)  # the fused loop writes |w| (one body: no flag)
    elif magnitudes.shape != (param.size,) or magnitudes.dtype != np.float32:
        raise ValueError("adam_update writes magnitudes into a float32 array of one entry per weight")
    width = np.int32 if keys is None else keys.dtype.type
    nothing = width(np.iinfo(width).min)  # below every key: outside the set
    first = min(max(int(first), 0), param.size)
    last = min(max(int(last), first), param.size)
    split = min(max(int(split), first), last)
    ranges = ((0, first, nothing), (first, split, width(bound + 1)), (split, last, width(bound)),
              (last, param.size, nothing))
    for start, stop, limit in ranges:
        if stop > start:
            part = slice(start, stop)
            arrays = (*(array[part] for array in flats[:4]), flats[4][part] if masked else flats[4])
            if keys is None:
                kernel = _adam_by_magnitude_parallel if _parallel(stop - start) else _adam_by_magnitude_serial
                kernel(*arrays, magnitudes[part], _magnitude_below(int(limit)), f32(factor), masked, *constants)
            else:
                kernel = _adam_fused_parallel if _parallel(stop - start) else _adam_fused_serial
                kernel(*arrays, keys[part], magnitudes[part], limit, f32(factor), masked, *constants)


def _no_keys(size: int) -> np.ndarray:
    """``size`` int32 keys for a range without a set (none is below its limit), from one buffer."""
    if _NO_KEYS["array"].size < size:
        _NO_KEYS["array"] = np.zeros(size, np.int32)
    return _NO_KEYS["array"][:size]


_NO_KEYS = {"array": np.zeros(0, np.int32)}
