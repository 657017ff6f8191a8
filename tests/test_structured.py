"""Structured pruning: whole channels / neurons as the unit, for every method (structured.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.compress import CHECKPOINT, REPORT
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.pruning import FlatWeights
from onnx_snn_compress.solvers import Budget, resource_after
from onnx_snn_compress.structured import ChannelGroups

from commands import run_cli
from test_compress import Interrupt, cli_files, compress, interrupt_after, models_of, start, tiny_conv, tiny_mlp


def three_layer_mlp(small_layer_scale: float = 1.0) -> ir.Graph:
    """8 -> 16 -> 32 -> 4; fc2's weights scaled by ``small_layer_scale``."""
    rng = np.random.default_rng(3)
    return ir.Graph([
        ir.Input("x", shape=(8,)),
        ir.Linear("fc1", ("x",), weight=rng.normal(size=(16, 8))),
        ir.Neuron("lif1", ("fc1",)),
        ir.Linear("fc2", ("lif1",), weight=rng.normal(size=(32, 16)) * small_layer_scale),
        ir.Neuron("lif2", ("fc2",)),
        ir.Linear("fc3", ("lif2",), weight=rng.normal(size=(4, 32))),
        ir.Neuron("lif3", ("fc3",)),
        ir.Readout("out", ("lif3",)),
    ])


def groups_of(graph: ir.Graph) -> ChannelGroups:
    return ChannelGroups(graph, FlatWeights(graph, [node.name for node in graph.prunable()]))


def test_the_solver_sees_one_unit_per_channel_and_the_classes_are_no_unit():
    units = groups_of(three_layer_mlp())
    assert units.size == 16 + 32  # fc1's and fc2's neurons; fc3 feeds the readout
    assert dict((name, part.stop - part.start) for name, part in units.layer_slices()) == {"fc1": 16, "fc2": 32}
    # fc1's neuron 0: its row of 8 synapses and fc2's column 0
    assert units.members[0].size == 8 + 32


def test_channel_costs_add_up_to_the_resource_and_overestimate_it_once_channels_go():
    graph = three_layer_mlp()
    units, flat = groups_of(graph), FlatWeights(graph, ["fc1", "fc2", "fc3"])
    costs, hard = np.ones(flat.size), np.zeros(flat.size, bool)
    budget = Budget(target=0.5, reference=float(flat.size), fixed=0.0)
    group_costs, group_hard, group_budget = units.view(costs, hard, budget)
    assert not group_hard.any()
    assert resource_after(group_costs, group_hard, group_budget) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):  # the solver's estimate never claims less than the real resource
        chosen = rng.random(units.size) < 0.5
        real = resource_after(costs, units.to_flat(chosen, hard), budget)
        assert resource_after(group_costs, chosen, group_budget) >= real - 1e-12


def test_ranking_is_relative_to_the_layer_so_a_layer_of_small_weights_is_not_emptied_first():
    graph = three_layer_mlp(small_layer_scale=1e-3)
    units, flat = groups_of(graph), FlatWeights(graph, ["fc1", "fc2", "fc3"])
    costs = np.ones(flat.size)
    pruned = units.prune(costs, np.zeros(flat.size, bool), cost_to_remove=0.4 * flat.size)
    removed = {name: int(units.pruned(pruned)[part].sum()) for name, part in units.layer_slices()}
    assert 0 < removed["fc1"] and 0 < removed["fc2"] < 31  # a raw-norm ranking takes fc2 first and whole


def test_every_layer_keeps_its_strongest_channel_whatever_the_cost_to_remove():
    graph = three_layer_mlp()
    units, flat = groups_of(graph), FlatWeights(graph, ["fc1", "fc2", "fc3"])
    pruned = units.pruned(units.prune(np.ones(flat.size), np.zeros(flat.size, bool), cost_to_remove=np.inf))
    for name, part in units.layer_slices():
        kept = np.flatnonzero(~pruned[part])
        norms = units.norms(flat.weights())[part]
        assert kept.tolist() == [int(np.argmax(norms))], name


@pytest.mark.parametrize("method, granularity", [("minimax", "global"), ("minimax", "layer"),
                                                 ("minimax-paper", "global")])
def test_minimax_on_channels_removes_whole_neurons_and_meets_every_budget(tmp_path, method, granularity):
    report = compress(tiny_mlp(), tmp_path, method=method, granularity=granularity, budgets=(0.6, 0.4),
                      structure="channel")
    assert report["structure"] == "channel"
    for entry in report["budgets"]:
        assert entry["achieved"] <= entry["budget"] and entry["runtimes_agree"] is True
        model = load_model(tmp_path / entry["model"])
        assert model["fc2"].weight.shape[0] == 48 - entry["removed"]["fc2"] < 48
        assert model["fc3"].weight.shape == (4, model["fc2"].weight.shape[0])
        kept = model["fc2"].weight
        assert np.all(np.any(kept != 0, axis=1))  # every neuron left in the file is a whole one


def test_minimax_on_conv_channels_meets_a_mac_budget(tmp_path):
    report = compress(tiny_conv(), tmp_path, method="minimax", budgets=(0.6,), resource="macs", structure="channel")
    (entry,) = report["budgets"]
    assert entry["achieved"] <= 0.6 and entry["runtimes_agree"] is True
    assert 0 < entry["removed"]["conv2"] < 8


@pytest.mark.parametrize("steps", [7, 27])  # the first budget's search; the second budget's search
def test_an_interrupted_structured_minimax_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, steps):
    changes = dict(method="minimax", budgets=(0.6, 0.4), structure="channel")
    expected = compress(tiny_mlp(), tmp_path / "whole", **changes)
    with monkeypatch.context() as patch:
        interrupt_after(patch, steps)
        with pytest.raises(Interrupt):
            compress(tiny_mlp(), tmp_path / "cut", **changes)
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    run = start(tiny_mlp(), tmp_path / "cut", **changes)
    run.restore()
    assert run.run() == expected
    assert models_of(tmp_path / "cut") == models_of(tmp_path / "whole")
    assert (tmp_path / "cut" / REPORT).read_bytes() == (tmp_path / "whole" / REPORT).read_bytes()


def test_a_budget_that_whole_channels_cannot_reach_is_refused_before_training(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path, tiny_mlp())
    out = tmp_path / "out"
    # fc1 (kept dense) is 96 of 864 synapses (11.1 %); with fc2's strongest neuron (12 + 4) it is 13.0 %
    code, _, err = run_cli(["compress", model, "--data", data, "--out", out, "--budget", "0.12", "--structure",
                            "channel", "--steps-per-budget", "4"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot be reached with --structure channel" in err and "fc2" in err
    assert not out.exists()
