"""What a network costs: parameters, surviving synapses (connectivity), MACs and SynOps.

Synapses are the weights of Linear, Conv2d and Conv1d layers and the recurrent weights of
SynapticNeuron layers (fed by the layer's own spikes of the previous step); connectivity is the share
of them that is nonzero. A synapse *use* is one multiply-accumulate of one weight
with one real input value: ``out * in`` per time step for Linear; for Conv2d, a
weight at kernel offset (i, j) is used at every output position whose tap falls
on the input, never on zero padding (a corner tap of a 3x3 kernel with padding 1
on an 8x8 input is used 7 x 7 = 49 times, not 64). Definitions of the figures a
compression report carries, with their sources: docs/resources.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import ir


@dataclass
class LayerCost:
    """What one layer costs. ``macs``: dense MACs per sample and time step (every
    synapse, zero or not, on real input positions); ``macs_nonzero``: the same for
    surviving synapses only."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    nonzero: int
    synapses: int
    synapses_nonzero: int
    macs: int
    macs_nonzero: int

    @property
    def connectivity(self) -> float | None:
        return self.synapses_nonzero / self.synapses if self.synapses else None


def _trainable(node: ir.Node) -> list[np.ndarray]:
    """Trainable arrays (BatchNorm running statistics are buffers, not parameters)."""
    return [a for name, a in node.parameters().items() if name not in ("running_mean", "running_var")]


def _uses_per_weight(graph: ir.Graph, node: ir.Node, per_input: np.ndarray | None = None) -> np.ndarray:
    """For each weight of ``node``: ``per_input`` (float64, the layer's input shape;
    default all ones) summed over the input positions the weight is applied to.

    With the default this is how often the synapse is used per sample and time
    step on real inputs (padding excluded); with a count of non-zero inputs, its
    effective operations (NeuroBench's gather of non-zero activations).
    """
    input_shape = graph.shapes[node.inputs[0]]
    if per_input is None:
        per_input = np.ones(input_shape, np.float64)
    if isinstance(node, ir.Conv2d):  # a Conv1d over [C, L] as the Conv2d over [C, 1, L] it is stored as
        output_shape = graph.shapes[node.name]
        if isinstance(node, ir.Conv1d):
            per_input, output_shape = per_input[:, None, :], (output_shape[0], 1, output_shape[1])
        return _conv_input_per_weight(node, per_input, output_shape)
    return np.broadcast_to(per_input.reshape(1, -1), node.weight.shape).astype(np.float64)


def layer_costs(graph: ir.Graph) -> list[LayerCost]:
    costs = []
    for node in graph:
        arrays = _trainable(node)
        synapses = synapses_nonzero = 0
        uses = None  # per weight, per sample and time step
        if ir.has_synapses(node):
            synapses = int(node.weight.size)
            synapses_nonzero = int(np.count_nonzero(node.weight))
            uses = _uses_per_weight(graph, node)
        costs.append(
            LayerCost(
                name=node.name,
                kind=node.kind,
                output_shape=graph.shapes[node.name],
                params=int(sum(a.size for a in arrays)),
                nonzero=int(sum(np.count_nonzero(a) for a in arrays)),
                synapses=synapses,
                synapses_nonzero=synapses_nonzero,
                macs=0 if uses is None else int(round(uses.sum())),
                macs_nonzero=0 if uses is None else int(round(uses[node.weight != 0].sum())),
            )
        )
    return costs


