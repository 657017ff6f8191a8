"""2-D convolution (cross-correlation, as PyTorch and ONNX) over ``[B, C, H, W]``, float32.

Forward is im2col + one BLAS GEMM per image and group, all inside one parallel
loop over images: each thread unfolds an image into its own cache-sized buffer
and multiplies it there. Two consequences matter:

- every GEMM has the same shape whatever the batch size, so an image's output
  never depends on how many images share a call (BLAS sums in a shape-dependent
  order, and one ulp can flip a spike downstream);
- BLAS is called from Numba's threads, not from numpy between parallel
  regions, so BLAS worker threads never spin against Numba's on a small machine
  (that cost several times the whole convolution on 2 cores).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blas import KERNEL_GEMM


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@njit(cache=True)
def im2col_image(x, first_channel, channels, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, columns):
    """Unfold channels ``[first_channel, first_channel + channels)`` of one image ``[C, H, W]``
    into ``columns`` ``[channels*kh*kw, out_h*out_w]``: rows ordered (c, i, j), padded cells zero."""
    height, width = x.shape[1], x.shape[2]
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oy in range(out_h):
                    yy = oy * sh - ph + i * dh
                    base = oy * out_w
                    inside_rows = 0 <= yy < height
                    for ox in range(out_w):
                        xx = ox * sw - pw + j * dw
                        if inside_rows and 0 <= xx < width:
                            columns[row, base + ox] = x[first_channel + c, yy, xx]
                        else:
                            columns[row, base + ox] = np.float32(0.0)


@njit(cache=True, parallel=True)
def _conv2d_forward_kernel(x, weight, bias, sh, sw, ph, pw, dh, dw, groups, pointwise, y):
    batch = x.shape[0]
    out_channels, in_per_group, kh, kw = weight.shape
    out_h, out_w = y.shape[2], y.shape[3]
    plane = out_h * out_w
    rows = in_per_group * kh * kw
    out_per_group = out_channels // groups
    kernel = weight.reshape(out_channels, rows)
    for b in prange(batch):
        columns = np.empty((rows, plane), dtype=np.float32)
        out = y[b].reshape(out_channels, plane)
        for g in range(groups):
            first = g * out_per_group
            if pointwise:
                columns[:, :] = x[b, g * in_per_group:(g + 1) * in_per_group].reshape(rows, plane)
            else:
                im2col_image(x[b], g * in_per_group, in_per_group, kh, kw, sh, sw, ph, pw, dh, dw,
                             out_h, out_w, columns)
            np.dot(kernel[first:first + out_per_group], columns, out[first:first + out_per_group])
        if bias.shape[0] > 0:
            for o in range(out_channels):
                for p in range(plane):
                    out[o, p] += bias[o]


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """``Y = conv2d(X, weight) + bias`` for float32 ``x`` ``[B, C, H, W]``.

    weight ``[O, C // groups, kh, kw]``; bias ``[O]`` or None; stride, padding,
    dilation pairs of ints. Returns float32 ``[B, O, H_out, W_out]``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    out_channels, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h = conv2d_output_size(x.shape[2], kh, sh, ph, dh)
    out_w = conv2d_output_size(x.shape[3], kw, sw, pw, dw)
    pointwise = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)
    bias = np.zeros(0, dtype=np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    # numpy allocates (huge pages for large outputs); the kernel fills every cell.
    y = np.empty((x.shape[0], out_channels, out_h, out_w), dtype=np.float32)
    _conv2d_forward_kernel(x, weight, bias, int(sh), int(sw), int(ph), int(pw), int(dh), int(dw),
                           int(groups), pointwise, y)
    return y


# -- backward --------------------------------------------------------------------------
#
# Per group, with U the unfolded (im2col) input of a block of images ``[rows, positions]``
# and G the gathered dL/dY of the group's outputs ``[O_g, positions]``:
#
#     dL/dW_g  += G @ U.T                 (GEMMs summed over the block's position chunks)
#     dL/dU     = W_g.T @ G;  dL/dX = col2im(dL/dU)   (the adjoint of im2col: scatter-add)
#     dL/db     = sum over images and positions of dL/dY
#
# Edge-sized layers have tiny images (a 4x4 plane unfolds into 16 positions), so unfolding
# image by image moves data in runs of a few floats and costs more than the GEMMs. Here a
# block of images is first laid out batch-innermost and zero-padded, ``[C, Hp, Wp, images]``:
# a position's window cell is then a contiguous run over the block's images, so unfolding
# and folding back move whole runs whatever the stride and dilation. The positions are
# taken in chunks of at most KERNEL_GEMM multiply-adds per GEMM (kernels/blas.py).
# Blocks are fixed by the batch (not by the thread count), each sums its own weight
# gradient, and the blocks are added in order: the result does not depend on the number
# of threads.

_BLOCK_IMAGES = 32  # measured best on the digits sample's layers (8 to 128 tried)


@njit(cache=True, parallel=True)
def _conv2d_backward_kernel(x, weight, grad_y, sh, sw, ph, pw, dh, dw, groups, block_images,
                            chunk_positions, need_input_grad, grad_x, partial_weight):
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    out_h, out_w = grad_y.shape[2], grad_y.shape[3]
    plane = out_h * out_w
    rows = in_per_group * kh * kw
    out_per_group = out_channels // groups
    kernel = weight.reshape(out_channels, rows)
    blocks = partial_weight.shape[0]
    for block in prange(blocks):
        start = block * block_images
        images = min(block_images, batch - start)
        # the block, batch-innermost and zero-padded: padded[c, ph + y, pw + k, b] = x[start + b, c, y, k]
        padded = np.zeros((channels, height + 2 * ph, width + 2 * pw, images), dtype=np.float32)
        for c in range(channels):
            for y in range(height):
                for k in range(width):
                    cell = padded[c, ph + y, pw + k]
                    for b in range(images):
                        cell[b] = x[start + b, c, y, k]
        grad_padded = np.zeros(padded.shape if need_input_grad else (0, 0, 0, 0), dtype=np.float32)
        # flat buffers: a chunk's matrices are contiguous prefixes, whatever its length
        unfolded_values = np.empty(rows * chunk_positions * images, dtype=np.float32)
        gathered_values = np.empty(out_per_group * chunk_positions * images, dtype=np.float32)
        grad_values = np.empty(rows * chunk_positions * images if need_input_grad else 0, dtype=np.float32)
        product = np.empty((out_per_group, rows), dtype=np.float32)
        partial_weight[block] = np.float32(0.0)
        outputs = grad_y[start:start + images].reshape(images, out_channels, plane)
        for g in range(groups):
            first = g * out_per_group
            for p_first in range(0, plane, chunk_positions):
                p_last = min(p_first + chunk_positions, plane)
                size = (p_last - p_first) * images
                unfolded = unfolded_values[:rows * size].reshape(rows, size)
                gathered = gathered_values[:out_per_group * size].reshape(out_per_group, size)
                for c in range(in_per_group):
                    for i in range(kh):
                        for j in range(kw):
                            target = unfolded[(c * kh + i) * kw + j]
                            for q in range(p_last - p_first):
                                p = p_first + q
                                source = padded[g * in_per_group + c, (p // out_w) * sh + i * dh,
                                                (p % out_w) * sw + j * dw]
                                for b in range(images):
                                    target[q * images + b] = source[b]
                # gathered[o, (p - p_first) * images + b] = dL/dY[start + b, first + o, p]: written
                # in order, the reads cycle over one cache line per image, which stay in L1
                for o in range(out_per_group):
                    target = gathered[o]
                    for q in range(p_last - p_first):
                        for b in range(images):
                            target[q * images + b] = outputs[b, first + o, p_first + q]
                np.dot(gathered, unfolded.T, product)
                partial_weight[block, first:first + out_per_group] += product
                if need_input_grad:
                    grad_unfolded = grad_values[:rows * size].reshape(rows, size)
                    np.dot(kernel[first:first + out_per_group].T, gathered, grad_unfolded)
                    for c in range(in_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                source = grad_unfolded[(c * kh + i) * kw + j]
                                for q in range(p_last - p_first):
                                    p = p_first + q
                                    target = grad_padded[g * in_per_group + c, (p // out_w) * sh + i * dh,
                                                         (p % out_w) * sw + j * dw]
                                    for b in range(images):
                                        target[b] += source[q * images + b]
        if need_input_grad:
            for b in range(images):
                for c in range(channels):
                    for y in range(height):
                        for k in range(width):
                            grad_x[start + b, c, y, k] = grad_padded[c, ph + y, pw + k, b]


def conv2d_backward(x, weight, grad_y, stride, padding, dilation, groups, need_input_grad=True,
                    need_bias_grad=True):
    """Gradients of :func:`conv2d_forward` given dL/dY ``[B, O, H_out, W_out]``.

    x ``[B, C, H, W]`` (the forward's input), weight ``[O, C // groups, kh, kw]``. Returns
    ``(grad_x or None, grad_weight, grad_bias or None)``, float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
    out_channels, in_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    # every GEMM is [O_g, rows] x [rows or O_g, chunk_positions * images]: keep M*N*K in bound
    gemm_per_column = (out_channels // groups) * in_per_group * kh * kw
    block_images = int(max(1, min(_BLOCK_IMAGES, KERNEL_GEMM // gemm_per_column)))
    chunk_positions = int(max(1, KERNEL_GEMM // (gemm_per_column * block_images)))
    blocks = -(-x.shape[0] // block_images)
    partial_weight = np.empty((blocks, out_channels, in_per_group * kh * kw), dtype=np.float32)
    grad_x = np.empty(x.shape if need_input_grad else (0, *x.shape[1:]), dtype=np.float32)
    _conv2d_backward_kernel(x, weight, grad_y, int(sh), int(sw), int(ph), int(pw), int(dh), int(dw),
                            int(groups), block_images, chunk_positions, bool(need_input_grad), grad_x,
                            partial_weight)
    grad_weight = partial_weight[0].copy()
    for block in range(1, blocks):
        grad_weight += partial_weight[block]
    grad_bias = grad_y.sum(axis=(0, 2, 3), dtype=np.float32) if need_bias_grad else None
    return (grad_x if need_input_grad else None), grad_weight.reshape(weight.shape), grad_bias
