"""Compression over a budget schedule (issue 4): budgets met on the exported models,
hard masks, determinism, resume, bounded search, safe files and one-line errors.

Tiny models are built here and runs take a few dozen steps, so each run is well
under a second; what is asserted holds for any model and any number of steps.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import save
from onnx_snn_compress.api import CONFIG_FILE
from onnx_snn_compress.compress import (CHECKPOINT, DEFAULT_DISTILL, DEFAULT_SEARCH_LR_FACTOR, REPORT, CompressConfig,
                                       Compression)
from onnx_snn_compress.data import ModelData
from onnx_snn_compress.errors import SNNError
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.optim import CosineSchedule
from onnx_snn_compress.samples import digits_path
from onnx_snn_compress.schema import validate_report
from onnx_snn_compress.resources import RESOURCES, EnergyModel, measure_activity, resource_figures, weight_costs
from onnx_snn_compress.shrink import live_synapses
from onnx_snn_compress.simulate import simulate
from onnx_snn_compress.solvers import METHODS
from onnx_snn_compress.train import TrainConfig, Trainer
from commands import run_cli

TIME_STEPS = 4
CLASSES = 4


# ---------------------------------------------------------------------------
# Tiny models and data
# ---------------------------------------------------------------------------
def tiny_mlp(seed: int = 0) -> ir.Graph:
    """8 -> 12 -> 48 -> 4, LIF after each layer; its first layer is 11 % of the synapses."""
    rng = np.random.default_rng(seed)

    def weight(rows, columns):
        return (rng.normal(size=(rows, columns)) * 2.0 / np.sqrt(columns)).astype(np.float32)

    return ir.Graph([
        ir.Input("x", shape=(8,)),
        ir.Linear("fc1", ("x",), weight=weight(12, 8), bias=np.full(12, 0.2, np.float32)),
        ir.Neuron("lif1", ("fc1",), beta=0.9),
        ir.Linear("fc2", ("lif1",), weight=weight(48, 12), bias=np.full(48, 0.1, np.float32)),
        ir.Neuron("lif2", ("fc2",), beta=0.9),
        ir.Linear("fc3", ("lif2",), weight=weight(CLASSES, 48)),
        ir.Neuron("lif3", ("fc3",), beta=0.9),
        ir.Readout("out", ("lif3",)),
    ], {"name": "tiny_mlp"})


def tiny_conv(seed: int = 0) -> ir.Graph:
    """1x6x6 -> conv 4 (pad 1) -> BN -> LIF -> conv 8 (stride 2, pad 1) -> LIF -> max pool -> linear 4."""
    rng = np.random.default_rng(seed)
    return ir.Graph([
        ir.Input("x", shape=(1, 6, 6)),
        ir.Conv2d("conv1", ("x",), weight=rng.normal(size=(4, 1, 3, 3)).astype(np.float32) * 0.8, padding=1),
        ir.BatchNorm("bn1", ("conv1",), weight=np.ones(4), bias=np.full(4, 0.3), running_mean=np.zeros(4),
                     running_var=np.ones(4)),
        ir.Neuron("lif1", ("bn1",), beta=0.9),
        ir.Conv2d("conv2", ("lif1",), weight=rng.normal(size=(8, 4, 3, 3)).astype(np.float32) * 0.6,
                  bias=np.full(8, 0.2, np.float32), stride=2, padding=1),
        ir.Neuron("lif2", ("conv2",), beta=0.9),
        ir.MaxPool2d("pool", ("lif2",), kernel_size=1),
        ir.Flatten("flat", ("pool",)),
        ir.Linear("fc", ("flat",), weight=(rng.normal(size=(CLASSES, 72)) * 0.4).astype(np.float32)),
        ir.Neuron("lif3", ("fc",), beta=0.9),
        ir.Readout("out", ("lif3",)),
    ], {"name": "tiny_conv"})


def arrays(shape, seed: int = 0, sizes=(96, 48, 48)) -> dict[str, np.ndarray]:
    """Learnable random data: the label is the argmax of a fixed random projection."""
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(int(np.prod(shape)), CLASSES))
    out = {}
    for split, size in zip(("", "_val", "_test"), sizes):
        x = rng.uniform(0.0, 1.0, size=(size, *shape)).astype(np.float32)
        out[f"x{split}"] = x
        out[f"y{split}"] = np.argmax(x.reshape(size, -1) @ projection, axis=1).astype(np.int64)
    return out


def splits(graph: ir.Graph, seed: int = 0, encoding: str = "direct"):
    data = arrays(graph.input.shape, seed)
    return tuple(
        ModelData(x=data[f"x{s}"], y=data[f"y{s}"], temporal=False, time_steps=TIME_STEPS, encoding=encoding, seed=0)
        for s in ("", "_val", "_test")
    )


def config(**changes) -> CompressConfig:
    values = dict(budgets=(0.6, 0.35), steps_per_budget=20, eval_every=5,
                  train=TrainConfig(lr=3e-3, batch_size=32, progress=False, seed=changes.pop("seed", 0)))
    values.update(changes)
    return CompressConfig(**values)


def start(graph: ir.Graph, out: Path, encoding: str = "direct", **changes) -> Compression:
    train, val, test = splits(graph, encoding=encoding)
    return Compression(graph, train, val, test, config(**changes), out, source="tiny", log=None)


def compress(graph: ir.Graph, out: Path, **changes) -> dict:
    report = start(graph, out, **changes).run()
    validate_report(report)  # every report made here follows the shipped schema
    return report


def dense_share(graph: ir.Graph, resource: str, first_layers: int = 1, encoding: str = "direct") -> float:
    """The share of ``resource`` that the first (kept dense) layer holds, on the measurement data."""
    _, val, _ = splits(graph, encoding=encoding)
    activity = measure_activity(graph, val.inputs(slice(0, 256)))
    costs = weight_costs(graph, resource, activity, EnergyModel())
    per_layer = {name: float(np.sum(cost[graph[name].weight != 0])) for name, cost in costs.items()}
    kept = sum(per_layer[node.name] for node in graph.prunable()[:first_layers])
    return kept / sum(per_layer.values())


def reachable_budgets(graph: ir.Graph, resource: str, fractions=(0.6, 0.3)) -> tuple[float, ...]:
    floor = dense_share(graph, resource)
    return tuple(round(floor + f * (1.0 - floor), 4) for f in fractions)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def models_of(out: Path) -> dict[str, bytes]:
    return {name: data for name, data in files_of(out).items() if name.endswith(".onnx")}


def numbers(value):
    """Every number in a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)



