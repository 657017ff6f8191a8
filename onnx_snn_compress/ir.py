"""The SNN intermediate representation: a small typed DAG of numpy arrays.

One dataclass per node kind, its equations in its docstring, its checks in
``__post_init__``. The IR says *what* a network is; it knows nothing of ONNX,
files, Numba or training.

Layout conventions
------------------
Every tensor flowing through a graph is time-major ``[T, N, *shape]``; ``shape``
below is always the per-sample feature shape (without ``T`` and ``N``).
Stateless nodes act on each time step independently (as if on ``[T*N, *shape]``).
Images are channel-first ``[C, H, W]``; sequences (audio, SHD) ``[C, L]``.

Parameters are float32 numpy arrays; scalar neuron parameters are Python floats
holding float32-representable values, so every export/import round trip is
bit-exact. A neuron parameter may also be per-neuron: a float32 array that
broadcasts over the layer's feature shape (``[C, 1, 1]`` per channel of a
``[C, H, W]`` layer, ``[F]`` per neuron of a ``[F]`` layer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Sequence

import numpy as np

from .errors import IRError

Shape = tuple[int, ...]

RESET_MODES = ("subtract", "hard", "none")
NEURON_PARAMETERS = ("beta", "v_threshold", "v_reset", "v_leak", "v_init", "gain")  # scalar or per-neuron
SURROGATES = ("atan", "sigmoid", "fast_sigmoid", "rectangle")
READOUT_MODES = ("rate", "spikes", "leaky")


def _f32(value: float) -> float:
    """Round a scalar to the nearest float32 so it survives serialisation exactly."""
    return float(np.float32(value))


def _array(value, name: str, ndim: int | None = None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # a node owns writable arrays (frombuffer views are read-only)
    if ndim is not None and array.ndim != ndim:
        raise IRError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise IRError(f"{name} holds NaN or infinite values")
    return array


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise IRError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(eq=False)
class Node:
    """Base of all node kinds: a name and the names of the nodes feeding it."""

    name: str
    inputs: tuple[str, ...] = ()

    kind: ClassVar[str] = "node"
    arity: ClassVar[int] = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise IRError(f"a {self.kind} node needs a non-empty name")
        self.inputs = tuple(self.inputs)
        if len(self.inputs) != self.arity:
            raise IRError(
                f"{self.kind} node {self.name!r} takes {self.arity} input(s), got {len(self.inputs)}"
            )

    def output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        """Per-sample output shape; raises IRError when the inputs do not fit."""
        return input_shapes[0]

    @staticmethod
    def _as_given(shape: Shape) -> Shape:
        """A shape for a message, as the user gave the layer's input (1-D layers override)."""
        return shape

    def parameters(self) -> dict[str, np.ndarray]:
        """The node's array parameters by name (empty for parameter-free nodes)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def same_as(self, other: "Node") -> bool:
        """Structural and bit-exact equality (arrays compared by bytes and dtype)."""
        if type(self) is not type(other):
            return False
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (
                    isinstance(a, np.ndarray)
                    and isinstance(b, np.ndarray)
                    and a.dtype == b.dtype
                    and a.shape == b.shape
                    and a.tobytes() == b.tobytes()
                ):
                    return False
            elif a != b:
                return False
        return True


@dataclass(eq=False)
class Input(Node):
    """The graph input: a tensor ``[T, N, *shape]``.

    Static data ``[N, *shape]`` is encoded over time before it reaches the graph.
    """

    shape: Shape = ()

    kind: ClassVar[str] = "Input"
    arity: ClassVar[int] = 0

    def __post_init__(self):
        super().__post_init__()
        self.shape = tuple(int(d) for d in self.shape)
        if not self.shape or any(d <= 0 for d in self.shape):
            raise IRError(f"Input {self.name!r} needs a non-empty positive shape, got {self.shape}")

    def output_shape(self, input_shapes):
        return self.shape


@dataclass(eq=False)
class Linear(Node):
    """Fully connected layer: ``Y = X @ weight.T + bias``.

    weight ``[out_features, in_features]``; bias ``[out_features]`` or None.
    """

    weight: np.ndarray = None
    bias: np.ndarray | None = None

    kind: ClassVar[str] = "Linear"

    def __post_init__(self):
        super().__post_init__()
        self.weight = _array(self.weight, f"{self.name}.weight", ndim=2)
        if self.bias is not None:
            self.bias = _array(self.bias, f"{self.name}.bias", ndim=1)
            if self.bias.shape[0] != self.weight.shape[0]:
                raise IRError(
                    f"{self.name}.bias has {self.bias.shape[0]} entries for {self.weight.shape[0]} outputs"
                )

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) != 1 or shape[0] != self.weight.shape[1]:
            raise IRError(
                f"Linear {self.name!r} expects input ({self.weight.shape[1]},), got {shape}"
            )
        return (self.weight.shape[0],)


@dataclass(eq=False)
class Conv2d(Node):
    """2-D convolution over ``[C, H, W]`` (cross-correlation, as PyTorch and ONNX).

    weight ``[out_channels, in_channels // groups, kh, kw]``; bias ``[out_channels]`` or None.
    ``H_out = (H + 2*pad - dilation*(kh-1) - 1) // stride + 1`` (likewise W).
    """

    weight: np.ndarray = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    kind: ClassVar[str] = "Conv2d"
    AXES: ClassVar[str] = "H, W"  # the spatial axes, as messages name them

    def __post_init__(self):
        super().__post_init__()
        self.weight = _array(self.weight, f"{self.name}.weight", ndim=4)
        self.stride = _pair(self.stride, f"{self.name}.stride")
        self.padding = _pair(self.padding, f"{self.name}.padding")
        self.dilation = _pair(self.dilation, f"{self.name}.dilation")
        self.groups = int(self.groups)
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise IRError(f"Conv2d {self.name!r} has a non-positive stride/dilation or negative padding")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise IRError(f"Conv2d {self.name!r}: {self.weight.shape[0]} output channels not divisible by groups={self.groups}")
        if self.bias is not None:
            self.bias = _array(self.bias, f"{self.name}.bias", ndim=1)
            if self.bias.shape[0] != self.weight.shape[0]:
                raise IRError(f"{self.name}.bias has {self.bias.shape[0]} entries for {self.weight.shape[0]} channels")

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        out_channels, in_per_group, kh, kw = self.weight.shape
        if len(shape) != 3 or shape[0] != in_per_group * self.groups:
            raise IRError(f"{self.kind} {self.name!r} expects input ({in_per_group * self.groups}, {self.AXES}), "
                          f"got {self._as_given(shape)}")
        spatial = []
        for size, k, s, p, d in zip(shape[1:], (kh, kw), self.stride, self.padding, self.dilation):
            out = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if out < 1:
                raise IRError(f"{self.kind} {self.name!r}: kernel larger than the padded input {self._as_given(shape)}")
            spatial.append(out)
        return (out_channels, *spatial)


@dataclass(eq=False)
class BatchNorm(Node):
    """Batch normalisation over the first feature axis (channels), for ``[C]``, ``[C, L]`` or ``[C, H, W]``.

    Inference: ``Y = (X - running_mean) / sqrt(running_var + eps) * weight + bias``.
    Training uses statistics over T*N (and L, or H, W); running statistics follow
    PyTorch: ``running = (1 - momentum) * running + momentum * batch``.
    """

    weight: np.ndarray = None
    bias: np.ndarray = None
    running_mean: np.ndarray = None
    running_var: np.ndarray = None
    eps: float = 1e-5
    momentum: float = 0.1

    kind: ClassVar[str] = "BatchNorm"

    def __post_init__(self):
        super().__post_init__()
        for name in ("weight", "bias", "running_mean", "running_var"):
            setattr(self, name, _array(getattr(self, name), f"{self.name}.{name}", ndim=1))
        if len({getattr(self, n).shape for n in ("weight", "bias", "running_mean", "running_var")}) != 1:
            raise IRError(f"BatchNorm {self.name!r}: weight, bias and running statistics differ in length")
        if np.any(self.running_var < 0):
            raise IRError(f"BatchNorm {self.name!r} has a negative running variance")
        self.eps = _f32(self.eps)
        # ONNX stores 1 - momentum; snapping to float32(1 - float32(1 - m)) makes that
        # round trip bit-exact (a change of at most one float32 ulp of 1.0).
        self.momentum = _f32(1.0 - _f32(1.0 - _f32(self.momentum)))
        if not 0.0 <= self.momentum <= 1.0:
            raise IRError(f"BatchNorm {self.name!r}: momentum must lie in [0, 1]")
        if self.eps <= 0:
            raise IRError(f"BatchNorm {self.name!r}: eps must be positive")

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) not in (1, 2, 3) or shape[0] != self.weight.shape[0]:
            raise IRError(
                f"BatchNorm {self.name!r} expects ({self.weight.shape[0]},), ({self.weight.shape[0]}, L) or "
                f"({self.weight.shape[0]}, H, W), got {shape}"
            )
        return shape


@dataclass(eq=False)
class _Pool2d(Node):
    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)

    AXES: ClassVar[str] = "H, W"  # the spatial axes, as messages name them

    def __post_init__(self):
        super().__post_init__()
        self.kernel_size = _pair(self.kernel_size, f"{self.name}.kernel_size")
        self.stride = self.kernel_size if self.stride is None else _pair(self.stride, f"{self.name}.stride")
        self.padding = _pair(self.padding, f"{self.name}.padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise IRError(f"{self.kind} {self.name!r} has a non-positive kernel/stride or negative padding")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise IRError(f"{self.kind} {self.name!r}: padding must be at most half the kernel size")

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) != 3:
            raise IRError(f"{self.kind} {self.name!r} expects input (C, {self.AXES}), got {self._as_given(shape)}")
        spatial = []
        for size, k, s, p in zip(shape[1:], self.kernel_size, self.stride, self.padding):
            out = (size + 2 * p - k) // s + 1
            if out < 1:
                raise IRError(f"{self.kind} {self.name!r}: kernel larger than the padded input {self._as_given(shape)}")
            spatial.append(out)
        return (shape[0], *spatial)


@dataclass(eq=False)
class MaxPool2d(_Pool2d):
    """Max pooling over ``[C, H, W]``; padding counts as -inf. (floor mode)."""

    kind: ClassVar[str] = "MaxPool2d"


@dataclass(eq=False)
class AvgPool2d(_Pool2d):
    """Average pooling over ``[C, H, W]`` (floor mode).

    With ``count_include_pad`` (PyTorch's default) padded zeros count in the
    divisor, which is then always ``kh * kw``.
    """

    count_include_pad: bool = True

    kind: ClassVar[str] = "AvgPool2d"

    def __post_init__(self):
        super().__post_init__()
        self.count_include_pad = bool(self.count_include_pad)


def _planar(value, fill: int, name: str) -> tuple[int, int]:
    """A 1-D layer's stride/padding/... as its 2-D form over ``[C, 1, L]``: ``(fill, value)``.
    An int or a 1-tuple is the user's 1-D value; a pair is the 2-D form itself (as stored)."""
    values = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) == 1:
        values = (fill, values[0])
    pair = _pair(values, name)
    if pair[0] != fill:
        raise IRError(f"{name} of a 1-D layer must be one int, got {value!r}")
    return pair


class _Planar1d:
    """A 1-D layer over ``[C, L]``, computed as the 2-D layer it derives from over ``[C, 1, L]``
    (the same arithmetic: a 1-wide H axis adds nothing). Graph shapes stay ``[C, L]``."""

    AXES: ClassVar[str] = "L"

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) != 2:
            raise IRError(f"{self.kind} {self.name!r} expects input (C, L), got {shape}")
        channels, _, length = super().output_shape([(shape[0], 1, shape[1])])
        return (channels, length)

    @staticmethod
    def _as_given(shape: Shape) -> Shape:
        return (shape[0], shape[-1])  # [C, 1, L] as the user's [C, L]


