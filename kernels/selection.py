"""The solver's O(n) passes over all prunable weights: the least-k set by threshold, its mask,
the resource left after pruning it, its squared mass, and the penalty gradient added on it.

A least-k set is found as a *threshold*: with ``bits`` the ranks' bit patterns (float32 or
float64 ranks >= 0 or +inf; the bit patterns of non-negative floats order them as their
values), the set is

    { i :  bits[i] < bound  or  (bits[i] == bound and i < following) }

where ``(bound, following)`` is the key and index of the (k+1)-th smallest in the order
(key, index): ties are taken in index order. When every finite rank is in the set,
``bound`` is the key of +inf and ``following`` is -1.

:func:`histogram` counts the keys of a range by their top bits (one pass); :func:`select`
finds ``(bound, following)`` for any k from that histogram: the bucket that holds the
(k+1)-th key, one pass that gathers that bucket's members (and its neighbours': the next
selection most often needs one of them), then radix digits of 12 bits over
them until one key is left. Two selections on the same weights (a search step's, before and
after its step on s) share the histogram and, most often, the gathered bucket.
:func:`least_mask` writes the set as a bool mask (numpy's SIMD compare, then the ties).

The loops are written for this machine's compilers: no bool arithmetic in a hot loop (Numba
turns it into branches that mispredict on a random mask), no per-call allocation of a flat
array (each page of a fresh array costs a fault). Results do not depend on the thread count:
the counts are integers, the gradient is added entry by entry, and every sum is taken
serially in a fixed order (numpy's or the one :func:`kept_cost` had, so results are
bit-identical to the numpy code the solver used before).
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

_DIGIT = 12  # bits per refining digit: 4,096 counters (32 KB)
# a gather takes the buckets of the ranks k - size x below .. k + size x above, so that the
# selection after a search step's s step (which moves s by about that) finds its bucket gathered
_GATHER_BELOW, _GATHER_ABOVE = 0.025, 0.025
_PARALLEL_ENTRIES = 1 << 16  # below this, one thread (a parallel region costs more)
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


def key_bits(ranks: np.ndarray) -> np.ndarray:
    """The ranks' bit patterns as signed integers of their width (int32 for float32, int64 for
    float64): for ranks >= 0 (and +inf) they order as the ranks. A view, no copy."""
    return ranks.view(np.int32 if ranks.dtype == np.float32 else np.int64)


_INFINITY_KEYS = {np.dtype(np.int32): int(np.array(np.inf, np.float32).view(np.int32)),
                  np.dtype(np.int64): int(np.array(np.inf, np.float64).view(np.int64))}


def top_shift(bits: np.ndarray, size: int) -> int:
    """The shift of the histogram's digit for ``size`` keys: about size / 8 buckets (at most
    2**16), so the boundary bucket holds few keys and the counters stay in a fast cache; the
    digit spans at least the exponent, so the bucket of +inf holds only +inf and NaN."""
    exponent = 8 if bits.itemsize == 4 else 11
    width = min(16, max(exponent, int(size).bit_length() - 3))
    return 8 * bits.itemsize - 1 - width  # the sign bit is 0


@njit(cache=True)
def _histogram_serial(keys, start, stop, shift, counts):
    for index in range(start, stop):
        counts[np.int64(keys[index]) >> shift] += 1


@njit(cache=True, parallel=True)
def _histogram_parallel(keys, start, stop, shift, counts, chunks):
    # one histogram per chunk, added up after: integers, so the counts are the same for any chunking
    partial = np.zeros((chunks, counts.size), dtype=np.int32)
    length = (stop - start + chunks - 1) // chunks
    for chunk in prange(chunks):
        mine = partial[chunk]
        for index in range(start + chunk * length, min(stop, start + (chunk + 1) * length)):
            mine[np.int64(keys[index]) >> shift] += 1
    for chunk in range(chunks):
        for bucket in range(counts.size):
            counts[bucket] += partial[chunk, bucket]


def histogram(bits: np.ndarray, start: int, stop: int, shift: int) -> np.ndarray:
    """Counts (int64 ``[2**width]``) of ``bits[start:stop] >> shift``; ``shift`` from :func:`top_shift`."""
    counts = np.zeros(1 << (8 * bits.itemsize - 1 - shift), dtype=np.int64)
    if stop - start >= 4 * _PARALLEL_ENTRIES and get_num_threads() > 1:
        _histogram_parallel(bits, start, stop, shift, counts, get_num_threads())
    else:
        _histogram_serial(bits, start, stop, shift, counts)
    return counts


@njit(cache=True)
def _bucket_of(counts, k):
    """The bucket that holds the (k+1)-th smallest key, and that key's rank within it."""
    bucket = 0
    while counts[bucket] <= k:
        k -= counts[bucket]
        bucket += 1
    return bucket, k


