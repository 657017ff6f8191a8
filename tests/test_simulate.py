"""The forward simulator and its kernels, checked against the plain numpy reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import reference
from onnx_snn_compress import ir
from onnx_snn_compress.errors import DataError
from onnx_snn_compress.kernels.batchnorm import batchnorm_eval_forward
from onnx_snn_compress.kernels.conv import conv2d_forward, conv2d_output_size
from onnx_snn_compress.kernels.linear import linear_forward
from onnx_snn_compress.kernels.neuron import RESET_CODES, lif_forward
from onnx_snn_compress.kernels.pool import avgpool2d_forward, maxpool2d_forward, pool2d_output_size
from onnx_snn_compress.kernels.readout import leaky_readout_forward, rate_readout_forward
from onnx_snn_compress.simulate import FORWARD, SimulationResult, Trace, forward, simulate

f32 = np.float32
KERNEL_SETTINGS = settings(max_examples=25, deadline=None)


def run_neuron(x, node: ir.Neuron, record_potential=True):
    return lif_forward(
        x, f32(node.beta), f32(node.gain), f32(node.v_threshold), f32(node.v_reset), f32(node.v_leak),
        f32(node.v_init), RESET_CODES[node.reset], node.reset_delay, node.fire_on_equal, record_potential,
    )


def close(actual, expected, scale=1.0):
    """float32 result vs float64 reference: equal up to float32 rounding of sums of ~scale."""
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


# -- neuron ----------------------------------------------------------------------------

NEURON_VARIANTS = list(itertools.product(RESET_CODES, (False, True), (False, True), ("IF", "LIF")))


def variant_inputs():
    rng = np.random.default_rng(7)
    # Multiples of 1/4 (with dyadic parameters) land H exactly on the threshold now and then,
    # so > and >= differ; the other half is generic.
    x = (rng.integers(-2, 7, size=(12, 300)) / 4).astype(np.float32)
    x[:, 150:] = rng.normal(0.4, 0.8, size=(12, 150)).astype(np.float32)
    return x


def variant_neuron(reset, reset_delay, fire_on_equal, model):
    return ir.Neuron(
        "n", ("x",), beta=1.0 if model == "IF" else 0.5, v_threshold=1.0, v_reset=-0.5,
        v_leak=0.5 if model == "LIF" else 0.0, v_init=0.0, reset=reset, reset_delay=reset_delay,
        fire_on_equal=fire_on_equal,
    )


@pytest.mark.parametrize("reset, reset_delay, fire_on_equal, model", NEURON_VARIANTS)
def test_neuron_matches_reference_exactly_in_every_variant(reset, reset_delay, fire_on_equal, model):
    x = variant_inputs()
    node = variant_neuron(reset, reset_delay, fire_on_equal, model)
    spikes, potential, counts = run_neuron(x, node)
    expected_spikes, expected_potential = reference.neuron(x, node)
    assert spikes.dtype == potential.dtype == np.float32 and counts.dtype == np.int64
    assert np.array_equal(spikes, expected_spikes)
    assert np.array_equal(potential, expected_potential)
    assert np.array_equal(counts, expected_spikes.sum(axis=0))
    assert 0 < spikes.mean() < 1
    assert np.any(potential[:, :150] == node.v_threshold)


def test_neuron_variants_really_differ():
    """Guards the variant test above: on its data every attribute changes the LIF spike train,
    except reset_delay when there is no reset to delay."""
    x = variant_inputs()
    trains = {
        variant: run_neuron(x, variant_neuron(*variant, "LIF"))[0].tobytes()
        for variant in itertools.product(RESET_CODES, (False, True), (False, True))
    }
    assert len(set(trains.values())) == len(trains) - 2
    assert trains["none", False, True] == trains["none", True, True]


def test_neuron_fires_on_exact_threshold_only_with_fire_on_equal():
    x = np.full((2, 1), 0.5, dtype=np.float32)
    for fire_on_equal, expected in ((True, [0, 1]), (False, [0, 0])):
        spikes, _, _ = run_neuron(x, ir.Neuron("n", ("x",), fire_on_equal=fire_on_equal))
        assert spikes[:, 0].tolist() == expected


def test_neuron_reset_delay_applies_the_reset_one_step_later():
    x = np.array([[1.5], [0.0], [0.0]], dtype=np.float32)

    def potential(**attributes):
        return run_neuron(x, ir.Neuron("n", ("x",), beta=0.5, **attributes))[1][:, 0].tolist()

    assert potential(reset="subtract") == [1.5, 0.25, 0.125]
    assert potential(reset="subtract", reset_delay=True) == [1.5, -0.25, -0.125]
    assert potential(reset="hard", v_reset=-1.0) == [1.5, -0.5, -0.25]
    assert potential(reset="hard", v_reset=-1.0, reset_delay=True) == [1.5, -1.0, -0.5]


def test_neuron_arithmetic_stays_in_float32():
    """A float64 evaluation of the same dynamics differs on this data; the kernel must not."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.0, size=(40, 2000)).astype(np.float32)
    node = ir.Neuron("n", ("x",), beta=0.9, gain=0.1, v_threshold=0.7, v_leak=0.3, reset="subtract")
    _, potential, _ = run_neuron(x, node)
    _, expected = reference.neuron(x, node)
    assert np.array_equal(potential, expected)

    beta, gain, leak = np.float64(f32(0.9)), np.float64(f32(0.1)), (1 - np.float64(f32(0.9))) * np.float64(f32(0.3))
    v, wide = np.zeros(x.shape[1]), []
    for t in range(x.shape[0]):
        h = beta * v + leak + gain * x[t].astype(np.float64)
        v = h - np.float64(f32(0.7)) * (h >= np.float64(f32(0.7)))
        wide.append(h)
    assert not np.array_equal(np.float32(wide), expected)


