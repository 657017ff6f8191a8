"""The current-based LIF layer with recurrent synapses (ir.SynapticNeuron): its forward against an
independent float32 transcription of the IR equations, its BPTT (input, recurrent weight and bias
gradients) against a forward-mode derivation, and its place in training, pruning and resources."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backprop import backward, forward_train, trainable
from onnx_snn_compress.kernels.neuron import RESET_CODES, SURROGATE_CODES
from onnx_snn_compress.kernels.synaptic import recurrent_weight_grads, synaptic_backward, synaptic_forward
from onnx_snn_compress.resources import layer_costs, measure_activity, weight_costs
from onnx_snn_compress.simulate import simulate
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.frontends.onnx_profile import from_model
from onnx_snn_compress.runtime import run as run_onnx
from onnx_snn_compress.shrink import live_synapses

f32 = np.float32
NEURONS = 5


def layer(reset="subtract", reset_delay=False, recurrent=True, detach_reset=False, seed=0, source="x",
          **fields) -> ir.SynapticNeuron:
    rng = np.random.default_rng(seed)
    values = dict(current_decay=0.6, beta=0.8, gain=0.7, v_threshold=1.0, v_reset=0.2, v_leak=0.1, v_init=0.05,
                  reset=reset, reset_delay=reset_delay, fire_on_equal=False, surrogate="atan", alpha=2.0,
                  detach_reset=detach_reset)
    if recurrent:
        values.update(weight=rng.normal(size=(NEURONS, NEURONS)) * 0.6, bias=rng.normal(size=NEURONS) * 0.2)
    values.update(fields)
    return ir.SynapticNeuron("syn", (source,), **values)


def equations(x: np.ndarray, node: ir.SynapticNeuron):
    """ir.SynapticNeuron's equations for ``[T, N, n]``, in float32, one step after the other."""
    beta, gain, thr, v_reset = f32(node.beta), f32(node.gain), f32(node.v_threshold), f32(node.v_reset)
    leak = (f32(1) - beta) * f32(node.v_leak)

    def reset(p, s):
        return {"subtract": p - thr * s, "hard": s * v_reset + (f32(1) - s) * p, "none": p}[node.reset]

    current = np.zeros(x.shape[1:], f32)
    v = np.full(x.shape[1:], f32(node.v_init), f32)
    s_previous = np.zeros(x.shape[1:], f32)
    spikes, potentials = [], []
    for t in range(x.shape[0]):
        current = f32(node.current_decay) * current + x[t]
        if node.recurrent:
            current = current + (s_previous @ node.weight.T + node.bias)
        h = (beta * v + leak) + gain * current
        if node.reset_delay:
            h = reset(h, s_previous)
        s = (h >= thr if node.fire_on_equal else h > thr).astype(f32)
        v = h if node.reset_delay else reset(h, s)
        s_previous = s
        spikes.append(s)
        potentials.append(h)
    return np.stack(spikes), np.stack(potentials)


def run(node, x, record=False):
    return synaptic_forward(x, node.weight, node.bias, node.current_decay, node.beta, node.gain, node.v_threshold,
                            node.v_reset, node.v_leak, node.v_init, RESET_CODES[node.reset], node.reset_delay,
                            node.fire_on_equal, record)


FORMS = list(itertools.product(("subtract", "hard", "none"), (False, True), (False, True)))


@pytest.mark.parametrize("reset, reset_delay, recurrent", FORMS)
def test_forward_follows_the_ir_equations(reset, reset_delay, recurrent):
    node = layer(reset, reset_delay, recurrent)
    x = np.random.default_rng(1).normal(0.4, 0.8, size=(9, 3, NEURONS)).astype(f32)
    spikes, potential, _ = run(node, x, record=True)
    expected_spikes, expected_potential = equations(x, node)
    assert 0.1 < spikes.mean() < 0.9
    np.testing.assert_array_equal(spikes, expected_spikes)
    np.testing.assert_allclose(potential, expected_potential, rtol=0, atol=1e-5)


def test_recurrent_synapses_and_current_decay_change_the_spikes():
    x = np.random.default_rng(2).normal(0.4, 0.8, size=(9, 3, NEURONS)).astype(f32)
    with_both = run(layer(), x)[0]
    assert not np.array_equal(with_both, run(layer(recurrent=False), x)[0])
    assert not np.array_equal(with_both, run(layer(current_decay=0.0), x)[0])


def surrogate(u, alpha):
    return (alpha / 2) / (1 + (np.pi / 2 * alpha * u) ** 2)


