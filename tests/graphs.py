"""Random SNN graphs for property tests (hypothesis), shared by the profile and agreement tests.

``integer=True`` draws integer-valued weights (and no layer that divides by a
non-power of two or normalises), so every sum is exact in float32 and the
simulator and onnxruntime must agree spike for spike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from onnx_snn_compress import ir

RESETS = list(ir.RESET_MODES)


def neuron_params(draw, integer: bool) -> dict:
    beta = draw(st.sampled_from([1.0, 0.5, 0.75] if integer else [1.0, 0.9, 0.5, 0.25, 0.8125]))
    return dict(
        beta=beta,
        v_threshold=draw(st.sampled_from([1.0, 2.0, 0.5] if integer else [1.0, 0.7, 1.3])),
        v_reset=draw(st.sampled_from([0.0, -1.0, 0.5])),
        v_leak=draw(st.sampled_from([0.0, 0.5, -0.25])),
        v_init=draw(st.sampled_from([0.0, 0.25])),
        gain=draw(st.sampled_from([1.0, 0.5] if integer else [1.0, 0.5, 0.3])),
        reset=draw(st.sampled_from(RESETS)),
        reset_delay=draw(st.booleans()),
        fire_on_equal=draw(st.booleans()),
        surrogate=draw(st.sampled_from(list(ir.SURROGATES))),
        alpha=draw(st.sampled_from([2.0, 4.0, 25.0])),
        detach_reset=draw(st.booleans()),
    )


def _weights(rng: np.random.Generator, shape, integer: bool, scale: float, offset: float = 0.0) -> np.ndarray:
    if integer:
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    return (rng.normal(size=shape) * scale + offset).astype(np.float32)


@st.composite
def snn_graphs(draw, integer: bool = False, max_hidden: int = 3):
    """A random valid graph: optional conv block (conv, batchnorm, pooling, residual Add),
    then linear layers with neurons, then a readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nodes: list[ir.Node] = []
    name = lambda kind: f"{kind}{len(nodes)}"  # noqa: E731
    image = draw(st.booleans())
    if image:
        channels, size = draw(st.integers(1, 3)), draw(st.integers(4, 7))
        nodes.append(ir.Input("x", shape=(channels, size, size)))
        out_channels = draw(st.integers(2, 4))
        kernel = draw(st.sampled_from([1, 3]))
        conv = ir.Conv2d(
            name("conv"), (nodes[-1].name,),
            weight=_weights(rng, (out_channels, channels, kernel, kernel), integer, 1.0),
            bias=None if draw(st.booleans()) else _weights(rng, (out_channels,), integer, 0.2, offset=0.3),
            stride=draw(st.sampled_from([1, 2])) if size >= 6 else 1,
            padding=kernel // 2 if draw(st.booleans()) else 0,
        )
        nodes.append(conv)
        if not integer and draw(st.booleans()):
            nodes.append(ir.BatchNorm(
                name("bn"), (nodes[-1].name,), weight=rng.uniform(0.5, 1.5, out_channels),
                bias=rng.normal(size=out_channels) * 0.1, running_mean=rng.normal(size=out_channels) * 0.1,
                running_var=rng.uniform(0.5, 2.0, out_channels),
            ))
        nodes.append(ir.Neuron(name("lif"), (nodes[-1].name,), **neuron_params(draw, integer)))
        if draw(st.booleans()):  # residual: conv (same shape) + add
            skip = nodes[-1].name
            nodes.append(ir.Conv2d(
                name("conv"), (skip,), weight=_weights(rng, (out_channels, out_channels, 3, 3), integer, 0.4), padding=1,
            ))
            nodes.append(ir.Add(name("add"), (nodes[-1].name, skip)))
            nodes.append(ir.Neuron(name("lif"), (nodes[-1].name,), **neuron_params(draw, integer)))
        shape = _shape_of(nodes)
        if shape[1] >= 2 and draw(st.booleans()):
            pool = draw(st.sampled_from([ir.MaxPool2d, ir.AvgPool2d]))
            kwargs = dict(kernel_size=2)
            if pool is ir.AvgPool2d and not integer:
                kwargs.update(kernel_size=draw(st.sampled_from([2, 3])), count_include_pad=draw(st.booleans()),
                              padding=draw(st.sampled_from([0, 1])))
            if min(shape[1:]) + 2 * kwargs.get("padding", 0) >= kwargs["kernel_size"]:
                nodes.append(pool(name("pool"), (nodes[-1].name,), **kwargs))
        nodes.append(ir.Flatten(name("flat"), (nodes[-1].name,)))
    else:
        nodes.append(ir.Input("x", shape=(draw(st.integers(2, 12)),)))
    if draw(st.booleans()):
        nodes.append(ir.Dropout(name("drop"), (nodes[-1].name,), p=draw(st.sampled_from([0.0, 0.2, 0.5]))))
    classes = draw(st.integers(2, 5))
    hidden = draw(st.lists(st.integers(2, 10), max_size=max_hidden))
    for width in [*hidden, classes]:
        features = _shape_of(nodes)[0]
        nodes.append(ir.Linear(
            name("fc"), (nodes[-1].name,), weight=_weights(rng, (width, features), integer, 2.5 / np.sqrt(features)),
            bias=None if draw(st.booleans()) else _weights(rng, (width,), integer, 0.3, offset=0.4),
        ))
        nodes.append(ir.Neuron(name("lif"), (nodes[-1].name,), **neuron_params(draw, integer)))
    mode = draw(st.sampled_from(["rate", "spikes"] if integer else ["rate", "spikes", "leaky"]))
    if mode == "leaky":
        if sum(isinstance(n, ir.Neuron) for n in nodes) > 1:
            nodes.pop()  # the leaky integrator reads the last Linear directly
        else:
            mode = "rate"  # a graph needs at least one spiking layer
    nodes.append(ir.Readout("out", (nodes[-1].name,), mode=mode, beta=draw(st.sampled_from([0.5, 0.9, 1.0]))))
    return ir.Graph(nodes, {"name": "random", "seed": str(rng.integers(1 << 30))})


def _shape_of(nodes: list[ir.Node]) -> tuple[int, ...]:
    """The per-sample shape of the last node of a partial chain."""
    shapes: dict[str, tuple[int, ...]] = {}
    for node in nodes:
        shapes[node.name] = node.output_shape([shapes[s] for s in node.inputs])
    return shapes[nodes[-1].name]


def random_input(graph: ir.Graph, time_steps: int, samples: int, seed: int, integer: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (time_steps, samples, *graph.input.shape)
    if integer:
        return rng.integers(0, 3, size=shape).astype(np.float32)
    return rng.uniform(0.0, 1.5, size=shape).astype(np.float32)
