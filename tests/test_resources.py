"""Resource models: MACs by hand (padding taps are not MACs), SynOps and effective MACs
against a brute-force count of every synapse use, energy as E_AC x SynOps + E_MAC x
effective MACs (NeuroBench's definitions)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_snn_compress import ir
from onnx_snn_compress.resources import (
    EnergyModel,
    layer_costs,
    measure_activity,
    resource_figures,
    weight_costs,
)
from onnx_snn_compress.simulate import Trace, forward

from graphs import random_input, snn_graphs

T = 3


# ---------------------------------------------------------------------------
# An independent count: replay the spikes and count every synapse they cross
# ---------------------------------------------------------------------------
def record_synapse_inputs(graph: ir.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every synapse layer's input ``[T, N, *shape]``, as the simulator feeds it."""
    seen: dict[str, np.ndarray] = {}
    synapse_layers = {node.name for node in graph.prunable()}

    def observe(node, inputs):
        if node.name in synapse_layers:
            seen[node.name] = inputs[0].reshape(x.shape[0], x.shape[1], *graph.shapes[node.inputs[0]]).copy()

    forward(graph, x, Trace(observe=observe))
    return seen


def fan_out(graph: ir.Graph, node: ir.Node) -> np.ndarray:
    """For every input element of ``node``: how many surviving synapse uses one spike
    there triggers, counted output by output (a scatter, unlike the library's gather)."""
    weight = node.weight
    input_shape = graph.shapes[node.inputs[0]]
    if isinstance(node, ir.Linear):
        return np.count_nonzero(weight, axis=0).astype(np.float64)
    count = np.zeros(input_shape, np.float64)
    out_channels, in_per_group, kh, kw = weight.shape
    _, out_h, out_w = graph.shapes[node.name]
    (ph, pw), (sh, sw), (dh, dw) = node.padding, node.stride, node.dilation
    per_group = out_channels // node.groups
    for co in range(out_channels):
        group = co // per_group
        for ci_local in range(in_per_group):
            ci = group * in_per_group + ci_local
            for i in range(kh):
                for j in range(kw):
                    if weight[co, ci_local, i, j] == 0:
                        continue
                    for oh in range(out_h):
                        h = oh * sh + i * dh - ph
                        if not 0 <= h < input_shape[1]:
                            continue  # the kernel sits on padding
                        for ow in range(out_w):
                            w = ow * sw + j * dw - pw
                            if 0 <= w < input_shape[2]:
                                count[ci, h, w] += 1
    return count


def brute_force(graph: ir.Graph, x: np.ndarray) -> dict[str, dict]:
    """Per synapse layer: spike-fed?, operations on non-zero inputs (SynOps when
    spike-fed, effective MACs otherwise) and dense surviving MACs, per inference."""
    result = {}
    samples = x.shape[1]
    for name, values in record_synapse_inputs(graph, x).items():
        node = graph[name]
        spiking = bool(np.all((values == 0) | (values == 1)))
        per_input = fan_out(graph, node)
        operations = 0.0
        for t in range(values.shape[0]):
            for n in range(samples):
                operations += float(np.sum(per_input[values[t, n] != 0]))
        result[name] = {
            "spiking": spiking,
            "synops": operations / samples if spiking else 0.0,
            "effective_macs": 0.0 if spiking else operations / samples,
            "macs": float(per_input.sum() * values.shape[0]),
        }
    return result


