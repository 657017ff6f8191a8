"""The solver's O(n) passes over the prunable weights: a survey that locates the least-k sets
of each group, the sums over two such sets, the penalty gradient added on a set, and the check
that the weights did not move.

A least-k set is found as a *threshold*: with ``keys`` the ranks' bit patterns (float32 or
float64 ranks >= 0 or +inf; the bit patterns of non-negative floats order them as their
values), the set is

    { i :  keys[i] < bound  or  (keys[i] == bound and i < following) }

where ``(bound, following)`` is the key and index of the (k+1)-th smallest in the order
(key, index): ties are taken in index order. When every finite rank is in the set,
``bound`` is the key of +inf and ``following`` is -1.

:func:`survey` is one pass over every group: for a *window* of keys ``[lo, hi)`` per group it
counts the keys below ``lo``, gathers the (index, key) pairs of those inside (indices
ascending), and sums the squares of all the group's values. A set whose (k+1)-th key lies
inside the window is then found from the window's pairs alone (``least_sets.Window``: the
counts of a top digit and the first rank's key in one call, :func:`counted_key_of_rank`, then
:func:`key_of_rank` within one bucket for another rank); the
caller keeps each group's window near its last boundary, moves it towards a boundary that left
it and surveys again, and takes a :func:`histogram` when that fails. :func:`set_sums` is one
pass for two sets per group (a search step's, before and after its step on s): the squares of
the first, how many hard-pruned weights the second holds, and, with costs per weight, the costs
of the first and of the second's weights not hard-pruned. Neither pass writes a mask: the consumers compare keys with ``(bound,
following)`` (:func:`add_scaled_least`, :func:`least_mask`).

Sums do not depend on the thread count nor on the windows: the groups are cut into chunks of
``CHUNK`` entries at fixed places, each chunk's float sums are taken in the compiler's
vectorised order (reassociated: fixed for a machine, it may differ in the last bits between
CPUs of different vector widths; not numpy's pairwise order), and a group's chunks are added
in index order. Counts are integers. The loops are written for this machine's compilers: no
bool arithmetic in a hot loop (Numba turns it into branches that mispredict on random data:
comparisons are made integers by the sign bit of a difference), loops over views indexed from
0 (a possibly negative index gets a wraparound check that keeps a loop from vectorising), no
per-call allocation of a flat array.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

DIGIT = 12  # bits per refining digit: 4,096 counters (32 KB)
_PARALLEL_ENTRIES = 1 << 16  # below this, one thread (a parallel region costs more)
CHUNK = 1 << 16  # entries per chunk of a pass: the unit of parallel work and of the sums' order
_FEW = 32  # pairs ranked directly (each against all), without a digit's counters
_BLOCK = 64  # keys a survey tests into the bits of one word before it gathers their members
# float sums within a chunk in the vectorised order of the compiler (fixed for a machine)
_REASSOCIATE = {"reassoc", "nsz", "contract"}


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
def bucket_of(counts, k):
    """The bucket that holds the (k+1)-th smallest key, and that key's rank within it."""
    bucket = 0
    while counts[bucket] <= k:
        k -= counts[bucket]
        bucket += 1
    return bucket, k




def infinity_key(keys: np.ndarray) -> int:
    """The key of +inf for ``keys`` of :func:`key_bits` (every finite rank's key is below it)."""
    return _INFINITY_KEYS[keys.dtype]


def parallel_pass(entries: int) -> bool:
    """Whether a pass over ``entries`` weights pays for a parallel region (with threads to run it)."""
    return entries >= 4 * _PARALLEL_ENTRIES


# -- the survey: keys below a window, the window's members, the squares ------------------
@njit(cache=True, inline="always")
def _below(key, limit):
    return ((key - limit) >> 63) & 1  # 1 when key < limit (int64, no overflow): an integer, no branch


