"""Event-driven 2-D convolution for sparse inputs (spike trains), float32, stride 1, one group.

Where the input of a convolution is a neuron's spikes (0/1, 13-20 % ones on the MNIST
conv net), most of a dense im2col + GEMM multiplies zeros. Here only the nonzero inputs
("events") do work. An image's output is accumulated channels-last, ``acc[oy, ox, :]``,
and the weight is stored with the output channels last and the window columns reversed,
``W_r[c, i, kw-1-j, :] = weight[:, c, i, j]``. With stride 1 and dilation 1 an event
``x[c, y, x] = v`` reaches, through window row i, the outputs ``oy = y + ph - i`` and
``ox = x + pw - j``; as j goes down ox goes up, so the whole window row is one contiguous
run of ``kw * O`` floats in both ``acc`` and ``W_r``:

    forward   acc[oy, ox0:ox0+kw, :] += v * W_r[c, i, :, :]          (ox0 = x + pw - kw + 1)
    dL/dW     dW_r[c, i, :, :]       += v * dL/dY_t[oy, ox0:ox0+kw, :]  (dL/dY channels-last)

cut at the image's edges. That is ``events * kh`` vector loops of ``kw * O`` floats (96 for
3x3 and 32 channels) instead of ``C * kh * kw * O * positions`` multiply-adds: about 4x less
work at 20 % ones.

Zero inputs contribute exactly nothing, so the result is the convolution of any input (not
only 0/1), summed in another order than the GEMM's: for each output, the events in (c, y, x)
order, each window row of an event once. That order is fixed by the data; each image is summed
by one thread, and the weight gradient in blocks of images fixed by the batch, added in
order: results depend neither on the thread count nor on the other images of a batch. The
input gradient is dense (every input needs one) and stays with
:func:`onnx_snn_compress.kernels.conv.conv2d_backward`. Dense inputs are slower this way (every
event pays its loop's overhead): callers use it where the input is spikes
(:func:`use_spike_conv`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv import conv2d_output_size

# Images whose weight-gradient contributions one partial sum collects (fixed by the batch,
# never by the thread count).
_BLOCK_IMAGES = 16


def use_spike_conv(stride, dilation, groups) -> bool:
    """Whether a convolution's geometry is one this module computes (stride 1, dilation 1, one group)."""
    return tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1


def _reversed_rows(weight):
    """``[O, C, kh, kw]`` -> ``W_r`` ``[C, kh, kw, O]`` with the window columns reversed."""
    return np.ascontiguousarray(np.transpose(weight[:, :, :, ::-1], (1, 2, 3, 0)), dtype=np.float32)


@njit(cache=True, parallel=True)
def _spike_conv2d_forward_kernel(x, weight_r, bias, ph, pw, y):
    batch, channels, height, width = x.shape
    _, kh, kw, out_channels = weight_r.shape
    out_h, out_w = y.shape[2], y.shape[3]
    plane = out_h * out_w
    weights = weight_r.reshape(-1)
    for b in prange(batch):
        acc = np.zeros(plane * out_channels, dtype=np.float32)
        image = x[b]
        for c in range(channels):
            for yy in range(height):
                for xx in range(width):
                    value = image[c, yy, xx]
                    if value == 0:
                        continue
                    ox0 = xx + pw - kw + 1
                    j_first, j_last = max(0, -ox0), min(kw, out_w - ox0)
                    run = (j_last - j_first) * out_channels
                    for i in range(kh):
                        oy = yy + ph - i
                        if oy < 0 or oy >= out_h or run <= 0:
                            continue
                        target_first = (oy * out_w + ox0 + j_first) * out_channels
                        source_first = ((c * kh + i) * kw + j_first) * out_channels
                        target = acc[target_first:target_first + run]
                        source = weights[source_first:source_first + run]
                        for k in range(run):
                            target[k] += value * source[k]
        out = y[b].reshape(out_channels, plane)
        for o in range(out_channels):
            row = out[o]
            for p in range(plane):  # contiguous writes: 3x faster than contiguous reads here
                row[p] = acc[p * out_channels + o]
            if bias.shape[0] > 0:
                for p in range(plane):
                    row[p] += bias[o]


