"""The prunable synapses of a graph as one flat index space, and magnitude pruning by cost.

Solvers think in flat vectors (all prunable weights end to end); the trainer
and optimizer think in per-layer keep-masks keyed like ``backprop.trainable``
(``"<layer>.weight"``). This module converts between the two and owns the O(n)
selection of the least-magnitude weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ir
from .errors import SNNError
from .kernels.layer_passes import ONE_CALL_BELOW, add_scaled_sets, magnitudes_of_layers, same_magnitudes_of_layers
from .kernels.selection import (add_scaled_at, add_scaled_least, copy_set_strongest, magnitudes_into, same_magnitudes,
                                set_strongest, set_strongest_in_place)


def default_prunable(graph: ir.Graph) -> list[str]:
    """The paper's default, every synapse layer except the first (kept dense), unless the
    first holds most of the synapses (any MLP on images): then every synapse layer, since
    keeping it dense would leave no budget reachable."""
    layers = graph.prunable()
    if layers and _share_of_first(layers) > 0.5:
        return [node.name for node in layers]
    return [node.name for node in layers[1:]]


def _share_of_first(layers: list[ir.Node]) -> float:
    return layers[0].weight.size / sum(node.weight.size for node in layers)


def choose_prunable(graph: ir.Graph, names: list[str] | None) -> tuple[list[str], list[str]]:
    """The synapse layers to prune (``names``, checked, or the default) and notes on what the default chose."""
    if names is not None:
        return check_prunable(graph, names), []
    chosen = default_prunable(graph)
    layers = graph.prunable()
    notes = []
    if len(layers) > 1 and chosen and chosen[0] == layers[0].name:
        notes.append(f"the first synapse layer {layers[0].name!r} holds {100 * _share_of_first(layers):.0f} % of the "
                     "synapses, so it is pruned too (the paper keeps it dense); choose the layers with --prune")
    return chosen, notes


def check_prunable(graph: ir.Graph, names: list[str]) -> list[str]:
    synapse_layers = [node.name for node in graph.prunable()]
    unknown = [name for name in names if name not in synapse_layers]
    if unknown:
        raise SNNError(
            f"cannot prune {', '.join(map(repr, unknown))}: synapse layers are {', '.join(map(repr, synapse_layers))}"
        )
    if not names:
        raise SNNError("no layer to prune: name at least one synapse layer")
    return [name for name in synapse_layers if name in names]


class FlatWeights:
    """Views of the prunable layers' weights as one vector (``layers`` in graph order)."""

    def __init__(self, graph: ir.Graph, layers: list[str]):
        self.graph = graph
        self.layers = list(layers)
        self.sizes = [graph[name].weight.size for name in self.layers]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.size = int(self.offsets[-1])
        self._slices = [(name, slice(int(start), int(stop)))
                        for name, start, stop in zip(self.layers, self.offsets[:-1], self.offsets[1:])]
        self._parameters = [f"{name}.weight" for name in self.layers]
        self._views = []  # (buffer, magnitude_views of it) of the last two buffers asked for
        # below ONE_CALL_BELOW float32 weights, a pass over every layer is one call (kernels/layer_passes.py)
        self._one_call = self.size < ONE_CALL_BELOW and all(graph[name].weight.dtype == np.float32
                                                             for name in self.layers)

    def _flat_layers(self) -> tuple:
        """Each layer's weights as a 1-D array (views of the graph's own arrays, in order)."""
        return tuple([self.graph[name].weight.reshape(-1) for name in self.layers])

    def weights(self) -> np.ndarray:
        """All prunable weights as one float64 vector (a copy)."""
        return np.concatenate([self.graph[name].weight.ravel() for name in self.layers]).astype(np.float64)

    def native_magnitudes(self, out: np.ndarray | None = None) -> np.ndarray:
        """|w| of all prunable weights as one vector of their dtype (float32), written into ``out``
        (``[size]``) when given: the copy and the absolute value in one pass."""
        if out is None:
            out = np.empty(self.size, dtype=self.graph[self.layers[0]].weight.dtype if self.layers else np.float32)
        if self._one_call and out.dtype == np.float32:
            magnitudes_of_layers(self._flat_layers(), self.offsets, out)
            return out
        for name, part in self.layer_slices():
            magnitudes_into(self.graph[name].weight.reshape(-1), out[part])
        return out

    def flatten(self, per_layer: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(per_layer[name], np.float64).ravel() for name in self.layers])

    def layer_slices(self):
        """``(name, flat range)`` of each layer, in graph order."""
        return iter(self._slices)

    def keep_masks(self, pruned: np.ndarray) -> dict[str, np.ndarray]:
        """Per-layer keep-masks (``"<layer>.weight"`` -> bool) from a flat bool vector of pruned weights."""
        return {
            f"{name}.weight": ~pruned[part].reshape(self.graph[name].weight.shape)
            for name, part in self.layer_slices()
        }

    def zero(self, pruned: np.ndarray) -> None:
        """Set the pruned weights of the graph to exactly zero (in place)."""
        for name, part in self.layer_slices():
            weight = self.graph[name].weight
            weight[pruned[part].reshape(weight.shape)] = 0.0

    def _local(self, indices: np.ndarray):
        """Per layer: (name, the layer's own indices among the flat ``indices``), where there are
        any. ``indices`` ascending (as the least-s sets are), so each layer's are one slice of them."""
        bounds = np.searchsorted(indices, self.offsets)
        for (name, part), start, stop in zip(self.layer_slices(), bounds[:-1], bounds[1:]):
            if stop > start:
                yield name, indices[start:stop] - part.start

    def add_scaled_weights(self, grads: dict[str, np.ndarray], indices: np.ndarray, factor: float) -> None:
        """``grads["<layer>.weight"] += factor * weight`` at the flat ``indices`` (ascending; in place)."""
        for name, local in self._local(indices):
            add_scaled_at(grads[f"{name}.weight"].reshape(-1), self.graph[name].weight.reshape(-1), local, factor)

    def add_scaled_least(self, grads: dict[str, np.ndarray], keys: np.ndarray, least: tuple, part: slice,
                         factor: float) -> None:
        """``grads["<layer>.weight"] += factor * weight`` on the set ``least = (bound, following, ...)``
        of the flat ``keys`` (kernels/selection.py), within the flat range ``part`` (in place;
        float32 as numpy's); no mask."""
        bound, following = least[0], least[1]
        for name, layer in self.layer_slices():
            start, stop = max(layer.start, part.start), min(layer.stop, part.stop)
            if stop > start:
                local = slice(start - layer.start, stop - layer.start)
                add_scaled_least(grads[f"{name}.weight"].reshape(-1)[local], self.graph[name].weight.reshape(-1)[local],
                                 keys[start:stop], (bound, following - start), factor)

    def add_scaled_sets(self, grads: dict[str, np.ndarray], keys: np.ndarray, parts: np.ndarray, sets: np.ndarray,
                        factors: np.ndarray) -> None:
        """:meth:`add_scaled_least` of every set ``sets[g]`` (int64 ``[G, >= 2]``: ``(bound, following,
        ...)``) within the flat range ``parts[g]`` (int64 ``[G, 2]``: start, stop) with ``factors[g]``
        (float64 ``[G]``) where ``factors[g] > 0``; one call for all of them below ``ONE_CALL_BELOW``
        weights (when ``grads`` holds every layer's gradient)."""
        if not (self._one_call and all(parameter in grads for parameter in self._parameters)):
            rows = zip(parts.tolist(), sets[:, :2].tolist(), factors.tolist())
            for (start, stop), (bound, following), factor in rows:
                if factor > 0:
                    self.add_scaled_least(grads, keys, (bound, following), slice(start, stop), factor)
            return
        add_scaled_sets(tuple([grads[parameter].reshape(-1) for parameter in self._parameters]), self._flat_layers(),
                        self.offsets, keys, parts, sets, factors)

    def least_terms(self, keys: np.ndarray, least: tuple, part: slice, factor: float,
                    by_magnitude: frozenset = frozenset()) -> dict[str, tuple]:
        """:meth:`add_scaled_least`'s gradient as ``kernels.adam.adam_update``'s ``least`` per
        parameter ``"<layer>.weight"`` that meets the flat range ``part``: ``(keys of the layer,
        first, split, last, bound, factor)`` in the layer's flat indices, for Adam to add in its pass;
        keys None for the parameters named in ``by_magnitude`` (their keys are the bits of their |w|
        now: Adam reads membership from the weights)."""
        bound, following = least[0], least[1]
        terms = {}
        for parameter, (_, layer) in zip(self._parameters, self._slices):
            start, stop = max(layer.start, part.start), min(layer.stop, part.stop)
            if stop > start:
                first, last = start - layer.start, stop - layer.start
                split = min(max(following - layer.start, first), last)
                layer_keys = None if parameter in by_magnitude else keys[layer]
                terms[parameter] = (layer_keys, first, split, last, bound, factor)
        return terms

    def magnitude_views(self, out: np.ndarray) -> dict[str, np.ndarray]:
        """Per parameter ``"<layer>.weight"``: its flat range of ``out`` (``[size]``), where
        :meth:`native_magnitudes` writes its |w|. The same dict for the same ``out`` (of the last two
        asked for: a solver alternates two buffers); not to be changed."""
        for held, views in self._views:
            if held is out:
                return views
        views = {parameter: out[part] for parameter, (_, part) in zip(self._parameters, self._slices)}
        self._views = [*self._views[-1:], (out, views)]
        return views

    def same_magnitudes(self, values: np.ndarray) -> bool:
        """Whether ``values`` are :meth:`native_magnitudes` of the weights now, bit for bit (read only)."""
        if self._one_call and values.dtype == np.float32 and values.size == self.size and values.flags.c_contiguous:
            return bool(same_magnitudes_of_layers(self._flat_layers(), self.offsets, values))
        return values.size == self.size and all(
            same_magnitudes(self.graph[name].weight.reshape(-1), values[part]) for name, part in self.layer_slices())

    def scale_weights(self, indices: np.ndarray, factor: float) -> None:
        """``weight *= factor`` at the flat ``indices`` (ascending; in place)."""
        for name, local in self._local(indices):
            self.graph[name].weight.flat[local] *= np.float32(factor)