@njit(cache=True, fastmath=_REASSOCIATE)
def _survey_chunk(values, keys, start, stop, lo, hi, members, member_keys, slot, out_squares, out_counts, chunk):
    # two loops over the chunk (it stays in cache): the squares and the count below (vectorised),
    # then the gather, 64 keys at a time (below). Loops index views from 0: an index that
    # cannot be negative needs no wraparound, which would keep the loop from vectorising
    chunk_values, chunk_keys = values[start:stop], keys[start:stop]
    squares = 0.0
    below = 0
    for index in range(chunk_values.size):
        value = np.float64(chunk_values[index])
        squares += value * value
        below += _below(np.int64(chunk_keys[index]), lo)
    filled = slot
    width = np.uint64(hi - lo)
    whole = chunk_keys.size - chunk_keys.size % _BLOCK
    for first in range(0, whole, _BLOCK):
        # the block's members as the bits of one word (a loop without a branch), then one visit
        # per member in index order: a branch per key mispredicted on the scattered members (4x slower)
        block = chunk_keys[first:first + _BLOCK]
        bits = np.uint64(0)
        for offset in range(_BLOCK):
            bits |= np.uint64(np.uint64(np.int64(block[offset]) - lo) < width) << np.uint64(offset)
        while bits != 0:
            offset = np.int64(trailing_zeros(bits))
            members[filled] = start + first + offset
            member_keys[filled] = block[offset]
            filled += 1
            bits &= bits - np.uint64(1)  # the lowest bit off
    for index in range(whole, chunk_keys.size):
        key = chunk_keys[index]
        if np.uint64(np.int64(key) - lo) < width:  # lo <= key < hi, in one comparison
            members[filled] = start + index
            member_keys[filled] = key
            filled += 1
    out_squares[chunk] = squares
    out_counts[chunk, 0] = below
    out_counts[chunk, 1] = filled - slot


@njit(cache=True)
def _survey_serial(values, keys, starts, stops, groups, lo, hi, slots, members, member_keys, squares, counts,
                   origins):
    # a chunk's members follow those of the chunk before it in its group: already together
    for chunk in range(starts.size):
        follows = chunk > 0 and groups[chunk - 1] == groups[chunk]
        origins[chunk] = origins[chunk - 1] + counts[chunk - 1, 1] if follows else slots[chunk]
        _survey_chunk(values, keys, starts[chunk], stops[chunk], lo[groups[chunk]], hi[groups[chunk]], members,
                      member_keys, origins[chunk], squares, counts, chunk)


@njit(cache=True, parallel=True)
def _survey_parallel(values, keys, starts, stops, groups, lo, hi, slots, members, member_keys, squares, counts,
                     origins):
    for chunk in prange(starts.size):
        origins[chunk] = slots[chunk]
        _survey_chunk(values, keys, starts[chunk], stops[chunk], lo[groups[chunk]], hi[groups[chunk]], members,
                      member_keys, slots[chunk], squares, counts, chunk)


@njit(cache=True)
def _gather_windows(members, member_keys, origins, counts, squares, firsts, group_squares, group_counts,
                    group_window):
    # per group (its chunks firsts[g]:firsts[g + 1], in index order): the squares added chunk by
    # chunk, the counts, and the window's members moved together to the group's first chunk's
    # (where they are not already: chunks written one after the other)
    for group in range(firsts.size - 1):
        total = 0.0
        below = 0
        filled = origins[firsts[group]]
        group_window[group] = filled
        for chunk in range(firsts[group], firsts[group + 1]):
            total += squares[chunk]
            below += counts[chunk, 0]
            source = origins[chunk]
            if source == filled:
                filled += counts[chunk, 1]
                continue
            for position in range(counts[chunk, 1]):
                members[filled] = members[source + position]
                member_keys[filled] = member_keys[source + position]
                filled += 1
        group_squares[group] = total
        group_counts[group, 0] = below
        group_counts[group, 1] = filled - group_window[group]


