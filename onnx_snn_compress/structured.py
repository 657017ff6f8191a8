"""Structured pruning: a whole output channel of a Conv2d (or Conv1d) or output neuron of a Linear is the unit.

A group is one output channel c of a prunable layer: its row of synapses (its fan-in)
and, in every prunable consumer it reaches through BatchNorm, neurons, pooling,
Dropout and Flatten, the input slice that reads it (its fan-out; after a Flatten the
block ``[c*H*W, (c+1)*H*W)``). Pruning the group zeroes all of them, so the channel
has no fan-out and the exporter's removal (shrink.py) drops it with its bias,
BatchNorm entries and neurons. Removing a group saves the resource of its synapses
not yet pruned: its own and the consumers' input slices.

Groups are ranked by their *relative* L2 norm, ``||w_g|| / sqrt(mean_h ||w_h||^2)`` over
the groups h of the same layer: raw norms grow with the group's synapse count, so
across layers of different sizes they would empty the layers of small groups first
(62 of the 64 neurons of digits_conv's fc1 at 25 % of the MACs, docs/results.md).
Each layer keeps its strongest group (ranked last, as ``pruning.protect_strongest``
keeps each output neuron's strongest synapse): removing every channel of a layer
disconnects the network. The layer that feeds the readout keeps its classes.
Channels that reach a residual ``Add`` or a grouped convolution cannot be removed
consistently by this rule and are refused by name.

:class:`ChannelGroups` lets the minimax solver (solvers.py) work on groups unchanged:
it shows the solver one "weight" per group (its relative norm), so the solver's
least-s set is a set of groups, s counts groups, and the penalty
``y * sum(least-s relative squared norms)`` reaches the groups' synapses as the gradient
``2 y w / scale_layer^2``.
"""

from __future__ import annotations

import numpy as np

from . import ir
from .errors import SNNError
from .kernels.selection import least_mask, same_bits
from .pruning import FlatWeights
from .solvers import Budget, resource_after

STRUCTURES = ("none", "channel")
_PASS_THROUGH = (ir.BatchNorm, ir.Neuron, ir.MaxPool2d, ir.AvgPool2d, ir.Dropout, ir.Flatten)
TINY = 1e-30


def _consumers(graph: ir.Graph) -> dict[str, list[ir.Node]]:
    readers: dict[str, list[ir.Node]] = {node.name: [] for node in graph}
    for node in graph:
        for source in node.inputs:
            readers[source].append(node)
    return readers


def channel_groups(graph: ir.Graph, flat: FlatWeights) -> list[tuple[str, np.ndarray]]:
    """The groups of ``flat``'s layers: for each, (its layer, the flat indices of its synapses).

    Raises SNNError naming the layer whose channels reach an ``Add`` or a grouped convolution.
    """
    readers = _consumers(graph)
    offsets = dict(zip(flat.layers, flat.offsets[:-1]))
    groups = []
    for name in flat.layers:
        producer = graph[name]
        if isinstance(producer, ir.Conv2d) and producer.groups != 1:
            raise SNNError(f"--structure channel: {name} is a grouped convolution; its channels cannot be pruned alone")
        if isinstance(producer, ir.SynapticNeuron):
            raise SNNError(f"--structure channel: {name} holds recurrent synapses, whose neurons cannot be removed "
                           f"yet; prune them with --structure none or leave them out of --prune")
        # consumers reached through layers that keep channels apart, with the features per channel there
        reached, frontier, to_output = [], [(name, 1)], False
        while frontier:
            source, block = frontier.pop()
            for reader in readers[source]:
                if isinstance(reader, ir.Readout):
                    to_output = True
                elif isinstance(reader, (ir.Add, ir.SynapticNeuron)) or (isinstance(reader, ir.Conv2d) and reader.groups != 1):
                    raise SNNError(f"--structure channel: the channels of {name} reach {reader.kind} {reader.name!r}, "
                                   f"where they cannot be removed consistently")
                elif isinstance(reader, _PASS_THROUGH):
                    per_channel = int(np.prod(graph.shapes[source][1:])) if isinstance(reader, ir.Flatten) else 1
                    frontier.append((reader.name, block * per_channel))
                else:
                    reached.append((reader, block))
        if to_output:
            continue  # the output layer keeps its classes
        rows = np.arange(producer.weight.size).reshape(producer.weight.shape[0], -1) + offsets[name]
        for channel in range(producer.weight.shape[0]):
            members = [rows[channel]]
            for consumer, block in reached:
                if consumer.name not in offsets:
                    continue  # a layer kept dense: its input slice stays, the channel still loses its fan-in
                index = np.arange(consumer.weight.size).reshape(consumer.weight.shape) + offsets[consumer.name]
                members.append(index[:, channel * block:(channel + 1) * block].ravel())
            groups.append((name, np.concatenate(members)))
    if not groups:
        raise SNNError("--structure channel: no prunable layer has channels to remove (only the output layer is pruned)")
    return groups