def test_neuron_potential_is_recorded_only_on_request():
    x = np.random.default_rng(0).normal(size=(5, 1000)).astype(np.float32)
    node = ir.Neuron("n", ("x",), beta=0.5)
    spikes, potential, counts = run_neuron(x, node, record_potential=False)
    recorded_spikes, recorded, recorded_counts = run_neuron(x, node, record_potential=True)
    assert potential.shape == (0, 1000) and recorded.shape == (5, 1000)
    assert np.array_equal(spikes, recorded_spikes) and np.array_equal(counts, recorded_counts)


neuron_parameters = st.fixed_dictionaries({
    "beta": st.sampled_from([1.0, 0.0, 0.5, 0.9, 0.95, 0.3]),
    "gain": st.floats(0.05, 2.0),
    "v_threshold": st.floats(0.1, 3.0),
    "v_reset": st.floats(-1.0, 0.5),
    "v_leak": st.floats(-0.5, 0.5),
    "v_init": st.floats(-0.5, 0.5),
    "reset": st.sampled_from(list(RESET_CODES)),
    "reset_delay": st.booleans(),
    "fire_on_equal": st.booleans(),
})


@KERNEL_SETTINGS
@given(parameters=neuron_parameters, time_steps=st.integers(1, 9), neurons=st.integers(1, 1100),
       seed=st.integers(0, 2**32 - 1))
def test_neuron_property_matches_reference_exactly(parameters, time_steps, neurons, seed):
    x = np.random.default_rng(seed).normal(0.3, 1.5, size=(time_steps, neurons)).astype(np.float32)
    node = ir.Neuron("n", ("x",), **parameters)
    spikes, potential, counts = run_neuron(x, node)
    expected_spikes, expected_potential = reference.neuron(x, node)
    assert np.array_equal(spikes, expected_spikes)
    assert np.array_equal(potential, expected_potential)
    assert np.array_equal(counts, expected_spikes.sum(axis=0).astype(np.int64))


# -- stateless layers ----------------------------------------------------------------

