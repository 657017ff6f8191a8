"""Deployable outputs: compact storage, removal of dead channels, the bench command."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_snn_compress import ir, profile
from onnx_snn_compress.backends.onnx_profile import save, to_model
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.frontends.onnx_profile import from_model
from onnx_snn_compress.samples import sample_model_path
from onnx_snn_compress.shrink import live_synapses, remove_dead
from onnx_snn_compress.simulate import simulate

from graphs import random_input, snn_graphs
from commands import run_cli

DEPLOY_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def prune(graph: ir.Graph, density: float, seed: int) -> ir.Graph:
    """Zero all but about ``density`` of every synapse layer's weights (in place)."""
    rng = np.random.default_rng(seed)
    for node in graph.prunable():
        node.weight[rng.random(node.weight.shape) >= density] = 0.0
    return graph


def ort_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def mlp(hidden: int = 256, inputs: int = 128, classes: int = 10, seed: int = 0) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph([
        ir.Input("x", shape=(inputs,)),
        ir.Linear("fc1", ("x",), weight=rng.normal(size=(hidden, inputs)), bias=rng.normal(size=hidden)),
        ir.Neuron("lif1", ("fc1",), beta=0.9),
        ir.Linear("fc2", ("lif1",), weight=rng.normal(size=(classes, hidden)), bias=np.zeros(classes)),
        ir.Neuron("lif2", ("fc2",), beta=0.9),
        ir.Readout("out", ("lif2",)),
    ])


# ---------------------------------------------------------------------------
# Compact storage
# ---------------------------------------------------------------------------
@DEPLOY_SETTINGS
@given(snn_graphs(), st.sampled_from([0.0, 0.05, 0.3, 0.9]), st.integers(0, 1000))
def test_compact_model_reads_back_bit_for_bit_and_runs_like_the_dense_one(graph, density, seed):
    prune(graph, density, seed)
    compact = to_model(graph, storage="compact")  # to_model runs the full_check
    assert from_model(compact).same_as(graph)
    x = random_input(graph, 3, 2, seed=seed)
    np.testing.assert_array_equal(ort_output(compact, x), ort_output(to_model(graph), x))


def test_negative_zero_weights_survive_compact_storage():
    graph = prune(mlp(hidden=16), 0.1, seed=0)
    graph["fc1"].weight[0, :3] = -0.0
    graph["fc1"].weight[1, 0] = np.float32(1e-30)
    back = from_model(to_model(graph, storage="compact"))
    assert back["fc1"].weight.tobytes() == graph["fc1"].weight.tobytes()


def test_onnxruntime_folds_the_compact_weights_at_load(tmp_path):
    optimized = tmp_path / "optimized.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(to_model(prune(mlp(), 0.05, 1), "compact").SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(optimized)).graph.node}
    assert "Gemm" in ops
    assert not ops & {profile.MASKED_WEIGHT, "BitShift", "BitwiseAnd", "CumSum", "Gather"}


def test_a_compact_weight_takes_at_most_1_2_times_its_values_and_bitmask():
    """For a layer of 128k synapses; a few hundred bytes per tensor (names, the call) and the
    functions (about 4 kB, the neuron loops included) are fixed, so small models stay above
    12 % at 5 % density (at 64k synapses the whole file is at 12.0 %)."""
    graph = prune(mlp(hidden=1024), 0.05, 2)
    dense, compact = to_model(graph), to_model(graph, "compact")
    for name in ("fc1",):
        weight = graph[name].weight
        payload = 4 * np.count_nonzero(weight) + (weight.size + 7) // 8
        stored = sum(len(t.SerializeToString()) for t in compact.graph.initializer if t.name.startswith(f"{name}.weight."))
        stored += len(next(n for n in compact.graph.node if n.output[0] == f"{name}.weight").SerializeToString())
        assert stored <= 1.2 * payload, (name, stored, payload)
    assert len(compact.SerializeToString()) <= 0.12 * len(dense.SerializeToString())


def test_a_compact_weight_whose_mask_and_values_disagree_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    model = to_model(prune(mlp(hidden=16), 0.1, 0), "compact")
    values = next(t for t in model.graph.initializer if t.name == "fc1.weight.values")
    values.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(values)[:-1], values.name))
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    code, _, err = run_cli(["inspect", path], capsys, monkeypatch)
    assert code == 2 and "set bits" in err and len(err.strip().splitlines()) == 1