def survey(values: np.ndarray, keys: np.ndarray, starts: np.ndarray, stops: np.ndarray, groups: np.ndarray,
           firsts: np.ndarray, lo: np.ndarray, hi: np.ndarray, slots: np.ndarray, members: np.ndarray,
           member_keys: np.ndarray, parallel: bool, replaced: tuple | None = None):
    """One pass over chunks ``starts[c]:stops[c]`` (ascending, disjoint) of groups: chunk c is of
    group ``groups[c]``, whose chunks are ``firsts[g]:firsts[g + 1]``, and whose window is
    ``[lo[g], hi[g])``.

    values: float32 or float64 ``[n]`` (squared as float64); keys: :func:`key_bits` ``[n]``;
    slots: int64, where chunk c may write its members (``members[slots[c]:slots[c] + its length
    + 1]``, disjoint); ``member_keys`` (as ``keys``, as large as ``members``) gets their keys.
    ``replaced``: None, or ``(indices, originals)``: flat indices (int64, ascending) at which
    ``values`` hold something else (the ranks written over them in place, e.g. +inf) and the
    values to square there: each chunk that holds one is summed again, by the same serial loop,
    from a copy of the chunk that holds them (so the sums are those of the original values, bit
    for bit). Returns per group ``(squares, counts, window)``: the sum of its squared values (float64
    ``[G]``), the count of keys below ``lo`` and inside the window (int64 ``[G, 2]``), and where
    its window's members (flat indices, ascending) start in ``members`` (int64 ``[G]``)."""
    chunks = starts.size
    squares, counts, origins = np.empty(chunks), np.empty((chunks, 2), np.int64), np.empty(chunks, np.int64)
    kernel = _survey_parallel if parallel and get_num_threads() > 1 else _survey_serial
    kernel(values, keys, starts, stops, groups, lo, hi, slots, members, member_keys, squares, counts, origins)
    if replaced is not None:
        _square_originals(values, keys, starts, stops, *replaced, squares)
    group_count = firsts.size - 1
    group_squares, group_counts = np.empty(group_count), np.empty((group_count, 2), np.int64)
    group_window = np.empty(group_count, np.int64)
    _gather_windows(members, member_keys, origins, counts, squares, firsts, group_squares, group_counts, group_window)
    return group_squares, group_counts, group_window


def _square_originals(values, keys, starts, stops, indices, originals, squares):
    # the chunks that hold a replaced entry, each summed again from a copy holding the originals
    # by _survey_serial itself (one chunk, an empty window): the loop, and so the order, of the survey
    chunk_of = np.searchsorted(stops, indices, side="right")
    inside = chunk_of < starts.size
    inside[inside] &= starts[chunk_of[inside]] <= indices[inside]
    one = np.zeros(1, np.int64)
    for chunk in np.unique(chunk_of[inside]).tolist():
        start, stop = int(starts[chunk]), int(stops[chunk])
        copy = values[start:stop].copy()
        held = (indices >= start) & (indices < stop)
        copy[indices[held] - start] = originals[held]
        total, counts, origins = np.empty(1), np.empty((1, 2), np.int64), np.empty(1, np.int64)
        _survey_serial(copy, copy.view(keys.dtype), one, np.full(1, stop - start, np.int64), one, one, one, one,
                       np.empty(1, np.int64), np.empty(1, keys.dtype), total, counts, origins)
        squares[chunk] = total[0]


@njit(cache=True)
def digit_width(size):
    """The bits of a radix digit over ``size`` keys: ``DIGIT``, narrower below 2,048 keys (about
    one counter per key, at least 16 counters): zeroing and summing 4,096 counters would cost more
    than counting a few hundred keys."""
    if size >= 2048:
        return DIGIT
    width = 4
    while (1 << width) < size:
        width += 1
    return width


@njit(cache=True)
def _kth_of_few(keys, members, k):
    # the (k+1)-th smallest pair in the order (key, index) of a few pairs (indices ascending), by
    # counting the pairs before each one: no counters to zero, no copy
    for candidate in range(keys.size):
        key = np.int64(keys[candidate])
        before = 0
        for other in range(keys.size):
            before += (np.int64(keys[other]) < key) | ((np.int64(keys[other]) == key) & (other < candidate))
        if before == k:
            return key, members[candidate]
    return np.int64(keys[k]), members[k]  # not reached: the pairs are distinct in (key, index)


@njit(cache=True)
def _refine_pairs(keys, members, k, shift):
    # radix digits below ``shift`` over (key, index) pairs held side by side (no loads scattered
    # over the flat keys); each digit keeps only the bucket of the (k+1)-th key, in a new array
    # (the caller's are read, never written); ``_FEW`` pairs or fewer are ranked directly
    while shift > 0 and keys.size > _FEW:
        width = min(digit_width(keys.size), shift)
        shift -= width
        mask = (1 << width) - 1
        counts = np.zeros(1 << width, dtype=np.int64)
        for position in range(keys.size):
            counts[(np.int64(keys[position]) >> shift) & mask] += 1
        bucket, k = bucket_of(counts, k)
        if counts[bucket] == keys.size:
            continue
        keys, members = _bucket_pairs(keys, members, shift, mask, bucket, counts[bucket])
    if shift > 0:
        return _kth_of_few(keys, members, k)
    return np.int64(keys[k]), members[k]  # every key left is the same; ties in index order