def summarize(graph: ir.Graph) -> dict:
    """A JSON-ready summary: totals plus one entry per layer (neuron parameters included).

    ``params`` counts surviving synapses (nonzero Linear and Conv2d weights), as the
    ``params`` resource of a compression does; ``parameters`` counts every trainable
    number (synapses pruned or not, biases, BatchNorm scale and shift).
    """
    costs = layer_costs(graph)
    synapses = sum(c.synapses for c in costs)
    synapses_nonzero = sum(c.synapses_nonzero for c in costs)
    layers = []
    for node, cost in zip(graph, costs):
        entry = asdict(cost)
        entry["parameters"], entry["parameters_nonzero"] = entry.pop("params"), entry.pop("nonzero")
        entry["params"] = cost.synapses_nonzero
        entry["output_shape"] = list(cost.output_shape)
        entry["inputs"] = list(node.inputs)
        entry["connectivity"] = cost.connectivity
        if isinstance(node, (ir.Neuron, ir.SynapticNeuron)):
            if isinstance(node, ir.Neuron):
                model = "IF" if node.is_if else "LIF"
            else:
                model = "RecurrentCubaLIF" if node.recurrent else "CubaLIF"
            entry["neuron"] = {
                "model": model,
                **{k: getattr(node, k) for k in (
                    "reset", "reset_delay", "fire_on_equal", "surrogate", "alpha", "detach_reset",
                )},
                # a per-neuron parameter as its range and shape, the others as their float
                **{k: ({"min": float(v.min()), "max": float(v.max()), "shape": list(v.shape)}
                       if isinstance(v, np.ndarray) else v)
                   for k, v in ((k, getattr(node, k)) for k in node.PARAMETERS)},
                "count": int(np.prod(graph.shapes[node.name])),
            }
        if isinstance(node, ir.Readout):
            entry["readout"] = {"mode": node.mode, "beta": node.beta}
        layers.append(entry)
    return {
        "input_shape": list(graph.input.shape),
        "classes": graph.num_classes,
        "neurons": int(sum(np.prod(graph.shapes[n.name]) for n in graph.neurons())),
        "params": synapses_nonzero,
        "parameters": sum(c.params for c in costs),
        "parameters_nonzero": sum(c.nonzero for c in costs),
        "synapses": synapses,
        "synapses_nonzero": synapses_nonzero,
        "connectivity": synapses_nonzero / synapses if synapses else 1.0,
        "macs_per_step": sum(c.macs for c in costs),
        "macs_per_step_nonzero": sum(c.macs_nonzero for c in costs),
        "metadata": dict(graph.metadata),
        "layers": layers,
    }


# ---------------------------------------------------------------------------
# Resource models for compression: what each synapse costs per inference
# ---------------------------------------------------------------------------
RESOURCES = ("params", "macs", "synops", "energy")  # what a budget can limit
FIGURES = ("params", "macs", "effective_macs", "synops", "energy")  # what a report states
MEASURED = ("effective_macs", "synops", "energy")  # figures that depend on the data


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in pJ (45 nm figures of Horowitz, ISSCC 2014, as used in SNN papers)."""

    e_mac_pj: float = 4.6  # a multiply-accumulate, for layers fed by non-spike (analog) input
    e_ac_pj: float = 0.9  # an accumulate, one per synaptic operation of a spike


@dataclass
class Activity:
    """What reaches each synapse layer per inference, measured on data.

    ``nonzero[layer]``: mean over samples of how many of the T time steps each
    input element is non-zero (for spikes: how many spikes each input neuron sends
    per inference), float64 of the layer's input shape. ``spiking[layer]``: the
    input is binary (spikes), so a surviving synapse costs one accumulate per
    arriving spike; otherwise one multiply-accumulate per non-zero input value.
    """

    time_steps: int
    nonzero: dict[str, np.ndarray]
    spiking: dict[str, bool]


def measure_activity(graph: ir.Graph, x: np.ndarray, batch_size: int = 256) -> Activity:
    """Run ``x`` ``[T, N, ...]`` through the simulator and record every synapse layer's input."""
    from .simulate import Trace, forward

    synapse_layers = {n.name for n in graph.prunable()}
    # recurrent synapses carry the layer's own spikes (counted over all T steps: the last step's
    # spikes, which reach no further step, are an upper bound of at most one per neuron)
    recurrent = {n.name for n in graph.prunable() if isinstance(n, ir.SynapticNeuron)}
    counts = {name: np.zeros(graph.shapes[graph[name].inputs[0]], np.float64) for name in synapse_layers}
    spiking = {name: True for name in synapse_layers}

    def observe(node, inputs):
        if node.name in synapse_layers and node.name not in recurrent:
            (values,) = inputs
            counts[node.name] += np.count_nonzero(values.reshape(-1, *counts[node.name].shape), axis=0)
            if spiking[node.name]:
                spiking[node.name] = bool(np.all((values == 0) | (values == 1)))

    samples = x.shape[1]
    for start in range(0, samples, batch_size):
        trace = Trace(observe=observe)
        forward(graph, np.ascontiguousarray(x[:, start : start + batch_size], dtype=np.float32), trace)
        for name in recurrent:
            counts[name] += trace.spike_counts[name].sum(axis=0)
    return Activity(int(x.shape[0]), {k: v / samples for k, v in counts.items()}, spiking)


