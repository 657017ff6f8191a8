"""Spiking neuron dynamics over all time steps in one call: the forward, and beside it BPTT.

The equations are those of :class:`onnx_snn_compress.ir.Neuron`. Everything is
float32 in a fixed operation order, the same as the ONNX export's Scan body, so
the simulator and onnxruntime agree bit for bit given identical inputs::

    leak    = (1 - beta) * v_leak                       once, in float32
    charge  D = beta * V + leak
            D = reset(D, S_prev)                        only with reset_delay
            H = D + gain * X[t]
    fire    S = H >= v_threshold   (or H > v_threshold)
    reset   V = reset(H, S)                             (V = H with reset_delay)

    reset(P, s) = P - v_threshold (subtract) | v_reset (hard) | P (none)  if s else P

with ``V = v_init`` and ``S_prev = 0`` before the first step. No fastmath: a
fused multiply-add would round differently from onnxruntime.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

RESET_SUBTRACT = 0
RESET_HARD = 1
RESET_NONE = 2
RESET_CODES = {"subtract": RESET_SUBTRACT, "hard": RESET_HARD, "none": RESET_NONE}

# Neurons per parallel work item: the state of a block stays in L1 while t runs,
# and the inner loop over neighbouring neurons reads X[t] contiguously.
_BLOCK = 512


def parameter_at(parameter, neuron):
    """A neuron parameter of neuron ``neuron``: the scalar itself, or the array's entry."""
    raise NotImplementedError  # only called from jitted code (see the overload below)


@overload(parameter_at, inline="always")
def _parameter_at_overload(parameter, neuron):
    # Resolved when a kernel is compiled: one machine-code version for scalar parameters
    # (the common case, exactly as fast as before) and one for per-neuron arrays.
    if isinstance(parameter, types.Array):
        return lambda parameter, neuron: parameter[neuron]
    return lambda parameter, neuron: parameter


@njit(cache=True, inline="always")
def _reset(potential, spiked, reset_mode, v_threshold, v_reset):
    # Written as selects, not branches, so the loop over neurons vectorises.
    if reset_mode == RESET_SUBTRACT:
        reset = potential - v_threshold
    elif reset_mode == RESET_HARD:
        reset = v_reset
    else:
        reset = potential
    return reset if spiked else potential


@njit(cache=True, inline="always")
def forward_step(inputs, spike_row, potential_row, v, fired, count, start, beta, gain, leak,
                 v_threshold, v_reset, reset_mode, reset_delay, fire_on_equal, record_potential):
    """One time step of the neurons ``start .. start + len(v)``: their state ``v`` (the
    membrane potential V), ``fired`` (S of the last step) and ``count`` (spikes so far) in
    place, ``spike_row`` (float32 0/1) and, with ``record_potential``, ``potential_row`` (H)
    written; ``inputs`` is their X[t]. Rows are views of the neurons' own entries (the
    parameters are indexed from ``start``)."""
    for j in range(v.shape[0]):
        i = start + j
        threshold = parameter_at(v_threshold, i)
        # charge
        d = parameter_at(beta, i) * v[j] + parameter_at(leak, i)
        if reset_delay:
            d = _reset(d, fired[j], reset_mode, threshold, parameter_at(v_reset, i))
        h = d + parameter_at(gain, i) * inputs[j]
        # fire
        s = (h >= threshold) if fire_on_equal else (h > threshold)
        # reset
        v[j] = h if reset_delay else _reset(h, s, reset_mode, threshold, parameter_at(v_reset, i))
        fired[j] = s
        spike_row[j] = np.float32(s)
        count[j] += np.int32(s)
        if record_potential:
            potential_row[j] = h


@njit(cache=True, inline="always")
def initial_state(start, width, v_init):
    """``(v, fired, count)`` of the neurons ``start .. start + width`` before the first step."""
    v = np.empty(width, dtype=np.float32)
    for j in range(width):
        v[j] = parameter_at(v_init, start + j)
    return v, np.zeros(width, dtype=np.bool_), np.zeros(width, dtype=np.int32)  # int32 vectorises twice as wide


