"""Read a NIR graph (neuromorphs/NIR, HDF5) into the IR.

NIR stores continuous-time ODEs; the IR is discrete. Every neuron is discretised
with forward Euler over a time step ``dt`` (docs/interop.md)::

    LIF      tau dv/dt = (v_leak - v) + r*I   ->  beta = 1 - dt/tau, gain = r*dt/tau, v_leak
    IF       dv/dt = r*I                       ->  beta = 1,          gain = r*dt
    CubaLIF  tau_syn dI/dt = -I + w_in*x; tau_mem dv/dt = (v_leak - v) + r*I  ->  the IR's
             SynapticNeuron: current_decay = 1 - dt/tau_syn, beta = 1 - dt/tau_mem,
             gain = (dt/tau_mem)*r*(dt/tau_syn)*w_in (the membrane reads the updated current;
             Norse's current jumps by w_in*x: gain = (dt/tau_mem)*r*w_in);
             a plain LIF when dt/tau_syn = 1 and nothing recurs
    LI / I   (last layer only) the IR's leaky readout, beta = 1 - dt/tau (1 for I)

then ``S = v > v_threshold`` and a reset to ``v_reset`` (NIR's definition). LIF and IF
parameters may differ per neuron (arrays over the layer): the IR's neurons then get
per-neuron values (the same formulas, element by element). A cycle from a
neuron through one Affine/Linear back into it is that neuron's recurrent synapses (the
previous step's spikes); the neuron becomes a SynapticNeuron with that weight and bias. The
file records neither ``dt`` nor its exporter (nor reset details that NIR cannot
express). The user names them (``framework``, ``dt``: ``--from-framework``,
``--dt``), or :func:`_identify` recognises the exporter from evidence that pins
it and says so in a note; anything less is a one-line refusal asking for the
option. Each exporter's conventions (:data:`EXPORTERS`) apply per node kind
(Norse's IF and Sinabs' IAF add ``r*I`` each step, without dt). One reader per
NIR node type (:data:`_READERS`).

Needs the optional ``nir`` extra; it is imported on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import IRError, ModelError, UnsupportedOpError, install_hint
from .torch_onnx import FRAMEWORK_DEFAULTS

RESET_CHOICES = ("hard", "subtract", "subtract-delayed")
PRODUCER = "onnx-snn-compress"  # graph metadata snn.producer of the files this tool writes


def import_nir():
    """The ``nir`` package, or a one-line ModelError telling how to install it."""
    try:
        import h5py  # noqa: F401  (nir needs it for files)
        import nir
    except ImportError:
        raise ModelError(f"NIR files need the optional packages nir and h5py: {install_hint('nir')}") from None
    return nir


@dataclass(frozen=True)
class Exporter:
    """What a NIR exporter writes that the file does not say: its time step, firing rule and,
    per node kind, how its parameters map onto NIR's ODEs.

    ``dt`` is the time step the exporter always uses (None: the user chose it at export, so it
    must come from ``--dt`` or from the file's own evidence); ``default_dt`` only names the
    exporter's default in messages. ``if_per_step``: its IF integrates ``v += r*I`` each step,
    without dt. ``tau_times_dt``: it writes ``tau = dt * (true time constant)``, so forward
    Euler reproduces it over ``dt**2``. ``current_jumps``: its CubaLIF adds ``w_in*x`` to the current
    each step (Norse's LIFCell), not ``(dt/tau_syn)*w_in*x``. ``reset_note``: what its files cannot say
    about the reset.
    """

    name: str
    dt: float | None = None
    default_dt: float | None = None
    fire_on_equal: bool = False
    framework: str = "unknown"
    if_per_step: bool = False
    tau_times_dt: bool = False
    current_jumps: bool = False
    reset_note: str = ""


# Conventions per exporter, as measured on the interop fixtures (tests/fixtures/interop/README.md):
# snnTorch writes tau = dt/(1 - beta), r = tau/dt with dt = 1e-4 hard-coded; SpikingJelly
# tau = tau_sj*dt, r = 1 or tau_sj (IF: r = 1/dt) with the dt given to export_to_nir (1e-4 by
# default); Norse writes tau = dt/tau_mem_inv (dt 1e-3 by default) and its IF integrates without
# dt; Sinabs' IAF is v += r*I per step (the NIR paper's CNN). Rockpool, Lava and plain NIR: NIR's
# own definitions over the dt the user gives.
EXPORTERS = {
    "snntorch": Exporter("snntorch", dt=1e-4, framework="snntorch", reset_note=(
        "snnTorch's NIR export does not record the reset mechanism: read as NIR's reset to v_reset "
        "(snnTorch reset_mechanism='zero'); for snnTorch's default subtract reset pass --nir-reset subtract-delayed")),
    "spikingjelly": Exporter("spikingjelly", default_dt=1e-4, fire_on_equal=True, framework="spikingjelly"),
    "norse": Exporter("norse", default_dt=1e-3, framework="norse", if_per_step=True, tau_times_dt=True,
                      current_jumps=True),
    "sinabs": Exporter("sinabs", dt=1.0, fire_on_equal=True, framework="sinabs", if_per_step=True, reset_note=(
        "Sinabs' NIR export does not record the reset function: read as NIR's reset to v_reset (Sinabs "
        "MembraneReset, as in the NIR paper's CNN); for Sinabs' MembraneSubtract pass --nir-reset subtract")),
    "rockpool": Exporter("rockpool", default_dt=1e-3, framework="rockpool"),
    "lava": Exporter("lava", framework="lava"),
    "nir": Exporter("nir", framework="unknown"),
}
FRAMEWORKS = tuple(EXPORTERS)  # --from-framework

_NEURON_TYPES = ("LIF", "IF", "CubaLIF", "LI", "I", "CubaLI")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _text(value[()])
    return str(value)


def _metadata(node) -> dict[str, str]:
    return {str(k): _text(v) for k, v in (getattr(node, "metadata", None) or {}).items()}


def _first(node, parameter: str) -> float:
    return float(np.asarray(getattr(node, parameter), np.float64).ravel()[0])


def _spikingjelly_dt(neurons: dict) -> float | None:
    """The dt a SpikingJelly export pins: its IF writes r = 1/dt, its LIF without decay_input r = tau/dt
    (r = 1 with decay_input says nothing), its CUBALIFNode r = tau_mem/dt and w_in = tau_syn/dt.
    None when no neuron pins it or they disagree."""
    pinned = []
    for node in neurons.values():
        kind = type(node).__name__
        if kind == "IF":
            pinned.append(1.0 / _first(node, "r"))
        elif kind == "LIF" and _first(node, "r") != 1.0:
            pinned.append(_first(node, "tau") / _first(node, "r"))
        elif kind == "CubaLIF":  # CUBALIFNode: r = tau_mem/dt, w_in = tau_syn/dt
            pinned += [_first(node, "tau_mem") / _first(node, "r"), _first(node, "tau_syn") / _first(node, "w_in")]
        elif kind != "LIF":
            return None
    if not pinned or not np.allclose(pinned, pinned[0], rtol=1e-6):
        return None
    return float(f"{pinned[0]:.6g}")


def _identify(graph, framework: str | None, dt: float | None, path: str) -> tuple[Exporter, float, list[str]]:
    """The exporter of ``graph``, the time step to read it with, and a note for everything inferred.

    ``framework`` and ``dt`` are the user's (``--from-framework``, ``--dt``). Without them, only
    evidence that pins the exporter is used: our own graph metadata, snnTorch's fixed
    ``tau = r*1e-4`` (float32), SpikingJelly's ``r = 1/dt`` on float64 parameters. Node names (every
    nirtorch exporter writes digits for an ``nn.Sequential``) and array dtypes alone identify nothing.
    Raises a one-line ModelError asking for the option when the evidence does not decide.
    """
    meta = _metadata(graph)
    if meta.get("snn.producer") == PRODUCER and "snn.dt" in meta and framework is None:
        exporter = Exporter(PRODUCER, float(meta["snn.dt"]), framework=meta.get("snn.source_framework", "unknown"))
        return exporter, float(dt if dt is not None else exporter.dt), []
    neurons = {name: n for name, n in graph.nodes.items() if type(n).__name__ in _NEURON_TYPES}
    arrays = [v for n in neurons.values() for v in vars(n).values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    float64 = bool(arrays) and all(a.dtype == np.float64 for a in arrays)
    options = f"--from-framework {'|'.join(FRAMEWORKS)}"
    # SpikingJelly's export_to_nir writes no cycles: a recurrent graph (the NIR paper's Braille RNN has
    # SpikingJelly's CubaLIF parameter pattern too) pins no exporter
    recurrent = bool(_recurrent_synapses(graph, [tuple(e) for e in graph.edges if len(e) == 2]))
    pinned_dt = _spikingjelly_dt(neurons) if float64 and not recurrent else None
    notes = []
    if framework is None:
        kinds = {type(n).__name__ for n in neurons.values()}
        if neurons and kinds == {"LIF"} and not float64 and all(
                np.allclose(np.asarray(n.r, np.float64) * 1e-4, np.asarray(n.tau, np.float64), rtol=1e-5)
                for n in neurons.values()):
            framework = "snntorch"
            notes.append("read as an snnTorch export_to_nir file with dt = 1e-4: every LIF has tau = r*1e-4, as "
                         "snnTorch writes them (tau = 1e-4/(1-beta), r = 1/(1-beta)); override with --from-framework")
        elif pinned_dt is not None:
            framework = "spikingjelly"
            notes.append(f"read as a SpikingJelly export_to_nir file with dt = {pinned_dt:.6g}: float64 "
                         f"parameters with IF r = 1/dt (LIF r = tau/dt, CubaLIF r = tau_mem/dt and w_in = tau_syn/dt), "
                         f"as SpikingJelly writes them; override with --from-framework and --dt")
        elif dt is not None:
            framework = "nir"
            notes.append(f"no exporter recognised: read with NIR's own definitions (forward Euler over dt = {dt:.6g}, "
                         f"fire on v > v_threshold, reset to v_reset); pass {options} for an exporter's conventions")
        else:
            raise ModelError(
                f"{path}: cannot tell which tool exported this NIR graph, so not its time step and conventions (NIR "
                f"files record neither; node names and array dtypes identify no exporter); pass {options} (and --dt "
                f"unless the exporter fixes it)"
            )
    if framework not in EXPORTERS:
        raise ModelError(f"unknown framework {framework!r} for --from-framework; choose one of {', '.join(FRAMEWORKS)}")
    exporter = EXPORTERS[framework]
    if dt is None and exporter.dt is None and framework == "spikingjelly" and pinned_dt is not None:
        dt = pinned_dt
        if not notes:
            notes.append(f"dt = {dt:.6g}: SpikingJelly's IF r = 1/dt (LIF r = tau/dt) in this file; override with --dt")
    if dt is None and exporter.dt is None:
        default = f" (its export default is {exporter.default_dt:g})" if exporter.default_dt else ""
        raise ModelError(
            f"{path}: NIR files do not record the time step the {framework} export used{default}, and nothing in "
            f"this one pins it; pass --dt"
        )
    return exporter, float(dt if dt is not None else exporter.dt), notes


def _pair(value, what: str) -> tuple[int, int]:
    array = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if array.size == 1:
        return int(array[0]), int(array[0])
    if array.size == 2:
        return int(array[0]), int(array[1])
    raise UnsupportedOpError(f"{what}: expected one or two sizes, got {array.tolist()}")


@dataclass
class _Reader:
    graph: object
    dt: float | None  # set once the exporter is identified
    exporter: Exporter | None
    reset: str | None
    path: str
    nodes: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)
    output_of: dict = field(default_factory=dict)  # NIR node name -> IR node carrying its output
    scale: dict = field(default_factory=dict)  # IR node name -> factor the true signal has on top of it
    successors: dict = field(default_factory=dict)
    predecessors: dict = field(default_factory=dict)
    readout: tuple | None = None  # (IR source, beta) when the graph ends in a leaky integrator
    recurrent: dict = field(default_factory=dict)  # NIR neuron name -> its recurrent Affine/Linear node name
    notes: list = field(default_factory=list)

    @property
    def euler_dt(self) -> float:
        """The step of forward Euler on the exporter's time constants (Norse writes them times dt)."""
        return self.dt ** 2 if self.exporter.tau_times_dt else self.dt

    def if_gain(self, r: float | np.ndarray) -> float | np.ndarray:
        """An IF neuron's input gain from its ``r``: ``r*dt`` by NIR's ODE, ``r`` for exporters whose IF adds its
        input each step."""
        return r if self.exporter.if_per_step else r * self.dt

    def describe(self, name: str) -> str:
        return f"NIR node {name!r} ({type(self.graph.nodes[name]).__name__})"

    def add(self, node: ir.Node, nir_name: str, scale: float = 1.0) -> None:
        self.shapes[node.name] = node.output_shape([self.shapes[s] for s in node.inputs])
        self.nodes.append(node)
        self.output_of[nir_name] = node.name
        self.scale[node.name] = scale

    def alias(self, nir_name: str, source: str, scale: float = 1.0) -> None:
        self.output_of[nir_name] = source
        self.scale[source] = scale

    def per_neuron(self, name: str, parameter: str, value) -> float | np.ndarray:
        """A neuron parameter array: its one value as a float, or its per-neuron values (float64)."""
        array = np.asarray(value, dtype=np.float64)
        if array.size == 0:
            raise ModelError(f"{self.describe(name)}: parameter {parameter} is empty")
        first = array.ravel()[0]
        return float(first) if np.all(array == first) else array

    def scalar(self, name: str, parameter: str, value) -> float:
        """A per-neuron parameter array that must hold one value (node kinds other than LIF, IF and CubaLIF)."""
        array = np.asarray(value, dtype=np.float64).ravel()
        if array.size == 0:
            raise ModelError(f"{self.describe(name)}: parameter {parameter} is empty")
        if not np.all(array == array[0]):
            raise UnsupportedOpError(
                f"{self.describe(name)}: {parameter} varies across neurons ({array.min():.6g} .. {array.max():.6g}); "
                f"per-neuron values are read for LIF, IF and CubaLIF nodes only"
            )
        return float(array[0])


def tidy(value: float | np.ndarray) -> float | np.ndarray:
    """Undo the float32 storage of a time constant in a derived factor.

    ``dt/tau`` with tau = float32(1e-5) is 0.09999999, not the 0.1 the exporter
    meant: take the shortest decimal within 3e-7 (2.5 float32 ulps) of the value
    (of each value of per-neuron ones). Only for files that store float32 parameters.
    """
    if np.ndim(value):
        return np.vectorize(tidy, otypes=[np.float64])(value)
    for digits in range(1, 9):
        short = float(f"{value:.{digits}g}")
        if abs(short - value) <= 3e-7 * abs(value):
            return short
    return value


def _decay(reader: _Reader, name: str, tau: float | np.ndarray, what: str = "tau") -> float | np.ndarray:
    """``dt / tau`` (per neuron for a per-neuron tau), which must lie in (0, 1] for a forward-Euler
    step to be a decay."""
    if np.any(np.asarray(tau) <= 0):
        raise ModelError(f"{reader.describe(name)}: {what} = {np.min(tau):.6g} must be positive")
    step = reader.euler_dt / tau
    if np.any(step > 1.0 + 1e-6):
        raise ModelError(
            f"{reader.describe(name)}: dt/{what} = {np.max(step):.6g} > 1 with dt = {reader.euler_dt:.6g} (the step is "
            f"longer than the time constant); pass the exporter's time step with --dt (docs/interop.md)"
        )
    return np.minimum(step, 1.0) if np.ndim(step) else min(step, 1.0)


def _stored_as_float32(node) -> bool:
    return any(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in vars(node).values())


def _exact(text: str | None, shape) -> float | np.ndarray:
    """A value our own writer recorded in a node's metadata (backends/nir.py): ``repr`` of a float, or the
    comma-separated per-neuron values of the layer's shape; NaN when absent."""
    if text is None:
        return float("nan")
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else np.array(values).reshape(shape)


def _neuron(reader: _Reader, name: str, source: str, *, beta, gain, v_leak, v_threshold, v_reset, v_init,
            current_decay: float = 0.0) -> None:
    """An IR neuron with the reset and training fields from the exporter's conventions (or our own metadata):
    a Neuron, or a SynapticNeuron when it has a synaptic current or recurrent synapses. Each parameter is a
    float or per-neuron values (an array over the layer)."""
    meta = _metadata(reader.graph.nodes[name])
    reset, delay = "hard", False
    if reader.reset is not None:
        reset, delay = ("hard", False) if reader.reset == "hard" else ("subtract", reader.reset == "subtract-delayed")
    elif "snn.reset" in meta:
        reset, delay = meta["snn.reset"], meta.get("snn.reset_delay", "0") in ("1", "True", "true")
    elif reader.exporter.name == "snntorch" and not np.any(v_reset) and not np.any(v_leak):
        delay = True  # snnTorch's zero reset is delayed; with v_reset = v_leak = 0 that is the same function
    fields = dict(FRAMEWORK_DEFAULTS.get(reader.exporter.framework, {}))
    fields.update(fire_on_equal=reader.exporter.fire_on_equal)
    shape = reader.shapes[source]
    for key, cast in (("fire_on_equal", lambda v: v in ("1", "True", "true")), ("v_init", lambda v: _exact(v, shape)),
                      ("surrogate", str), ("alpha", float), ("detach_reset", lambda v: v in ("1", "True", "true"))):
        if f"snn.{key}" in meta:
            fields[key] = cast(meta[f"snn.{key}"])
    if "v_init" in fields:
        v_init = fields.pop("v_init")
    recurrent = reader.recurrent.get(name)
    if recurrent is not None and reader.scale[source] != 1.0:
        raise UnsupportedOpError(f"{reader.describe(name)}: a recurrent neuron reading a scaled signal (SumPool2d or "
                                 f"Scale) is not supported")
    gain *= reader.scale[source]
    if _stored_as_float32(reader.graph.nodes[name]):
        beta, gain, current_decay = tidy(beta), tidy(gain), tidy(current_decay)
    # our own files carry the exact values; they are used while the ODE parameters still agree with them
    exact = {k: _exact(meta.get(f"snn.{k}"), shape) for k in ("beta", "gain", "current_decay")}
    beta, gain, current_decay = (exact[k] if np.all(np.isclose(exact[k], value, rtol=1e-5, atol=1e-7)) else value
                                 for k, value in (("beta", beta), ("gain", gain), ("current_decay", current_decay)))
    values = dict(beta=beta, gain=gain, v_leak=v_leak, v_threshold=v_threshold, v_reset=v_reset, v_init=v_init,
                  reset=reset, reset_delay=delay, **fields)
    if np.all(current_decay == 0.0) and recurrent is None:
        reader.add(ir.Neuron(name, (source,), **values), name)
        return
    if np.any(current_decay != 0.0) and values["reset"] == "hard" and values["reset_delay"] and \
            reader.exporter.name == "snntorch":
        reader.notes.append(f"{reader.describe(name)}: snnTorch's Synaptic / RSynaptic zero reset also zeroes the "
                            f"synaptic current, which the IR's SynapticNeuron keeps; for snnTorch's default subtract "
                            f"reset pass --nir-reset subtract-delayed")
    synapses = {}
    if recurrent is not None:
        node = reader.graph.nodes[recurrent]
        bias = getattr(node, "bias", None)
        synapses = dict(weight=np.asarray(node.weight, np.float32),
                        bias=None if bias is None else np.asarray(bias, np.float32))
    reader.add(ir.SynapticNeuron(name, (source,), current_decay=current_decay, **synapses, **values), name)


# -- readers: one per NIR node type --------------------------------------------
def _read_affine(reader: _Reader, name, node, source):
    weight = np.asarray(node.weight, np.float32)
    bias = getattr(node, "bias", None)
    if weight.ndim != 2:
        raise UnsupportedOpError(f"{reader.describe(name)}: only a 2-D weight is a Linear layer, got {list(weight.shape)}")
    if reader.shapes[source] != (weight.shape[1],) and len(reader.shapes[source]) > 1:
        raise UnsupportedOpError(f"{reader.describe(name)} reads {list(reader.shapes[source])}; flatten it first")
    weight = weight * np.float32(reader.scale[source]) if reader.scale[source] != 1.0 else weight
    reader.add(ir.Linear(name, (source,), weight=weight, bias=None if bias is None else np.asarray(bias, np.float32)), name)


def _sizes(value, axes: int, what: str) -> tuple[int, ...]:
    """One size per spatial axis: ``_pair`` for 2-D, a 1-tuple for 1-D."""
    if axes == 2:
        return _pair(value, what)
    array = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if array.size != 1:
        raise UnsupportedOpError(f"{what}: expected one size, got {array.tolist()}")
    return (int(array[0]),)


def _read_conv(reader: _Reader, name, node, source):
    """Conv2d, and Conv1d over ``[C, L]`` (the IR's Conv1d)."""
    weight = np.asarray(node.weight, np.float32)
    axes = 1 if type(node).__name__ == "Conv1d" else 2
    if weight.ndim != axes + 2:
        raise UnsupportedOpError(f"{reader.describe(name)}: expected a {axes + 2}-D weight [out, in, *kernel]")
    dilation = _sizes(node.dilation, axes, reader.describe(name))
    stride = _sizes(node.stride, axes, reader.describe(name))
    padding = node.padding
    if isinstance(padding, (str, bytes)) or (isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO"):
        padding = _text(padding)
        if padding == "valid":
            padding = (0,) * axes
        elif padding == "same" and all(s == 1 for s in stride) and all(k % 2 for k in weight.shape[2:]):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, weight.shape[2:]))
        else:
            raise UnsupportedOpError(f"{reader.describe(name)}: padding {padding!r} with stride {stride} is not supported")
    else:
        padding = _sizes(padding, axes, reader.describe(name))
    if reader.scale[source] != 1.0:
        weight = weight * np.float32(reader.scale[source])
    bias = getattr(node, "bias", None)
    layer = (ir.Conv1d if axes == 1 else ir.Conv2d)(
        name, (source,), weight=weight, bias=None if bias is None else np.asarray(bias, np.float32),
        stride=stride, padding=padding, dilation=dilation, groups=int(np.asarray(node.groups)))
    reader.add(layer, name)


