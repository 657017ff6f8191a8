"""Read an ONNX model in the SNN-ONNX profile (docs/profile.md) back into the IR.

Walks the ONNX graph in order with one reader per op, tracking for every tensor
which IR node it carries and in which layout (``[T, N, ...]`` or ``[T*N, ...]``).
Layout-only Reshapes and the shape plumbing around them vanish; everything else
must be a profile op, or the error names the node and its op.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .. import ir, profile
from ..errors import ModelError, UnsupportedOpError
from .onnx_file import attributes, describe, symmetric_pads

TIME, MERGED = "time", "merged"

# Ops that only compute shapes (for the Reshapes between layouts); they carry no IR tensor.
SHAPE_PLUMBING = {"Shape", "Concat", "Constant", "ConstantOfShape", "Slice", "Gather", "Unsqueeze", "Squeeze", "Cast"}




class _Reader:
    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.tensors: dict[str, tuple[str, str]] = {}  # ONNX tensor -> (IR node name, layout)
        self.nodes: list[ir.Node] = []
        self.names: set[str] = set()
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.leaky: dict[str, tuple[str, float]] = {}  # snn::LI output -> (IR source, beta)

    # -- helpers -------------------------------------------------------------
    def source(self, node: onnx.NodeProto, index: int = 0, layout: str | None = None) -> str:
        name = node.input[index]
        if name not in self.tensors:
            raise UnsupportedOpError(f"{describe(node)} reads {name!r}, which is not the output of a layer")
        ir_name, actual = self.tensors[name]
        if layout is not None and actual != layout:
            wanted = "[T*N, ...]" if layout == MERGED else "[T, N, ...]"
            raise ModelError(f"{describe(node)} expects its input in the {wanted} layout of the profile")
        return ir_name

    def constant(self, node: onnx.NodeProto, index: int) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.constants:
            raise UnsupportedOpError(f"{describe(node)}: input {name!r} must be an initializer or Constant")
        return self.constants[name]

    def ir_name(self, node: onnx.NodeProto) -> str:
        name = node.name or node.output[0]
        if name in self.names:
            name = node.output[0]
        if name in self.names:
            raise ModelError(f"two nodes are named {name!r}")
        return name

    def add(self, onnx_node: onnx.NodeProto, ir_node: ir.Node, layout: str) -> None:
        self.shapes[ir_node.name] = ir_node.output_shape([self.shapes[s] for s in ir_node.inputs])
        self.nodes.append(ir_node)
        self.names.add(ir_node.name)
        self.tensors[onnx_node.output[0]] = (ir_node.name, layout)

    def alias(self, onnx_node: onnx.NodeProto, layout: str | None = None) -> None:
        ir_name, actual = self.tensors[onnx_node.input[0]]
        self.tensors[onnx_node.output[0]] = (ir_name, layout or actual)


# -- readers: one per op ------------------------------------------------------

def _read_gemm(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise UnsupportedOpError(f"{describe(node)}: only Gemm with transA=0, alpha=1, beta=1 is a Linear layer")
    weight = reader.constant(node, 1)
    weight = weight if attrs.get("transB", 0) else weight.T
    bias = reader.constant(node, 2)
    source = reader.source(node, 0, MERGED)
    reader.add(node, ir.Linear(reader.ir_name(node), (source,), weight=weight, bias=bias), MERGED)


def _read_conv(reader: _Reader, node):
    attrs = attributes(node)
    weight = reader.constant(node, 1)
    if weight.ndim not in (3, 4):
        raise UnsupportedOpError(f"{describe(node)}: only 1-D and 2-D convolutions are supported")
    axes = weight.ndim - 2
    source = reader.source(node, 0, MERGED)
    layer = (ir.Conv1d if axes == 1 else ir.Conv2d)(
        reader.ir_name(node), (source,), weight=weight, bias=reader.constant(node, 2),
        stride=tuple(attrs.get("strides", (1,) * axes)), padding=symmetric_pads(node, attrs, axes),
        dilation=tuple(attrs.get("dilations", (1,) * axes)), groups=attrs.get("group", 1),
    )
    reader.add(node, layer, MERGED)


def _read_batchnorm(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOpError(f"{describe(node)}: training_mode BatchNormalization is not an inference model")
    weight, bias, mean, var = (reader.constant(node, i) for i in range(1, 5))
    source = reader.source(node, 0, MERGED)
    layer = ir.BatchNorm(
        reader.ir_name(node), (source,), weight=weight, bias=bias, running_mean=mean, running_var=var,
        eps=attrs.get("epsilon", 1e-5), momentum=float(np.float32(1.0 - np.float32(attrs.get("momentum", 0.9)))),
    )
    reader.add(node, layer, MERGED)


def _read_pool(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("storage_order", 0):
        raise UnsupportedOpError(f"{describe(node)}: ceil_mode, dilations and storage_order are not supported")
    kernel = tuple(attrs["kernel_shape"])
    axes = len(kernel)
    if axes not in (1, 2):
        raise UnsupportedOpError(f"{describe(node)}: only 1-D and 2-D pooling is supported")
    kwargs = dict(kernel_size=kernel, stride=tuple(attrs.get("strides", (1,) * axes)),
                  padding=symmetric_pads(node, attrs, axes))
    source = reader.source(node, 0, MERGED)
    if node.op_type == "AveragePool":
        kind = ir.AvgPool1d if axes == 1 else ir.AvgPool2d
        layer = kind(reader.ir_name(node), (source,), count_include_pad=bool(attrs.get("count_include_pad", 0)), **kwargs)
    else:
        layer = (ir.MaxPool1d if axes == 1 else ir.MaxPool2d)(reader.ir_name(node), (source,), **kwargs)
    reader.add(node, layer, MERGED)


def _read_flatten(reader: _Reader, node):
    if attributes(node).get("axis", 1) != 1:
        raise UnsupportedOpError(f"{describe(node)}: the profile's Flatten has axis=1 on [T*N, ...]")
    reader.add(node, ir.Flatten(reader.ir_name(node), (reader.source(node, 0, MERGED),)), MERGED)


def _read_add(reader: _Reader, node):
    first, second = reader.source(node, 0), reader.source(node, 1)
    layout = reader.tensors[node.input[0]][1]
    if reader.tensors[node.input[1]][1] != layout:
        raise ModelError(f"{describe(node)} adds tensors of different layouts")
    reader.add(node, ir.Add(reader.ir_name(node), (first, second)), layout)


def _read_dropout(reader: _Reader, node):
    ratio = reader.constant(node, 1)
    p = 0.5 if ratio is None else float(ratio)
    layout = reader.tensors.get(node.input[0], (None, None))[1]
    reader.add(node, ir.Dropout(reader.ir_name(node), (reader.source(node, 0),), p=p), layout)


def _read_reshape(reader: _Reader, node):
    ir_name, _ = reader.tensors.get(node.input[0], (None, None))
    if ir_name is None:
        raise UnsupportedOpError(f"{describe(node)} reshapes {node.input[0]!r}, which is not the output of a layer")
    features = reader.shapes[ir_name]
    target = reader.constants.get(node.input[1])
    if target is None:  # [T, -1, *features] built from the dynamic time steps: back to the time layout
        reader.alias(node, TIME)
        return
    target = [int(d) for d in target]
    if len(target) == len(features) + 1 and tuple(target[1:]) == features:
        reader.alias(node, MERGED)
    else:
        raise UnsupportedOpError(
            f"{describe(node)}: a Reshape to {target} is not a layout change of {features}; use Flatten"
        )


def _read_identity(reader: _Reader, node):
    reader.alias(node)


def _read_masked_weight(reader: _Reader, node):
    """``snn::MaskedWeight`` (compact storage): the weight, decoded exactly as the function body does."""
    mask_bits, values, shape = (reader.constant(node, i) for i in range(3))
    if mask_bits is None or values is None or shape is None or mask_bits.dtype != np.uint8 or values.ndim != 1:
        raise ModelError(f"{describe(node)} needs a uint8 mask, a float values vector and a shape")
    size = int(np.prod(shape))
    bits = np.unpackbits(mask_bits)[:size].astype(bool)
    if bits.size != size or int(bits.sum()) + 1 != values.size:
        raise ModelError(f"{describe(node)}: the mask has {int(bits.sum())} set bits of {bits.size} "
                         f"for {values.size - 1} values and {size} weights")
    weight = np.zeros(size, np.float32)
    weight[bits] = values[1:]
    reader.constants[node.output[0]] = weight.reshape(tuple(int(d) for d in shape))


def _read_neuron(reader: _Reader, node):
    attrs = attributes(node)
    fields = {a: attrs[a] for a in profile.NEURON_FLOAT_ATTRS + profile.NEURON_STRING_ATTRS if a in attrs}
    fields.update({a: bool(attrs[a]) for a in profile.NEURON_INT_ATTRS if a in attrs})
    if node.op_type == profile.IF:
        fields.update(beta=1.0, v_leak=0.0)
    if node.op_type == profile.LIF_PER_NEURON:
        _read_per_neuron(node, fields, profile.NEURON_PER_NEURON_ATTRS)
    source = reader.source(node, 0, TIME)
    reader.add(node, ir.Neuron(reader.ir_name(node), (source,), **fields), TIME)


def _read_per_neuron(node, fields: dict, names: tuple[str, ...]) -> None:
    """Replace the tensor attributes ``names`` of a per-neuron function's node by their arrays."""
    for name in names:
        if not isinstance(fields.get(name), onnx.TensorProto):
            raise ModelError(f"{describe(node)}: per-neuron {name} must be a tensor attribute")
        fields[name] = numpy_helper.to_array(fields[name])