def forward_mode(x, grad_spikes, node):
    """dL/dX, dL/dweight and dL/dbias for L = sum(grad_spikes * S), by forward mode: a tangent per
    input entry and per recurrent parameter is pushed through the equations, with dS = sg * dH and
    the spikes of the float32 forward (independent of the kernel's reverse-mode order)."""
    time_steps, samples, neurons = x.shape
    spikes, potential = equations(x, node)
    weight = node.weight.astype(np.float64) if node.recurrent else np.zeros((neurons, neurons))
    sizes = [x.size, weight.size if node.recurrent else 0, neurons if node.recurrent else 0]
    count = sum(sizes)
    tangent_x = np.eye(count)[:, : sizes[0]].reshape(count, *x.shape)
    tangent_w = np.eye(count)[:, sizes[0]: sizes[0] + sizes[1]].reshape(count, *weight.shape) if node.recurrent else None
    tangent_b = np.eye(count)[:, sizes[0] + sizes[1]:] if node.recurrent else None
    thr, v_reset, beta, gain = node.v_threshold, node.v_reset, node.beta, node.gain
    d_current = np.zeros((count, samples, neurons))
    d_v = np.zeros((count, samples, neurons))
    d_s_prev = np.zeros((count, samples, neurons))
    s_prev = np.zeros((samples, neurons))
    v_prev = np.full((samples, neurons), node.v_init, np.float64)
    current = np.zeros((samples, neurons))
    total = np.zeros(count)
    for t in range(time_steps):
        h, s = potential[t].astype(np.float64), spikes[t].astype(np.float64)
        current = node.current_decay * current + x[t]
        d_current = node.current_decay * d_current + tangent_x[:, t]
        if node.recurrent:
            current = current + s_prev @ weight.T + node.bias
            d_current = (d_current + d_s_prev @ weight.T + np.einsum("pjk,nk->pnj", tangent_w, s_prev)
                         + tangent_b[:, None, :])
        p = beta * v_prev + (1 - beta) * node.v_leak + gain * current
        d_p = beta * d_v + gain * d_current
        if node.reset_delay:
            d_reset = 0 if node.detach_reset else 1
            d_h = {"subtract": d_p - d_reset * thr * d_s_prev,
                   "hard": (1 - s_prev) * d_p + d_reset * (v_reset - p) * d_s_prev, "none": d_p}[node.reset]
        else:
            d_h = d_p
        d_s = surrogate(h - thr, node.alpha) * d_h
        if node.reset_delay:
            d_v, v_prev = d_h, h
        else:
            d_reset = 0 if node.detach_reset else 1
            d_v = {"subtract": d_h - d_reset * thr * d_s, "hard": (1 - s) * d_h + d_reset * (v_reset - h) * d_s,
                   "none": d_h}[node.reset]
            v_prev = {"subtract": h - thr * s, "hard": s * v_reset + (1 - s) * h, "none": h}[node.reset]
        total += np.einsum("pnj,nj->p", d_s, grad_spikes[t])
        d_s_prev, s_prev = d_s, s
    grad_x = total[: sizes[0]].reshape(x.shape)
    grad_w = total[sizes[0]: sizes[0] + sizes[1]].reshape(weight.shape) if node.recurrent else None
    grad_b = total[sizes[0] + sizes[1]:] if node.recurrent else None
    return grad_x, grad_w, grad_b


@pytest.mark.parametrize("reset, reset_delay, recurrent", FORMS)
@pytest.mark.parametrize("detach_reset", (False, True))
def test_bptt_matches_forward_mode_derivation(reset, reset_delay, recurrent, detach_reset):
    node = layer(reset, reset_delay, recurrent, detach_reset)
    rng = np.random.default_rng(3)
    x = rng.normal(0.4, 0.8, size=(6, 2, NEURONS)).astype(f32)
    grad_spikes = rng.normal(size=x.shape).astype(f32)
    spikes, potential, current = run(node, x, record=True)
    grad_x = synaptic_backward(grad_spikes, potential, current, node.weight, node.current_decay, node.beta, node.gain,
                               node.v_threshold, node.v_reset, node.v_leak, RESET_CODES[node.reset], node.reset_delay,
                               node.fire_on_equal, SURROGATE_CODES[node.surrogate], node.alpha, node.detach_reset)
    expected_x, expected_w, expected_b = forward_mode(x, grad_spikes, node)
    assert np.abs(expected_x).max() > 0.1
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-5)
    if recurrent:
        grad_w, grad_b = recurrent_weight_grads(grad_x, spikes)
        assert np.abs(expected_w).max() > 0.01
        np.testing.assert_allclose(grad_w, expected_w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grad_b, expected_b, rtol=1e-4, atol=1e-5)


def rnn_graph(seed=0) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph([
        ir.Input("x", shape=(4,)),
        ir.Linear("fc1", ("x",), weight=rng.normal(size=(NEURONS, 4)), bias=rng.normal(size=NEURONS) * 0.1),
        ir.SynapticNeuron(
            "rnn", ("fc1",), current_decay=0.5, beta=0.9, weight=rng.normal(size=(NEURONS, NEURONS)) * 0.5,
            bias=np.zeros(NEURONS), reset="hard"),
        ir.Linear("fc2", ("rnn",), weight=rng.normal(size=(3, NEURONS))),
        ir.Neuron("out", ("fc2",), beta=0.9),
        ir.Readout("readout", ("out",)),
    ])


