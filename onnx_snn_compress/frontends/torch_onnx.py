"""Lift a plain ``torch.onnx.export`` of an snnTorch / SpikingJelly / Norse SNN into the IR.

Such a file has no neurons: the exporter unrolls the time loop, and every neuron
layer becomes, at every time step, a few Mul/Add/Sub/Div ops ending in
``Cast(Greater(H - v_threshold, 0))`` (``GreaterOrEqual`` for SpikingJelly).
Constants are folded in, the batch size is baked into the initial state, and
step 0 is a collapsed special case. tests/fixtures/interop/README.md lists
what each peer emits.

How it reads (an abstract interpretation of the graph, one reader per op):

* Every ONNX tensor gets an abstract value: a constant; a tensor of an IR layer
  in one layout (``seq`` ``[T, N, *f]``, ``merged`` ``[T*N, *f]``, ``step``
  ``[N, *f]`` at one time step t, ``step1`` ``[1, N, *f]``); or a *symbolic*
  value: an :class:`Expr` over the layers' step tensors, for the elementwise
  neuron arithmetic.
* Stateless ops (Gemm, MatMul+Add, Conv, pooling, Flatten/Reshape, and the
  Gather/Slice/Squeeze/Unsqueeze/Concat that cut the time axis apart and glue
  it back) map one IR layer per weight, checked to occur at every step.
* When a stateless op consumes a symbolic value, that value must be a spike
  ``Cast(H > thr)``: it is the output of a neuron layer at some step. After the
  walk, each neuron layer is identified from its membrane recursion: ``H[t]``
  (t >= 1) is expanded into a polynomial over ``H[t-1]``, ``S[t-1]`` (the
  previous step's potential and spike) and the input ``X[t]``. Its coefficients
  must be the same at every step and have one of the shapes of
  :data:`RESET_FORMS` (the IR neuron's subtract / hard / none reset, with or
  without snnTorch's delay). Step 0 (state folded into constants) gives
  ``v_init`` and is checked against the same gain. A constant that holds
  different values per neuron (snnTorch ``learn_beta`` with a vector) makes its
  coefficients per-neuron arrays, and the neuron's parameters per-neuron (the
  threshold stays one value per layer). Anything else (a synaptic current, a
  recurrent connection) is an error naming the node.

The polynomial view makes the reader independent of how an exporter orders,
folds or de-duplicates the arithmetic (legacy vs dynamo, ``thr = 1`` dropping
its Mul, snnTorch recomputing the reset signal, ...).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .. import ir
from ..errors import ModelError, UnsupportedOpError
from .onnx_file import attributes, describe, symmetric_pads

# What an exporter's framework implies beyond the forward pass (training only),
# and whether an ambiguous hard reset is written in the peer's delayed form.
FRAMEWORK_DEFAULTS = {
    "snntorch": dict(surrogate="atan", alpha=2.0, detach_reset=True),
    "spikingjelly": dict(surrogate="sigmoid", alpha=4.0, detach_reset=False),
    "norse": dict(surrogate="fast_sigmoid", alpha=1.0, detach_reset=False),
    "unknown": dict(),
}
PREFERS_RESET_DELAY = ("snntorch",)

_MAX_DEPTH = 400  # expansion depth of one step's membrane expression
_MAX_TERMS = 64
_RTOL = 1e-6




def _close(a, b) -> bool:
    """Equal up to rounding; for per-neuron coefficients (arrays), for every neuron."""
    return bool(np.all(np.isclose(a, b, rtol=_RTOL, atol=1e-9)))


def _frozen(value) -> float | tuple:
    """A constant as a hashable value: a float, or per-neuron values as nested tuples (``np.asarray`` undoes it)."""
    return tuple(_frozen(v) for v in value) if np.ndim(value) else float(value)


def _text(value) -> str:
    """A coefficient for a message: a number, or the range of per-neuron values."""
    if np.ndim(value) == 0:
        return f"{float(value):.6g}"
    return f"[{np.min(value):.6g} .. {np.max(value):.6g} per neuron]"


# ---------------------------------------------------------------------------
# Abstract values
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class Tensor:
    """A tensor of IR layer ``layer`` in ``layout`` (``seq``, ``merged``, ``step``, ``step1``; for a batch-first
    input ``batchfirst`` and ``step1b``). ``step`` is None for a static input, the same at every step."""

    layer: str
    layout: str
    step: int | None = None


@dataclass(frozen=True)
class ShapeOf:
    """``Shape(x)`` of a non-constant tensor: only good for broadcasting a constant (Expand)."""


@dataclass(frozen=True)
class Rate:
    """The mean over time of a layer's spike train (``ReduceMean`` over axis 0)."""

    layer: str


class Expr:
    """A node of the symbolic elementwise computation of the neuron layers.

    ``op``: ``const`` (value: float), ``input`` (value: (layer, step)), ``add``,
    ``neg``, ``mul``, ``div`` (by the constant ``value``), ``compare`` (boolean
    ``arg > thr``; value: (thr, or_equal)) and ``spike`` (its 0/1 float cast).
    """

    __slots__ = ("op", "args", "value", "origin")

    def __init__(self, op: str, args: tuple = (), value=None, origin: onnx.NodeProto | None = None):
        self.op, self.args, self.value, self.origin = op, args, value, origin

    def __repr__(self):
        return f"Expr({self.op}, {self.value})"


@dataclass(frozen=True)
class Sym:
    expr: Expr