@njit(cache=True)
def _bucket_pairs(keys, members, shift, mask, bucket, size):
    # the ``size`` pairs whose digit ``(key >> shift) & mask`` is ``bucket``, in order, in new arrays
    kept_keys, kept_members = np.empty(size, keys.dtype), np.empty(size, members.dtype)
    kept = 0
    for position in range(keys.size):
        if ((np.int64(keys[position]) >> shift) & mask) == bucket:
            kept_keys[kept] = keys[position]
            kept_members[kept] = members[position]
            kept += 1
    return kept_keys, kept_members


@njit(cache=True)
def _digit_offsets(keys, shift, width):
    mask = (1 << width) - 1
    offsets = np.zeros((1 << width) + 1, np.int64)
    for position in range(keys.size):
        offsets[((np.int64(keys[position]) >> shift) & mask) + 1] += 1
    for bucket in range(1 << width):
        offsets[bucket + 1] += offsets[bucket]
    return offsets


@njit(cache=True)
def key_of_rank(offsets, member_keys, members, rank, shift, width):
    """``(key, index)`` of the (rank+1)-th smallest of the pairs ``(member_keys[i], members[i])``
    (indices ascending, all keys agreeing above bit ``shift + width``), in the order (key, index):
    the rank's bucket of the top digit (``offsets``: int64 ``[2**width + 1]``, the pairs' ranks by
    ``(key >> shift) & (2**width - 1)``, of :func:`counted_key_of_rank`), then radix digits within it,
    or a direct selection among ``_FEW`` pairs or fewer; arrays not changed."""
    bucket = np.searchsorted(offsets, rank, side="right") - 1
    first, size = offsets[bucket], offsets[bucket + 1] - offsets[bucket]
    kept_keys, kept_members = _bucket_pairs(member_keys, members, shift, (1 << width) - 1, bucket, size)
    return _refine_pairs(kept_keys, kept_members, rank - first, shift)


@njit(cache=True)
def counted_key_of_rank(member_keys, members, lo, hi, rank):
    """A window's members (the pairs ``(member_keys[i], members[i])``, indices ascending, keys in
    ``[lo, hi)``) counted by their top digit, and the key of a rank, in one call: returns
    ``(offsets, shift, width, key, index)``. The digit is the ``width`` bits (:func:`digit_width` of
    the members, at most the bits in which keys of the window can differ) above bit ``shift``;
    ``offsets``: int64 ``[2**width + 1]``, bucket b holding the ranks ``offsets[b]:offsets[b + 1]``.
    ``(key, index)``: :func:`key_of_rank` of ``rank``, or ``(-1, -1)`` for ``rank`` < 0 (the counts alone)."""
    differing = lo ^ max(lo, hi - 1)
    top = 1
    while (differing >> top) != 0:
        top += 1
    width = min(digit_width(members.size), top)
    shift = top - width
    offsets = _digit_offsets(member_keys, shift, width)
    if rank < 0:
        return offsets, shift, width, np.int64(-1), np.int64(-1)
    key, index = key_of_rank(offsets, member_keys, members, rank, shift, width)
    return offsets, shift, width, key, index


@njit(cache=True)
def bucket_start(offsets, rank, shift, prefix):
    """The smallest key of the top-digit bucket (of :func:`counted_key_of_rank`) that holds
    ``rank``: ``prefix`` (the window's keys' bits above the digit) plus the bucket's digit."""
    return prefix + ((np.searchsorted(offsets, rank, side="right") - 1) << shift)


# -- the sums over two sets per group ---------------------------------------------------
@njit(cache=True, inline="always")
def _in_set(key, index, bound, following):
    # keys[i] < bound, or == bound before ``following``: < bound + 1 there
    return np.int64(key) < bound + _below(index, following)