def _read_pool(reader: _Reader, name, node, source):
    kernel = _pair(node.kernel_size, reader.describe(name))
    stride = _pair(node.stride, reader.describe(name))
    padding = _pair(node.padding, reader.describe(name))
    layer = ir.AvgPool2d(name, (source,), kernel_size=kernel, stride=stride, padding=padding, count_include_pad=True)
    # SumPool2d = kh*kw * AvgPool2d: the factor rides along to the next weight or neuron gain
    factor = kernel[0] * kernel[1] if type(node).__name__ == "SumPool2d" else 1
    reader.add(layer, name, scale=reader.scale[source] * factor)


def _read_flatten(reader: _Reader, name, node, source):
    shape = reader.shapes[source]
    declared = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    rank = len(declared) if declared is not None else len(shape)
    start = int(node.start_dim) % rank if rank else 0
    end = int(node.end_dim) % rank if rank else 0
    batch_included = rank == len(shape) + 1
    first = 1 if batch_included else 0
    if start > first or end != rank - 1:
        raise UnsupportedOpError(
            f"{reader.describe(name)}: flattens dims {node.start_dim}..{node.end_dim} of {list(shape)}; only "
            f"flattening every per-sample dimension is supported"
        )
    if len(shape) == 1:
        reader.alias(name, source, reader.scale[source])
        return
    reader.add(ir.Flatten(name, (source,)), name, scale=reader.scale[source])


