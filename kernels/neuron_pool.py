"""A layer of LIF/IF neurons whose spikes only a max pooling reads, trained in one pass each
way: forward and BPTT side by side, plane by plane, nothing full-size kept between them.

Unfused, training such a pair writes and reads back four tensors of the neurons' full size
``[T, B, C, H, W]``: the spikes, the recorded potential H, the gradient of the spikes and
the pooling's argmax (a quarter of it). Here each plane ``(b, c)`` of ``H x W`` neurons runs
all T steps in a small buffer and only the pooled spikes leave the forward; the backward
recomputes the plane's potentials, spikes and argmax from the neurons' input X (the same
float32 operations, so the same bits), routes the pooled gradient to the argmax and runs
BPTT on the plane. Both call the kernels of kernels/neuron.py and kernels/pool.py per plane,
so every value is bit for bit that of :func:`lif_forward` + :func:`maxpool2d_forward_indices`
and of :func:`maxpool2d_backward` + :func:`lif_backward` (tests/test_neuron_pool.py). The
simulator and the training engine use it from 8 MB of spikes up (``simulate.fused_pools``).

X is ``[T, M]`` or, for an input that is the same at every step (direct encoding), ``[1, M]``
with M = B * C * H * W; then the backward returns dL/dX summed over the steps ``[1, M]`` (in
step order t = 0 .. T-1, as numpy's ``sum(axis=0)``). Memory kept between the passes: X
itself, which the unfused pair would have dropped, instead of H and the argmax (mnist_conv's
lif1 at batch 64, T = 8, direct encoding: 3.2 MB instead of 32 MB; and the 26 MB of spikes
are never written).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .neuron import backward_step, forward_step, initial_state, neuron_parameters, reset_derivative
from .pool import maxpool_2x2, maxpool_plane, maxpool_plane_backward


# Neurons per parallel work item at least (whole planes): the item's potentials over T stay
# in L2, and the per-call costs of the steps are spread over enough neurons.
_NEURONS = 2048


def lif_maxpool_forward(x, time_steps, height, width, pool, beta, gain, v_threshold, v_reset, v_leak, v_init,
                        reset_mode, reset_delay, fire_on_equal):
    """The pooled spikes float32 ``[T, P * out_h * out_w]`` (P = M / (H * W) planes) and the
    spikes per neuron summed over time (int64 ``[M]``) of neurons fed ``x`` (float32 ``[T, M]``,
    or ``[1, M]``: the same input at every one of ``time_steps``) whose spikes ``[T, P, H, W]``
    a max pooling ``pool = (kh, kw, sh, sw, ph, pw, out_h, out_w)`` reads. The neuron
    arguments are :func:`onnx_snn_compress.kernels.neuron.lif_forward`'s.
    Raises ValueError when M is not a whole number of ``height x width`` planes."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    planes = _planes(x, height, width)
    beta, gain, v_threshold, v_reset, leak, v_init = neuron_parameters(
        x.shape[1], beta, gain, v_threshold, v_reset, v_leak, v_init)
    pooled = np.empty((int(time_steps), planes * pool[6] * pool[7]), dtype=np.float32)
    spike_counts = np.empty(x.shape[1], dtype=np.int64)
    _forward_kernel(x, height, width, *pool, beta, gain, leak, v_threshold, v_reset, v_init,
                    int(reset_mode), bool(reset_delay), bool(fire_on_equal), pooled, spike_counts)
    return pooled, spike_counts