@njit(cache=True)
def _run_block(x, spikes, potential, spike_counts, start, stop, beta, gain, leak,
               v_threshold, v_reset, v_init, reset_mode, reset_delay, fire_on_equal,
               record_potential):
    width = stop - start
    v, fired, count = initial_state(start, width, v_init)
    unrecorded = np.empty(width, dtype=np.float32)  # stands in for a potential row when none is recorded
    for t in range(spikes.shape[0]):
        # row views indexed by the loop counter: an index computed as start + j would be
        # tested for wraparound at every neuron, which keeps the loop from vectorising
        inputs = x[t if x.shape[0] > 1 else 0, start:stop]  # a single input row is the input of every step
        potential_row = potential[t, start:stop] if record_potential else unrecorded
        forward_step(inputs, spikes[t, start:stop], potential_row, v, fired, count, start, beta, gain, leak,
                     v_threshold, v_reset, reset_mode, reset_delay, fire_on_equal, record_potential)
    for j in range(width):
        spike_counts[start + j] = count[j]


def neuron_parameters(neurons, beta, gain, v_threshold, v_reset, v_leak, v_init):
    """The parameters as the kernels take them: ``(beta, gain, v_threshold, v_reset, leak,
    v_init)`` with ``leak = (1 - beta) * v_leak`` in float32.

    Each parameter is a scalar or an array of per-neuron values over one sample's neurons
    (any shape, row-major, whose size divides ``neurons``: the same values repeat for every
    sample). All scalars: float32 scalars (the fast path). Any array: every parameter as a
    float32 array ``[neurons]``, so a kernel is compiled for just two cases.
    Raises ValueError when an array's size does not divide ``neurons``.
    """
    values = [np.asarray(v, dtype=np.float32) for v in (beta, gain, v_threshold, v_reset, v_leak, v_init)]
    if all(v.ndim == 0 for v in values):
        beta, gain, v_threshold, v_reset, v_leak, v_init = (v[()] for v in values)
        return beta, gain, v_threshold, v_reset, (np.float32(1.0) - beta) * v_leak, v_init
    arrays = []
    for value in values:
        flat = value.reshape(-1)
        if neurons % flat.size:
            raise ValueError(f"{flat.size} per-neuron values for {neurons} neurons")
        arrays.append(np.ascontiguousarray(np.tile(flat, neurons // flat.size)))
    beta, gain, v_threshold, v_reset, v_leak, v_init = arrays
    return beta, gain, v_threshold, v_reset, (np.float32(1.0) - beta) * v_leak, v_init


def lif_forward(x, beta, gain, v_threshold, v_reset, v_leak, v_init,
                reset_mode, reset_delay, fire_on_equal, record_potential=False, time_steps=None):
    """Run a layer of LIF/IF neurons over time.

    x: ``[T, M]`` (M = every neuron of every sample), made float32 C-contiguous, or
    ``[1, M]`` with ``time_steps=T``: an input that is the same at every step (direct
    encoding), read T times instead of stored T times. The six neuron parameters are
    scalars (rounded to float32) or per-neuron arrays (see :func:`neuron_parameters`);
    reset_mode is one of ``RESET_CODES``.

    Returns ``(spikes, potential, spike_counts)``: spikes float32 ``[T, M]`` of
    0/1; potential the pre-reset membrane potential ``H`` as float32 ``[T, M]``
    when ``record_potential`` (what BPTT needs), else an empty ``[0, M]``;
    spike_counts int64 ``[M]``, spikes per neuron summed over time.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, neurons = x.shape
    time_steps = rows if time_steps is None else int(time_steps)
    if rows not in (1, time_steps):
        raise ValueError(f"input of {rows} steps for {time_steps} time steps")
    beta, gain, v_threshold, v_reset, leak, v_init = neuron_parameters(
        neurons, beta, gain, v_threshold, v_reset, v_leak, v_init)
    # numpy, not Numba, allocates the outputs: it asks for huge pages, which
    # halves the cost of first touching a large array.
    spikes = np.empty((time_steps, neurons), dtype=np.float32)
    potential = np.empty((time_steps if record_potential else 0, neurons), dtype=np.float32)
    spike_counts = np.empty(neurons, dtype=np.int64)
    _lif_forward_kernel(
        x, beta, gain, v_threshold, v_reset, leak, v_init,
        int(reset_mode), bool(reset_delay), bool(fire_on_equal), bool(record_potential),
        spikes, potential, spike_counts,
    )
    return spikes, potential, spike_counts


@njit(cache=True, parallel=True)
def _lif_forward_kernel(x, beta, gain, v_threshold, v_reset, leak, v_init, reset_mode,
                        reset_delay, fire_on_equal, record_potential, spikes, potential, spike_counts):
    """:func:`lif_forward` into given outputs; parameters as :func:`neuron_parameters` gives them."""
    neurons = x.shape[1]
    blocks = (neurons + _BLOCK - 1) // _BLOCK
    for block in prange(blocks):
        start = block * _BLOCK
        stop = min(start + _BLOCK, neurons)
        _run_block(x, spikes, potential, spike_counts, start, stop, beta, gain, leak,
                   v_threshold, v_reset, v_init, reset_mode, reset_delay, fire_on_equal,
                   record_potential)


# -- backward: BPTT with a surrogate derivative ---------------------------------------
#
# The surrogate replaces dS/dH in the backward pass, evaluated at u = H - v_threshold
# with the node's alpha (float32 throughout):
#
#     atan          (alpha/2) / (1 + (pi/2 * alpha * u)^2)     SpikingJelly ATan, snnTorch atan (code)
#     sigmoid       alpha * sig(alpha u) * (1 - sig(alpha u))  snnTorch sigmoid(slope=alpha),
#                                                              SpikingJelly Sigmoid(alpha)
#     fast_sigmoid  1 / (alpha * |u| + 1)^2                    snnTorch fast_sigmoid(slope=alpha)
#     rectangle     alpha if |u| < 1 / (2 alpha) else 0        width 1/alpha, height alpha, area 1
#
# Backward through time, for t = T-1 .. 0, with G_V = dL/dV[t] (0 after the last step) and
# G_S = dL/dS[t] from the layers downstream; sg = surrogate(H[t] - v_threshold):
#
#   without reset_delay, V[t] = reset(H[t], S[t]):
#       dL/dH[t] = G_V * dV/dH + (G_S + G_V * dV/dS) * sg
#         subtract: dV/dH = 1,        dV/dS = -v_threshold
#         hard:     dV/dH = 1 - S[t], dV/dS = v_reset - H[t]
#         none:     dV/dH = 1,        dV/dS = 0
#       (detach_reset: dV/dS = 0, S is a constant in the reset)
#   with reset_delay, V[t] = H[t] and H[t] = reset(D[t], S[t-1]) + gain X[t]:
#       dL/dH[t]   = G_V + (G_S + R[t]) * sg, where R[t] = dL/dS[t] through the reset at t+1
#       dL/dD[t]   = dL/dH[t] * dD'/dD:  1 (subtract, none) | 1 - S[t-1] (hard)
#       R[t-1]     = dL/dH[t] * dD'/dS[t-1]:  -v_threshold | v_reset - D[t] | 0   (0 with detach_reset)
#   and in both:  dL/dX[t] = gain * dL/dH[t],  G_V for step t-1 = beta * dL/dD[t]
#   (without reset_delay dL/dD[t] = dL/dH[t]).
#
# D[t] = beta * H[t-1] + leak is recomputed from the recorded potential with the forward's
# float32 operations, so only H needs to be kept; S is recomputed by the same comparison.
# error_model="numpy": a float division needs no zero test, so the loops vectorise (the
# surrogates never divide by zero).

SURROGATE_ATAN = 0
SURROGATE_SIGMOID = 1
SURROGATE_FAST_SIGMOID = 2
SURROGATE_RECTANGLE = 3
SURROGATE_CODES = {
    "atan": SURROGATE_ATAN,
    "sigmoid": SURROGATE_SIGMOID,
    "fast_sigmoid": SURROGATE_FAST_SIGMOID,
    "rectangle": SURROGATE_RECTANGLE,
}

_HALF_PI = np.float32(np.pi / 2)

# exp(x) for x <= 0 in float32 (Cephes expf: x = n ln2 + z, a degree-7 polynomial in z,
# times 2^n from a table), within 1 ulp of the true value. Without Intel's SVML, Numba
# calls libm's expf one value at a time; this one vectorises, and makes the sigmoid
# surrogate's backward 3.4x faster.
_POW2_NEGATIVE = np.ldexp(np.float32(1.0), -np.arange(127)).astype(np.float32)  # 2^0 .. 2^-126
_LOG2_E = np.float32(1.44269504088896341)
_LN2_HIGH = np.float32(0.693359375)
_LN2_LOW = np.float32(-2.12194440e-4)


@njit(cache=True, error_model="numpy", inline="always")
def _exp_nonpositive(x):
    x = max(x, np.float32(-87.0))  # exp(-87) is 1.6e-38, still a normal float32
    n = np.floor(x * _LOG2_E + np.float32(0.5))
    z = x - n * _LN2_HIGH - n * _LN2_LOW
    p = np.float32(1.9875691500e-4)
    p = p * z + np.float32(1.3981999507e-3)
    p = p * z + np.float32(8.3334519073e-3)
    p = p * z + np.float32(4.1665795894e-2)
    p = p * z + np.float32(1.6666665459e-1)
    p = p * z + np.float32(5.0000001201e-1)
    p = p * z * z + z + np.float32(1.0)
    return p * _POW2_NEGATIVE[-np.int64(n)]


@njit(cache=True, error_model="numpy", inline="always")
def surrogate_gradient(u, surrogate, alpha):
    """The surrogate dS/du at ``u = H - v_threshold`` (float32; see the table above)."""
    one = np.float32(1.0)
    if surrogate == SURROGATE_ATAN:
        z = _HALF_PI * alpha * u
        return alpha * np.float32(0.5) / (one + z * z)
    elif surrogate == SURROGATE_SIGMOID:
        # symmetric in u; exp of a non-positive argument never overflows
        e = _exp_nonpositive(-alpha * abs(u))
        return alpha * e / ((one + e) * (one + e))
    elif surrogate == SURROGATE_FAST_SIGMOID:
        d = alpha * abs(u) + one
        return one / (d * d)
    else:
        return alpha if abs(u) < np.float32(0.5) / alpha else np.float32(0.0)


@njit(cache=True, error_model="numpy")
def _surrogate_row(potential, v_threshold, start, surrogate, alpha, out):
    """``out[j] = surrogate'(potential[j] - v_threshold of neuron start + j)``: one loop per
    surrogate, so each loop is branch-free and vectorises."""
    if surrogate == SURROGATE_ATAN:
        for j in range(out.shape[0]):
            out[j] = surrogate_gradient(potential[j] - parameter_at(v_threshold, start + j), SURROGATE_ATAN, alpha)
    elif surrogate == SURROGATE_SIGMOID:
        for j in range(out.shape[0]):
            out[j] = surrogate_gradient(potential[j] - parameter_at(v_threshold, start + j), SURROGATE_SIGMOID, alpha)
    elif surrogate == SURROGATE_FAST_SIGMOID:
        for j in range(out.shape[0]):
            out[j] = surrogate_gradient(potential[j] - parameter_at(v_threshold, start + j), SURROGATE_FAST_SIGMOID, alpha)
    else:
        for j in range(out.shape[0]):
            out[j] = surrogate_gradient(potential[j] - parameter_at(v_threshold, start + j), SURROGATE_RECTANGLE, alpha)


@njit(cache=True, inline="always")
def _fired(h, v_threshold, fire_on_equal):
    return np.float32((h > v_threshold) or (fire_on_equal and h == v_threshold))


@njit(cache=True, error_model="numpy")
def backward_step(h_row, previous, has_previous, g_row, x_row, grad_v, grad_reset, sg, start, beta, gain, leak,
                  v_threshold, reset_mode, reset_delay, fire_on_equal, surrogate, alpha, reset_offset, reset_slope):
    """Step t of BPTT (t = T-1 .. 0) for the neurons ``start .. start + len(grad_v)``: from
    their H[t] (``h_row``), H[t-1] (``previous``; ``has_previous`` False at t = 0, where it is
    not read) and dL/dS[t] (``g_row``), writes dL/dX[t] to ``x_row`` and carries ``grad_v``
    (dL/dV[t-1]) and ``grad_reset`` (dL/dS[t-1] through a delayed reset) in place; ``sg`` is
    scratch. Not inlined into its callers: inlined, the loops below did not vectorise (3x slower)."""
    # The reset's derivative w.r.t. the spike is reset_offset + reset_slope * P (P = H, or D
    # with reset_delay), zero for detach_reset; a hard reset also blocks dV/dH where it fired.
    one = np.float32(1.0)
    hard = np.float32(1.0) if reset_mode == RESET_HARD else np.float32(0.0)
    width = grad_v.shape[0]
    _surrogate_row(h_row, v_threshold, start, surrogate, alpha, sg)
    if not reset_delay:
        for j in range(width):
            i = start + j
            h = h_row[j]
            gv = grad_v[j]
            dv_dh = one - hard * _fired(h, parameter_at(v_threshold, i), fire_on_equal)
            grad_h = gv * dv_dh + (g_row[j] + gv * (parameter_at(reset_offset, i) + reset_slope * h)) * sg[j]
            x_row[j] = parameter_at(gain, i) * grad_h
            grad_v[j] = parameter_at(beta, i) * grad_h
    elif has_previous:
        for j in range(width):
            i = start + j
            grad_h = grad_v[j] + (g_row[j] + grad_reset[j]) * sg[j]
            x_row[j] = parameter_at(gain, i) * grad_h
            h_previous = previous[j]
            grad_d = grad_h * (one - hard * _fired(h_previous, parameter_at(v_threshold, i), fire_on_equal))
            decayed = parameter_at(beta, i) * h_previous + parameter_at(leak, i)
            grad_reset[j] = grad_h * (parameter_at(reset_offset, i) + reset_slope * decayed)
            grad_v[j] = parameter_at(beta, i) * grad_d
    else:
        for j in range(width):
            x_row[j] = parameter_at(gain, start + j) * (grad_v[j] + (g_row[j] + grad_reset[j]) * sg[j])


@njit(cache=True, error_model="numpy")
def _backward_block(grad_spikes, potential, grad_x, start, stop, beta, gain, leak, v_threshold,
                    reset_mode, reset_delay, fire_on_equal, surrogate, alpha, reset_offset, reset_slope):
    width = stop - start
    grad_v = np.zeros(width, dtype=np.float32)      # dL/dV[t] through step t+1
    grad_reset = np.zeros(width, dtype=np.float32)  # dL/dS[t] through the delayed reset at t+1
    sg = np.empty(width, dtype=np.float32)
    for t in range(potential.shape[0] - 1, -1, -1):
        backward_step(potential[t, start:stop], potential[max(t - 1, 0), start:stop], t > 0,
                      grad_spikes[t, start:stop], grad_x[t, start:stop], grad_v, grad_reset, sg, start, beta, gain,
                      leak, v_threshold, reset_mode, reset_delay, fire_on_equal, surrogate, alpha, reset_offset,
                      reset_slope)


@njit(cache=True, parallel=True)
def _lif_backward_kernel(grad_spikes, potential, beta, gain, leak, v_threshold, reset_mode, reset_delay,
                         fire_on_equal, surrogate, alpha, reset_offset, reset_slope, grad_x):
    neurons = potential.shape[1]
    blocks = (neurons + _BLOCK - 1) // _BLOCK
    for block in prange(blocks):
        start = block * _BLOCK
        stop = min(start + _BLOCK, neurons)
        _backward_block(grad_spikes, potential, grad_x, start, stop, beta, gain, leak, v_threshold,
                        reset_mode, reset_delay, fire_on_equal, surrogate, alpha, reset_offset, reset_slope)


def reset_derivative(reset_mode, v_threshold, v_reset, detach_reset):
    """``(reset_offset, reset_slope)`` with d reset(P, S) / dS = reset_offset + reset_slope * P:
    -v_threshold (subtract), v_reset - P (hard), 0 (none, or a detached reset); the parameters
    as :func:`neuron_parameters` gives them."""
    reset_offset = np.zeros_like(v_threshold) if np.ndim(v_threshold) else np.float32(0.0)
    reset_slope = np.float32(0.0)
    if not detach_reset:
        if reset_mode == RESET_SUBTRACT:
            reset_offset = -v_threshold
        elif reset_mode == RESET_HARD:
            reset_offset = v_reset
            reset_slope = np.float32(-1.0)
    return reset_offset, reset_slope


def lif_backward(grad_spikes, potential, beta, gain, v_threshold, v_reset, v_leak,
                 reset_mode, reset_delay, fire_on_equal, surrogate, alpha, detach_reset):
    """dL/dX ``[T, M]`` of a layer of LIF/IF neurons, from dL/dS ``[T, M]`` and the pre-reset
    potential H ``[T, M]`` that :func:`lif_forward` recorded (``record_potential=True``).

    reset_mode is one of ``RESET_CODES``, surrogate one of ``SURROGATE_CODES``; the other
    arguments are the node's, as given to the forward (scalars or per-neuron arrays, see
    :func:`neuron_parameters`). Neuron parameters are constants: no gradient flows to them.
    """
    grad_spikes = np.ascontiguousarray(grad_spikes, dtype=np.float32)
    potential = np.ascontiguousarray(potential, dtype=np.float32)
    if grad_spikes.shape != potential.shape:
        raise ValueError(f"gradient {grad_spikes.shape} and potential {potential.shape} differ in shape")
    beta, gain, v_threshold, v_reset, leak, _ = neuron_parameters(
        potential.shape[1], beta, gain, v_threshold, v_reset, v_leak, 0.0)
    reset_offset, reset_slope = reset_derivative(reset_mode, v_threshold, v_reset, detach_reset)
    grad_x = np.empty(potential.shape, dtype=np.float32)
    _lif_backward_kernel(
        grad_spikes, potential, beta, gain, leak, v_threshold, int(reset_mode), bool(reset_delay),
        bool(fire_on_equal), int(surrogate), np.float32(alpha), reset_offset, reset_slope, grad_x,
    )
    return grad_x