def _read_lif(reader: _Reader, name, node, source):
    step = _decay(reader, name, reader.per_neuron(name, "tau", node.tau))
    v_leak = reader.per_neuron(name, "v_leak", node.v_leak)
    _neuron(reader, name, source, beta=1.0 - step, gain=step * reader.per_neuron(name, "r", node.r), v_leak=v_leak,
            v_threshold=reader.per_neuron(name, "v_threshold", node.v_threshold),
            v_reset=reader.per_neuron(name, "v_reset", node.v_reset), v_init=v_leak)


def _read_if(reader: _Reader, name, node, source):
    v_reset = reader.per_neuron(name, "v_reset", node.v_reset)
    _neuron(reader, name, source, beta=1.0, gain=reader.if_gain(reader.per_neuron(name, "r", node.r)), v_leak=0.0,
            v_threshold=reader.per_neuron(name, "v_threshold", node.v_threshold), v_reset=v_reset, v_init=v_reset)


def _read_cubalif(reader: _Reader, name, node, source):
    synapse = _decay(reader, name, reader.per_neuron(name, "tau_syn", node.tau_syn), "tau_syn")
    step = _decay(reader, name, reader.per_neuron(name, "tau_mem", node.tau_mem), "tau_mem")
    v_leak = reader.per_neuron(name, "v_leak", node.v_leak)
    jump = 1.0 if reader.exporter.current_jumps else synapse  # what one input adds to the current, per w_in
    gain = step * reader.per_neuron(name, "r", node.r) * jump * reader.per_neuron(name, "w_in", node.w_in)
    _neuron(reader, name, source, beta=1.0 - step, gain=gain, v_leak=v_leak, current_decay=1.0 - synapse,
            v_threshold=reader.per_neuron(name, "v_threshold", node.v_threshold),
            v_reset=reader.per_neuron(name, "v_reset", node.v_reset), v_init=v_leak)


