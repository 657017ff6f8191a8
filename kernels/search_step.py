"""The minimax search step's arithmetic (the s step and the dual ascent), and the whole step in
one call: the least-s sets located, the s step, the sets after it, their sums and the dual steps.

The arithmetic is that of ``solvers.Minimax`` written in IEEE float64 operations in the order of
its Python floats (no fastmath here: bit for bit with them). Per group g of ``size`` weights,
``hard`` of them hard-pruned, with ``(in_play, mean_cost, floor, span, limit)`` its scales
(``solvers.Minimax._scales`` / ``_span`` / ``_step_limit``), ``u`` the squared |w| and ``c`` the
cost of the weight that follows its least-s set (``following``, when there is one)::

    mean_squared = squares[g] / in_play + TINY
    gradient     = clip(y[g] * u / mean_squared - z * c / mean_cost, -limit, limit)
    sigma[g]     = clip(sigma[g] - lr_s * span * gradient, floor, 1)
    size of the set = max(ceil(sigma[g] * size - 1e-9), hard)
    y[g]         = clip(y[g] + lr_y * (first_squares[g] / (squares[g] + TINY) - tolerance), 0, DUAL_LIMIT)
    excess       = ((fixed + total - sum(first_costs)) / reference - aim) / distance   (>= 0 when grow_only)
    z            = clip(z + lr_z * excess, 0, DUAL_LIMIT)

where ``clip`` is ``np.clip`` of one value (a bound replaces only a value strictly beyond it) and
the sums over groups are ``np.sum``'s (numpy's pairwise order). :func:`search_step` runs the
survey and sums passes of kernels/selection.py (the same loops over the same chunks, serial or in
parallel chunks, so every sum keeps their chunked order, bit for bit) with windows of its own
(kernels/windows.py), and the arithmetic above, in one call: the Python of ``least_sets.LeastSets``'
windows and a call per pass (30-130 calls a step) cost more than the passes below 65,536 weights,
and a quarter of mnist_mlp's step (bench/README.md, "eleventh session").
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .selection import _add_chunks, _gather_windows, _sums_parallel, _sums_serial, _survey_parallel, _survey_serial
from .windows import ABOVE, BELOW, COUNTED, extrapolate, from_histogram, in_window, margin, next_window

TINY = 1e-30
DUAL_LIMIT = 1e8  # duals beyond this only saturate the shrink factor; clipping keeps every number finite
GUESSES = 2  # windows extrapolated towards a set that left its window before a histogram is taken

# the float64 ``parameters`` of :func:`dual_step` and :func:`search_step`, by position
LR_S, LR_Y, LR_Z, TOLERANCE, GROW_ONLY, TOTAL_COST, HARD_COST, FIXED, REFERENCE, AIM, DISTANCE = range(11)
PARAMETERS = 11


@njit(cache=True)
def clip(value, low, high):
    """``np.clip`` of one float, bit for bit: a bound replaces only a value strictly beyond it
    (ties keep the value's sign of zero; NaN stays NaN), as ``min(max(value, low), high)`` of
    Python floats."""
    value = low if low > value else value
    return high if high < value else value


@njit(cache=True)
def set_sizes(sigma, group_sizes, hard_counts, out):
    """Per group, the size of its least-s set (int64 ``out[G]``) for the fractions ``sigma``
    (float64 ``[G]``) of ``group_sizes`` weights, ``hard_counts`` of them hard-pruned (int64 ``[G]``):
    ``max(ceil(sigma * size - 1e-9), hard)`` (the hard-pruned are exactly zero: always among the least)."""
    for g in range(sigma.size):
        out[g] = max(np.int64(math.ceil(sigma[g] * group_sizes[g] - 1e-9)), hard_counts[g])


@njit(cache=True)
def s_step(sigma, y, z, squares, followings, values, costs, scales, lr_s, group_sizes, hard_counts, sizes):
    """The step on s of every group (``sigma``, float64 ``[G]``, in place) and the sizes of the sets
    after it (int64 ``sizes[G]``): module docstring. ``y``: float64 ``[G]``; ``z``: the resource
    dual; ``squares``: each group's sum of squared |w| (float64 ``[G]``); ``followings``: the flat
    index of the weight following each group's set (int64 ``[G]``, -1: none, s is kept);
    ``values``: |w| (float32/64 ``[n]``); ``costs``: float64 ``[n]``; ``scales``: float64 ``[G, 5]``,
    per group ``(in_play, mean_cost, floor, span, limit)``: the gradient is clipped to ``[-limit, limit]``."""
    for g in range(sigma.size):
        following = followings[g]
        if following >= 0:
            mean_squared = squares[g] / scales[g, 0] + TINY
            value = np.float64(values[following])
            gradient = y[g] * (value * value) / mean_squared - z * costs[following] / scales[g, 1]
            limit = scales[g, 4]  # +inf: unclipped (no comparison holds, NaN included)
            if gradient > limit:
                gradient = limit
            elif gradient < -limit:
                gradient = -limit
            sigma[g] = clip(sigma[g] - lr_s * scales[g, 3] * gradient, scales[g, 2], 1.0)
    set_sizes(sigma, group_sizes, hard_counts, sizes)


@njit(cache=True)
def _block_sum(values, start, count):
    # numpy's pairwise sum of float64 (numpy/_core/src/umath/loops_utils.h.src) of up to 128
    # values: in order from -0.0 below 8, else 8 accumulators added as a tree, then the rest in order
    if count < 8:
        total = -0.0
        for index in range(start, start + count):
            total += values[index]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    whole = count - count % 8
    for index in range(start + 8, start + whole, 8):
        r0 += values[index]
        r1 += values[index + 1]
        r2 += values[index + 2]
        r3 += values[index + 3]
        r4 += values[index + 4]
        r5 += values[index + 5]
        r6 += values[index + 6]
        r7 += values[index + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for index in range(start + whole, start + count):
        total += values[index]
    return total


@njit(cache=True)
def _pairwise(values):
    # numpy's pairwise sum: above 128 values, the sum of the halves (split at a multiple of 8),
    # evaluated with a stack of its own (a recursive function does not load from Numba's cache)
    starts, counts, combine = np.empty(192, np.int64), np.empty(192, np.int64), np.empty(192, np.bool_)
    partial = np.empty(64)
    tasks, done = 1, 0
    starts[0], counts[0], combine[0] = 0, values.size, False
    while tasks > 0:
        tasks -= 1
        start, count = starts[tasks], counts[tasks]
        if combine[tasks]:  # both halves summed: the left below the right
            done -= 1
            partial[done - 1] = partial[done - 1] + partial[done]
        elif count <= 128:
            partial[done] = _block_sum(values, start, count)
            done += 1
        else:
            half = count // 2
            half -= half % 8
            combine[tasks] = True  # after the halves, the left first
            starts[tasks + 1], counts[tasks + 1], combine[tasks + 1] = start + half, count - half, False
            starts[tasks + 2], counts[tasks + 2], combine[tasks + 2] = start, half, False
            tasks += 3
    return partial[0]


@njit(cache=True)
def array_sum(values):
    """``np.sum`` of float64 ``values`` (1-D, contiguous), bit for bit: 0.0 plus numpy's pairwise sum."""
    return 0.0 + _pairwise(values)


@njit(cache=True)
def dual_step(y, z, squares, first_squares, first_costs, second_costs, parameters):
    """The dual ascent on every ``y`` (float64 ``[G]``, in place) and on ``z`` after an s step, from
    the sets before it: their squared sums ``first_squares`` (of ``squares``, the groups' own) and
    costs ``first_costs``, and the costs of the sets after it that are not hard-pruned,
    ``second_costs`` (float64 ``[G]`` each); ``parameters``: float64 ``[PARAMETERS]`` (module
    constants). Returns ``(z, the resource after pruning the sets after the s step, as a fraction
    of R0)``."""
    tolerance, lr_y = parameters[TOLERANCE], parameters[LR_Y]
    for g in range(y.size):
        y[g] = clip(y[g] + lr_y * (first_squares[g] / (squares[g] + TINY) - tolerance), 0.0, DUAL_LIMIT)
    total, fixed, reference = parameters[TOTAL_COST], parameters[FIXED], parameters[REFERENCE]
    kept_before = total - array_sum(first_costs)
    kept_after = total - parameters[HARD_COST] - array_sum(second_costs)
    excess = ((fixed + kept_before) / reference - parameters[AIM]) / parameters[DISTANCE]
    if parameters[GROW_ONLY] != 0.0:
        excess = excess if excess > 0.0 else 0.0  # Python's max(0.0, excess)
    z = clip(z + parameters[LR_Z] * excess, 0.0, DUAL_LIMIT)
    return z, (fixed + kept_after) / reference


# -- the whole step in one call -----------------------------------------------------------
@njit(cache=True)
def _survey(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, parallel, replaced,
            originals, squares, counts, windows, tallies, first, stop):
    # kernels.selection.survey of the groups at positions first:stop (their chunks), in parallel
    # chunks or serially: the same loops, so the same sums; a chunk that holds a ``replaced``
    # entry (flat indices ascending, ``originals`` their values) summed again from a copy holding
    # the originals, by the same serial loop (``selection._square_originals``). Writes
    # ``squares``, ``counts`` and ``windows`` of those groups; their counted windows (``tallies``:
    # kernels.windows.counted) are none
    tallies[first:stop, 0] = -1
    part = slice(firsts[first], firsts[stop])
    chunks = firsts[stop] - firsts[first]
    chunk_squares, chunk_counts = np.empty(chunks), np.empty((chunks, 2), np.int64)
    origins = np.empty(chunks, np.int64)
    if parallel:
        _survey_parallel(values, keys, starts[part], stops[part], owners[part], lo, hi, slots[part], members,
                         member_keys, chunk_squares, chunk_counts, origins)
    else:
        _survey_serial(values, keys, starts[part], stops[part], owners[part], lo, hi, slots[part], members,
                       member_keys, chunk_squares, chunk_counts, origins)
    if replaced.size > 0:
        zero, none = np.zeros(1, np.int64), np.empty(1, np.int64)
        for chunk in range(chunks):
            start, end = starts[firsts[first] + chunk], stops[firsts[first] + chunk]
            held = slice(np.searchsorted(replaced, start), np.searchsorted(replaced, end))
            if held.stop > held.start:
                copy = values[start:end].copy()
                copy[replaced[held] - start] = originals[held]
                total, one_count, one_origin = np.empty(1), np.empty((1, 2), np.int64), np.empty(1, np.int64)
                _survey_serial(copy, keys[start:end].copy(), zero, np.full(1, end - start, np.int64), zero, zero,
                               zero, zero, none, np.empty(1, keys.dtype), total, one_count, one_origin)
                chunk_squares[chunk] = total[0]
    _gather_windows(members, member_keys, origins, chunk_counts, chunk_squares, firsts[first:stop + 1] - firsts[first],
                    squares[first:stop], counts[first:stop], windows[first:stop])


@njit(cache=True)
def _locate(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, moves, reach, missed,
            infinite, parallel, replaced, originals, ks, found, squares, counts, windows, tallies, surveyed, previous):
    # the least-ks[p] set of every group (by position) into found[p], from the last survey
    # (``squares``, ``counts``, ``windows``) when ``surveyed``, else from a new one (a group
    # without a window first gets one from its histogram). A group whose set its window cannot
    # tell is surveyed again, with its window extrapolated towards the set (up to GUESSES times),
    # then one from its histogram, then (not reached) the window of all its finite keys. With
    # ``previous`` (the sizes of the sets before, by position; empty: none), each group's window
    # is then moved for the next survey (kernels/windows.py)
    groups = ks.size
    if not surveyed:
        for p in range(groups):
            if hi[p] < 0:
                from_histogram(p, ks[p], margin(starts, stops, firsts, p) + moves[p], starts[firsts[p]],
                               stops[firsts[p + 1] - 1], keys, lo, hi, infinite)
        _survey(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, parallel, replaced,
                originals, squares, counts, windows, tallies, 0, groups)
    for p in range(groups):
        k, guesses, histogram = ks[p], 0, False
        while True:
            hit, offsets, prefix, shift = in_window(p, k, lo, hi, counts, windows, members, member_keys, infinite,
                                                    found, tallies)
            if hit:
                break
            if guesses == 0 and not histogram:
                missed[p] |= BELOW if k < counts[p, 0] else ABOVE
            group_margin = margin(starts, stops, firsts, p)
            if guesses < GUESSES and extrapolate(p, k, group_margin + moves[p], lo, hi, counts, windows, members,
                                                 member_keys, infinite, tallies):
                guesses += 1
            elif not histogram:
                from_histogram(p, k, group_margin + moves[p], starts[firsts[p]], stops[firsts[p + 1] - 1], keys, lo,
                               hi, infinite)
                histogram = True
            else:
                lo[p], hi[p] = 0, infinite
            _survey(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, parallel,
                    replaced, originals, squares, counts, windows, tallies, p, p + 1)
        if previous.size > 0:
            next_window(p, found[p, 2], previous[p], margin(starts, stops, firsts, p), lo, hi, offsets, counts[p, 0],
                        counts[p, 1], prefix, shift, infinite, moves, reach, missed)


@njit(cache=True)
def least_sets(values, keys, starts, stops, owners, firsts, slots, position, members, member_keys, lo, hi, moves,
               reach, missed, infinite, parallel, replaced, originals, sizes, sets, squares):
    """Each group's least-``sizes[g]`` set into ``sets`` (int64 ``[G, 3]``: ``(bound, following,
    size)``, kernels/selection.py) and its sum of squared values into ``squares`` (float64 ``[G]``),
    by the caller's groups, in one call: the arguments as :func:`search_step`'s; the windows are
    then centred on the sets found."""
    groups = sizes.size
    by_position = np.empty(groups, np.int64)
    for g in range(groups):
        by_position[position[g]] = sizes[g]
    found = np.empty((groups, 3), np.int64)
    squares_by_position = np.empty(groups)
    counts, windows = np.empty((groups, 2), np.int64), np.empty(groups, np.int64)
    _locate(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, moves, reach, missed,
            infinite, parallel, replaced, originals, by_position, found, squares_by_position, counts, windows,
            np.empty((groups, COUNTED), np.int64), False, by_position)
    for g in range(groups):
        p = position[g]
        squares[g] = squares_by_position[p]
        sets[g, 0], sets[g, 1], sets[g, 2] = found[p, 0], found[p, 1], found[p, 2]


@njit(cache=True)
def search_step(values, keys, starts, stops, owners, firsts, slots, position, members, member_keys, lo, hi, moves,
                reach, missed, infinite, parallel, replaced, originals, costs, cost_view, hard, sigma, y, z, scales,
                group_sizes, hard_counts, parameters, sets, squares):
    """One whole minimax search step: the least-s sets for ``sigma`` (before), the s step
    (:func:`s_step`: ``sigma`` in place), the sets for it (after), their sums
    (kernels.selection.set_sums' loops) and the dual steps (:func:`dual_step`: ``y`` in place).

    Groups and chunks as ``least_sets.LeastSets`` holds them (by position in flat order:
    ``starts``, ``stops``, ``owners``, ``firsts``, ``slots``, ``members``, ``member_keys``), the
    windows' arrays ``lo``, ``hi``, ``moves``, ``reach``, ``missed`` (in place; kernels/windows.py);
    the caller's group g is at ``position[g]``. ``values``: |w| (float32/64 ``[n]``), ``keys``:
    key_bits of their ranks, ``infinite``: the key of +inf; ``parallel``: the passes in parallel
    chunks (with threads to run them); ``replaced``, ``originals``: flat indices (int64,
    ascending) where ``values`` hold a rank in place of the value, and those values (empty:
    none); ``costs``: float64 ``[n]``; ``cost_view``, ``hard``: as ``set_sums`` takes them;
    ``sigma``, ``y``, ``z``, ``scales``, ``group_sizes``, ``hard_counts``, ``parameters``: as
    :func:`s_step` and :func:`dual_step`, by the caller's groups. Writes ``sets`` (int64 ``[G,
    3]``): per group ``(bound, following, size)`` of its set after the s step
    (kernels/selection.py), and ``squares`` (float64 ``[G]``): each group's sum of squared values.
    Returns ``(z, the resource after pruning the sets as a fraction of R0)`` (the outputs are the
    caller's arrays: a returned array would cost its boxing).

    Every pass is kernels/selection.py's own loop over the same chunks, so every sum is bit for
    bit that of ``least_sets.LeastSets``' passes whatever the windows and the threads."""
    groups = sigma.size
    by_position = np.empty(groups, np.int64)
    sizes = np.empty(groups, np.int64)
    set_sizes(sigma, group_sizes, hard_counts, sizes)
    for g in range(groups):
        by_position[position[g]] = sizes[g]
    before = np.empty((groups, 3), np.int64)
    squares_by_position = np.empty(groups)
    counts, windows = np.empty((groups, 2), np.int64), np.empty(groups, np.int64)
    tallies = np.empty((groups, COUNTED), np.int64)  # the windows' counts, kept from the sets before to those after
    _locate(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, moves, reach, missed,
            infinite, parallel, replaced, originals, by_position, before, squares_by_position, counts, windows, tallies,
            False, np.empty(0, np.int64))
    followings = np.empty(groups, np.int64)
    for g in range(groups):
        squares[g] = squares_by_position[position[g]]
        followings[g] = before[position[g], 1]
    s_step(sigma, y, z, squares, followings, values, costs, scales, parameters[LR_S], group_sizes, hard_counts,
           sizes)
    previous = before[:, 2].copy()
    for g in range(groups):
        by_position[position[g]] = sizes[g]
    after = np.empty((groups, 3), np.int64)
    _locate(values, keys, starts, stops, owners, firsts, slots, members, member_keys, lo, hi, moves, reach, missed,
            infinite, parallel, replaced, originals, by_position, after, squares_by_position, counts, windows, tallies,
            True, previous)
    # the squares and cost of the sets before the s step (for the duals), the cost after it
    pairs = np.empty((groups, 4), np.int64)
    for p in range(groups):
        pairs[p, 0], pairs[p, 1], pairs[p, 2], pairs[p, 3] = before[p, 0], before[p, 1], after[p, 0], after[p, 1]
    chunk_sums = np.zeros((starts.size, 4))
    if parallel:
        _sums_parallel(values, keys, cost_view, hard, starts, stops, owners, pairs, chunk_sums)
    else:
        _sums_serial(values, keys, cost_view, hard, starts, stops, owners, pairs, chunk_sums)
    totals = np.empty((groups, 4))
    _add_chunks(chunk_sums, firsts, totals)
    first_squares, first_costs, second_costs = np.empty(groups), np.empty(groups), np.empty(groups)
    for g in range(groups):
        p = position[g]
        first_squares[g] = totals[p, 0]
        if cost_view.size == 1:  # one cost for every weight: counts times it (exact for an integer cost)
            first_costs[g] = cost_view[0] * before[p, 2]
            second_costs[g] = cost_view[0] * (after[p, 2] - totals[p, 1])
        else:
            first_costs[g], second_costs[g] = totals[p, 2], totals[p, 3]
    for g in range(groups):
        p = position[g]
        sets[g, 0], sets[g, 1], sets[g, 2] = after[p, 0], after[p, 1], after[p, 2]
    return dual_step(y, z, squares, first_squares, first_costs, second_costs, parameters)