def test_dense_layers_stay_plain_initializers_in_compact_storage():
    graph = mlp(hidden=16)
    graph["fc2"].weight[:, :2] = 0.0  # 7/8 dense: a bitmask would not pay
    model = to_model(graph, "compact")
    assert {t.name for t in model.graph.initializer} >= {"fc1.weight", "fc2.weight"}
    assert not model.functions or all(f.name != profile.MASKED_WEIGHT for f in model.functions)


# ---------------------------------------------------------------------------
# Fixed time steps: the neurons' loop unrolled
# ---------------------------------------------------------------------------
@DEPLOY_SETTINGS
@given(snn_graphs(), st.sampled_from([1, 2, 5]))
def test_an_unrolled_model_gives_the_scan_model_outputs_and_reads_back(graph, time_steps):
    unrolled = to_model(graph, time_steps=time_steps)  # full_check inside
    assert from_model(unrolled).same_as(graph)
    assert not any(n.op_type == "Scan" for f in unrolled.functions if f.name != profile.LI for n in f.node)
    x = random_input(graph, time_steps, 3, seed=time_steps)
    np.testing.assert_array_equal(ort_output(unrolled, x), ort_output(to_model(graph), x))


def test_onnxruntime_keeps_only_the_loop_of_the_neuron_variant_in_use(tmp_path):
    graph = mlp(hidden=8)
    graph["lif1"].reset_delay, graph["lif2"].fire_on_equal = True, False
    optimized = tmp_path / "optimized.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(to_model(graph, time_steps=4).SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(optimized)).graph.node]
    assert "If" not in ops and "Scan" not in ops
    assert "Where" not in ops  # the reset is arithmetic (backends/onnx_profile.py, bench/bench_neuron_step.py)
    assert ops.count("GreaterOrEqual") == ops.count("Greater") == 4  # each neuron's own comparison only
    # no hard-reset ops; lif2's immediate subtract reset with threshold 1 is H - S (one Sub per step),
    # lif1's delayed one keeps S * reset_value
    assert ops.count("Sub") == 4
    assert len([op for op in ops if op in ("Mul", "Add", "Sub", "Cast", "Greater", "GreaterOrEqual")]) <= 4 * (6 + 5)


@pytest.mark.parametrize("command", [["evaluate", "--runtime", "onnxruntime"], ["evaluate", "--runtime", "sim"],
                                     ["bench", "--repeats", "1"]])
def test_a_model_for_fixed_time_steps_refuses_other_inputs_in_one_line(tmp_path, capsys, monkeypatch, command):
    path = tmp_path / "t6.onnx"
    save(load_model(sample_model_path("digits_mlp")), path, time_steps=6)
    code, _, err = run_cli([command[0], path, *command[1:], "--time-steps", "8"], capsys, monkeypatch)
    assert code == 2 and "written for T=6 only" in err and len(err.strip().splitlines()) == 1


def test_unrolling_refuses_a_bad_number_of_time_steps(tmp_path, capsys, monkeypatch):
    source = tmp_path / "model.onnx"
    save(mlp(hidden=8), source)
    code, _, err = run_cli(["convert", source, tmp_path / "out.onnx", "--fixed-time-steps", "0"], capsys, monkeypatch)
    assert code == 2 and "time steps to unroll must lie in" in err and not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------------------
# Removal of dead channels and neurons
# ---------------------------------------------------------------------------
@DEPLOY_SETTINGS
@given(snn_graphs(integer=True), st.sampled_from([0.05, 0.2, 0.5]), st.integers(0, 1000))
def test_removal_keeps_every_output_of_the_masked_model(graph, density, seed):
    prune(graph, density, seed)
    smaller, removed = remove_dead(graph)
    assert set(removed) == {n.name for n in graph.prunable()}
    assert sum(n.weight.size for n in smaller.prunable()) <= sum(n.weight.size for n in graph.prunable())
    assert smaller.num_classes == graph.num_classes
    x = random_input(graph, 4, 3, seed=seed, integer=True)
    expected = simulate(graph, x).output
    np.testing.assert_array_equal(simulate(smaller, x).output, expected)  # integer weights: exact sums
    np.testing.assert_array_equal(ort_output(to_model(smaller), x), ort_output(to_model(graph), x))


