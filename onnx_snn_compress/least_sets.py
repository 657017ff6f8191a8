"""The least-s sets of the solver's groups of weights, located by one survey pass a step.

Each group keeps a *window* of keys around the boundary of its last set (the keys of the ranks
``k -+ margin``); a step's survey (kernels/selection.py) counts the keys below the window and
gathers those inside, so any set whose boundary stays inside is found from the window alone.
The s step moves the boundary little (in mnist_mlp's searches the median |ds| of a step is
0.3 % of a group, and 77 % of the steps move it by at most 2.5 %), and so do the weights
between two steps. When the boundary has left the window, the group's keys are counted by
their top bits (:func:`kernels.selection.histogram`), a window around it is taken from that
histogram and the group is surveyed again: the sets are exact either way; the windows decide
only the time taken, never a result.
"""

from __future__ import annotations

import numpy as np

from .kernels.selection import (CHUNK, histogram, infinity_key, key_of_rank, set_sums, survey, top_shift,
                                _bucket_of)

MARGIN = 0.025  # of a group's weights: the ranks a window spans on each side of its boundary
MIN_MARGIN = 16


class LeastSets:
    """The least-k sets of ``groups`` (disjoint flat ranges of ``size`` weights) for any k,
    after :meth:`survey` of the keys; windows kept from one survey to the next."""

    def __init__(self, groups: list[slice], size: int):
        self.groups = groups
        self._order = sorted(range(len(groups)), key=lambda g: groups[g].start)  # chunks in flat order
        starts, stops, firsts = [], [], [0]
        for g in self._order:
            # an empty group gets one empty chunk
            for start in range(groups[g].start, max(groups[g].stop, groups[g].start + 1), CHUNK):
                starts.append(start)
                stops.append(min(groups[g].stop, start + CHUNK))
            firsts.append(len(starts))
        self._starts, self._stops = np.array(starts, np.int64), np.array(stops, np.int64)
        self._firsts = np.array(firsts, np.int64)  # the chunks of group self._order[p]: firsts[p]:firsts[p + 1]
        self._owners = np.repeat(np.array(self._order, np.int64), np.diff(self._firsts))
        self._slots = self._starts + np.arange(len(starts))  # one spare cell per chunk
        self._members = np.empty(size + len(starts) + 1, np.int64)
        self._member_keys = None  # the members' keys (of the keys' dtype)
        self.lo = np.zeros(len(groups), np.int64)  # the windows [lo, hi); none yet (hi < 0)
        self.hi = np.full(len(groups), -1, np.int64)
        self.squares = np.zeros(len(groups))  # each group's sum of squared values
        self._below = np.zeros(len(groups), np.int64)  # keys below lo
        self._windows = [(self._members[:0], self._members[:0]) for _ in groups]  # (members inside, their keys)
        self.values = self.keys = None

    def _margin(self, g: int) -> int:
        return max(MIN_MARGIN, int(MARGIN * (self.groups[g].stop - self.groups[g].start)))

    def survey(self, values: np.ndarray, keys: np.ndarray, ks: list[int]) -> np.ndarray:
        """One pass over every group's ``values`` (float32/64 ``[n]``) and ``keys``
        (:func:`kernels.selection.key_bits` of their ranks); ``ks``: the set sizes expected (a
        group without a window gets one around them). Returns each group's sum of squared values."""
        self.values, self.keys = values, keys
        if self._member_keys is None or self._member_keys.dtype != keys.dtype:
            self._member_keys = np.empty(self._members.size, keys.dtype)
        for g, k in enumerate(ks):
            if self.hi[g] < 0:
                self._window_from_histogram(g, k)
        self._survey(range(len(self._order)))
        return self.squares.copy()

    def _survey(self, positions) -> None:
        """Survey the groups ``self._order[p]`` for ``p`` in ``positions`` (ascending)."""
        if len(positions) == len(self._order):
            chunks, firsts = slice(None), self._firsts
        else:
            chunks = np.concatenate([np.arange(self._firsts[p], self._firsts[p + 1]) for p in positions])
            firsts = np.concatenate([[0], np.cumsum([self._firsts[p + 1] - self._firsts[p] for p in positions])])
        owners = self._owners[chunks]
        squares, counts, windows = survey(self.values, self.keys, self._starts[chunks], self._stops[chunks],
                                          self.lo[owners], self.hi[owners], self._slots[chunks],
                                          firsts.astype(np.int64), self._members, self._member_keys)
        for position, p in enumerate(positions):
            g = self._order[p]
            self.squares[g] = squares[position]
            self._below[g] = counts[position, 0]
            window = slice(windows[position], windows[position] + counts[position, 1])
            self._windows[g] = self._members[window], self._member_keys[window]

    def _window_from_histogram(self, g: int, k: int) -> None:
        """A window around rank ``k`` (and ``k -+ margin``) of the group's keys, from their histogram."""
        group = self.groups[g]
        size = group.stop - group.start
        infinite = infinity_key(self.keys)
        shift = top_shift(self.keys, size)
        counts = histogram(self.keys, group.start, group.stop, shift)
        finite = size - int(np.sum(counts[infinite >> shift:]))
        margin = self._margin(g)
        if finite == 0:
            self.lo[g], self.hi[g] = 0, infinite
            return
        self.lo[g] = int(_bucket_of(counts, max(0, min(k, finite - 1) - margin))[0]) << shift
        above = k + margin
        self.hi[g] = infinite if above >= finite else min(infinite, (int(_bucket_of(counts, above)[0]) + 1) << shift)

    def least(self, g: int, k: int) -> tuple[int, int, int]:
        """``(bound, following, size)`` of the least-``k`` set of group ``g`` of the surveyed keys (ties
        in index order; when ``k`` reaches the finite keys, all of them: ``(key of +inf, -1, their count)``)."""
        found = self._in_window(g, k)
        if found is None:
            self._window_from_histogram(g, k)
            self._survey([self._order.index(g)])
            found = self._in_window(g, k)
        return found

    def _in_window(self, g: int, k: int):
        below, (members, member_keys) = int(self._below[g]), self._windows[g]
        if self.hi[g] == infinity_key(self.keys) and k >= below + members.size:  # every finite key is below or in
            return infinity_key(self.keys), -1, below + members.size
        if below <= k < below + members.size:
            bound, following = key_of_rank(member_keys, members, k - below)
            return bound, following, k
        return None

    def recentre(self, g: int, k: int) -> None:
        """Move group ``g``'s window to the ranks ``k -+ margin`` of the surveyed keys, as far as its
        members reach (else its edge stays): the next survey's sets are expected near ``k``."""
        below, (members, member_keys) = int(self._below[g]), self._windows[g]
        margin = self._margin(g)
        if below <= k - margin < below + members.size:
            self.lo[g] = key_of_rank(member_keys, members, k - margin - below)[0]
        if below <= k + margin < below + members.size:
            self.hi[g] = key_of_rank(member_keys, members, k + margin - below)[0] + 1

    def sums(self, costs: np.ndarray, hard: np.ndarray, first: list, second: list) -> np.ndarray:
        """Per group, float64 ``[G, 3]``: the squares and the cost of its set ``first[g]``, and the cost
        of its set ``second[g]``'s weights that are not hard-pruned (sets as :meth:`least` gives them)
        of the surveyed values and keys. ``costs``: float64 ``[n]``, or ``[1]``: the one cost of every
        weight (then counts times it: exact for an integer cost); ``hard``: uint8 ``[n]``, or ``[1]``
        zero when none is hard-pruned (kernels.selection.set_sums)."""
        sets = np.array([[*first[g][:2], *second[g][:2]] for g in self._order], np.int64)
        totals = set_sums(self.values, self.keys, costs, hard, self._starts, self._stops,
                          np.repeat(sets, np.diff(self._firsts), axis=0), self._firsts)
        out = np.empty((len(self.groups), 3))
        out[self._order, 0] = totals[:, 0]
        if costs.size == 1:
            sizes = np.array([[first[g][2], second[g][2]] for g in self._order], np.float64)
            out[self._order, 1] = costs[0] * sizes[:, 0]
            out[self._order, 2] = costs[0] * (sizes[:, 1] - totals[:, 1])
        else:
            out[self._order, 1:] = totals[:, 2:]
        return out
