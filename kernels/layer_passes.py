"""The solver's passes over the prunable layers of a small network, every layer in one call:
the |w| copy, the check that the weights still have the |w| selected on, and the penalty
gradient added on the least-s sets.

The layers are a tuple of 1-D float32 arrays (each layer's weights, or gradients, flattened),
layer i holding the flat indices ``offsets[i]:offsets[i + 1]`` of one vector (``pruning.FlatWeights``).
Each pass computes exactly what kernels/selection.py's per-layer pass computes (``magnitudes_into``,
``same_magnitudes``, ``add_scaled_least``: element by element, so in any order the same bits),
with one call from Python instead of a few per layer: below ``ONE_CALL_BELOW`` weights those calls
cost more than the passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .selection import _add_scaled_below

ONE_CALL_BELOW = 1 << 16  # weights: below, every layer's range is one serial pass of kernels/selection.py


@njit(cache=True)
def magnitudes_of_layers(layers, offsets, out):
    """``out[offsets[i] + j] = |layers[i][j]|`` (float32 ``[n]``; the sign bit cleared, as ``np.abs``)."""
    for layer in range(len(layers)):
        weights, start = layers[layer], offsets[layer]
        for index in range(weights.size):
            out[start + index] = abs(weights[index])


@njit(cache=True)
def same_magnitudes_of_layers(layers, offsets, values):
    """Whether ``values`` (float32 ``[n]``) hold |w| of the layers bit for bit (read only)."""
    magnitude = np.uint32(0x7FFFFFFF)
    bits = values.view(np.uint32)
    difference = np.uint32(0)
    for layer in range(len(layers)):
        weights, start = layers[layer].view(np.uint32), offsets[layer]
        for index in range(weights.size):
            difference |= (weights[index] & magnitude) ^ bits[start + index]
    return difference == 0


@njit(cache=True)
def add_scaled_sets(targets, sources, offsets, keys, groups, sets, factors):
    """``targets[i][j] += float32(factors[g]) * sources[i][j]`` (float32 arithmetic, as numpy's) at
    every flat index of group g (``groups[g] = (start, stop)``, int64 ``[G, 2]``) with ``factors[g] >
    0`` (float64 ``[G]``) in its set ``sets[g] = (bound, following, ...)`` (int64 ``[G, >= 2]``: the
    keys below ``bound`` and those equal to it before flat index ``following``) of ``keys``
    (kernels/selection.py's key_bits ``[n]``): kernels.selection.add_scaled_least's loop, its limits
    ``bound + 1`` before ``following`` and ``bound`` after it of the keys' own width."""
    limits = np.empty(2, keys.dtype)
    for group in range(groups.shape[0]):
        if not factors[group] > 0:
            continue
        factor = np.float32(factors[group])
        limits[0], limits[1] = sets[group, 0] + 1, sets[group, 0]
        following = sets[group, 1]
        for layer in range(len(targets)):
            offset = offsets[layer]
            start, stop = max(groups[group, 0], offset), min(groups[group, 1], offsets[layer + 1])
            if stop > start:
                split = min(max(following, start), stop)  # ties are in the set before ``following``
                target, source = targets[layer], sources[layer]
                _add_scaled_below(target[start - offset:split - offset], source[start - offset:split - offset],
                                  keys[start:split], limits[0], factor)
                _add_scaled_below(target[split - offset:stop - offset], source[split - offset:stop - offset],
                                  keys[split:stop], limits[1], factor)
