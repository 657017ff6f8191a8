"""Structured pruning: a whole output channel of a Conv2d (or Conv1d) or output neuron of a Linear is the unit.

A group is one output channel c of a prunable layer: its row of synapses (its fan-in)
and, in every prunable consumer it reaches through BatchNorm, neurons, pooling,
Dropout and Flatten, the input slice that reads it (its fan-out; after a Flatten the
block ``[c*H*W, (c+1)*H*W)``). Pruning the group zeroes all of them, so the channel
has no fan-out and the exporter's removal (shrink.py) drops it with its bias,
BatchNorm entries and neurons. Removing a group saves the resource of its synapses
not yet pruned: its own and the consumers' input slices.

The layer that feeds the readout keeps its classes. Channels that reach a residual
``Add`` or a grouped convolution cannot be removed consistently by this rule and are
refused by name. Baselines rank groups by L2 norm (as magnitude pruning ranks weights).
"""

from __future__ import annotations

import numpy as np

from . import ir
from .errors import SNNError
from .pruning import FlatWeights

STRUCTURES = ("none", "channel")
_PASS_THROUGH = (ir.BatchNorm, ir.Neuron, ir.MaxPool2d, ir.AvgPool2d, ir.Dropout, ir.Flatten)


def _consumers(graph: ir.Graph) -> dict[str, list[ir.Node]]:
    readers: dict[str, list[ir.Node]] = {node.name: [] for node in graph}
    for node in graph:
        for source in node.inputs:
            readers[source].append(node)
    return readers


def channel_groups(graph: ir.Graph, flat: FlatWeights) -> list[np.ndarray]:
    """The groups of ``flat``'s layers: for each, the flat indices of its synapses.

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
            groups.append(np.concatenate(members))
    if not groups:
        raise SNNError("--structure channel: no prunable layer has channels to remove (only the output layer is pruned)")
    return groups


def prune_groups(groups: list[np.ndarray], weights: np.ndarray, costs: np.ndarray, hard_pruned: np.ndarray,
                 cost_to_remove: float) -> np.ndarray:
    """Flat bool vector: ``hard_pruned`` plus whole groups, least L2 norm first, until the
    cost of the synapses they newly prune reaches ``cost_to_remove`` (or no group is left)."""
    pruned = hard_pruned.copy()
    norms = np.array([np.sqrt(np.sum(weights[members] ** 2)) for members in groups])
    for index in np.argsort(norms, kind="stable"):
        if cost_to_remove <= 0:
            break
        members = groups[index]
        fresh = members[~pruned[members]]
        if fresh.size == 0:
            continue
        pruned[fresh] = True
        cost_to_remove -= float(np.sum(costs[fresh]))
    return pruned