@KERNEL_SETTINGS
@given(rows=st.integers(1, 20), in_features=st.integers(1, 40), out_features=st.integers(1, 30),
       with_bias=st.booleans(), density=st.sampled_from([0.0, 0.2, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_reference(rows, in_features, out_features, with_bias, density, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, in_features)) * (rng.random((rows, in_features)) < density)).astype(np.float32)
    weight = rng.normal(size=(out_features, in_features)).astype(np.float32)
    bias = rng.normal(size=out_features).astype(np.float32) if with_bias else None
    y = linear_forward(x, np.ascontiguousarray(weight.T), np.zeros(0, np.float32) if bias is None else bias)
    close(y, reference.linear(x, weight, bias), scale=np.sqrt(in_features))


@pytest.mark.parametrize("outputs", [16, 33, 128])
def test_linear_sums_every_output_in_input_order_bit_for_bit(outputs):
    """Listing a row's nonzero inputs first (kernels/events.py) and adding them four at a time
    must keep the plain loop's sums: +0.0, then ``x[k] * w[k]`` for k ascending, then the bias."""
    rng = np.random.default_rng(3)
    rows, in_features = 41, 203
    x = (rng.random((rows, in_features)) < 0.3).astype(np.float32)  # spikes
    x[1::3] *= rng.normal(size=(len(x[1::3]), in_features)).astype(np.float32)  # any values
    x[2::3] = np.where(rng.random((len(x[2::3]), in_features)) < 0.9, x[2::3], 0)
    x[::7] = 0  # rows without events
    x[5, :-1] = 0  # one event, the last input
    weight_t = rng.normal(size=(in_features, outputs)).astype(np.float32)
    bias = rng.normal(size=outputs).astype(np.float32)
    sums = np.zeros((rows, outputs), np.float32)
    for k in range(in_features):  # float32 products and sums, rounded one by one
        sums = sums + x[:, k, None] * weight_t[k]
    assert linear_forward(x, weight_t, bias).tobytes() == (sums + bias).tobytes()
    assert linear_forward(x, weight_t, np.zeros(0, np.float32)).tobytes() == sums.tobytes()


def test_linear_rows_do_not_depend_on_the_number_of_rows():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 200)).astype(np.float32)
    weight_t = rng.normal(size=(200, 64)).astype(np.float32)
    bias = rng.normal(size=64).astype(np.float32)
    full = linear_forward(x, weight_t, bias)
    for rows in (1, 2, 7, 9, 64):
        assert np.array_equal(linear_forward(x[:rows], weight_t, bias), full[:rows])


conv_cases = st.fixed_dictionaries({
    "batch": st.integers(1, 3),
    "groups": st.sampled_from([1, 1, 2, 3]),
    "in_per_group": st.integers(1, 3),
    "out_per_group": st.integers(1, 3),
    "size": st.tuples(st.integers(3, 9), st.integers(3, 9)),
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "dilation": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "with_bias": st.booleans(),
    "seed": st.integers(0, 2**32 - 1),
})


def make_conv(case):
    rng = np.random.default_rng(case["seed"])
    channels = case["groups"] * case["in_per_group"]
    x = rng.normal(size=(case["batch"], channels, *case["size"])).astype(np.float32)
    weight = rng.normal(size=(case["groups"] * case["out_per_group"], case["in_per_group"], *case["kernel"]))
    bias = rng.normal(size=weight.shape[0]).astype(np.float32) if case["with_bias"] else None
    geometry = (case["stride"], case["padding"], case["dilation"], case["groups"])
    return x, weight.astype(np.float32), bias, geometry


def conv_fits(case):
    return all(
        conv2d_output_size(n, k, s, p, d) >= 1
        for n, k, s, p, d in zip(case["size"], case["kernel"], case["stride"], case["padding"], case["dilation"])
    )


@KERNEL_SETTINGS
@given(case=conv_cases.filter(conv_fits))
def test_conv2d_matches_reference(case):
    x, weight, bias, geometry = make_conv(case)
    y = conv2d_forward(x, weight, bias, *geometry)
    close(y, reference.conv2d(x, weight, bias, *geometry), scale=np.sqrt(weight[0].size))