def _conv_input_per_weight(node: ir.Conv2d, per_input: np.ndarray, output_shape) -> np.ndarray:
    """For each weight (co, ci, kh, kw): ``per_input`` summed over the input positions
    its tap covers at all output positions (zero padding adds nothing)."""
    out_channels, in_per_group, kh, kw = node.weight.shape
    _, out_h, out_w = output_shape
    (ph, pw), (sh, sw), (dh, dw) = node.padding, node.stride, node.dilation
    padded = np.pad(per_input, ((0, 0), (ph, ph), (pw, pw)))
    per_channel = np.empty((per_input.shape[0], kh, kw), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh : i * dh + sh * (out_h - 1) + 1 : sh, j * dw : j * dw + sw * (out_w - 1) + 1 : sw]
            per_channel[:, i, j] = window.sum(axis=(1, 2))
    per_group = out_channels // node.groups
    group_of_output = np.arange(out_channels) // per_group
    channels = group_of_output[:, None] * in_per_group + np.arange(in_per_group)[None, :]
    return per_channel[channels]  # [co, ci_local, kh, kw]


def weight_costs(
    graph: ir.Graph,
    resource: str,
    activity: Activity | None = None,
    energy: EnergyModel = EnergyModel(),
    time_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Cost per inference of keeping each synapse (float64, the shape of each layer's weight).

    ``resource`` is one of :data:`FIGURES` (definitions and sources: docs/resources.md):

    - params: 1 per synapse;
    - macs (dense): its uses on real input positions per time step, times T, as if
      every input were non-zero (NeuroBench's dense synaptic operations);
    - effective_macs: for a layer fed by non-spike input, its uses on non-zero
      input values per inference (NeuroBench's Effective_MACs); 0 for spike-fed layers;
    - synops: for a layer fed by spikes, the spikes it carries per inference
      (NeuroBench's Effective_ACs); 0 for other layers;
    - energy (pJ): ``e_ac`` x synops + ``e_mac`` x effective_macs.

    Measured figures need ``activity``; they are means over its samples.
    Raises ValueError for an unknown resource or missing activity.
    """
    if resource not in FIGURES:
        raise ValueError(f"unknown resource {resource!r}; choose one of {', '.join(FIGURES)}")
    if resource in MEASURED and activity is None:
        raise ValueError(f"the {resource} model needs measured activity")
    steps = activity.time_steps if activity is not None else (time_steps or 1)
    costs = {}
    for node in graph.prunable():
        if resource == "params":
            costs[node.name] = np.ones(node.weight.shape)
            continue
        if resource == "macs":
            costs[node.name] = steps * _uses_per_weight(graph, node)
            continue
        spiking = activity.spiking[node.name]
        if (resource == "synops" and not spiking) or (resource == "effective_macs" and spiking):
            costs[node.name] = np.zeros(node.weight.shape)
            continue
        operations = _uses_per_weight(graph, node, activity.nonzero[node.name])
        if resource == "energy":
            operations = (energy.e_ac_pj if spiking else energy.e_mac_pj) * operations
        costs[node.name] = operations
    return costs


def resource_figures(graph: ir.Graph, activity: Activity, energy: EnergyModel = EnergyModel()) -> dict[str, float]:
    """Every figure of :data:`FIGURES` for ``graph`` (surviving synapses only), per inference."""
    figures = {}
    for resource in FIGURES:
        costs = weight_costs(graph, resource, activity, energy)
        figures[resource] = float(sum(np.sum(c[graph[name].weight != 0]) for name, c in costs.items()))
    return figures