def prune_randomly(graph: ir.Graph, seed: int, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    for node in graph.prunable():
        node.weight[rng.random(node.weight.shape) < fraction] = 0.0


def graph_from_chain(input_shape, *layers, classes: int = 3) -> ir.Graph:
    """Input -> (layer -> LIF)* -> (Flatten -> Linear -> LIF if the last is not a vector) -> rate readout."""
    nodes = [ir.Input("x", shape=input_shape)]
    shapes = {"x": tuple(input_shape)}
    for index, (kind, kwargs) in enumerate(layers):
        nodes.append(kind(f"l{index}", (nodes[-1].name,), **kwargs))
        nodes.append(ir.Neuron(f"lif{index}", (nodes[-1].name,), beta=0.5, v_threshold=0.5))
        shapes[nodes[-2].name] = shapes[nodes[-1].name] = nodes[-2].output_shape([shapes[nodes[-3].name]])
    if len(shapes[nodes[-1].name]) > 1:
        features = int(np.prod(shapes[nodes[-1].name]))
        weight = np.random.default_rng(features).normal(size=(classes, features)).astype(np.float32)
        nodes += [ir.Flatten("flat", (nodes[-1].name,)), ir.Linear("head", ("flat",), weight=weight),
                  ir.Neuron("lif_head", ("head",))]
    nodes.append(ir.Readout("out", (nodes[-1].name,)))
    return ir.Graph(nodes)


# ---------------------------------------------------------------------------
# MACs and params by hand
# ---------------------------------------------------------------------------
def test_macs_of_linear_and_strided_padded_grouped_conv_by_hand_count_no_padding_taps():
    rng = np.random.default_rng(0)
    conv_weight = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)  # groups=2: 4 input channels
    conv_weight[0, 0, 0, 0] = conv_weight[5, 1, 2, 2] = conv_weight[3, 0, 1, 1] = 0.0  # 3 pruned synapses
    linear_weight = rng.normal(size=(5, 6 * 4 * 4)).astype(np.float32)
    linear_weight[:, :10] = 0.0  # 50 pruned synapses
    graph = ir.Graph([
        ir.Input("x", shape=(4, 7, 7)),
        ir.Conv2d("conv", ("x",), weight=conv_weight, stride=2, padding=1, groups=2),
        ir.Neuron("lif1", ("conv",)),
        ir.Flatten("flat", ("lif1",)),
        ir.Linear("fc", ("flat",), weight=linear_weight),
        ir.Neuron("lif2", ("fc",)),
        ir.Readout("out", ("lif2",)),
    ])
    # H_out = (7 + 2*1 - 3) // 2 + 1 = 4. Kernel row i reads input rows 2*oh + i - 1 for oh = 0..3:
    # row 0 reads -1 (padding), 1, 3, 5 -> 3 real taps; row 1 reads 0, 2, 4, 6 -> 4; row 2 reads 1, 3, 5, 7 -> 3
    assert graph.shapes["conv"] == (6, 4, 4)
    taps = np.outer([3, 4, 3], [3, 4, 3])  # uses per step of a weight at kernel offset (i, j)
    conv_macs = 6 * 2 * int(taps.sum())  # 1,200, where counting padding taps would give 6 * 2 * 9 * 16 = 1,728
    conv_pruned = taps[0, 0] + taps[2, 2] + taps[1, 1]  # the three pruned weights: 9 + 9 + 16 uses
    linear_macs = 5 * 96
    costs = {c.name: c for c in layer_costs(graph)}
    assert (costs["conv"].macs, costs["conv"].macs_nonzero) == (conv_macs, conv_macs - conv_pruned)
    assert (costs["fc"].macs, costs["fc"].macs_nonzero) == (linear_macs, linear_macs - 50)
    assert (costs["conv"].synapses_nonzero, costs["fc"].synapses_nonzero) == (6 * 2 * 9 - 3, linear_macs - 50)

    x = random_input(graph, T, 5, seed=1)
    figures = resource_figures(graph, measure_activity(graph, x))
    assert figures["macs"] == T * (conv_macs - conv_pruned + linear_macs - 50)
    assert figures["params"] == 6 * 2 * 9 - 3 + linear_macs - 50  # surviving synapses; biases and BN are not synapses

    per_weight = weight_costs(graph, "macs", time_steps=T)
    assert np.all(per_weight["conv"] == T * taps[None, None]) and np.all(per_weight["fc"] == T)
    assert np.all(weight_costs(graph, "params")["conv"] == 1.0)


# ---------------------------------------------------------------------------
# SynOps and energy against the brute-force count
# ---------------------------------------------------------------------------
def check_against_brute_force(graph: ir.Graph, x: np.ndarray, energy: EnergyModel) -> None:
    expected = brute_force(graph, x)
    activity = measure_activity(graph, x, batch_size=2)  # several batches: sums must add up across them
    assert activity.spiking == {name: entry["spiking"] for name, entry in expected.items()}
    figures = resource_figures(graph, activity, energy)
    for name, entry in expected.items():
        entry["energy"] = energy.e_ac_pj * entry["synops"] + energy.e_mac_pj * entry["effective_macs"]
    for figure in ("macs", "effective_macs", "synops", "energy"):
        assert figures[figure] == pytest.approx(sum(e[figure] for e in expected.values()), rel=1e-9, abs=1e-9), figure
    # per layer, and per synapse: the cost of a layer is the sum of its surviving synapses' costs
    for figure in ("macs", "effective_macs", "synops", "energy"):
        costs = weight_costs(graph, figure, activity, energy)
        for name, entry in expected.items():
            surviving = float(np.sum(costs[name][graph[name].weight != 0]))
            assert surviving == pytest.approx(entry[figure], rel=1e-9, abs=1e-9), (figure, name)
            assert np.all(costs[name] >= 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=snn_graphs(), seed=st.integers(0, 1000), fraction=st.sampled_from([0.0, 0.3, 0.8]))