@njit(cache=True, fastmath=_REASSOCIATE)
def _sums_chunk(values, keys, costs, hard, start, stop, first, second, out, chunk):
    # separate loops, each vectorised (over views indexed from 0, as in _survey_chunk): the
    # squares of the first set; then, when some weights are hard-pruned, how many of them the
    # second set holds; then, for costs per weight, the costs of the first set
    # and of the second's weights not hard-pruned. Set membership with ``following`` made local.
    first_bound, first_following = first[0], first[1] - start
    second_bound, second_following = second[0], second[1] - start
    chunk_values, chunk_keys = values[start:stop], keys[start:stop]
    squares = 0.0
    for index in range(chunk_keys.size):
        value = np.float64(chunk_values[index])
        squares += value * value if _in_set(chunk_keys[index], index, first_bound, first_following) else 0.0
    out[chunk, 0] = squares
    held = 0
    if hard.size == keys.size:  # else one zero: none is hard-pruned
        chunk_hard = hard[start:stop]
        for index in range(chunk_keys.size):
            held += _below(np.int64(chunk_keys[index]), second_bound + _below(index, second_following)) \
                & np.int64(chunk_hard[index])
    out[chunk, 1] = held
    if costs.size == keys.size:  # else one cost for every weight: the caller multiplies counts
        chunk_costs = costs[start:stop]
        chunk_hard = hard[start:stop] if hard.size == keys.size else np.zeros(chunk_keys.size, np.uint8)
        first_cost = second_cost = 0.0
        for index in range(chunk_keys.size):
            cost = chunk_costs[index]
            first_cost += cost if _in_set(chunk_keys[index], index, first_bound, first_following) else 0.0
            kept = _below(np.int64(chunk_keys[index]), second_bound + _below(index, second_following)) \
                & (1 - np.int64(chunk_hard[index]))
            second_cost += cost if kept != 0 else 0.0
        out[chunk, 2] = first_cost
        out[chunk, 3] = second_cost


@njit(cache=True)
def _sums_serial(values, keys, costs, hard, starts, stops, groups, sets, out):
    for chunk in range(starts.size):
        group = groups[chunk]
        _sums_chunk(values, keys, costs, hard, starts[chunk], stops[chunk], sets[group, 0:2], sets[group, 2:4], out,
                    chunk)


@njit(cache=True, parallel=True)
def _sums_parallel(values, keys, costs, hard, starts, stops, groups, sets, out):
    for chunk in prange(starts.size):
        group = groups[chunk]
        _sums_chunk(values, keys, costs, hard, starts[chunk], stops[chunk], sets[group, 0:2], sets[group, 2:4], out,
                    chunk)


@njit(cache=True)
def _add_chunks(out, firsts, totals):
    for group in range(firsts.size - 1):
        for column in range(out.shape[1]):
            total = 0.0
            for chunk in range(firsts[group], firsts[group + 1]):
                total += out[chunk, column]
            totals[group, column] = total


@njit(cache=True)
def set_sums(values, keys, costs, hard, starts, stops, groups, firsts, sets, parallel):
    """Per group (chunks as :func:`survey` has them), float64 ``[G, 4]``: the sum of the squared
    values of a first set, how many hard-pruned weights a second set holds, and the costs of the
    first set and of the second's weights that are not hard-pruned. ``sets``: int64 ``[G, 4]``,
    per group ``(bound, following)`` of the first set, then of the second. ``costs``: float64
    ``[n]``, or ``[1]`` (one cost for every weight: then the cost columns are 0 and the caller
    multiplies counts); ``hard``: uint8 ``[n]`` (1: hard-pruned), or ``[1]`` zero (none is: the
    count is 0). One pass (two with costs per weight), in parallel chunks when ``parallel`` (pass
    False without threads to run them: a parallel region costs more); one jitted call, the chunks'
    sums added inside."""
    out = np.zeros((starts.size, 4))
    if parallel:
        _sums_parallel(values, keys, costs, hard, starts, stops, groups, sets, out)
    else:
        _sums_serial(values, keys, costs, hard, starts, stops, groups, sets, out)
    totals = np.empty((firsts.size - 1, 4))
    _add_chunks(out, firsts, totals)
    return totals


