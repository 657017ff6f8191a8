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

That is ``events * kh`` vector loops of ``kw * O`` floats (96 for 3x3 and 32 channels) instead
of ``C * kh * kw * O * positions`` multiply-adds: about 4x less work at 20 % ones. ``acc`` and
``dL/dY_t`` have margins (:func:`_padded_plane`), so no window row is cut at the image's edges:
the forward's rows off the outputs land in the margin, and the weight gradient's read zeros
there. Each input row's events are listed branch-free first (kernels/events.py), and the weight
gradient adds four events of a channel per pass over a window row ``dW_r[c, i]``, one after the
other.

Zero inputs contribute exactly nothing, so the result is the convolution of any input (not
only 0/1), summed in another order than the GEMM's: for each output, the events in (c, y, x)
order, each window row of an event once (the margin's zeros add ``+-0`` to sums that start at
+0.0: no bit changes, for finite inputs). That order is fixed by the data; each image is summed
by one thread, and the weight gradient in blocks of images fixed by the batch, added in
order: results depend neither on the thread count nor on the other images of a batch. The
input gradient is dense (every input needs one): a GEMM per image, folded back channels-last
(:func:`spike_conv2d_input_grad`). Dense inputs are slower this way (every
event pays its loop's overhead): callers use it where the input is spikes
(:func:`use_spike_conv`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv import conv2d_output_size
from .events import nonzero_indices

# Images whose weight-gradient contributions one partial sum collects (fixed by the batch,
# never by the thread count).
_BLOCK_IMAGES = 16


def use_spike_conv(stride, dilation, groups) -> bool:
    """Whether a convolution's geometry is one this module computes (stride 1, dilation 1, one group)."""
    return tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1


def _reversed_rows(weight):
    """``[O, C, kh, kw]`` -> ``W_r`` ``[C, kh, kw, O]`` with the window columns reversed."""
    return np.ascontiguousarray(np.transpose(weight[:, :, :, ::-1], (1, 2, 3, 0)), dtype=np.float32)


@njit(cache=True)
def _padded_plane(height, width, kh, kw, ph, pw, out_h, out_w):
    """``(top, left, rows, columns)`` of a channels-last output plane with room for every window
    row of every input cell: output ``(oy, ox)`` at ``(top + oy, left + ox)``, so that an event at
    ``(y, x)`` reaches rows ``top + y + ph - i`` and columns from ``left + x + pw - kw + 1`` on, all
    inside."""
    top, left = max(0, kh - 1 - ph), max(0, kw - 1 - pw)
    return top, left, top + max(out_h, height + ph), left + max(out_w, width + pw)


@njit(cache=True, parallel=True)
def _spike_conv2d_forward_kernel(x, weight_r, bias, ph, pw, y):
    batch, channels, height, width = x.shape
    _, kh, kw, out_channels = weight_r.shape
    out_h, out_w = y.shape[2], y.shape[3]
    plane = out_h * out_w
    top, left, rows, columns = _padded_plane(height, width, kh, kw, ph, pw, out_h, out_w)
    run = kw * out_channels
    weights = weight_r.reshape(-1)
    for b in prange(batch):
        acc = np.zeros(rows * columns * out_channels, dtype=np.float32)
        events = np.empty(width, dtype=np.int64)
        for c in range(channels):
            for yy in range(height):
                cells = x[b, c, yy]
                for e in range(nonzero_indices(cells, events)):
                    value, xx = cells[events[e]], events[e]
                    for i in range(kh):
                        target_first = ((top + yy + ph - i) * columns + left + xx + pw - kw + 1) * out_channels
                        target = acc[target_first:target_first + run]
                        source = weights[(c * kh + i) * run:(c * kh + i + 1) * run]
                        for k in range(run):
                            target[k] += value * source[k]
        out = y[b].reshape(out_channels, plane)
        for o in range(out_channels):
            row = out[o]
            for oy in range(out_h):  # contiguous writes: 3x faster than contiguous reads here
                first = ((top + oy) * columns + left) * out_channels + o
                for ox in range(out_w):
                    row[oy * out_w + ox] = acc[first + ox * out_channels]
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
    top, left, rows, columns = _padded_plane(height, width, kh, kw, ph, pw, out_h, out_w)
    run = kw * out_channels
    for block in prange(partial.shape[0]):
        sums = partial[block].reshape(-1)
        sums[:] = np.float32(0.0)
        # dL/dY of one image, channels-last and zero outside the outputs (as _padded_plane)
        grad_t = np.zeros(rows * columns * out_channels, dtype=np.float32)
        events = np.empty(height * width, dtype=np.int64)
        starts = np.empty(height * width, dtype=np.int64)
        values = np.empty(height * width, dtype=np.float32)
        for b in range(block * block_images, min(batch, (block + 1) * block_images)):
            for o in range(out_channels):
                grad_plane = grad_y[b, o]
                for oy in range(out_h):
                    first = ((top + oy) * columns + left) * out_channels + o
                    for ox in range(out_w):
                        grad_t[first + ox * out_channels] = grad_plane[oy, ox]
            for c in range(channels):
                # the channel's events in (y, x) order: their values, and where their window
                # row i = 0 starts in grad_t (row i starts i * columns * out_channels before)
                count = 0
                for yy in range(height):
                    cells = x[b, c, yy]
                    found = nonzero_indices(cells, events[count:])
                    for e in range(count, count + found):
                        values[e] = cells[events[e]]
                        starts[e] = ((top + yy + ph) * columns + left + events[e] + pw - kw + 1) * out_channels
                    count += found
                quads = count - count % 4
                for i in range(kh):
                    target = sums[(c * kh + i) * run:(c * kh + i + 1) * run]
                    shift = i * columns * out_channels
                    for e in range(0, quads, 4):
                        g0 = grad_t[starts[e] - shift:starts[e] - shift + run]
                        g1 = grad_t[starts[e + 1] - shift:starts[e + 1] - shift + run]
                        g2 = grad_t[starts[e + 2] - shift:starts[e + 2] - shift + run]
                        g3 = grad_t[starts[e + 3] - shift:starts[e + 3] - shift + run]
                        v0, v1, v2, v3 = values[e], values[e + 1], values[e + 2], values[e + 3]
                        for k in range(run):
                            target[k] = (((target[k] + v0 * g0[k]) + v1 * g1[k]) + v2 * g2[k]) + v3 * g3[k]
                    for e in range(quads, count):
                        value, source = values[e], grad_t[starts[e] - shift:starts[e] - shift + run]
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


# -- input gradient ----------------------------------------------------------------------
#
# Dense (every input needs one), image by image: one BLAS GEMM of the image's dL/dY with the
# weight, positions major, ``dL/dU[p, (i, j, c)] = sum_o dL/dY[o, p] * weight[o, c, i, j]``,
# then the adjoint of the windows: position p = (oy, ox) read the padded input at
# ``(oy + i, ox + j, c)``, so with the input channels-last each window row (i, all j and c)
# is one run of ``kw * C`` floats:
#
#     dL/dX_t[oy + i, ox:ox + kw, :] += dL/dU[p, i, :, :]        (positions p ascending)
#
# (48 floats for 3x3 and 16 channels, where the channels-first fold moved runs of W_out).
# Each input sums its terms in position order; every GEMM has the same shape whatever the
# batch, and each image is one thread's: the result depends neither on the batch nor on
# the thread count.


@njit(cache=True, parallel=True)
def _spike_conv2d_input_grad_kernel(grad_y, weight_t, kh, kw, ph, pw, grad_x):
    batch, channels, height, width = grad_x.shape
    out_channels, out_h, out_w = grad_y.shape[1], grad_y.shape[2], grad_y.shape[3]
    padded_w = width + 2 * pw
    run = kw * channels
    for b in prange(batch):
        grad_windows = np.empty((out_h * out_w, weight_t.shape[1]), dtype=np.float32)
        np.dot(grad_y[b].reshape(out_channels, out_h * out_w).T, weight_t, grad_windows)
        padded = np.zeros((height + 2 * ph) * padded_w * channels, dtype=np.float32)
        for oy in range(out_h):
            for ox in range(out_w):
                window = grad_windows[oy * out_w + ox]
                for i in range(kh):
                    first = ((oy + i) * padded_w + ox) * channels
                    target = padded[first:first + run]
                    source = window[i * run:(i + 1) * run]
                    for k in range(run):
                        target[k] += source[k]
        image = grad_x[b]
        for c in range(channels):
            for yy in range(height):
                first = ((yy + ph) * padded_w + pw) * channels + c
                for xx in range(width):  # contiguous writes
                    image[c, yy, xx] = padded[first + xx * channels]


def spike_conv2d_input_grad(weight, grad_y, input_shape, padding):
    """dL/dX ``[B, C, H, W]`` (``input_shape``) of :func:`spike_conv2d_forward` given dL/dY
    ``[B, O, H_out, W_out]`` (stride 1, dilation 1, one group), float32, image by image."""
    out_channels, channels, kh, kw = weight.shape
    ph, pw = padding
    weight_t = np.ascontiguousarray(np.transpose(weight, (0, 2, 3, 1)).reshape(out_channels, kh * kw * channels),
                                    dtype=np.float32)
    grad_x = np.empty(tuple(input_shape), dtype=np.float32)
    _spike_conv2d_input_grad_kernel(np.ascontiguousarray(grad_y, dtype=np.float32), weight_t, int(kh), int(kw),
                                    int(ph), int(pw), grad_x)
    return grad_x