def test_synops_and_energy_match_a_brute_force_spike_count_on_random_graphs(graph, seed, fraction):
    prune_randomly(graph, seed, fraction)
    x = random_input(graph, T, 5, seed=seed)
    if seed % 2:  # spiking input too: then the first layer counts SynOps, not MACs
        x = (x > 0.75).astype(np.float32)
    check_against_brute_force(graph, x, EnergyModel(e_mac_pj=3.0, e_ac_pj=0.5))


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 1, 2), (2, 0, 2, 1), (3, 1, 1, 4), ((1, 2), (0, 1), (2, 1), 2),
])
def test_conv_synops_count_every_surviving_synapse_a_spike_reaches(stride, padding, dilation, groups):
    rng = np.random.default_rng(7)
    in_channels, out_channels = 4, 8
    first = np.linspace(0.5, 1.5, in_channels, dtype=np.float32).reshape(in_channels, 1, 1, 1)  # spikes for the second conv
    second = rng.normal(size=(out_channels, in_channels // groups, 3, 3)).astype(np.float32)
    graph = graph_from_chain(
        (1, 9, 9),
        (ir.Conv2d, dict(weight=first)),
        (ir.Conv2d, dict(weight=second, stride=stride, padding=padding, dilation=dilation, groups=groups)),
    )
    prune_randomly(graph, 3, 0.4)
    graph["l0"].weight[...] = first
    x = rng.uniform(0, 1.2, size=(T, 4, 1, 9, 9)).astype(np.float32)
    expected = brute_force(graph, x)
    assert expected["l1"]["spiking"] and expected["l1"]["synops"] > 0  # the case under test is exercised
    check_against_brute_force(graph, x, EnergyModel())


def test_a_layer_without_spikes_arriving_costs_no_synops():
    graph = graph_from_chain((3,), (ir.Linear, dict(weight=-np.ones((4, 3)))), (ir.Linear, dict(weight=np.ones((2, 4)))))
    x = np.full((T, 2, 3), 0.7, np.float32)  # analog input; binary input would count as spikes
    activity = measure_activity(graph, x)
    assert activity.spiking == {"l0": False, "l1": True}
    figures = resource_figures(graph, activity, EnergyModel(e_mac_pj=2.0, e_ac_pj=1.0))
    assert figures["synops"] == 0.0  # l0 is analog-fed, and l1 receives no spike
    assert figures["effective_macs"] == 12 * T  # every input value is non-zero: all of l0's MACs are effective
    assert figures["energy"] == 2.0 * 12 * T


def test_zero_inputs_cost_no_effective_macs_and_padding_taps_cost_no_macs():
    # a 1x1-channel 3x3 input, a 3x3 kernel with padding 1: the centre tap sees 9 positions, a corner tap 4
    graph = graph_from_chain((1, 3, 3), (ir.Conv2d, dict(weight=np.ones((1, 1, 3, 3), np.float32), padding=1)))
    x = np.zeros((T, 2, 1, 3, 3), np.float32)
    x[:, :, 0, 1, 1] = 0.6  # one non-zero pixel, in the centre: every tap reaches it once
    activity = measure_activity(graph, x)
    assert not activity.spiking["l0"]
    dense = weight_costs(graph, "macs", activity)["l0"][0, 0]
    assert dense.tolist() == [[4 * T, 6 * T, 4 * T], [6 * T, 9 * T, 6 * T], [4 * T, 6 * T, 4 * T]]
    effective = weight_costs(graph, "effective_macs", activity)["l0"]
    assert np.all(effective == T)  # one non-zero input per step, seen by each of the 9 taps once
    assert resource_figures(graph, activity)["effective_macs"] == 9 * T


def test_default_energy_figures_are_the_45nm_ones():
    assert EnergyModel() == EnergyModel(e_mac_pj=4.6, e_ac_pj=0.9)


def test_weight_costs_refuse_an_unknown_resource_and_missing_activity():
    graph = graph_from_chain((3,), (ir.Linear, dict(weight=np.ones((2, 3)))))
    with pytest.raises(ValueError, match="unknown resource"):
        weight_costs(graph, "flops")
    for measured in ("synops", "effective_macs", "energy"):
        with pytest.raises(ValueError, match="activity"):
            weight_costs(graph, measured)