def _read_synaptic_neuron(reader: _Reader, node):
    attrs = attributes(node)
    fields = {a: attrs[a] for a in profile.SYNAPTIC_FLOAT_ATTRS + profile.NEURON_STRING_ATTRS if a in attrs}
    fields.update({a: bool(attrs[a]) for a in profile.NEURON_INT_ATTRS if a in attrs})
    if node.op_type in (profile.CUBALIF_PER_NEURON, profile.RECURRENT_CUBALIF_PER_NEURON):
        _read_per_neuron(node, fields, profile.SYNAPTIC_PER_NEURON_ATTRS)
    if node.op_type in (profile.RECURRENT_CUBALIF, profile.RECURRENT_CUBALIF_PER_NEURON):
        fields.update(weight=reader.constant(node, 1), bias=reader.constant(node, 2))
        if fields["weight"] is None or fields["bias"] is None:
            raise ModelError(f"{describe(node)} needs its recurrent weight W and bias B as initializers")
    source = reader.source(node, 0, TIME)
    reader.add(node, ir.SynapticNeuron(reader.ir_name(node), (source,), **fields), TIME)


def _read_leaky_integrator(reader: _Reader, node):
    reader.leaky[node.output[0]] = (reader.source(node, 0, TIME), float(attributes(node).get("beta", 1.0)))


