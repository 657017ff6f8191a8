"""A plain, slow, obviously correct numpy reference of every IR node, for tests.

Stateless layers compute in float64 straight from the IR docstrings, with
explicit loops over output positions. The neuron follows the Neuron docstring
in float32, one time step at a time (the order of float32 operations is part of
its definition). Nothing here is shared with the kernels.
"""

from __future__ import annotations

import numpy as np

from onnx_snn_compress import ir


def linear(x, weight, bias):
    """``[B, in] -> [B, out]``: ``Y = X @ W.T + b``."""
    x = np.asarray(x, np.float64)
    y = np.zeros((x.shape[0], weight.shape[0]))
    for b in range(x.shape[0]):
        for o in range(weight.shape[0]):
            y[b, o] = np.dot(x[b], weight[o].astype(np.float64))
    if bias is not None:
        y += bias
    return y


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """``[B, C, H, W] -> [B, O, H_out, W_out]``, cross-correlation with zero padding."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = np.zeros((batch, channels, height + 2 * ph, width + 2 * pw))
    padded[:, :, ph:ph + height, pw:pw + width] = x
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out_per_group = out_channels // groups
    y = np.zeros((batch, out_channels, out_h, out_w))
    for o in range(out_channels):
        group = o // out_per_group
        channels_in = slice(group * in_per_group, (group + 1) * in_per_group)
        for oy in range(out_h):
            for ox in range(out_w):
                rows = oy * sh + dh * np.arange(kh)
                cols = ox * sw + dw * np.arange(kw)
                window = padded[:, channels_in][:, :, rows][:, :, :, cols]
                y[:, o, oy, ox] = (window * weight[o]).sum(axis=(1, 2, 3))
        if bias is not None:
            y[:, o] += bias[o]
    return y


def batchnorm(x, weight, bias, running_mean, running_var, eps):
    """Inference mode over the channel axis 1 of ``[B, C]`` or ``[B, C, H, W]``."""
    x = np.asarray(x, np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = running_mean.reshape(shape).astype(np.float64), running_var.reshape(shape).astype(np.float64)
    return (x - mean) / np.sqrt(var + np.float64(eps)) * weight.reshape(shape) + bias.reshape(shape)


def _pool(x, kernel_size, stride, padding, pad_value, reduce):
    x = np.asarray(x, np.float64)
    batch, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    padded = np.full((batch, channels, height + 2 * ph, width + 2 * pw), pad_value)
    padded[:, :, ph:ph + height, pw:pw + width] = x
    inside = np.zeros(padded.shape[2:])
    inside[ph:ph + height, pw:pw + width] = 1
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    y = np.zeros((batch, channels, out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            rows = slice(oy * sh, oy * sh + kh)
            cols = slice(ox * sw, ox * sw + kw)
            y[:, :, oy, ox] = reduce(padded[:, :, rows, cols], inside[rows, cols])
    return y


def maxpool2d(x, kernel_size, stride, padding):
    return _pool(x, kernel_size, stride, padding, -np.inf, lambda window, inside: window.max(axis=(2, 3)))


def avgpool2d(x, kernel_size, stride, padding, count_include_pad):
    def average(window, inside):
        count = inside.size if count_include_pad else inside.sum()
        return window.sum(axis=(2, 3)) / count

    return _pool(x, kernel_size, stride, padding, 0.0, average)


def neuron(x, node: ir.Neuron):
    """``[T, M]`` float32 -> (spikes ``[T, M]``, pre-reset potential H ``[T, M]``), in float32."""
    f32 = np.float32
    beta, gain = f32(node.beta), f32(node.gain)
    v_threshold, v_reset, v_leak = f32(node.v_threshold), f32(node.v_reset), f32(node.v_leak)
    leak = (f32(1) - beta) * v_leak

    def reset(potential, spikes):
        if node.reset == "subtract":
            return potential - v_threshold * spikes
        if node.reset == "hard":
            return spikes * v_reset + (f32(1) - spikes) * potential
        return potential

    x = np.asarray(x)
    assert x.dtype == np.float32
    v = np.full(x.shape[1], f32(node.v_init), dtype=np.float32)
    s_previous = np.zeros(x.shape[1], dtype=np.float32)
    spikes, potentials = [], []
    for t in range(x.shape[0]):
        d = beta * v + leak
        if node.reset_delay:
            d = reset(d, s_previous)
        h = d + gain * x[t]
        s = (h >= v_threshold if node.fire_on_equal else h > v_threshold).astype(np.float32)
        v = h if node.reset_delay else reset(h, s)
        s_previous = s
        spikes.append(s)
        potentials.append(h)
        assert h.dtype == np.float32 and v.dtype == np.float32
    return np.stack(spikes), np.stack(potentials)


def readout(x, mode, beta):
    """``[T, N, C]`` -> ``[N, C]`` (rate, leaky) or ``[T, N, C]`` (spikes)."""
    x = np.asarray(x, np.float64)
    if mode == "spikes":
        return x
    if mode == "rate":
        return x.mean(axis=0)
    u = np.zeros(x.shape[1:])
    trace = []
    for t in range(x.shape[0]):
        u = beta * u + x[t]
        trace.append(u)
    return np.mean(trace, axis=0)


def node_forward(node: ir.Node, inputs: list[np.ndarray]) -> np.ndarray:
    """One node on ``[T, N, *shape]`` float32 tensors; stateless nodes one time step at a time."""
    if isinstance(node, ir.Neuron):
        (x,) = inputs
        spikes, _ = neuron(x.reshape(x.shape[0], -1), node)
        return spikes.reshape(x.shape)
    if isinstance(node, ir.Readout):
        return readout(inputs[0], node.mode, node.beta).astype(np.float32)
    steps = []
    for t in range(inputs[0].shape[0]):
        step = [x[t] for x in inputs]
        if isinstance(node, ir.Linear):
            y = linear(step[0], node.weight, node.bias)
        elif isinstance(node, ir.Conv2d):
            y = conv2d(step[0], node.weight, node.bias, node.stride, node.padding, node.dilation, node.groups)
        elif isinstance(node, ir.BatchNorm):
            y = batchnorm(step[0], node.weight, node.bias, node.running_mean, node.running_var, node.eps)
        elif isinstance(node, ir.MaxPool2d):
            y = maxpool2d(step[0], node.kernel_size, node.stride, node.padding)
        elif isinstance(node, ir.AvgPool2d):
            y = avgpool2d(step[0], node.kernel_size, node.stride, node.padding, node.count_include_pad)
        elif isinstance(node, ir.Flatten):
            y = step[0].reshape(step[0].shape[0], -1)
        elif isinstance(node, ir.Add):
            y = step[0].astype(np.float64) + step[1]
        elif isinstance(node, ir.Dropout):
            y = step[0]
        else:
            raise NotImplementedError(node.kind)
        steps.append(np.asarray(y).astype(np.float32))
    return np.stack(steps)


def simulate(graph: ir.Graph, x: np.ndarray):
    """Run a whole graph: returns (readout output, {neuron name: spike counts of per-sample shape})."""
    values = {graph.input.name: np.asarray(x, np.float32)}
    spike_counts = {}
    for node in graph.nodes[1:]:
        values[node.name] = node_forward(node, [values[s] for s in node.inputs])
        if isinstance(node, ir.Neuron):
            spike_counts[node.name] = values[node.name].sum(axis=(0, 1)).astype(np.int64)
    return values[graph.readout.name], spike_counts