@njit(cache=True)
def _gather_kernel(keys, start, stop, shift, first, offsets):
    # the flat indices of the keys in buckets first, first + 1, ..., grouped by bucket (bucket
    # first + b at offsets[b]:offsets[b + 1]), each bucket's ascending; few of all keys, so the
    # branch predicts well
    members = np.empty(offsets[-1], dtype=np.int64)
    filling = offsets[:-1].copy()
    low = np.int64(first) << shift
    width = np.uint64(offsets.size - 1) << np.uint64(shift)
    filled = 0
    for index in range(start, stop):
        offset = np.uint64(np.int64(keys[index]) - low)
        if offset < width:  # in one of the buckets, in one comparison
            bucket = np.int64(offset >> np.uint64(shift))
            members[filling[bucket]] = index
            filling[bucket] += 1
            filled += 1
            if filled == members.size:
                break
    return members


@njit(cache=True)
def _refine_kernel(keys, members, k, shift, digit):
    # radix digits below ``shift`` over the members (kept in index order) until one key is left
    while shift > 0:
        width = min(digit, shift)
        shift -= width
        mask = (1 << width) - 1
        counts = np.zeros(1 << width, dtype=np.int64)
        for position in range(members.size):
            counts[(np.int64(keys[members[position]]) >> shift) & mask] += 1
        bucket, k = _bucket_of(counts, k)
        if counts[bucket] == members.size:
            continue
        kept = 0
        for position in range(members.size):
            member = members[position]
            if ((np.int64(keys[member]) >> shift) & mask) == bucket:
                members[kept] = member
                kept += 1
        members = members[:kept]
    following = members[k]  # every member now has the same key; ties in index order
    return np.int64(keys[following]), following


def select(bits: np.ndarray, start: int, stop: int, k: int, counts: np.ndarray, shift: int,
           gathered: dict) -> tuple[int, int, int]:
    """``(bound, following, size)`` of the least-``k`` set of ``bits[start:stop]`` (see the module
    docstring); ``counts``: :func:`histogram` of that range with ``shift``. ``k >= 0``; when ``k``
    reaches the finite keys of the range, the set is all of them: ``(key of +inf, -1, their
    count)``. ``gathered``: a dict the caller keeps between selections on the same keys and
    range (bucket -> its members' flat indices, ascending), so a bucket is gathered once; it
    holds every key equal to ``bound`` for :func:`least_mask`. A gather takes the buckets near
    the (k+1)-th key too (``_GATHER_BELOW``, ``_GATHER_ABOVE``).
    O(size of the histogram + one pass + the bucket of the (k+1)-th key)."""
    infinite = _INFINITY_KEYS[bits.dtype]
    finite = (stop - start) - int(np.sum(counts[infinite >> shift:]))  # +inf and above (NaN) are not ranked
    if k >= finite:
        return infinite, -1, finite
    bucket, rank = _bucket_of(counts, k)
    if bucket not in gathered:
        size = stop - start
        first = _bucket_of(counts, max(0, k - int(_GATHER_BELOW * size)))[0]
        last = max(bucket, _bucket_of(counts, min(finite - 1, k + int(_GATHER_ABOVE * size)))[0])
        offsets = np.concatenate([[0], np.cumsum(counts[first:last + 1])]).astype(np.int64)
        members = _gather_kernel(bits, start, stop, shift, first, offsets)
        for index in range(last + 1 - first):
            gathered[first + index] = members[offsets[index]:offsets[index + 1]]
    bound, following = _refine_kernel(bits, gathered[bucket].copy(), rank, shift, _DIGIT)
    return int(bound), int(following), int(k)


@njit(cache=True)
def _mark_ties_kernel(keys, candidates, bound, following, mask):
    for index in candidates:
        if keys[index] == bound and index < following:
            mask[index] = True


