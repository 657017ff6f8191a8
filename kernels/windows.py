"""Where each group's window of keys lies, for the one-call search step (kernels/search_step.py):
the window a set is read from, and where a window goes next. The rules of ``least_sets.LeastSets``
(see its docstring), as jitted functions over the windows' arrays.

Per group (by position in flat order): the window ``[lo, hi)`` of keys (none yet: ``hi < 0``),
``moves`` (its boundary's last move, in ranks, at most two margins), ``reach`` (how far the next
window extends along that move, in margins) and ``missed`` (the sides, ``BELOW | ABOVE``, a set
left the window on since the window was last moved). After a survey, ``counts[p] = (below,
inside)``: the keys below the window and in it, and ``windows[p]``: where its members start in
``members`` / ``member_keys`` (kernels.selection.survey). A window decides only the time taken,
never a set: a set is read from it only when its boundary lies inside (or when every finite key
is below or inside it).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .selection import DIGIT, bucket_of, bucket_start, counted_key_of_rank, key_of_rank

MARGIN = 0.025  # of a group's weights: the ranks a window spans on each side of its boundary
MIN_MARGIN = 16
BELOW, ABOVE = 1, 2  # the sides of a window a set can leave it on
REACH = 2.0, 16.0  # the most a window extends along the boundary's last move, in margins: after a hit, after misses
COUNTED = 2 + (1 << DIGIT) + 1  # a group's row of the counts kept by :func:`counted`


@njit(cache=True)
def margin(starts, stops, firsts, p):
    """The ranks a window spans on each side of its boundary in the group at position ``p`` (its
    chunks ``firsts[p]:firsts[p + 1]`` of ``starts``/``stops``)."""
    return max(MIN_MARGIN, np.int64(MARGIN * (stops[firsts[p + 1] - 1] - starts[firsts[p]])))


@njit(cache=True)
def shifted(key, by, low, high):
    """``key`` moved by ``by`` keys (a float, a guess from a density) within ``[low, high]``: in
    float64, as the distance of float64 keys times a count of ranks can pass 2**63 (Python's ints
    in ``LeastSets`` cannot overflow; an int64 here would)."""
    moved = np.float64(key) + by
    if moved >= np.float64(high):
        return high
    if moved <= np.float64(low):
        return low
    return min(high, max(low, np.int64(moved)))


@njit(cache=True)
def counted(p, lo, hi, counts, windows, members, member_keys, rank, tallies):
    """The window of the group at position ``p`` counted by its top digit, and the key of ``rank``
    in it (kernels.selection.counted_key_of_rank: ``(offsets, shift, width, key, index)``). The
    counts are kept in ``tallies[p]`` (int64 ``[G, COUNTED]``: shift, width, then the offsets; a
    shift < 0: none, as after a survey of the group) for the next rank of the same survey."""
    start, inside = windows[p], counts[p, 1]
    member_keys, members = member_keys[start:start + inside], members[start:start + inside]
    if tallies[p, 0] >= 0:
        shift, width = tallies[p, 0], tallies[p, 1]
        offsets = tallies[p, 2:2 + (1 << width) + 1]
        if rank < 0:
            return offsets, shift, width, np.int64(-1), np.int64(-1)
        key, index = key_of_rank(offsets, member_keys, members, rank, shift, width)
        return offsets, shift, width, key, index
    offsets, shift, width, key, index = counted_key_of_rank(member_keys, members, lo[p], hi[p], rank)
    tallies[p, 0], tallies[p, 1] = shift, width
    tallies[p, 2:2 + offsets.size] = offsets
    return tallies[p, 2:2 + offsets.size], shift, width, key, index


@njit(cache=True)
def in_window(p, k, lo, hi, counts, windows, members, member_keys, infinite, found, tallies):
    """The least-k set of the group at position ``p`` from its window, as ``found[p] = (bound,
    following, size)``; False when the window cannot tell (then ``found`` is untouched). Also the
    window's top-digit ``offsets`` and ``(prefix, shift)`` (kernels.selection.bucket_start; offsets
    of one entry: none, an empty window), for :func:`next_window`."""
    below, inside = counts[p, 0], counts[p, 1]
    if below <= k < below + inside:
        offsets, shift, width, key, index = counted(p, lo, hi, counts, windows, members, member_keys, k - below, tallies)
        found[p, 0], found[p, 1], found[p, 2] = key, index, k
    elif k >= below + inside and hi[p] == infinite:  # every finite key is below the window or in it
        found[p, 0], found[p, 1], found[p, 2] = infinite, -1, below + inside
        if inside == 0:
            return True, np.zeros(1, np.int64), np.int64(0), np.int64(0)
        offsets, shift, width, key, index = counted(p, lo, hi, counts, windows, members, member_keys, -1, tallies)
    else:
        return False, np.zeros(1, np.int64), np.int64(0), np.int64(0)
    top = shift + width
    return True, offsets, (lo[p] >> top) << top, shift


@njit(cache=True)
def next_window(p, k, previous, margin, lo, hi, offsets, below, inside, prefix, shift, infinite, moves, reach, missed):
    """Move the window of the group at position ``p``, after its boundary moved from rank
    ``previous`` to ``k``, to the ranks from ``k`` to ``k`` plus that move again (s moves in runs),
    widened by the margin (twice on a side a set left it on), to the edges of the window's
    top-digit buckets (``offsets``, ``prefix``, ``shift`` of :func:`in_window`; ``below`` keys
    below it, ``inside`` in it), past its members by the density of keys they held (a guess).
    The move counts for at most two margins while the sets stay in their windows, for twice as
    many after each step in which a set left it (up to ``REACH[1]``), and 1.5 x fewer after each
    step without: ``least_sets.LeastSets.recentre``."""
    reach[p] = min(REACH[1], 2.0 * reach[p]) if missed[p] != 0 else max(REACH[0], reach[p] / 1.5)
    limit = np.int64(reach[p] * margin)
    move = max(-limit, min(limit, k - previous))
    moves[p] = min(abs(move), 2 * margin)  # a guess's margin (wider ones cost more than they hold)
    lower = min(k, k + move) - margin * (1 + np.int64((missed[p] & BELOW) != 0))
    upper = max(k, k + move) + margin * (1 + np.int64((missed[p] & ABOVE) != 0))
    missed[p] = 0
    old_lo, old_hi = lo[p], hi[p]
    density = (old_hi - old_lo) / max(1, inside)  # past the members: a guess by their density
    counted = offsets.size > 1
    if counted and below <= lower < below + inside:
        lo[p] = bucket_start(offsets, lower - below, shift, prefix)
        if lo[p] == 0 and below <= k < below + inside and bucket_start(offsets, k - below, shift, prefix) > 0:
            lo[p] = 1  # leave out the zeros (the weights pruned for good): the boundary is above them
    elif lower < below and old_lo > 1 and inside > 0:  # (below lo = 1 are only zeros)
        lo[p] = shifted(old_lo, -(below - lower) * density - 1, 1, old_lo)
    if counted and below <= upper < below + inside:
        hi[p] = min(bucket_start(offsets, upper - below, shift, prefix) + (1 << shift), infinite)
    elif upper >= below + inside and inside > 0:
        hi[p] = shifted(old_hi, (upper - below - inside) * density + 1, old_hi, infinite)


@njit(cache=True)
def extrapolate(p, k, margin, lo, hi, counts, windows, members, member_keys, infinite, tallies):
    """Move the window of the group at position ``p`` towards rank ``k`` (outside it), by the
    density of keys the window held (ranks per key), twice the span that density gives to reach
    ``k`` past ``margin``: a guess, checked by the next survey. False when there is nothing to go
    by (an empty window, or a boundary among the zeros below it): ``LeastSets._extrapolate``."""
    below, inside = counts[p, 0], counts[p, 1]
    old_lo, old_hi = lo[p], hi[p]
    if inside == 0:
        return False
    keys_per_rank = (old_hi - old_lo) / inside
    if k >= below + inside:  # above the window (whose hi is below the key of +inf: see in_window)
        lower = k - margin - below
        if lower >= inside:
            lo[p] = old_hi
        elif lower >= 0:
            offsets, shift, width, _, _ = counted(p, lo, hi, counts, windows, members, member_keys, -1, tallies)
            lo[p] = bucket_start(offsets, lower, shift, (old_lo >> (shift + width)) << (shift + width))
        hi[p] = shifted(old_hi, 2 * (k + margin - below - inside) * keys_per_rank + 1, old_hi, infinite)
        return True
    if old_lo <= 1:  # below lo are only zeros (the weights pruned for good): the histogram finds such a boundary
        return False
    upper = k + margin - below
    if upper < 0:
        hi[p] = old_lo
    elif upper < inside:
        offsets, shift, width, _, _ = counted(p, lo, hi, counts, windows, members, member_keys, -1, tallies)
        hi[p] = bucket_start(offsets, upper, shift, (old_lo >> (shift + width)) << (shift + width)) + (1 << shift)
    lo[p] = shifted(old_lo, -2 * (below - k + margin) * keys_per_rank - 1, 1, old_lo)
    return True


@njit(cache=True)
def _top_shift(infinite, size):
    # kernels.selection.top_shift, for keys whose +inf is ``infinite`` (int32 or int64 keys)
    bits, exponent = (32, 8) if infinite < (np.int64(1) << 32) else (64, 11)
    length = 0
    while (size >> length) != 0:
        length += 1
    return bits - 1 - min(16, max(exponent, length - 3))


@njit(cache=True)
def from_histogram(p, k, margin, start, stop, keys, lo, hi, infinite):
    """A window around rank ``k`` (``k -+ margin``) of the keys ``keys[start:stop]`` of the group at
    position ``p``, from their histogram by the top bits (kernels.selection.histogram; one serial
    pass): it holds the set of ``k``. ``LeastSets._window_from_histogram``."""
    shift = _top_shift(infinite, stop - start)
    counts = np.zeros((infinite >> shift) + 1, np.int64)
    for index in range(start, stop):
        counts[min(np.int64(keys[index]) >> shift, infinite >> shift)] += 1  # NaN's keys with +inf's
    finite = stop - start - counts[infinite >> shift]
    if finite == 0:
        lo[p], hi[p] = 0, infinite
        return
    lo[p] = bucket_of(counts, max(0, min(k, finite - 1) - margin))[0] << shift
    if bucket_of(counts, min(k, finite - 1))[0] > 0:
        lo[p] = max(lo[p], 1)  # leave out the zeros (the weights pruned for good) unless the boundary is one
    above = k + margin
    hi[p] = infinite if above >= finite else min(infinite, (bucket_of(counts, above)[0] + 1) << shift)