@dataclass(eq=False)
class Conv1d(_Planar1d, Conv2d):
    """1-D convolution over ``[C, L]`` (PyTorch Conv1d; ONNX Conv with one spatial axis).

    Given as PyTorch does (weight ``[out_channels, in_channels // groups, k]``; stride, padding,
    dilation ints), stored as the Conv2d over ``[C, 1, L]`` that computes the same: weight
    ``[out, in // groups, 1, k]``, stride ``(1, s)``, padding ``(0, p)``, dilation ``(1, d)``.
    ``L_out = (L + 2*pad - dilation*(k-1) - 1) // stride + 1``.
    """

    kind: ClassVar[str] = "Conv1d"

    def __post_init__(self):
        weight = np.asarray(self.weight, dtype=np.float32) if self.weight is not None else None
        if weight is not None and weight.ndim == 3:
            self.weight = weight[:, :, None, :]
        self.stride = _planar(self.stride, 1, f"{self.name}.stride")
        self.padding = _planar(self.padding, 0, f"{self.name}.padding")
        self.dilation = _planar(self.dilation, 1, f"{self.name}.dilation")
        super().__post_init__()
        if self.weight.shape[2] != 1:
            raise IRError(f"Conv1d {self.name!r} needs a weight [out, in, k] (or [out, in, 1, k]), "
                          f"got {self.weight.shape}")