# ---------------------------------------------------------------------------
# Layers as they are discovered
# ---------------------------------------------------------------------------
@dataclass(eq=False)
class LayerSpec:
    """An IR layer in the making: its kind, inputs, arguments and the steps it was seen at."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    args: dict = field(default_factory=dict)
    steps: set = field(default_factory=set)
    whole: bool = False  # seen on the whole sequence (seq / merged layout) rather than per step
    origin: onnx.NodeProto | None = None
    from_matmul: bool = False


@dataclass(eq=False)
class NeuronSpec(LayerSpec):
    spikes: dict = field(default_factory=dict)  # step -> spike Expr
    recurrent: str | None = None  # the Linear layer that feeds this layer's spikes back into it (snnTorch RLeaky)


CONSTANT_LAYER = ""  # the "layer" of a per-neuron constant atom (reader.vectors)


class _Reader:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.values: dict[str, object] = {t.name: Const(numpy_helper.to_array(t)) for t in self.graph.initializer}
        self.layers: dict[str, LayerSpec] = {}
        self.order: list[LayerSpec] = []
        self.by_key: dict[tuple, LayerSpec] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        self.inputs: dict[tuple, Expr] = {}
        self.spikes: dict[tuple, Expr] = {}
        self.vectors: dict[tuple, np.ndarray] = {}  # per-neuron constant atoms of neuron arithmetic
        self.neuron_of_input: dict[str, NeuronSpec] = {}
        self.time_steps = 0
        self.batch: int | None = None
        self.batch_first = False  # the input is [N, T, ...] (and so is a stacked output)
        self.names: set[str] = set()

    # -- values ---------------------------------------------------------------
    def value(self, node: onnx.NodeProto, index: int):
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            return None
        if name not in self.values:
            raise ModelError(f"{describe(node)} reads {name!r}, which no earlier node produces")
        return self.values[name]

    def constant(self, node: onnx.NodeProto, index: int, what: str = "input") -> np.ndarray | None:
        value = self.value(node, index)
        if value is None:
            return None
        if not isinstance(value, Const):
            raise UnsupportedOpError(f"{describe(node)}: its {what} {node.input[index]!r} must be a constant")
        return value.value

    def tensor(self, node: onnx.NodeProto, index: int, layouts: tuple[str, ...] | None = None) -> Tensor:
        """Input ``index`` as a layer tensor; a symbolic value is lifted to a neuron output first."""
        value = self.value(node, index)
        if isinstance(value, Sym):
            value = self.lift(value.expr, node)
        if not isinstance(value, Tensor):
            raise UnsupportedOpError(
                f"{describe(node)}: input {node.input[index]!r} is not the output of a layer of the network"
            )
        if layouts is not None and value.layout not in layouts:
            raise UnsupportedOpError(
                f"{describe(node)}: input {node.input[index]!r} has layout {value.layout} "
                f"({_LAYOUT_TEXT[value.layout]}); expected {' or '.join(_LAYOUT_TEXT[l] for l in layouts)}"
            )
        return value

    def set(self, node: onnx.NodeProto, value) -> None:
        self.values[node.output[0]] = value

    # -- layers -----------------------------------------------------------------
    def unique_name(self, wanted: str) -> str:
        wanted = wanted or "layer"
        name, k = wanted, 2
        while name in self.names:
            name, k = f"{wanted}_{k}", k + 1
        self.names.add(name)
        return name

    def layer(self, key: tuple, kind: str, inputs: tuple[str, ...], args: dict, name: str,
              origin: onnx.NodeProto, cls=LayerSpec) -> LayerSpec:
        spec = self.by_key.get(key)
        if spec is None:
            spec = cls(self.unique_name(name), kind, inputs, args, origin=origin)
            self.by_key[key] = spec
            self.layers[spec.name] = spec
            self.order.append(spec)
            self.shapes[spec.name] = _layer_shape(spec, [self.shapes[s] for s in inputs])
        return spec

    def output(self, node: onnx.NodeProto, spec: LayerSpec, source: Tensor) -> None:
        """Record that ``node`` computes ``spec`` on ``source`` (same layout and step)."""
        if source.layout in ("step", "step1"):
            spec.steps.add(source.step)
        else:
            spec.whole = True
        self.set(node, Tensor(spec.name, source.layout, source.step))

    # -- symbolic values ----------------------------------------------------------
    def input_expr(self, tensor: Tensor, node: onnx.NodeProto) -> Expr:
        if tensor.layout != "step":
            raise UnsupportedOpError(
                f"{describe(node)}: elementwise arithmetic on {_LAYOUT_TEXT[tensor.layout]} of layer "
                f"{tensor.layer!r}; only per-step neuron arithmetic on [N, ...] can be lifted"
            )
        key = (tensor.layer, tensor.step)
        if key not in self.inputs:
            self.inputs[key] = Expr("input", value=key, origin=node)
        return self.inputs[key]

    def spike(self, potential: Expr, threshold: float, or_equal: bool, origin: onnx.NodeProto) -> Expr:
        key = (id(potential), threshold, or_equal)
        if key not in self.spikes:
            self.spikes[key] = Expr("spike", (potential,), (threshold, or_equal), origin)
        return self.spikes[key]

    def _feeds_back(self, layer: str, layers: set) -> bool:
        """Is ``layer`` a Linear reading the spikes of the neuron layer that one of ``layers`` feeds (recurrent synapses)?"""
        spec = self.layers.get(layer)
        own = {self.neuron_of_input[m].name for m in layers if m in self.neuron_of_input}
        return spec is not None and spec.kind == "Linear" and spec.inputs[0] in own

    def lift(self, expr: Expr, consumer: onnx.NodeProto) -> Tensor:
        """The symbolic ``expr`` read by a layer op must be a neuron layer's spikes at one step."""
        if expr.op != "spike":
            raise UnsupportedOpError(
                f"{describe(consumer)} reads {_origin(expr)}, an elementwise result that is not a spike "
                f"Cast(Greater(H - v_threshold, 0)); only spiking neuron layers can be lifted "
                f"(graded spikes, membrane outputs and other arithmetic are not supported)"
            )
        sources = {s for s in _inputs_of_step(expr) if s[0] != CONSTANT_LAYER}
        if not sources:
            raise UnsupportedOpError(f"{_origin(expr)} is a spike that depends on no layer's input")
        recurrent = {s[0] for s in sources if self._feeds_back(s[0], {t[0] for t in sources})}
        sources = {s for s in sources if s[0] not in recurrent}
        layer = next(iter(sources))[0]
        if len({s[0] for s in sources}) != 1 or len(recurrent) > 1:
            raise UnsupportedOpError(
                f"{_origin(expr)}: one neuron reads several layers ({', '.join(sorted({s[0] for s in sources}))})"
            )
        spec = self.neuron_of_input.get(layer)
        if spec is None:
            spec = self.layer(("neuron", layer), "Neuron", (layer,), {}, _scope(expr.origin) or "neuron",
                              expr.origin, cls=NeuronSpec)
            self.neuron_of_input[layer] = spec
        if recurrent:
            (spec.recurrent,) = recurrent
        steps = [t for _, t in sources if t is not None]
        if steps:
            step = max(steps)
        else:  # reads only a static input: the exporter writes the steps in order
            step = next((t for t, s in spec.spikes.items() if s is expr), len(spec.spikes))
        known = spec.spikes.get(step)
        if known is not None and known is not expr:
            raise UnsupportedOpError(f"{_origin(expr)}: neuron layer {spec.name!r} has two different spikes at step {step}")
        spec.spikes[step] = expr
        spec.steps.add(step)
        return Tensor(spec.name, "step", step)


_LAYOUT_TEXT = {
    "seq": "the whole sequence [T, N, ...]",
    "merged": "the merged sequence [T*N, ...]",
    "step": "one time step [N, ...]",
    "step1": "one time step [1, N, ...]",
    "batchfirst": "the batch-first sequence [N, T, ...]",
    "step1b": "one time step [N, 1, ...]",
}


def _origin(expr: Expr) -> str:
    return describe(expr.origin) if expr.origin is not None else "a value"


def _inputs_of_step(expr: Expr) -> set:
    """The (layer, step) inputs a spike reads through the current step (not through stored state)."""
    found, stack, seen = set(), [expr], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if e.op == "input":
            found.add(e.value)
        stack.extend(e.args)
    return found


def _scope(node: onnx.NodeProto | None) -> str:
    """The module a node belongs to: from the dynamo exporter's name scopes or the legacy ``/module/Op`` name."""
    if node is None:
        return ""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                scopes = []
            if len(scopes) >= 2:
                return scopes[-2]
    parts = [p for p in node.name.split("/") if p]
    return parts[-2] if len(parts) >= 2 else ""


def _layer_shape(spec: LayerSpec, input_shapes) -> tuple[int, ...]:
    node = _build(spec, {})
    return node.output_shape(input_shapes)


def _build(spec: LayerSpec, fields: dict) -> ir.Node:
    kinds = {"Linear": ir.Linear, "Conv2d": ir.Conv2d, "AvgPool2d": ir.AvgPool2d, "MaxPool2d": ir.MaxPool2d,
             "Conv1d": ir.Conv1d, "AvgPool1d": ir.AvgPool1d, "MaxPool1d": ir.MaxPool1d,
             "Flatten": ir.Flatten, "BatchNorm": ir.BatchNorm, "Add": ir.Add, "Neuron": ir.Neuron}
    kind = ir.SynapticNeuron if "current_decay" in fields or "weight" in fields else kinds[spec.kind]
    return kind(spec.name, spec.inputs, **{**spec.args, **fields})


# ---------------------------------------------------------------------------
# Symbolic elementwise ops
# ---------------------------------------------------------------------------
def _coefficient(reader: _Reader, node: onnx.NodeProto, array: np.ndarray, index: int) -> float | np.ndarray:
    """A constant operand of neuron arithmetic: one value, possibly broadcast to a (batch) shape, as a
    float; or per-neuron values, as a float64 array (broadcast over ``[N, *features]``)."""
    flat = np.asarray(array).ravel()
    if flat.size == 0:
        raise UnsupportedOpError(f"{describe(node)}: empty constant {node.input[index]!r}")
    if np.all(flat == flat[0]):
        return float(flat[0])
    return np.asarray(array, np.float64)


def _operand(reader: _Reader, node: onnx.NodeProto, index: int, added: bool = False) -> Expr:
    """Input ``index`` as an Expr; an ``added`` constant that differs across neurons (the recurrent bias at
    step 0, where the previous spikes are zero) is an atom holding its values (:data:`CONSTANT_LAYER`)."""
    value = reader.value(node, index)
    if isinstance(value, Const) and added and np.asarray(value.value).size > 1 and \
            not np.all(np.asarray(value.value) == np.asarray(value.value).ravel()[0]):
        key = (CONSTANT_LAYER, len(reader.vectors))
        reader.vectors[key] = np.asarray(value.value, np.float64)
        return Expr("input", value=key, origin=node)
    if isinstance(value, Const):
        return Expr("const", value=_coefficient(reader, node, value.value, index), origin=node)
    if isinstance(value, Sym):
        return value.expr
    if isinstance(value, Tensor):
        return reader.input_expr(value, node)
    raise UnsupportedOpError(f"{describe(node)}: input {node.input[index]!r} cannot take part in neuron arithmetic")