def _read_integrator(reader: _Reader, name, node, source):
    """LI / I as the last layer: the IR's leaky readout (mean over time of the integrator)."""
    if [s for s in reader.successors.get(name, ()) if type(reader.graph.nodes[s]).__name__ != "Output"] or not \
            reader.successors.get(name):
        raise UnsupportedOpError(f"{reader.describe(name)}: a non-spiking integrator is supported only as the last layer")
    if type(node).__name__ == "LI":
        step = _decay(reader, name, reader.scalar(name, "tau", node.tau))
        beta, gain = 1.0 - step, step * reader.scalar(name, "r", node.r)
        if reader.scalar(name, "v_leak", node.v_leak) != 0.0:
            raise UnsupportedOpError(f"{reader.describe(name)}: a readout with a non-zero v_leak is not supported")
    else:
        beta, gain = 1.0, reader.if_gain(reader.scalar(name, "r", node.r))
    gain *= reader.scale[source]
    if not np.isclose(gain, 1.0, rtol=1e-6):
        previous = reader.nodes[-1]
        if previous.name != source or not isinstance(previous, (ir.Linear, ir.Conv2d)) or \
                len(reader.successors.get(_nir_name_of(reader, source), ())) != 1:
            raise UnsupportedOpError(
                f"{reader.describe(name)}: its input gain {gain:.6g} can only be folded into a Linear layer right before it"
            )
        previous.weight = (previous.weight * np.float32(gain)).astype(np.float32)
        if previous.bias is not None:
            previous.bias = (previous.bias * np.float32(gain)).astype(np.float32)
    reader.readout = (source, beta)
    reader.alias(name, source)


