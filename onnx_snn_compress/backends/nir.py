"""Write an IR graph as a NIR graph (neuromorphs/NIR, HDF5) for neuromorphic toolchains.

The inverse of frontends/nir.py's forward-Euler reading over a time step ``dt``::

    Neuron (beta < 1)  ->  LIF  tau = dt/(1 - beta), r = gain/(1 - beta), v_leak, v_threshold, v_reset
    Neuron (beta = 1)  ->  IF   r = gain/dt, v_threshold, v_reset
    Readout leaky      ->  LI   tau = dt/(1 - beta), r = 1/(1 - beta), v_leak = 0   (I with r = 1/dt for beta = 1)
    SynapticNeuron     ->  CubaLIF  tau_syn = dt/(1 - current_decay), tau_mem = dt/(1 - beta),
                           r = gain/(1 - beta), w_in = 1/(1 - current_decay) (snnTorch's and SpikingJelly's
                           convention), v_leak, v_threshold, v_reset; recurrent synapses as an Affine
                           (Linear when the bias is zero) ``<name>.recurrent`` in a cycle with the neuron

Neuron parameters are written per neuron (arrays of the layer's shape, holding one
value as the peers do, or the per-neuron values) in float64. What NIR cannot say (a subtract reset, its
delay, firing on ``>=``, ``v_init``, the surrogate) goes into each node's
metadata (``snn.*``) and makes our own reader exact; other tools see NIR's
reset to ``v_reset`` (:func:`to_nir` returns notes saying so). The graph's
metadata records ``snn.dt``, the readout and the provenance.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np

from .. import ir
from ..errors import UnsupportedOpError
from ..files import atomic_write_bytes
from ..frontends.nir import PRODUCER, import_nir

# The time step a written file declares unless told otherwise: snnTorch's and SpikingJelly's NIR exports
# use 1e-4, and snnTorch's import_from_nir assumes it for every LIF (bench/nir_into_snntorch.py)
DEFAULT_DT = 1e-4


def _full(shape, value) -> np.ndarray:
    """A parameter over a layer of ``shape``: one value, or per-neuron values broadcast to it."""
    return np.array(np.broadcast_to(np.asarray(value, np.float64), shape))


def _exact(value, shape) -> str:
    """A float32 parameter as our reader takes it back exactly: ``repr``, or the layer's values comma-separated."""
    if isinstance(value, np.ndarray):
        return ",".join(repr(float(v)) for v in np.broadcast_to(value, shape).ravel())
    return repr(value)


class _Writer:
    def __init__(self, graph: ir.Graph, dt: float, nir):
        self.graph, self.dt, self.nir = graph, dt, nir
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[str, list[str]] = {}  # IR node -> NIR nodes whose outputs sum to it
        self.notes: list[str] = []

    def add(self, node: ir.Node, nir_node, inputs: tuple[str, ...] | None = None) -> None:
        self.nodes[node.name] = nir_node
        for source in node.inputs if inputs is None else inputs:
            for nir_source in self.sources[source]:
                self.edges.append((nir_source, node.name))
        self.sources[node.name] = [node.name]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _write_input(w: _Writer, node: ir.Input):
    w.add(node, w.nir.Input(input_type={"input": np.array(node.shape)}))


def _write_linear(w: _Writer, node: ir.Linear):
    weight = node.weight.astype(np.float32)
    nir_node = w.nir.Linear(weight=weight) if node.bias is None else w.nir.Affine(weight=weight, bias=node.bias.astype(np.float32))
    w.add(node, nir_node)


def _write_conv(w: _Writer, node: ir.Conv2d):
    bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
    if isinstance(node, ir.Conv1d):  # NIR's Conv1d: the user's weight [out, in, k] over [C, L]
        (length,) = w.graph.shapes[node.inputs[0]][1:]
        w.add(node, w.nir.Conv1d(
            input_shape=length, weight=node.weight[:, :, 0, :].astype(np.float32), stride=node.stride[1],
            padding=node.padding[1], dilation=node.dilation[1], groups=node.groups, bias=bias.astype(np.float32),
        ))
        return
    height, width = w.graph.shapes[node.inputs[0]][1:]
    w.add(node, w.nir.Conv2d(
        input_shape=(height, width), weight=node.weight.astype(np.float32), stride=node.stride,
        padding=node.padding, dilation=node.dilation, groups=node.groups, bias=bias.astype(np.float32),
    ))


def _write_avgpool(w: _Writer, node: ir.AvgPool2d):
    if any(node.padding) and not node.count_include_pad:
        raise UnsupportedOpError(f"AvgPool2d {node.name!r}: NIR's AvgPool2d has no count_include_pad=False with padding")
    w.add(node, w.nir.AvgPool2d(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
                                padding=np.array(node.padding)))


def _write_flatten(w: _Writer, node: ir.Flatten):
    shape = np.array(w.graph.shapes[node.inputs[0]])
    w.add(node, w.nir.Flatten(input_type={"input": shape}, start_dim=0, end_dim=-1))


def _write_add(w: _Writer, node: ir.Add):
    # NIR sums every edge into a node: the Add is its inputs' edges to the Add's consumers
    w.sources[node.name] = [s for source in node.inputs for s in w.sources[source]]