def lif_maxpool_backward(x, grad_pooled, height, width, pool, beta, gain, v_threshold, v_reset, v_leak, v_init,
                         reset_mode, reset_delay, fire_on_equal, surrogate, alpha, detach_reset):
    """dL/dX of :func:`lif_maxpool_forward` from dL/d(pooled spikes) ``grad_pooled`` (float32
    ``[T, P * out_h * out_w]``): ``[T, M]``, or ``[1, M]`` (summed over the steps) when ``x``
    is ``[1, M]``. ``surrogate``, ``alpha`` and ``detach_reset`` as in
    :func:`onnx_snn_compress.kernels.neuron.lif_backward`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad_pooled = np.ascontiguousarray(grad_pooled, dtype=np.float32)
    planes = _planes(x, height, width)
    if grad_pooled.shape[1:] != (planes * pool[6] * pool[7],):
        raise ValueError(f"pooled gradient {grad_pooled.shape} for {planes} planes of {pool[6]} x {pool[7]}")
    beta, gain, v_threshold, v_reset, leak, v_init = neuron_parameters(
        x.shape[1], beta, gain, v_threshold, v_reset, v_leak, v_init)
    reset_offset, reset_slope = reset_derivative(reset_mode, v_threshold, v_reset, detach_reset)
    grad_x = np.empty(x.shape, dtype=np.float32)
    _backward_kernel(x, grad_pooled, height, width, *pool, beta, gain, leak, v_threshold, v_reset, v_init,
                     int(reset_mode), bool(reset_delay), bool(fire_on_equal), int(surrogate), np.float32(alpha),
                     reset_offset, reset_slope, grad_x)
    return grad_x


def _planes(x, height, width):
    if x.ndim != 2 or x.shape[1] % (height * width):
        raise ValueError(f"input {x.shape} is not [T, M] with M a multiple of {height} x {width}")
    return x.shape[1] // (height * width)


@njit(cache=True, inline="always")
def _pool_step(spikes, first, last, size, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, outputs, where, half,
               half_where):
    # the max pooling of the planes first .. last (their spikes one after another in ``spikes``)
    # into ``outputs``, the argmax as indices into ``spikes`` in ``where``
    if half.shape[0] > 0:
        maxpool_2x2(spikes, width, outputs, where, half, half_where)
        return
    cells = out_h * out_w
    for plane in range(last - first):
        offset = plane * size
        maxpool_plane(spikes[offset:offset + size], height, width, kh, kw, sh, sw, ph, pw, out_h, out_w,
                      outputs[plane * cells:(plane + 1) * cells], where[plane * cells:(plane + 1) * cells])
        for o in range(plane * cells, (plane + 1) * cells):
            where[o] += offset


@njit(cache=True, inline="always")
def _scratch(first, last, size, height, width, kh, kw, sh, sw, ph, pw):
    # what _pool_step needs beside its outputs: the halves of the 2x2 pooling, where it applies
    pairs = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and height % 2 == 0 and width % 2 == 0
    halves = (last - first) * size // 2 if pairs else 0
    return np.empty(halves, dtype=np.float32), np.empty(halves, dtype=np.int32)


@njit(cache=True, parallel=True)
def _forward_kernel(x, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, beta, gain, leak, v_threshold, v_reset,
                    v_init, reset_mode, reset_delay, fire_on_equal, pooled, spike_counts):
    size, cells = height * width, out_h * out_w
    planes = x.shape[1] // size
    group = max(1, _NEURONS // size)  # planes per work item: small planes run together
    for item in prange((planes + group - 1) // group):
        first, last = item * group, min(item * group + group, planes)
        start, stop = first * size, last * size
        v, fired, count = initial_state(start, stop - start, v_init)
        spikes = np.empty(stop - start, dtype=np.float32)
        unrecorded = np.empty(stop - start, dtype=np.float32)  # the potential row, not written
        where = np.empty((last - first) * cells, dtype=np.int32)
        half, half_where = _scratch(first, last, size, height, width, kh, kw, sh, sw, ph, pw)
        for t in range(pooled.shape[0]):
            forward_step(x[t if x.shape[0] > 1 else 0, start:stop], spikes, unrecorded, v, fired, count, start,
                         beta, gain, leak, v_threshold, v_reset, reset_mode, reset_delay, fire_on_equal, False)
            _pool_step(spikes, first, last, size, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w,
                       pooled[t, first * cells:last * cells], where, half, half_where)
        for j in range(stop - start):
            spike_counts[start + j] = count[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _backward_kernel(x, grad_pooled, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, beta, gain, leak,
                     v_threshold, v_reset, v_init, reset_mode, reset_delay, fire_on_equal, surrogate, alpha,
                     reset_offset, reset_slope, grad_x):
    size, cells = height * width, out_h * out_w
    planes = x.shape[1] // size
    group = max(1, _NEURONS // size)
    time_steps = grad_pooled.shape[0]
    summed = grad_x.shape[0] == 1 and time_steps > 1
    for item in prange((planes + group - 1) // group):
        first, last = item * group, min(item * group + group, planes)
        start, stop = first * size, last * size
        span = stop - start
        # the forward again, keeping the potentials and the argmax
        v, fired, count = initial_state(start, span, v_init)
        spikes = np.empty(span, dtype=np.float32)
        potential = np.empty((time_steps, span), dtype=np.float32)
        where = np.empty((time_steps, (last - first) * cells), dtype=np.int32)
        maxima = np.empty((last - first) * cells, dtype=np.float32)
        half, half_where = _scratch(first, last, size, height, width, kh, kw, sh, sw, ph, pw)
        for t in range(time_steps):
            forward_step(x[t if x.shape[0] > 1 else 0, start:stop], spikes, potential[t], v, fired, count, start,
                         beta, gain, leak, v_threshold, v_reset, reset_mode, reset_delay, fire_on_equal, True)
            _pool_step(spikes, first, last, size, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, maxima,
                       where[t], half, half_where)
        # BPTT, the pooled gradient routed to the argmax at each step
        grad_v = np.zeros(span, dtype=np.float32)
        grad_reset = np.zeros(span, dtype=np.float32)
        sg = np.empty(span, dtype=np.float32)
        grad_spikes = np.empty(span, dtype=np.float32)
        steps = np.empty((time_steps if summed else 0, span), dtype=np.float32)
        for t in range(time_steps - 1, -1, -1):
            maxpool_plane_backward(grad_pooled[t, first * cells:last * cells], where[t], grad_spikes)
            # (two calls, not one on a row chosen by a conditional expression: that row's type
            # would not be known to be contiguous, and the step would not vectorise)
            if summed:
                backward_step(potential[t], potential[max(t - 1, 0)], t > 0, grad_spikes, steps[t], grad_v,
                              grad_reset, sg, start, beta, gain, leak, v_threshold, reset_mode, reset_delay,
                              fire_on_equal, surrogate, alpha, reset_offset, reset_slope)
            else:
                backward_step(potential[t], potential[max(t - 1, 0)], t > 0, grad_spikes, grad_x[t, start:stop],
                              grad_v, grad_reset, sg, start, beta, gain, leak, v_threshold, reset_mode, reset_delay,
                              fire_on_equal, surrogate, alpha, reset_offset, reset_slope)
        if summed:  # in step order, as numpy's sum over the first axis
            for j in range(span):
                total = steps[0, j]
                for t in range(1, time_steps):
                    total += steps[t, j]
                grad_x[0, start + j] = total
