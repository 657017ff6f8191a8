"""Parity with SpikingJelly and snnTorch: the peers' own spikes and BPTT gradients, stored in
tests/fixtures/peers/*.npz (see the README there), reproduced without PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backprop import INPUT_GRAD, TRAIN_FORWARD, TrainContext, backward, forward_train, trainable
from onnx_snn_compress.losses import LOSSES
from onnx_snn_compress.simulate import Trace

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "peers").glob("train_*.npz"))


def build_graph(data) -> ir.Graph:
    return ir.Graph([
        ir.NODE_KINDS[spec["kind"]](name=spec["name"], inputs=spec["inputs"], **spec["fields"],
                                    **{field: data[key] for field, key in spec["params"].items()})
        for spec in json.loads(str(data["arch"]))
    ])


def test_every_peer_and_network_is_covered():
    names = {path.stem for path in FIXTURES}
    assert len(names) == 17
    assert any("_sj_" in n for n in names) and any("_st_" in n for n in names)
    assert any(n.endswith("_mlp") for n in names) and any(n.endswith("_conv") for n in names)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_spikes_loss_and_gradients_match_the_peer(path):
    data = np.load(path)
    graph = build_graph(data)
    output, tape = forward_train(graph, data["x"], train=True)

    # identical spikes, layer by layer
    neurons = graph.neurons()
    assert {f"spikes/{n.name}" for n in neurons} == {k for k in data.files if k.startswith("spikes/")}
    for neuron in neurons:
        assert np.array_equal(tape.spike_counts[neuron.name], data[f"spikes/{neuron.name}"].sum(axis=0))
    spike_trains = {n.name: _spikes(graph, data["x"], n.name) for n in neurons}
    for name, spikes in spike_trains.items():
        assert np.array_equal(spikes, data[f"spikes/{name}"]), name
    assert np.array_equal(output, data["output"])

    loss, grad_output = LOSSES[str(data["loss_kind"])](output, data["target"])
    assert loss == pytest.approx(float(data["loss"]), rel=1e-6, abs=1e-7)
    grads = backward(graph, tape, grad_output, input_grad=True)

    expected = {key[len("grad/"):]: data[key] for key in data.files if key.startswith("grad/")}
    assert set(expected) == {*trainable(graph), "x"}
    for name, peer in expected.items():
        ours = grads[INPUT_GRAD if name == "x" else name]
        assert ours.dtype == np.float32 and ours.shape == peer.shape, name
        assert np.abs(peer).max() > 0, name
        assert np.abs(ours - peer).max() <= 1e-4 * np.abs(peer).max(), (name, np.abs(ours - peer).max())


def _spikes(graph: ir.Graph, x: np.ndarray, neuron: str) -> np.ndarray:
    """The spike train ``[T, N, *shape]`` of one neuron layer, from the engine's training forward."""
    context = TrainContext(True, None, Trace(record_potential=True))
    values = {}
    for node in graph.nodes:
        inputs = [np.ascontiguousarray(x, np.float32)] if isinstance(node, ir.Input) else [values[s] for s in node.inputs]
        values[node.name], _ = TRAIN_FORWARD[node.kind](node, inputs, context)
        if node.name == neuron:
            return values[node.name]
    raise KeyError(neuron)
