"""2-D convolution (cross-correlation, as PyTorch and ONNX) over ``[B, C, H, W]``, float32.

Forward is im2col + one BLAS GEMM per image and group. Every GEMM has the same
shape whatever the batch size, so an image's output never depends on how many
images share a call (BLAS sums in a shape-dependent order, and one ulp can flip
a spike downstream). A direct loop serves grouped convolutions, where the
per-group GEMMs would be too small to pay for their calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Upper bound on one im2col buffer, in float32 elements (64 MiB).
_COLUMNS_BUDGET = 16 * 1024 * 1024


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@njit(cache=True, parallel=True)
def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """``[B, C, H, W] -> [B, C*kh*kw, out_h*out_w]``; rows ordered (c, i, j), zeros where padded."""
    batch, channels, height, width = x.shape
    columns = np.zeros((batch, channels * kh * kw, out_h * out_w), dtype=np.float32)
    for item in prange(batch * channels):
        b = item // channels
        c = item % channels
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oy in range(out_h):
                    y = oy * sh - ph + i * dh
                    if y < 0 or y >= height:
                        continue
                    base = oy * out_w
                    for ox in range(out_w):
                        xx = ox * sw - pw + j * dw
                        if 0 <= xx < width:
                            columns[b, row, base + ox] = x[b, c, y, xx]
    return columns


@njit(cache=True, parallel=True)
def conv2d_direct_forward(x, weight, bias, sh, sw, ph, pw, dh, dw, groups, out_h, out_w):
    """Direct convolution, any groups: ``[B, C, H, W] -> [B, O, out_h, out_w]``.

    Each output sums over (c, i, j) in order, then adds the bias (zero-length
    ``bias`` means none).
    """
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    out_per_group = out_channels // groups
    y = np.zeros((batch, out_channels, out_h, out_w), dtype=np.float32)
    for item in prange(batch * out_channels):
        b = item // out_channels
        o = item % out_channels
        first_channel = (o // out_per_group) * in_per_group
        for c in range(in_per_group):
            for i in range(kh):
                for j in range(kw):
                    w = weight[o, c, i, j]
                    for oy in range(out_h):
                        yy = oy * sh - ph + i * dh
                        if yy < 0 or yy >= height:
                            continue
                        for ox in range(out_w):
                            xx = ox * sw - pw + j * dw
                            if 0 <= xx < width:
                                y[b, o, oy, ox] += w * x[b, first_channel + c, yy, xx]
        if bias.shape[0] > 0:
            for oy in range(out_h):
                for ox in range(out_w):
                    y[b, o, oy, ox] += bias[o]
    return y


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """``Y = conv2d(X, weight) + bias`` for float32 ``x`` ``[B, C, H, W]``.

    weight ``[O, C // groups, kh, kw]``; bias ``[O]`` or None; stride, padding,
    dilation pairs of ints. Returns float32 ``[B, O, H_out, W_out]``.
    """
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h = conv2d_output_size(height, kh, sh, ph, dh)
    out_w = conv2d_output_size(width, kw, sw, pw, dw)
    if groups > 1:
        no_bias = np.zeros(0, dtype=np.float32)
        return conv2d_direct_forward(
            x, weight, no_bias if bias is None else bias,
            sh, sw, ph, pw, dh, dw, groups, out_h, out_w,
        )

    rows = channels * kh * kw
    plane = out_h * out_w
    kernel = weight.reshape(out_channels, rows)
    y = np.empty((batch, out_channels, plane), dtype=np.float32)
    pointwise = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)
    chunk = max(1, _COLUMNS_BUDGET // max(1, rows * plane))
    for start in range(0, batch, chunk):
        part = x[start:start + chunk]
        if pointwise:
            columns = part.reshape(part.shape[0], channels, plane)
        else:
            columns = im2col(part, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w)
        np.matmul(kernel, columns, out=y[start:start + chunk])
    if bias is not None:
        y += bias[None, :, None]
    return y.reshape(batch, out_channels, out_h, out_w)