def timeless(report: dict) -> dict:
    """A report without its wall-clock timings, the one part that differs between equal runs."""
    return {key: value for key, value in report.items() if key != "timings_s"}


def cli_files(tmp_path: Path, graph: ir.Graph | None = None) -> tuple[Path, Path]:
    graph = tiny_mlp() if graph is None else graph
    model, data = tmp_path / "model.onnx", tmp_path / "data.npz"
    save(graph, model)
    np.savez(data, **arrays(graph.input.shape))
    return model, data


CLI_RUN = ["--steps-per-budget", "20", "--eval-every", "5", "--lr", "3e-3", "--batch-size", "32",
           "--time-steps", str(TIME_STEPS), "--budget", "0.6", "--budget", "0.35"]


# ---------------------------------------------------------------------------
# The exported models: budgets met, report fields, plain onnxruntime
# ---------------------------------------------------------------------------
def check_exported(report: dict, out: Path, graph: ir.Graph, conf: CompressConfig) -> list[ir.Graph]:
    """Every budget is met by the model file itself (loaded back, resource recomputed on the
    same measurement data), and the report says what it must. Returns the loaded models."""
    _, val, test = splits(graph)
    measure_x = val.inputs(slice(0, conf.measure_samples))
    reference = resource_figures(graph, measure_activity(graph, measure_x), conf.energy)
    assert report["resource"] == conf.resource and report["method"] == conf.method
    assert report["input"]["figures"] == pytest.approx(reference, rel=1e-12)
    entries = report["budgets"]
    assert [e["budget"] for e in entries] == sorted(conf.budgets, reverse=True)
    models = []
    for entry in entries:
        assert entry["resource"] == conf.resource
        path = out / entry["model"]
        assert path.is_file()
        model = load_model(path)
        figures = resource_figures(model, measure_activity(model, measure_x), conf.energy)
        achieved = figures[conf.resource] / reference[conf.resource]
        assert achieved <= entry["budget"] * (1 + 1e-12), (conf.resource, conf.method, entry["budget"], achieved)
        assert achieved == pytest.approx(entry["achieved"], rel=1e-9, abs=1e-12)
        for resource in RESOURCES:
            assert figures[resource] == pytest.approx(entry["figures"][resource], rel=1e-9, abs=1e-9)
        for split, data in (("val", val), ("test", test)):
            predictions = simulate(model, data.inputs()).predictions()
            assert entry["accuracy"][split] == pytest.approx(np.mean(predictions == data.y))
            assert 0.0 <= entry["accuracy"][split] <= 1.0
        assert entry["runtimes_agree"] is True
        for name, layer in entry["layers"].items():
            assert layer["nonzero"] == np.count_nonzero(model[name].weight)
        models.append(model)
    return models


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("resource", RESOURCES)
def test_every_budget_is_met_by_the_exported_model(tmp_path, resource, method):
    graph = tiny_mlp()
    budgets = reachable_budgets(graph, resource)
    report = compress(graph, tmp_path, resource=resource, method=method, budgets=budgets)
    check_exported(report, tmp_path, graph, config(resource=resource, method=method, budgets=budgets))


@pytest.mark.parametrize("resource, method, granularity", [
    ("params", "minimax", "layer"), ("macs", "minimax", "global"), ("synops", "minimax", "layer"),
    ("synops", "gradual", "global"), ("energy", "minimax", "global"), ("energy", "magnitude", "global"),
])
def test_conv_model_budgets_are_met_by_the_exported_model(tmp_path, resource, method, granularity):
    graph = tiny_conv()
    budgets = reachable_budgets(graph, resource, (0.5, 0.2, 0.05))
    changes = dict(resource=resource, method=method, granularity=granularity, budgets=budgets)
    report = compress(graph, tmp_path, **changes)
    check_exported(report, tmp_path, graph, config(**changes))


@pytest.mark.parametrize("method,granularity", [(method, "global") for method in METHODS]
                         + [("minimax", "layer"), ("minimax-paper", "layer")])
def test_no_method_prunes_more_synapses_than_the_budget_asks(tmp_path, method, granularity):
    """The budget is a ceiling, not a target to undershoot: at most one synapse short of it (one
    per layer with an s per layer, whose step can overshoot by whole layers)."""
    graph = tiny_conv()
    budgets = reachable_budgets(graph, "params", (0.6, 0.3, 0.1, 0.02))
    report = compress(graph, tmp_path, method=method, budgets=budgets, dual_lr_z=1.0, lr_s=1.0,  # big s steps
                      granularity=granularity)
    synapses = report["input"]["figures"]["params"]
    slack = 1 if granularity == "global" else len(report["prunable"])
    for entry in report["budgets"]:
        kept = entry["figures"]["params"]
        assert entry["budget"] * synapses - slack < kept <= entry["budget"] * synapses


