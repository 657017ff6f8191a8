"""Current-based LIF neurons with optional recurrent synapses: the forward over all time steps,
and beside it BPTT through the current, the membrane and the recurrence.

The equations are those of :class:`onnx_snn_compress.ir.SynapticNeuron`, in float32 in this
order (the same as the SNN-ONNX profile's ``snn::CubaLIF`` Scan body)::

    leak     = (1 - beta) * v_leak                          once, in float32
    current  R = (sum over fired k, ascending, of weight[j, k]) + bias[j]   (recurrent only)
             I = current_decay * I + X[t];  I = I + R       (recurrent only)
    charge   H = (beta * V + leak) + gain * I
             H = reset(H, S_prev)                           only with reset_delay
    fire     S = H >= v_threshold   (or H > v_threshold)
    reset    V = reset(H, S)                                (V = H with reset_delay)

with ``I = 0``, ``V = v_init``, ``S_prev = 0`` before the first step. Each neuron parameter is a
float32 scalar or per-neuron values ``[n]``, read through kernels/neuron.py's ``parameter_at`` (one compiled
version for all-scalar parameters, one for arrays). The recurrent sum runs
over the neurons that fired at the previous step only (spikes are 0 or 1), which adds the
same float32 terms in the same order as a dense product with the spike vector.

Backward, for t = T-1 .. 0 per sample, with G_V = dL/dV[t] and G_I = dL/dI[t] through step
t+1 (0 after the last step), G_S = dL/dS[t] from downstream plus ``(dL/dR[t+1]) @ weight``
(the recurrence) plus, with reset_delay, the delayed reset's ``dL/dH[t+1] * dH/dS[t]``;
sg = surrogate(H[t] - v_threshold) (kernels/neuron.py):

    without reset_delay:  dL/dH = G_V * dV/dH + (G_S + G_V * dV/dS) * sg
                          (subtract: dV/dH = 1, dV/dS = -thr; hard: 1 - S, v_reset - H; none: 1, 0)
    with reset_delay:     dL/dH = G_V + G_S * sg;  dL/dP = dL/dH * dH/dP (1, or 1 - S[t-1] for hard)
                          where P = H before the delayed reset; dL/dS[t-1] += dL/dH * (-thr | v_reset - P | 0)
    and in both:          dL/dI[t] = gain * dL/dP + current_decay * G_I  (P = H without delay)
                          G_V for t-1 = beta * dL/dP;  dL/dX[t] = dL/dR[t] = dL/dI[t]
    detach_reset: the reset's dV/dS (or dH/dS[t-1]) is 0.

The recurrent weight's gradient is ``sum_t dL/dR[t].T @ S[t-1]`` and the bias's
``sum_t dL/dR[t]``, formed from the returned ``dL/dX`` by :func:`recurrent_weight_grads`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .neuron import RESET_HARD, RESET_NONE, RESET_SUBTRACT, parameter_at, neuron_parameters, surrogate_gradient

__all__ = ["synaptic_forward", "synaptic_backward", "recurrent_weight_grads", "RESET_SUBTRACT", "RESET_NONE"]


@njit(cache=True, inline="always")
def _reset(potential, spiked, reset_mode, v_threshold, v_reset):
    if not spiked:
        return potential
    if reset_mode == RESET_SUBTRACT:
        return potential - v_threshold
    if reset_mode == RESET_HARD:
        return v_reset
    return potential


@njit(cache=True, inline="always")
def _fires(h, v_threshold, fire_on_equal):
    return (h >= v_threshold) if fire_on_equal else (h > v_threshold)


@njit(cache=True, parallel=True)
def _forward_kernel(x, weight, bias, recurrent, current_decay, beta, gain, v_threshold, v_reset, leak,
                    v_init, reset_mode, reset_delay, fire_on_equal, spikes, potential, current):
    time_steps, samples, neurons = spikes.shape
    record = potential.shape[0] > 0
    for b in prange(samples):
        i = np.zeros(neurons, dtype=np.float32)
        v = np.empty(neurons, dtype=np.float32)
        for j in range(neurons):
            v[j] = parameter_at(v_init, j)
        fired = np.zeros(neurons, dtype=np.bool_)
        r = np.zeros(neurons, dtype=np.float32)
        for t in range(time_steps):
            if recurrent:
                for j in range(neurons):
                    total = np.float32(0.0)
                    for k in range(neurons):
                        if fired[k]:
                            total += weight[j, k]
                    r[j] = total + bias[j]
            for j in range(neurons):
                threshold = parameter_at(v_threshold, j)
                i[j] = parameter_at(current_decay, j) * i[j] + x[t, b, j]
                if recurrent:
                    i[j] = i[j] + r[j]
                h = (parameter_at(beta, j) * v[j] + parameter_at(leak, j)) + parameter_at(gain, j) * i[j]
                if reset_delay:
                    h = _reset(h, fired[j], reset_mode, threshold, parameter_at(v_reset, j))
                s = _fires(h, threshold, fire_on_equal)
                v[j] = h if reset_delay else _reset(h, s, reset_mode, threshold, parameter_at(v_reset, j))
                fired[j] = s
                spikes[t, b, j] = np.float32(s)
                if record:
                    potential[t, b, j] = h
                    current[t, b, j] = i[j]


def synaptic_forward(x, weight, bias, current_decay, beta, gain, v_threshold, v_reset, v_leak, v_init,
                     reset_mode, reset_delay, fire_on_equal, record=False):
    """Run a layer of current-based LIF neurons over time.

    x: ``[T, N, n]``; weight ``[n, n]`` and bias ``[n]`` (recurrent synapses) or None. The seven
    neuron parameters are scalars (rounded to float32) or per-neuron arrays ``[n]`` (see
    :func:`synaptic_parameters`); reset_mode is one of kernels.neuron.RESET_CODES.

    Returns ``(spikes, potential, current)``: spikes float32 ``[T, N, n]`` of 0/1; with ``record``
    the membrane potential ``H`` (after a delayed reset, before the step's own) and the current
    ``I`` as float32 ``[T, N, n]`` (what BPTT needs), else empty ``[0, N, n]`` arrays.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    time_steps, samples, neurons = x.shape
    recurrent = weight is not None
    weight = np.ascontiguousarray(weight if recurrent else np.zeros((0, 0)), dtype=np.float32)
    bias = np.ascontiguousarray(bias if bias is not None else np.zeros(neurons), dtype=np.float32)
    spikes = np.empty_like(x)
    recorded = (time_steps if record else 0, samples, neurons)
    potential = np.empty(recorded, dtype=np.float32)
    current = np.empty(recorded, dtype=np.float32)
    current_decay, beta, gain, v_threshold, v_reset, leak, v_init = synaptic_parameters(
        neurons, current_decay, beta, gain, v_threshold, v_reset, v_leak, v_init)
    _forward_kernel(x, weight, bias, recurrent, current_decay, beta, gain, v_threshold, v_reset, leak, v_init,
                    int(reset_mode), bool(reset_delay), bool(fire_on_equal), spikes, potential, current)
    return spikes, potential, current


@njit(cache=True, parallel=True, error_model="numpy")
def _backward_kernel(grad_spikes, potential, current, weight, recurrent, current_decay, beta, gain, v_threshold,
                     v_reset, leak, reset_mode, reset_delay, fire_on_equal, surrogate, alpha, detach_reset,
                     grad_x):
    time_steps, samples, neurons = potential.shape
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for b in prange(samples):
        grad_v = np.zeros(neurons, dtype=np.float32)
        grad_i = np.zeros(neurons, dtype=np.float32)
        grad_s_next = np.zeros(neurons, dtype=np.float32)  # dL/dS[t] through step t+1 (recurrence, delayed reset)
        grad_s_prev = np.zeros(neurons, dtype=np.float32)
        for t in range(time_steps - 1, -1, -1):
            for j in range(neurons):
                grad_s_prev[j] = zero
            for j in range(neurons):
                threshold = parameter_at(v_threshold, j)
                h = potential[t, b, j]
                s = _fires(h, threshold, fire_on_equal)
                sg = surrogate_gradient(h - threshold, surrogate, alpha)
                g_s = grad_spikes[t, b, j] + grad_s_next[j]
                if reset_delay:
                    grad_h = grad_v[j] + g_s * sg
                    grad_p = grad_h
                    if t > 0:
                        fired_before = _fires(potential[t - 1, b, j], threshold, fire_on_equal)
                        if reset_mode == RESET_HARD and fired_before:
                            grad_p = zero
                        if not detach_reset:
                            if reset_mode == RESET_SUBTRACT:
                                grad_s_prev[j] += grad_h * (-threshold)
                            elif reset_mode == RESET_HARD:
                                p = (parameter_at(beta, j) * potential[t - 1, b, j] + parameter_at(leak, j)) + parameter_at(gain, j) * current[t, b, j]
                                grad_s_prev[j] += grad_h * (parameter_at(v_reset, j) - p)
                else:
                    if reset_mode == RESET_SUBTRACT:
                        dv_dh, dv_ds = one, -threshold
                    elif reset_mode == RESET_HARD:
                        dv_dh, dv_ds = (zero if s else one), parameter_at(v_reset, j) - h
                    else:
                        dv_dh, dv_ds = one, zero
                    if detach_reset:
                        dv_ds = zero
                    grad_h = grad_v[j] * dv_dh + (g_s + grad_v[j] * dv_ds) * sg
                    grad_p = grad_h
                grad_i[j] = parameter_at(gain, j) * grad_p + parameter_at(current_decay, j) * grad_i[j]
                grad_v[j] = parameter_at(beta, j) * grad_p
                grad_x[t, b, j] = grad_i[j]
            if recurrent and t > 0:  # R[t] = S[t-1] @ weight.T + bias
                for k in range(neurons):
                    total = zero
                    for j in range(neurons):
                        total += grad_i[j] * weight[j, k]
                    grad_s_prev[k] += total
            for j in range(neurons):
                grad_s_next[j] = grad_s_prev[j]


def synaptic_backward(grad_spikes, potential, current, weight, current_decay, beta, gain, v_threshold, v_reset,
                      v_leak, reset_mode, reset_delay, fire_on_equal, surrogate, alpha, detach_reset):
    """dL/dX ``[T, N, n]`` (float32) from dL/dS ``[T, N, n]`` and the forward's recorded potential
    and current (see the module docstring; surrogate is one of kernels.neuron.SURROGATE_CODES)."""
    grad_spikes = np.ascontiguousarray(grad_spikes, dtype=np.float32)
    recurrent = weight is not None
    weight = np.ascontiguousarray(weight if recurrent else np.zeros((0, 0)), dtype=np.float32)
    grad_x = np.empty_like(grad_spikes)
    current_decay, beta, gain, v_threshold, v_reset, leak, _ = synaptic_parameters(
        grad_spikes.shape[2], current_decay, beta, gain, v_threshold, v_reset, v_leak, 0.0)
    _backward_kernel(grad_spikes, potential, current, weight, recurrent, current_decay, beta, gain, v_threshold,
                     v_reset, leak, int(reset_mode), bool(reset_delay), bool(fire_on_equal), int(surrogate),
                     np.float32(alpha), bool(detach_reset), grad_x)
    return grad_x


def synaptic_parameters(neurons, current_decay, beta, gain, v_threshold, v_reset, v_leak, v_init):
    """The parameters as the kernels take them: ``(current_decay, beta, gain, v_threshold, v_reset,
    leak, v_init)`` with ``leak = (1 - beta) * v_leak`` in float32; all float32 scalars, or (when
    any is a per-neuron array ``[neurons]``) all float32 arrays ``[neurons]``, as
    kernels.neuron.neuron_parameters gives them."""
    decay = np.asarray(current_decay, dtype=np.float32)
    if decay.ndim:  # one array makes them all arrays: a kernel is compiled for two cases only
        beta = np.broadcast_to(np.asarray(beta, dtype=np.float32), (neurons,))
    beta, gain, v_threshold, v_reset, leak, v_init = neuron_parameters(
        neurons, beta, gain, v_threshold, v_reset, v_leak, v_init)
    if isinstance(beta, np.ndarray):
        decay = np.ascontiguousarray(np.broadcast_to(decay.reshape(-1) if decay.ndim else decay, (neurons,)))
    else:
        decay = decay[()]
    return decay, beta, gain, v_threshold, v_reset, leak, v_init


def recurrent_weight_grads(grad_x, spikes):
    """dL/dweight ``[n, n]`` and dL/dbias ``[n]`` of the recurrent synapses from dL/dX (= dL/dR) and
    the forward's spikes, both ``[T, N, n]``: ``sum_t dL/dR[t].T @ S[t-1]`` and ``sum_t dL/dR[t]``."""
    neurons = grad_x.shape[2]
    grad_r = grad_x[1:].reshape(-1, neurons)
    grad_weight = (grad_r.T @ spikes[:-1].reshape(-1, neurons)).astype(np.float32)
    grad_bias = grad_x.reshape(-1, neurons).sum(axis=0, dtype=np.float64).astype(np.float32)
    return grad_weight, grad_bias