def _nir_name_of(reader: _Reader, ir_name: str) -> str:
    return next((n for n, i in reader.output_of.items() if i == ir_name), ir_name)


def _read_scale(reader: _Reader, name, node, source):
    factors = np.asarray(node.scale, np.float64).ravel()
    if not np.all(factors == factors[0]):
        raise UnsupportedOpError(f"{reader.describe(name)}: a per-neuron Scale is not supported")
    reader.alias(name, source, reader.scale[source] * float(factors[0]))


_READERS = {
    "Affine": _read_affine,
    "Linear": _read_affine,
    "Conv1d": _read_conv,
    "Conv2d": _read_conv,
    "AvgPool2d": _read_pool,
    "SumPool2d": _read_pool,
    "Flatten": _read_flatten,
    "LIF": _read_lif,
    "IF": _read_if,
    "CubaLIF": _read_cubalif,
    "LI": _read_integrator,
    "I": _read_integrator,
    "Scale": _read_scale,
}


def _recurrent_synapses(graph, edges: list) -> dict[str, str]:
    """Neuron -> the Affine/Linear node of a two-node cycle neuron -> synapses -> neuron (its recurrent
    synapses): the synapses read only that neuron and feed only it."""
    sources, targets = {}, {}
    for source, target in edges:
        sources.setdefault(target, []).append(source)
        targets.setdefault(source, []).append(target)
    found = {}
    for name, node in graph.nodes.items():
        if type(node).__name__ not in ("Affine", "Linear") or len(sources.get(name, ())) != 1:
            continue
        (neuron,) = sources[name]
        if targets.get(name) == [neuron] and type(graph.nodes[neuron]).__name__ in ("CubaLIF", "LIF") \
                and neuron not in found:
            found[neuron] = name
    return found


