"""Conv1d and 1-D pooling over ``[T, N, C, L]`` (issue 11, item 5): the IR, the simulator and
training (the 2-D kernels on ``[N, C, 1, L]`` views), resources, pruning and removal, the profile
(real 1-D Conv / MaxPool / AveragePool on ``[T*N, C, L]``), NIR, and the real exports of
SpikingJelly (``sj_conv1d``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.backprop import backward, forward_train
from onnx_snn_compress.errors import IRError
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.frontends.onnx_profile import from_model
from onnx_snn_compress.pruning import FlatWeights
from onnx_snn_compress.resources import layer_costs
from onnx_snn_compress.runtime import run
from onnx_snn_compress.shrink import remove_dead
from onnx_snn_compress.simulate import simulate
from onnx_snn_compress.structured import channel_groups

f32 = np.float32
FIXTURES = Path(__file__).parent / "fixtures" / "interop"
CASES = FIXTURES / "cases"


def conv1d_reference(x, weight, bias, stride, padding, dilation):
    """``[B, C, L] -> [B, O, L_out]`` by the definition (float64, explicit taps)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding)))
    out_channels, _, k = weight.shape
    length = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((x.shape[0], out_channels, length))
    for o in range(out_channels):
        for position in range(length):
            taps = x[:, :, position * stride + dilation * np.arange(k)]
            y[:, o, position] = (taps * weight[o]).sum(axis=(1, 2)) + (0.0 if bias is None else bias[o])
    return y