def _write_dropout(w: _Writer, node: ir.Dropout):
    w.sources[node.name] = w.sources[node.inputs[0]]


def _metadata(node, shape) -> dict[str, str]:
    """What NIR cannot say about a neuron of a layer of ``shape``, for this tool's reader (``snn.*``)."""
    return {
        "snn.reset": node.reset, "snn.reset_delay": str(int(node.reset_delay)),
        "snn.fire_on_equal": str(int(node.fire_on_equal)), "snn.v_init": _exact(node.v_init, shape),
        "snn.beta": _exact(node.beta, shape), "snn.gain": _exact(node.gain, shape), "snn.surrogate": node.surrogate,
        "snn.alpha": repr(node.alpha), "snn.detach_reset": str(int(node.detach_reset)),
    }


def _write_neuron(w: _Writer, node: ir.Neuron):
    shape = w.graph.shapes[node.name]
    metadata = _metadata(node, shape)
    if node.is_if:
        nir_node = w.nir.IF(r=_full(shape, node.gain / w.dt), v_threshold=_full(shape, node.v_threshold),
                            v_reset=_full(shape, node.v_reset), metadata=metadata)
        natural_init = node.v_reset
    else:
        if np.any(np.asarray(node.beta) == 1.0):
            raise UnsupportedOpError(f"neuron {node.name!r}: a layer whose neurons are partly IF (beta = 1) and "
                                     f"partly LIF cannot be written as one NIR node")
        leak = 1.0 - node.beta
        nir_node = w.nir.LIF(tau=_full(shape, w.dt / leak), r=_full(shape, node.gain / leak),
                             v_leak=_full(shape, node.v_leak), v_threshold=_full(shape, node.v_threshold),
                             v_reset=_full(shape, node.v_reset), metadata=metadata)
        natural_init = node.v_leak
    _note_conventions(w, node, natural_init)
    w.add(node, nir_node)


def _note_conventions(w: _Writer, node, natural_init: float) -> None:
    if node.reset != "hard":
        w.note(f"neuron {node.name!r}: NIR has no {node.reset} reset; written as NIR's reset to v_reset with "
               f"snn.reset={node.reset} in the node's metadata (only this tool reads it)")
    elif node.reset_delay:
        w.note(f"neuron {node.name!r}: NIR has no delayed reset; recorded in the node's metadata only")
    if node.fire_on_equal:
        w.note(f"neuron {node.name!r} fires on H >= v_threshold; NIR defines H > v_threshold "
               f"(recorded in the node's metadata)")
    if np.any(np.asarray(node.v_init) != natural_init):
        start = f"{node.v_init:g}" if isinstance(node.v_init, float) else "per-neuron values"
        w.note(f"neuron {node.name!r} starts at v_init = {start}, which NIR cannot say "
               f"(recorded in the node's metadata)")


def _write_synaptic_neuron(w: _Writer, node: ir.SynapticNeuron):
    if np.any(np.asarray(node.beta) == 1.0) or np.any(np.asarray(node.current_decay) == 1.0):
        raise UnsupportedOpError(f"SynapticNeuron {node.name!r}: NIR's CubaLIF has no form without leak "
                                 f"(beta = {node.describe_parameter(node.beta)}, "
                                 f"current_decay = {node.describe_parameter(node.current_decay)})")
    shape = w.graph.shapes[node.name]
    leak, synapse = 1.0 - np.asarray(node.beta, np.float64), 1.0 - np.asarray(node.current_decay, np.float64)
    metadata = {**_metadata(node, shape), "snn.current_decay": _exact(node.current_decay, shape)}
    w.add(node, w.nir.CubaLIF(
        tau_syn=_full(shape, w.dt / synapse), tau_mem=_full(shape, w.dt / leak), r=_full(shape, node.gain / leak),
        v_leak=_full(shape, node.v_leak), v_threshold=_full(shape, node.v_threshold),
        v_reset=_full(shape, node.v_reset), w_in=_full(shape, 1.0 / synapse), metadata=metadata))
    _note_conventions(w, node, node.v_leak)
    if node.recurrent:
        name = f"{node.name}.recurrent"
        weight = node.weight.astype(np.float32)
        w.nodes[name] = (w.nir.Affine(weight=weight, bias=node.bias.astype(np.float32)) if np.any(node.bias)
                         else w.nir.Linear(weight=weight))
        w.edges += [(node.name, name), (name, node.name)]


def _write_readout(w: _Writer, node: ir.Readout):
    source = node.inputs[0]
    if node.mode == "leaky":
        shape = w.graph.shapes[source]
        name = f"{node.name}.integrator"
        if node.beta == 1.0:
            integrator = w.nir.I(r=_full(shape, 1.0 / w.dt))
        else:
            leak = 1.0 - node.beta
            integrator = w.nir.LI(tau=_full(shape, w.dt / leak), r=_full(shape, 1.0 / leak), v_leak=_full(shape, 0.0))
        w.nodes[name] = integrator
        w.edges.extend((s, name) for s in w.sources[source])
        w.sources[name] = [name]
        source = name
        w.note(f"readout {node.name!r}: NIR's LI outputs the membrane trace; this tool's reader takes its mean over time")
    elif node.mode == "rate":
        w.note(f"readout {node.name!r}: NIR's Output carries the spike train; the mean over time (rate) is "
               f"recorded as snn.readout in the graph's metadata")
    w.nodes[node.name] = w.nir.Output(output_type={"output": np.array(w.graph.shapes[node.inputs[0]])})
    w.edges.extend((s, node.name) for s in w.sources[source])