def _topological(reader: _Reader, graph) -> list[str]:
    predecessors = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        if len(edge) != 2 or any(end not in graph.nodes for end in edge):
            raise ModelError(f"{reader.path}: edge {tuple(edge)} names a node that is not in the graph "
                             f"(nested NIR graphs are not supported)")
    reader.recurrent = _recurrent_synapses(graph, [tuple(e) for e in graph.edges])
    feedback = {(synapses, neuron) for neuron, synapses in reader.recurrent.items()}
    feedback |= {(neuron, synapses) for neuron, synapses in reader.recurrent.items()}
    for edge in graph.edges:
        source, target = edge
        if (source, target) in feedback:
            continue  # a neuron's recurrent synapses are read with the neuron
        predecessors[target].append(source)
        reader.successors.setdefault(source, []).append(target)
    order, done = [], set()
    recurrent_synapses = set(reader.recurrent.values())
    ready = [n for n in graph.nodes if not predecessors[n] and n not in recurrent_synapses]
    while ready:
        name = ready.pop(0)
        order.append(name)
        done.add(name)
        for target in reader.successors.get(name, ()):
            if target not in done and target not in ready and all(p in done for p in predecessors[target]):
                ready.append(target)
    if len(order) + len(recurrent_synapses) != len(graph.nodes):
        cycle = sorted(n for n in graph.nodes if n not in done and _on_a_cycle(reader.successors, n))
        synapses = [n for n in cycle if type(graph.nodes[n]).__name__ in ("Affine", "Linear")]
        raise UnsupportedOpError(
            f"{reader.path}: a cycle through NIR node(s) {', '.join(map(repr, synapses or cycle))} is not a neuron's "
            f"recurrent synapses (one Affine/Linear from a LIF/CubaLIF back into it, snnTorch RLeaky / RSynaptic), "
            f"the only recurrence supported"
        )
    reader.predecessors = predecessors
    return order


