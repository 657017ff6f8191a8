"""Backpropagation through time over an IR graph, with surrogate gradients for the spikes.

:func:`forward_train` runs a graph as the simulator does and records on a :class:`Tape`
what each node's backward needs; :func:`backward` walks the graph in reverse and returns
the gradient of the loss for every trainable array (:func:`trainable`). Each node kind has
one training forward in :data:`TRAIN_FORWARD` and one backward in :data:`BACKWARD`, found
by kind (like :data:`onnx_snn_compress.simulate.FORWARD`); the arithmetic lives in the
Numba kernels beside their forward twins.

What is trained: Linear/Conv2d weight and bias, BatchNorm weight and bias, the recurrent
synapses (weight and bias) of a SynapticNeuron. Neuron parameters (beta, threshold, gain,
current decay, ...) are constants. The spike's derivative is the
neuron's surrogate (see ``kernels/neuron.py`` for the formulas); ``detach_reset`` stops the
gradient through the reset.

Train mode (``train=True``): BatchNorm normalises with the statistics of the batch over
T*N (and H, W) and updates the graph's running statistics in place (PyTorch's momentum,
unbiased variance for ``running_var``); Dropout multiplies by a mask drawn from ``rng``,
one per sample shared by all time steps. Eval mode (``train=False``) computes exactly
:func:`onnx_snn_compress.simulate.forward` and still records the tape.

Static input (direct encoding): when the input is the same at every time step, the layers
before the first neuron run once, as in the simulator (:func:`onnx_snn_compress.simulate.run_nodes`),
and so does their backward: the gradient of a tensor that is the same at every step is the
sum over time of its steps' gradients, so e.g. a first Linear layer's weight gradient is one
product ``(sum_t dL/dY[t]).T @ X`` instead of T. BatchNorm in train mode takes its batch
statistics over the N samples, which are those over the T*N identical rows; its backward
formula, given the time-summed gradient, is the time sum of the per-step one. (Such a
tape has no per-step input gradient: ``forward_train(static_input=False)`` records one that has.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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
from .kernels.batchnorm import batchnorm_backward, batchnorm_train_forward
from .kernels.conv import conv2d_backward
from .kernels.dropout import dropout_backward, dropout_forward, dropout_mask
from .kernels.linear import linear_backward
from .kernels.neuron import RESET_CODES, SURROGATE_CODES, lif_backward
from .kernels.neuron_pool import lif_maxpool_backward
from .kernels.pool import avgpool2d_backward, maxpool2d_backward, maxpool2d_forward_indices
from .kernels.readout import leaky_readout_backward, rate_readout_backward
from .kernels.spike_conv import spike_conv2d_input_grad, spike_conv2d_weight_grad
from .kernels.synaptic import recurrent_weight_grads, synaptic_backward
from .simulate import (FORWARD, Trace, _per_step, _pool_geometry, event_driven, fused_call, fused_pools,
                       neuron_arguments, neuron_maxpool, planar_view, run_nodes)

#: Name of the input gradient in :func:`backward`'s result when ``input_grad=True``.
INPUT_GRAD = "input"


def trainable(graph: Graph) -> dict[str, np.ndarray]:
    """``"<node>.<field>"`` -> the graph's own float32 array, for every trained parameter.

    Linear and Conv2d weight and bias (when present), BatchNorm weight and bias, a SynapticNeuron's
    recurrent weight and bias, in graph order. The arrays are the graph's: updating them in place
    updates the graph. (An array that is read-only, e.g. a view of an ONNX file's buffer, is first
    replaced in its node by a writable copy.)
    """
    params: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if _has_trained_arrays(node):
            params[f"{node.name}.weight"] = _writable(node, "weight")
            if node.bias is not None:
                params[f"{node.name}.bias"] = _writable(node, "bias")
    return params


def _has_trained_arrays(node: Node) -> bool:
    return isinstance(node, (Linear, Conv2d, BatchNorm)) or (isinstance(node, SynapticNeuron) and node.recurrent)


def _writable(node: Node, field_name: str) -> np.ndarray:
    """The node's array ``field_name``, replaced by a copy first if it is read-only."""
    array = getattr(node, field_name)
    if not array.flags.writeable:
        array = array.copy()
        setattr(node, field_name, array)
    return array