def spike_conv2d_forward(x, weight, bias, padding):
    """``Y = conv2d(X, weight) + bias`` (stride 1, dilation 1, one group) for float32 ``x``
    ``[B, C, H, W]``, event-driven.

    weight ``[O, C, kh, kw]``; bias ``[O]`` or None; padding a pair of ints. Returns float32
    ``[B, O, H_out, W_out]``: the convolution of ``x`` whatever its values, fast when most
    of them are zero.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out_channels, _, kh, kw = weight.shape
    ph, pw = padding
    out_h = conv2d_output_size(x.shape[2], kh, 1, ph, 1)
    out_w = conv2d_output_size(x.shape[3], kw, 1, pw, 1)
    bias = np.zeros(0, dtype=np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    y = np.empty((x.shape[0], out_channels, out_h, out_w), dtype=np.float32)
    _spike_conv2d_forward_kernel(x, _reversed_rows(weight), bias, int(ph), int(pw), y)
    return y


@njit(cache=True, parallel=True)
def _spike_conv2d_weight_grad_kernel(x, grad_y, kh, kw, ph, pw, block_images, partial):
    batch, channels, height, width = x.shape
    out_channels, out_h, out_w = grad_y.shape[1], grad_y.shape[2], grad_y.shape[3]
    plane = out_h * out_w
    for block in prange(partial.shape[0]):
        sums = partial[block].reshape(-1)
        sums[:] = np.float32(0.0)
        grad_t = np.empty(plane * out_channels, dtype=np.float32)  # dL/dY of one image, channels-last
        for b in range(block * block_images, min(batch, (block + 1) * block_images)):
            grad_image = grad_y[b].reshape(out_channels, plane)
            for o in range(out_channels):
                row = grad_image[o]
                for p in range(plane):
                    grad_t[p * out_channels + o] = row[p]
            image = x[b]
            for c in range(channels):
                for yy in range(height):
                    for xx in range(width):
                        value = image[c, yy, xx]
                        if value == 0:
                            continue
                        ox0 = xx + pw - kw + 1
                        j_first, j_last = max(0, -ox0), min(kw, out_w - ox0)
                        run = (j_last - j_first) * out_channels
                        for i in range(kh):
                            oy = yy + ph - i
                            if oy < 0 or oy >= out_h or run <= 0:
                                continue
                            source_first = (oy * out_w + ox0 + j_first) * out_channels
                            target_first = ((c * kh + i) * kw + j_first) * out_channels
                            target = sums[target_first:target_first + run]
                            source = grad_t[source_first:source_first + run]
                            for k in range(run):
                                target[k] += value * source[k]


def spike_conv2d_weight_grad(x, weight_shape, grad_y, padding):
    """dL/dweight ``[O, C, kh, kw]`` of :func:`spike_conv2d_forward` given its input x
    ``[B, C, H, W]`` and dL/dY ``[B, O, H_out, W_out]``, float32, event-driven."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    out_channels, channels, kh, kw = weight_shape
    ph, pw = padding
    blocks = -(-x.shape[0] // _BLOCK_IMAGES)
    partial = np.empty((blocks, channels, kh, kw, out_channels), dtype=np.float32)
    _spike_conv2d_weight_grad_kernel(x, grad_y, int(kh), int(kw), int(ph), int(pw), _BLOCK_IMAGES, partial)
    grad_weight_r = partial[0].copy()
    for block in range(1, blocks):
        grad_weight_r += partial[block]
    return np.ascontiguousarray(np.transpose(grad_weight_r, (3, 0, 1, 2))[:, :, :, ::-1])