def _unsupported(w: _Writer, node: ir.Node):
    raise UnsupportedOpError(f"{node.kind} {node.name!r} has no NIR equivalent; NIR files cannot hold it")


_WRITERS = {
    ir.Input: _write_input,
    ir.Linear: _write_linear,
    ir.Conv2d: _write_conv,
    ir.Conv1d: _write_conv,
    ir.MaxPool1d: _unsupported,
    ir.AvgPool1d: _unsupported,
    ir.AvgPool2d: _write_avgpool,
    ir.MaxPool2d: _unsupported,
    ir.BatchNorm: _unsupported,
    ir.Flatten: _write_flatten,
    ir.Add: _write_add,
    ir.Dropout: _write_dropout,
    ir.Neuron: _write_neuron,
    ir.SynapticNeuron: _write_synaptic_neuron,
    ir.Readout: _write_readout,
}


def fold_batchnorm(graph: ir.Graph) -> tuple[ir.Graph, list[str]]:
    """The graph with each BatchNorm folded into the Conv2d / Linear right before it, and a note per fold.

    Inference BatchNorm is affine per output channel: with ``s = weight / sqrt(running_var + eps)``,
    ``W' = W * s`` (over the output axis) and ``b' = (b - running_mean) * s + bias``. Exact up to
    float32 rounding. A BatchNorm after any other node, or after a layer that something else also
    reads, is kept (and the NIR writer refuses it by name).
    """
    readers: dict[str, int] = {}
    for node in graph:
        for source in node.inputs:
            readers[source] = readers.get(source, 0) + 1
    layers = {n.name: n for n in graph}
    folded: dict[str, str] = {}  # BatchNorm -> the layer that now computes it
    nodes, notes = [], []
    for node in graph:
        source = layers.get(node.inputs[0]) if node.inputs else None
        if isinstance(node, ir.BatchNorm) and isinstance(source, (ir.Conv2d, ir.Linear)) and readers[source.name] == 1:
            scale = node.weight.astype(np.float64) / np.sqrt(node.running_var.astype(np.float64) + float(node.eps))
            bias = source.bias.astype(np.float64) if source.bias is not None else 0.0
            weight = source.weight * scale.reshape(-1, *[1] * (source.weight.ndim - 1))
            nodes[-1] = dataclasses.replace(
                nodes[-1], weight=weight.astype(np.float32),
                bias=((bias - node.running_mean) * scale + node.bias).astype(np.float32))
            folded[node.name] = source.name
            notes.append(f"BatchNorm {node.name!r} folded into {source.kind} {source.name!r} (NIR has no batch norm)")
            continue
        renamed = tuple(folded.get(s, s) for s in node.inputs)
        nodes.append(dataclasses.replace(node, inputs=renamed) if renamed != node.inputs else node)
    return (ir.Graph(nodes, dict(graph.metadata)) if folded else graph), notes


def to_nir(graph: ir.Graph, dt: float = DEFAULT_DT):
    """``(nir.NIRGraph, notes)``: the graph with neurons as continuous-time ODEs over time step ``dt``
    (BatchNorm folded first, :func:`fold_batchnorm`)."""
    nir = import_nir()
    if not (np.isfinite(dt) and dt > 0):
        raise UnsupportedOpError(f"the NIR time step must be positive, got {dt}")
    graph, folds = fold_batchnorm(graph)
    writer = _Writer(graph, float(dt), nir)
    writer.notes.extend(folds)
    for node in graph:
        _WRITERS[type(node)](writer, node)
    metadata = {"snn.producer": PRODUCER, "snn.dt": repr(float(dt)), "snn.readout": graph.readout.mode,
                "snn.source_framework": graph.metadata.get("source_framework", "unknown")}
    metadata.update({f"snn.meta.{k}": v for k, v in graph.metadata.items()})
    return nir.NIRGraph(nodes=writer.nodes, edges=writer.edges, metadata=metadata, type_check=False), writer.notes


def to_bytes(graph: ir.Graph, dt: float = DEFAULT_DT) -> tuple[bytes, list[str]]:
    nir = import_nir()
    nir_graph, notes = to_nir(graph, dt)
    buffer = io.BytesIO()
    nir.write(buffer, nir_graph)
    return buffer.getvalue(), notes


def save(graph: ir.Graph, path: str | os.PathLike, dt: float = DEFAULT_DT) -> list[str]:
    """Write the graph to ``path`` as NIR atomically; returns notes on what NIR readers will not see."""
    data, notes = to_bytes(graph, dt)
    atomic_write_bytes(path, data)
    return notes