@dataclass(eq=False)
class MaxPool1d(_Planar1d, MaxPool2d):
    """Max pooling over ``[C, L]``: stored as MaxPool2d over ``[C, 1, L]`` with kernel ``(1, k)``,
    stride ``(1, s)``, padding ``(0, p)`` (given as ints, as PyTorch does)."""

    kind: ClassVar[str] = "MaxPool1d"

    def __post_init__(self):
        _planar_pool(self)
        super().__post_init__()


@dataclass(eq=False)
class AvgPool1d(_Planar1d, AvgPool2d):
    """Average pooling over ``[C, L]``: stored as AvgPool2d over ``[C, 1, L]`` (see MaxPool1d)."""

    kind: ClassVar[str] = "AvgPool1d"

    def __post_init__(self):
        _planar_pool(self)
        super().__post_init__()


def _planar_pool(node) -> None:
    node.kernel_size = _planar(node.kernel_size, 1, f"{node.name}.kernel_size")
    node.stride = None if node.stride is None else _planar(node.stride, 1, f"{node.name}.stride")
    node.padding = _planar(node.padding, 0, f"{node.name}.padding")


@dataclass(eq=False)
class Flatten(Node):
    """``[C, H, W] -> [C*H*W]`` (row-major, as PyTorch ``flatten(1)``)."""

    kind: ClassVar[str] = "Flatten"

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        return (int(np.prod(shape)),)