@pytest.mark.parametrize("graph", [tiny_mlp, tiny_conv])
def test_a_reconnected_cut_keeps_fewer_dead_synapses_at_the_same_count(tmp_path, graph):
    """--reconnect: the synapses a cut keeps dead (shrink.live_synapses: they drive a neuron no
    output depends on, or read one that is always zero) give their place to live ones, one for one
    (the budget is met as closely): fewer dead synapses at tiny budgets, none where there are
    live ones enough (the conv net; the MLP's 4 classes read few of its 48 neurons at 10 %)."""
    dead = {}
    for reconnect in (False, True):
        out = tmp_path / str(reconnect)
        report = compress(graph(), out, method="magnitude", budgets=(0.2, 0.1, 0.04, 0.02),
                          prunable=[node.name for node in graph().prunable()], reconnect=reconnect)
        synapses = report["input"]["figures"]["params"]
        dead[reconnect] = 0
        for entry in report["budgets"]:
            assert entry["budget"] * synapses - 1 < entry["figures"]["params"] <= entry["budget"] * synapses
            model = load_model(out / entry["model"])
            live = live_synapses(model)
            dead[reconnect] += sum(int(np.count_nonzero(model[name].weight[~live[name]])) for name in report["prunable"])
    assert dead[True] < dead[False] and (dead[True] == 0 or graph is tiny_mlp)


def test_every_layer_can_be_pruned_down_to_a_tiny_budget(tmp_path):
    graph = tiny_mlp()
    changes = dict(budgets=(0.05, 0.01), prunable=["fc1", "fc2", "fc3"], resource="synops")
    report = compress(graph, tmp_path, **changes)
    check_exported(report, tmp_path, graph, config(**changes))
    assert report["prunable"] == ["fc1", "fc2", "fc3"]


def test_report_holds_what_a_ci_job_reads(tmp_path):
    graph = tiny_mlp()
    before = graph.copy()
    report = compress(graph, tmp_path)
    assert graph.same_as(before)  # the caller's graph is not touched either
    assert json.loads((tmp_path / REPORT).read_text()) == report
    assert {"input", "budgets", "resource", "method", "seed"} <= report.keys()
    assert report["prunable"] == ["fc2", "fc3"]  # the paper's default keeps the first layer dense
    for entry in report["budgets"]:
        assert {"budget", "resource", "achieved", "accuracy", "model"} <= entry.keys()
        assert {"val", "test"} <= entry["accuracy"].keys()
        assert entry["search_steps"] + entry["finetune_steps"] == 20
        assert not Path(entry["model"]).is_absolute()  # the folder can be moved
    # the layer kept dense is counted honestly: all its synapses are there
    assert all(e["layers"]["fc1"]["connectivity"] == 1.0 for e in report["budgets"])


def test_pruned_models_run_in_onnxruntime_without_custom_ops(tmp_path):
    graph = tiny_conv()
    report = compress(graph, tmp_path, budgets=(0.5, 0.2), prunable=["conv1", "conv2", "fc"])
    _, _, test = splits(graph)
    for entry in report["budgets"]:
        path = tmp_path / entry["model"]
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        local = {(f.domain, f.name) for f in model.functions}
        for node in model.graph.node:
            assert node.domain in ("", "ai.onnx") or (node.domain, node.op_type) in local, node.op_type
        for function in model.functions:  # functions are made of standard ops only
            assert all(n.domain in ("", "ai.onnx") for n in function.node)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        output = session.run(None, {session.get_inputs()[0].name: test.inputs()})[0]
        accuracy = float(np.mean(np.argmax(output, axis=-1) == test.y))
        assert accuracy == pytest.approx(entry["accuracy"]["test_onnxruntime"])
        assert accuracy == pytest.approx(entry["accuracy"]["test"])


def test_the_cli_runs_on_data_without_validation_or_test_split(tmp_path, capsys, monkeypatch):
    model, _ = cli_files(tmp_path)
    data = tmp_path / "train_only.npz"
    train = arrays((8,))
    np.savez(data, x=train["x"], y=train["y"])
    code, out, err = run_cli(["compress", model, "--data", data, *CLI_RUN, "--out", tmp_path / "out"], capsys, monkeypatch)
    assert code == 0, err
    assert "training split" in out
    # what the run had to do without them is said (a fresh user saw "-" columns and no curve, unexplained)
    assert "has no validation split (x_val, y_val): each budget's snapshot is chosen on the training split" in err
    assert "has no test split (x_test, y_test): no test accuracy is measured and no accuracy curve" in err
    assert not (tmp_path / "out" / "curve.png").exists()


def test_progress_lines_name_the_budget_and_count_the_steps_of_all_budgets(tmp_path, monkeypatch):
    # a fresh user read "1/40 steps" as a budget's own steps: the count is the whole run's
    import io

    from onnx_snn_compress import progress

    ticks = iter(range(0, 10**6, 60))  # a minute between two readings of the clock: a line every step
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(ticks)))
    graph = tiny_mlp()
    train, val, test = splits(graph)
    log = io.StringIO()
    conf = config(train=TrainConfig(lr=3e-3, batch_size=32, progress=True, seed=0))
    Compression(graph, train, val, test, conf, tmp_path, log=log).run()
    lines = [line for line in log.getvalue().splitlines() if "steps of all budgets" in line]
    assert lines[0].startswith("budget 0.6 (1/2) search: 1/40 steps of all budgets (2 %)")
    assert any(line.startswith("budget 0.35 (2/2) finetune: 40/40 steps of all budgets (100 %), best val ")
               for line in lines)  # the best validation accuracy first: a narrow terminal cuts the status's end


