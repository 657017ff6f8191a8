"""Per-neuron parameters (issue 11, item 4): a Neuron's beta, v_threshold, v_reset, v_leak,
v_init and gain may each be an array over the layer's neurons, end to end."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.backprop import backward, forward_train
from onnx_snn_compress.errors import IRError
from onnx_snn_compress.frontends.onnx_profile import from_model
from onnx_snn_compress.kernels.neuron import RESET_CODES, SURROGATE_CODES, lif_backward, lif_forward
from onnx_snn_compress.kernels.synaptic import synaptic_backward, synaptic_forward
from onnx_snn_compress.resources import summarize
from onnx_snn_compress.runtime import run
from onnx_snn_compress.shrink import remove_dead
from onnx_snn_compress.simulate import simulate

f32 = np.float32
PARAMETERS = dict(beta=[0.5, 0.9, 1.0, 0.7], v_threshold=[0.8, 1.0, 1.2, 0.6], v_reset=[0.0, -0.2, 0.1, 0.0],
                  v_leak=[0.1, 0.0, 0.0, -0.1], v_init=[0.0, 0.3, 0.1, 0.2], gain=[1.0, 0.5, 0.8, 1.2])


def per_neuron(**changes) -> dict:
    return {name: np.array(values, f32) for name, values in {**PARAMETERS, **changes}.items()}


# -- the IR ------------------------------------------------------------------------------------
def test_parameters_may_be_arrays_and_equal_values_collapse_to_the_fast_scalar():
    node = ir.Neuron("lif", ("x",), beta=np.array([0.5, 0.9], f32), v_threshold=np.full(2, 1.5, f32))
    assert node.per_neuron == ("beta",) and node.v_threshold == 1.5 and isinstance(node.v_threshold, float)
    assert not node.is_if and node.parameters() == {}  # constants of the model, not trained arrays


def test_an_if_neuron_has_no_leak_potential_where_beta_is_one():
    node = ir.Neuron("lif", ("x",), beta=np.array([1.0, 0.5], f32), v_leak=0.25)
    assert np.array_equal(node.v_leak, [0.0, 0.25])


@pytest.mark.parametrize("field,value,message", [
    ("beta", [0.5, 1.5], r"Neuron 'lif': beta must lie in \[0, 1\], got per-neuron values from 0.5 to 1.5"),
    ("gain", [1.0, np.nan], r"Neuron 'lif': gain must be finite"),
    ("v_threshold", [], r"Neuron 'lif': v_threshold is an empty array"),
])
def test_a_value_out_of_range_is_one_line_naming_the_node(field, value, message):
    with pytest.raises(IRError, match=message):
        ir.Neuron("lif", ("x",), **{field: np.array(value, f32)})


def test_a_shape_that_does_not_fit_the_layer_is_refused_naming_the_node():
    nodes = [ir.Input("x", shape=(3,)), ir.Neuron("lif", ("x",), beta=np.array([0.5, 0.9], f32)),
             ir.Readout("out", ("lif",))]
    with pytest.raises(IRError, match=r"Neuron 'lif': per-neuron beta of shape \(2,\) does not broadcast over "
                                      r"the layer's neurons \(3,\)"):
        ir.Graph(nodes)


# -- the kernels: a per-neuron layer is each neuron run alone with its own scalars -------------
CASES = list(itertools.product(ir.RESET_MODES, (False, True)))


def neuron_alone(x, values, j, reset, reset_delay, record=True):
    scalars = {k: f32(v[j]) for k, v in values.items()}
    return lif_forward(x[:, j:j + 1], scalars["beta"], scalars["gain"], scalars["v_threshold"], scalars["v_reset"],
                       scalars["v_leak"], scalars["v_init"], RESET_CODES[reset], reset_delay, True, record)


@pytest.mark.parametrize("reset, reset_delay", CASES)
def test_forward_per_neuron_equals_each_neuron_with_its_scalars(reset, reset_delay):
    values = per_neuron()
    samples = 3  # the four neurons' values repeat for every sample
    x = np.random.default_rng(1).normal(0.5, 0.7, size=(12, samples * 4)).astype(f32)
    tiled = {k: np.tile(v, samples) for k, v in values.items()}
    spikes, potential, counts = lif_forward(x, *(values[k] for k in ("beta", "gain", "v_threshold", "v_reset",
                                                                       "v_leak", "v_init")),
                                            RESET_CODES[reset], reset_delay, True, True)
    assert 0.1 < spikes.mean() < 0.9
    for j in range(samples * 4):
        alone, alone_potential, alone_counts = neuron_alone(x, tiled, j, reset, reset_delay)
        assert np.array_equal(spikes[:, j:j + 1], alone) and np.array_equal(potential[:, j:j + 1], alone_potential)
        assert counts[j] == alone_counts[0]


@pytest.mark.parametrize("reset, reset_delay", CASES)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_backward_per_neuron_equals_each_neuron_with_its_scalars(reset, reset_delay, detach_reset):
    values = per_neuron()
    rng = np.random.default_rng(2)
    x = rng.normal(0.5, 0.7, size=(12, 4)).astype(f32)
    grad_spikes = rng.normal(size=x.shape).astype(f32)
    order = ("beta", "gain", "v_threshold", "v_reset", "v_leak")
    _, potential, _ = lif_forward(x, *(values[k] for k in order), values["v_init"], RESET_CODES[reset],
                                  reset_delay, True, True)
    grad = lif_backward(grad_spikes, potential, *(values[k] for k in order), RESET_CODES[reset], reset_delay, True,
                        SURROGATE_CODES["atan"], 2.0, detach_reset)
    assert np.any(grad != 0)
    for j in range(4):
        _, alone_potential, _ = neuron_alone(x, values, j, reset, reset_delay)
        alone = lif_backward(grad_spikes[:, j:j + 1], alone_potential, *(f32(values[k][j]) for k in order),
                             RESET_CODES[reset], reset_delay, True, SURROGATE_CODES["atan"], 2.0, detach_reset)
        assert np.array_equal(grad[:, j:j + 1], alone)


# -- a graph: simulator, training, the profile, onnxruntime, removal ---------------------------
def conv_graph(**neuron) -> ir.Graph:
    """A conv layer with per-channel neurons ([4, 1, 1] over [4, 5, 5]) and a linear layer with per-neuron ones."""
    rng = np.random.default_rng(3)
    channel = {k: v.reshape(4, 1, 1) for k, v in per_neuron(**neuron).items()}
    return ir.Graph([
        ir.Input("x", shape=(2, 5, 5)),
        ir.Conv2d("conv", ("x",), weight=rng.normal(0.1, 0.5, size=(4, 2, 3, 3)), padding=1),
        ir.Neuron("lif1", ("conv",), **channel),
        ir.Flatten("flat", ("lif1",)),
        ir.Linear("fc", ("flat",), weight=rng.normal(0.0, 0.15, size=(4, 100))),
        ir.Neuron("lif2", ("fc",), **per_neuron()),
        ir.Readout("out", ("lif2",), mode="spikes"),
    ])


def test_per_channel_values_apply_to_every_neuron_of_their_channel():
    graph = conv_graph(v_threshold=[0.8, 1e6, 1.2, 1e6])  # channels 1 and 3 can never fire
    x = np.random.default_rng(4).random((6, 2, 2, 5, 5)).astype(f32)
    counts = simulate(graph, x).spike_counts["lif1"]
    assert counts.shape == (4, 5, 5)
    assert np.all(counts[[1, 3]] == 0) and np.all(counts[[0, 2]].sum(axis=(1, 2)) > 0)


def test_profile_round_trip_is_bit_exact_and_onnxruntime_agrees_at_any_t_and_n():
    graph = conv_graph()
    model = to_model(graph)
    onnx.checker.check_model(model, full_check=True)
    assert {f.name for f in model.functions} == {"LIFPerNeuron"}
    assert from_model(model).same_as(graph)
    rng = np.random.default_rng(5)
    for steps, samples in ((6, 3), (9, 1)):
        x = rng.random((steps, samples, 2, 5, 5)).astype(f32)
        expected = simulate(graph, x).output
        assert 0.05 < expected.mean() < 0.95
        assert np.array_equal(run(model, x).output, expected)
    unrolled = to_model(graph, time_steps=6)
    x = rng.random((6, 2, 2, 5, 5)).astype(f32)
    assert np.array_equal(run(unrolled, x).output, simulate(graph, x).output)


def test_training_reaches_the_weights_through_per_neuron_layers():
    graph = conv_graph()
    x = np.random.default_rng(6).random((5, 2, 2, 5, 5)).astype(f32)
    output, tape = forward_train(graph, x)
    grads = backward(graph, tape, np.ones_like(output))
    assert set(grads) == {"conv.weight", "fc.weight"} and np.any(grads["conv.weight"] != 0)


def test_removing_a_channel_removes_its_per_neuron_parameters():
    graph = conv_graph()
    graph["conv"].weight[1] = 0.0  # channel 1: no fan-in, outputs 0, and its neurons never fire on 0
    smaller, removed = remove_dead(graph)
    assert removed == {"conv": 1, "fc": 0}  # the readout's classes stay
    for name in PARAMETERS:
        expected = np.delete(np.array(PARAMETERS[name], f32), 1).reshape(3, 1, 1)
        assert np.array_equal(getattr(smaller["lif1"], name), expected), name
    x = np.random.default_rng(7).random((6, 2, 2, 5, 5)).astype(f32)
    assert np.array_equal(simulate(smaller, x).output, simulate(graph, x).output)


# -- a SynapticNeuron: the same, with a per-neuron current_decay too ---------------------------
SYNAPTIC = dict(PARAMETERS, current_decay=[0.6, 0.0, 0.9, 0.3])


def synaptic_layer(reset="subtract", reset_delay=False, source="x", **changes) -> ir.SynapticNeuron:
    rng = np.random.default_rng(7)
    return ir.SynapticNeuron("syn", (source,), reset=reset, reset_delay=reset_delay,
                             weight=rng.normal(size=(4, 4)) * 0.5, bias=rng.normal(size=4) * 0.1,
                             **{k: np.array(v, f32) for k, v in {**SYNAPTIC, **changes}.items()})


def synaptic_alone(x, node, j, record=True):
    """Neuron j of ``node`` run alone with its own scalars, its recurrent input given as an input."""
    scalars = {k: f32(getattr(node, k)[j]) for k in ir.SynapticNeuron.PARAMETERS}
    return synaptic_forward(x[:, :, j:j + 1], None, None, *(scalars[k] for k in SYNAPTIC_ORDER),
                            RESET_CODES[node.reset], node.reset_delay, node.fire_on_equal, record)


SYNAPTIC_ORDER = ("current_decay", "beta", "gain", "v_threshold", "v_reset", "v_leak", "v_init")


def test_a_synaptic_layer_takes_per_neuron_parameters_and_checks_them_like_a_neuron():
    node = synaptic_layer(gain=[1.0] * 4)
    assert set(node.per_neuron) == set(SYNAPTIC) - {"gain"} and node.gain == 1.0
    with pytest.raises(IRError, match=r"SynapticNeuron 'syn': current_decay must lie in \[0, 1\], got per-neuron"):
        synaptic_layer(current_decay=[0.5, 1.5, 0.0, 0.0])
    uniform = {k: [v[0]] * 4 for k, v in SYNAPTIC.items()}
    with pytest.raises(IRError, match=r"SynapticNeuron 'syn': per-neuron beta of shape \(2,\) does not broadcast"):
        ir.Graph([ir.Input("x", shape=(4,)), synaptic_layer(**{**uniform, "beta": [0.5, 0.9]}),
                  ir.Readout("out", ("syn",))])


@pytest.mark.parametrize("reset, reset_delay", CASES)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_synaptic_per_neuron_forward_and_backward_equal_each_neuron_with_its_scalars(reset, reset_delay,
                                                                                   detach_reset):
    node = synaptic_layer(reset, reset_delay)
    rng = np.random.default_rng(8)
    x = rng.normal(0.3, 0.6, size=(10, 2, 4)).astype(f32)
    params = [getattr(node, k) for k in SYNAPTIC_ORDER]
    codes = (RESET_CODES[reset], reset_delay, node.fire_on_equal)
    spikes, potential, current = synaptic_forward(x, node.weight, node.bias, *params, *codes, True)
    assert 0.0 < spikes.mean() < 1.0
    grad_spikes = rng.normal(size=x.shape).astype(f32)
    # each neuron alone: its input plus the recurrent input the layer gave it (R[t] from S[t-1])
    recurrent = np.concatenate([np.zeros_like(spikes[:1]), spikes[:-1]]) @ node.weight.T + node.bias
    for j in range(4):
        alone, alone_potential, alone_current = synaptic_alone(x + recurrent, node, j)
        # (the layer adds the recurrent input after the decayed current: the same up to rounding)
        assert np.array_equal(spikes[:, :, j:j + 1], alone)
        np.testing.assert_allclose(potential[:, :, j:j + 1], alone_potential, rtol=1e-5, atol=1e-6)
    # without recurrence, bit for bit: every neuron's spikes, potential and gradient are the lone neuron's
    forward = synaptic_forward(x, None, None, *params, *codes, True)
    grad = synaptic_backward(grad_spikes, forward[1], forward[2], None, *params[:-1], *codes,
                             SURROGATE_CODES["atan"], 2.0, detach_reset)
    assert np.any(grad != 0)
    for j in range(4):
        alone, alone_potential, alone_current = synaptic_alone(x, node, j)
        assert np.array_equal(forward[0][:, :, j:j + 1], alone) and np.array_equal(forward[1][:, :, j:j + 1],
                                                                                      alone_potential)
        scalars = [f32(getattr(node, k)[j]) for k in SYNAPTIC_ORDER[:-1]]
        alone = synaptic_backward(grad_spikes[:, :, j:j + 1], alone_potential, alone_current, None, *scalars, *codes,
                                  SURROGATE_CODES["atan"], 2.0, detach_reset)
        assert np.array_equal(grad[:, :, j:j + 1], alone)


def test_synaptic_per_neuron_profile_round_trip_is_bit_exact_onnxruntime_agrees_and_training_reaches_it():
    rng = np.random.default_rng(9)
    graph = ir.Graph([ir.Input("x", shape=(3,)), ir.Linear("fc", ("x",), weight=rng.normal(0.5, 0.8, size=(4, 3))),
                      synaptic_layer(source="fc"), ir.Readout("out", ("syn",), mode="spikes")])
    model = to_model(graph)
    onnx.checker.check_model(model, full_check=True)
    assert {f.name for f in model.functions} == {"RecurrentCubaLIFPerNeuron"}
    assert from_model(model).same_as(graph)
    for steps, samples in ((7, 3), (11, 1)):
        x = rng.random((steps, samples, 3)).astype(f32)
        expected = simulate(graph, x).output
        assert 0.05 < expected.mean() < 0.95
        assert np.array_equal(run(model, x).output, expected)
    output, tape = forward_train(graph, rng.random((5, 2, 3)).astype(f32))
    grads = backward(graph, tape, np.ones_like(output))
    assert set(grads) == {"fc.weight", "syn.weight", "syn.bias"} and np.any(grads["syn.weight"] != 0)
    (entry,) = [layer["neuron"] for layer in json.loads(json.dumps(summarize(graph)))["layers"] if "neuron" in layer]
    assert entry["model"] == "RecurrentCubaLIF" and entry["current_decay"] == {"min": 0.0, "max": f32(0.9), "shape": [4]}
