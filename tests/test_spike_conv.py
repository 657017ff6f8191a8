"""Convolutions of spikes: the event-driven forward and weight gradient and the channels-last
input gradient (kernels/spike_conv.py), and the per-image input gradient of every geometry
(kernels/conv.py) compute the convolution's values for any input, and the simulator and the
trainer use them exactly where a convolution reads spikes."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import reference
from onnx_snn_compress import ir
from onnx_snn_compress.backprop import BACKWARD, backward, forward_train
from onnx_snn_compress.kernels.conv import conv2d_backward, conv2d_output_size
from onnx_snn_compress.kernels.spike_conv import spike_conv2d_forward, spike_conv2d_input_grad, spike_conv2d_weight_grad
from onnx_snn_compress.simulate import spike_tensors

SETTINGS = settings(max_examples=25, deadline=None)


def windows(x, kh, kw, stride, padding, dilation):
    """float64 ``[B, C, kh, kw, H_out, W_out]``: the input cell each window cell reads (0 in the padding)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    batch, channels, height, width = x.shape
    padded = np.zeros((batch, channels, height + 2 * ph, width + 2 * pw))
    padded[:, :, ph:ph + height, pw:pw + width] = x
    out_h = conv2d_output_size(height, kh, sh, ph, dh)
    out_w = conv2d_output_size(width, kw, sw, pw, dw)
    cells = np.zeros((batch, channels, kh, kw, out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            cells[:, :, i, j] = padded[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]
    return cells


def weight_grad_reference(x, grad_y, kh, kw, padding):
    """dL/dW[o, c, i, j] = sum over images and outputs of dL/dY[o] times the input cell (i, j) read (stride 1)."""
    cells = windows(x, kh, kw, (1, 1), padding, (1, 1))
    return np.einsum("bohw,bcijhw->ocij", grad_y.astype(np.float64), cells)


def input_grad_reference(weight, grad_y, shape, stride, padding, dilation, groups):
    """dL/dX: every output's gradient times its weights, added onto the input cells its window read."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_channels, in_per_group, kh, kw = weight.shape
    out_per_group = out_channels // groups
    padded = np.zeros((shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw))
    for o in range(out_channels):
        first = (o // out_per_group) * in_per_group
        for oy in range(grad_y.shape[2]):
            for ox in range(grad_y.shape[3]):
                for i in range(kh):
                    for j in range(kw):
                        padded[:, first:first + in_per_group, oy * sh + i * dh, ox * sw + j * dw] += (
                            grad_y[:, o, oy, ox, None] * weight[o, :, i, j].astype(np.float64))
    return padded[:, :, ph:ph + shape[2], pw:pw + shape[3]]


spike_cases = st.fixed_dictionaries({
    "batch": st.integers(1, 3),
    "channels": st.integers(1, 4),
    "out": st.integers(1, 9),
    "size": st.tuples(st.integers(2, 9), st.integers(2, 9)),
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "ones": st.sampled_from([0.0, 0.2, 1.0]),
    "spikes": st.booleans(),
    "with_bias": st.booleans(),
    "seed": st.integers(0, 2**32 - 1),
}).filter(lambda case: all(conv2d_output_size(n, k, 1, p, 1) >= 1
                           for n, k, p in zip(case["size"], case["kernel"], case["padding"])))


def make_spike_conv(case):
    rng = np.random.default_rng(case["seed"])
    shape = (case["batch"], case["channels"], *case["size"])
    x = (rng.random(shape) < case["ones"]).astype(np.float32)
    if not case["spikes"]:  # any values where it is nonzero: the kernel computes the convolution of any input
        x *= rng.normal(size=shape).astype(np.float32)
    weight = rng.normal(size=(case["out"], case["channels"], *case["kernel"])).astype(np.float32)
    bias = rng.normal(size=case["out"]).astype(np.float32) if case["with_bias"] else None
    return x, weight, bias


@SETTINGS
@given(case=spike_cases)
def test_event_driven_convolution_matches_the_reference(case):
    x, weight, bias = make_spike_conv(case)
    y = spike_conv2d_forward(x, weight, bias, case["padding"])
    expected = reference.conv2d(x, weight, bias, (1, 1), case["padding"], (1, 1), 1)
    assert y.dtype == np.float32 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.sqrt(weight[0].size))


@SETTINGS
@given(case=spike_cases)
def test_event_driven_weight_gradient_matches_the_reference(case):
    x, weight, _ = make_spike_conv(case)
    out_shape = spike_conv2d_forward(x, weight, None, case["padding"]).shape
    grad_y = np.random.default_rng(case["seed"] + 1).normal(size=out_shape).astype(np.float32)
    grad_weight = spike_conv2d_weight_grad(x, weight.shape, grad_y, case["padding"])
    expected = weight_grad_reference(x, grad_y, *case["kernel"], case["padding"])
    assert grad_weight.dtype == np.float32 and grad_weight.shape == weight.shape
    np.testing.assert_allclose(grad_weight, expected, rtol=1e-5, atol=1e-5 * np.sqrt(grad_y[:, 0].size))


@SETTINGS
@given(case=spike_cases)
def test_channels_last_input_gradient_matches_the_reference(case):
    _, weight, _ = make_spike_conv(case)
    shape = (case["batch"], case["channels"], *case["size"])
    out_shape = (case["batch"], case["out"], *(conv2d_output_size(n, k, 1, p, 1) for n, k, p in zip(
        case["size"], case["kernel"], case["padding"])))
    grad_y = np.random.default_rng(case["seed"] + 1).normal(size=out_shape).astype(np.float32)
    grad_x = spike_conv2d_input_grad(weight, grad_y, shape, case["padding"])
    expected = input_grad_reference(weight, grad_y, shape, (1, 1), case["padding"], (1, 1), 1)
    assert grad_x.dtype == np.float32 and grad_x.shape == shape
    np.testing.assert_allclose(grad_x, expected, rtol=1e-5, atol=1e-5 * np.sqrt(weight[:, 0].size))


def spikes_and_weight(seed=3, batch=37):
    rng = np.random.default_rng(seed)
    x = (rng.random((batch, 6, 9, 7)) < 0.2).astype(np.float32)
    return x, rng.normal(size=(12, 6, 3, 3)).astype(np.float32), rng.normal(size=12).astype(np.float32)


def test_an_images_output_and_input_gradient_do_not_depend_on_its_batch():
    x, weight, bias = spikes_and_weight()
    whole = spike_conv2d_forward(x, weight, bias, (1, 1))
    assert np.array_equal(spike_conv2d_forward(x[5:6], weight, bias, (1, 1)), whole[5:6])
    assert np.array_equal(spike_conv2d_forward(x[3:20], weight, bias, (1, 1)), whole[3:20])
    grad_y = np.random.default_rng(4).normal(size=whole.shape).astype(np.float32)
    grad_x = spike_conv2d_input_grad(weight, grad_y, x.shape, (1, 1))
    assert np.array_equal(spike_conv2d_input_grad(weight, grad_y[7:9], x[7:9].shape, (1, 1)), grad_x[7:9])


def test_event_driven_results_do_not_depend_on_the_thread_count():
    x, weight, bias = spikes_and_weight()
    grad_y = np.random.default_rng(5).normal(size=(x.shape[0], 12, 9, 7)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append((spike_conv2d_forward(x, weight, bias, (1, 1)),
                            spike_conv2d_weight_grad(x, weight.shape, grad_y, (1, 1)),
                            spike_conv2d_input_grad(weight, grad_y, x.shape, (1, 1))))
    finally:
        numba.set_num_threads(before)
    for result in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(result, results[0]))


def conv_net(seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return (scale * rng.normal(size=shape)).astype(np.float32)

    neuron = {"beta": 0.5, "v_threshold": 1.0}
    return ir.Graph([
        ir.Input("input", shape=(2, 8, 8)),
        ir.Conv2d("conv1", ("input",), weight=normal(4, 2, 3, 3), bias=normal(4), padding=(1, 1)),
        ir.Neuron("lif1", ("conv1",), **neuron),
        ir.MaxPool2d("pool1", ("lif1",), kernel_size=(2, 2), stride=(2, 2)),
        ir.Conv2d("conv2", ("pool1",), weight=normal(6, 4, 3, 3, scale=0.8), bias=normal(6), padding=(1, 1)),
        ir.Neuron("lif2", ("conv2",), **neuron),
        ir.Conv2d("conv3", ("lif2",), weight=normal(3, 6, 3, 3, scale=0.5), stride=(2, 2)),
        ir.Neuron("lif3", ("conv3",), **neuron),
        ir.Flatten("flat", ("lif3",)),
        ir.Linear("fc", ("flat",), weight=normal(3, 3, scale=2.0)),
        ir.Neuron("lif4", ("fc",), **neuron),
        ir.Readout("output", ("lif4",), mode="rate"),
    ])


def test_spike_tensors_are_the_neurons_outputs_and_their_pooling():
    assert spike_tensors(conv_net()) == {"lif1", "pool1", "lif2", "lif3", "flat", "lif4"}


def test_the_trainer_convolves_spikes_event_driven_with_the_dense_kernels_gradients():
    graph = conv_net()
    x = np.random.default_rng(1).normal(1.0, 1.0, size=(4, 5, 2, 8, 8)).astype(np.float32)
    output, tape = forward_train(graph, x, np.random.default_rng(0), static_input=False)
    # conv1 reads the input, conv3 has stride 2: dense; conv2 reads pooled spikes: event-driven
    assert [tape.records[name][1] for name in ("conv1", "conv2", "conv3")] == [False, True, False]
    spikes = tape.records["conv2"][0].reshape(20, 4, 4, 4)
    assert 0 < np.count_nonzero(spikes) < spikes.size
    grad_y = np.random.default_rng(2).normal(size=(20, 6, 4, 4)).astype(np.float32)
    conv2 = graph["conv2"]
    dense = conv2d_backward(spikes, conv2.weight, grad_y, (1, 1), (1, 1), (1, 1), 1)
    grads: dict[str, np.ndarray] = {}
    (grad_x,) = BACKWARD["Conv2d"](conv2, tape.records["conv2"], grad_y.reshape(4, 5, 6, 4, 4), [True], grads)
    np.testing.assert_allclose(grad_x.reshape(dense[0].shape), dense[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["conv2.weight"], dense[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["conv2.bias"], dense[2], rtol=1e-5, atol=1e-5)
    assert set(backward(graph, tape, np.ones_like(output))) >= {"conv2.weight", "conv2.bias"}


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((2, 3), (0, 2)), ((1, 1), (0, 0)), ((3, 2), (2, 0))])
def test_event_driven_sums_are_the_plain_loops_bit_for_bit(kernel, padding):
    """Listing the events branch-free (kernels/events.py) and adding window rows that fall outside
    the outputs as zeros must keep the plain loops' sums, float32 and in their order: per output
    the window cells (c, i, j) ascending; per weight, 16-image blocks summed image by image,
    positions row by row, then the blocks added in order."""
    rng = np.random.default_rng(5)
    batch, channels, out_channels = 20, 3, 16 + 5
    x = (rng.random((batch, channels, 7, 6)) < 0.3).astype(np.float32)
    x[1::2] *= rng.normal(size=x[1::2].shape).astype(np.float32)  # any values
    x[4] = 0  # an image without events
    x[6, 1] = 1  # a channel of events only
    weight = rng.normal(size=(out_channels, channels, *kernel)).astype(np.float32)
    bias = rng.normal(size=out_channels).astype(np.float32)
    cells = windows(x, *kernel, (1, 1), padding, (1, 1)).astype(np.float32)  # [B, C, kh, kw, H_out, W_out]
    y = np.zeros((batch, out_channels, *cells.shape[4:]), np.float32)
    for c, i, j in np.ndindex(channels, *kernel):
        y = y + cells[:, None, c, i, j] * weight[None, :, c, i, j, None, None]
    assert spike_conv2d_forward(x, weight, bias, padding).tobytes() == (y + bias[:, None, None]).tobytes()
    grad_y = rng.normal(size=y.shape).astype(np.float32)
    blocks = []
    for first in range(0, batch, 16):
        sums = np.zeros(weight.shape, np.float32)
        for b in range(first, min(first + 16, batch)):
            for oy, ox in np.ndindex(*y.shape[2:]):
                sums = sums + grad_y[b, :, oy, ox, None, None, None] * cells[b, None, :, :, :, oy, ox]
        blocks.append(sums)
    expected = blocks[0]
    for sums in blocks[1:]:
        expected = expected + sums
    assert spike_conv2d_weight_grad(x, weight.shape, grad_y, padding).tobytes() == expected.tobytes()
