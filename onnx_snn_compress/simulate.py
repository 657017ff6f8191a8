"""The forward simulator: runs an IR graph on time-major data with the Numba kernels.

Python here owns shapes, dtypes and dispatch; the kernels in
``onnx_snn_compress.kernels`` are pure functions over float32 arrays. Each node
kind has one forward function, found by kind in :data:`FORWARD` (like the ONNX
reference evaluator's registry), taking and returning ``[T, N, *shape]``
tensors. Stateless layers run on ``[T*N, *shape]``.

Samples are independent, so the data is cut into batches along N to bound
memory; no kernel's result depends on the batch (see kernels/linear.py and
kernels/conv.py), so neither does the simulation's.

Static tensors: under direct encoding the input is the same at every time step, and so is
the output of every layer that works step by step (:data:`PER_STEP_KINDS`) until the first
neuron. :func:`run_nodes` detects such an input (it compares the steps; nothing is
assumed), stores it and those outputs once, with a time axis of 1, and computes those
layers once instead of T times; the neuron reads its one input row at every step. The
kernels compute each step's value exactly as they would on the full tensor (each sample's
output depends only on that sample), so the results are bit-identical either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import DataError
from .ir import (
    Add,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Input,
    Linear,
    MaxPool2d,
    Neuron,
    Node,
    PLANAR_1D_KINDS,
    Readout,
    SynapticNeuron,
)
from .kernels.batchnorm import batchnorm_eval_forward
from .kernels.conv import conv2d_forward
from .kernels.linear import linear_forward
from .kernels.neuron import RESET_CODES, lif_forward
from .kernels.neuron_pool import lif_maxpool_forward
from .kernels.pool import avgpool2d_forward, maxpool2d_forward, pool2d_output_size
from .kernels.readout import leaky_readout_forward, rate_readout_forward
from .kernels.spike_conv import spike_conv2d_forward, use_spike_conv
from .kernels.synaptic import synaptic_forward

_NO_BIAS = np.zeros(0, dtype=np.float32)


@dataclass
class SimulationResult:
    """What a simulation of a graph on ``[T, N, ...]`` data produced.

    output: ``[N, C]`` for rate and leaky readouts, ``[T, N, C]`` for spikes.
    spike_counts: per Neuron node, int64 of the layer's per-sample shape:
    spikes of each neuron summed over time steps and samples.
    """

    output: np.ndarray
    spike_counts: dict[str, np.ndarray]
    time_steps: int
    samples: int

    def firing_rates(self) -> dict[str, float]:
        """Per Neuron layer: spikes / (T * N * neurons), the mean spike probability per step."""
        return {
            name: float(counts.sum()) / (self.time_steps * self.samples * counts.size)
            for name, counts in self.spike_counts.items()
        }

    def predictions(self) -> np.ndarray:
        """Predicted class per sample (int64 ``[N]``): argmax over classes, first index on ties."""
        scores = self.output.mean(axis=0, dtype=np.float64) if self.output.ndim == 3 else self.output
        return np.argmax(scores, axis=-1)


@dataclass
class Trace:
    """What a forward pass records besides its output, filled in by the Neuron forward.

    spike_counts: per Neuron node, int64 ``[N, *shape]`` spikes summed over time.
    potentials: per Neuron node, the pre-reset potential ``H`` as float32
    ``[T, N, *shape]``, only when ``record_potential`` (what BPTT needs).
    observe: if set, called as ``observe(node, inputs)`` before each node runs
    (how resource models measure what reaches each synapse layer); it sees every
    input with all T steps, static or not.
    """

    record_potential: bool = False
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    potentials: dict[str, np.ndarray] = field(default_factory=dict)
    observe: Callable[[Node, list[np.ndarray]], None] | None = None
    #: T of the run, the tensors stored once for all steps (time axis 1), and the tensors
    #: that hold spikes (:func:`spike_tensors`), set by run_nodes
    time_steps: int | None = None
    static: set[str] = field(default_factory=set)
    spikes: frozenset[str] = frozenset()


LayerForward = Callable[[Node, list[np.ndarray], Trace], np.ndarray]

FORWARD: dict[str, LayerForward] = {}


def _forward_of(kind: str):
    def register(function: LayerForward) -> LayerForward:
        FORWARD[kind] = function
        return function

    return register


def _per_step(x: np.ndarray) -> np.ndarray:
    """``[T, N, *shape] -> [T*N, *shape]`` (a view for contiguous data)."""
    return np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@_forward_of(Input.kind)
def _input(node: Input, inputs, trace):
    (x,) = inputs
    return x


@_forward_of(Linear.kind)
def _linear(node: Linear, inputs, trace):
    (x,) = inputs
    weight_t = np.ascontiguousarray(node.weight.T)
    bias = _NO_BIAS if node.bias is None else node.bias
    y = linear_forward(_per_step(x), weight_t, bias)
    return y.reshape(*x.shape[:2], y.shape[1])


def event_driven(node: Conv2d, trace: Trace) -> bool:
    """Whether ``node`` convolves spikes with a geometry the event-driven kernel computes
    (kernels/spike_conv.py; 2.4x faster than im2col + GEMM on mnist_conv's conv2, bench/README.md)."""
    return node.inputs[0] in trace.spikes and use_spike_conv(node.stride, node.dilation, node.groups)


@_forward_of(Conv2d.kind)
def _conv2d(node: Conv2d, inputs, trace):
    (x,) = inputs
    if event_driven(node, trace):
        y = spike_conv2d_forward(_per_step(x), node.weight, node.bias, node.padding)
    else:
        y = conv2d_forward(_per_step(x), node.weight, node.bias, node.stride, node.padding, node.dilation,
                           node.groups)
    return y.reshape(*x.shape[:2], *y.shape[1:])


@_forward_of(BatchNorm.kind)
def _batchnorm(node: BatchNorm, inputs, trace):
    (x,) = inputs
    channels = x.shape[2]
    y = batchnorm_eval_forward(
        _per_step(x).reshape(-1, channels, int(np.prod(x.shape[3:], dtype=np.int64))),
        node.weight, node.bias, node.running_mean, node.running_var, np.float32(node.eps),
    )
    return y.reshape(x.shape)


def _pool_geometry(node, x):
    """``[T, N, C, H, W]`` as ``[T*N, C, H, W]``, and the pooling kernels' geometry arguments."""
    return _per_step(x), _window(node, *x.shape[3:])


def _window(node, height: int, width: int) -> tuple[int, ...]:
    """The pooling kernels' geometry arguments ``(kh, kw, sh, sw, ph, pw, out_h, out_w)``."""
    (kh, kw), (sh, sw), (ph, pw) = node.kernel_size, node.stride, node.padding
    return kh, kw, sh, sw, ph, pw, pool2d_output_size(height, kh, sh, ph), pool2d_output_size(width, kw, sw, pw)


@_forward_of(MaxPool2d.kind)
def _maxpool2d(node: MaxPool2d, inputs, trace):
    (x,) = inputs
    steps, geometry = _pool_geometry(node, x)
    y = maxpool2d_forward(steps, *geometry)
    return y.reshape(*x.shape[:2], *y.shape[1:])


@_forward_of(AvgPool2d.kind)
def _avgpool2d(node: AvgPool2d, inputs, trace):
    (x,) = inputs
    steps, geometry = _pool_geometry(node, x)
    y = avgpool2d_forward(steps, *geometry, node.count_include_pad)
    return y.reshape(*x.shape[:2], *y.shape[1:])


def planar_view(x: np.ndarray) -> np.ndarray:
    """``[T, N, C, L]`` as ``[T, N, C, 1, L]`` (a view): where a 1-D layer runs as its 2-D parent."""
    return x[:, :, :, None, :]


def _planar_forward(forward_2d: LayerForward) -> LayerForward:
    def forward(node, inputs, trace):
        if inputs[0].ndim == 5:  # given the planar view already (the training forward records it)
            return forward_2d(node, inputs, trace)
        return forward_2d(node, [planar_view(x) for x in inputs], trace)[:, :, :, 0, :]

    return forward


for _one_d, _two_d in PLANAR_1D_KINDS.items():  # Conv1d, MaxPool1d, AvgPool1d: their 2-D parents' kernels
    FORWARD[_one_d.kind] = _planar_forward(FORWARD[_two_d.kind])


@_forward_of(Flatten.kind)
def _flatten(node: Flatten, inputs, trace):
    (x,) = inputs
    return np.ascontiguousarray(x).reshape(*x.shape[:2], -1)


@_forward_of(Add.kind)
def _add(node: Add, inputs, trace):
    a, b = inputs
    return np.add(a, b, dtype=np.float32)


@_forward_of(Dropout.kind)
def _dropout(node: Dropout, inputs, trace):
    (x,) = inputs
    return x


@_forward_of(Neuron.kind)
def _neuron(node: Neuron, inputs, trace):
    (x,) = inputs
    time_steps = x.shape[0] if trace.time_steps is None else trace.time_steps  # x may be static
    spikes, potential, counts = lif_forward(np.ascontiguousarray(x).reshape(x.shape[0], -1),
                                            *neuron_arguments(node, x.shape[2:]), trace.record_potential, time_steps)
    shape = (time_steps, *x.shape[1:])
    trace.spike_counts[node.name] = counts.reshape(x.shape[1:])
    if trace.record_potential:
        trace.potentials[node.name] = potential.reshape(shape)
    return spikes.reshape(shape)


#: A Neuron and the MaxPool2d that alone reads its spikes run fused from this size of the
#: neurons' spikes (T x N x neurons x 4 bytes) up: below it the two nodes' tensors stay in
#: cache and apart they are faster (bench/README.md, "Where it stands, fourteenth session").
FUSED_POOL_BYTES = 8 << 20


def fused_pools(graph: Graph, time_steps: int, samples: int) -> dict[str, MaxPool2d]:
    """Per Neuron whose spikes nothing but one MaxPool2d reads, and whose spikes over ``time_steps``
    and ``samples`` take at least :data:`FUSED_POOL_BYTES`, that pool. Such a pair runs as one
    kernel (:func:`neuron_maxpool`; trained, one more for the backward: backprop.py), bit for
    bit as the two nodes apart, without writing the spikes."""
    readers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for source in node.inputs:
            readers.setdefault(source, []).append(node)
    return {node.name: readers[node.name][0] for node in graph.nodes
            if node.kind == Neuron.kind and len(readers.get(node.name, ())) == 1
            and readers[node.name][0].kind == MaxPool2d.kind
            and time_steps * samples * int(np.prod(graph.shapes[node.name])) * 4 >= FUSED_POOL_BYTES}


def fused_call(pairs: dict[str, MaxPool2d], fused, plain):
    """A ``run_nodes`` call that runs each pair of ``pairs`` (:func:`fused_pools`) as one: the Neuron
    by ``fused(node, pool, inputs)``, whose pooled spikes its pool then passes on; every other
    node by ``plain(node, inputs)``."""
    pools = {pool.name for pool in pairs.values()}

    def call(node, inputs):
        if node.name in pools:  # its neuron gave out the pooled spikes already
            return inputs[0]
        if node.name in pairs:
            return fused(node, pairs[node.name], inputs)
        return plain(node, inputs)

    return call


def neuron_arguments(node: Neuron, shape) -> tuple:
    """A Neuron's ``(beta, gain, v_threshold, v_reset, v_leak, v_init, reset code, reset_delay,
    fire_on_equal)`` as the kernels take them, for its feature ``shape``."""
    values = node.parameter_values(shape)
    return (values["beta"], values["gain"], values["v_threshold"], values["v_reset"], values["v_leak"],
            values["v_init"], RESET_CODES[node.reset], node.reset_delay, node.fire_on_equal)


def neuron_maxpool(node: Neuron, pool: MaxPool2d, x: np.ndarray, trace: Trace) -> tuple[np.ndarray, tuple]:
    """``pool``'s output on ``node``'s spikes, from the neurons' input ``x`` ``[T, N, C, H, W]``
    (or ``[1, ...]``, static): ``([T, N, C, out_h, out_w], the pooling kernels' geometry)``;
    the spike counts land in ``trace`` as the Neuron forward's do (no potential is recorded)."""
    geometry = _window(pool, *x.shape[3:])
    time_steps = trace.time_steps or x.shape[0]
    pooled, counts = lif_maxpool_forward(np.ascontiguousarray(x).reshape(x.shape[0], -1), time_steps,
                                         *x.shape[3:], geometry, *neuron_arguments(node, x.shape[2:]))
    trace.spike_counts[node.name] = counts.reshape(x.shape[1:])
    return pooled.reshape(time_steps, *x.shape[1:3], *geometry[6:]), geometry


@_forward_of(SynapticNeuron.kind)
def _synaptic_neuron(node: SynapticNeuron, inputs, trace):
    (x,) = inputs
    time_steps = x.shape[0] if trace.time_steps is None else trace.time_steps
    x = expand_static(x, time_steps)  # the current integrates its input: no static shortcut
    spikes, potential, current = synaptic_forward(
        x, node.weight, node.bias, node.current_decay, node.beta, node.gain, node.v_threshold, node.v_reset,
        node.v_leak, node.v_init, RESET_CODES[node.reset], node.reset_delay, node.fire_on_equal,
        trace.record_potential,
    )
    trace.spike_counts[node.name] = spikes.sum(axis=0, dtype=np.int64)
    if trace.record_potential:
        trace.potentials[node.name] = (potential, current)
    return spikes


@_forward_of(Readout.kind)
def _readout(node: Readout, inputs, trace):
    (x,) = inputs
    if node.mode == "spikes":
        return x
    time_steps, samples, classes = x.shape
    steps = np.ascontiguousarray(x).reshape(time_steps, samples * classes)
    if node.mode == "rate":
        y = rate_readout_forward(steps)
    else:
        y = leaky_readout_forward(steps, np.float32(node.beta))
    return y.reshape(samples, classes)


def _last_uses(graph: Graph) -> list[list[str]]:
    """For each node position, the tensors no later node reads, so they can be freed there."""
    last = {}
    for position, node in enumerate(graph.nodes):
        for source in node.inputs:
            last[source] = position
    freed: list[list[str]] = [[] for _ in graph.nodes]
    for name, position in last.items():
        freed[position].append(name)
    return freed


#: Node kinds that compute each time step from that step's input alone, the same way at
#: every step: on inputs that are the same at every step, so is their output.
PER_STEP_KINDS = frozenset(kind.kind for kind in (Linear, Conv2d, BatchNorm, MaxPool2d, AvgPool2d, Flatten,
                                                   Dropout, Add, *PLANAR_1D_KINDS))


def spike_tensors(graph: Graph) -> frozenset[str]:
    """The tensors of ``graph`` that are zero wherever no neuron spiked: the spikes of every
    neuron, and what MaxPool, Flatten and Dropout (which only scales) make of them alone."""
    spikes: set[str] = set()
    for node in graph.nodes:
        if isinstance(node, (Neuron, SynapticNeuron)) or (
                isinstance(node, (MaxPool2d, Flatten, Dropout)) and all(s in spikes for s in node.inputs)):
            spikes.add(node.name)
    return frozenset(spikes)


def is_static(x: np.ndarray) -> bool:
    """Is ``x`` ``[T, N, ...]`` (T > 1) the same at every time step? (Compared, not assumed.)"""
    return x.shape[0] > 1 and all(np.array_equal(x[t], x[0]) for t in range(1, x.shape[0]))


def expand_static(x: np.ndarray, time_steps: int) -> np.ndarray:
    """A static tensor ``[1, N, ...]`` as ``[T, N, ...]`` (a read-only view)."""
    return np.broadcast_to(x, (time_steps, *x.shape[1:]))


def run_nodes(graph: Graph, x: np.ndarray, trace: Trace, call: Callable[[Node, list[np.ndarray]], np.ndarray],
              static_input: bool = True) -> np.ndarray:
    """Run ``call(node, inputs)`` for every node of ``graph`` in order on ``x`` ``[T, N, ...]``
    and return the readout's value, freeing each tensor after its last use.

    With ``static_input`` and an input that is the same at every step (:func:`is_static`),
    the input and the outputs of the :data:`PER_STEP_KINDS` nodes fed only by such tensors
    are computed and stored once, ``[1, N, ...]``; their names land in ``trace.static``.
    A Neuron reads such an input as is (``trace.time_steps`` tells it T); every other node
    sees it expanded to T steps. ``trace.observe`` sees every input expanded.
    """
    time_steps = x.shape[0]
    trace.time_steps = time_steps
    trace.spikes = spike_tensors(graph)
    values: dict[str, np.ndarray] = {}
    for node, freed in zip(graph.nodes, _last_uses(graph)):
        if isinstance(node, Input):
            if static_input and is_static(x):
                trace.static.add(node.name)
                inputs = [x[:1]]
            else:
                inputs = [x]
        else:
            inputs = [values[s] for s in node.inputs]
            static = [s in trace.static for s in node.inputs]
            if node.kind in PER_STEP_KINDS and all(static):
                trace.static.add(node.name)
            elif not isinstance(node, Neuron):  # (a SynapticNeuron expands a static input itself)
                inputs = [expand_static(v, time_steps) if s else v for v, s in zip(inputs, static)]
        if trace.observe is not None:
            trace.observe(node, [expand_static(v, time_steps) for v in inputs])
        values[node.name] = call(node, inputs)
        for name in freed:
            del values[name]
    return values[graph.readout.name]


def forward(graph: Graph, x: np.ndarray, trace: Trace | None = None) -> np.ndarray:
    """One forward pass over float32 ``x`` ``[T, N, *input shape]`` (no validation, no batching).

    Returns the readout's output; neuron records land in ``trace``.
    """
    trace = Trace() if trace is None else trace
    # a Neuron and its MaxPool2d fused, unless the trace wants the potentials or every node's inputs
    pairs = {} if trace.record_potential or trace.observe is not None else fused_pools(graph, *x.shape[:2])
    call = fused_call(pairs, lambda node, pool, inputs: neuron_maxpool(node, pool, inputs[0], trace)[0],
                      lambda node, inputs: FORWARD[node.kind](node, inputs, trace))
    return run_nodes(graph, x, trace, call)


def _check_data(graph: Graph, x) -> np.ndarray:
    shape = graph.input.shape
    expected = f"[T, N, {', '.join(map(str, shape))}]"
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise DataError(f"input data must be a numeric array of shape {expected}, got {type(x).__name__}"
                        + (f" of {x.dtype}" if isinstance(x, np.ndarray) else ""))
    if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != shape:
        raise DataError(f"input data of shape {list(x.shape)} does not fit the model's input {expected}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"input data of shape {list(x.shape)} has no time steps or no samples")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError("input data holds NaN or infinite values")
    return x


def simulate(graph: Graph, x: np.ndarray, batch_size: int | None = 256,
             after_batch: Callable[[int], None] | None = None) -> SimulationResult:
    """Run ``graph`` on ``x`` ``[T, N, *graph.input.shape]`` (float32), ``batch_size`` samples at a time.

    ``batch_size=None`` runs all samples at once. The result does not depend on it.
    ``after_batch(samples)``, if given, is called after each batch (progress).
    Raises DataError when ``x`` does not fit the graph.
    """
    x = _check_data(graph, x)
    time_steps, samples = x.shape[:2]
    if batch_size is None:
        batch_size = samples
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")

    spike_counts = {n.name: np.zeros(graph.shapes[n.name], dtype=np.int64) for n in graph.neurons()}
    outputs = []
    for start in range(0, samples, batch_size):
        trace = Trace()
        batch = np.ascontiguousarray(x[:, start:start + batch_size])
        outputs.append(forward(graph, batch, trace))
        for name, counts in trace.spike_counts.items():
            spike_counts[name] += counts.sum(axis=0)
        if after_batch is not None:
            after_batch(batch.shape[1])
    sample_axis = 1 if graph.readout.mode == "spikes" else 0
    output = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=sample_axis)
    return SimulationResult(output, spike_counts, int(time_steps), int(samples))
