"""What a network costs: parameters, surviving synapses (connectivity), MACs per time step.

Synapses are the weights of Linear and Conv2d layers; connectivity is the share
of them that is nonzero. MACs count one multiply-accumulate per synapse use in
one time step: ``out * in`` for Linear, ``C_out * H_out * W_out * C_in/groups * kh * kw``
for Conv2d; the ``nonzero`` variant counts only surviving synapses (for Conv2d,
each surviving weight is used ``H_out * W_out`` times, padding ignored).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import ir


@dataclass
class LayerCost:
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


def _uses_per_weight(graph: ir.Graph, node: ir.Node) -> int:
    """How often one synapse is used per sample and time step."""
    if isinstance(node, ir.Conv2d):
        _, height, width = graph.shapes[node.name]
        return height * width
    return 1


def layer_costs(graph: ir.Graph) -> list[LayerCost]:
    costs = []
    for node in graph:
        arrays = _trainable(node)
        synapses = synapses_nonzero = 0
        if isinstance(node, ir.PRUNABLE_KINDS):
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
                macs=synapses * uses,
                macs_nonzero=synapses_nonzero * uses,
            )
        )
    return costs


def summarize(graph: ir.Graph) -> dict:
    """A JSON-ready summary: totals plus one entry per layer (neuron parameters included)."""
    costs = layer_costs(graph)
    synapses = sum(c.synapses for c in costs)
    synapses_nonzero = sum(c.synapses_nonzero for c in costs)
    layers = []
    for node, cost in zip(graph, costs):
        entry = asdict(cost)
        entry["output_shape"] = list(cost.output_shape)
        entry["inputs"] = list(node.inputs)
        entry["connectivity"] = cost.connectivity
        if isinstance(node, ir.Neuron):
            entry["neuron"] = {
                "model": "IF" if node.is_if else "LIF",
                **{k: getattr(node, k) for k in (
                    "beta", "v_threshold", "v_reset", "v_leak", "v_init", "gain", "reset",
                    "reset_delay", "fire_on_equal", "surrogate", "alpha", "detach_reset",
                )},
                "count": int(np.prod(graph.shapes[node.name])),
            }
        if isinstance(node, ir.Readout):
            entry["readout"] = {"mode": node.mode, "beta": node.beta}
        layers.append(entry)
    return {
        "input_shape": list(graph.input.shape),
        "classes": graph.num_classes,
        "neurons": int(sum(np.prod(graph.shapes[n.name]) for n in graph.neurons())),
        "params": sum(c.params for c in costs),
        "nonzero": sum(c.nonzero for c in costs),
        "synapses": synapses,
        "synapses_nonzero": synapses_nonzero,
        "connectivity": synapses_nonzero / synapses if synapses else 1.0,
        "macs_per_step": sum(c.macs for c in costs),
        "macs_per_step_nonzero": sum(c.macs_nonzero for c in costs),
        "metadata": dict(graph.metadata),
        "layers": layers,
    }