# -- consumers of a set: its mask, the penalty gradient on it ---------------------------
def least_mask(keys: np.ndarray, start: int, stop: int, least: tuple, mask: np.ndarray) -> None:
    """Write the set ``least = (bound, following, ...)`` of ``keys[start:stop]`` into
    ``mask[start:stop]`` (bool ``[n]``, in place): two SIMD comparisons of numpy's."""
    bound, following = least[0], least[1]
    split = min(max(following, start), stop)  # ties are in the set before ``following``
    np.less_equal(keys[start:split], bound, out=mask[start:split])
    np.less(keys[split:stop], bound, out=mask[split:stop])


@njit(cache=True)
def _add_scaled_below(target, source, keys, limit, factor):
    # one limit for the whole range, compared in the keys' own width (8 lanes for int32 keys);
    # the select written out here (through an inlined helper it stayed a branch): no branch on the set
    for index in range(target.size):
        target[index] = np.float32(target[index] + factor * source[index]) if keys[index] < limit else target[index]


@njit(cache=True)
def _add_scaled_least_serial(target, source, keys, split, tied_limit, limit, factor):
    # ties are in the set before ``split``: there the limit is bound + 1 (no per-entry index test)
    _add_scaled_below(target[:split], source[:split], keys[:split], tied_limit, factor)
    _add_scaled_below(target[split:], source[split:], keys[split:], limit, factor)