def test_the_curve_is_skipped_without_any_accuracy(tmp_path):
    pytest.importorskip("matplotlib")
    from onnx_snn_compress.report import plot_curve

    graph = tiny_mlp()
    train, _, _ = splits(graph)
    report = Compression(graph, train, None, None, config(), tmp_path, log=None).run()
    assert plot_curve(report, tmp_path) == []
    report = compress(graph, tmp_path / "with_val")
    assert [p.name for p in plot_curve(report, tmp_path / "with_val")] == ["curve.png", "curve.svg"]


def test_the_curves_accuracy_axis_starts_below_its_lowest_point_and_not_below_zero():
    from onnx_snn_compress.report import curve_floor

    assert curve_floor(96.9) == 90 and curve_floor(99.4) == 90 and curve_floor(95.0) == 90
    assert curve_floor(31.1) == 20 and curve_floor(4.0) == 0 and curve_floor(0.0) == 0


def test_a_run_without_validation_or_test_split_measures_on_the_training_split(tmp_path):
    graph = tiny_mlp()
    train, _, _ = splits(graph)
    report = Compression(graph, train, None, None, config(), tmp_path, log=None).run()
    assert report["measured_on"] == "training split"
    assert [e["accuracy"] for e in report["budgets"]] == [{}, {}]
    assert all(e["achieved"] <= e["budget"] for e in report["budgets"])


# ---------------------------------------------------------------------------
# Hard masks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_a_weight_pruned_at_one_budget_is_zero_in_every_later_model(tmp_path, method):
    graph = tiny_mlp()
    report = compress(graph, tmp_path, method=method, budgets=(0.7, 0.5, 0.3))
    pruned_before = None
    for entry in report["budgets"]:
        model = load_model(tmp_path / entry["model"])
        pruned = np.concatenate([(model[n.name].weight == 0).ravel() for n in model.prunable()])
        if pruned_before is not None:
            assert np.all(pruned[pruned_before]), "a pruned weight came back"
            assert pruned.sum() > pruned_before.sum()
        pruned_before = pruned


@pytest.mark.parametrize("method", METHODS)
def test_masked_weights_their_gradients_and_moments_are_zero_while_finetuning(tmp_path, method):
    graph = tiny_mlp()
    train, val, test = splits(graph)
    run = Compression(graph, train, val, test, config(method=method, budgets=(0.6, 0.35)), tmp_path, log=None)
    step = run.trainer.train_step
    checked = {"finetune": 0, "search": 0}

    def checked_step(penalty=None):
        result = step(penalty)
        state, optimizer = run.state, run.trainer.optimizer
        if state.stage == "finetune":
            pruned = state.phase_pruned
            expected_masks = run.flat.keep_masks(pruned)
            checked["finetune"] += 1
        elif state.budget_index > 0:  # the earlier budgets' masks hold while the next one searches
            pruned = state.hard_pruned
            expected_masks = run.flat.keep_masks(pruned)
            checked["search"] += 1
        else:
            return result
        assert pruned.any()
        assert np.all(run.flat.weights()[pruned] == 0.0)
        for name, keep in expected_masks.items():
            mask = optimizer.mask(name)
            assert mask is not None
            if state.stage == "finetune":
                assert np.array_equal(mask, keep)
            assert not np.any(mask & ~keep), "a pruned weight is not masked"
            gone = ~keep
            assert np.all(optimizer.params[name][gone] == 0.0)
            for moments in optimizer.moments.values():
                assert np.all(moments[name][gone] == 0.0)
        return result

    run.trainer.train_step = checked_step
    before = {n.name: n.weight.copy() for n in run.graph.prunable()}
    run.run()
    assert checked["finetune"] >= 20 and (checked["search"] >= 1 or method == "magnitude")  # magnitude: no search
    # the surviving weights do train: the masks do not freeze everything
    kept = [n for n in run.graph.prunable() if n.name in run.layers]
    assert all(np.any((before[n.name] != n.weight) & (n.weight != 0)) for n in kept)
    assert any(not np.array_equal(before[n.name], n.weight) for n in run.graph.prunable())


def test_weights_already_zero_in_the_input_model_stay_pruned_from_the_first_step(tmp_path):
    """Compressing a compressed model further: its zeros are pruned synapses, not weights to regrow."""
    graph = tiny_mlp()
    graph["fc2"].weight[:, ::2] = 0.0
    train, val, test = splits(graph)
    run = Compression(graph, train, val, test, config(budgets=(0.4, 0.3)), tmp_path, log=None)
    zero = {name: graph[name].weight == 0 for name in ("fc2", "fc3")}
    step, steps = run.trainer.train_step, {"n": 0}

    def checked_step(penalty=None):
        result = step(penalty)
        steps["n"] += 1
        for name, gone in zero.items():
            assert np.all(run.graph[name].weight[gone] == 0.0), f"step {steps['n']}: {name} regrew"
        return result

    run.trainer.train_step = checked_step
    report = run.run()
    assert steps["n"] == 40
    assert report["input"]["figures"]["params"] == np.count_nonzero(graph["fc1"].weight) + sum(
        np.count_nonzero(graph[n].weight) for n in ("fc2", "fc3"))


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method, resource", [("minimax", "synops"), ("gradual", "params"), ("magnitude", "energy"),
                                              ("minimax-paper", "params")])