@dataclass(eq=False)
class Add(Node):
    """Elementwise sum of two tensors of the same shape (residual connections)."""

    kind: ClassVar[str] = "Add"
    arity: ClassVar[int] = 2

    def output_shape(self, input_shapes):
        a, b = input_shapes
        if a != b:
            raise IRError(f"Add {self.name!r} needs equal input shapes, got {a} and {b}")
        return a


@dataclass(eq=False)
class Dropout(Node):
    """Dropout with probability ``p``: identity at inference.

    In training one Bernoulli mask per sample is drawn and shared across all
    time steps, scaled by ``1 / (1 - p)``.
    """

    p: float = 0.5

    kind: ClassVar[str] = "Dropout"

    def __post_init__(self):
        super().__post_init__()
        self.p = _f32(self.p)
        if not 0.0 <= self.p < 1.0:
            raise IRError(f"Dropout {self.name!r}: p must lie in [0, 1), got {self.p}")


class _NeuronParameters:
    """The per-neuron parameters shared by :class:`Neuron` and :class:`SynapticNeuron`: each of
    ``PARAMETERS`` is a float or a float32 array of per-neuron values that broadcasts over the
    layer's feature shape (numpy rules). An array of equal values is stored as its float."""

    PARAMETERS: ClassVar[tuple[str, ...]] = NEURON_PARAMETERS
    DECAYS: ClassVar[tuple[str, ...]] = ("beta",)  # parameters that must lie in [0, 1]

    def _check_parameters(self) -> None:
        """Validate and normalise the parameters and the reset, firing and training fields."""
        if self.reset not in RESET_MODES:
            raise IRError(f"{self.kind} {self.name!r}: reset must be one of {RESET_MODES}, got {self.reset!r}")
        if self.surrogate not in SURROGATES:
            raise IRError(f"{self.kind} {self.name!r}: surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        self.reset_delay = bool(self.reset_delay)
        self.fire_on_equal = bool(self.fire_on_equal)
        self.detach_reset = bool(self.detach_reset)
        for name in self.PARAMETERS:
            setattr(self, name, self._parameter(name, getattr(self, name)))
        self.alpha = _f32(self.alpha)
        if not np.isfinite(self.alpha):
            raise IRError(f"{self.kind} {self.name!r}: alpha must be finite")
        for name in self.DECAYS:
            value = np.asarray(getattr(self, name))
            if not np.all((0.0 <= value) & (value <= 1.0)):
                raise IRError(f"{self.kind} {self.name!r}: {name} must lie in [0, 1], "
                              f"got {self.describe_parameter(getattr(self, name))}")
        # (1 - beta) * v_leak vanishes where beta = 1: an IF neuron has no leak potential
        try:
            v_leak = np.where(np.asarray(self.beta) == 1.0, np.float32(0.0), self.v_leak)
        except ValueError:
            raise IRError(f"{self.kind} {self.name!r}: per-neuron beta {np.shape(self.beta)} and v_leak "
                          f"{np.shape(self.v_leak)} do not broadcast together") from None
        self.v_leak = self._parameter("v_leak", v_leak)

    def _parameter(self, name: str, value) -> float | np.ndarray:
        """A float, or a float32 array of per-neuron values (an array of equal values is a float)."""
        if isinstance(value, (int, float, np.number)):
            value = _f32(value)
            if not np.isfinite(value):
                raise IRError(f"{self.kind} {self.name!r}: {name} must be finite")
            return value
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise IRError(f"{self.kind} {self.name!r}: {name} must be a number or an array of numbers") from None
        if array.size == 0:
            raise IRError(f"{self.kind} {self.name!r}: {name} is an empty array")
        if not np.all(np.isfinite(array)):
            raise IRError(f"{self.kind} {self.name!r}: {name} must be finite")
        if np.all(array == array.flat[0]):
            return float(array.flat[0])  # -0.0 and 0.0 compare equal; the scalar path takes either
        return _array(array, f"{self.name}.{name}")

    @staticmethod
    def describe_parameter(value) -> str:
        """A parameter for a message: its float, or the range of its per-neuron values."""
        if isinstance(value, float):
            return repr(value)
        return f"per-neuron values from {value.min():g} to {value.max():g}"

    def _check_broadcast(self, shape: Shape) -> None:
        for name in self.per_neuron:
            values = getattr(self, name)
            fits = values.ndim <= len(shape) and all(
                v in (1, d) for v, d in zip(values.shape[::-1], tuple(shape)[::-1]))
            if not fits:
                raise IRError(f"{self.kind} {self.name!r}: per-neuron {name} of shape {values.shape} "
                              f"does not broadcast over the layer's neurons {tuple(shape)}")

    @property
    def per_neuron(self) -> tuple[str, ...]:
        """The names of the parameters (of ``PARAMETERS``) that vary over the neurons."""
        return tuple(name for name in self.PARAMETERS if isinstance(getattr(self, name), np.ndarray))

    def parameter_values(self, shape: Shape) -> dict[str, float | np.ndarray]:
        """Each of ``PARAMETERS``: its float, or its values broadcast to ``shape`` (the
        layer's feature shape; a read-only float32 view)."""
        return {
            name: (np.broadcast_to(value, shape) if isinstance(value, np.ndarray) else value)
            for name, value in ((n, getattr(self, n)) for n in self.PARAMETERS)
        }


@dataclass(eq=False)
class Neuron(_NeuronParameters, Node):
    """A layer of spiking neurons (LIF; IF is ``beta = 1``), one per input element.

    With ``V[-1] = v_init``, for t = 0 .. T-1::

        charge  D[t] = beta * V[t-1] + (1 - beta) * v_leak
                H[t] = D[t] + gain * X[t]
        fire    S[t] = H[t] >= v_threshold   if fire_on_equal  else  H[t] > v_threshold
        reset   subtract: V[t] = H[t] - v_threshold * S[t]
                hard:     V[t] = S[t] * v_reset + (1 - S[t]) * H[t]
                none:     V[t] = H[t]

    With ``reset_delay`` (snnTorch's default) the reset of step t-1 is applied at
    step t to the decayed potential, before the input is added::

                D'[t] = reset(D[t], S[t-1]);  H[t] = D'[t] + gain * X[t];  V[t] = H[t]

    SpikingJelly LIFNode: beta = 1 - 1/tau, gain = 1/tau if decay_input else 1,
    v_leak = v_init = v_reset (0 for soft reset), fire_on_equal.
    snnTorch Leaky: gain = 1, v_leak = 0, fire on ``>``, reset zero -> hard, reset_delay
    (its default) with detach_reset (snnTorch always detaches the delayed reset);
    see tests/fixtures/peers/README.md for the one variant that does not map.

    Training only: ``surrogate`` (with ``alpha``) replaces dS/dH in the backward
    pass; ``detach_reset`` stops the gradient through the reset term.

    Per-neuron parameters: each of beta, v_threshold, v_reset, v_leak, v_init and gain is
    a float or a float32 array that broadcasts over the layer's feature shape (numpy
    rules: ``[C, 1, 1]`` per channel, ``[C, H, W]`` or ``[F]`` per neuron; snnTorch's
    ``learn_beta`` with a vector, NIR's per-neuron ``tau``); the equations hold per
    neuron. An array of equal values is stored as its float. Raises IRError for a value
    out of range (beta outside [0, 1], NaN) or, in a graph, a shape that does not fit.
    """

    beta: float | np.ndarray = 1.0
    v_threshold: float | np.ndarray = 1.0
    v_reset: float | np.ndarray = 0.0
    v_leak: float | np.ndarray = 0.0
    v_init: float | np.ndarray = 0.0
    gain: float | np.ndarray = 1.0
    reset: str = "subtract"
    reset_delay: bool = False
    fire_on_equal: bool = True
    surrogate: str = "atan"
    alpha: float = 2.0
    detach_reset: bool = False

    kind: ClassVar[str] = "Neuron"

    def __post_init__(self):
        super().__post_init__()
        self._check_parameters()

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        self._check_broadcast(shape)
        return shape

    def parameters(self) -> dict[str, np.ndarray]:
        """None: per-neuron values are constants of the model, not trained arrays."""
        return {}

    @property
    def is_if(self) -> bool:
        """True for an integrate-and-fire neuron (no leak)."""
        return isinstance(self.beta, float) and self.beta == 1.0


@dataclass(eq=False)
class SynapticNeuron(_NeuronParameters, Node):
    """A layer of current-based LIF neurons (CubaLIF), with optional recurrent synapses.

    One per input element (a vector layer, ``[n]``). With ``I[-1] = 0``, ``V[-1] = v_init``
    and ``S[-1] = 0``, for t = 0 .. T-1::

        current  R[t] = S[t-1] @ weight.T + bias          (recurrent synapses; R = 0 without weight)
                 I[t] = current_decay * I[t-1] + X[t] + R[t]
        charge   H[t] = beta * V[t-1] + (1 - beta) * v_leak + gain * I[t]
                 H[t] = reset(H[t], S[t-1])                only with reset_delay
        fire     S[t] = H[t] >= v_threshold   if fire_on_equal  else  H[t] > v_threshold
        reset    V[t] = reset(H[t], S[t])                  (V[t] = H[t] with reset_delay)

        reset(P, s) = P - v_threshold (subtract) | v_reset (hard) | P (none)  if s else P

    The current is never reset. weight ``[n, n]`` (row: receiving neuron, column: sending
    neuron) and bias ``[n]`` (zeros when not given) are recurrent synapses, prunable like a
    Linear layer's; the bias reaches the current at every step, step 0 included.

    How each framework maps onto it (docs/interop.md):
    snnTorch ``Synaptic``: current_decay = alpha, beta, gain = 1, fire on ``>``, subtract
    reset with reset_delay (its default; the previous step's reset after the input is added).
    snnTorch ``RLeaky``: current_decay = 0, ``recurrent`` Linear as weight and bias, otherwise as
    Leaky. SpikingJelly ``CUBALIFNode``: current_decay = 1 - c_decay, beta = 1 - v_decay,
    gain = 1, fire on ``>=``, reset hard or subtract without delay. NIR ``CubaLIF`` over dt
    (forward Euler, the membrane reading the updated current): current_decay = 1 - dt/tau_syn,
    beta = 1 - dt/tau_mem, gain = (dt/tau_mem) * r * (dt/tau_syn) * w_in (the current is kept
    in units of the input), a recurrent Affine/Linear into the neuron as weight and bias.

    Per-neuron parameters: each of current_decay, beta, v_threshold, v_reset, v_leak, v_init and
    gain is a float or a float32 array ``[n]`` (NIR's per-neuron ``tau_syn`` / ``tau_mem``), as
    :class:`Neuron`'s; the equations hold per neuron.

    Training only: ``surrogate`` (with ``alpha``) and ``detach_reset``, as :class:`Neuron`.
    """

    current_decay: float | np.ndarray = 0.0
    beta: float | np.ndarray = 1.0
    v_threshold: float | np.ndarray = 1.0
    v_reset: float | np.ndarray = 0.0
    v_leak: float | np.ndarray = 0.0
    v_init: float | np.ndarray = 0.0
    gain: float | np.ndarray = 1.0
    reset: str = "subtract"
    reset_delay: bool = False
    fire_on_equal: bool = True
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    surrogate: str = "atan"
    alpha: float = 2.0
    detach_reset: bool = False

    kind: ClassVar[str] = "SynapticNeuron"
    PARAMETERS: ClassVar[tuple[str, ...]] = ("current_decay", *NEURON_PARAMETERS)
    DECAYS: ClassVar[tuple[str, ...]] = ("current_decay", "beta")

    def __post_init__(self):
        super().__post_init__()
        self._check_parameters()
        if self.weight is not None:
            self.weight = _array(self.weight, f"{self.name}.weight", ndim=2)
            if self.weight.shape[0] != self.weight.shape[1]:
                raise IRError(f"SynapticNeuron {self.name!r}: the recurrent weight must be square, got {self.weight.shape}")
        if self.bias is not None and self.weight is None:
            raise IRError(f"SynapticNeuron {self.name!r}: a recurrent bias needs a recurrent weight")
        if self.weight is not None:
            self.bias = _array(np.zeros(self.weight.shape[0]) if self.bias is None else self.bias, f"{self.name}.bias",
                               ndim=1)
            if self.bias.shape[0] != self.weight.shape[0]:
                raise IRError(f"{self.name}.bias has {self.bias.shape[0]} entries for {self.weight.shape[0]} neurons")

    def parameters(self) -> dict[str, np.ndarray]:
        """The recurrent synapses' weight and bias (none without them); per-neuron values are
        constants of the model, not trained arrays."""
        return {} if self.weight is None else {"weight": self.weight, "bias": self.bias}

    @property
    def recurrent(self) -> bool:
        """True when the layer has recurrent synapses."""
        return self.weight is not None

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) != 1:
            raise IRError(f"SynapticNeuron {self.name!r} expects a vector input (n,), got {shape}")
        if self.weight is not None and self.weight.shape[0] != shape[0]:
            raise IRError(f"SynapticNeuron {self.name!r}: a recurrent weight {self.weight.shape} for {shape[0]} neurons")
        self._check_broadcast(shape)
        return shape


