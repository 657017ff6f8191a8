"""A Neuron and the MaxPool2d that alone reads its spikes, trained fused (kernels/neuron_pool.py):
bit for bit the two nodes' kernels apart, in the kernels and through the whole graph."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphs
from onnx_snn_compress import backprop, ir, simulate
from onnx_snn_compress.backprop import backward, forward_train, fused_pools
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.kernels.neuron import lif_backward, lif_forward
from onnx_snn_compress.kernels.neuron_pool import lif_maxpool_backward, lif_maxpool_forward
from onnx_snn_compress.kernels.pool import maxpool2d_backward, maxpool2d_forward_indices, pool2d_output_size
from onnx_snn_compress.samples import sample_model_path

GEOMETRIES = [  # height, width, (kh, kw, sh, sw, ph, pw)
    (6, 4, (2, 2, 2, 2, 0, 0)),  # the 2x2 pooling of even planes: its two-pass form
    (7, 5, (3, 3, 2, 2, 1, 1)),  # padded windows
    (5, 6, (2, 2, 1, 1, 0, 0)),  # overlapping windows: gradients add up
    (7, 7, (2, 2, 2, 2, 0, 0)),  # odd planes: the last row and column are not pooled
]
CASES = list(itertools.product(range(3), [False, True], [False, True], range(4)))  # reset, delay, detach, surrogate


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_fused_kernels_give_the_bits_of_the_neuron_and_pooling_kernels_apart(case):
    reset, delay, detach, surrogate = CASES[case]
    rng = np.random.default_rng(case)
    height, width, window = GEOMETRIES[case % len(GEOMETRIES)]
    static, per_neuron, fire_on_equal = case % 2 == 0, case % 3 == 0, case % 5 < 2
    time_steps, samples, channels = 5, 3, 2
    neurons = samples * channels * height * width
    x = (rng.standard_normal((1 if static else time_steps, neurons)) * 0.8 + 0.3).astype(np.float32)
    if fire_on_equal:  # some potentials exactly at the threshold
        x[:, ::7] = 1.0
    beta = rng.uniform(0.3, 0.95, (channels, height, width)).astype(np.float32) if per_neuron else 0.8
    threshold = rng.uniform(0.5, 1.5, (channels, 1, 1)).astype(np.float32) if per_neuron else 1.0
    neuron = (beta, 1.1, threshold, 0.1, 0.05, 0.2, reset, delay, fire_on_equal)
    pool = (*window, pool2d_output_size(height, window[0], window[2], window[4]),
            pool2d_output_size(width, window[1], window[3], window[5]))

    spikes, potential, counts = lif_forward(x, *neuron, True, time_steps)
    pooled, where = maxpool2d_forward_indices(spikes.reshape(-1, channels, height, width), *pool)
    fused, fused_counts = lif_maxpool_forward(x, time_steps, height, width, pool, *neuron)
    assert np.array_equal(bits(fused), bits(pooled.reshape(time_steps, -1)))
    assert np.array_equal(fused_counts, counts)

    grad = rng.standard_normal(pooled.shape).astype(np.float32)
    grad_spikes = maxpool2d_backward(grad, where, height, width).reshape(time_steps, -1)
    expected = lif_backward(grad_spikes, potential, *neuron[:5], reset, delay, fire_on_equal, surrogate, 2.0, detach)
    if static:  # the gradient of an input read at every step: its sum over the steps
        expected = expected.sum(axis=0, keepdims=True)
    grad_x = lif_maxpool_backward(x, grad.reshape(time_steps, -1), height, width, pool, *neuron, surrogate, 2.0,
                                  detach)
    assert grad_x.shape == expected.shape
    assert np.array_equal(bits(grad_x), bits(expected))


def test_the_fused_kernels_refuse_an_input_that_is_not_whole_planes():
    pool = (2, 2, 2, 2, 0, 0, 2, 2)
    with pytest.raises(ValueError, match="multiple of 4 x 4"):
        lif_maxpool_forward(np.zeros((1, 20), np.float32), 3, 4, 4, pool, 0.9, 1.0, 1.0, 0.0, 0.0, 0.0, 0, False, True)
    with pytest.raises(ValueError, match="pooled gradient"):
        lif_maxpool_backward(np.zeros((1, 32), np.float32), np.zeros((3, 4), np.float32), 4, 4, pool,
                             0.9, 1.0, 1.0, 0.0, 0.0, 0.0, 0, False, True, 0, 2.0, False)


def train_step_bits(graph: ir.Graph, x: np.ndarray, seed: int, train: bool, pairs: dict):
    """Output, spike counts and gradients of one training step with ``pairs`` fused."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backprop, "fused_pools", lambda *_: pairs)
        work = graph.copy()
        output, tape = forward_train(work, x, np.random.default_rng(seed), train=train)
        assert set(tape.pooled) == set(pairs)
        grads = backward(work, tape, np.random.default_rng(seed).normal(size=output.shape).astype(np.float32))
    return output, tape.spike_counts, grads


