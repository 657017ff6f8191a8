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