def least_mask(bits: np.ndarray, start: int, stop: int, least: tuple[int, int, int], shift: int, gathered: dict,
               mask: np.ndarray) -> None:
    """Write the set ``least = (bound, following, size)`` of ``bits[start:stop]`` into
    ``mask[start:stop]`` (bool ``[n]``, in place); ``shift`` and ``gathered`` as :func:`select` had them."""
    bound, following, _ = least
    np.less(bits[start:stop], bound, out=mask[start:stop])  # numpy's SIMD compare
    if following >= 0:
        _mark_ties_kernel(bits, gathered[bound >> shift], bound, following, mask)


@njit(cache=True, parallel=True)
def _add_scaled_masked_parallel(target, source, chosen, factor):
    for index in prange(target.size):
        target[index] = np.float32(target[index] + factor * source[index]) if chosen[index] else target[index]


@njit(cache=True)
def _add_scaled_masked_serial(target, source, chosen, factor):
    for index in range(target.size):
        target[index] = np.float32(target[index] + factor * source[index]) if chosen[index] else target[index]


def add_scaled_masked(target: np.ndarray, source: np.ndarray, mask: np.ndarray, factor: float) -> None:
    """``target[mask] += float32(factor) * source[mask]`` in place, bit for bit as numpy's float32
    (the other entries keep their exact bits, signs of zero included); no gathered copies.

    target, source: float32 ``[m]``, contiguous; mask: bool ``[m]``.
    """
    kernel = _add_scaled_masked_parallel if target.size >= _PARALLEL_ENTRIES else _add_scaled_masked_serial
    kernel(target, source, mask.view(np.uint8), np.float32(factor))


@njit(cache=True, inline="always")
def _square(value):
    wide = np.float64(value)
    return wide * wide  # exact for float32 values (24-bit significands)


@njit(cache=True)
def _pairwise_squares(values, start, count):
    # numpy's pairwise summation (``pairwise_sum`` in numpy's loops_utils.h) of float64(v)**2
    if count < 8:
        total = 0.0
        for index in range(start, start + count):
            total += _square(values[index])
        return total
    if count <= _PAIRWISE_BLOCK:
        r0, r1, r2, r3 = _square(values[start]), _square(values[start + 1]), _square(values[start + 2]), \
            _square(values[start + 3])
        r4, r5, r6, r7 = _square(values[start + 4]), _square(values[start + 5]), _square(values[start + 6]), \
            _square(values[start + 7])
        index = start + 8
        whole = start + count - count % 8
        while index < whole:
            r0 += _square(values[index])
            r1 += _square(values[index + 1])
            r2 += _square(values[index + 2])
            r3 += _square(values[index + 3])
            r4 += _square(values[index + 4])
            r5 += _square(values[index + 5])
            r6 += _square(values[index + 6])
            r7 += _square(values[index + 7])
            index += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while index < start + count:
            total += _square(values[index])
            index += 1
        return total
    half = count // 2
    half -= half % 8
    return _pairwise_squares(values, start, half) + _pairwise_squares(values, start + half, count - half)


def sum_of_squares(values: np.ndarray, start: int, stop: int) -> float:
    """``np.sum(values[start:stop].astype(np.float64) ** 2)``, bit for bit (numpy's pairwise
    order, which it takes for a contiguous float64 vector), without the float64 copy.
    values: float32 or float64 ``[n]``, contiguous."""
    return 0.0 + float(_pairwise_squares(values, start, stop - start))


@njit(cache=True, inline="always")
def _left(cost, pruned):
    return cost * np.float64(1 - pruned)  # bytes, not bools: bool arithmetic would branch


@njit(cache=True)
def _kept_pair_kernel(costs, before, after, hard):
    # the sums of the costs left as _kept_cost_kernel sums them: four partial sums by index mod 4
    a0 = a1 = a2 = a3 = 0.0  # pruning ``before``
    b0 = b1 = b2 = b3 = 0.0  # pruning ``after`` and ``hard``
    whole = costs.size - costs.size % 4
    for index in range(0, whole, 4):
        a0 += _left(costs[index], before[index])
        a1 += _left(costs[index + 1], before[index + 1])
        a2 += _left(costs[index + 2], before[index + 2])
        a3 += _left(costs[index + 3], before[index + 3])
        b0 += _left(costs[index], after[index] | hard[index])
        b1 += _left(costs[index + 1], after[index + 1] | hard[index + 1])
        b2 += _left(costs[index + 2], after[index + 2] | hard[index + 2])
        b3 += _left(costs[index + 3], after[index + 3] | hard[index + 3])
    for index in range(whole, costs.size):
        a0 += _left(costs[index], before[index])
        b0 += _left(costs[index], after[index] | hard[index])
    return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)