def assert_same_step(graph: ir.Graph, x: np.ndarray, seed: int, train: bool):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simulate, "FUSED_POOL_BYTES", 0)  # every pair fuses, however small
        pairs = fused_pools(graph, *x.shape[:2])
    (output, counts, grads), (plain_output, plain_counts, plain_grads) = (
        train_step_bits(graph, x, seed, train, fused) for fused in (pairs, {}))
    assert np.array_equal(bits(output), bits(plain_output))
    assert counts.keys() == plain_counts.keys() and all(np.array_equal(counts[n], plain_counts[n]) for n in counts)
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        assert np.array_equal(bits(grad), bits(plain_grads[name])), name
    return pairs


@settings(max_examples=40, deadline=None)
@given(graph=graphs.snn_graphs(), seed=st.integers(0, 2**16), static=st.booleans(), train=st.booleans())
def test_a_graph_trains_to_the_same_bits_with_its_neuron_and_pooling_fused(graph, seed, static, train):
    x = graphs.random_input(graph, 4, 3, seed)
    assert_same_step(graph, np.repeat(x[:1], 4, axis=0) if static else x, seed, train)


@pytest.mark.parametrize("static", [True, False])
def test_the_conv_sample_trains_to_the_same_bits_with_both_pairs_fused(static):
    graph = load_model(sample_model_path("digits_conv"))
    x = graphs.random_input(graph, 5, 4, seed=1)
    if static:
        x = np.repeat(x[:1], 5, axis=0)
    assert set(assert_same_step(graph, x, seed=2, train=True)) == {"lif1", "lif2"}


@pytest.mark.parametrize("static", [True, False])
def test_the_simulator_runs_the_pairs_fused_to_the_same_bits(static, monkeypatch):
    graph = load_model(sample_model_path("digits_conv"))
    x = graphs.random_input(graph, 5, 4, seed=3)
    if static:
        x = np.repeat(x[:1], 5, axis=0)
    monkeypatch.setattr(simulate, "FUSED_POOL_BYTES", 0)
    calls = []
    monkeypatch.setattr(simulate, "neuron_maxpool", lambda *args: calls.append(args[0].name) or simulate_pair(*args))
    fused = simulate.Trace()
    output = simulate.forward(graph, x, fused)
    plain = simulate.Trace(record_potential=True)  # (the potentials are the neuron forward's alone)
    assert np.array_equal(bits(output), bits(simulate.forward(graph, x, plain)))
    assert sorted(calls) == ["lif1", "lif2"]
    assert fused.spike_counts.keys() == plain.spike_counts.keys()
    assert all(np.array_equal(fused.spike_counts[n], plain.spike_counts[n]) for n in plain.spike_counts)


simulate_pair = simulate.neuron_maxpool


def test_only_a_neuron_read_by_nothing_but_a_max_pooling_fuses_and_only_from_the_size_up():
    graph = load_model(sample_model_path("digits_conv"))  # lif1 -> pool1, lif2 -> pool2: 1 MB each at T 8, N 64
    assert fused_pools(graph, 8, 64) == {}
    assert set(fused_pools(graph, 8, 512)) == {"lif1", "lif2"}  # 8 MB each
    pools = fused_pools(graph, 8, 512)
    assert all(isinstance(pools[name], ir.MaxPool2d) and pools[name].inputs[0] == name for name in pools)
    neurons = {node.name for node in graph.nodes if isinstance(node, ir.Neuron)}
    assert set(pools) < neurons  # lif3 and lif4 feed Linear layers
