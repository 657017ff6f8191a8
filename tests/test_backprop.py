"""The training engine: every backward kernel against finite differences of the float64
reference, the neuron's BPTT against an independent forward-mode derivation, and the whole
graph's training forward against the simulator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphs
import reference
from onnx_snn_compress import ir
from onnx_snn_compress.backprop import (
    BACKWARD,
    INPUT_GRAD,
    TRAIN_FORWARD,
    TrainContext,
    Tape,
    backward,
    forward_train,
    trainable,
)
from onnx_snn_compress.errors import DataError
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.kernels.neuron import RESET_CODES, SURROGATE_CODES, lif_backward, lif_forward
from onnx_snn_compress.losses import LOSSES
from onnx_snn_compress.samples import sample_model_path
from onnx_snn_compress.simulate import Trace, forward

f32 = np.float32


# -- helpers -----------------------------------------------------------------------------

def node_gradients(node: ir.Node, inputs: list[np.ndarray], grad_y: np.ndarray, train: bool = True, rng=None):
    """One node's training forward and backward through the engine's registries, on
    ``[T, N, *shape]`` tensors: returns (output, input gradients, parameter gradients)."""
    context = TrainContext(train, rng, Trace(record_potential=True))
    y, record = TRAIN_FORWARD[node.kind](node, [np.ascontiguousarray(x, dtype=f32) for x in inputs], context)
    param_grads: dict[str, np.ndarray] = {}
    input_grads = BACKWARD[node.kind](node, record, np.ascontiguousarray(grad_y, dtype=f32),
                                      [True] * len(inputs), param_grads)
    input_grads = [g.reshape(x.shape) for g, x in zip(input_grads, inputs)]
    return y, input_grads, param_grads


def numeric_gradient(loss, value: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the float64 scalar ``loss()`` w.r.t. every entry of ``value``
    (a float64 array that ``loss`` reads), perturbed in place."""
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        saved = value[index]
        value[index] = saved + eps
        up = loss()
        value[index] = saved - eps
        down = loss()
        value[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


def assert_gradient_close(ours: np.ndarray, expected: np.ndarray, rtol: float = 2e-4):
    """Per tensor: max |ours - expected| <= rtol * max |expected| (float32 vs float64 differences)."""
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-12)
    assert np.abs(ours - expected).max() <= rtol * scale, (np.abs(ours - expected).max(), scale)


def per_step(function, x, *args):
    """A float64 reference of a stateless layer applied to ``[T, N, *shape]`` time step by time step."""
    return np.stack([function(x[t], *args) for t in range(x.shape[0])])


def check_layer(node: ir.Node, inputs: list[np.ndarray], reference_forward, params: tuple[str, ...] = (),
                train: bool = True, rng_seed: int = 0):
    """Our gradients of ``sum(R * node(inputs))`` for random R against central differences of
    ``reference_forward(inputs64, params64)`` in float64, for every input and parameter."""
    rng = np.random.default_rng(rng_seed)
    inputs64 = [np.asarray(x, np.float64) for x in inputs]
    params64 = {name: getattr(node, name).astype(np.float64) for name in params}
    output = reference_forward(inputs64, params64)
    weights = rng.normal(size=output.shape)
    y, input_grads, param_grads = node_gradients(node, inputs, weights.astype(f32), train)
    np.testing.assert_allclose(y, output, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(output).max()))

    def loss():
        return float((reference_forward(inputs64, params64) * weights).sum())

    for x64, grad in zip(inputs64, input_grads):
        assert_gradient_close(grad, numeric_gradient(loss, x64))
    for name in params:
        assert_gradient_close(param_grads[f"{node.name}.{name}"], numeric_gradient(loss, params64[name]))


def normal(rng, *shape, scale=1.0, offset=0.0):
    return (rng.normal(size=shape) * scale + offset).astype(f32)


# -- stateless layers: finite differences ------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients_match_finite_differences(bias):
    rng = np.random.default_rng(1)
    node = ir.Linear("fc", ("x",), weight=normal(rng, 4, 6), bias=normal(rng, 4) if bias else None)
    x = normal(rng, 3, 2, 6)

    def reference_forward(inputs, params):
        return per_step(reference.linear, inputs[0], params["weight"], params.get("bias"))

    check_layer(node, [x], reference_forward, ("weight", "bias") if bias else ("weight",))


CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1, kernel=3, channels=2, out=3),
    dict(stride=2, padding=1, dilation=1, groups=1, kernel=3, channels=2, out=3),
    dict(stride=1, padding=2, dilation=2, groups=2, kernel=3, channels=4, out=4),
    dict(stride=(2, 1), padding=(1, 0), dilation=1, groups=4, kernel=2, channels=4, out=8),
    dict(stride=1, padding=0, dilation=1, groups=1, kernel=1, channels=3, out=2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv2d_gradients_match_finite_differences(case):
    rng = np.random.default_rng(2)
    groups, k = case["groups"], case["kernel"]
    node = ir.Conv2d("conv", ("x",), weight=normal(rng, case["out"], case["channels"] // groups, k, k),
                     bias=normal(rng, case["out"]), stride=case["stride"], padding=case["padding"],
                     dilation=case["dilation"], groups=groups)
    x = normal(rng, 2, 2, case["channels"], 5, 6)

    def reference_forward(inputs, params):
        return per_step(reference.conv2d, inputs[0], params["weight"], params["bias"], node.stride,
                        node.padding, node.dilation, node.groups)

    check_layer(node, [x], reference_forward, ("weight", "bias"))


def batchnorm_train_reference(x, weight, bias, eps):
    """Training-mode batch normalisation of ``[T, N, C, *spatial]`` with statistics over all but C."""
    axes = (0, 1, *range(3, x.ndim))
    shape = (1, 1, -1) + (1,) * (x.ndim - 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight.reshape(shape) + bias.reshape(shape)


def batchnorm_node(rng, channels):
    return ir.BatchNorm("bn", ("x",), weight=rng.uniform(0.5, 1.5, channels), bias=normal(rng, channels, scale=0.2),
                        running_mean=normal(rng, channels, scale=0.3), running_var=rng.uniform(0.5, 2, channels))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_batchnorm_train_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(3)
    node = batchnorm_node(rng, shape[0])
    x = normal(rng, 3, 4, *shape, offset=0.5)
    eps = np.float64(node.eps)

    def reference_forward(inputs, params):
        return batchnorm_train_reference(inputs[0], params["weight"], params["bias"], eps)

    check_layer(node, [x], reference_forward, ("weight", "bias"), train=True)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_batchnorm_eval_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(4)
    node = batchnorm_node(rng, shape[0])
    x = normal(rng, 3, 4, *shape, offset=0.5)

    def reference_forward(inputs, params):
        return per_step(reference.batchnorm, inputs[0], params["weight"], params["bias"], node.running_mean,
                        node.running_var, node.eps)

    running = node.running_mean.copy(), node.running_var.copy()
    check_layer(node, [x], reference_forward, ("weight", "bias"), train=False)
    assert np.array_equal(node.running_mean, running[0]) and np.array_equal(node.running_var, running[1])


def test_batchnorm_train_updates_running_statistics_like_pytorch():
    """running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance,
    over all T*N*H*W values of a channel (SpikingJelly's multi-step BatchNorm)."""
    rng = np.random.default_rng(5)
    node = batchnorm_node(rng, 3)
    node.momentum = 0.25
    x = normal(rng, 4, 5, 3, 2, 2, scale=2.0, offset=1.0)
    mean0, var0 = node.running_mean.astype(np.float64), node.running_var.astype(np.float64)
    arrays = node.running_mean, node.running_var
    forward_values = x.astype(np.float64).transpose(2, 0, 1, 3, 4).reshape(3, -1)
    node_gradients(node, [x], np.zeros_like(x), train=True)
    assert node.running_mean is arrays[0] and node.running_var is arrays[1]  # updated in place
    np.testing.assert_allclose(node.running_mean, 0.75 * mean0 + 0.25 * forward_values.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(node.running_var, 0.75 * var0 + 0.25 * forward_values.var(axis=1, ddof=1), rtol=1e-6)


def test_batchnorm_train_needs_more_than_one_value_per_channel():
    node = batchnorm_node(np.random.default_rng(0), 2)
    with pytest.raises(DataError, match="more than one value"):
        node_gradients(node, [np.ones((1, 1, 2), f32)], np.zeros((1, 1, 2)), train=True)


POOL_CASES = [
    dict(kernel_size=2, stride=None, padding=0),
    dict(kernel_size=2, stride=1, padding=0),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool_gradients_match_finite_differences_away_from_ties(case):
    rng = np.random.default_rng(6)
    node = ir.MaxPool2d("pool", ("x",), **case)
    x = normal(rng, 2, 2, 3, 6, 5)  # continuous values: no ties, gaps far above the FD step

    def reference_forward(inputs, params):
        return per_step(reference.maxpool2d, inputs[0], node.kernel_size, node.stride, node.padding)

    check_layer(node, [x], reference_forward)


def test_maxpool_routes_a_tie_to_the_first_cell_in_row_major_order_as_pytorch():
    node = ir.MaxPool2d("pool", ("x",), kernel_size=2)
    x = np.array([[[[[0, 1], [1, 1]]]]], dtype=f32)  # [T=1, N=1, C=1, 2, 2]
    _, (grad_x,), _ = node_gradients(node, [x], np.ones((1, 1, 1, 1, 1), f32))
    assert grad_x.reshape(-1).tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avgpool_gradients_match_finite_differences(case, count_include_pad):
    rng = np.random.default_rng(7)
    node = ir.AvgPool2d("pool", ("x",), count_include_pad=count_include_pad, **case)
    x = normal(rng, 2, 2, 3, 6, 5)

    def reference_forward(inputs, params):
        return per_step(reference.avgpool2d, inputs[0], node.kernel_size, node.stride, node.padding,
                        node.count_include_pad)

    check_layer(node, [x], reference_forward)


def test_flatten_and_add_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    check_layer(ir.Flatten("flat", ("x",)), [normal(rng, 2, 3, 2, 3, 2)],
                lambda inputs, params: inputs[0].reshape(2, 3, -1))
    check_layer(ir.Add("add", ("a", "b")), [normal(rng, 2, 3, 4), normal(rng, 2, 3, 4)],
                lambda inputs, params: inputs[0] + inputs[1])


def test_dropout_shares_one_scaled_mask_per_sample_across_time():
    node = ir.Dropout("drop", ("x",), p=0.25)
    x = np.ones((5, 40, 3, 4), f32)
    y, (grad_x,), _ = node_gradients(node, [x], np.ones_like(x), rng=np.random.default_rng(0))
    assert np.all(y == y[0])  # the same mask at every time step
    assert set(np.unique(y)) == {0.0, f32(1 / 0.75)}
    assert 0.15 < np.mean(y == 0) < 0.35
    assert np.array_equal(grad_x, y)  # d(x * mask)/dx = mask
    again, _, _ = node_gradients(node, [x], np.ones_like(x), rng=np.random.default_rng(0))
    assert np.array_equal(again, y)


def test_dropout_gradients_match_finite_differences():
    """With the mask a given seed draws, d(sum(R * X * mask))/dX matches central differences."""
    rng = np.random.default_rng(9)
    node = ir.Dropout("drop", ("x",), p=0.5)
    x = normal(rng, 3, 4, 5)
    mask, _, _ = node_gradients(node, [np.ones_like(x)], np.zeros_like(x), rng=np.random.default_rng(1))
    mask = mask[0].astype(np.float64)
    assert 0 < np.mean(mask == 0) < 1
    weights = rng.normal(size=x.shape)
    y, (grad_x,), _ = node_gradients(node, [x], weights.astype(f32), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(y, (x * mask).astype(f32))
    x64 = x.astype(np.float64)
    assert_gradient_close(grad_x, numeric_gradient(lambda: float((x64 * mask * weights).sum()), x64))


def test_dropout_is_identity_in_eval_mode_and_needs_an_rng_to_train():
    node = ir.Dropout("drop", ("x",), p=0.5)
    x = normal(np.random.default_rng(0), 2, 3, 4)
    y, (grad_x,), _ = node_gradients(node, [x], np.ones_like(x), train=False)
    assert np.array_equal(y, x) and np.array_equal(grad_x, np.ones_like(x))
    with pytest.raises(ValueError, match="random generator"):
        node_gradients(node, [x], np.ones_like(x), train=True, rng=None)


@pytest.mark.parametrize("mode, beta", [("rate", 1.0), ("leaky", 0.8), ("leaky", 1.0)])
def test_readout_gradients_match_finite_differences(mode, beta):
    rng = np.random.default_rng(10)
    node = ir.Readout("out", ("x",), mode=mode, beta=beta)
    check_layer(node, [normal(rng, 6, 3, 4)], lambda inputs, params: reference.readout(inputs[0], mode, node.beta))


def test_spikes_readout_passes_the_gradient_through():
    node = ir.Readout("out", ("x",), mode="spikes")
    x = normal(np.random.default_rng(11), 4, 2, 3)
    grad = normal(np.random.default_rng(12), 4, 2, 3)
    y, (grad_x,), _ = node_gradients(node, [x], grad)
    assert np.array_equal(y, x) and np.array_equal(grad_x, grad)


# -- the neuron: BPTT against an independent forward-mode derivation ---------------------

def surrogate_reference(u: np.ndarray, surrogate: str, alpha: float) -> np.ndarray:
    """The surrogate dS/du in float64, written from the peers' definitions."""
    u = np.asarray(u, np.float64)
    if surrogate == "atan":  # SpikingJelly ATan / snnTorch atan
        return alpha / 2 / (1 + (np.pi / 2 * alpha * u) ** 2)
    if surrogate == "sigmoid":  # snnTorch sigmoid(slope): k e^{-ku} / (e^{-ku} + 1)^2
        sig = 1 / (1 + np.exp(-alpha * u))
        return alpha * sig * (1 - sig)
    if surrogate == "fast_sigmoid":  # snnTorch fast_sigmoid(slope)
        return 1 / (alpha * np.abs(u) + 1) ** 2
    return np.where(np.abs(u) < 1 / (2 * alpha), alpha, 0.0)  # rectangle, area 1


def neuron_gradient_forward_mode(x: np.ndarray, grad_spikes: np.ndarray, node: ir.Neuron) -> np.ndarray:
    """dL/dX for L = sum(grad_spikes * S), by forward-mode differentiation: for every source
    step t0 a tangent dX[t0] = 1 (all neurons at once) is pushed through the IR equations,
    and dL/dX[t0] = sum_t grad_spikes[t] * dS[t]. The forward values are float32 (the
    reference simulator's order), the tangents float64; detach_reset drops dS in the reset."""
    f = np.float32
    beta, gain, thr, v_reset = f(node.beta), f(node.gain), f(node.v_threshold), f(node.v_reset)
    leak = (f(1) - beta) * f(node.v_leak)
    time_steps, width = x.shape
    keep = 0.0 if node.detach_reset else 1.0

    def reset(value, spikes):
        if node.reset == "subtract":
            return value - thr * spikes
        if node.reset == "hard":
            return spikes * v_reset + (f(1) - spikes) * value
        return value

    def reset_tangent(value, tangent, spikes, spikes_tangent):
        spikes_tangent = keep * spikes_tangent
        if node.reset == "subtract":
            return tangent - float(thr) * spikes_tangent
        if node.reset == "hard":
            return (1 - spikes) * tangent + spikes_tangent * (float(v_reset) - value)
        return tangent

    grad_x = np.zeros((time_steps, width))
    for source in range(time_steps):
        v = np.full(width, f(node.v_init), dtype=f)
        s_previous = np.zeros(width, dtype=f)
        v_dot = np.zeros(width)
        s_previous_dot = np.zeros(width)
        for t in range(time_steps):
            d = beta * v + leak
            d_dot = float(beta) * v_dot
            if node.reset_delay:
                d_dot = reset_tangent(d.astype(np.float64), d_dot, s_previous, s_previous_dot)
                d = reset(d, s_previous)
            h = d + gain * x[t]
            h_dot = d_dot + (float(gain) if t == source else 0.0)
            s = (h >= thr if node.fire_on_equal else h > thr).astype(f)
            s_dot = surrogate_reference(h.astype(np.float64) - float(thr), node.surrogate, node.alpha) * h_dot
            if node.reset_delay:
                v, v_dot = h, h_dot
            else:
                v_dot = reset_tangent(h.astype(np.float64), h_dot, s, s_dot)
                v = reset(h, s)
            s_previous, s_previous_dot = s, s_dot
            grad_x[source] += grad_spikes[t] * s_dot
    return grad_x


NEURON_CASES = list(itertools.product(ir.RESET_MODES, (False, True), (False, True), ir.SURROGATES))


@pytest.mark.parametrize("reset, reset_delay, detach_reset, surrogate", NEURON_CASES)
def test_neuron_bptt_matches_forward_mode_derivation(reset, reset_delay, detach_reset, surrogate):
    rng = np.random.default_rng(13)
    x = rng.normal(0.45, 0.6, size=(10, 400)).astype(f32)
    grad_spikes = rng.normal(size=x.shape).astype(f32)
    alpha = {"atan": 2.0, "sigmoid": 4.0, "fast_sigmoid": 5.0, "rectangle": 1.0}[surrogate]
    node = ir.Neuron("n", ("x",), beta=0.8, gain=0.9, v_threshold=0.8, v_reset=-0.2, v_leak=0.1, v_init=0.05,
                     reset=reset, reset_delay=reset_delay, fire_on_equal=bool(rng.integers(2)),
                     surrogate=surrogate, alpha=alpha, detach_reset=detach_reset)
    spikes, potential, _ = lif_forward(x, node.beta, node.gain, node.v_threshold, node.v_reset, node.v_leak,
                                       node.v_init, RESET_CODES[reset], reset_delay, node.fire_on_equal, True)
    assert 0.1 < spikes.mean() < 0.9
    ours = lif_backward(grad_spikes, potential, node.beta, node.gain, node.v_threshold, node.v_reset, node.v_leak,
                        RESET_CODES[reset], reset_delay, node.fire_on_equal, SURROGATE_CODES[surrogate], node.alpha,
                        detach_reset)
    expected = neuron_gradient_forward_mode(x, grad_spikes, node)
    assert_gradient_close(ours, expected, rtol=1e-5)


def test_neuron_gradient_depends_on_every_attribute_it_should():
    """Guards the test above: on its data, each of reset mode, reset_delay, detach_reset and
    surrogate changes the gradient (so none of them is silently ignored)."""
    rng = np.random.default_rng(13)
    x = rng.normal(0.45, 0.6, size=(10, 400)).astype(f32)
    grad_spikes = rng.normal(size=x.shape).astype(f32)

    def gradient(reset, reset_delay, detach_reset, surrogate):
        _, potential, _ = lif_forward(x, 0.8, 0.9, 0.8, -0.2, 0.1, 0.05, RESET_CODES[reset], reset_delay, True, True)
        return lif_backward(grad_spikes, potential, 0.8, 0.9, 0.8, -0.2, 0.1, RESET_CODES[reset], reset_delay, True,
                            SURROGATE_CODES[surrogate], 2.0, detach_reset).tobytes()

    results = {case: gradient(*case) for case in NEURON_CASES}
    # "none" has no reset to delay or detach: its four variants coincide; everything else differs.
    assert len(set(results.values())) == len(results) - 3 * len(ir.SURROGATES)


def test_surrogates_follow_their_published_formulas_at_known_points():
    """atan 1 at u=0 with alpha 2 (the peers' code); sigmoid k/4; fast sigmoid 1; rectangle
    alpha inside |u| < 1/(2 alpha) and 0 outside."""
    from onnx_snn_compress.kernels.neuron import surrogate_gradient

    def at(u, name, alpha):
        return float(surrogate_gradient(f32(u), SURROGATE_CODES[name], f32(alpha)))

    assert at(0.0, "atan", 2.0) == 1.0
    assert at(0.0, "sigmoid", 25.0) == 6.25
    assert at(0.0, "fast_sigmoid", 25.0) == 1.0
    assert at(0.1, "fast_sigmoid", 10.0) == pytest.approx(0.25)
    assert at(0.24, "rectangle", 2.0) == 2.0 and at(0.26, "rectangle", 2.0) == 0.0
    assert 0.0 <= at(1e4, "sigmoid", 25.0) < 1e-30  # no overflow (nor NaN) far from the threshold
    assert at(-1e4, "sigmoid", 25.0) == at(1e4, "sigmoid", 25.0)


def test_sigmoid_surrogate_is_within_float32_rounding_of_the_exact_formula():
    """The sigmoid surrogate's vectorised exp stays within a few ulp of float64 over its range."""
    from onnx_snn_compress.kernels.neuron import surrogate_gradient

    u = np.concatenate([np.linspace(-3, 3, 2001), [0.0, 1e-7, -1e-7]]).astype(f32)
    ours = np.array([surrogate_gradient(value, SURROGATE_CODES["sigmoid"], f32(4.0)) for value in u], np.float64)
    np.testing.assert_allclose(ours, surrogate_reference(u, "sigmoid", 4.0), rtol=1e-6, atol=0)


# -- whole graphs ------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(graph=graphs.snn_graphs(), seed=st.integers(0, 2**16))
def test_eval_forward_train_equals_the_simulator_exactly(graph, seed):
    x = graphs.random_input(graph, 4, 3, seed)
    trace = Trace()
    expected = forward(graph, x, trace)
    output, tape = forward_train(graph, x, train=False)
    assert output.dtype == np.float32 and np.array_equal(output, expected)
    assert tape.spike_counts.keys() == trace.spike_counts.keys()
    assert all(np.array_equal(tape.spike_counts[name], trace.spike_counts[name]) for name in trace.spike_counts)


@settings(max_examples=30, deadline=None)
@given(graph=graphs.snn_graphs(), seed=st.integers(0, 2**16), train=st.booleans())
def test_backward_returns_a_finite_float32_gradient_for_every_trainable_array(graph, seed, train):
    x = graphs.random_input(graph, 4, 3, seed)
    output, tape = forward_train(graph, x, rng=np.random.default_rng(seed), train=train)
    grad_output = np.random.default_rng(seed).normal(size=output.shape).astype(f32)
    grads = backward(graph, tape, grad_output, input_grad=True)
    params = trainable(graph)
    assert list(grads) == [*params, INPUT_GRAD]
    for name, param in params.items():
        assert grads[name].dtype == np.float32 and grads[name].shape == param.shape
        assert np.all(np.isfinite(grads[name]))
    assert grads[INPUT_GRAD].shape == x.shape and grads[INPUT_GRAD].dtype == np.float32


def test_trainable_arrays_are_the_graphs_own():
    rng = np.random.default_rng(19)
    graph = ir.Graph([
        ir.Input("x", shape=(1, 4, 4)),
        ir.Conv2d("conv", ("x",), weight=normal(rng, 2, 1, 3, 3), padding=1),
        ir.BatchNorm("bn", ("conv",), weight=np.ones(2), bias=np.zeros(2), running_mean=np.zeros(2),
                     running_var=np.ones(2)),
        ir.Neuron("lif", ("bn",)),
        ir.Flatten("flat", ("lif",)),
        ir.Linear("fc", ("flat",), weight=normal(rng, 3, 32), bias=np.zeros(3)),
        ir.Neuron("lif2", ("fc",)),
        ir.Readout("out", ("lif2",)),
    ])
    params = trainable(graph)
    assert list(params) == ["conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    for name, array in params.items():
        node, field = name.split(".")
        assert array is getattr(graph[node], field) and array.dtype == np.float32


def _smooth_head_graph(rng, fan_out: bool):
    """Input -> fc1 -> lif1 -> (fcA + fcB | fcA) -> leaky readout: the head is smooth in fcA/fcB."""
    weight_a, weight_b = normal(rng, 3, 6, scale=0.5), normal(rng, 3, 6, scale=0.5)
    nodes = [
        ir.Input("x", shape=(5,)),
        ir.Linear("fc1", ("x",), weight=normal(rng, 6, 5), bias=normal(rng, 6, scale=0.2, offset=0.3)),
        ir.Neuron("lif1", ("fc1",), beta=0.9, surrogate="sigmoid", alpha=4.0),
    ]
    if fan_out:
        nodes += [ir.Linear("fcA", ("lif1",), weight=weight_a, bias=normal(rng, 3)),
                  ir.Linear("fcB", ("lif1",), weight=weight_b),
                  ir.Add("add", ("fcA", "fcB")), ir.Readout("out", ("add",), mode="leaky", beta=0.7)]
    else:
        nodes += [ir.Linear("fcA", ("lif1",), weight=weight_a + weight_b, bias=normal(rng, 3)),
                  ir.Readout("out", ("fcA",), mode="leaky", beta=0.7)]
    return ir.Graph(nodes)


def test_gradients_accumulate_where_a_tensor_feeds_two_nodes():
    """fcA(z) + fcB(z) equals one layer with weight WA + WB: the gradient reaching z (and so
    fc1's gradient) must be the same, and the head's gradients match finite differences."""
    x = np.random.default_rng(14).uniform(0, 1.5, size=(6, 4, 5)).astype(f32)
    labels = np.array([0, 1, 2, 1])
    fan_out, merged = _smooth_head_graph(np.random.default_rng(15), True), _smooth_head_graph(np.random.default_rng(15), False)
    results = []
    for graph in (fan_out, merged):
        output, tape = forward_train(graph, x)
        _, grad_output = LOSSES["ce_readout"](output, labels)
        results.append(backward(graph, tape, grad_output))
    assert np.abs(results[0]["fc1.weight"]).max() > 0
    assert_gradient_close(results[0]["fc1.weight"], results[1]["fc1.weight"].astype(np.float64), rtol=1e-5)
    assert_gradient_close(results[0]["fc1.bias"], results[1]["fc1.bias"].astype(np.float64), rtol=1e-5)

    # finite differences of the head: spikes do not move when only fcA / fcB move
    spikes = reference.node_forward(fan_out["lif1"], [reference.node_forward(fan_out["fc1"], [x])]).astype(np.float64)
    head = {name: getattr(fan_out[name.split(".")[0]], name.split(".")[1]).astype(np.float64)
            for name in ("fcA.weight", "fcA.bias", "fcB.weight")}

    def loss():
        logits = spikes @ head["fcA.weight"].T + head["fcA.bias"] + spikes @ head["fcB.weight"].T
        scores = reference.readout(logits, "leaky", fan_out.readout.beta)
        scores = scores - scores.max(axis=1, keepdims=True)
        return float(-(scores[np.arange(4), labels] - np.log(np.exp(scores).sum(axis=1))).mean())

    for name, value in head.items():
        assert_gradient_close(results[0][name], numeric_gradient(loss, value))


def test_a_layer_reading_the_input_gets_no_input_gradient_unless_asked():
    graph = load_model(sample_model_path("digits_mlp"))
    x = np.random.default_rng(16).uniform(0, 1, size=(4, 3, 64)).astype(f32)
    output, tape = forward_train(graph, x)
    grads = backward(graph, tape, np.ones_like(output))
    assert INPUT_GRAD not in grads and list(grads) == list(trainable(graph))


def test_train_forward_is_reproducible_and_leaves_the_graph_alone_in_eval_mode():
    graph = load_model(sample_model_path("digits_conv"))
    before = graph.copy()
    x = np.random.default_rng(17).uniform(0, 1, size=(4, 5, 1, 8, 8)).astype(f32)
    output, tape = forward_train(graph, x, train=False)
    grads = backward(graph, tape, np.ones_like(output))
    assert graph.same_as(before)
    again = backward(graph, forward_train(graph, x, train=False)[1], np.ones_like(output))
    assert all(np.array_equal(grads[k], again[k]) for k in grads)
    forward_train(graph, x, train=True)
    assert not np.array_equal(graph["bn1"].running_mean, before["bn1"].running_mean)


def test_tape_reports_firing_rates():
    graph = load_model(sample_model_path("digits_mlp"))
    x = np.random.default_rng(18).uniform(0, 1, size=(8, 16, 64)).astype(f32)
    _, tape = forward_train(graph, x)
    assert isinstance(tape, Tape) and set(tape.spike_counts) == {"lif1", "lif2"}
    assert tape.spike_counts["lif1"].shape == (16, 128)
    rates = tape.firing_rates()
    assert rates["lif1"] == pytest.approx(tape.spike_counts["lif1"].sum() / (8 * 16 * 128))


def test_bad_input_and_bad_output_gradient_are_refused():
    graph = load_model(sample_model_path("digits_mlp"))
    with pytest.raises(DataError, match="does not fit"):
        forward_train(graph, np.zeros((4, 2, 63), f32))
    output, tape = forward_train(graph, np.zeros((4, 2, 64), f32))
    with pytest.raises(ValueError, match="grad_output"):
        backward(graph, tape, np.zeros((3, 10), f32))


def test_trainable_arrays_of_a_loaded_model_are_writable_and_stay_the_graphs():
    """ONNX initialisers may load as read-only views; an optimizer must still update the graph."""
    graph = load_model(sample_model_path("digits_mlp"))
    params = trainable(graph)
    for name, array in params.items():
        node, field = name.split(".")
        assert array.flags.writeable and array is getattr(graph[node], field)
    params["fc1.bias"] += 1.0
    assert np.array_equal(graph["fc1"].bias, params["fc1.bias"])


@pytest.mark.parametrize("outputs", [1, 10, 15])
def test_narrow_linear_forward_is_bit_identical_to_the_event_driven_sums(outputs):
    """The narrow kernel (rows as lanes, dense) must give the event-driven kernel's exact bits."""
    from onnx_snn_compress.kernels import linear

    rng = np.random.default_rng(20)
    x = np.where(rng.random((203, 37)) < 0.3, rng.normal(size=(203, 37)), 0).astype(f32)
    x[:, :3] = (rng.random((203, 3)) < 0.5)  # spikes, and all-zero rows below
    x[::17] = 0
    weight_t = rng.normal(size=(37, outputs)).astype(f32)
    for bias in (rng.normal(size=outputs).astype(f32), np.zeros(0, f32)):
        wide = np.empty((203, outputs), f32)
        linear._linear_kernel(x, weight_t, bias, wide)
        narrow = linear.linear_forward(x, weight_t, bias)
        assert narrow.tobytes() == wide.tobytes()


def test_an_encoding_neuron_on_the_input_passes_gradients_only_when_the_input_gradient_is_asked():
    rng = np.random.default_rng(21)
    graph = ir.Graph([
        ir.Input("x", shape=(6,)),
        ir.Neuron("encode", ("x",), beta=0.5, v_threshold=0.5),
        ir.Linear("fc", ("encode",), weight=normal(rng, 4, 6), bias=normal(rng, 4, offset=0.5)),
        ir.Neuron("lif", ("fc",)),
        ir.Readout("out", ("lif",)),
    ])
    x = rng.uniform(0, 1, size=(5, 3, 6)).astype(f32)
    output, tape = forward_train(graph, x)
    grad_output = np.ones_like(output)
    plain = backward(graph, tape, grad_output)
    with_input = backward(graph, tape, grad_output, input_grad=True)
    assert list(plain) == ["fc.weight", "fc.bias"]
    assert all(np.array_equal(plain[k], with_input[k]) for k in plain)
    assert np.abs(with_input[INPUT_GRAD]).max() > 0


def test_linear_backward_of_a_big_layer_matches_float64():
    """Layers too big for single-threaded GEMM chunks take the whole-matrix path."""
    from onnx_snn_compress.kernels.linear import linear_backward

    rng = np.random.default_rng(5)
    x = (rng.random((96, 300)) < 0.2).astype(np.float32)
    weight = rng.normal(size=(300, 300)).astype(np.float32)
    grad_y = rng.normal(size=(96, 300)).astype(np.float32)
    grad_x, grad_weight, grad_bias = linear_backward(x, weight, grad_y)
    for ours, exact in ((grad_x, grad_y.astype(np.float64) @ weight), (grad_weight, grad_y.T.astype(np.float64) @ x),
                        (grad_bias, grad_y.astype(np.float64).sum(axis=0))):
        assert ours.dtype == np.float32
        assert np.abs(ours - exact).max() <= 1e-5 * np.abs(exact).max()


# -- static input (direct encoding): the layers before the first neuron run once ----------

def static_input(graph, time_steps, samples, seed):
    """An input that is the same at every time step, as direct encoding makes it."""
    return np.repeat(graphs.random_input(graph, 1, samples, seed), time_steps, axis=0)


@settings(max_examples=20, deadline=None)
@given(graph=graphs.snn_graphs(), seed=st.integers(0, 2**16))
def test_a_static_input_gives_the_same_output_and_gradients_as_the_full_input(graph, seed):
    x = static_input(graph, 4, 3, seed)
    full_output, full_tape = forward_train(graph, x, train=False, static_input=False)
    output, tape = forward_train(graph, x, train=False)
    assert graph.input.name in tape.static and not full_tape.static
    assert np.array_equal(output, full_output)  # computed once, each step's value is unchanged
    grad_output = np.random.default_rng(seed).normal(size=output.shape).astype(f32)
    full_grads = backward(graph, full_tape, grad_output)
    grads = backward(graph, tape, grad_output)
    for name, full in full_grads.items():  # a time sum taken earlier: equal up to rounding
        assert grads[name].shape == full.shape
        np.testing.assert_allclose(grads[name], full, rtol=1e-4, atol=1e-5 * (np.abs(full).max() + 1))


def test_a_static_input_trains_batchnorm_on_the_statistics_of_all_steps():
    graph = load_model(sample_model_path("digits_conv"))
    full_graph = graph.copy()
    x = static_input(graph, 6, 5, seed=3)
    output, tape = forward_train(graph, x)
    full_output, full_tape = forward_train(full_graph, x, static_input=False)
    assert {"input", *[n.name for n in graph.nodes[1:3]]} <= tape.static
    assert np.array_equal(output, full_output)
    for node in graph.nodes:
        if isinstance(node, ir.BatchNorm):  # running_var's unbiased factor counts T*N*H*W values
            np.testing.assert_allclose(node.running_mean, full_graph[node.name].running_mean, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(node.running_var, full_graph[node.name].running_var, rtol=1e-5)
    grad_output = np.ones_like(output)
    full_grads = backward(full_graph, full_tape, grad_output)
    for name, grad in backward(graph, tape, grad_output).items():
        np.testing.assert_allclose(grad, full_grads[name], rtol=1e-4, atol=1e-6 * np.abs(full_grads[name]).max())


def test_an_input_that_changes_over_time_is_not_taken_for_static():
    graph = load_model(sample_model_path("digits_mlp"))
    x = static_input(graph, 4, 2, seed=5)
    x[3, 1, 0] += 1e-3  # one value at one step differs
    _, tape = forward_train(graph, x)
    assert not tape.static


def test_the_input_gradient_needs_a_tape_recorded_without_the_static_shortcut():
    graph = load_model(sample_model_path("digits_mlp"))
    x = static_input(graph, 4, 2, seed=6)
    output, tape = forward_train(graph, x)
    with pytest.raises(ValueError, match="static_input=False"):
        backward(graph, tape, np.ones_like(output), input_grad=True)
    output, tape = forward_train(graph, x, static_input=False)
    assert backward(graph, tape, np.ones_like(output), input_grad=True)[INPUT_GRAD].shape == x.shape