def sequence_graph(stride=1, padding=1, dilation=1) -> ir.Graph:
    rng = np.random.default_rng(0)
    length = (12 + 2 * padding - dilation * 2 - 1) // stride + 1  # after the conv (k = 3); the max pool halves it
    return ir.Graph([
        ir.Input("x", shape=(2, 12)),
        ir.Conv1d("conv", ("x",), weight=rng.normal(0.2, 0.6, size=(4, 2, 3)), bias=rng.normal(0.1, 0.2, size=4),
                  stride=stride, padding=padding, dilation=dilation),
        ir.Neuron("lif1", ("conv",), beta=0.8),
        ir.MaxPool1d("maxpool", ("lif1",), kernel_size=2),
        ir.AvgPool1d("avgpool", ("maxpool",), kernel_size=3, stride=1, padding=1),
        ir.Flatten("flat", ("avgpool",)),
        ir.Linear("fc", ("flat",), weight=rng.normal(0.05, 0.4, size=(3, 4 * (length // 2)))),
        ir.Neuron("lif2", ("fc",), beta=0.9),
        ir.Readout("out", ("lif2",), mode="spikes"),
    ])


def test_conv1d_takes_pytorchs_arguments_and_keeps_graph_shapes_c_by_l():
    conv = ir.Conv1d("conv", ("x",), weight=np.ones((4, 2, 3), f32), stride=2, padding=1, dilation=1)
    assert conv.weight.shape == (4, 2, 1, 3) and conv.stride == (1, 2) and conv.padding == (0, 1)
    assert conv.output_shape([(2, 9)]) == (4, 5)
    assert ir.MaxPool1d("p", ("x",), kernel_size=2).output_shape([(4, 9)]) == (4, 4)
    with pytest.raises(IRError, match=r"Conv1d 'conv' expects input \(C, L\), got \(2, 3, 9\)"):
        conv.output_shape([(2, 3, 9)])
    with pytest.raises(IRError, match=r"conv.stride of a 1-D layer must be one int"):
        ir.Conv1d("conv", ("x",), weight=np.ones((4, 2, 3), f32), stride=(2, 2))


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_the_simulated_conv1d_is_the_textbook_one(stride, padding, dilation):
    graph = sequence_graph(stride, padding, dilation)
    conv = graph["conv"]
    x = np.random.default_rng(1).random((3, 2, 2, 12)).astype(f32)
    from onnx_snn_compress.simulate import FORWARD, Trace

    y = FORWARD["Conv1d"](conv, [x], Trace())
    expected = np.stack([conv1d_reference(x[t], conv.weight[:, :, 0, :], conv.bias, stride, padding, dilation)
                         for t in range(3)])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_training_gradients_of_a_conv1d_are_those_of_the_conv2d_over_one_row():
    graph = sequence_graph()
    planar = ir.Graph([
        ir.Input("x", shape=(2, 1, 12)),
        ir.Conv2d("conv", ("x",), weight=graph["conv"].weight, bias=graph["conv"].bias, padding=(0, 1)),
        ir.Neuron("lif1", ("conv",), beta=0.8),
        ir.MaxPool2d("maxpool", ("lif1",), kernel_size=(1, 2)),
        ir.AvgPool2d("avgpool", ("maxpool",), kernel_size=(1, 3), stride=1, padding=(0, 1)),
        ir.Flatten("flat", ("avgpool",)), *graph.nodes[6:],
    ])
    x = np.random.default_rng(2).random((5, 3, 2, 12)).astype(f32)
    output, tape = forward_train(graph, x)
    planar_output, planar_tape = forward_train(planar, x[:, :, :, None, :])
    assert np.array_equal(output, planar_output) and 0.05 < output.mean() < 0.95
    grads = backward(graph, tape, np.ones_like(output), input_grad=False)
    planar_grads = backward(planar, planar_tape, np.ones_like(output))
    assert grads.keys() == planar_grads.keys() and np.any(grads["conv.weight"] != 0)
    for name in grads:
        assert np.array_equal(grads[name], planar_grads[name]), name


def test_resources_count_the_1d_taps_on_real_positions():
    graph = sequence_graph()
    conv = next(c for c in layer_costs(graph) if c.name == "conv")
    assert conv.synapses == 4 * 2 * 3
    # every tap meets 12 positions but the edge taps lose one to the padding: 2 * 4 * (11 + 12 + 11)
    assert conv.macs == 4 * 2 * (11 + 12 + 11)


def test_profile_writes_real_1d_ops_reads_them_back_and_onnxruntime_agrees():
    graph = sequence_graph()
    model = to_model(graph)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type: n for n in model.graph.node}
    weight = next(t for t in model.graph.initializer if t.name == "conv.weight")
    assert list(weight.dims) == [4, 2, 3] and [a.ints for a in ops["Conv"].attribute if a.name == "pads"] == [[1, 1]]
    assert [a.ints for a in ops["MaxPool"].attribute if a.name == "kernel_shape"] == [[2]]
    assert [a.ints for a in ops["AveragePool"].attribute if a.name == "kernel_shape"] == [[3]]
    assert from_model(model).same_as(graph)
    x = np.random.default_rng(3).random((7, 2, 2, 12)).astype(f32)
    expected = simulate(graph, x).output
    assert np.array_equal(run(model, x).output, expected) and 0.05 < expected.mean() < 0.95


def test_a_batchnorm_over_c_by_l_runs_trains_and_exports():
    rng = np.random.default_rng(5)
    graph = ir.Graph([
        ir.Input("x", shape=(2, 12)),
        ir.Conv1d("conv", ("x",), weight=rng.normal(0.2, 0.6, size=(4, 2, 3)), padding=1),
        ir.BatchNorm("bn", ("conv",), weight=rng.uniform(0.5, 1.5, 4), bias=rng.normal(0.3, 0.2, 4),
                     running_mean=rng.normal(0.0, 0.2, 4), running_var=rng.uniform(0.5, 2.0, 4)),
        ir.Neuron("lif1", ("bn",), beta=0.8),
        ir.Flatten("flat", ("lif1",)),
        ir.Linear("fc", ("flat",), weight=rng.normal(0.05, 0.3, size=(3, 48))),
        ir.Neuron("lif2", ("fc",), beta=0.9),
        ir.Readout("out", ("lif2",), mode="spikes"),
    ])
    x = rng.random((6, 3, 2, 12)).astype(f32)
    expected = simulate(graph, x).output
    assert 0.05 < expected.mean() < 0.95
    model = to_model(graph)
    assert from_model(model).same_as(graph) and np.array_equal(run(model, x).output, expected)
    output, tape = forward_train(graph, x)
    assert np.any(backward(graph, tape, np.ones_like(output))["bn.weight"] != 0)


def test_structured_pruning_and_removal_act_on_conv1d_channels():
    graph = sequence_graph()
    flat = FlatWeights(graph, ["conv", "fc"])
    groups = channel_groups(graph, flat)
    assert len(groups) == 4  # one per conv channel (fc feeds the readout: its classes stay)
    assert all(layer == "conv" and len(g) == 2 * 3 + 3 * 6 for layer, g in groups)  # fan-in, fc columns of 6 positions
    graph["conv"].weight[2] = 0.0
    graph["fc"].weight[:, 12:18] = 0.0  # channel 2's fan-out (flattened [4, 6]: positions 12..17)
    smaller, removed = remove_dead(graph)
    assert removed["conv"] == 1 and smaller.shapes["conv"] == (3, 12) and smaller["fc"].weight.shape == (3, 18)
    x = np.random.default_rng(4).random((6, 2, 2, 12)).astype(f32)
    assert np.array_equal(simulate(smaller, x).output, simulate(graph, x).output)


# -- the real export: SpikingJelly Conv1d -> LIF -> Flatten -> Linear -> LIF --------------------
SOURCES = {"sj_conv1d.dynamo.onnx": {}, "sj_conv1d.nir": dict(framework="spikingjelly", dt=1e-4)}


@pytest.mark.parametrize("file", sorted(SOURCES))
def test_spikingjelly_conv1d_reproduces_its_spikes_in_the_simulator_and_onnxruntime(file):
    if file.endswith(".nir"):
        pytest.importorskip("nir")
    expected = np.load(CASES / "sj_conv1d.expected.npz", allow_pickle=False)
    assert json.loads(str(expected["info"]))["kind"] == "conv1d"
    x, spikes = expected["x"], expected["spikes"]
    graph = load_model(CASES / file, **SOURCES[file])
    assert isinstance(graph.nodes[1], ir.Conv1d) and graph.shapes[graph.nodes[1].name] == (4, 8)
    assert np.array_equal(simulate(graph, x).output, spikes) and spikes.sum() > 0
    model = to_model(graph)
    assert np.array_equal(run(model, x).output, spikes)
    # another N and another T: the first sample, the first steps (the network is causal)
    assert np.array_equal(run(model, x[:4, :1]).output, spikes[:4, :1])
    assert np.array_equal(simulate(graph, x[:3, 1:]).output, spikes[:3, 1:])


def test_a_torch_onnx_export_with_1d_pooling_reproduces_pytorchs_spikes():
    """Conv1d, MaxPool1d, AvgPool1d (tests/fixtures/interop/make_pool1d_fixture.py)."""
    expected = np.load(FIXTURES / "pool1d_mlp.npz", allow_pickle=False)
    x, spikes = expected["x"], expected["spikes"]
    graph = load_model(FIXTURES / "pool1d_mlp.legacy.onnx")
    assert [type(n) for n in graph.nodes[1:5]] == [ir.Conv1d, ir.Neuron, ir.MaxPool1d, ir.AvgPool1d]
    assert graph.shapes[graph.nodes[4].name] == (4, 6)
    result = simulate(graph, x)
    assert np.array_equal(result.output, spikes) and min(result.firing_rates().values()) > 0.1
    model = to_model(graph)
    assert np.array_equal(run(model, x).output, spikes)
    assert np.array_equal(run(model, x[:4, :1]).output, spikes[:4, :1])


def test_spikingjelly_conv1d_round_trips_through_nir(tmp_path):
    pytest.importorskip("nir")
    from onnx_snn_compress.backends import nir as nir_backend
    from onnx_snn_compress.frontends.nir import read_nir

    graph = load_model(CASES / "sj_conv1d.dynamo.onnx")
    nir_backend.save(graph, tmp_path / "model.nir")
    assert read_nir(tmp_path / "model.nir").same_as(graph)


def test_spikingjelly_conv1d_compresses_into_a_profile_model_with_1d_ops(tmp_path):
    from onnx_snn_compress.api import compress

    expected = np.load(CASES / "sj_conv1d.expected.npz", allow_pickle=False)
    samples = np.concatenate([expected["x"].transpose(1, 0, 2, 3)] * 8)  # [N, T, C, L]: data with their own T
    labels = np.random.default_rng(0).integers(0, 4, len(samples))
    np.savez(tmp_path / "data.npz", x=samples, y=labels, x_val=samples, y_val=labels, x_test=samples, y_test=labels)
    compress(str(CASES / "sj_conv1d.dynamo.onnx"), data=tmp_path / "data.npz", budget=[0.5], steps_per_budget=2,
             eval_every=1, out=tmp_path / "out", method="magnitude", structure="channel", remove_dead=True,
             prune=["n.seq.0", "n.seq.3"])  # the conv (an input layer) is not pruned unless named
    model = onnx.load(str(tmp_path / "out" / "budget_0.5" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"]
    assert [a.ints for a in conv.attribute if a.name == "kernel_shape"] == [[3]]
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    assert list(weight.dims[1:]) == [2, 3]  # the user's [out, in, k] layout, with dead channels removed


def test_a_1d_layer_with_the_wrong_input_names_itself_and_its_c_l_shape():
    conv = ir.Conv1d("conv", ("x",), weight=np.ones((4, 2, 3), np.float32))
    with pytest.raises(IRError, match=r"^Conv1d 'conv' expects input \(2, L\), got \(3, 12\)$"):
        ir.Graph([ir.Input("x", shape=(3, 12)), conv, ir.Neuron("lif", ("conv",)), ir.Readout("out", ("lif",))])
    pool = ir.MaxPool1d("pool", ("x",), kernel_size=5)
    with pytest.raises(IRError, match=r"^MaxPool1d 'pool': kernel larger than the padded input \(3, 4\)$"):
        ir.Graph([ir.Input("x", shape=(3, 4)), pool, ir.Neuron("lif", ("pool",)), ir.Readout("out", ("lif",))])