def _read_reduce_mean(reader: _Reader, node):
    attrs = attributes(node)
    axes = attrs.get("axes")
    if axes is None:
        axes = reader.constant(node, 1)
    if axes is None or list(np.atleast_1d(axes)) != [0] or attrs.get("keepdims", 1) != 0:
        raise UnsupportedOpError(f"{describe(node)}: the readout is a mean over time (axes=[0], keepdims=0)")
    if node.input[0] in reader.leaky:
        source, beta = reader.leaky[node.input[0]]
        readout = ir.Readout(reader.ir_name(node), (source,), mode="leaky", beta=beta)
    else:
        readout = ir.Readout(reader.ir_name(node), (reader.source(node, 0, TIME),), mode="rate")
    reader.add(node, readout, TIME)


_READERS = {
    ("", "Gemm"): _read_gemm,
    ("", "Conv"): _read_conv,
    ("", "BatchNormalization"): _read_batchnorm,
    ("", "MaxPool"): _read_pool,
    ("", "AveragePool"): _read_pool,
    ("", "Flatten"): _read_flatten,
    ("", "Add"): _read_add,
    ("", "Dropout"): _read_dropout,
    ("", "Reshape"): _read_reshape,
    ("", "Identity"): _read_identity,
    ("", "ReduceMean"): _read_reduce_mean,
    (profile.DOMAIN, profile.LIF): _read_neuron,
    (profile.DOMAIN, profile.IF): _read_neuron,
    (profile.DOMAIN, profile.CUBALIF): _read_synaptic_neuron,
    (profile.DOMAIN, profile.RECURRENT_CUBALIF): _read_synaptic_neuron,
    (profile.DOMAIN, profile.CUBALIF_PER_NEURON): _read_synaptic_neuron,
    (profile.DOMAIN, profile.RECURRENT_CUBALIF_PER_NEURON): _read_synaptic_neuron,
    (profile.DOMAIN, profile.LIF_PER_NEURON): _read_neuron,
    (profile.DOMAIN, profile.LI): _read_leaky_integrator,
    (profile.DOMAIN, profile.MASKED_WEIGHT): _read_masked_weight,
}