@njit(cache=True)
def _compress_kernel(values, chosen, out):
    # no branch on the mask (half of them would mispredict): every value is written, the count
    # of the chosen moves on; a loop of its own (fused with the sums above it ran 3-6x slower)
    filled = 0
    for index in range(values.size):
        out[filled] = values[index]
        filled += chosen[index]
    return filled


@njit(cache=True)
def _count_either_kernel(a, b):
    total = 0
    for index in range(a.size):
        total += a[index] | b[index]  # bytes 0 or 1: no branch
    return total


def prune_pass(costs: np.ndarray, values: np.ndarray, before: np.ndarray, after: np.ndarray, hard_pruned: np.ndarray,
               chosen: np.ndarray, uniform_cost: float | None = None) -> tuple[float, float, int]:
    """Two passes for a search step's two sets (bool masks ``before`` and ``after`` its s step):
    ``(kept_cost(costs, before), kept_cost(costs, after | hard_pruned), count)``, bit for bit,
    with ``values[before]`` written to the front of ``chosen`` (same dtype, ``[n + 1]``: one
    spare cell takes the writes of the unchosen) and ``count`` of them. No allocation.
    ``uniform_cost`` (from :func:`uniform_cost`): every cost is this integer, so the kept costs
    are that times the counts, which the four partial sums reach exactly too: no pass over ``costs``."""
    count = int(_compress_kernel(values, before.view(np.uint8), chosen))
    hard = np.ascontiguousarray(hard_pruned, dtype=np.bool_).view(np.uint8)
    if uniform_cost is not None:
        removed = int(_count_either_kernel(after.view(np.uint8), hard))
        return uniform_cost * (costs.size - count), uniform_cost * (costs.size - removed), count
    kept_before, kept_after = _kept_pair_kernel(np.ascontiguousarray(costs, dtype=np.float64), before.view(np.uint8),
                                                after.view(np.uint8), hard)
    return float(kept_before), float(kept_after), count


def uniform_cost(costs: np.ndarray) -> float | None:
    """The cost every weight has when it is one integer ``c >= 0`` with ``c * n < 2**53`` (then every
    sum of costs is an exact integer, whatever its order), else None. O(n)."""
    if costs.size == 0:
        return None
    first = float(costs[0])
    if first < 0 or first != math.floor(first) or first * costs.size >= 2.0 ** 53 or not np.all(costs == first):
        return None
    return first


_EQUAL_BLOCK = 2048  # entries compared before the first exit: the block's loop is vectorised


@njit(cache=True)
def _same_bits_kernel(a, b):
    for start in range(0, a.size, _EQUAL_BLOCK):
        difference = a[start] ^ b[start]
        for index in range(start, min(a.size, start + _EQUAL_BLOCK)):
            difference |= a[index] ^ b[index]
        if difference != 0:
            return False
    return True


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two contiguous 1-D arrays of one dtype hold the same bits (so -0.0 differs from
    0.0, and a NaN equals itself); ``np.array_equal`` on their bit patterns, without a bool
    copy, in blocks of ``_EQUAL_BLOCK`` entries."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    return bool(_same_bits_kernel(a.view(width), b.view(width)))


@njit(cache=True)
def _kept_cost_kernel(costs, pruned):
    # four partial sums (of indices 0, 1, 2, 3 mod 4) added at the end: a fixed order on
    # every machine, four independent chains
    s0 = s1 = s2 = s3 = 0.0
    whole = costs.size - costs.size % 4
    for index in range(0, whole, 4):
        s0 += _left(costs[index], pruned[index])
        s1 += _left(costs[index + 1], pruned[index + 1])
        s2 += _left(costs[index + 2], pruned[index + 2])
        s3 += _left(costs[index + 3], pruned[index + 3])
    for index in range(whole, costs.size):
        s0 += _left(costs[index], pruned[index])
    return (s0 + s1) + (s2 + s3)


def kept_cost(costs: np.ndarray, pruned: np.ndarray) -> float:
    """``sum(costs[~pruned])`` in one pass without a gathered copy (float64; finite costs)."""
    pruned = np.ascontiguousarray(pruned, dtype=np.bool_)
    return float(_kept_cost_kernel(np.ascontiguousarray(costs, dtype=np.float64), pruned.view(np.uint8)))


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
