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