@njit(cache=True, parallel=True)
def _add_scaled_least_parallel(target, source, keys, split, tied_limit, limit, factor):
    for chunk in prange((target.size + CHUNK - 1) // CHUNK):
        start, stop = chunk * CHUNK, min(target.size, (chunk + 1) * CHUNK)
        middle = min(max(split, start), stop)
        _add_scaled_below(target[start:middle], source[start:middle], keys[start:middle], tied_limit, factor)
        _add_scaled_below(target[middle:stop], source[middle:stop], keys[middle:stop], limit, factor)


def add_scaled_least(target: np.ndarray, source: np.ndarray, keys: np.ndarray, least: tuple, factor: float) -> None:
    """``target[i] += float32(factor) * source[i]`` where i is in the set ``least = (bound,
    following, ...)`` of ``keys`` (``following`` relative to ``keys[0]``; any value < 0 or past
    the end is fine), in place, bit for bit as numpy's float32 masked add (the other entries
    keep their exact bits); no mask. target, source: float32 ``[m]``; keys ``[m]``, contiguous.
    Two loops, before and after ``following``, each with one limit (``bound + 1``, then ``bound``;
    the key of +inf plus one still fits the keys' width)."""
    bound, following = least[0], least[1]
    split = min(max(following, 0), target.size)
    parallel = target.size >= _PARALLEL_ENTRIES and get_num_threads() > 1
    kernel = _add_scaled_least_parallel if parallel else _add_scaled_least_serial
    width = keys.dtype.type
    kernel(target, source, keys, split, width(bound + 1), width(bound), np.float32(factor))


@njit(cache=True)
def _set_strongest(block, count):
    # per row, the ``count`` largest and the next one by insertion into a short descending list;
    # nothing is written unless every row's count-th largest is strictly above the next (no ties
    # at the edge, no NaN): then the set of each row is unique, the one any selection returns
    top = np.empty((block.shape[0], count + 1), block.dtype)
    for row in range(block.shape[0]):
        kept = top[row]
        kept[:] = -np.inf
        for column in range(block.shape[1]):
            value = block[row, column]
            if value != value:
                return False
            if value > kept[count]:
                position = count
                while position > 0 and value > kept[position - 1]:
                    kept[position] = kept[position - 1]
                    position -= 1
                kept[position] = value
        if not kept[count - 1] > kept[count]:
            return False
    for row in range(block.shape[0]):
        edge = top[row, count - 1]
        for column in range(block.shape[1]):
            if block[row, column] >= edge:
                block[row, column] = np.inf
    return True


@njit(cache=True)
def copy_set_strongest(source, out, start, rows, count):
    """``out[:] = source`` (float ``[n]`` each), then :func:`set_strongest` of the block of ``rows``
    rows from flat index ``start`` to the end of ``out`` (C order); returns whether it set them (the
    copy is made either way). One call for protect_strongest's copy and rank."""
    out[:] = source
    return _set_strongest(out[start:].reshape(rows, (out.size - start) // rows), count)


@njit(cache=True)
def set_strongest_in_place(values, start, stop, rows, count):
    """:func:`set_strongest` of the block of ``rows`` rows ``values[start:stop]`` (C order), in
    place; returns whether it set them, and the flat indices (int64, ascending) of the entries it
    changed with their values before (an entry that was +inf already is not listed): one call."""
    block = values[start:stop]
    before = block.copy()
    if not _set_strongest(block.reshape(rows, (stop - start) // rows), count):
        return False, np.empty(0, np.int64), before[:0]
    changed = 0
    for index in range(block.size):
        changed += block[index] != before[index]  # no NaN in a set block: only +inf written
    indices, originals = np.empty(changed, np.int64), np.empty(changed, before.dtype)
    changed = 0
    for index in range(block.size):
        if block[index] != before[index]:
            indices[changed], originals[changed] = start + index, before[index]
            changed += 1
    return True, indices, originals


def set_strongest(block: np.ndarray, count: int) -> bool:
    """Set the ``count`` largest of each row of ``block`` (float ``[rows, columns]``, columns >
    count >= 1, written in place) to +inf when that set is unique in every row; returns whether
    it did (False: ties at a row's edge, or a NaN; ``block`` unchanged). O(rows x columns x count)
    at worst, one pass for a small count."""
    return bool(_set_strongest(block, count))


_SIGN_BITS = {4: np.uint32(0x7FFFFFFF), 8: np.uint64(0x7FFFFFFFFFFFFFFF)}


@njit(cache=True)
def _same_magnitudes_kernel(weights, values, magnitude):
    for start in range(0, weights.size, _EQUAL_BLOCK):
        difference = (weights[start] & magnitude) ^ values[start]
        for index in range(start, min(weights.size, start + _EQUAL_BLOCK)):
            difference |= (weights[index] & magnitude) ^ values[index]
        if difference != 0:
            return False
    return True


@njit(cache=True, parallel=True)
def _same_magnitudes_parallel(weights, values, magnitude):
    chunks = (weights.size + CHUNK - 1) // CHUNK
    same = np.empty(chunks, np.bool_)
    for chunk in prange(chunks):
        start = chunk * CHUNK
        same[chunk] = _same_magnitudes_kernel(weights[start:start + CHUNK], values[start:start + CHUNK], magnitude)
    return same.all()


def same_magnitudes(weights: np.ndarray, values: np.ndarray) -> bool:
    """Whether ``values`` hold ``np.abs(weights)`` bit for bit (float32 or float64, contiguous
    ``[m]``): one read-only pass, in blocks of ``_EQUAL_BLOCK`` entries (in parallel chunks
    above 262,144 entries, with threads to run them)."""
    if weights.shape != values.shape or weights.dtype != values.dtype:
        return False
    width = {4: np.uint32, 8: np.uint64}[weights.dtype.itemsize]
    kernel = _same_magnitudes_parallel if parallel_pass(weights.size) and get_num_threads() > 1 \
        else _same_magnitudes_kernel
    return bool(kernel(weights.view(width), values.view(width), _SIGN_BITS[weights.dtype.itemsize]))


@njit(cache=True, parallel=True)
def _magnitudes_parallel(weights, out, magnitude):
    for chunk in prange((weights.size + CHUNK - 1) // CHUNK):
        start = chunk * CHUNK
        stop = min(weights.size, start + CHUNK)
        chunk_weights, chunk_out = weights[start:stop], out[start:stop]
        for index in range(chunk_weights.size):
            chunk_out[index] = chunk_weights[index] & magnitude


def magnitudes_into(weights: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = np.abs(weights)``, bit for bit (the sign bit cleared; float32 or float64,
    contiguous ``[m]``): numpy's, or parallel chunks above 262,144 entries with threads to run
    them (when ``out`` is of the weights' dtype; else numpy's cast)."""
    if parallel_pass(weights.size) and get_num_threads() > 1 and out.dtype == weights.dtype:
        width = {4: np.uint32, 8: np.uint64}[weights.dtype.itemsize]
        _magnitudes_parallel(weights.view(width), out.view(width), _SIGN_BITS[weights.dtype.itemsize])
    else:
        np.abs(weights, out=out)


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


@njit(cache=True, inline="always")
def _left(cost, pruned):
    return cost * np.float64(1 - pruned)  # bytes, not bools: bool arithmetic would branch


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
