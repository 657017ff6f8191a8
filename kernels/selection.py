"""The solver's O(n) passes over all prunable weights: the least-k set, the resource left,
the count of finite ranks, and the penalty gradient added on the set.

A search step of the minimax solver selects the k least-ranked weights (ranks are squared
magnitudes, float64, >= 0, +inf for protected synapses) three times and sums the cost of
the weights it keeps twice. numpy does this with ``np.argpartition`` (an introselect
that moves a 64-bit index with every value) and a boolean gather; on the 635 k weights
of the MNIST MLP those took 17 ms and 8 ms per call (bench/bench_solver.py, on a busy
machine).

:func:`least_set` selects by value instead: a radix select on the float64 bit patterns
(which order non-negative floats as their values) finds the k-th smallest value (per
digit, one pass counts and one gathers the bucket that holds it, until a bucket is small
enough to sort), then one pass counts the values below it and one writes the indices.
Ties at the k-th value are taken in index order, so the set is deterministic and does
not depend on the thread count (the passes are serial).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Radix digits from the top: 12 bits (sign and exponent: one bucket per binade), then
# 13, 13, 13, 13 down to bit 0; at most 8,192 counters (32 KB) per pass.
_SHIFTS = (52, 39, 26, 13, 0)
_WIDTHS = (12, 13, 13, 13, 13)
_SMALL = 512  # a bucket this small is sorted instead of refined


@njit(cache=True)
def _kth_smallest_bits(bits, k):
    """The (k+1)-th smallest of ``bits`` (uint64 patterns of non-negative floats), 0 <= k < n."""
    source = bits  # the values that share the digits chosen so far
    prefix = np.uint64(0)
    prefix_mask = np.uint64(0)
    for level in range(len(_SHIFTS)):
        shift, digits = np.uint64(_SHIFTS[level]), np.uint64((1 << _WIDTHS[level]) - 1)
        counts = np.zeros(1 << _WIDTHS[level], dtype=np.int32)
        for index in range(source.size):
            counts[(source[index] >> shift) & digits] += 1
        bucket = 0
        while counts[bucket] <= k:
            k -= counts[bucket]
            bucket += 1
        prefix |= np.uint64(bucket) << shift
        prefix_mask |= digits << shift
        if counts[bucket] == source.size:  # one bucket holds them all (ties, e.g. zeros)
            continue
        members = np.empty(counts[bucket], dtype=np.uint64)
        filled = 0
        for index in range(source.size):
            if (source[index] & prefix_mask) == prefix:
                members[filled] = source[index]
                filled += 1
        source = members
        if source.size <= _SMALL:
            source.sort()
            return source[k]
    return prefix  # every digit chosen: the value itself


@njit(cache=True)
def _least_set_kernel(bits, k):
    following_bits = _kth_smallest_bits(bits, k)
    less = 0
    for index in range(bits.size):
        less += bits[index] < following_bits
    ties = k - less  # entries equal to the (k+1)-th value that still belong to the set
    chosen = np.empty(k + 1, dtype=np.int64)  # the last cell takes the writes of the rejected
    filled = 0
    following = -1
    for index in range(bits.size):  # without a branch on the comparison (half of them would mispredict)
        value = bits[index]
        take = value < following_bits
        if value == following_bits:  # rare, but for ties
            if ties > 0:
                ties -= 1
                take = True
            elif following < 0:
                following = index
        chosen[filled] = index
        filled += take
    return chosen[:k], following


def least_set(ranks: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The indices (int64, ascending) of the ``k`` smallest ``ranks`` and the index of the
    (k+1)-th smallest, or -1 when ``k >= ranks.size`` (then every index is in the set).

    ranks: float64 ``[n]``, every entry >= 0 or +inf (squared magnitudes). Equal values
    are taken in index order. O(n): about four passes over ``ranks``.
    """
    ranks = np.ascontiguousarray(ranks, dtype=np.float64)
    k = max(0, int(k))
    if k >= ranks.size:
        return np.arange(ranks.size, dtype=np.int64), -1
    chosen, following = _least_set_kernel(ranks.view(np.uint64), k)
    return chosen, int(following)


@njit(cache=True)
def _finite_count_kernel(values):
    count = 0
    for index in range(values.size):
        count += np.isfinite(values[index])
    return count


def finite_count(values: np.ndarray) -> int:
    """``np.sum(np.isfinite(values))`` in one pass without a bool copy (float64 ``[n]``)."""
    return int(_finite_count_kernel(np.ascontiguousarray(values, dtype=np.float64)))


@njit(cache=True)
def _kept_cost_kernel(costs, pruned):
    # four partial sums (of indices 0, 1, 2, 3 mod 4) added at the end: a fixed order on
    # every machine, four independent chains, and no branch on ``pruned``
    s0 = s1 = s2 = s3 = 0.0
    whole = costs.size - costs.size % 4
    for index in range(0, whole, 4):
        s0 += costs[index] * (not pruned[index])
        s1 += costs[index + 1] * (not pruned[index + 1])
        s2 += costs[index + 2] * (not pruned[index + 2])
        s3 += costs[index + 3] * (not pruned[index + 3])
    for index in range(whole, costs.size):
        s0 += costs[index] * (not pruned[index])
    return (s0 + s1) + (s2 + s3)


def kept_cost(costs: np.ndarray, pruned: np.ndarray) -> float:
    """``sum(costs[~pruned])`` in one pass without a gathered copy (float64; finite costs)."""
    return float(_kept_cost_kernel(np.ascontiguousarray(costs, dtype=np.float64),
                                   np.ascontiguousarray(pruned, dtype=np.bool_)))


@njit(cache=True)
def _add_scaled_kernel(target, source, indices, factor):
    for index in indices:
        target[index] += factor * source[index]


def add_scaled_at(target: np.ndarray, source: np.ndarray, indices: np.ndarray, factor: float) -> None:
    """``target[indices] += float32(factor) * source[indices]`` in place, in one pass over
    ``indices`` (no gathered copies); float32 arithmetic as numpy's, so bit-identical.

    target, source: float32 ``[n]`` (contiguous; ``target`` is written); indices: int64
    ``[k]``, distinct, in ``[0, n)``.
    """
    _add_scaled_kernel(target, source, np.ascontiguousarray(indices, dtype=np.int64), np.float32(factor))