@dataclass
class Tape:
    """What :func:`forward_train` recorded for :func:`backward`.

    spike_counts: per Neuron node, int64 ``[N, *shape]``, spikes summed over time (as
    :class:`onnx_snn_compress.simulate.Trace`). records: per node, what its backward needs.
    static: the tensors computed once for all time steps (static input).
    pooled: per Neuron whose spikes only a MaxPool2d reads, that pool's name: the pair ran
    fused (:func:`fused_pools`), and the neuron's record is its input.
    """

    time_steps: int
    samples: int
    train: bool
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    static: set[str] = field(default_factory=set)
    pooled: dict[str, str] = field(default_factory=dict)

    def firing_rates(self) -> dict[str, float]:
        """Per Neuron layer: spikes / (T * N * neurons)."""
        return {
            name: float(counts.sum()) / (self.time_steps * counts.size)
            for name, counts in self.spike_counts.items()
        }


@dataclass
class TrainContext:
    """What one training forward shares between its nodes: the mode, the random generator
    (Dropout) and the simulator's trace (spike counts, recorded potentials)."""

    train: bool
    rng: np.random.Generator | None
    trace: Trace


# -- training forward: output and record per node ---------------------------------------

TrainForward = Callable[[Node, list[np.ndarray], TrainContext], tuple[np.ndarray, Any]]
TRAIN_FORWARD: dict[str, TrainForward] = {}


def _train_forward_of(*kinds: str):
    def register(function: TrainForward) -> TrainForward:
        for kind in kinds:
            TRAIN_FORWARD[kind] = function
        return function

    return register


@_train_forward_of(Input.kind, Flatten.kind, Add.kind)
def _stateless(node, inputs, run):
    # No record: their backward needs only the shapes it is given.
    return FORWARD[node.kind](node, inputs, run.trace), None


@_train_forward_of(Linear.kind)
def _linear(node, inputs, run):
    (x,) = inputs
    return FORWARD[node.kind](node, inputs, run.trace), x


@_train_forward_of(Conv2d.kind)
def _conv2d(node, inputs, run):
    (x,) = inputs
    return FORWARD[node.kind](node, inputs, run.trace), (x, event_driven(node, run.trace))


@_train_forward_of(AvgPool2d.kind)
def _avgpool(node, inputs, run):
    (x,) = inputs
    return FORWARD[node.kind](node, inputs, run.trace), x.shape


@_train_forward_of(MaxPool2d.kind)
def _maxpool(node, inputs, run):
    (x,) = inputs
    steps, geometry = _pool_geometry(node, x)
    y, indices = maxpool2d_forward_indices(steps, *geometry)
    return y.reshape(*x.shape[:2], *y.shape[1:]), (indices, x.shape)


def _channels_view(x: np.ndarray) -> np.ndarray:
    """``[T, N, C, *spatial]`` as ``[T*N, C, S]`` (S = 1 for vectors)."""
    return _per_step(x).reshape(x.shape[0] * x.shape[1], x.shape[2], -1)


@_train_forward_of(BatchNorm.kind)
def _batchnorm(node: BatchNorm, inputs, run):
    (x,) = inputs
    if not run.train:
        invstd = (1.0 / np.sqrt(node.running_var.astype(np.float64) + np.float64(node.eps))).astype(np.float32)
        return FORWARD[node.kind](node, inputs, run.trace), (x, node.running_mean, invstd, False)
    view = _channels_view(x)
    values = view.shape[0] * view.shape[2] * ((run.trace.time_steps or x.shape[0]) // x.shape[0])  # x may be static
    if values < 2:
        raise DataError(f"BatchNorm {node.name!r} needs more than one value per channel to train, got {values}")
    y, mean, var, invstd = batchnorm_train_forward(view, node.weight, node.bias, node.eps)
    momentum = np.float64(node.momentum)
    unbiased = var * (values / (values - 1))
    _writable(node, "running_mean")[...] = (1 - momentum) * node.running_mean + momentum * mean
    _writable(node, "running_var")[...] = (1 - momentum) * node.running_var + momentum * unbiased
    return y.reshape(x.shape), (x, mean.astype(np.float32), invstd, True)


@_train_forward_of(Dropout.kind)
def _dropout(node: Dropout, inputs, run):
    (x,) = inputs
    if not run.train or node.p == 0.0:
        return x, None
    if run.rng is None:
        raise ValueError(f"Dropout {node.name!r} needs a random generator (rng) in training mode")
    mask = dropout_mask(run.rng, node.p, (x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))))
    y = dropout_forward(np.ascontiguousarray(x).reshape(*x.shape[:2], -1), mask)
    return y.reshape(x.shape), mask