def _const(e: Expr, value: float) -> bool:
    return e.op == "const" and np.ndim(e.value) == 0 and e.value == value


def _add(a: Expr, b: Expr, node) -> Expr:
    if a.op == "const" and b.op == "const":
        return Expr("const", value=a.value + b.value, origin=node)
    if _const(b, 0.0):
        return a
    if _const(a, 0.0):
        return b
    if a.op == "const":  # constants second, so H - thr always reads add(H, const)
        a, b = b, a
    return Expr("add", (a, b), origin=node)


def _neg(a: Expr, node) -> Expr:
    if a.op == "const":
        return Expr("const", value=-a.value, origin=node)
    return Expr("neg", (a,), origin=node)


def _mul(a: Expr, b: Expr, node) -> Expr:
    if a.op == "const" and b.op == "const":
        return Expr("const", value=a.value * b.value, origin=node)
    if _const(b, 1.0):
        return a
    if _const(a, 1.0):
        return b
    return Expr("mul", (a, b), origin=node)


def _elementwise(reader: _Reader, node: onnx.NodeProto):
    op = node.op_type
    if op in ("Identity", "Expand"):
        reader.set(node, Sym(_operand(reader, node, 0)))
        return
    if op == "Neg":
        reader.set(node, Sym(_neg(_operand(reader, node, 0), node)))
        return
    if op == "Cast":
        to = attributes(node).get("to")
        a = _operand(reader, node, 0)
        if a.op == "compare" and to == onnx.TensorProto.FLOAT:
            (potential,) = a.args
            threshold, or_equal = a.value
            reader.set(node, Sym(reader.spike(potential, threshold, or_equal, node)))
        elif a.op != "compare" and to == onnx.TensorProto.FLOAT:
            reader.set(node, Sym(a))
        else:
            raise UnsupportedOpError(f"{describe(node)}: only a Cast of a comparison to float (a spike) is supported")
        return
    a, b = _operand(reader, node, 0, op == "Add"), _operand(reader, node, 1, op == "Add")
    if op == "Add":
        result = _add(a, b, node)
    elif op == "Sub":
        result = _add(a, _neg(b, node), node)
    elif op == "Mul":
        result = _mul(a, b, node)
    elif op == "Div":
        if b.op != "const" or np.any(np.asarray(b.value) == 0.0):
            raise UnsupportedOpError(f"{describe(node)}: only division by a non-zero constant can be lifted")
        result = a if _const(b, 1.0) else (
            Expr("const", value=a.value / b.value, origin=node) if a.op == "const" else Expr("div", (a,), b.value, node)
        )
    elif op in ("Greater", "GreaterOrEqual", "Less", "LessOrEqual"):
        if op.startswith("Less"):
            a, b = b, a
        or_equal = op.endswith("OrEqual")
        if b.op != "const":
            a, b = _add(a, _neg(b, node), node), Expr("const", value=0.0, origin=node)
        potential, threshold = a, b.value
        # H - thr > 0 (as every peer writes it) is H > thr: for floats the two never differ
        if threshold == 0.0 and potential.op == "add" and potential.args[1].op == "const":
            potential, threshold = potential.args[0], -potential.args[1].value
        threshold = _frozen(threshold)  # a spike is found by its threshold: per-neuron values as nested tuples
        result = Expr("compare", (potential,), (threshold, or_equal), node)
    else:  # pragma: no cover - the table below only routes the ops above here
        raise UnsupportedOpError(f"unsupported op: {describe(node)}")
    reader.set(node, Sym(result))


# ---------------------------------------------------------------------------
# Layer ops: one reader per op
# ---------------------------------------------------------------------------
def _weight_name(reader: _Reader, node: onnx.NodeProto, index: int) -> str:
    name = node.input[index]
    if name.endswith(".weight") and name in {t.name for t in reader.graph.initializer}:
        return name[: -len(".weight")]
    return _scope(node) or node.name or node.output[0]


def _linear_layer(reader: _Reader, node, source: Tensor, weight: np.ndarray, bias, name: str, from_matmul=False):
    if weight.ndim != 2:
        raise UnsupportedOpError(f"{describe(node)}: the weight must be a matrix, got shape {list(weight.shape)}")
    features = reader.shapes[source.layer]
    if len(features) != 1 or features[0] != weight.shape[1]:
        raise UnsupportedOpError(
            f"{describe(node)}: a Linear layer of {weight.shape[1]} inputs reads layer "
            f"{source.layer!r} of per-sample shape {list(features)}"
        )
    key = ("Linear", source.layer, weight.tobytes(), None if bias is None else bias.tobytes())
    spec = reader.layer(key, "Linear", (source.layer,), dict(weight=weight, bias=bias), name, node)
    spec.from_matmul = spec.from_matmul or from_matmul
    reader.output(node, spec, source)


