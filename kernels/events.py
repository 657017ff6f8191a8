"""Events: the nonzero cells of an input, listed before the arithmetic that uses them.

A kernel that skips zero inputs with ``if value == 0: continue`` pays a mispredicted branch
for about every other cell of a spike train (0/1 at 15-50 % ones): the branch predictor
cannot guess them. Listing the cells' indices first without a branch (every index is
written, the count moves on only past a nonzero value) and then looping over the list
keeps the order of the cells, so every sum adds the same terms in the same order as the
branching loop: the results are the same bits, 2-3x sooner (bench/README.md).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def nonzero_indices(values, indices):
    """Write the indices of the nonzero cells of 1-D ``values`` to ``indices`` (int, at least
    as long), ascending; return their count. ``indices`` past the count are garbage."""
    count = 0
    for index in range(values.shape[0]):
        indices[count] = index
        count += values[index] != 0
    return count