def _on_a_cycle(successors: dict, start: str) -> bool:
    stack, seen = list(successors.get(start, ())), set()
    while stack:
        name = stack.pop()
        if name == start:
            return True
        if name not in seen:
            seen.add(name)
            stack.extend(successors.get(name, ()))
    return False


def _input_shape(graph, name: str, node) -> tuple[int, ...]:
    shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).ravel())
    return shape


def to_graph(graph, *, dt: float | None = None, reset: str | None = None, framework: str | None = None,
             path: str = "NIR graph") -> ir.Graph:
    """The IR of an in-memory ``nir.NIRGraph`` (see the module docstring for the discretisation).

    ``framework`` (one of :data:`FRAMEWORKS`) and ``dt`` override what :func:`_identify` infers; every
    inference is kept in the metadata's ``import_notes``. Errors are one-line ModelErrors (or
    UnsupportedOpErrors) that start with ``path``.
    """
    if reset is not None and reset not in RESET_CHOICES:
        raise ModelError(f"unknown NIR reset {reset!r}; choose one of {', '.join(RESET_CHOICES)}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ModelError(f"--dt must be a positive time step, got {dt}")
    reader = _Reader(graph, None, None, reset, path)
    order = _topological(reader, graph)  # a refused construct is named before any question about the exporter
    for name, node in graph.nodes.items():
        if type(node).__name__ not in _READERS and type(node).__name__ not in ("Input", "Output"):
            raise UnsupportedOpError(f"{path}: {reader.describe(name)} is not supported yet (supported: "
                                     f"{', '.join(sorted(_READERS))}, Input, Output)")
    reader.exporter, reader.dt, reader.notes = _identify(graph, framework, dt, path)
    if reset is None and reader.exporter.reset_note:
        reader.notes.append(reader.exporter.reset_note)
    try:
        _read_nodes(reader, graph, order)
    except IRError as error:
        raise ModelError(f"{path}: {error}") from None
    except (ModelError, UnsupportedOpError) as error:
        if str(error).startswith(path):
            raise
        raise type(error)(f"{path}: {error}") from None
    if reader.exporter.name == PRODUCER:  # our own file: the IR's metadata as it was written
        metadata = {k[len("snn.meta."):]: v for k, v in _metadata(graph).items() if k.startswith("snn.meta.")}
    else:
        metadata = {"source_format": "nir", "source_framework": reader.exporter.framework,
                    "nir.exporter": reader.exporter.name,
                    "nir.dt": repr(reader.dt), "nir.reset": reader.reset or "as recorded (v_reset)"}
    if reader.notes:
        metadata["import_notes"] = " | ".join(reader.notes)
    try:
        return ir.Graph(reader.nodes, metadata)
    except IRError as error:
        raise ModelError(f"{path}: {error}") from None


def _read_nodes(reader: _Reader, graph, order: list[str]) -> None:
    path = reader.path
    types = {name: type(node).__name__ for name, node in graph.nodes.items()}
    inputs = [n for n, t in types.items() if t == "Input"]
    outputs = [n for n, t in types.items() if t == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: a NIR graph needs exactly one Input and one Output node, "
                         f"this one has {len(inputs)} and {len(outputs)}")
    for name in order:
        node, kind = graph.nodes[name], types[name]
        sources = [reader.output_of[p] for p in reader.predecessors[name] if p in reader.output_of]
        if kind == "Input":
            shape = _input_shape(graph, name, node)
            following = [graph.nodes[s] for s in reader.successors.get(name, ())]
            if len(shape) == 2 and shape[0] == 1 and following and all(type(f).__name__ in ("Affine", "Linear") for f in following):
                shape = shape[1:]  # a batched sample [1, F] recorded by the exporter (Norse's documented call)
            reader.add(ir.Input(name, shape=shape), name)
            continue
        if not sources:
            raise ModelError(f"{path}: {reader.describe(name)} has no input")
        if len(sources) > 1:  # NIR sums all edges into a node
            if len({reader.scale[s] for s in sources}) != 1:
                raise UnsupportedOpError(f"{reader.describe(name)}: sums inputs of different scales")
            total = sources[0]
            for k, other in enumerate(sources[1:], 1):
                add = ir.Add(f"{name}.sum{k}" if len(sources) > 2 else f"{name}.sum", (total, other))
                reader.add(add, f"{name}.sum{k}", scale=reader.scale[sources[0]])
                total = add.name
            sources = [total]
        (source,) = sources
        if kind == "Output":
            if reader.readout is not None:
                readout_source, beta = reader.readout
                readout = ir.Readout(name, (readout_source,), mode="leaky", beta=beta)
            else:
                if reader.scale[source] != 1.0:
                    raise UnsupportedOpError(f"{reader.describe(name)}: reads a scaled signal (SumPool2d or Scale) directly")
                readout = ir.Readout(name, (source,), mode=graph_readout_mode(graph))
            reader.add(readout, name)
            continue
        _READERS[kind](reader, name, node, source)


def graph_readout_mode(graph) -> str:
    """``spikes`` (the spike train NIR's Output carries), or ``rate`` when this tool wrote a rate readout."""
    mode = _metadata(graph).get("snn.readout", "spikes")
    return mode if mode in ("rate", "spikes") else "spikes"


def read_nir(path: str | os.PathLike, *, dt: float | None = None, reset: str | None = None,
             framework: str | None = None) -> ir.Graph:
    """Read a ``.nir`` file as an IR graph; every problem is a one-line ModelError."""
    nir = import_nir()
    path = Path(path)
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as error:  # h5py and nir raise many types for a bad file
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelError(f"{path}: not a readable NIR file ({type(error).__name__}{': ' + detail if detail else ''})") from None
    if type(graph).__name__ != "NIRGraph":
        raise ModelError(f"{path}: the NIR file holds a single {type(graph).__name__}, not a graph")
    return to_graph(graph, dt=dt, reset=reset, framework=framework, path=str(path))