def _read_gemm(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise UnsupportedOpError(f"{describe(node)}: only Gemm with transA=0, alpha=1, beta=1 is a Linear layer")
    source = reader.tensor(node, 0, ("step", "merged"))
    weight = reader.constant(node, 1, "weight")
    weight = weight if attrs.get("transB", 0) else weight.T
    bias = reader.constant(node, 2, "bias")
    if bias is not None:
        bias = np.broadcast_to(bias, (weight.shape[0],)).copy()
    _linear_layer(reader, node, source, weight, bias, _weight_name(reader, node, 1))


def _read_matmul(reader: _Reader, node):
    source = reader.tensor(node, 0, ("step", "merged", "seq"))
    weight = reader.constant(node, 1, "weight")
    if weight.ndim != 2:
        raise UnsupportedOpError(f"{describe(node)}: only a product with a constant matrix is a Linear layer")
    _linear_layer(reader, node, source, np.ascontiguousarray(weight.T), None, _scope(node) or node.output[0], True)


def _read_add(reader: _Reader, node):
    """``MatMul + bias`` completes a Linear; two layer tensors make a residual Add; anything else is neuron arithmetic."""
    first, second = reader.value(node, 0), reader.value(node, 1)
    product = node.input[0]
    if isinstance(first, Const) and isinstance(second, Tensor):
        first, second, product = second, first, node.input[1]
    if isinstance(first, Tensor) and isinstance(second, Const):
        spec = reader.layers.get(first.layer)
        out = spec.args["weight"].shape[0] if spec is not None and spec.kind == "Linear" else None
        bias = second.value
        if (spec is not None and spec.from_matmul and spec.args.get("bias") is None
                and reader.consumers.get(product, 0) == 1 and bias.ndim >= 1 and bias.size == out):
            spec.args["bias"] = bias.reshape(out).astype(np.float32)
            reader.set(node, first)
            return
    if isinstance(first, Tensor) and isinstance(second, Tensor) and first.layout == second.layout != "step":
        spec = reader.layer(("Add", first.layer, second.layer), "Add", (first.layer, second.layer), {},
                            _scope(node) or node.output[0], node)
        reader.output(node, spec, first)
        return
    _elementwise(reader, node)



def _read_conv(reader: _Reader, node):
    attrs = attributes(node)
    source = reader.tensor(node, 0, ("step", "merged"))
    weight = reader.constant(node, 1, "weight")
    if weight.ndim not in (3, 4):
        raise UnsupportedOpError(f"{describe(node)}: a {weight.ndim - 2}-D convolution is not supported; "
                                 f"only 1-D (Conv1d) and 2-D convolutions are")
    axes = weight.ndim - 2
    kind = "Conv1d" if axes == 1 else "Conv2d"
    bias = reader.constant(node, 2, "bias")
    args = dict(weight=weight, bias=bias, stride=tuple(attrs.get("strides", (1,) * axes)),
                padding=symmetric_pads(node, attrs, axes), dilation=tuple(attrs.get("dilations", (1,) * axes)),
                groups=attrs.get("group", 1))
    key = (kind, source.layer, weight.tobytes(), None if bias is None else bias.tobytes(), str(attrs))
    spec = reader.layer(key, kind, (source.layer,), args, _weight_name(reader, node, 1), node)
    reader.output(node, spec, source)


def _read_pool(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("storage_order", 0):
        raise UnsupportedOpError(f"{describe(node)}: ceil_mode, dilations and storage_order are not supported")
    source = reader.tensor(node, 0, ("step", "merged"))
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) not in (1, 2):
        raise UnsupportedOpError(f"{describe(node)}: only 1-D and 2-D pooling is supported")
    args = dict(kernel_size=kernel, stride=tuple(attrs.get("strides", kernel)),
                padding=symmetric_pads(node, attrs, len(kernel)))
    if node.op_type == "AveragePool":
        kind = f"AvgPool{len(kernel)}d"
        args["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
    else:
        kind = f"MaxPool{len(kernel)}d"
    spec = reader.layer((kind, source.layer, str(args)), kind, (source.layer,), args, _scope(node) or "pool", node)
    reader.output(node, spec, source)


def _read_batchnorm(reader: _Reader, node):
    attrs = attributes(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOpError(f"{describe(node)}: training_mode BatchNormalization is not an inference model")
    source = reader.tensor(node, 0, ("step", "merged"))
    weight, bias, mean, var = (reader.constant(node, i) for i in range(1, 5))
    args = dict(weight=weight, bias=bias, running_mean=mean, running_var=var, eps=attrs.get("epsilon", 1e-5),
                momentum=float(np.float32(1.0 - np.float32(attrs.get("momentum", 0.9)))))
    key = ("BatchNorm", source.layer, weight.tobytes(), mean.tobytes())
    spec = reader.layer(key, "BatchNorm", (source.layer,), args, _weight_name(reader, node, 1), node)
    reader.output(node, spec, source)


def _flatten_of(reader: _Reader, node, source: Tensor, layout: str) -> None:
    """Flatten the per-sample shape of ``source`` (a no-op on vectors), landing in ``layout``."""
    if len(reader.shapes[source.layer]) > 1:
        spec = reader.layer(("Flatten", source.layer), "Flatten", (source.layer,), {}, _scope(node) or "flatten", node)
        reader.output(node, spec, Tensor(source.layer, layout, source.step))
    else:
        reader.set(node, Tensor(source.layer, layout, source.step))


def _read_flatten(reader: _Reader, node):
    source = reader.tensor(node, 0, ("step", "merged", "seq"))
    axis = attributes(node).get("axis", 1)
    if axis != (2 if source.layout == "seq" else 1):
        raise UnsupportedOpError(f"{describe(node)}: Flatten(axis={axis}) does not keep the time and batch axes")
    _flatten_of(reader, node, source, source.layout)


def _lead_dims(reader: _Reader, layout: str) -> list[int | None]:
    """Leading (non-feature) dims of a layout; None where the batch size is dynamic."""
    n, t = reader.batch, reader.time_steps
    return {"seq": [t, n], "merged": [None if n is None else t * n], "step": [n], "step1": [1, n],
            "batchfirst": [n, t], "step1b": [n, 1]}[layout]


def _read_reshape(reader: _Reader, node):
    source = reader.tensor(node, 0)
    target = [int(d) for d in reader.constant(node, 1, "shape")]
    allow_zero = attributes(node).get("allowzero", 0)
    features = list(reader.shapes[source.layer])
    timed = ("seq", "merged") if source.layout in ("seq", "merged") else ("step", "step1")
    current = _lead_dims(reader, source.layout) + features
    for layout in timed:
        for flat in (False, True):
            wanted = _lead_dims(reader, layout) + ([int(np.prod(features))] if flat else features)
            if len(wanted) != len(target):
                continue
            ok = True
            for i, (dim, want) in enumerate(zip(target, wanted)):
                if dim == 0 and not allow_zero and i < len(current):
                    dim = current[i]
                if dim == -1 or want is None or dim == want:
                    continue
                ok = False
            if ok and target.count(-1) <= 1:
                if flat:
                    _flatten_of(reader, node, source, layout)
                else:
                    reader.set(node, Tensor(source.layer, layout, source.step))
                return
    raise UnsupportedOpError(
        f"{describe(node)}: a Reshape of layer {source.layer!r} ({_LAYOUT_TEXT[source.layout]}, per-sample shape "
        f"{features}) to {target} is neither a change of the time/batch layout nor a flatten"
    )


def _axes(reader: _Reader, node, index: int = 1) -> list[int]:
    attrs = attributes(node)
    axes = attrs.get("axes")
    if axes is None:
        axes = reader.constant(node, index, "axes") if index < len(node.input) else None
    return [] if axes is None else [int(a) for a in np.atleast_1d(axes)]


def _read_gather(reader: _Reader, node):
    source = reader.value(node, 0)
    if isinstance(source, ShapeOf):
        raise UnsupportedOpError(f"{describe(node)}: computing with dynamic shapes is not supported")
    source = reader.tensor(node, 0, ("seq", "step1", "batchfirst"))
    index = reader.constant(node, 1, "index")
    if attributes(node).get("axis", 0) != (1 if source.layout == "batchfirst" else 0) or np.ndim(index) != 0:
        raise UnsupportedOpError(f"{describe(node)}: only Gather of one time step (a scalar index on axis 0) is supported")
    step = int(index)
    if source.layout == "step1":
        if step not in (0, -1):
            raise UnsupportedOpError(f"{describe(node)}: index {step} out of range for a single time step")
        reader.set(node, Tensor(source.layer, "step", source.step))
        return
    step = step + reader.time_steps if step < 0 else step
    if not 0 <= step < reader.time_steps:
        raise UnsupportedOpError(f"{describe(node)}: time step {step} out of range (T={reader.time_steps})")
    reader.set(node, Tensor(source.layer, "step", step))


def _read_slice(reader: _Reader, node):
    source = reader.tensor(node, 0, ("seq", "step1"))
    starts, ends = (int(v) for v in reader.constant(node, 1).ravel()), (int(v) for v in reader.constant(node, 2).ravel())
    starts, ends = list(starts), list(ends)
    axes = [int(a) for a in reader.constant(node, 3).ravel()] if len(node.input) > 3 and node.input[3] else [0]
    steps = [int(s) for s in reader.constant(node, 4).ravel()] if len(node.input) > 4 and node.input[4] else [1]
    if axes != [0] or steps != [1] or len(starts) != 1:
        raise UnsupportedOpError(f"{describe(node)}: only a Slice of one time step (axis 0) is supported")
    start = starts[0] + reader.time_steps if starts[0] < 0 else starts[0]
    if source.layout == "step1":
        if start != 0:
            raise UnsupportedOpError(f"{describe(node)}: slices past a single time step")
        reader.set(node, source)
        return
    if ends[0] != start + 1 or not 0 <= start < reader.time_steps:
        raise UnsupportedOpError(
            f"{describe(node)}: a Slice [{starts[0]}:{ends[0]}] of the time axis must take exactly one step"
        )
    reader.set(node, Tensor(source.layer, "step1", start))


def _read_squeeze(reader: _Reader, node):
    source = reader.tensor(node, 0, ("step1",))
    if _axes(reader, node) not in ([0], []):
        raise UnsupportedOpError(f"{describe(node)}: only squeezing the time axis 0 is supported")
    reader.set(node, Tensor(source.layer, "step", source.step))


def _read_unsqueeze(reader: _Reader, node):
    source = reader.tensor(node, 0, ("step",))
    axes = _axes(reader, node)
    if axes == [1] and reader.batch_first:  # stacking a batch-first output [N, T, ...]
        reader.set(node, Tensor(source.layer, "step1b", source.step))
        return
    if axes != [0]:
        raise UnsupportedOpError(f"{describe(node)}: only unsqueezing a time axis 0 is supported")
    reader.set(node, Tensor(source.layer, "step1", source.step))


def _read_concat(reader: _Reader, node):
    axis = attributes(node).get("axis")
    if axis != 0 and not (axis == 1 and reader.batch_first):
        raise UnsupportedOpError(f"{describe(node)}: only concatenating time steps (axis 0) is supported")
    parts = [reader.tensor(node, i, ("step1",) if axis == 0 else ("step1b",)) for i in range(len(node.input))]
    layers = {p.layer for p in parts}
    if len(layers) != 1 or [p.step for p in parts] != list(range(reader.time_steps)):
        raise UnsupportedOpError(
            f"{describe(node)}: expected the {reader.time_steps} time steps of one layer in order, got "
            + ", ".join(f"{p.layer}[t={p.step}]" for p in parts)
        )
    reader.set(node, Tensor(parts[0].layer, "seq"))


def _read_split(reader: _Reader, node):
    source = reader.tensor(node, 0, ("seq",))
    if attributes(node).get("axis", 0) != 0 or len(node.output) != reader.time_steps:
        raise UnsupportedOpError(f"{describe(node)}: only splitting the time axis into single steps is supported")
    for step, name in enumerate(node.output):
        reader.values[name] = Tensor(source.layer, "step1", step)


def _read_shape(reader: _Reader, node):
    reader.set(node, ShapeOf())


def _read_expand(reader: _Reader, node):
    value, shape = reader.value(node, 0), reader.value(node, 1)
    if isinstance(value, Const) and isinstance(shape, ShapeOf):
        reader.set(node, value)  # a constant broadcast to a batch shape: stays a (scalar) constant
    else:
        _elementwise(reader, node)


def _read_constant_of_shape(reader: _Reader, node):
    if not isinstance(reader.value(node, 0), ShapeOf):
        raise UnsupportedOpError(f"{describe(node)}: unexpected ConstantOfShape input")
    fill = attributes(node).get("value")
    reader.set(node, Const(numpy_helper.to_array(fill) if fill is not None else np.zeros(1, np.float32)))


def _read_reduce_mean(reader: _Reader, node):
    source = reader.tensor(node, 0, ("seq",))
    if _axes(reader, node) != [0] or attributes(node).get("keepdims", 1) != 0:
        raise UnsupportedOpError(f"{describe(node)}: only a mean over time (axes=[0], keepdims=0) can be a readout")
    reader.set(node, Rate(source.layer))


def _read_dropout(reader: _Reader, node):
    reader.values[node.output[0]] = reader.value(node, 0)


_READERS = {
    "Gemm": _read_gemm,
    "MatMul": _read_matmul,
    "Add": _read_add,
    "Conv": _read_conv,
    "AveragePool": _read_pool,
    "MaxPool": _read_pool,
    "BatchNormalization": _read_batchnorm,
    "Flatten": _read_flatten,
    "Reshape": _read_reshape,
    "Gather": _read_gather,
    "Slice": _read_slice,
    "Squeeze": _read_squeeze,
    "Unsqueeze": _read_unsqueeze,
    "Concat": _read_concat,
    "Split": _read_split,
    "Shape": _read_shape,
    "Expand": _read_expand,
    "ConstantOfShape": _read_constant_of_shape,
    "ReduceMean": _read_reduce_mean,
    "Dropout": _read_dropout,
    "Identity": _elementwise,
    "Sub": _elementwise,
    "Mul": _elementwise,
    "Div": _elementwise,
    "Neg": _elementwise,
    "Cast": _elementwise,
    "Greater": _elementwise,
    "GreaterOrEqual": _elementwise,
    "Less": _elementwise,
    "LessOrEqual": _elementwise,
}

# Ops folded when all their inputs are constants (the reference evaluator computes them)
_FOLDABLE = {"Shape", "Identity", "Clip", "Cast", "Add", "Sub", "Mul", "Div", "Neg", "Reshape", "Transpose", "Unsqueeze",
             "Squeeze", "Concat", "Slice", "Gather", "Expand", "ConstantOfShape", "Sqrt", "Reciprocal",
             "Gemm"}  # Gemm: a recurrent Linear on the zero spikes before step 0 (snnTorch RLeaky, legacy)


def _fold(reader: _Reader, node: onnx.NodeProto) -> bool:
    if node.op_type == "Constant":
        attrs = attributes(node)
        value = attrs["value"] if "value" in attrs else next(iter(attrs.values()))
        reader.set(node, Const(numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)))
        return True
    if node.op_type not in _FOLDABLE or not node.input:
        return False
    inputs = [reader.values.get(name) if name else None for name in node.input]
    if not all(v is None or isinstance(v, Const) for v in inputs) or inputs[0] is None:
        return False
    feeds = {name: v.value for name, v in zip(node.input, inputs) if name}
    try:
        outputs = ReferenceEvaluator(node).run(None, feeds)
    except Exception as error:  # the reference evaluator raises many types
        raise ModelError(f"{describe(node)}: cannot evaluate its constant inputs ({type(error).__name__})") from None
    for name, out in zip(node.output, outputs):
        reader.values[name] = Const(np.asarray(out))
    return True


# ---------------------------------------------------------------------------
# Identifying a neuron layer from its spikes
# ---------------------------------------------------------------------------
class _Polynomial:
    """Expands an expression into ``{monomial: coefficient}`` over stop atoms (float64 coefficients)."""

    def __init__(self, stops: set[int]):
        self.stops = stops
        self.spike_atoms: set[int] = set()
        self.atoms: dict[int, Expr] = {}
        self.memo: dict[int, dict] = {}

    def atom(self, e: Expr) -> dict:
        self.atoms[id(e)] = e
        if e.op == "spike":
            self.spike_atoms.add(id(e))
        return {(id(e),): 1.0}

    def product(self, p: dict, q: dict) -> dict:
        out: dict = {}
        for m1, c1 in p.items():
            for m2, c2 in q.items():
                ids = list(m1)
                for atom in m2:
                    if not (atom in self.spike_atoms and atom in ids):  # a spike is 0 or 1: S*S = S
                        ids.append(atom)
                key = tuple(sorted(ids))
                out[key] = out.get(key, 0.0) + c1 * c2
        return out

    def expand(self, e: Expr, depth: int = 0) -> dict:
        key = id(e)
        if key in self.memo:
            return self.memo[key]
        if depth > _MAX_DEPTH:
            raise _ReachesBack()
        if key in self.stops or e.op in ("input", "spike"):
            result = self.atom(e)
        elif e.op == "const":
            result = {(): e.value if np.ndim(e.value) else float(e.value)}
        elif e.op == "add":
            result = dict(self.expand(e.args[0], depth + 1))
            for m, c in self.expand(e.args[1], depth + 1).items():
                result[m] = result.get(m, 0.0) + c
        elif e.op == "neg":
            result = {m: -c for m, c in self.expand(e.args[0], depth + 1).items()}
        elif e.op == "div":
            result = {m: c / e.value for m, c in self.expand(e.args[0], depth + 1).items()}
        elif e.op == "mul":
            result = self.product(self.expand(e.args[0], depth + 1), self.expand(e.args[1], depth + 1))
        else:
            raise UnsupportedOpError(f"{_origin(e)}: a comparison used as a number (expected a Cast to float)")
        result = {m: c for m, c in result.items() if np.any(c != 0.0)}
        if len(result) > _MAX_TERMS:
            raise _ReachesBack()
        self.memo[key] = result
        return result


class _ReachesBack(Exception):
    """The expansion did not stop at the previous step's potential and spike."""


@dataclass
class _Recursion:
    """``H[t] = c0 + a*H[t-1] + b*S[t-1] + d*H[t-1]*S[t-1] + g*X[t] + sum_k series[k]*X[t-k]`` for t >= 1,
    plus ``r*R[t] + sum_k recurrent_series[k]*R[t-k]`` with recurrent synapses.

    ``series`` (k >= 1) is a synaptic current's memory of earlier inputs: ``g * current_decay**k``; with
    recurrent synapses (snnTorch RSynaptic) ``recurrent_series`` is its memory of earlier recurrent
    inputs (``r * current_decay**k``), and ``series[t]`` stands for ``X[0] + R[0]``, the potential of step
    0 that such an export reuses as the first current.
    """

    c0: float = 0.0
    a: float = 0.0
    b: float = 0.0
    d: float = 0.0
    g: float = 0.0
    r: float = 0.0  # of R[t] = S[t-1] @ W.T + b, the recurrent synapses' output (snnTorch RLeaky)
    series: dict = field(default_factory=dict)
    recurrent_series: dict = field(default_factory=dict)  # of R[t-k], k >= 1, through a synaptic current

    def same_as(self, other: "_Recursion") -> bool:
        return all(_close(getattr(self, k), getattr(other, k)) for k in ("c0", "a", "b", "d", "g"))


def _subtract_foreign_spikes(terms: dict, poly: "_Polynomial", spec: "NeuronSpec", where: str, notes: list) -> dict:
    """snnTorch ``Leaky(reset_delay=False)`` tests ``V[k-1] > thr`` on the already reset potential.

    That extra spike is 0 unless a reset potential stays above threshold; the IR's
    subtract reset without delay is exact under that condition. Drop such spikes
    (with a note) if each one's argument is ``H[j] - thr * S[j]`` of this layer.
    """
    layer_spikes = {id(s) for s in spec.spikes.values()}

    def foreign(monomial) -> bool:
        return any(atom in poly.spike_atoms and atom not in layer_spikes for atom in monomial)

    spikes = {atom for m in terms if foreign(m) for atom in m if atom in poly.spike_atoms and atom not in layer_spikes}
    if not spikes:
        return terms
    reset_potentials = [
        {(id(s.args[0]),): 1.0, (id(s),): -np.asarray(s.value[0])} for s in spec.spikes.values()
    ]
    for atom in spikes:
        spike = poly.atoms[atom]
        argument = {m: c for m, c in poly.expand(spike.args[0]).items() if not foreign(m)}
        if not any(
            spike.value == next(iter(spec.spikes.values())).value and set(argument) == set(expected)
            and all(_close(argument[m], expected[m]) for m in expected)
            for expected in reset_potentials
        ):
            raise UnsupportedOpError(
                f"{_origin(spike)}: the membrane update of {where} reads a spike of some other potential; "
                f"expected only the previous step's potential and spike"
            )
    note = (f"{where.split(' at step')[0]}: the reset signal is recomputed from the already reset potential "
            f"(snnTorch Leaky(reset_delay=False)); read as a subtract reset without delay, which is exact "
            f"while no reset potential stays above threshold")
    if note not in notes:
        notes.append(note)
    return {m: c for m, c in terms.items() if not foreign(m)}


def _recursion(reader: _Reader, spec: NeuronSpec, step: int, notes: list) -> _Recursion:
    potential = spec.spikes[step].args[0]
    previous = spec.spikes[step - 1]
    potential_prev = previous.args[0]
    stops = {id(s.args[0]) for t, s in spec.spikes.items() if t != step}
    poly = _Polynomial(stops)
    poly.spike_atoms.update(id(s) for s in spec.spikes.values())
    where = f"neuron layer {spec.name!r} at step {step}"
    try:
        terms = poly.expand(potential)
    except (_ReachesBack, RecursionError):
        raise UnsupportedOpError(
            f"{_origin(potential)}: the membrane update of {where} reaches further back than the previous "
            f"step's potential and spike (an extra state such as a synaptic current, e.g. Norse LIFCell, "
            f"which the IR's neurons do not have)"
        ) from None
    terms = _subtract_foreign_spikes(terms, poly, spec, where, notes)
    names = {(): "c0", (id(potential_prev),): "a", (id(previous),): "b",
             tuple(sorted((id(potential_prev), id(previous)))): "d"}
    current_input = reader.inputs.get((spec.inputs[0], step), reader.inputs.get((spec.inputs[0], None)))
    if current_input is not None:
        names[(id(current_input),)] = "g"
    if spec.recurrent is not None and (spec.recurrent, step - 1) in reader.inputs:
        names[(id(reader.inputs[(spec.recurrent, step - 1)]),)] = "r"
    earlier = {(id(reader.inputs[(spec.inputs[0], t)]),): step - t for t in range(step)
               if (spec.inputs[0], t) in reader.inputs}
    earlier_recurrent = {}
    if spec.recurrent is not None:
        earlier_recurrent = {(id(reader.inputs[(spec.recurrent, t)]),): step - 1 - t for t in range(step - 1)
                             if (spec.recurrent, t) in reader.inputs}
        if step >= 2:  # H[0] = X[0] + R[0] is the first synaptic current (snnTorch RSynaptic)
            earlier[(id(spec.spikes[0].args[0]),)] = step
    recursion = _Recursion()
    for monomial, coefficient in terms.items():
        if monomial not in names and monomial in earlier:  # a synaptic current: an earlier input, decayed
            recursion.series[earlier[monomial]] = coefficient
            continue
        if monomial not in names and monomial in earlier_recurrent:  # ... and an earlier recurrent input
            recursion.recurrent_series[earlier_recurrent[monomial]] = coefficient
            continue
        if monomial not in names:
            raise UnsupportedOpError(
                f"{_origin(potential)}: the membrane update of {where} depends on "
                f"{' * '.join(_atom_text(poly.atoms[a], spec, step) for a in monomial)}; an IR neuron's update "
                f"reads only its previous potential and spike, the current input, earlier inputs through a "
                f"synaptic current and its own previous spikes through a Linear (recurrent synapses)"
            )
        setattr(recursion, names[monomial], coefficient)
    return recursion


def _atom_text(e: Expr, spec: NeuronSpec, step: int) -> str:
    if e.op == "input":
        layer, t = e.value
        return f"the input {layer!r} of step {t}" if layer == spec.inputs[0] else f"the output of layer {layer!r} at step {t}"
    for t, spike in spec.spikes.items():
        if e is spike:
            return f"the spike of step {t}"
        if e is spike.args[0]:
            return f"the potential of step {t}"
    return _origin(e)


def _first_step(reader: _Reader, spec: NeuronSpec) -> tuple[float, float]:
    """``H[0] = k0 + g0 * X[0]``: the initial state folded into a constant."""
    poly = _Polynomial(set())
    potential = spec.spikes[0].args[0]
    try:
        terms = poly.expand(potential)
    except (_ReachesBack, RecursionError):
        terms = {("?",): 1.0}
    current_input = reader.inputs.get((spec.inputs[0], 0), reader.inputs.get((spec.inputs[0], None)))
    k0 = terms.pop((), 0.0)
    g0 = terms.pop((id(current_input),), 0.0) if current_input is not None else 0.0
    vectors = [m for m in terms if len(m) == 1 and poly.atoms[m[0]].op == "input"
               and poly.atoms[m[0]].value[0] == CONSTANT_LAYER]
    recurrent_start = sum(terms.pop(m) * reader.vectors[poly.atoms[m[0]].value] for m in vectors)
    recurrent_bias = reader.layers[spec.recurrent].args.get("bias") if spec.recurrent is not None else None
    if spec.recurrent is not None and not np.allclose(
            recurrent_start, 0.0 if recurrent_bias is None else g0 * recurrent_bias, rtol=1e-6, atol=1e-9):
        raise UnsupportedOpError(f"{_origin(potential)}: step 0 of neuron layer {spec.name!r} does not add the bias "
                                 f"of its recurrent synapses {spec.recurrent!r}")
    if spec.recurrent is None and vectors:
        raise UnsupportedOpError(f"{_origin(potential)}: step 0 of neuron layer {spec.name!r} adds a constant that "
                                 f"differs across neurons (per-neuron parameters are not supported)")
    if terms:
        raise UnsupportedOpError(
            f"{_origin(potential)}: step 0 of neuron layer {spec.name!r} is not a constant initial state plus the input"
        )
    return k0, g0


@dataclass(frozen=True)
class ResetForm:
    """One shape of the membrane recursion and the IR reset it means (``b`` and ``d`` given ``a`` and thr)."""

    name: str
    reset: str
    reset_delay: bool
    matches: object  # (recursion, threshold) -> bool
    v_reset: object  # recursion -> float


# The IR neuron's recursions H[t] = f(H[t-1], S[t-1], X[t]) (see ir.Neuron), with
# c = (1 - beta) * v_leak: in every form a = beta, g = gain, c0 = c.
RESET_FORMS = (
    # reset "none": H = beta*H' + c + g*X
    ResetForm("none", "none", False, lambda r, thr: _close(r.d, 0.0) and _close(r.b, 0.0), lambda r: 0.0),
    # subtract: H = beta*(H' - thr*S') + c + g*X (SpikingJelly soft reset)
    ResetForm("subtract", "subtract", False, lambda r, thr: _close(r.d, 0.0) and _close(r.b, -r.a * thr), lambda r: 0.0),
    # subtract, delayed: H = beta*H' - thr*S' + c + g*X (snnTorch Leaky, reset_delay=True)
    ResetForm("subtract-delayed", "subtract", True, lambda r, thr: _close(r.d, 0.0) and _close(r.b, -thr), lambda r: 0.0),
    # hard: H = beta*(S'*v_reset + (1-S')*H') + c + g*X (SpikingJelly, Norse)
    ResetForm("hard", "hard", False, lambda r, thr: np.all(r.a != 0.0) and _close(r.d, -r.a), lambda r: r.b / r.a),
    # hard, delayed: H = S'*v_reset + (1-S')*(beta*H' + c) + g*X (snnTorch zero reset);
    # the same function as "hard" with another v_reset, so only chosen for snnTorch
    ResetForm("hard-delayed", "hard", True, lambda r, thr: np.all(r.a != 0.0) and _close(r.d, -r.a), lambda r: r.b + r.c0),
)


def _identify(reader: _Reader, spec: NeuronSpec, framework: str, notes: list) -> dict:
    steps = sorted(spec.spikes)
    thresholds = {s.value for s in spec.spikes.values()}
    if len(thresholds) != 1:
        raise UnsupportedOpError(f"neuron layer {spec.name!r} fires on different thresholds at different steps")
    ((threshold, or_equal),) = thresholds
    threshold = np.asarray(threshold, np.float64)
    if reader.time_steps < 2:
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: a model exported with one time step shows no "
                                 f"membrane dynamics; export it with T >= 2")
    recursions = [_recursion(reader, spec, t, notes) for t in steps[1:]]
    first = 1
    static_start = spec.spikes[0].args[0] is reader.inputs.get((spec.inputs[0], None))
    if static_start and len(recursions) < 2:
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: with a static input, a model exported with "
                                 f"T = {reader.time_steps} does not tell its leak from its input gain; export it with T >= 3")
    if static_start:
        # a static input with H[0] = X: step 1 reads X once for H[0] and once for X[1], so a and g show
        # only as their sum there; the recursion is read from step 2 on and step 1 checked against it
        step1, recursions, first = recursions[0], recursions[1:], 2
        merged = _Recursion(recursions[0].c0, 0.0, recursions[0].b, recursions[0].d, recursions[0].a + recursions[0].g)
        if not step1.same_as(merged):
            raise UnsupportedOpError(f"{_origin(spec.spikes[1])}: neuron layer {spec.name!r} computes step 1 "
                                     f"differently from step 2 ({step1} vs {recursions[0]})")
    first_current = spec.spikes[0].args[0] is reader.inputs.get((spec.inputs[0], 0)) or spec.recurrent is not None
    if first_current and len(recursions) >= 2 and recursions[1].series:
        # a synaptic current with H[0] = X[0] (+ R[0]): at step 1 the potential H[0] and the first current
        # are one value, so the decay and the current's memory show only as their sum; read from step 2 on
        step1, recursions, first = recursions[0], recursions[1:], 2
        later = recursions[0]
        merged = _Recursion(later.c0, later.a + later.series[1], later.b, later.d, later.g)
        if step1.series or not step1.same_as(merged):
            raise UnsupportedOpError(f"{_origin(spec.spikes[1])}: neuron layer {spec.name!r} computes step 1 "
                                     f"differently from step 2 ({step1} vs {later})")
    recursion = recursions[0]
    for t, other in zip(steps[first + 1:], recursions[1:]):
        if not other.same_as(recursion):
            raise UnsupportedOpError(f"{_origin(spec.spikes[t])}: neuron layer {spec.name!r} computes step {t} "
                                     f"differently from step {first} ({other} vs {recursion})")
    candidates = [f for f in RESET_FORMS if f.matches(recursion, threshold)]
    if framework in PREFERS_RESET_DELAY:
        candidates.sort(key=lambda f: not f.reset_delay)
    if not candidates:
        raise UnsupportedOpError(
            f"{_origin(spec.spikes[1])}: the membrane update of neuron layer {spec.name!r} "
            f"(H[t] = {_text(recursion.c0)} + {_text(recursion.a)}*H[t-1] + {_text(recursion.b)}*S[t-1] + "
            f"{_text(recursion.d)}*H[t-1]*S[t-1] + {_text(recursion.g)}*X[t]) is none of the IR's resets "
            f"({', '.join(f.name for f in RESET_FORMS)})"
        )
    form = candidates[0]
    current_decay = _current_decay(spec, recursions, first, static_start)
    if np.any(current_decay) and form.reset == "hard" and form.reset_delay:
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: a synaptic current with a delayed reset to v_reset "
                                 f"(snnTorch Synaptic reset_mechanism='zero', which also resets the current) is "
                                 f"not supported")
    beta = recursion.a
    if not np.all((0.0 <= beta) & (beta <= 1.0 + 1e-7)):
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: decay factor {_text(beta)} outside [0, 1]")
    beta = np.where(np.isclose(beta, 1.0, rtol=_RTOL, atol=1e-9), 1.0, np.minimum(beta, 1.0))
    integrates = beta == 1.0
    if not _close(np.where(integrates, recursion.c0, 0.0), 0.0):
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: a constant drive {_text(recursion.c0)} without leak "
                                 f"(beta = 1) is not an IR neuron")
    with np.errstate(divide="ignore", invalid="ignore"):
        v_leak = np.where(integrates, 0.0, recursion.c0 / (1.0 - beta))
    k0, g0 = _first_step(reader, spec)
    if not _close(g0, recursion.g):
        raise UnsupportedOpError(f"{_origin(spec.spikes[0])}: neuron layer {spec.name!r} scales its input by "
                                 f"{_text(g0)} at step 0 but by {_text(recursion.g)} later")
    still = beta == 0.0
    if not _close(np.where(still, k0, recursion.c0), recursion.c0):
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: step 0 starts from an inconsistent state")
    with np.errstate(divide="ignore", invalid="ignore"):
        v_init = np.where(still, 0.0, (k0 - recursion.c0) / beta)
    features = reader.shapes[spec.inputs[0]]
    per_neuron = dict(beta=beta, v_threshold=threshold, v_reset=form.v_reset(recursion), v_leak=v_leak,
                      v_init=v_init, gain=recursion.g)
    if np.any(current_decay) or spec.recurrent is not None:
        per_neuron["current_decay"] = current_decay
    fields = {name: _per_neuron(value, features, spec, name) for name, value in per_neuron.items()}
    fields.update(reset=form.reset, reset_delay=form.reset_delay, fire_on_equal=or_equal)
    if spec.recurrent is not None:
        if not all(_close(r.r, recursion.g) for r in recursions):
            raise UnsupportedOpError(f"neuron layer {spec.name!r}: its recurrent synapses {spec.recurrent!r} reach the "
                                     f"potential with weight {_text(recursion.r)}, its input with {_text(recursion.g)}")
        rec = reader.layers[spec.recurrent]
        fields.update(weight=rec.args["weight"], bias=rec.args.get("bias"))
    fields.update(FRAMEWORK_DEFAULTS.get(framework, {}))
    return fields