def _graph_input(graph: onnx.GraphProto) -> ir.Input:
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"an SNN-ONNX model has exactly one graph input [T, N, ...], this one has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    features = [d.dim_value if d.HasField("dim_value") else None for d in dims[2:]]
    if len(dims) < 3 or any(d is None or d <= 0 for d in features):
        raise ModelError(
            f"graph input {inputs[0].name!r} must be [T, N, ...features] with fixed feature sizes"
        )
    return ir.Input(inputs[0].name, shape=tuple(features))


def from_model(model: onnx.ModelProto) -> ir.Graph:
    """The IR of a profile model (bit-exact inverse of ``backends.onnx_profile.to_model``)."""
    declared = {p.key: p.value for p in model.metadata_props}.get(profile.KEY_PROFILE, profile.PROFILE_VERSION)
    if declared.split(".")[0] != profile.PROFILE_VERSION:
        raise ModelError(f"SNN-ONNX profile version {declared!r} is not supported (this tool reads version {profile.PROFILE_VERSION})")
    reader = _Reader(model)
    graph_input = _graph_input(model.graph)
    reader.nodes.append(graph_input)
    reader.names.add(graph_input.name)
    reader.shapes[graph_input.name] = graph_input.shape
    reader.tensors[graph_input.name] = (graph_input.name, TIME)
    for node in model.graph.node:
        key = (node.domain if node.domain not in ("ai.onnx",) else "", node.op_type)
        if key in _READERS:
            _READERS[key](reader, node)
        elif not node.domain and node.op_type in SHAPE_PLUMBING:
            if node.op_type == "Constant":
                reader.constants[node.output[0]] = numpy_helper.to_array(attributes(node)["value"])
            continue
        else:
            raise UnsupportedOpError(f"unsupported op: {describe(node)} is not part of the SNN-ONNX profile")
    if not any(isinstance(n, ir.SPIKING_KINDS) for n in reader.nodes):
        raise ModelError("the model holds no spiking neuron (no snn::LIF, snn::IF or snn::CubaLIF node)")
    output = model.graph.output[0].name
    if output not in reader.tensors:
        raise ModelError(f"graph output {output!r} is not produced by a layer of the profile")
    if not isinstance(reader.nodes[-1], ir.Readout):
        ir_name, layout = reader.tensors[output]
        if layout != TIME:
            raise ModelError(f"graph output {output!r} must be a spike train [T, N, C] or a rate [N, C]")
        name = output if output not in reader.names else f"{output}.readout"
        reader.nodes.append(ir.Readout(name, (ir_name,), mode="spikes"))
    metadata = {p.key: p.value for p in model.metadata_props if p.key not in profile.RESERVED_KEYS}
    # notes stored when this file was converted from another format are about that file, not this one:
    # kept as provenance (inspect shows them), not said again as notes on every read
    if "import_notes" in metadata:
        metadata["source_notes"] = metadata.pop("import_notes")
    return ir.Graph(reader.nodes, metadata)