def least(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries (O(n) selection, deterministic)."""
    k = int(min(max(k, 0), values.size))
    if k == 0:
        return np.zeros(0, np.int64)
    if k == values.size:
        return np.arange(values.size)
    return np.argpartition(values, k - 1, kind="introselect")[:k]


def kth_smallest(values: np.ndarray, k: int) -> float:
    """The k-th smallest entry (1-based), O(n); +inf past the end."""
    if k > values.size:
        return np.inf
    return float(np.partition(values, k - 1)[k - 1])


def protect_strongest(magnitudes: np.ndarray, part: slice, rows: int, count: int,
                      out: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``magnitudes`` in which, in each of the ``rows`` rows of the flat range ``part``
    (one row per output neuron of a layer), the ``count`` largest are +inf: ranked last, so
    pruned only if nothing else is left to meet a budget. Never disconnects an output neuron.
    ``out``: where to write the copy (as ``magnitudes``, not it), e.g. a buffer reused from one
    selection to the next (no fresh pages of a new array each time), or ``magnitudes`` itself (ranked in place)."""
    columns = (part.stop - part.start) // rows
    if (out is not None and out is not magnitudes and part.stop == out.size and 0 < count < columns
            and out.flags.c_contiguous and magnitudes.flags.c_contiguous and out.dtype == magnitudes.dtype
            and out.shape == magnitudes.shape and copy_set_strongest(magnitudes, out, part.start, rows, count)):
        return out  # the copy and the rank of the last layer in one call
    if out is None:
        ranked = magnitudes.copy()
    else:
        ranked = out
        if out is not magnitudes:
            np.copyto(ranked, magnitudes)
    block = ranked[part].reshape(rows, -1)  # a view into ``ranked``
    if count >= block.shape[1]:
        block[...] = np.inf
    elif count > 0 and not (block.flags.c_contiguous and set_strongest(block, count)):
        # ties at a row's edge: argpartition's choice, as ever (the kernel's set is unique, so the same)
        strongest = np.argpartition(-block, count - 1, axis=1)[:, :count]
        np.put_along_axis(block, strongest, np.inf, axis=1)
    return ranked


@dataclass(frozen=True)
class ProtectStrongest:
    """The rank ``protect_strongest(magnitudes, part, rows, count, out)`` (each of the ``rows``
    output neurons of the flat range ``part`` keeps its ``count`` strongest synapses last), which
    the solver can also apply in place (:meth:`in_place`: no copy of all ranks)."""

    part: slice
    rows: int
    count: int

    def __call__(self, magnitudes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return protect_strongest(magnitudes, self.part, self.rows, self.count, out)

    def in_place(self, magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank ``magnitudes`` (float ``[n]``) in place; returns the flat indices (int64,
        ascending) of the entries it set to +inf and their magnitudes before (of their dtype): a
        copy of ``part`` alone, compared bit for bit (an entry that was +inf already is not listed)."""
        columns = (self.part.stop - self.part.start) // self.rows
        if 0 < self.count < columns and magnitudes.flags.c_contiguous:
            done, changed, before = set_strongest_in_place(magnitudes, self.part.start, self.part.stop, self.rows,
                                                           self.count)
            if done:  # the copy of the part, the rank and its changes in one call
                return changed, before
        block = magnitudes[self.part]
        before = block.copy()
        protect_strongest(magnitudes, self.part, self.rows, self.count, magnitudes)
        width = np.int32 if block.dtype.itemsize == 4 else np.int64
        changed = np.flatnonzero(block.view(width) != before.view(width))
        return changed + self.part.start, before[changed]


def magnitude_prune_to(
    magnitudes: np.ndarray,
    costs: np.ndarray,
    already_pruned: np.ndarray,
    cost_to_remove: float,
) -> np.ndarray:
    """Flat bool vector of pruned weights: ``already_pruned`` plus the least-magnitude
    others, in order of magnitude, until their removed cost reaches ``cost_to_remove``."""
    pruned = already_pruned.copy()
    if cost_to_remove <= 0:
        return pruned
    candidates = np.flatnonzero(~already_pruned)
    order = candidates[np.argsort(magnitudes[candidates], kind="stable")]
    removed = np.cumsum(costs[order])
    count = int(np.searchsorted(removed, cost_to_remove - 1e-9 * max(1.0, abs(cost_to_remove)))) + 1
    pruned[order[: min(count, order.size)]] = True
    return pruned