class ChannelGroups:
    """The prunable channels of a graph as the units of pruning, laid out as the solver's flat space.

    Unit g stands for the synapses ``members[g]`` (flat indices into ``flat``); units are in
    layer order, so ``layer_slices`` gives each layer's. The solver reads ``native_magnitudes()``,
    ``add_scaled_least``, ``same_magnitudes`` and ``scale_weights`` as it reads a :class:`pruning.FlatWeights`.
    """

    def __init__(self, graph: ir.Graph, flat: FlatWeights):
        self.flat = flat
        groups = channel_groups(graph, flat)
        self.members = [members for _, members in groups]
        self.size = len(groups)
        self._index = np.concatenate(self.members)
        self._owner = np.repeat(np.arange(self.size), [m.size for m in self.members])
        self.layers = list(dict.fromkeys(layer for layer, _ in groups))  # those with groups, in graph order
        self._layer = np.array([self.layers.index(layer) for layer, _ in groups])
        # a synapse in two groups (a consumer's row and a producer's input slice) counts half to each
        shared = np.bincount(self._index, minlength=flat.size)
        self._share = 1.0 / shared[self._index]
        self._in_group = shared > 0
        self._scale = np.ones(self.size)

    def layer_slices(self):
        for number, name in enumerate(self.layers):
            where = np.flatnonzero(self._layer == number)
            yield name, slice(int(where[0]), int(where[-1]) + 1)

    def norms(self, weights: np.ndarray) -> np.ndarray:
        """Each group's L2 norm, from the flat weights."""
        return np.sqrt(np.bincount(self._owner, weights=weights[self._index] ** 2, minlength=self.size))

    def relative_norms(self, weights: np.ndarray) -> np.ndarray:
        """``||w_g|| / sqrt(mean_h ||w_h||^2)``, h over the groups of g's layer (the ranking of this module)."""
        squared = self.norms(weights) ** 2
        layer_mean = np.bincount(self._layer, weights=squared) / np.bincount(self._layer)
        self._scale = np.sqrt(layer_mean[self._layer]) + TINY
        return np.sqrt(squared) / self._scale

    def weights(self) -> np.ndarray:
        """One value per group: its relative norm (the magnitude the solver ranks and penalises)."""
        return self.relative_norms(self.flat.weights())

    def native_magnitudes(self, out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`weights`, which are >= 0 (float64: the solver ranks their squares; ``out`` is not used)."""
        return self.weights()

    def add_scaled_least(self, grads: dict[str, np.ndarray], keys: np.ndarray, least: tuple, part: slice,
                         factor: float) -> None:
        """:meth:`add_scaled_weights` on the units of the set ``least`` of ``keys`` within ``part``
        (kernels/selection.py)."""
        mask = np.empty(keys.size, np.bool_)
        least_mask(keys, part.start, part.stop, least, mask)
        self.add_scaled_weights(grads, np.flatnonzero(mask[part]) + part.start, factor)

    def same_magnitudes(self, values: np.ndarray) -> bool:
        """Whether ``values`` are :meth:`native_magnitudes` now, bit for bit."""
        return same_bits(self.native_magnitudes(), values)

    def add_scaled_weights(self, grads: dict[str, np.ndarray], units: np.ndarray, factor: float) -> None:
        """The gradient of ``factor / 2 * sum(relative squared norms of units)`` added to ``grads``."""
        for scale in np.unique(self._scale[units]):
            same = units[self._scale[units] == scale]
            self.flat.add_scaled_weights(grads, self._synapses(same), factor / scale**2)

    def scale_weights(self, units: np.ndarray, factor: float) -> None:
        self.flat.scale_weights(self._synapses(units), factor)

    def _synapses(self, units: np.ndarray) -> np.ndarray:
        return np.unique(np.concatenate([self.members[u] for u in units])) if len(units) else np.zeros(0, np.int64)

    def rank(self, magnitudes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``magnitudes`` (one per group) with each layer's largest made +inf: pruned never (a new
        array: ``out``, the solver's buffer, is not needed for so few groups)."""
        ranked = np.asarray(magnitudes, np.float64).copy()
        for _, part in self.layer_slices():
            ranked[part.start + int(np.argmax(ranked[part]))] = np.inf
        return ranked

    # -- between the flat synapse space and the group space ------------------------
    def pruned(self, hard_pruned: np.ndarray) -> np.ndarray:
        """Per group: whether all its synapses are pruned in the flat ``hard_pruned``."""
        return np.bincount(self._owner, weights=~hard_pruned[self._index], minlength=self.size) == 0

    def view(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget):
        """(group costs, group hard-pruned, budget) of the flat ones: a group costs what its unpruned
        synapses cost (shared ones half), so the group costs add up to the resource; what no group
        holds joins ``budget.fixed``."""
        alive = costs * ~hard_pruned
        group_costs = np.bincount(self._owner, weights=alive[self._index] * self._share, minlength=self.size)
        fixed = budget.fixed + float(np.sum(alive[~self._in_group]))
        return group_costs, self.pruned(hard_pruned), Budget(budget.target, budget.reference, fixed, budget.goal)

    def to_flat(self, group_pruned: np.ndarray, hard_pruned: np.ndarray) -> np.ndarray:
        """The flat pruned vector: ``hard_pruned`` plus every synapse of the pruned groups."""
        pruned = hard_pruned.copy()
        pruned[self._index[group_pruned[self._owner]]] = True
        return pruned

    def prune(self, costs: np.ndarray, hard_pruned: np.ndarray, cost_to_remove: float,
              among: np.ndarray | None = None) -> np.ndarray:
        """Flat bool vector: ``hard_pruned`` plus whole groups (those of the bool vector ``among``, or
        any), least relative norm first (each layer's strongest never), until the cost of the
        synapses they newly prune reaches ``cost_to_remove``."""
        pruned = hard_pruned.copy()
        ranked = self.rank(self.relative_norms(self.flat.weights()))
        if among is not None:
            ranked[~among] = np.inf
        for unit in np.argsort(ranked, kind="stable"):
            if cost_to_remove <= 0 or not np.isfinite(ranked[unit]):
                break
            fresh = self.members[unit][~pruned[self.members[unit]]]
            pruned[fresh] = True
            cost_to_remove -= float(np.sum(costs[fresh]))
        return pruned

    def lowest_resource(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget) -> float:
        """The resource (fraction of R0) when every group but each layer's strongest is pruned."""
        return resource_after(costs, self.prune(costs, hard_pruned, np.inf), budget)