def test_recurrent_synapses_are_trained_and_pruned_like_a_linear_layer():
    graph = rnn_graph()
    assert [n.name for n in graph.prunable()] == ["fc1", "rnn", "fc2"]
    assert {"rnn.weight", "rnn.bias"} <= set(trainable(graph))
    x = np.random.default_rng(4).random((6, 3, 4)).astype(f32)
    output, tape = forward_train(graph, x, train=False)
    np.testing.assert_array_equal(output, simulate(graph, x).output)
    grads = backward(graph, tape, np.ones_like(output))
    assert grads["rnn.weight"].shape == (NEURONS, NEURONS) and np.abs(grads["rnn.weight"]).max() > 0


def test_recurrent_synapses_are_live_where_a_cut_is_reconnected():
    graph = rnn_graph()
    live = live_synapses(graph)  # every layer of synapses, as compress's --reconnect reads it
    assert set(live) == {"fc1", "rnn", "fc2"} and live["rnn"].all()
    assert all(live[node.name].shape == node.weight.shape for node in graph.prunable())


def test_recurrent_synapses_count_in_every_resource():
    graph = rnn_graph()
    graph["rnn"].weight[0, :] = 0.0  # 5 pruned recurrent synapses
    cost = {c.name: c for c in layer_costs(graph)}["rnn"]
    assert (cost.synapses, cost.synapses_nonzero, cost.macs, cost.macs_nonzero) == (25, 20, 25, 20)
    x = np.random.default_rng(5).random((6, 3, 4)).astype(f32)
    activity = measure_activity(graph, x)
    spikes_sent = simulate(graph, x).spike_counts["rnn"] / 3  # per inference
    assert activity.spiking["rnn"]
    np.testing.assert_allclose(activity.nonzero["rnn"], spikes_sent)
    synops = weight_costs(graph, "synops", activity)["rnn"]
    np.testing.assert_allclose(synops, np.broadcast_to(spikes_sent, (NEURONS, NEURONS)))


@pytest.mark.parametrize("reset, reset_delay, recurrent", FORMS)
def test_profile_scan_body_runs_in_onnxruntime_as_the_simulator_and_reads_back_exactly(reset, reset_delay, recurrent):
    rng = np.random.default_rng(6)
    graph = ir.Graph([ir.Input("x", shape=(4,)),
                      ir.Linear("fc1", ("x",), weight=rng.normal(size=(NEURONS, 4)) * 1.5),
                      layer(reset, reset_delay, recurrent, source="fc1", fire_on_equal=True),
                      ir.Readout("spikes", ("syn",), mode="spikes")])
    model = to_model(graph)  # full_check inside
    assert {f.name for f in model.functions} == {"RecurrentCubaLIF" if recurrent else "CubaLIF"}
    assert from_model(model).same_as(graph)
    for shape in ((7, 3), (12, 1)):  # T and N are dynamic
        x = rng.random((*shape, 4)).astype(f32)
        expected = simulate(graph, x).output
        assert 0 < expected.mean() < 1
        np.testing.assert_array_equal(run_onnx(model, x).output, expected)


def test_removing_dead_neurons_keeps_recurrent_neurons_that_fire_from_their_recurrence():
    from onnx_snn_compress.shrink import remove_dead

    graph = rnn_graph()
    graph["fc1"].weight[0, :] = 0.0  # neuron 0 of the recurrent layer gets no feed-forward input
    graph["fc1"].bias[0] = 0.0
    graph["rnn"].bias[0] = 2.0  # ... and still fires from its recurrent bias
    shrunk, removed = remove_dead(graph)
    assert shrunk.shapes["rnn"] == (NEURONS,) and removed["fc1"] == 0
    x = np.random.default_rng(7).random((6, 3, 4)).astype(f32)
    np.testing.assert_array_equal(simulate(shrunk, x).output, simulate(graph, x).output)


def test_channel_pruning_refuses_recurrent_layers_by_name():
    from onnx_snn_compress.errors import SNNError
    from onnx_snn_compress.pruning import FlatWeights
    from onnx_snn_compress.structured import channel_groups

    graph = rnn_graph()
    with pytest.raises(SNNError, match="--structure channel: the channels of fc1 reach SynapticNeuron 'rnn'"):
        channel_groups(graph, FlatWeights(graph, ["fc1", "fc2"]))
    with pytest.raises(SNNError, match="--structure channel: rnn holds recurrent synapses"):
        channel_groups(graph, FlatWeights(graph, ["rnn", "fc2"]))