@dataclass(eq=False)
class Readout(Node):
    """The graph output, from a ``[T, N, C]`` tensor.

    rate:   ``Y = mean_t X[t]``                    (mean firing rate), ``[N, C]``
    spikes: ``Y = X``                              (the spike train), ``[T, N, C]``
    leaky:  ``U[t] = beta * U[t-1] + X[t]``, ``U[-1] = 0``; ``Y = mean_t U[t]`` (non-spiking
            leaky integrator), ``[N, C]``

    Predictions are ``argmax`` over C of ``Y`` (of ``mean_t Y`` for spikes).
    """

    mode: str = "rate"
    beta: float = 1.0

    kind: ClassVar[str] = "Readout"

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in READOUT_MODES:
            raise IRError(f"Readout {self.name!r}: mode must be one of {READOUT_MODES}, got {self.mode!r}")
        self.beta = _f32(self.beta)
        if not 0.0 <= self.beta <= 1.0:
            raise IRError(f"Readout {self.name!r}: beta must lie in [0, 1], got {self.beta}")
        if self.mode != "leaky":
            self.beta = 1.0  # only the leaky integrator has a decay

    def output_shape(self, input_shapes):
        (shape,) = input_shapes
        if len(shape) != 1:
            raise IRError(f"Readout {self.name!r} expects a vector input (C,), got {shape}")
        return shape


