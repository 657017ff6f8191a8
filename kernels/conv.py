"""2-D convolution (cross-correlation, as PyTorch and ONNX) over ``[B, C, H, W]``, float32.

Forward is im2col + one BLAS GEMM per image and group. Every GEMM has the same
shape whatever the batch size, so an image's output never depends on how many
images share a call (BLAS sums in a shape-dependent order, and one ulp can flip
a spike downstream). A direct loop serves grouped convolutions with few inputs
per group (depthwise), where the per-group GEMMs would be too small to pay.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Upper bound on one im2col buffer, in float32 elements (1 MiB): images pass
# through im2col and GEMM a few at a time, while their columns are still in cache.
_COLUMNS_BUDGET = 256 * 1024
# Grouped convolutions whose groups see fewer inputs per output (in_per_group *
# kh * kw) than this run the direct loop: such GEMMs are too small to pay.
_GEMM_MIN_ROWS = 32


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@njit(cache=True, parallel=True)
def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, columns):
    """``[B, C, H, W]`` into ``columns[:B]`` ``[B, C*kh*kw, out_h*out_w]``.

    Rows are ordered (c, i, j); padded cells are written as zeros, so
    ``columns`` may be reused uninitialised.
    """
    batch, channels, height, width = x.shape
    for item in prange(batch * channels):
        b = item // channels
        c = item % channels
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oy in range(out_h):
                    y = oy * sh - ph + i * dh
                    base = oy * out_w
                    inside_rows = 0 <= y < height
                    for ox in range(out_w):
                        xx = ox * sw - pw + j * dw
                        if inside_rows and 0 <= xx < width:
                            columns[b, row, base + ox] = x[b, c, y, xx]
                        else:
                            columns[b, row, base + ox] = np.float32(0.0)


def conv2d_direct_forward(x, weight, bias, sh, sw, ph, pw, dh, dw, groups, out_h, out_w):
    """Direct convolution, any groups: ``[B, C, H, W] -> [B, O, out_h, out_w]``.

    Each output sums over (c, i, j) in order, then adds the bias (zero-length
    ``bias`` means none).
    """
    y = np.empty((x.shape[0], weight.shape[0], out_h, out_w), dtype=np.float32)
    _conv2d_direct_kernel(x, weight, bias, sh, sw, ph, pw, dh, dw, groups, y)
    return y


@njit(cache=True, parallel=True)
def _conv2d_direct_kernel(x, weight, bias, sh, sw, ph, pw, dh, dw, groups, y):
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    out_h, out_w = y.shape[2], y.shape[3]
    out_per_group = out_channels // groups
    for item in prange(batch * out_channels):
        b = item // out_channels
        o = item % out_channels
        y[b, o] = np.float32(0.0)
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


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """``Y = conv2d(X, weight) + bias`` for float32 ``x`` ``[B, C, H, W]``.

    weight ``[O, C // groups, kh, kw]``; bias ``[O]`` or None; stride, padding,
    dilation pairs of ints. Returns float32 ``[B, O, H_out, W_out]``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch, channels, height, width = x.shape
    out_channels, in_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h = conv2d_output_size(height, kh, sh, ph, dh)
    out_w = conv2d_output_size(width, kw, sw, pw, dw)
    rows = in_per_group * kh * kw  # of one group's im2col matrix
    if groups > 1 and rows < _GEMM_MIN_ROWS:
        no_bias = np.zeros(0, dtype=np.float32)
        return conv2d_direct_forward(
            x, weight, no_bias if bias is None else bias,
            sh, sw, ph, pw, dh, dw, groups, out_h, out_w,
        )

    plane = out_h * out_w
    out_per_group = out_channels // groups
    kernels = weight.reshape(groups, out_per_group, rows)
    y = np.empty((batch, out_channels, plane), dtype=np.float32)
    pointwise = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)
    chunk = min(batch, max(1, _COLUMNS_BUDGET // (groups * rows * plane)))
    buffer = None if pointwise else np.empty((chunk, groups * rows, plane), dtype=np.float32)
    for start in range(0, batch, chunk):
        part = x[start:start + chunk]
        if pointwise:
            columns = part.reshape(part.shape[0], channels, plane)
        else:
            columns = buffer[:part.shape[0]]
            im2col(part, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, columns)
        for g in range(groups):
            np.matmul(
                kernels[g],
                columns[:, g * rows:(g + 1) * rows],
                out=y[start:start + chunk, g * out_per_group:(g + 1) * out_per_group],
            )
    if bias is not None:
        y += bias[None, :, None]
    return y.reshape(batch, out_channels, out_h, out_w)