def test_a_neuron_without_fan_out_or_unable_to_fire_is_removed_with_its_synapses():
    graph = mlp(hidden=6, inputs=4, classes=3)
    graph["fc2"].weight[:, 0] = 0.0  # neuron 0: no fan-out
    graph["fc1"].weight[1] = 0.0
    graph["fc1"].bias[1] = 0.05  # neuron 1: constant drive 0.05 -> at most 0.5 < threshold 1
    graph["fc1"].weight[2] = 0.0
    graph["fc1"].bias[2] = 0.2  # neuron 2: constant drive 0.2 -> tends to 2.0, fires
    smaller, removed = remove_dead(graph)
    assert removed == {"fc1": 2, "fc2": 0}
    np.testing.assert_array_equal(smaller["fc1"].bias, graph["fc1"].bias[2:])
    np.testing.assert_array_equal(smaller["fc2"].weight, graph["fc2"].weight[:, 2:])
    x = np.random.default_rng(0).uniform(0, 1, (20, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(simulate(smaller, x).output, simulate(graph, x).output)


@DEPLOY_SETTINGS
@given(graph=snn_graphs(), density=st.sampled_from([0.05, 0.2, 0.5]), seed=st.integers(0, 2**16))
def test_the_live_synapses_are_the_ones_removal_keeps(graph, density, seed):
    graph = prune(graph, density, seed)
    live = live_synapses(graph)
    smaller, _ = remove_dead(graph)
    for node in graph.prunable():
        assert np.count_nonzero(node.weight[live[node.name]]) == np.count_nonzero(smaller[node.name].weight)


def test_synapses_into_a_neuron_without_fan_out_or_from_one_that_cannot_fire_are_dead():
    graph = mlp(hidden=6, inputs=4, classes=3)
    graph["fc2"].weight[:, 0] = 0.0  # neuron 0: no fan-out, so its input synapses are dead
    graph["fc1"].weight[1] = 0.0
    graph["fc1"].bias[1] = 0.05  # neuron 1 never fires, so its output synapses are dead
    live = live_synapses(graph)
    assert not live["fc1"][0].any() and live["fc1"][2:].all()
    assert not live["fc2"][:, :2].any() and live["fc2"][:, 2:].all()


def test_output_classes_are_never_removed():
    graph = mlp(hidden=6, inputs=4, classes=3)
    graph["fc2"].weight[1] = 0.0
    smaller, removed = remove_dead(graph)
    assert removed["fc2"] == 0 and smaller.num_classes == 3


def residual_graph(classes: int = 3) -> ir.Graph:
    rng = np.random.default_rng(0)
    conv = lambda name, source: ir.Conv2d(name, (source,), weight=rng.normal(size=(4, 4, 3, 3)), padding=1)  # noqa: E731
    return ir.Graph([
        ir.Input("x", shape=(4, 5, 5)),
        conv("conv1", "x"), ir.Neuron("lif1", ("conv1",)),
        conv("conv2", "lif1"), ir.Neuron("lif2", ("conv2",)),
        ir.Add("add", ("lif2", "lif1")), ir.MaxPool2d("pool", ("add",), kernel_size=2),
        ir.Flatten("flat", ("pool",)),
        ir.Linear("fc", ("flat",), weight=rng.normal(size=(classes, 16))), ir.Neuron("lif3", ("fc",)),
        ir.Readout("out", ("lif3",)),
    ])


def grouped_graph(classes: int = 4) -> ir.Graph:
    """conv1 4->4, LIF, conv2 4->4 in two groups (a channel of conv1 feeds only its group), LIF, fc."""
    rng = np.random.default_rng(0)
    return ir.Graph([
        ir.Input("x", shape=(4, 3, 3)),
        ir.Conv2d("conv1", ("x",), weight=rng.normal(size=(4, 4, 3, 3)), padding=1), ir.Neuron("lif1", ("conv1",)),
        ir.Conv2d("conv2", ("lif1",), weight=rng.normal(size=(4, 2, 3, 3)), padding=1, groups=2),
        ir.Neuron("lif2", ("conv2",)), ir.Flatten("flat", ("lif2",)),
        ir.Linear("fc", ("flat",), weight=rng.normal(size=(classes, 36))), ir.Neuron("lif3", ("fc",)),
        ir.Readout("out", ("lif3",)),
    ])


def test_a_residual_channel_goes_only_when_every_branch_of_the_add_agrees():
    graph = residual_graph()
    graph["conv2"].weight[0] = 0.0  # channel 0 of one branch is dead; the skip branch still carries it
    assert remove_dead(graph)[1] == {"conv1": 0, "conv2": 0, "fc": 0}
    graph["conv1"].weight[0] = 0.0  # now dead in both branches
    smaller, removed = remove_dead(graph)
    assert removed == {"conv1": 1, "conv2": 1, "fc": 0}
    assert smaller["conv2"].weight.shape == (3, 3, 3, 3)
    assert smaller["fc"].weight.shape == (3, 12)  # channel 0's 2x2 block left the Flatten
    x = np.random.default_rng(1).uniform(0, 2, (6, 3, 4, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(simulate(smaller, x).output, simulate(graph, x).output)


def test_a_channel_without_fan_out_after_flatten_is_removed_from_the_conv():
    graph = residual_graph()
    graph["fc"].weight[:, 4:8] = 0.0  # channel 1's block
    assert remove_dead(graph)[1]["conv1"] == 0  # conv2 still reads channel 1 of lif1
    graph["conv2"].weight[:, 1] = 0.0
    smaller, removed = remove_dead(graph)
    assert removed["conv1"] == 1 and removed["conv2"] == 1
    x = np.random.default_rng(2).uniform(0, 2, (6, 3, 4, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(simulate(smaller, x).output, simulate(graph, x).output)


def test_convert_removes_dead_neurons_and_writes_compact_storage(tmp_path, capsys, monkeypatch):
    source, target = tmp_path / "pruned.onnx", tmp_path / "small.onnx"
    graph = prune(mlp(), 0.05, 3)
    save(graph, source)
    code, out, err = run_cli(["convert", source, target, "--storage", "compact", "--remove-dead", "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["removed"]["fc1"] > 0 and summary["removed"]["fc2"] == 0
    small = load_model(target)
    assert small["fc1"].weight.shape[0] == 256 - summary["removed"]["fc1"]
    assert target.stat().st_size < 0.12 * source.stat().st_size
    x = random_input(graph, 4, 8, seed=0)
    np.testing.assert_array_equal(simulate(small, x).predictions(), simulate(graph, x).predictions())


def test_compress_can_write_compact_files_without_dead_neurons_and_report_them(tmp_path):
    from test_compress import compress, tiny_mlp

    graph = tiny_mlp()
    report = compress(graph, tmp_path, budgets=(0.2,), storage="compact", remove_dead=True)
    (entry,) = report["budgets"]
    assert entry["runtimes_agree"] is True  # simulator, onnxruntime and the masked model agree
    model = load_model(tmp_path / entry["model"])
    for node in model.prunable():
        assert node.weight.shape[0] == graph[node.name].weight.shape[0] - entry["removed"][node.name]
    assert sum(entry["removed"].values()) > 0
    assert entry["file_bytes"] == (tmp_path / entry["model"]).stat().st_size
    assert entry["file_bytes"] < len(to_model(graph).SerializeToString())


# ---------------------------------------------------------------------------
# Structured pruning: whole channels / neurons
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["magnitude", "gradual"])
def test_channel_pruning_removes_whole_neurons_and_meets_the_budget(tmp_path, method):
    from test_compress import compress, tiny_mlp

    graph = tiny_mlp()
    report = compress(graph, tmp_path, method=method, budgets=(0.6, 0.4), structure="channel")
    assert report["structure"] == "channel"
    for entry in report["budgets"]:
        assert entry["achieved"] <= entry["budget"] and entry["runtimes_agree"] is True
        model = load_model(tmp_path / entry["model"])
        assert model["fc2"].weight.shape[0] == 48 - entry["removed"]["fc2"] < 48  # whole neurons went
        assert model["fc3"].weight.shape == (4, model["fc2"].weight.shape[0])  # with their fan-out; classes stay
        assert entry["layers"]["fc2"]["connectivity"] < 1.0


def test_channel_pruning_of_a_conv_net_removes_channels_and_their_flattened_blocks(tmp_path):
    from test_compress import compress, tiny_conv

    report = compress(tiny_conv(), tmp_path, method="magnitude", budgets=(0.5,), resource="macs", structure="channel")
    (entry,) = report["budgets"]
    assert entry["achieved"] <= 0.5 and entry["runtimes_agree"] is True
    model = load_model(tmp_path / entry["model"])
    channels = model["conv2"].weight.shape[0]
    assert channels == 8 - entry["removed"]["conv2"] < 8
    assert model["fc"].weight.shape[1] == channels * 9  # each channel's 3x3 block left the Flatten


@pytest.mark.parametrize("graph, options, fragment", [
    ("residual", ["--method", "magnitude"], "reach Add 'add'"),
    ("grouped", ["--method", "minimax"], "conv2 is a grouped convolution"),
    ("mlp", ["--structure", "filter"], "'filter' is not one of 'none', 'channel'"),
])
def test_channel_pruning_that_cannot_be_done_gives_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, graph,
                                                                            options, fragment):
    from test_compress import cli_files, tiny_mlp

    graphs = {"residual": lambda: residual_graph(classes=4), "grouped": grouped_graph, "mlp": tiny_mlp}
    model, data = cli_files(tmp_path, graphs[graph]())
    out = tmp_path / "out"
    code, _, err = run_cli(["compress", model, "--data", data, "--out", out, "--budget", "0.5", "--structure", "channel",
                            "--steps-per-budget", "4", *options], capsys, monkeypatch)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--storage", "sparse"], "unknown storage 'sparse'"),
    (["--storage", "compact", "OUT.nir"], "apply to the SNN-ONNX profile"),
])
def test_bad_storage_gives_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, fragment):
    source = tmp_path / "model.onnx"
    save(mlp(hidden=8), source)
    target = tmp_path / ("out.nir" if "OUT.nir" in args else "out.onnx")
    args = [a for a in args if a != "OUT.nir"]
    code, out, err = run_cli(["convert", source, target, *args], capsys, monkeypatch)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not target.exists()


# ---------------------------------------------------------------------------
# The bench command
# ---------------------------------------------------------------------------
BENCH_FAST = ["--batch", "1,3", "--time-steps", "2", "--repeats", "3", "--json"]


def test_bench_times_one_model_at_every_batch_size(tmp_path, capsys, monkeypatch):
    path = tmp_path / "model.onnx"
    save(mlp(hidden=8), path)
    code, out, err = run_cli(["bench", path, *BENCH_FAST], capsys, monkeypatch)
    assert code == 0, err
    (cost,) = json.loads(out)["models"]
    assert cost["file_bytes"] == path.stat().st_size
    assert cost["params"] == 8 * 128 + 8 + 10 * 8 + 10 and cost["macs"] == 2 * (8 * 128 + 10 * 8)
    assert [t["batch"] for t in cost["timings"]] == [1, 3]
    assert all(0 < t["min_ms"] <= t["p50_ms"] <= t["p95_ms"] for t in cost["timings"])


def test_bench_on_a_report_folder_puts_the_input_model_beside_every_budget(tmp_path, capsys, monkeypatch):
    source = tmp_path / "input.onnx"
    graph = mlp(hidden=8)
    save(graph, source)
    (tmp_path / "run" / "budget_0.1").mkdir(parents=True)
    save(prune(graph, 0.1, 0), tmp_path / "run" / "budget_0.1" / "model.onnx")
    report = {"input_model": str(source), "input": {"figures": {"synops": 50.0}},
              "budgets": [{"budget": 0.1, "model": "budget_0.1/model.onnx", "figures": {"synops": 5.0}}]}
    (tmp_path / "run" / "report.json").write_text(json.dumps(report))
    code, out, err = run_cli(["bench", tmp_path / "run", *BENCH_FAST], capsys, monkeypatch)
    assert code == 0, err
    models = json.loads(out)["models"]
    assert [(m["label"], m["synops"]) for m in models] == [("input", 50.0), ("budget 0.1", 5.0)]
    assert models[1]["nonzero"] < models[0]["nonzero"]


def test_bench_on_a_report_whose_input_model_is_gone_says_so_and_benches_the_budgets(tmp_path, capsys, monkeypatch):
    (tmp_path / "budget_0.5").mkdir()
    save(prune(mlp(hidden=8), 0.5, 0), tmp_path / "budget_0.5" / "model.onnx")
    report = {"input_model": str(tmp_path / "moved.onnx"), "input": {"figures": {}},
              "budgets": [{"budget": 0.5, "model": "budget_0.5/model.onnx", "figures": {}}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    code, out, err = run_cli(["bench", tmp_path, *BENCH_FAST], capsys, monkeypatch)
    assert code == 0 and "note: input model" in err
    assert [m["label"] for m in json.loads(out)["models"]] == ["budget 0.5"]


@pytest.mark.parametrize("case, fragment", [
    ("not_a_model", "not a readable ONNX model"),
    ("folder_without_report", "must hold the report.json"),
    ("bad_report", "not a report.json written by compress"),
    ("bad_batch", "give batch sizes as integers"),
])
def test_bench_on_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, case, fragment):
    args = ["--repeats", "1"]
    if case == "not_a_model":
        target = tmp_path / "model.onnx"
        target.write_bytes(b"not onnx at all")
    elif case == "bad_batch":
        target = tmp_path / "model.onnx"
        save(mlp(hidden=4), target)
        args += ["--batch", "1,x"]
    else:
        target = tmp_path
        if case == "bad_report":
            (tmp_path / "report.json").write_text("[1, 2]")
    code, out, err = run_cli(["bench", target, *args], capsys, monkeypatch)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1 and not out