NODE_KINDS: dict[str, type[Node]] = {
    cls.kind: cls
    for cls in (Input, Linear, Conv2d, BatchNorm, MaxPool2d, AvgPool2d, Flatten, Add, Dropout, Neuron,
                SynapticNeuron, Readout, Conv1d, MaxPool1d, AvgPool1d)
}

PRUNABLE_KINDS = (Linear, Conv2d)  # Conv1d is a Conv2d (over [C, 1, L])
SPIKING_KINDS = (Neuron, SynapticNeuron)
# 1-D layers and the 2-D parents they are computed as (over [C, 1, L])
PLANAR_1D_KINDS: dict[type[Node], type[Node]] = {Conv1d: Conv2d, MaxPool1d: MaxPool2d, AvgPool1d: AvgPool2d}


def has_synapses(node: Node) -> bool:
    """Does ``node.weight`` hold synapses (Linear, Conv2d, Conv1d, a SynapticNeuron's recurrent weight)?"""
    return isinstance(node, PRUNABLE_KINDS) or (isinstance(node, SynapticNeuron) and node.weight is not None)


@dataclass(eq=False)
class Graph:
    """A DAG of nodes in topological order: one Input first, one Readout last.

    ``shapes[name]`` is each node's per-sample output shape, checked on
    construction. ``metadata`` carries provenance (source framework, ...) as
    strings.
    """

    nodes: list[Node]
    metadata: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(init=False, repr=False)

    def __post_init__(self):
        self.nodes = list(self.nodes)
        if not self.nodes:
            raise IRError("a graph needs at least an Input and a Readout")
        if not isinstance(self.nodes[0], Input) or any(isinstance(n, Input) for n in self.nodes[1:]):
            raise IRError("a graph has exactly one Input, and it comes first")
        if not isinstance(self.nodes[-1], Readout) or any(isinstance(n, Readout) for n in self.nodes[:-1]):
            raise IRError("a graph has exactly one Readout, and it comes last")
        if not any(isinstance(n, SPIKING_KINDS) for n in self.nodes):
            raise IRError("a graph without any spiking neuron is not an SNN")
        self.metadata = {str(k): str(v) for k, v in self.metadata.items()}
        shapes: dict[str, Shape] = {}
        consumers: dict[str, int] = {}
        for node in self.nodes:
            if node.name in shapes:
                raise IRError(f"two nodes are named {node.name!r}")
            for source in node.inputs:
                if source not in shapes:
                    raise IRError(
                        f"{node.kind} {node.name!r} reads {source!r}, which is not an earlier node"
                    )
                consumers[source] = consumers.get(source, 0) + 1
            shapes[node.name] = node.output_shape([shapes[s] for s in node.inputs])
        unused = [n.name for n in self.nodes[:-1] if n.name not in consumers]
        if unused:
            raise IRError(f"node(s) {', '.join(map(repr, unused))} feed nothing")
        self.shapes = shapes

    # -- access -------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def input(self) -> Input:
        return self.nodes[0]

    @property
    def readout(self) -> Readout:
        return self.nodes[-1]

    @property
    def num_classes(self) -> int:
        return self.shapes[self.readout.name][0]

    def neurons(self) -> list[Node]:
        """The spiking layers (Neuron and SynapticNeuron), in order."""
        return [n for n in self.nodes if isinstance(n, SPIKING_KINDS)]

    def prunable(self) -> list[Node]:
        """Nodes whose ``weight`` holds synapses (:func:`has_synapses`), in order."""
        return [n for n in self.nodes if has_synapses(n)]

    def input_shapes(self, node: Node) -> list[Shape]:
        return [self.shapes[s] for s in node.inputs]

    def same_as(self, other: "Graph") -> bool:
        """Bit-exact equality of structure, parameters and metadata."""
        return (
            isinstance(other, Graph)
            and len(self.nodes) == len(other.nodes)
            and all(a.same_as(b) for a, b in zip(self.nodes, other.nodes))
            and self.metadata == other.metadata
        )

    def copy(self) -> "Graph":
        """A deep copy (arrays copied), so a solver can never modify its input."""
        nodes = []
        for node in self.nodes:
            values = {
                f.name: (getattr(node, f.name).copy() if isinstance(getattr(node, f.name), np.ndarray) else getattr(node, f.name))
                for f in dataclasses.fields(node)
            }
            nodes.append(type(node)(**values))  # copied arrays are writable and contiguous: no second copy
        return Graph(nodes, dict(self.metadata))
