"""The Numba simulator and stock onnxruntime agree on exported models.

Float summation order differs between the two (BLAS vs onnxruntime's kernels), so
a spike whose potential sits within an ulp of the threshold may flip: predictions
must be identical and at least 99.99 % of spikes too. With integer-valued
weights and inputs every sum is exact, and every spike must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_with_proto
from onnx_snn_compress.runtime import run, session
from onnx_snn_compress.samples import SAMPLE_MODELS, sample_data_path, sample_model_path
from onnx_snn_compress.simulate import FORWARD, Trace, simulate

from graphs import random_input, snn_graphs

AGREEMENT_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def simulator_spike_trains(graph: ir.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every neuron layer's spike train ``[T, N, ...]`` from the simulator's layer registry."""
    values, trace = {}, Trace()
    for node in graph:
        inputs = [x] if isinstance(node, ir.Input) else [values[s] for s in node.inputs]
        values[node.name] = FORWARD[node.kind](node, inputs, trace)
    return {n.name: values[n.name] for n in graph.neurons()}


def compare(graph: ir.Graph, x: np.ndarray, model=None):
    """(fraction of identical spikes over all layers, simulator result, onnxruntime result)."""
    model = to_model(graph) if model is None else model
    neurons = [n.name for n in graph.neurons()]
    ort_trains = session(model, tuple(neurons)).run(neurons, {graph.input.name: x})
    sim_trains = simulator_spike_trains(graph, x)
    same = total = 0
    for name, ort_train in zip(neurons, ort_trains):
        assert ort_train.shape == sim_trains[name].shape
        same += int(np.sum(ort_train == sim_trains[name]))
        total += ort_train.size
    return same / total, simulate(graph, x), run(model, x, watch=tuple(neurons))


@pytest.mark.parametrize("name", SAMPLE_MODELS)
@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_simulator_agrees_with_onnxruntime_on_the_sample_models(name, encoding):
    graph, model = load_with_proto(sample_model_path(name))
    data = load_for_model(sample_data_path(name), graph.input.shape, graph.num_classes, split="test", encoding=encoding)
    x = data.inputs()
    agreement, sim, ort = compare(graph, x, model)
    assert agreement >= 0.9999
    np.testing.assert_array_equal(sim.predictions(), ort.predictions())
    np.testing.assert_allclose(sim.output, ort.output, atol=1e-6)
    for layer, counts in sim.spike_counts.items():
        assert np.abs(counts - ort.spike_counts[layer]).sum() <= max(1, counts.sum() // 10_000)


@AGREEMENT_SETTINGS
@given(snn_graphs(), st.integers(1, 6), st.integers(1, 5), st.integers(0, 1000))
def test_simulator_agrees_with_onnxruntime_on_random_graphs(graph, time_steps, samples, seed):
    x = random_input(graph, time_steps, samples, seed)
    agreement, sim, ort = compare(graph, x)
    assert agreement >= 0.9999
    np.testing.assert_array_equal(sim.predictions(), ort.predictions())


@AGREEMENT_SETTINGS
@given(snn_graphs(integer=True), st.integers(1, 6), st.integers(1, 5), st.integers(0, 1000))
def test_with_integer_weights_and_inputs_every_spike_is_identical(graph, time_steps, samples, seed):
    x = random_input(graph, time_steps, samples, seed, integer=True)
    agreement, sim, ort = compare(graph, x)
    assert agreement == 1.0
    np.testing.assert_array_equal(sim.output, ort.output)
    for layer, counts in sim.spike_counts.items():
        np.testing.assert_array_equal(counts, ort.spike_counts[layer])
