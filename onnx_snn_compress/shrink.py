"""Physical removal of what pruning left dead: smaller dense tensors, the same predictions.

A *channel* is one output channel of a Conv2d or Conv1d or one output neuron of a Linear,
followed through every layer that keeps channels apart (BatchNorm, spiking
neurons, pooling, Dropout, Flatten, where channel c becomes the block of
features ``[c*H*W, (c+1)*H*W)``) and joined across residual ``Add``s. A
channel is removed, from its producing layer (weight rows, bias, BatchNorm
entries, neurons with their per-neuron parameters) and from the input slices of every consumer, when no output
depends on it:

- its fan-out is all zero (every consumer synapse that reads it was pruned), or
- it is always zero: its fan-in is all zero (or reads only channels that are
  always zero), so the layer outputs its bias, shifted by BatchNorm, and the
  neuron it drives provably never fires on that constant input, for any T.

At an ``Add`` a channel goes only when it can go from every branch. The graph
input's channels and the readout's classes are never removed, nor are the
channels around a grouped convolution. Removing terms that are exactly zero
leaves every sum the same up to float32 summation order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import ir

UNKNOWN = np.nan  # a channel whose value is not a known constant


def _fires_on_constant(values: dict[str, float | np.ndarray], drive: float) -> bool:
    """Whether any of a channel's neurons can fire at any step with the constant input
    ``drive`` (ir.Neuron's equations; ``values`` as ``Neuron.parameter_values`` gives them,
    floats or the channel's per-neuron arrays).

    Without a spike there is no reset, so the potential follows
    ``H[t] = beta * H[t-1] + (1 - beta) * v_leak + gain * drive`` from ``H[-1] = v_init``:
    monotone towards ``L = v_leak + gain * drive / (1 - beta)`` (beta < 1), or
    growing by ``gain * drive`` per step (beta = 1). Its supremum is ``max(H[0], L)``.
    A relative margin covers float32 rounding, so the answer errs on "can fire".
    """
    beta, gain, v_leak, v_init, v_threshold = (
        np.asarray(values[name], np.float64) for name in ("beta", "gain", "v_leak", "v_init", "v_threshold"))
    step = gain * drive
    first = beta * v_init + (1.0 - beta) * v_leak + step
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = np.maximum(first, v_leak + step / (1.0 - beta))
    highest = np.where(beta >= 1.0, np.where(step <= 0.0, first, np.inf), limit)
    margin = 1e-4 * (1.0 + np.abs(v_threshold) + np.abs(np.where(np.isfinite(highest), highest, 0.0)))
    return bool(np.any(~(highest < v_threshold - margin)))


class _Spaces:
    """Union-find of channel spaces: tensors whose axis-0 entries are the same channels."""

    def __init__(self):
        self.parent: list[int] = []
        self.channels: list[int] = []
        self.protected: list[bool] = []

    def new(self, channels: int, protected: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.channels.append(channels)
        self.protected.append(protected)
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            space = self.parent[space]
        return space

    def join(self, a: int, b: int, same_layout: bool) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.protected[a] = self.protected[a] or self.protected[b] or not same_layout
        return a

    def protect(self, space: int) -> None:
        self.protected[self.find(space)] = True


def _grouped(node: ir.Node) -> bool:
    return isinstance(node, ir.Conv2d) and node.groups != 1


def _synapses_from(node: ir.Node) -> np.ndarray:
    """``[out, in]``: whether output unit o has a nonzero synapse from input entry i."""
    weight = node.weight.reshape(node.weight.shape[0], node.weight.shape[1], -1)
    return np.any(weight != 0.0, axis=2)


def live_entries(graph: ir.Graph):
    """The channel analysis of the module docstring: a function ``kept(name) -> bool [n]``
    telling which axis-0 entries of tensor ``name`` (``n = graph.shapes[name][0]``: channels,
    neurons or flattened features) some output depends on. ``graph`` is not modified."""
    shapes = graph.shapes
    spaces = _Spaces()
    space_of: dict[str, int] = {}
    block: dict[str, int] = {}  # axis-0 entries of the tensor per channel of its space
    constant: dict[str, np.ndarray] = {}  # per axis-0 entry: the value, when it is a known constant
    for node in graph:
        source = node.inputs[0] if node.inputs else None
        if isinstance(node, ir.Input):
            space_of[node.name], block[node.name] = spaces.new(node.shape[0], protected=True), 1
            constant[node.name] = np.full(node.shape[0], UNKNOWN)
            continue
        if isinstance(node, (ir.Linear, ir.Conv2d)):
            space_of[node.name], block[node.name] = spaces.new(node.weight.shape[0]), 1
            if _grouped(node):
                spaces.protect(space_of[node.name])
                spaces.protect(space_of[source])
                reads_zeros_only = np.zeros(node.weight.shape[0], bool)
            else:  # an output unit reading only zero synapses or zero inputs outputs its bias
                reads_zeros_only = ~np.any(_synapses_from(node)[:, constant[source] != 0.0], axis=1)
            bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
            constant[node.name] = np.where(reads_zeros_only, bias, UNKNOWN)
            continue
        space_of[node.name], block[node.name] = space_of[source], block[source]
        value = constant[source]
        if isinstance(node, ir.BatchNorm):
            scale = node.weight / np.sqrt(node.running_var + np.float32(node.eps))
            value = (value - node.running_mean) * scale + node.bias
        elif isinstance(node, ir.Neuron):
            per_neuron = node.parameter_values(shapes[node.name])
            silent = np.array([
                np.isfinite(v) and not _fires_on_constant(
                    {k: (p[i] if isinstance(p, np.ndarray) else p) for k, p in per_neuron.items()}, float(v))
                for i, v in enumerate(value)], bool)
            value = np.where(silent, 0.0, UNKNOWN)
        elif isinstance(node, ir.SynapticNeuron):  # a neuron may fire from its current or recurrence: all stay
            spaces.protect(space_of[source])
            value = np.full(value.shape, UNKNOWN)
        elif isinstance(node, ir.AvgPool2d) and node.count_include_pad and any(node.padding):
            value = np.where(value == 0.0, 0.0, UNKNOWN)  # padded zeros change a nonzero constant
        elif isinstance(node, ir.Flatten):
            per_channel = int(np.prod(shapes[source][1:]))
            block[node.name] = block[source] * per_channel
            value = np.repeat(value, per_channel)
        elif isinstance(node, ir.Add):
            other = node.inputs[1]
            same = (spaces.channels[spaces.find(space_of[source])], block[source]) == (
                spaces.channels[spaces.find(space_of[other])], block[other])
            space_of[node.name] = spaces.join(space_of[source], space_of[other], same)
            value = value + constant[other]
        elif isinstance(node, ir.Readout):
            spaces.protect(space_of[source])
        constant[node.name] = value

    # backward: which axis-0 entries of each tensor some output depends on
    needed = {node.name: np.zeros(shapes[node.name][0], bool) for node in graph}
    needed[graph.readout.name][:] = True
    for node in reversed(graph.nodes[1:]):
        out = needed[node.name] & ~(constant[node.name] == 0.0)
        if isinstance(node, (ir.Linear, ir.Conv2d)):
            source = node.inputs[0]
            if _grouped(node):
                needed[source][:] = True
                continue
            reads = np.any(_synapses_from(node)[out], axis=0)
            needed[source] |= reads & ~(constant[source] == 0.0)
        elif isinstance(node, ir.Flatten):
            needed[node.inputs[0]] |= out.reshape(shapes[node.inputs[0]][0], -1).any(axis=1)
        else:
            for source in node.inputs:
                needed[source] |= out

    # a channel goes when no tensor of its space needs any entry of it
    keep: dict[int, np.ndarray] = {}
    for node in graph:
        space = spaces.find(space_of[node.name])
        if not spaces.protected[space]:
            keep.setdefault(space, np.zeros(spaces.channels[space], bool))
            keep[space] |= needed[node.name].reshape(spaces.channels[space], block[node.name]).any(axis=1)
    for mask in keep.values():
        if not mask.any():
            mask[0] = True  # an empty tensor is not a model; keep one channel

    def kept(name: str) -> np.ndarray:
        """The axis-0 entries of tensor ``name`` that stay."""
        space = spaces.find(space_of[name])
        if space not in keep:
            return np.ones(shapes[name][0], bool)
        return np.repeat(keep[space], block[name])

    return kept


def live_synapses(graph: ir.Graph) -> dict[str, np.ndarray]:
    """Per layer of synapses (``graph.prunable()``), ``bool`` of its weight's shape: the synapses
    (zero or not) from a channel some output depends on into one that some output depends on
    (:func:`live_entries`). A nonzero synapse outside is dead: :func:`remove_dead` drops it with
    its channel. A SynapticNeuron's recurrent synapses are all live (its neurons always stay)."""
    kept = live_entries(graph)
    live = {}
    for node in graph.prunable():
        if isinstance(node, (ir.Linear, ir.Conv2d)):
            rows = kept(node.name)
            columns = np.ones(node.weight.shape[1], bool) if _grouped(node) else kept(node.inputs[0])
            trailing = (1,) * (node.weight.ndim - 2)
            live[node.name] = np.broadcast_to(rows.reshape((-1, 1) + trailing) & columns.reshape((1, -1) + trailing),
                                              node.weight.shape)
        else:
            live[node.name] = np.ones(node.weight.shape, bool)
    return live


def remove_dead(graph: ir.Graph) -> tuple[ir.Graph, dict[str, int]]:
    """A copy of ``graph`` without its dead channels, and how many each producing layer lost.

    Returns ``(graph, {layer: removed output channels or neurons})``, with every
    layer listed (0 when nothing went). The input graph is not modified.
    """
    kept, shapes = live_entries(graph), graph.shapes
    nodes, removed = [], {}
    for node in graph:
        changes = {}
        if isinstance(node, (ir.Linear, ir.Conv2d)):
            rows, columns = kept(node.name), kept(node.inputs[0])
            changes["weight"] = node.weight[rows][:, columns]
            if node.bias is not None:
                changes["bias"] = node.bias[rows]
            removed[node.name] = int((~rows).sum())
        elif isinstance(node, ir.BatchNorm):
            entries = kept(node.name)
            changes = {name: getattr(node, name)[entries] for name in ("weight", "bias", "running_mean", "running_var")}
        elif isinstance(node, (ir.Neuron, ir.SynapticNeuron)):  # per-neuron values along axis 0 lose removed entries
            entries = kept(node.name)
            changes = {name: getattr(node, name)[entries] for name in node.per_neuron
                       if getattr(node, name).ndim == len(shapes[node.name]) and getattr(node, name).shape[0] > 1}
        values = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
        values.update(changes)
        nodes.append(type(node)(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in values.items()}))
    return ir.Graph(nodes, dict(graph.metadata)), removed
