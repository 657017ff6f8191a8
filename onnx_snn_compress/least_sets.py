"""The least-s sets of the solver's groups of weights, located by one survey pass a step.

Each group keeps a *window* of keys around the boundary of its last set (the ranks from that
boundary to the boundary plus its last move, widened by a margin: further after a set left it,
see :meth:`LeastSets.recentre`); a step's survey
(kernels/selection.py) counts the keys below the window and gathers those inside, so any set
whose boundary stays inside is found from the window alone. The s step moves the boundary
little on most steps (in mnist_mlp's searches the median |ds| of a step is 0.3 % of a group,
and 77 % of the steps move it by at most 2.5 %), and so do the weights between two steps. When
the boundary has left the window, the window is moved towards it by the density of keys it held
and the group is surveyed again (one pass; in a real search of mnist_mlp 32 of 169 selections
leave their window, 50 before windows reached further after a miss, and one guess holds the
boundary in 31 of the 32); after two guesses,
or with nothing to go by, the group's keys are counted by their top bits
(:func:`kernels.selection.histogram`, 2-3 times a survey's time) and a window is taken from
that histogram. The sets are exact either way: the windows decide only the time taken, never a
result.

The solver's steps keep these windows in the kernels instead (``KERNEL_WINDOWS``:
:meth:`LeastSets.direct_layout`, kernels/windows.py, ``kernels.search_step``): the same rules as
jitted functions, so one call locates the sets of every group and surveys again only a group whose
set left its window; the Python of the windows here (a few dozen calls a step, about a quarter of
mnist_mlp's step) is kept as the reference the kernels are tested against, and for
:meth:`sums` and :meth:`recentre` in the tests and bench scripts.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads

from .kernels.search_step import GUESSES, least_sets
from .kernels.selection import (CHUNK, bucket_of, bucket_start, counted_key_of_rank, histogram, infinity_key,
                                key_of_rank, parallel_pass, set_sums, survey, top_shift)
# the windows' rules, shared with the kernels': margins, sides, reach (kernels/windows.py)
from .kernels.windows import ABOVE, BELOW, MARGIN, MIN_MARGIN, REACH

# whether the windows are kept by the kernels (kernels/windows.py: one call a step); False: by
# this class's Python (a call per pass), the reference the kernels are tested against
KERNEL_WINDOWS = True


class Window:
    """The members of a window ``[lo, hi)`` of keys (flat indices ascending, their keys beside
    them), counted once by their top digit (up to 12 bits below the highest bit in which keys of
    the window can differ: :func:`kernels.selection.counted_key_of_rank`), so that the key of any
    rank is refined within one bucket."""

    def __init__(self, member_keys: np.ndarray, members: np.ndarray, lo: int, hi: int):
        self.size, self.lo, self.hi = members.size, int(lo), int(hi)
        self._pairs = (member_keys, members)
        self._offsets = None

    def _count(self, rank: int = -1) -> tuple[int, int]:
        """Count the members by their top digit and find the key of ``rank`` (>= 0) in the same call."""
        self._offsets, self.shift, self.width, bound, following = counted_key_of_rank(*self._pairs, self.lo, self.hi,
                                                                                      rank)
        top = self.shift + self.width
        self.prefix = (self.lo >> top) << top
        return bound, following

    def key_of_rank(self, rank: int) -> tuple[int, int]:
        """``(key, index)`` of the (rank+1)-th smallest member in the order (key, index)."""
        if self._offsets is None:
            return self._count(rank)
        return key_of_rank(self._offsets, *self._pairs, rank, self.shift, self.width)

    def bucket_start(self, rank: int) -> int:
        """The smallest key of the top-digit bucket of the member of ``rank``; ``bucket_stop``: the
        key just past that bucket (edges for a window that holds that rank, without refinement)."""
        if self._offsets is None:
            self._count()
        return bucket_start(self._offsets, rank, self.shift, self.prefix)

    def bucket_stop(self, rank: int) -> int:
        return self.bucket_start(rank) + (1 << self.shift)


class LeastSets:
    """The least-k sets of ``groups`` (disjoint flat ranges of ``size`` weights) for any k,
    after :meth:`survey` of the keys; windows kept from one survey to the next. Groups are held
    in flat order (``position``); the public methods take the caller's group numbers."""

    def __init__(self, groups: list[slice], size: int):
        order = sorted(range(len(groups)), key=lambda g: groups[g].start)
        self.groups = [groups[g] for g in order]  # in flat order
        self.position = np.argsort(order).tolist()  # the caller's group g is self.groups[position[g]]
        self._order = None if order == sorted(order) else order  # None: the caller's groups are in flat order
        starts, stops, owners, firsts = [], [], [], [0]
        for p, group in enumerate(self.groups):
            for start in range(group.start, max(group.stop, group.start + 1), CHUNK):  # an empty group: one empty chunk
                starts.append(start)
                stops.append(min(group.stop, start + CHUNK))
                owners.append(p)
            firsts.append(len(starts))
        self._starts, self._stops = np.array(starts, np.int64), np.array(stops, np.int64)
        self._owners, self._firsts = np.array(owners, np.int64), np.array(firsts, np.int64)
        self._slots = self._starts + np.arange(len(starts))  # one spare cell per chunk
        self._parallel = parallel_pass(size)
        self._members = np.empty(size + len(starts) + 1, np.int64)
        self._member_keys = None  # the members' keys (of the keys' dtype)
        count = len(groups)
        self._margins = [max(MIN_MARGIN, int(MARGIN * (group.stop - group.start))) for group in self.groups]
        self.lo = np.zeros(count, np.int64)  # the windows [lo, hi), by position; none yet (hi < 0)
        self.hi = np.full(count, -1, np.int64)
        self.squares = np.zeros(count)  # each group's sum of squared values
        self._below = [0] * count  # keys below lo
        self._inside = [0] * count  # keys in [lo, hi): the window's size
        self._window_starts = [0] * count  # where each window's members start in _members
        self._all_windows = False  # whether every group has a window (hi >= 0)
        self._moves = [0] * count  # each group's last move of its boundary (ranks), set by recentre
        self._reach = [REACH[0]] * count  # how far the next window extends along the last move (margins)
        self._missed = [0] * count  # the sides (BELOW | ABOVE) a set left the window on since the last recentre
        self._windows = [None] * count  # each group's Window of the last survey, built when first asked for
        self.values = self.keys = self._replaced = None
        self.direct = KERNEL_WINDOWS
        self._layout = None  # direct_layout's arrays, for the keys' dtype

    def direct_layout(self, keys: np.ndarray) -> tuple | None:
        """The arrays ``kernels.search_step.search_step`` and ``least_sets`` take after the values
        and keys (chunks, groups' positions, member buffers, the windows' arrays, the key of +inf;
        then :meth:`pass_arguments`) for ``keys`` (``key_bits``), or None where the
        windows are this class's Python (``KERNEL_WINDOWS`` False)."""
        if not self.direct:
            return None
        if self._layout is None or self._layout[7].dtype != keys.dtype:
            # windows of their own (none yet: hi < 0), apart from those of this class's Python
            count = len(self.groups)
            self._layout = (self._starts, self._stops, self._owners, self._firsts, self._slots,
                            np.array(self.position, np.int64), self._members, np.empty(self._members.size, keys.dtype),
                            np.zeros(count, np.int64), np.full(count, -1, np.int64), np.zeros(count, np.int64),
                            np.full(count, float(REACH[0])), np.zeros(count, np.int64), infinity_key(keys))
        return self._layout

    def locate(self, values: np.ndarray, keys: np.ndarray, ks: np.ndarray,
               replaced: tuple | None = None) -> tuple[np.ndarray, list]:
        """Each group's sum of squared ``values`` (float64 ``[G]``) and its least-``ks[g]`` set
        (``(bound, following, size)``: :meth:`least`) of ``keys``: one survey (the kernels' one
        call, or :meth:`survey` where the windows are this class's Python); ``replaced``: as
        :meth:`survey` takes it."""
        layout = self.direct_layout(keys)
        if layout is None:
            squares = self.survey(values, keys, ks, replaced)
            return squares, [self.least(g, k) for g, k in enumerate(ks.tolist())]
        sets, squares = np.empty((len(self.groups), 3), np.int64), np.empty(len(self.groups))
        least_sets(values, keys, *layout, *self.pass_arguments(values, replaced), np.ascontiguousarray(ks, np.int64),
                   sets, squares)
        return squares, sets.tolist()

    def pass_arguments(self, values: np.ndarray, replaced: tuple | None) -> tuple:
        """The kernels' arguments after :meth:`direct_layout`'s: whether the passes run in parallel
        chunks now (with threads to run them), and ``replaced`` (:meth:`survey`) as two arrays
        (empty for None)."""
        parallel = self._parallel and get_num_threads() > 1
        if replaced is None:
            return parallel, np.empty(0, np.int64), np.empty(0, values.dtype)
        return parallel, np.ascontiguousarray(replaced[0], np.int64), np.ascontiguousarray(replaced[1], values.dtype)

    def survey(self, values: np.ndarray, keys: np.ndarray, ks: list[int], replaced: tuple | None = None) -> np.ndarray:
        """One pass over every group's ``values`` (float32/64 ``[n]``) and ``keys``
        (:func:`kernels.selection.key_bits` of their ranks); ``ks``: the set sizes expected (a
        group without a window gets one around them); ``replaced``: ``(indices, originals)`` where
        ``values`` hold a rank in place of the value (``kernels.selection.survey``). Returns each
        group's sum of squared values."""
        self.values, self.keys, self._replaced = values, keys, replaced
        if self._member_keys is None or self._member_keys.dtype != keys.dtype:
            self._member_keys = np.empty(self._members.size, keys.dtype)
        if not self._all_windows:
            for g, k in enumerate(ks):
                if self.hi[self.position[g]] < 0:
                    self._window_from_histogram(self.position[g], k)
            self._all_windows = True
        self._survey(0, len(self.groups))
        return self.squares[self.position]

    def _survey(self, first: int, stop: int) -> None:
        """Survey the groups at positions ``first:stop``."""
        if first == 0 and stop == len(self.groups):
            chunks = self._starts, self._stops, self._owners, self._firsts, self.lo, self.hi, self._slots
        else:
            part = slice(self._firsts[first], self._firsts[stop])
            chunks = (self._starts[part], self._stops[part], self._owners[part] - first,
                      self._firsts[first:stop + 1] - self._firsts[first], self.lo[first:stop], self.hi[first:stop],
                      self._slots[part])
        squares, counts, windows = survey(self.values, self.keys, *chunks, self._members, self._member_keys,
                                          self._parallel, self._replaced)
        self.squares[first:stop] = squares
        self._below[first:stop], self._inside[first:stop] = counts.T.tolist()
        self._window_starts[first:stop] = windows.tolist()
        self._windows[first:stop] = [None] * (stop - first)

    def _window(self, p: int) -> Window:
        """The window of the group at position ``p`` from the last survey."""
        window = self._windows[p]
        if window is None:
            members = slice(self._window_starts[p], self._window_starts[p] + self._inside[p])
            window = self._windows[p] = Window(self._member_keys[members], self._members[members],
                                               self.lo[p], self.hi[p])
        return window

    def _window_from_histogram(self, p: int, k: int) -> None:
        """A window around rank ``k`` (``k -+`` the margin and the group's last move) of the keys of
        the group at position ``p``, from their histogram."""
        group = self.groups[p]
        size = group.stop - group.start
        infinite = infinity_key(self.keys)
        shift = top_shift(self.keys, size)
        counts = histogram(self.keys, group.start, group.stop, shift)
        finite = size - int(np.sum(counts[infinite >> shift:]))
        if finite == 0:
            self.lo[p], self.hi[p] = 0, infinite
            return
        margin = self._margins[p] + self._moves[p]
        self.lo[p] = int(bucket_of(counts, max(0, min(k, finite - 1) - margin))[0]) << shift
        if bucket_of(counts, min(k, finite - 1))[0] > 0:
            self.lo[p] = max(self.lo[p], 1)  # leave out the zeros (the weights pruned for good) unless the boundary is one
        above = k + margin
        self.hi[p] = infinite if above >= finite else min(infinite, (int(bucket_of(counts, above)[0]) + 1) << shift)

    def least(self, g: int, k: int) -> tuple[int, int, int]:
        """``(bound, following, size)`` of the least-``k`` set of group ``g`` of the surveyed keys (ties
        in index order; when ``k`` reaches the finite keys, all of them: ``(key of +inf, -1, their count)``)."""
        p = self.position[g]
        found = self._in_window(p, k)
        if found is None:
            self._missed[p] |= BELOW if k < self._below[p] else ABOVE
        for _ in range(GUESSES):
            if found is not None or not self._extrapolate(p, k):
                break
            self._survey(p, p + 1)
            found = self._in_window(p, k)
        if found is None:
            self._window_from_histogram(p, k)
            self._survey(p, p + 1)
            found = self._in_window(p, k)
        return found

    def _extrapolate(self, p: int, k: int) -> bool:
        """Move the window of the group at position ``p`` towards rank ``k`` (outside it), by the
        density of keys the window held (ranks per key), twice the span that density gives to
        reach ``k`` past the margin and the last move: a guess, checked by the next survey. False
        when there is nothing to go by (an empty window, or a boundary among the zeros below it)."""
        below, inside = self._below[p], self._inside[p]
        lo, hi = int(self.lo[p]), int(self.hi[p])
        if inside == 0:
            return False
        window = self._window(p)
        margin = self._margins[p] + self._moves[p]
        keys_per_rank = (hi - lo) / inside
        if k >= below + inside:  # above the window (whose hi is below the key of +inf: see _in_window)
            lower = k - margin - below
            self.lo[p] = hi if lower >= inside else (window.bucket_start(lower) if lower >= 0 else lo)
            self.hi[p] = min(infinity_key(self.keys), hi + int(2 * (k + margin - below - inside) * keys_per_rank) + 1)
            return True
        if lo <= 1:  # below lo are only zeros (the weights pruned for good): the histogram finds such a boundary
            return False
        upper = k + margin - below
        self.hi[p] = lo if upper < 0 else (window.bucket_stop(upper) if upper < inside else hi)
        self.lo[p] = max(1, lo - int(2 * (below - k + margin) * keys_per_rank) - 1)
        return True

    def _in_window(self, p: int, k: int):
        below, inside = self._below[p], self._inside[p]
        if below <= k < below + inside:
            bound, following = self._window(p).key_of_rank(k - below)
            return bound, following, k
        infinite = infinity_key(self.keys)
        if k >= below + inside and self.hi[p] == infinite:  # every finite key is below or in
            return infinite, -1, below + inside
        return None

    def recentre(self, g: int, k: int, previous: int) -> None:
        """Move group ``g``'s window, after its boundary moved from rank ``previous`` to ``k``, to the
        ranks from ``k`` to ``k`` plus that move again (s moves in runs), widened by the margin, to
        the edges of the window's top-digit buckets (past its members, by the density of keys they
        held: a guess): the next survey's sets are expected there. The move counts for at most two
        margins while the sets stay in their windows (s also turns), for twice as many after each
        step in which a set left it (up to ``REACH[1]``: s accelerates in runs, and in mnist_mlp's
        searches a third of the sets left windows of two margins), and 1.5 x fewer after each step
        without."""
        p = self.position[g]
        below, inside = self._below[p], self._inside[p]
        margin = self._margins[p]
        reach = self._reach[p] = min(REACH[1], 2 * self._reach[p]) if self._missed[p] \
            else max(REACH[0], self._reach[p] / 1.5)
        limit = int(reach * margin)
        move = max(-limit, min(limit, k - previous))
        self._moves[p] = min(abs(move), 2 * margin)  # a guess's margin (wider ones cost more than they hold)
        # twice the margin on a side a set left the window on
        lower = min(k, k + move) - margin * (1 + (self._missed[p] & BELOW != 0))
        upper = max(k, k + move) + margin * (1 + (self._missed[p] & ABOVE != 0))
        self._missed[p] = 0
        lo, hi, window = int(self.lo[p]), int(self.hi[p]), self._window(p)  # the window before it moves
        keys_per_rank = (hi - lo) / max(1, inside)  # past the members: a guess by their density
        if below <= lower < below + inside:
            self.lo[p] = window.bucket_start(lower - below)
            if self.lo[p] == 0 and below <= k < below + inside and window.bucket_start(k - below) > 0:
                self.lo[p] = 1  # leave out the zeros (the weights pruned for good): the boundary is above them
        elif lower < below and lo > 1 and inside > 0:  # (below lo = 1 are only zeros)
            self.lo[p] = max(1, lo - int((below - lower) * keys_per_rank) - 1)
        if below <= upper < below + inside:
            self.hi[p] = min(window.bucket_stop(upper - below), infinity_key(self.keys))
        elif upper >= below + inside and inside > 0:
            self.hi[p] = min(infinity_key(self.keys), hi + int((upper - below - inside) * keys_per_rank) + 1)

    def sums(self, costs: np.ndarray, hard: np.ndarray, first: list, second: list) -> tuple[list, list, list]:
        """Per group, three lists of Python floats ``[G]``: the squares and the cost of its set ``first[g]``,
        and the cost of its set ``second[g]``'s weights that are not hard-pruned (sets as
        :meth:`least` gives them) of the surveyed values and keys (no set holds a ``replaced``
        entry: their rank, +inf, is above every set's bound). ``costs``: float64 ``[n]``, or
        ``[1]``: the one cost of every weight (then counts times it: exact for an integer cost);
        ``hard``: uint8 ``[n]``, or ``[1]`` zero when none is hard-pruned (kernels.selection.set_sums)."""
        rows = [(a[0], a[1], b[0], b[1]) for a, b in zip(first, second)]
        sets = np.array(rows if self._order is None else [rows[g] for g in self._order], np.int64)
        totals = set_sums(self.values, self.keys, costs, hard, self._starts, self._stops, self._owners,
                          self._firsts, sets, self._parallel and get_num_threads() > 1)
        squares, held, first_costs, second_costs = (totals if self._order is None else totals[self.position]).T.tolist()
        if costs.size == 1:
            cost = float(costs[0])
            return (squares, [cost * a[2] for a in first],
                    [cost * (b[2] - count) for b, count in zip(second, held)])
        return squares, first_costs, second_costs
