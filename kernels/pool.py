"""Max and average pooling over ``[B, C, H, W]``, float32, floor mode (as PyTorch's default)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def pool2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@njit(cache=True, parallel=True)
def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, out_h, out_w):
    """``Y[b, c, oy, ox] = max`` over the window; padding counts as -inf."""
    batch, channels, height, width = x.shape
    y = np.empty((batch, channels, out_h, out_w), dtype=np.float32)
    for item in prange(batch * channels):
        b = item // channels
        c = item % channels
        for oy in range(out_h):
            for ox in range(out_w):
                best = np.float32(-np.inf)
                for i in range(kh):
                    yy = oy * sh - ph + i
                    if yy < 0 or yy >= height:
                        continue
                    for j in range(kw):
                        xx = ox * sw - pw + j
                        if 0 <= xx < width and x[b, c, yy, xx] > best:
                            best = x[b, c, yy, xx]
                y[b, c, oy, ox] = best
    return y


@njit(cache=True, parallel=True)
def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, out_h, out_w, count_include_pad):
    """``Y[b, c, oy, ox] = sum(window) / count``, summed row by row in float32.

    count is ``kh * kw`` with ``count_include_pad`` (padded zeros count), else
    the number of window cells inside the image.
    """
    batch, channels, height, width = x.shape
    y = np.empty((batch, channels, out_h, out_w), dtype=np.float32)
    for item in prange(batch * channels):
        b = item // channels
        c = item % channels
        for oy in range(out_h):
            for ox in range(out_w):
                total = np.float32(0.0)
                inside = 0
                for i in range(kh):
                    yy = oy * sh - ph + i
                    if yy < 0 or yy >= height:
                        continue
                    for j in range(kw):
                        xx = ox * sw - pw + j
                        if 0 <= xx < width:
                            total += x[b, c, yy, xx]
                            inside += 1
                count = kh * kw if count_include_pad else inside
                y[b, c, oy, ox] = total / np.float32(count)
    return y