def test_the_same_seed_gives_the_same_report_and_models(tmp_path, method, resource):
    graph = tiny_mlp()
    budgets = reachable_budgets(graph, resource)
    runs = [compress(graph, tmp_path / name, method=method, resource=resource, budgets=budgets, seed=seed)
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    assert runs[0] == runs[1]
    assert (tmp_path / "a" / REPORT).read_bytes() == (tmp_path / "b" / REPORT).read_bytes()
    assert models_of(tmp_path / "a") == models_of(tmp_path / "b")
    assert models_of(tmp_path / "a") != models_of(tmp_path / "c")  # the seed matters: the test can fail


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------
class Interrupt(KeyboardInterrupt):
    pass


def interrupt_after(monkeypatch, steps: int) -> None:
    """Ctrl-C after ``steps`` training steps."""
    original, count = Trainer.train_step, {"steps": 0}

    def train_step(self, penalty=None):
        if count["steps"] == steps:
            raise Interrupt()
        count["steps"] += 1
        return original(self, penalty)

    monkeypatch.setattr(Trainer, "train_step", train_step)


# 2 budgets x 20 steps, eval (and checkpoint) every 5; minimax searches for at most 10 steps
@pytest.mark.parametrize("method, resource, steps", [
    ("minimax", "params", 3),  # search, before the first checkpoint
    ("minimax", "params", 7),  # search, after a checkpoint
    ("minimax", "synops", 8),  # search, costs re-measured since the checkpoint
    ("minimax", "params", 14),  # finetune
    ("minimax", "params", 19),  # last step of the first budget
    ("minimax", "params", 20),  # between budgets: the first one exported
    ("minimax", "energy", 33),  # the second budget's finetune
    ("gradual", "params", 6),  # gradual search: masks set step by step
    ("gradual", "synops", 27),
    ("magnitude", "macs", 12),
    ("minimax-layer", "synops", 9),  # one pruning amount per layer
    ("minimax-every3", "params", 7),  # a search step every 3 steps and at each checkpoint: the sets held at 5
    ("minimax-every3", "synops", 8),
    ("minimax-poisson", "synops", 24),  # spikes drawn from the data seed
    ("minimax-paper", "params", 14),  # the finetune at 10x lr
    ("minimax-paper", "params", 23),  # the second budget's search, on the trajectory of the first
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, method, resource, steps):
    graph = tiny_mlp()
    changes = dict(method=method, resource=resource, budgets=reachable_budgets(graph, resource))
    if method == "minimax-layer":
        changes.update(method="minimax", granularity="layer")
    if method == "minimax-poisson":
        changes.update(method="minimax", encoding="poisson")
    if method == "minimax-every3":
        changes.update(method="minimax", search_every=3)
    expected = compress(graph, tmp_path / "whole", **changes)
    with monkeypatch.context() as patch:
        interrupt_after(patch, steps)
        with pytest.raises(Interrupt):
            compress(graph, tmp_path / "cut", **changes)
    assert (tmp_path / "cut" / CHECKPOINT).is_file() or steps < 5
    run = start(graph, tmp_path / "cut", **changes)
    if steps < 5:  # no checkpoint yet: nothing to resume, start again
        with pytest.raises(SNNError, match="nothing to resume"):
            run.restore()
        return
    run.restore()
    assert run.run() == expected
    assert models_of(tmp_path / "cut") == models_of(tmp_path / "whole")
    assert (tmp_path / "cut" / REPORT).read_bytes() == (tmp_path / "whole" / REPORT).read_bytes()


def test_an_interruption_while_exporting_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    graph = tiny_mlp()
    expected = compress(graph, tmp_path / "whole")
    module = sys.modules[Compression.__module__]  # the package's `compress` is the API function

    calls = {"n": 0}
    original = module.save

    def save_then_die(graph, path, *options):
        calls["n"] += 1
        if calls["n"] == 2:  # the second budget's model
            raise Interrupt()
        original(graph, path, *options)

    with monkeypatch.context() as patch:
        patch.setattr(module, "save", save_then_die)
        with pytest.raises(Interrupt):
            compress(graph, tmp_path / "cut")
    run = start(graph, tmp_path / "cut")
    run.restore()
    assert run.run() == expected
    assert models_of(tmp_path / "cut") == models_of(tmp_path / "whole")


def test_resume_from_the_cli_after_ctrl_c_ends_with_the_same_report(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    base = ["compress", model, "--data", data, *CLI_RUN, "--json", "--quiet"]
    code, out, _ = run_cli([*base, "--out", tmp_path / "whole"], capsys, monkeypatch)
    assert code == 0
    expected = timeless(json.loads(out))
    with monkeypatch.context() as patch:
        interrupt_after(patch, 26)
        code, out, err = run_cli([*base, "--out", tmp_path / "cut"], capsys, monkeypatch)
    assert code == 130 and err.count("\n") == 1 and "--resume" in err
    assert not (tmp_path / "cut" / REPORT).exists() or len(json.loads((tmp_path / "cut" / REPORT).read_text())["budgets"]) == 1
    code, out, err = run_cli([*base, "--out", tmp_path / "cut", "--resume"], capsys, monkeypatch)
    assert code == 0, err
    assert timeless(json.loads(out)) == expected
    assert models_of(tmp_path / "cut") == models_of(tmp_path / "whole")
    # resuming a finished run changes nothing
    code, out, _ = run_cli([*base, "--out", tmp_path / "cut", "--resume"], capsys, monkeypatch)
    assert code == 0 and timeless(json.loads(out)) == expected


def test_resume_does_not_care_whether_progress_is_printed(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    base = ["compress", model, "--data", data, *CLI_RUN, "--out", tmp_path / "run"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        assert run_cli(base, capsys, monkeypatch)[0] == 130
    code, out, err = run_cli([*base, "--resume", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert len(json.loads(out)["budgets"]) == 2
    # where it goes on from: the checkpoint of step 10 (every 5), in the first budget's search or finetune
    assert "resumed from checkpoint.npz: budget 0.6 (1/2), " in err and " step 10 of 20" in err, err


def test_resume_with_other_options_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    base = ["compress", model, "--data", data, *CLI_RUN, "--out", tmp_path / "run"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        assert run_cli(base, capsys, monkeypatch)[0] == 130
    code, out, err = run_cli([*base, "--resume", "--seed", "5"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "other options" in err
    code, _, err = run_cli([*base[:-1], tmp_path / "empty", "--resume"], capsys, monkeypatch)
    assert code == 2 and "nothing to resume" in err and err.count("\n") == 1


@pytest.mark.parametrize("case", ["other weights", "other architecture", "other data"])
def test_resume_on_another_model_or_other_data_is_refused_in_one_line(tmp_path, capsys, monkeypatch, case):
    model, data = cli_files(tmp_path)
    run = ["compress", *CLI_RUN, "--out", tmp_path / "run"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        assert run_cli([*run, model, "--data", data], capsys, monkeypatch)[0] == 130
    if case == "other weights":
        save(tiny_mlp(seed=1), model)
    elif case == "other architecture":
        (tmp_path / "conv").mkdir()
        model, data = cli_files(tmp_path / "conv", tiny_conv())
    else:
        np.savez(data, **arrays((8,), seed=1))
    checkpoint = (tmp_path / "run" / CHECKPOINT).read_bytes()
    code, out, err = run_cli([*run, model, "--data", data, "--resume"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "another model or other data" in err
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == checkpoint


def test_resume_removes_the_temporary_files_a_kill_left(tmp_path, monkeypatch):
    graph = tiny_mlp()
    with monkeypatch.context() as patch:
        interrupt_after(patch, 26)
        with pytest.raises(Interrupt):
            compress(graph, tmp_path)
    stale = [tmp_path / ".checkpoint.npz.k1ll3d.tmp", tmp_path / "budget_0.6" / ".model.onnx.x8y2z0.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    run = start(graph, tmp_path)
    run.restore()
    run.run()
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".")] == []


def test_a_killed_process_resumes_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch):
    """A real kill -9 after the first checkpoint, then --resume."""
    model, data = cli_files(tmp_path)
    args = [model, "--data", data, "--steps-per-budget", "200", "--eval-every", "10", "--lr", "3e-3",
            "--batch-size", "32", "--time-steps", str(TIME_STEPS), "--budget", "0.6", "--budget", "0.35", "--json"]
    cut = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "onnx_snn_compress", "compress", *map(str, args), "--out", str(cut)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (cut / CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # into the run, well before its end
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    report = cut / REPORT
    assert not report.exists() or len(json.loads(report.read_text())["budgets"]) < 2
    code, out, err = run_cli(["compress", *args, "--out", cut, "--resume"], capsys, monkeypatch)
    assert code == 0, err
    resumed = timeless(json.loads(out))
    code, out, err = run_cli(["compress", *args, "--out", tmp_path / "whole"], capsys, monkeypatch)
    assert code == 0, err
    assert resumed == timeless(json.loads(out))
    assert models_of(cut) == models_of(tmp_path / "whole")
    assert [p for p in cut.rglob("*") if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------
# Bounded search, unreachable budgets, extreme dual step sizes
# ---------------------------------------------------------------------------
def no_training(monkeypatch):
    def train_step(self, penalty=None):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize("resource", RESOURCES)
def test_an_unreachable_budget_is_refused_before_any_training(tmp_path, monkeypatch, resource):
    graph = tiny_conv()
    # fed analog values the first layer costs no SynOps (any budget is reachable); fed spikes it does
    encoding = "poisson" if resource == "synops" else "direct"
    floor = dense_share(graph, resource, encoding=encoding)
    assert floor > 0.0
    no_training(monkeypatch)
    train, val, test = splits(graph, encoding=encoding)
    with pytest.raises(SNNError) as error:
        Compression(graph, train, val, test, config(budgets=(0.9, floor * 0.9), resource=resource),
                    tmp_path / "out", log=None).run()
    message = str(error.value)
    assert "cannot be reached" in message and "('conv1')" in message and "\n" not in message
    # the option that would prune every synapse layer, the one kept dense among them
    assert "(" + " ".join(f"--prune {node.name}" for node in graph.prunable()) + ")" in message
    assert not (tmp_path / "out").exists()


def test_an_unreachable_budget_exits_2_with_one_line_and_no_output(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, "--budget", "0.05", "--out", tmp_path / "out"],
                             capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "cannot be reached" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("resource", ["params", "synops"])
def test_a_search_that_cannot_meet_the_budget_is_forced_and_the_run_ends(tmp_path, resource):
    graph = tiny_mlp()
    budgets = reachable_budgets(graph, resource)
    # with no step on s the least-s set never grows: minimax alone can never meet the budget
    report = compress(graph, tmp_path, resource=resource, budgets=budgets, lr_s=0.0)
    for entry in report["budgets"]:
        assert entry["forced"] is True
        assert entry["search_steps"] == 10  # the bound: search_fraction x steps_per_budget
        assert entry["finetune_steps"] == 10
    check_exported(report, tmp_path, graph, config(resource=resource, budgets=budgets, lr_s=0.0))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no overflow along the way either
@pytest.mark.parametrize("lr_s, lr_y, lr_z", [
    (1e30, 1e30, 1e30), (1e308, 1e308, 1e308), (0.0, 0.0, 0.0), (0.1, 1e30, 1e30), (1e30, 0.0, 1e30), (0.1, 1e30, 0.0), (1e-30, 1e-30, 1e-30),
])
@pytest.mark.parametrize("resource", ["params", "energy"])
def test_extreme_dual_step_sizes_give_no_nan_or_inf(tmp_path, lr_s, lr_y, lr_z, resource):
    graph = tiny_mlp()
    changes = dict(resource=resource, budgets=reachable_budgets(graph, resource), lr_s=lr_s, dual_lr_y=lr_y,
                   dual_lr_z=lr_z)
    report = compress(graph, tmp_path, **changes)
    assert all(math.isfinite(v) for v in numbers(report))
    for model in check_exported(report, tmp_path, graph, config(**changes)):
        for node in model:
            for name, array in node.parameters().items():
                assert np.all(np.isfinite(array)), (node.name, name)


# ---------------------------------------------------------------------------
# Files: the input is never modified, outputs are atomic, a finished run is not overwritten
# ---------------------------------------------------------------------------
def test_the_input_model_is_never_modified_and_no_temporary_file_is_left(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    before = (sha256(model), sha256(data), os.stat(model).st_mtime_ns)
    base = ["compress", model, "--data", data, *CLI_RUN]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 17)
        assert run_cli([*base, "--out", tmp_path], capsys, monkeypatch)[0] == 130  # out = the model's folder
    assert run_cli([*base, "--out", tmp_path, "--resume"], capsys, monkeypatch)[0] == 0
    assert (sha256(model), sha256(data), os.stat(model).st_mtime_ns) == before
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.onnx", "data.npz", REPORT, CONFIG_FILE, "budget_0.6", "budget_0.35",  # the finished run dropped its checkpoint
         *[p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".svg")]])


def test_a_folder_that_holds_a_run_is_not_overwritten_without_resume(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    base = ["compress", model, "--data", data, *CLI_RUN, "--out", tmp_path / "run"]
    assert run_cli(base, capsys, monkeypatch)[0] == 0
    before = files_of(tmp_path / "run")
    no_training(monkeypatch)
    code, out, err = run_cli(base, capsys, monkeypatch)
    assert code == 2 and out == "" and err.count("\n") == 1 and "--resume" in err
    assert files_of(tmp_path / "run") == before


@pytest.mark.parametrize("option, value, fragment", [
    ("--budget", "0", "outside (0, 1]"),
    ("--budget", "1.5", "outside (0, 1]"),
    ("--budget", "-0.2", "outside (0, 1]"),
    ("--budget", "nan", "outside (0, 1]"),
    ("--budget", "inf", "outside (0, 1]"),
    ("--resource", "flops", "'flops' is not one of 'params', 'macs', 'synops', 'energy'"),
    ("--method", "random", "'random' is not one of 'minimax', 'minimax-paper', 'magnitude', 'gradual'"),
    ("--granularity", "channel", "'channel' is not one of 'global', 'layer'"),
    ("--dual-lr-y", "inf", "dual_lr_y"),
    ("--dual-lr-z", "-1", "dual_lr_z"),
    ("--lr-s", "nan", "lr_s"),
    ("--prune", "conv9", "cannot prune 'conv9'"),
    ("--steps-per-budget", "0", "--steps-per-budget"),
    ("--eval-every", "0", "--eval-every"),
    ("--batch-size", "0", "batch size"),
    ("--time-steps", "0", "time steps"),
    ("--lr", "nan", "learning rate"),
    ("--e-ac", "nan", "e_ac_pj"),
    ("--e-mac", "-4.6", "e_mac_pj"),
    ("--distill", "1.5", "--distill must lie in [0, 1]"),
    ("--search-lr-factor", "0", "--search-lr-factor must be a positive number"),
])
def test_bad_options_give_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, option, value, fragment):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, option, value, "--out", tmp_path / "out"],
                             capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert "Value error" not in err  # the validator's own prefix is not the user's business
    assert not (tmp_path / "out").exists()


def test_repeated_budgets_are_refused(tmp_path, capsys, monkeypatch):
    model, data = cli_files(tmp_path)
    code, _, err = run_cli(["compress", model, "--data", data, "--budget", "0.5", "--budget", "0.5",
                            "--out", tmp_path / "out"], capsys, monkeypatch)
    assert code == 2 and "differ" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------
# The README's main job
# ---------------------------------------------------------------------------
def test_compress_with_no_arguments_compresses_the_embedded_sample(tmp_path, capsys, monkeypatch):
    """`snn-compress compress` alone, exactly as the README runs it (about 12 s on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["compress"], capsys, monkeypatch)
    assert code == 0, err
    folder = tmp_path / "snn-compress-out"
    report = json.loads((folder / REPORT).read_text())
    assert [e["budget"] for e in report["budgets"]] == [0.3, 0.2, 0.1, 0.05]
    assert report["resource"] == "params" and report["method"] == "minimax"
    x = np.load(digits_path())["x_test"][:16]
    for entry in report["budgets"]:
        assert entry["achieved"] <= entry["budget"]
        assert entry["runtimes_agree"] is True
        session = ort.InferenceSession(str(folder / entry["model"]), providers=["CPUExecutionProvider"])
        output = session.run(None, {session.get_inputs()[0].name: np.broadcast_to(x, (8, *x.shape)).copy()})[0]
        assert output.shape == (16, 10)
    assert report["budgets"][0]["accuracy"]["test"] > 0.5  # the trained sample survives the mildest budget
    lines = out.splitlines()
    assert any(line.split()[:1] == ["0.05"] for line in lines)  # the table has a row per budget
    assert f"report: snn-compress-out/{REPORT}" in out
    if importlib.util.find_spec("matplotlib") is not None:  # the README's first command installs the plot extra
        assert (folder / "curve.png").stat().st_size > 0 and (folder / "curve.svg").stat().st_size > 0


# ---------------------------------------------------------------------------
# minimax-paper, the reference; the output layer kept connected
# ---------------------------------------------------------------------------
def test_minimax_paper_duals_only_grow_and_its_finetune_restarts_at_ten_times_the_lr(tmp_path):
    graph = tiny_mlp()
    run = start(graph, tmp_path, method="minimax-paper", budgets=(0.6, 0.35))
    original, seen = run.trainer.train_step, []

    def watched_step(penalty=None):
        result = original(penalty)
        state = run.state
        seen.append((state.stage, state.phase_step, run.trainer.optimizer.lr,
                     None if state.solver is None else (state.solver.y.copy(), state.solver.z)))
        return result

    run.trainer.train_step = watched_step
    report = run.run()
    duals = [d for *_, d in seen if d is not None]
    assert all(np.all(b[0] >= a[0]) and b[1] >= a[1] for a, b in zip(duals, duals[1:]))  # y, z never fall
    assert duals[-1][1] > 0
    lr = run.config.train.lr
    searches = [(step, rate) for stage, step, rate, _ in seen if stage == "search"]
    assert all(rate == lr for _, rate in searches)
    for entry in report["budgets"]:
        if entry["finetune_steps"] > 0:  # the first finetune step of the budget: 10x the search's lr
            first = [rate for stage, step, rate, _ in seen if stage == "finetune" and step == entry["search_steps"]]
            assert first and first[0] == pytest.approx(10 * lr)


def test_minimax_paper_aims_its_resource_dual_at_the_last_budget(tmp_path):
    graph = tiny_mlp()
    run = start(graph, tmp_path, method="minimax-paper", budgets=(0.6, 0.35))
    assert run._budget(0.0).aim == 0.35 and run._budget(0.0).target == 0.6
    plain = start(graph, tmp_path / "plain", method="minimax", budgets=(0.6, 0.35))
    assert plain._budget(0.0).aim == 0.6


@pytest.mark.parametrize("method", METHODS)
def test_every_output_neuron_keeps_its_strongest_synapses_when_asked(tmp_path, method):
    graph = tiny_mlp()
    changes = dict(method=method, budgets=(0.3, 0.05), prunable=["fc1", "fc2", "fc3"], min_output_synapses=2)
    report = compress(graph, tmp_path, **changes)
    models = check_exported(report, tmp_path, graph, config(**changes))
    for model in models:
        assert np.all(np.count_nonzero(model["fc3"].weight, axis=1) >= 2)


# ---------------------------------------------------------------------------
# Distillation from the input model
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method, distill, expected", [
    ("minimax", None, DEFAULT_DISTILL["minimax"]), ("minimax", 0.0, 0.0), ("magnitude", None, 0.0),
    ("gradual", 0.3, 0.3), ("minimax-paper", None, 0.0),
])
def test_the_teacher_is_the_input_models_output_on_the_training_samples(tmp_path, method, distill, expected):
    graph = tiny_mlp()
    run = start(graph, tmp_path, method=method, distill=distill)
    assert run.trainer.distill == expected
    if expected == 0.0:
        assert run.trainer.teacher is None
    else:
        train, _, _ = splits(graph)
        np.testing.assert_array_equal(run.trainer.teacher, simulate(graph, train.inputs()).output)


def test_distillation_changes_the_training_and_its_runs_stay_deterministic(tmp_path):
    graph = tiny_mlp()
    compress(graph, tmp_path / "plain", distill=0.0)
    taught = [compress(graph, tmp_path / f"taught{i}", distill=0.8) for i in range(2)]
    assert timeless(taught[0]) == timeless(taught[1])
    assert models_of(tmp_path / "plain") != models_of(tmp_path / "taught0")
    assert models_of(tmp_path / "taught0") == models_of(tmp_path / "taught1")


def test_the_teacher_outputs_do_not_depend_on_how_the_training_split_is_chunked(monkeypatch):
    compression = importlib.import_module("onnx_snn_compress.compress")  # the module, not the API function
    graph = tiny_mlp()
    train, _, _ = splits(graph)
    monkeypatch.setattr(compression, "TEACHER_CHUNK", 7)  # 96 samples: 13 unequal chunks
    np.testing.assert_array_equal(compression._teacher_outputs(graph, train), simulate(graph, train.inputs()).output)


@pytest.mark.parametrize("method, factor, expected", [
    ("minimax", None, DEFAULT_SEARCH_LR_FACTOR["minimax"]), ("minimax", 1.0, 1.0), ("gradual", None, 1.0),
    ("gradual", 3.0, 3.0),
])
def test_the_search_runs_its_own_cosine_from_the_search_lr_factor_times_the_lr(tmp_path, method, factor, expected):
    graph = tiny_mlp()
    run = start(graph, tmp_path, method=method, search_lr_factor=factor)
    original, seen = run.trainer.train_step, []

    def watched_step(penalty=None):
        result = original(penalty)
        seen.append((run.state.stage, run.state.phase_step, run.trainer.optimizer.lr))
        return result

    run.trainer.train_step = watched_step
    run.run()
    cosine = CosineSchedule(expected * run.config.train.lr, run.config.steps_per_budget)
    searches = [(step, rate) for stage, step, rate in seen if stage == "search"]
    assert len(searches) >= 2 * len(run.config.budgets)
    assert all(rate == pytest.approx(cosine(step)) for step, rate in searches)


@pytest.mark.parametrize("method", ["minimax-paper", "magnitude"])
def test_a_search_lr_factor_for_a_method_without_its_own_search_schedule_is_refused(tmp_path, capsys, monkeypatch, method):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, "--method", method, "--search-lr-factor", "2",
                              "--out", tmp_path / "out"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and f"does not apply to {method}" in err, err
    assert not (tmp_path / "out").exists()