@_train_forward_of(Neuron.kind)
def _neuron(node, inputs, run):
    spikes = FORWARD[node.kind](node, inputs, run.trace)
    return spikes, run.trace.potentials.pop(node.name)


@_train_forward_of(SynapticNeuron.kind)
def _synaptic_neuron(node, inputs, run):
    spikes = FORWARD[node.kind](node, inputs, run.trace)
    potential, current = run.trace.potentials.pop(node.name)
    return spikes, (potential, current, spikes if node.recurrent else None)


@_train_forward_of(Readout.kind)
def _readout(node, inputs, run):
    (x,) = inputs
    return FORWARD[node.kind](node, inputs, run.trace), x.shape


def _neuron_maxpool(node: Neuron, pool: MaxPool2d, inputs, run):
    (x,) = inputs  # [T or 1 (static), N, C, H, W]: the record, with the pooling's geometry
    pooled, geometry = neuron_maxpool(node, pool, x, run.trace)
    return pooled, (x, geometry)


def forward_train(graph: Graph, x: np.ndarray, rng: np.random.Generator | None = None,
                  train: bool = True, static_input: bool = True) -> tuple[np.ndarray, Tape]:
    """Run ``graph`` on float32 ``x`` ``[T, N, *input shape]`` and record a tape for :func:`backward`.

    Returns the readout's output (``[N, C]``, or ``[T, N, C]`` for a spikes readout) and the
    tape. ``train=True``: BatchNorm uses batch statistics and updates the graph's running
    statistics in place; Dropout draws its masks from ``rng`` (required when the graph has a
    Dropout with p > 0). ``train=False``: the output is exactly
    :func:`onnx_snn_compress.simulate.forward`'s. ``static_input``: compute the layers
    before the first neuron once when ``x`` is the same at every step (see the module's
    docstring); pass False to get the input gradient from :func:`backward`.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 + len(graph.input.shape) or tuple(x.shape[2:]) != graph.input.shape or 0 in x.shape[:2]:
        raise DataError(
            f"input of shape {list(x.shape)} does not fit the model's input [T, N, {', '.join(map(str, graph.input.shape))}]"
        )
    run = TrainContext(bool(train), rng, Trace(record_potential=True))
    tape = Tape(int(x.shape[0]), int(x.shape[1]), bool(train), run.trace.spike_counts, static=run.trace.static)

    pairs = fused_pools(graph, *x.shape[:2])
    tape.pooled = {name: pool.name for name, pool in pairs.items()}

    def recorded(node, result):  # (the node's output, what its backward needs)
        value, tape.records[node.name] = result
        return value

    call = fused_call(pairs, lambda node, pool, inputs: recorded(node, _neuron_maxpool(node, pool, inputs, run)),
                      lambda node, inputs: recorded(node, TRAIN_FORWARD[node.kind](node, inputs, run)))
    return run_nodes(graph, x, run.trace, call, static_input), tape


# -- backward: input gradients per node, parameter gradients on the side ------------------

Backward = Callable[[Node, Any, np.ndarray, list[bool], dict[str, np.ndarray]], list[np.ndarray | None]]
BACKWARD: dict[str, Backward] = {}


def _backward_of(*kinds: str):
    def register(function: Backward) -> Backward:
        for kind in kinds:
            BACKWARD[kind] = function
        return function

    return register


@_backward_of(Linear.kind)
def _linear_backward(node: Linear, x, grad, needs, param_grads):
    grad_x, param_grads[f"{node.name}.weight"], grad_bias = linear_backward(
        _per_step(x), node.weight, _per_step(grad), needs[0], node.bias is not None,
    )
    if grad_bias is not None:
        param_grads[f"{node.name}.bias"] = grad_bias
    return [None if grad_x is None else grad_x.reshape(x.shape)]


@_backward_of(Conv2d.kind)
def _conv2d_backward(node: Conv2d, record, grad, needs, param_grads):
    x, spikes = record
    steps, grad_steps = _per_step(x), _per_step(grad)
    if spikes:  # the forward was event-driven: so is the weight gradient (kernels/spike_conv.py)
        grad_x = spike_conv2d_input_grad(node.weight, grad_steps, steps.shape, node.padding) if needs[0] else None
        grad_weight = spike_conv2d_weight_grad(steps, node.weight.shape, grad_steps, node.padding)
        grad_bias = grad_steps.sum(axis=(0, 2, 3), dtype=np.float32) if node.bias is not None else None
    else:
        grad_x, grad_weight, grad_bias = conv2d_backward(
            steps, node.weight, grad_steps, node.stride, node.padding, node.dilation, node.groups,
            needs[0], node.bias is not None,
        )
    param_grads[f"{node.name}.weight"] = grad_weight
    if grad_bias is not None:
        param_grads[f"{node.name}.bias"] = grad_bias
    return [None if grad_x is None else grad_x.reshape(x.shape)]


@_backward_of(BatchNorm.kind)
def _batchnorm_backward(node: BatchNorm, record, grad, needs, param_grads):
    x, mean, invstd, train = record
    grad_x, param_grads[f"{node.name}.weight"], param_grads[f"{node.name}.bias"] = batchnorm_backward(
        _channels_view(x), _channels_view(grad), node.weight, mean, invstd, train, needs[0],
    )
    return [None if grad_x is None else grad_x.reshape(x.shape)]


@_backward_of(MaxPool2d.kind)
def _maxpool_backward(node, record, grad, needs, param_grads):
    indices, shape = record
    grad_x = maxpool2d_backward(_per_step(grad), indices, shape[3], shape[4])
    return [grad_x.reshape(shape)]


@_backward_of(AvgPool2d.kind)
def _avgpool_backward(node: AvgPool2d, shape, grad, needs, param_grads):
    (kh, kw), (sh, sw), (ph, pw) = node.kernel_size, node.stride, node.padding
    grad_x = avgpool2d_backward(_per_step(grad), kh, kw, sh, sw, ph, pw, node.count_include_pad, shape[3], shape[4])
    return [grad_x.reshape(shape)]


@_backward_of(Flatten.kind)
def _flatten_backward(node, record, grad, needs, param_grads):
    return [grad]  # reshaped to the input's shape by the caller


@_backward_of(Add.kind)
def _add_backward(node, record, grad, needs, param_grads):
    return [grad, grad]


@_backward_of(Dropout.kind)
def _dropout_backward(node, mask, grad, needs, param_grads):
    if mask is None:
        return [grad]
    grad_x = dropout_backward(np.ascontiguousarray(grad).reshape(*grad.shape[:2], -1), mask)
    return [grad_x.reshape(grad.shape)]


@_backward_of(Neuron.kind)
def _neuron_backward(node: Neuron, potential, grad, needs, param_grads):
    time_steps = potential.shape[0]
    values = node.parameter_values(potential.shape[2:])
    grad_x = lif_backward(
        np.ascontiguousarray(grad).reshape(time_steps, -1), potential.reshape(time_steps, -1),
        values["beta"], values["gain"], values["v_threshold"], values["v_reset"], values["v_leak"],
        RESET_CODES[node.reset],
        node.reset_delay, node.fire_on_equal, SURROGATE_CODES[node.surrogate], node.alpha, node.detach_reset,
    )
    return [grad_x.reshape(potential.shape)]


def _neuron_maxpool_backward(node: Neuron, record, grad):
    # grad: dL/d(pooled spikes) [T, N, C, out_h, out_w]; returns dL/dx in x's shape
    x, geometry = record
    grad_x = lif_maxpool_backward(
        np.ascontiguousarray(x).reshape(x.shape[0], -1), np.ascontiguousarray(grad).reshape(grad.shape[0], -1),
        *x.shape[3:], geometry, *neuron_arguments(node, x.shape[2:]), SURROGATE_CODES[node.surrogate], node.alpha,
        node.detach_reset,
    )
    return [grad_x.reshape(x.shape)]


@_backward_of(SynapticNeuron.kind)
def _synaptic_neuron_backward(node: SynapticNeuron, record, grad, needs, param_grads):
    potential, current, spikes = record
    grad_x = synaptic_backward(
        np.ascontiguousarray(grad).reshape(potential.shape), potential, current, node.weight, node.current_decay,
        node.beta, node.gain, node.v_threshold, node.v_reset, node.v_leak, RESET_CODES[node.reset], node.reset_delay,
        node.fire_on_equal, SURROGATE_CODES[node.surrogate], node.alpha, node.detach_reset,
    )
    if node.recurrent:
        param_grads[f"{node.name}.weight"], grad_bias = recurrent_weight_grads(grad_x, spikes)
        if node.bias is not None:
            param_grads[f"{node.name}.bias"] = grad_bias
    return [grad_x]


@_backward_of(Readout.kind)
def _readout_backward(node: Readout, shape, grad, needs, param_grads):
    if node.mode == "spikes":
        return [grad]
    time_steps = shape[0]
    flat = np.ascontiguousarray(grad, dtype=np.float32).reshape(-1)
    if node.mode == "rate":
        grad_x = rate_readout_backward(flat, time_steps)
    else:
        grad_x = leaky_readout_backward(flat, time_steps, np.float32(node.beta))
    return [grad_x.reshape(shape)]


def _needs_grad(graph: Graph, input_grad: bool) -> dict[str, bool]:
    """Per tensor: does any trainable array (or the input, if asked) lie upstream of it?"""
    needs: dict[str, bool] = {}
    for node in graph.nodes:
        if isinstance(node, Input):
            needs[node.name] = input_grad
        else:
            needs[node.name] = _has_trained_arrays(node) or any(needs[s] for s in node.inputs)
    return needs


def _planar_train_forward(forward_2d: TrainForward) -> TrainForward:
    def forward(node, inputs, run):
        y, record = forward_2d(node, [planar_view(x) for x in inputs], run)
        return y[:, :, :, 0, :], record

    return forward


def _planar_backward(backward_2d: Backward) -> Backward:
    def backward_1d(node, record, grad, needs, param_grads):
        # the input gradients come back planar; backward() reshapes them to the graph's [T, N, C, L]
        return backward_2d(node, record, planar_view(grad), needs, param_grads)

    return backward_1d


for _one_d, _two_d in PLANAR_1D_KINDS.items():  # Conv1d, MaxPool1d, AvgPool1d: their 2-D parents on views
    TRAIN_FORWARD[_one_d.kind] = _planar_train_forward(TRAIN_FORWARD[_two_d.kind])
    BACKWARD[_one_d.kind] = _planar_backward(BACKWARD[_two_d.kind])


def backward(graph: Graph, tape: Tape, grad_output: np.ndarray, *, input_grad: bool = False) -> dict[str, np.ndarray]:
    """Gradients of the loss for every array of :func:`trainable` (same keys, float32, same shapes).

    ``grad_output`` is dL/d(output) of the forward that recorded ``tape`` (``[N, C]``, or
    ``[T, N, C]`` for a spikes readout). With ``input_grad=True`` the result also holds
    dL/dx ``[T, N, *input shape]`` under the key :data:`INPUT_GRAD` (``"input"``).
    The graph's parameters must not change between the forward and the backward.
    """
    readout = graph.readout
    expected = (tape.time_steps, tape.samples, graph.num_classes) if readout.mode == "spikes" else (
        tape.samples, graph.num_classes)
    grad_output = np.ascontiguousarray(grad_output, dtype=np.float32)
    if grad_output.shape != expected:
        raise ValueError(f"grad_output has shape {grad_output.shape}; the output had {expected}")
    if input_grad and graph.input.name in tape.static:
        raise ValueError("the tape computed a static input's layers once: record it with "
                         "forward_train(static_input=False) to get the input gradient")
    needs = _needs_grad(graph, input_grad)
    shapes = {node.name: (1 if node.name in tape.static else tape.time_steps, tape.samples, *graph.shapes[node.name])
              for node in graph.nodes}
    param_grads: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {readout.name: grad_output}
    pools = {pool: neuron for neuron, pool in tape.pooled.items()}
    for node in reversed(graph.nodes[1:]):
        grad = grads.pop(node.name, None)
        if grad is None or not needs[node.name]:
            continue  # nothing upstream of this node wants a gradient
        if node.name in pools:  # its neuron's fused backward takes the pooled gradient
            grads[pools[node.name]] = grad
            continue
        if node.name in tape.pooled:
            input_grads = _neuron_maxpool_backward(node, tape.records[node.name], grad)
        else:
            input_grads = BACKWARD[node.kind](node, tape.records[node.name], grad, [needs[s] for s in node.inputs],
                                              param_grads)
        for source, grad_input in zip(node.inputs, input_grads):
            if grad_input is None or not needs[source]:
                continue
            if source in tape.static and grad_input.size != np.prod(shapes[source]):
                # a static tensor read at every step: its gradient is the sum over the steps
                grad_input = grad_input.reshape(tape.time_steps, *shapes[source][1:]).sum(axis=0, keepdims=True)
            grad_input = grad_input.reshape(shapes[source])
            grads[source] = grads[source] + grad_input if source in grads else grad_input
    if input_grad:
        grads_input = grads.get(graph.input.name)
        param_grads[INPUT_GRAD] = (np.zeros(shapes[graph.input.name], dtype=np.float32)
                                   if grads_input is None else grads_input)
    return {name: param_grads[name] for name in [*trainable(graph), *([INPUT_GRAD] if input_grad else [])]}
