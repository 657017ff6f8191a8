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


# -- backward --------------------------------------------------------------------------
#
# Per image and group, with C the image's im2col columns ``[rows, P]`` and G = dL/dY
# of the group's outputs ``[O_g, P]``:
#
#     dL/dW_g  += G @ C.T               (summed over images)
#     dL/dC     = W_g.T @ G;  dL/dX = col2im(dL/dC)   (the adjoint of im2col: scatter-add)
#     dL/db     = sum over images and positions of dL/dY
#
# Images are cut into fixed slices (not one per thread), each summing its own weight
# gradient; the slices are added in order, so the result does not depend on the thread count.

_SLICES = 8


@njit(cache=True)
def col2im_image(columns, first_channel, channels, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, x):
    """Add ``columns`` ``[channels*kh*kw, out_h*out_w]`` back into channels
    ``[first_channel, first_channel + channels)`` of one image ``[C, H, W]`` (padded cells dropped)."""
    height, width = x.shape[1], x.shape[2]
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oy in range(out_h):
                    yy = oy * sh - ph + i * dh
                    if yy < 0 or yy >= height:
                        continue
                    base = oy * out_w
                    for ox in range(out_w):
                        xx = ox * sw - pw + j * dw
                        if 0 <= xx < width:
                            x[first_channel + c, yy, xx] += columns[row, base + ox]


@njit(cache=True, parallel=True)
def _conv2d_backward_kernel(x, weight, grad_y, sh, sw, ph, pw, dh, dw, groups, pointwise,
                            need_input_grad, grad_x, partial_weight):
    batch = x.shape[0]
    out_channels, in_per_group, kh, kw = weight.shape
    out_h, out_w = grad_y.shape[2], grad_y.shape[3]
    plane = out_h * out_w
    rows = in_per_group * kh * kw
    out_per_group = out_channels // groups
    kernel = weight.reshape(out_channels, rows)
    slices = partial_weight.shape[0]
    for part in prange(slices):
        accumulated = partial_weight[part]
        accumulated[:, :] = np.float32(0.0)
        columns = np.empty((rows, plane), dtype=np.float32)
        product = np.empty((out_per_group, rows), dtype=np.float32)
        grad_columns = np.empty((rows, plane), dtype=np.float32)
        for b in range(part * batch // slices, (part + 1) * batch // slices):
            gy = grad_y[b].reshape(out_channels, plane)
            if need_input_grad:
                grad_x[b] = np.float32(0.0)
            for g in range(groups):
                first = g * out_per_group
                if pointwise:
                    columns[:, :] = x[b, g * in_per_group:(g + 1) * in_per_group].reshape(rows, plane)
                else:
                    im2col_image(x[b], g * in_per_group, in_per_group, kh, kw, sh, sw, ph, pw, dh, dw,
                                 out_h, out_w, columns)
                gy_group = gy[first:first + out_per_group]
                np.dot(gy_group, columns.T, product)
                accumulated[first:first + out_per_group] += product
                if need_input_grad:
                    np.dot(kernel[first:first + out_per_group].T, gy_group, grad_columns)
                    col2im_image(grad_columns, g * in_per_group, in_per_group, kh, kw, sh, sw, ph, pw,
                                 dh, dw, out_h, out_w, grad_x[b])


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
    pointwise = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)
    slices = max(1, min(_SLICES, x.shape[0]))
    partial_weight = np.empty((slices, out_channels, in_per_group * kh * kw), dtype=np.float32)
    grad_x = np.empty(x.shape if need_input_grad else (0, *x.shape[1:]), dtype=np.float32)
    _conv2d_backward_kernel(x, weight, grad_y, int(sh), int(sw), int(ph), int(pw), int(dh), int(dw),
                            int(groups), pointwise, bool(need_input_grad), grad_x, partial_weight)
    grad_weight = partial_weight[0].copy()
    for part in range(1, slices):
        grad_weight += partial_weight[part]
    grad_bias = grad_y.sum(axis=(0, 2, 3), dtype=np.float32) if need_bias_grad else None
    return (grad_x if need_input_grad else None), grad_weight.reshape(weight.shape), grad_bias