@pytest.mark.parametrize("kernel, groups", [(3, 1), (1, 1), (3, 2), (3, 4)])
def test_conv2d_output_of_an_image_does_not_depend_on_its_batch(kernel, groups):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4, 10, 10)).astype(np.float32)
    weight = rng.normal(size=(8, 4 // groups, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=8).astype(np.float32)
    geometry = ((1, 1), (kernel // 2, kernel // 2), (1, 1), groups)
    whole = conv2d_forward(x, weight, bias, *geometry)
    assert np.array_equal(conv2d_forward(x[4:5], weight, bias, *geometry), whole[4:5])
    assert np.array_equal(conv2d_forward(x[2:7], weight, bias, *geometry), whole[2:7])


@pytest.mark.parametrize("spatial", [(), (5, 4)])
def test_batchnorm_matches_reference(spatial):
    rng = np.random.default_rng(4)
    channels = 6
    x = rng.normal(2.0, 3.0, size=(7, channels, *spatial)).astype(np.float32)
    node = ir.BatchNorm("bn", ("x",), weight=rng.normal(size=channels), bias=rng.normal(size=channels),
                        running_mean=rng.normal(size=channels), running_var=rng.random(channels) + 0.1, eps=1e-3)
    size = int(np.prod(spatial, dtype=np.int64))
    y = batchnorm_eval_forward(x.reshape(7, channels, size), node.weight, node.bias,
                               node.running_mean, node.running_var, f32(node.eps)).reshape(x.shape)
    close(y, reference.batchnorm(x, node.weight, node.bias, node.running_mean, node.running_var, node.eps), 10)


pool_cases = st.fixed_dictionaries({
    "size": st.tuples(st.integers(2, 9), st.integers(2, 9)),
    "kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "seed": st.integers(0, 2**32 - 1),
}).filter(lambda c: all(2 * p <= k and n + 2 * p >= k for n, k, p in zip(c["size"], c["kernel"], c["padding"])))


def pool_geometry(case):
    out = [pool2d_output_size(n, k, s, p) for n, k, s, p in zip(case["size"], case["kernel"], case["stride"], case["padding"])]
    return (*case["kernel"], *case["stride"], *case["padding"], *out)


@KERNEL_SETTINGS
@given(case=pool_cases)
def test_maxpool2d_matches_reference_with_padding_as_minus_infinity(case):
    # All inputs negative: zero padding would show up as a maximum of 0.
    x = -np.random.default_rng(case["seed"]).random((2, 3, *case["size"])).astype(np.float32) - 0.5
    y = maxpool2d_forward(x, *pool_geometry(case))
    assert y.dtype == np.float32
    assert np.array_equal(y, reference.maxpool2d(x, case["kernel"], case["stride"], case["padding"]))


@KERNEL_SETTINGS
@given(case=pool_cases, count_include_pad=st.booleans())
def test_avgpool2d_matches_reference(case, count_include_pad):
    x = np.random.default_rng(case["seed"]).normal(size=(2, 3, *case["size"])).astype(np.float32)
    y = avgpool2d_forward(x, *pool_geometry(case), count_include_pad)
    close(y, reference.avgpool2d(x, case["kernel"], case["stride"], case["padding"], count_include_pad))


def test_avgpool2d_count_include_pad_changes_the_border():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    geometry = (3, 3, 1, 1, 1, 1, 4, 4)
    assert avgpool2d_forward(x, *geometry, True)[0, 0, 0, 0] == f32(4 / 9)
    assert avgpool2d_forward(x, *geometry, False)[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("mode, beta", [("rate", 1.0), ("leaky", 0.75), ("leaky", 0.3)])
def test_readout_matches_reference(mode, beta):
    x = np.random.default_rng(5).normal(size=(9, 4, 10)).astype(np.float32)
    flat = x.reshape(9, 40)
    y = rate_readout_forward(flat) if mode == "rate" else leaky_readout_forward(flat, f32(beta))
    assert y.dtype == np.float32
    close(y.reshape(4, 10), reference.readout(x, mode, beta), scale=4)


def test_every_node_kind_has_a_forward():
    assert set(FORWARD) == set(ir.NODE_KINDS)


# -- whole graphs ----------------------------------------------------------------------

def dyadic(rng, shape, steps=8, limit=2):
    """Values k / steps: every sum below stays exact in float32, so the reference agrees exactly."""
    return (rng.integers(-limit * steps, limit * steps + 1, size=shape) / steps).astype(np.float32)


def residual_conv_graph(rng, readout="rate", exact=True):
    values = dyadic if exact else (lambda rng, shape: (rng.normal(size=shape) * 0.5).astype(np.float32))
    eps = 2.0**-10
    std = np.array([0.5, 1.0, 2.0, 1.0])
    nodes = [
        ir.Input("x", shape=(2, 8, 8)),
        ir.Conv2d("conv1", ("x",), weight=values(rng, (4, 2, 3, 3)), bias=values(rng, 4), padding=1),
        ir.BatchNorm("bn1", ("conv1",), weight=values(rng, 4), bias=values(rng, 4),
                     running_mean=values(rng, 4), running_var=std**2 - eps, eps=eps),
        ir.Neuron("lif1", ("bn1",), beta=0.75, v_threshold=0.5),
        ir.Conv2d("conv2", ("lif1",), weight=values(rng, (4, 4, 3, 3)), padding=(1, 1)),
        ir.Neuron("lif2", ("conv2",), beta=0.5, reset="hard", reset_delay=True, fire_on_equal=False),
        ir.Add("residual", ("lif2", "lif1")),
        ir.Conv2d("depthwise", ("residual",), weight=values(rng, (4, 1, 3, 3)), groups=4, stride=2, padding=1),
        ir.MaxPool2d("max", ("depthwise",), kernel_size=3, stride=1, padding=1),
        ir.AvgPool2d("avg", ("max",), kernel_size=2),
        ir.Neuron("if3", ("avg",), beta=1.0, reset="subtract"),
        ir.Flatten("flat", ("if3",)),
        ir.Dropout("drop", ("flat",), p=0.3),
        ir.Linear("fc", ("drop",), weight=values(rng, (5, 16)), bias=values(rng, 5)),
        ir.Neuron("out", ("fc",), beta=0.875, reset="none"),
        ir.Readout("readout", ("out",), mode=readout, beta=0.5),
    ]
    return ir.Graph(nodes)


def mlp_graph(rng, readout="rate"):
    return ir.Graph([
        ir.Input("x", shape=(20,)),
        ir.Linear("fc1", ("x",), weight=rng.normal(0, 0.4, (32, 20)), bias=rng.normal(0, 0.1, 32)),
        ir.Neuron("lif1", ("fc1",), beta=0.9),
        ir.Linear("fc2", ("lif1",), weight=rng.normal(0, 0.4, (6, 32))),
        ir.Neuron("lif2", ("fc2",), beta=0.9, reset="hard", reset_delay=True),
        ir.Readout("readout", ("lif2",), mode=readout, beta=0.8),
    ])


@pytest.mark.parametrize("readout", ["rate", "spikes", "leaky"])
def test_residual_graph_matches_reference_exactly(readout):
    rng = np.random.default_rng(11)
    graph = residual_conv_graph(rng, readout)
    x = dyadic(rng, (6, 5, 2, 8, 8), steps=4)
    result = simulate(graph, x)
    expected_output, expected_counts = reference.simulate(graph, x)
    assert result.output.dtype == np.float32
    np.testing.assert_allclose(result.output, expected_output, rtol=1e-6, atol=1e-6)
    assert result.spike_counts.keys() == expected_counts.keys()
    for name, counts in expected_counts.items():
        assert result.spike_counts[name].dtype == np.int64
        assert result.spike_counts[name].shape == graph.shapes[name]
        assert np.array_equal(result.spike_counts[name], counts)
    assert 0 < sum(c.sum() for c in expected_counts.values())


def test_output_shape_follows_the_readout_mode():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 11, 20)).astype(np.float32)
    assert simulate(mlp_graph(rng, "rate"), x).output.shape == (11, 6)
    assert simulate(mlp_graph(rng, "leaky"), x).output.shape == (11, 6)
    assert simulate(mlp_graph(rng, "spikes"), x).output.shape == (7, 11, 6)


@pytest.mark.parametrize("make_graph, input_shape", [(mlp_graph, (20,)), (residual_conv_graph, (2, 8, 8))])
def test_results_do_not_depend_on_batch_size(make_graph, input_shape):
    rng = np.random.default_rng(12)
    graph = make_graph(rng) if make_graph is mlp_graph else make_graph(rng, "spikes", exact=False)
    x = rng.normal(0.5, 1.0, size=(8, 37, *input_shape)).astype(np.float32)
    whole = simulate(graph, x, batch_size=None)
    assert sum(c.sum() for c in whole.spike_counts.values()) > 0
    for batch_size in (1, 5, 36, 256):
        part = simulate(graph, x, batch_size=batch_size)
        assert np.array_equal(part.output, whole.output)
        for name, counts in whole.spike_counts.items():
            assert np.array_equal(part.spike_counts[name], counts)


def test_firing_rates_and_predictions():
    counts = {"a": np.array([[3, 0], [1, 0]], dtype=np.int64), "b": np.array([0, 12], dtype=np.int64)}
    result = SimulationResult(np.array([[0.1, 0.5, 0.5], [0.9, 0.2, 0.0]], np.float32), counts, 4, 3)
    assert result.firing_rates() == {"a": 4 / (4 * 3 * 4), "b": 12 / (4 * 3 * 2)}
    assert result.predictions().tolist() == [1, 0]  # first index on ties

    spikes = np.zeros((3, 2, 3), np.float32)
    spikes[:, 0, 2] = 1
    spikes[0, 1, 0] = spikes[1, 1, 1] = spikes[2, 1, 1] = 1
    assert SimulationResult(spikes, {}, 3, 2).predictions().tolist() == [2, 1]


def test_simulated_firing_rates_count_spikes_per_neuron_step():
    rng = np.random.default_rng(6)
    graph = mlp_graph(rng)
    x = rng.normal(size=(5, 9, 20)).astype(np.float32)
    trace = Trace()
    forward(graph, x, trace)
    result = simulate(graph, x, batch_size=4)
    for name in ("lif1", "lif2"):
        assert np.array_equal(result.spike_counts[name], trace.spike_counts[name].sum(axis=0))
        size = int(np.prod(graph.shapes[name]))
        assert result.firing_rates()[name] == trace.spike_counts[name].sum() / (5 * 9 * size)
    assert result.predictions().shape == (9,) and result.time_steps == 5 and result.samples == 9


def test_forward_records_potentials_only_when_asked():
    rng = np.random.default_rng(8)
    graph = mlp_graph(rng)
    x = rng.normal(size=(4, 3, 20)).astype(np.float32)
    plain, recording = Trace(), Trace(record_potential=True)
    assert np.array_equal(forward(graph, x, plain), forward(graph, x, recording))
    assert plain.potentials == {}
    assert recording.potentials["lif1"].shape == (4, 3, 32)
    assert recording.potentials["lif1"].dtype == np.float32


@pytest.mark.parametrize("shape", [(8, 3, 21), (8, 20), (8, 3, 20, 1), (0, 3, 20), (8, 0, 20)])
def test_data_of_the_wrong_shape_is_a_data_error(shape):
    with pytest.raises(DataError, match="shape"):
        simulate(mlp_graph(np.random.default_rng(0)), np.zeros(shape, np.float32))


def test_non_finite_or_non_numeric_data_is_a_data_error():
    graph = mlp_graph(np.random.default_rng(0))
    x = np.zeros((2, 3, 20), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        simulate(graph, x)
    with pytest.raises(DataError, match="numeric"):
        simulate(graph, np.zeros((2, 3, 20), dtype=object))
    with pytest.raises(DataError, match="numeric"):
        simulate(graph, [[[0.0] * 20]])


def test_integer_data_is_simulated_as_float32():
    graph = mlp_graph(np.random.default_rng(0))
    x = np.random.default_rng(1).integers(0, 2, size=(4, 6, 20))
    assert np.array_equal(simulate(graph, x).output, simulate(graph, x.astype(np.float32)).output)


def test_a_neuron_reads_a_single_input_row_at_every_step():
    x = np.random.default_rng(4).uniform(0, 1.5, size=(1, 40)).astype(np.float32)
    repeated = lif_forward(np.repeat(x, 5, axis=0), 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, RESET_CODES["subtract"],
                           False, True, True)
    once = lif_forward(x, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, RESET_CODES["subtract"], False, True, True, time_steps=5)
    assert all(np.array_equal(a, b) for a, b in zip(once, repeated))
    with pytest.raises(ValueError, match="2 steps for 5"):
        lif_forward(np.repeat(x, 2, axis=0), 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0, False, True, time_steps=5)