def _current_decay(spec: NeuronSpec, recursions: list, first: int, static_start: bool) -> float | np.ndarray:
    """The decay of a synaptic current from the earlier inputs' coefficients (0.0: none): at every step
    t (``recursions`` from step ``first`` on), ``series[k] = g * current_decay**k`` for k = 1 .. t
    (ir.SynapticNeuron); per neuron where g or the series vary over the neurons."""
    if not any(r.series for r in recursions):
        return 0.0
    if static_start:
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: a synaptic current on a static input cannot be lifted")
    earliest = recursions[0]
    g = np.asarray(earliest.g, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        current_decay = np.where(g != 0.0, np.asarray(earliest.series.get(1, 0.0), np.float64) / g, 0.0)
    for t, recursion in enumerate(recursions, first):
        for what, series, gain, steps in (("inputs", recursion.series, recursion.g, range(1, t + 1)),
                                          ("recurrent inputs", recursion.recurrent_series, recursion.r, range(1, t))):
            expected = {k: gain * current_decay ** k for k in steps} \
                if what == "inputs" or spec.recurrent is not None else {}
            if set(series) != set(expected) or not all(_close(series[k], v) for k, v in expected.items()):
                raise UnsupportedOpError(
                    f"{_origin(spec.spikes[t])}: neuron layer {spec.name!r} at step {t} reads earlier {what} with "
                    f"weights {[_text(series.get(k, 0.0)) for k in steps]}, not a synaptic current's geometric decay"
                )
    if not np.all((0.0 < current_decay) & (current_decay <= 1.0)):
        raise UnsupportedOpError(f"neuron layer {spec.name!r}: synaptic decay factor {_text(current_decay)} "
                                 f"outside (0, 1]")
    return float(current_decay) if current_decay.ndim == 0 else current_decay


def _per_neuron(value, features: tuple[int, ...], spec: NeuronSpec, name: str) -> float | np.ndarray:
    """A neuron parameter as the IR takes it: a float, or per-neuron values over the layer's
    ``features`` (a leading batch axis that the exporter broadcast them over is dropped)."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return float(array)
    while array.ndim > len(features):
        if not np.all(array == array[:1]):
            raise UnsupportedOpError(f"neuron layer {spec.name!r}: {name} differs between the samples of a batch")
        array = array[0]
    return array


# ---------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------
def detect_framework(model: onnx.ModelProto) -> str:
    """snntorch, spikingjelly, norse or unknown: from the dynamo exporter's class names or snnTorch's parameter names."""
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key in ("pkg.torch.onnx.class_hierarchy", "namespace"):
                for framework in ("snntorch", "spikingjelly", "norse"):
                    if framework in prop.value:
                        return framework
    names = {t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    if any(n.endswith(".graded_spikes_factor") for n in names):
        return "snntorch"
    return "unknown"


def _graph_input(reader: _Reader, notes: list) -> ir.Input:
    """The IR input from the graph input: time-major ``[T, N, ...]`` as the profile, or lifted to it from a
    batch-first ``[N, T, ...]`` input (read per step on axis 1) or a static ``[N, ...]`` input that the
    model reads at every step (it goes straight into a Gemm or Conv; T is then the output's first dim)."""
    graph = reader.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"the model must have exactly one input x [T, N, ...], this one has {len(inputs)}")
    name = inputs[0].name
    sizes = _dims(inputs[0])
    consumers = [n for n in graph.node if name in n.input]
    per_step = [n for n in consumers if n.op_type in ("Gather", "Slice", "Split")]
    if per_step and all(attributes(n).get("axis", 0) == 1 for n in per_step if n.op_type != "Slice"):
        layout = "batchfirst" if any(n.op_type == "Gather" for n in per_step) else "seq"
    elif len(sizes) == 2 or (consumers and all(n.op_type in ("Gemm", "Conv") for n in consumers)):
        layout = "static"
    else:
        layout = "seq"
    time_axis, batch_axis, features = {"seq": (0, 1, 2), "batchfirst": (1, 0, 2), "static": (None, 0, 1)}[layout]
    output = _dims(graph.output[0]) if graph.output else []
    time_steps = sizes[time_axis] if time_axis is not None else (output[0] if len(output) >= 3 else None)
    if len(sizes) < 2 or time_steps is None or any(s is None or s <= 0 for s in sizes[features:]):
        raise ModelError(
            f"input {name!r} must be time-major [T, N, ...] (or batch-first [N, T, ...], or a static [N, ...] "
            f"that the model repeats over a spike record [T, N, C]) with a fixed number of time steps T (the "
            f"exporter unrolls the time loop) and fixed feature sizes; got {sizes}"
        )
    reader.time_steps, reader.batch = int(time_steps), sizes[batch_axis]
    shape = tuple(sizes[features:])
    if layout == "batchfirst":
        reader.batch_first = True
        notes.append(f"input {name!r} is batch-first [N, T, ...] = {sizes}: the profile model takes it time-major "
                     f"[T, N, ...] and returns its spike train time-major [T, N, C]")
    elif layout == "static":
        notes.append(f"input {name!r} [N, ...] = {sizes} is repeated at each of the model's T = {reader.time_steps} "
                     f"steps: the profile model takes it time-major [T, N, ...] (static data with --encoding direct "
                     f"is repeated so)")
    reader.values[name] = Tensor(name, "step", None) if layout == "static" else Tensor(name, layout)
    return ir.Input(name, shape=shape)


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _spike_output_only(model: onnx.ModelProto, notes: list) -> onnx.ModelProto:
    """A model returning (spike record, membrane record, ...) keeps its first output: the spikes."""
    if len(model.graph.output) <= 1:
        return model
    kept, dropped = model.graph.output[0], [o.name for o in model.graph.output[1:]]
    needed, wanted = [], {kept.name}
    for node in reversed(model.graph.node):
        if wanted.intersection(node.output):
            needed.append(node)
            wanted.update(node.input)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    del pruned.graph.output[1:]
    del pruned.graph.node[:]
    pruned.graph.node.extend(reversed(needed))
    notes.append(f"the model returns {len(model.graph.output)} outputs: kept the first, {kept.name!r} (the spike "
                 f"record), dropped {', '.join(map(repr, dropped))} (a membrane record is not a model output here)")
    return pruned


def _used_layers(reader: _Reader, last: str) -> set[str]:
    used, stack = set(), [last]
    while stack:
        name = stack.pop()
        if name in used or name not in reader.layers:
            continue
        used.add(name)
        stack.extend(reader.layers[name].inputs)
    return used


def from_model(model: onnx.ModelProto, framework: str | None = None) -> ir.Graph:
    """The IR of a ``torch.onnx.export`` of an unrolled SNN; one-line errors name what could not be lifted.

    ``framework`` (snntorch, spikingjelly, norse, ...) overrides :func:`detect_framework`; it sets
    the training-only fields and snnTorch's delayed reset form.
    """
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            hint = " (an SNN-ONNX profile model: read it with --from profile)" if node.domain == "snn" else ""
            raise UnsupportedOpError(f"unsupported op: {describe(node)} in domain {node.domain!r}{hint}")
    notes: list[str] = []
    model = _spike_output_only(model, notes)
    reader = _Reader(model)
    graph_input = _graph_input(reader, notes)
    reader.names.add(graph_input.name)
    reader.shapes[graph_input.name] = graph_input.shape
    framework = framework or detect_framework(model)
    for node in model.graph.node:
        if _fold(reader, node):
            continue
        handler = _READERS.get(node.op_type)
        if handler is None:
            raise UnsupportedOpError(f"unsupported op: {describe(node)} cannot be lifted from a torch.onnx export")
        handler(reader, node)
    if len(model.graph.output) != 1:
        raise ModelError(f"the model must have one output (the output spikes), this one has {len(model.graph.output)}")
    output_name = model.graph.output[0].name
    output = reader.values.get(output_name)
    if isinstance(output, Sym):
        raise UnsupportedOpError(f"graph output {output_name!r} is a single step, not a spike train over time")
    if isinstance(output, Rate):
        last, mode = output.layer, "rate"
    elif isinstance(output, Tensor) and output.layout == "seq":
        last, mode = output.layer, "spikes"
    else:
        raise ModelError(
            f"graph output {output_name!r} must be the output spike train [T, N, C] (or its mean over time)"
        )
    used = _used_layers(reader, last)
    nodes: list[ir.Node] = [graph_input]
    for spec in reader.order:
        if spec.name not in used:
            continue
        if not spec.whole and spec.steps not in (set(range(reader.time_steps)), {None}):
            missing = sorted(set(range(reader.time_steps)) - spec.steps)
            raise UnsupportedOpError(
                f"{describe(spec.origin)}: layer {spec.name!r} is missing at time step(s) {missing}; "
                f"every layer must run at each of the T={reader.time_steps} steps"
            )
        fields = _identify(reader, spec, framework, notes) if isinstance(spec, NeuronSpec) else {}
        nodes.append(_build(spec, fields))
    if not any(isinstance(n, ir.SPIKING_KINDS) for n in nodes):
        raise ModelError("no spiking neuron found: no Cast(Greater(H - v_threshold, 0)) feeds a layer or the output")
    readout = output_name if output_name not in reader.names else f"{output_name}.readout"
    nodes.append(ir.Readout(readout, (last,), mode=mode))
    # the T it was unrolled over: the default time steps of evaluate / train / compress (data.model_time_steps)
    metadata = {"source_format": "torch-onnx", "source_framework": framework, "time_steps": str(reader.time_steps)}
    if notes:
        metadata["import_notes"] = " | ".join(notes)
    return ir.Graph(nodes, metadata)
