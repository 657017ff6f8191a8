"""Max and average pooling over ``[B, C, H, W]``, float32, floor mode (as PyTorch's default)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def pool2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, out_h, out_w):
    """``Y[b, c, oy, ox] = max`` over the window; padding counts as -inf."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((*x.shape[:2], out_h, out_w), dtype=np.float32)
    _maxpool2d_kernel(x, kh, kw, sh, sw, ph, pw, y)
    return y


@njit(cache=True, inline="always")
def _columns_inside(j, kw, sw, pw, width, out_w):
    """The output columns ``[first, last)`` whose window column j lies inside the image."""
    first = max(0, (pw - j + sw - 1) // sw)
    last = min(out_w, (width + pw - j + sw - 1) // sw)
    return first, last


# The loops run window cell by window cell over a whole output row, so the inner
# loop is a contiguous sweep with no bounds test.
@njit(cache=True, parallel=True)
def _maxpool2d_kernel(x, kh, kw, sh, sw, ph, pw, y):
    batch, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for item in prange(batch * channels):
        plane = x[item // channels, item % channels]
        out = y[item // channels, item % channels]
        for oy in range(out_h):
            row = out[oy]
            row[:] = np.float32(-np.inf)
            for i in range(kh):
                yy = oy * sh - ph + i
                if yy < 0 or yy >= height:
                    continue
                source = plane[yy]
                for j in range(kw):
                    first, last = _columns_inside(j, kw, sw, pw, width, out_w)
                    for ox in range(first, last):
                        row[ox] = max(row[ox], source[ox * sw - pw + j])


def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, out_h, out_w, count_include_pad):
    """``Y[b, c, oy, ox] = sum(window) / count``, summed row by row in float32.

    count is ``kh * kw`` with ``count_include_pad`` (padded zeros count), else
    the number of window cells inside the image.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((*x.shape[:2], out_h, out_w), dtype=np.float32)
    _avgpool2d_kernel(x, kh, kw, sh, sw, ph, pw, bool(count_include_pad), y)
    return y


@njit(cache=True, parallel=True)
def _avgpool2d_kernel(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    batch, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    # Cells of each window inside the image: rows times columns, as the window is a rectangle.
    inside_columns = np.zeros(out_w, dtype=np.int64)
    for j in range(kw):
        first, last = _columns_inside(j, kw, sw, pw, width, out_w)
        inside_columns[first:last] += 1
    for item in prange(batch * channels):
        plane = x[item // channels, item % channels]
        out = y[item // channels, item % channels]
        for oy in range(out_h):
            row = out[oy]
            row[:] = np.float32(0.0)
            inside_rows = 0
            for i in range(kh):
                yy = oy * sh - ph + i
                if yy < 0 or yy >= height:
                    continue
                inside_rows += 1
                source = plane[yy]
                for j in range(kw):
                    first, last = _columns_inside(j, kw, sw, pw, width, out_w)
                    for ox in range(first, last):
                        row[ox] += source[ox * sw - pw + j]
            for ox in range(out_w):
                count = kh * kw if count_include_pad else inside_rows * inside_columns[ox]
                row[ox] = row[ox] / np.float32(count)


# -- training: max pooling with its argmax, and both backwards ------------------------


def maxpool2d_forward_indices(x, kh, kw, sh, sw, ph, pw, out_h, out_w):
    """:func:`maxpool2d_forward` plus, per output cell, the flat index ``yy * W + xx`` of the
    maximum within its plane (int32). On ties the first cell in row-major window order wins,
    as in PyTorch, so gradients route to the same input on the spike trains' many ties."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((*x.shape[:2], out_h, out_w), dtype=np.float32)
    indices = np.empty((*x.shape[:2], out_h, out_w), dtype=np.int32)
    _maxpool2d_indices_kernel(x, kh, kw, sh, sw, ph, pw, y, indices)
    return y, indices


@njit(cache=True, inline="always")
def maxpool_plane(plane, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, outputs, where):
    """Max pooling of one plane ``[H * W]`` (row-major) into ``outputs[out_h * out_w]``, with
    the argmax's flat index ``yy * W + xx`` of each in ``where`` (first in window order on ties)."""
    if kh == 2 and kw == 2 and ph == 0 and pw == 0:
        # the usual SNN pooling: constant loop bounds, and the first maximum taken by selects,
        # not branches (half the time of the general loops below on mnist_conv's spikes)
        for oy in range(out_h):
            top = oy * sh * width
            upper, lower = plane[top:top + width], plane[top + width:top + 2 * width]
            maxima, cells = outputs[oy * out_w:(oy + 1) * out_w], where[oy * out_w:(oy + 1) * out_w]
            for ox in range(out_w):
                left = ox * sw
                best, offset = upper[left], 0
                value = upper[left + 1]
                offset = 1 if value > best else offset
                best = value if value > best else best
                value = lower[left]
                offset = width if value > best else offset
                best = value if value > best else best
                value = lower[left + 1]
                offset = width + 1 if value > best else offset
                best = value if value > best else best
                maxima[ox] = best
                cells[ox] = top + left + offset
        return
    for oy in range(out_h):
        top = oy * sh - ph
        i_first, i_last = max(0, -top), min(kh, height - top)
        for ox in range(out_w):
            left = ox * sw - pw
            j_first, j_last = max(0, -left), min(kw, width - left)
            best_index = (top + i_first) * width + left + j_first
            best = plane[best_index]
            for i in range(i_first, i_last):
                row = (top + i) * width + left
                for j in range(j_first, j_last):
                    if plane[row + j] > best:
                        best = plane[row + j]
                        best_index = row + j
            outputs[oy * out_w + ox] = best
            where[oy * out_w + ox] = best_index


@njit(cache=True, inline="always")
def maxpool_2x2(values, width, outputs, where, half, half_where):
    """2x2 max pooling with stride 2, no padding, of rows of an even ``width`` stacked in
    ``values`` (an even number of them: whole planes of an even height, one after another)
    into ``outputs[len(values) / 4]``, with each maximum's index into ``values`` in ``where``;
    ``half`` and ``half_where`` (``len(values) / 2``) are scratch. The first maximum in window
    order wins as in :func:`maxpool_plane`: the maximum of each row's pair first, then of the
    two rows' (the same winner but for NaN, which spikes never are). Both passes are plain
    loops over whole blocks, so they vectorise where the per-window loops cannot."""
    for k in range(half.shape[0]):  # no pair straddles two rows: the width is even
        left, right = values[2 * k], values[2 * k + 1]
        larger = right > left
        half[k] = right if larger else left
        half_where[k] = 2 * k + 1 if larger else 2 * k
    columns = width // 2
    for pair in range(half.shape[0] // width):
        upper, lower = 2 * pair * columns, (2 * pair + 1) * columns
        for o in range(columns):
            larger = half[lower + o] > half[upper + o]
            outputs[pair * columns + o] = half[lower + o] if larger else half[upper + o]
            where[pair * columns + o] = half_where[lower + o] if larger else half_where[upper + o]


@njit(cache=True, inline="always")
def maxpool_plane_backward(grad_row, where, target):
    """dL/dX of one plane: ``target[H * W]`` zeroed, then each output's gradient
    ``grad_row[out_h * out_w]`` added to its argmax ``where`` in output order (as well of planes
    one after another, ``where`` indexing them all)."""
    target[:] = np.float32(0.0)
    for o in range(grad_row.shape[0]):
        target[where[o]] += grad_row[o]


@njit(cache=True, parallel=True)
def _maxpool2d_indices_kernel(x, kh, kw, sh, sw, ph, pw, y, indices):
    batch, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    planes = x.reshape(batch * channels, height * width)
    outputs = y.reshape(batch * channels, out_h * out_w)
    where = indices.reshape(batch * channels, out_h * out_w)
    for item in prange(batch * channels):
        maxpool_plane(planes[item], height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, outputs[item], where[item])


def maxpool2d_backward(grad_y, indices, height, width):
    """dL/dX ``[B, C, H, W]``: each output's gradient added to its argmax input."""
    grad_x = np.empty((*grad_y.shape[:2], height, width), dtype=np.float32)
    _maxpool2d_backward_kernel(np.ascontiguousarray(grad_y, dtype=np.float32), indices, grad_x)
    return grad_x


@njit(cache=True, parallel=True)
def _maxpool2d_backward_kernel(grad_y, indices, grad_x):
    batch, channels, out_h, out_w = grad_y.shape
    size = grad_x.shape[2] * grad_x.shape[3]
    for b in prange(batch):
        target = grad_x[b].reshape(channels, size)
        gradients = grad_y[b].reshape(channels, out_h * out_w)
        where = indices[b].reshape(channels, out_h * out_w)
        for c in range(channels):
            maxpool_plane_backward(gradients[c], where[c], target[c])


def avgpool2d_backward(grad_y, kh, kw, sh, sw, ph, pw, count_include_pad, height, width):
    """dL/dX ``[B, C, H, W]``: each output's gradient divided by its count, added to every
    window cell inside the image (the count as in :func:`avgpool2d_forward`)."""
    grad_x = np.empty((*grad_y.shape[:2], height, width), dtype=np.float32)
    _avgpool2d_backward_kernel(np.ascontiguousarray(grad_y, dtype=np.float32), kh, kw, sh, sw, ph, pw,
                               bool(count_include_pad), grad_x)
    return grad_x


@njit(cache=True, parallel=True, error_model="numpy")
def _avgpool2d_backward_kernel(grad_y, kh, kw, sh, sw, ph, pw, count_include_pad, grad_x):
    batch, channels, out_h, out_w = grad_y.shape
    height, width = grad_x.shape[2], grad_x.shape[3]
    planes = grad_x.reshape(batch * channels, height * width)
    outputs = grad_y.reshape(batch * channels, out_h * out_w)
    two_by_two = kh == 2 and kw == 2 and ph == 0 and pw == 0  # constant bounds, as in max pooling
    quarter = np.float32(0.25)
    for item in prange(batch * channels):
        target = planes[item]
        target[:] = np.float32(0.0)
        for oy in range(out_h):
            rows_first = max(0, oy * sh - ph)
            rows_last = min(height, oy * sh - ph + kh)
            for ox in range(out_w):
                if two_by_two:
                    share = outputs[item, oy * out_w + ox] * quarter
                    corner = oy * sh * width + ox * sw
                    target[corner] += share
                    target[corner + 1] += share
                    target[corner + width] += share
                    target[corner + width + 1] += share
                    continue
                cols_first = max(0, ox * sw - pw)
                cols_last = min(width, ox * sw - pw + kw)
                if count_include_pad:
                    count = kh * kw
                else:
                    count = (rows_last - rows_first) * (cols_last - cols_first)
                share = outputs[item, oy * out_w + ox] / np.float32(count)
                for yy in range(rows_first, rows_last):
                    for xx in range(cols_first, cols_last):
                        target[yy * width + xx] += share
