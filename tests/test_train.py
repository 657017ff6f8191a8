"""The trainer: seeded and bit-reproducible, resumable by step, validation-chosen snapshots, hard masks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.backprop import trainable
from onnx_snn_compress.cli.main import main
from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.samples import digits_path
from onnx_snn_compress.train import TrainConfig, Trainer, accuracy, train


def untrained_mlp(seed: int = 0) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph([
        ir.Input("x", shape=(64,)),
        ir.Linear("fc1", ("x",), weight=rng.uniform(-0.125, 0.125, (32, 64)), bias=rng.uniform(0, 0.1, 32)),
        ir.Neuron("lif1", ("fc1",), beta=0.9),
        ir.Dropout("drop", ("lif1",), p=0.2),
        ir.Linear("fc2", ("drop",), weight=rng.uniform(-0.18, 0.18, (10, 32)), bias=np.full(10, 0.3)),
        ir.Neuron("lif2", ("fc2",), beta=0.9),
        ir.Readout("out", ("lif2",)),
    ])


def digits(graph, split, encoding="poisson"):
    return load_for_model(digits_path(), graph.input.shape, 10, split=split, time_steps=4, encoding=encoding)


CONFIG = dict(epochs=2, batch_size=64, lr=3e-3, progress=False)


def test_same_seed_gives_bit_identical_models_and_history():
    graph = untrained_mlp()
    runs = [train(graph, digits(graph, "train"), digits(graph, "val"), TrainConfig(seed=7, **CONFIG)) for _ in range(2)]
    assert to_model(runs[0].graph).SerializeToString() == to_model(runs[1].graph).SerializeToString()
    assert runs[0].to_json() == {**runs[1].to_json(), "history": [
        {**a, "seconds": b["seconds"]} for a, b in zip(runs[1].to_json()["history"], runs[0].to_json()["history"])
    ]}
    other = train(graph, digits(graph, "train"), digits(graph, "val"), TrainConfig(seed=8, **CONFIG))
    assert to_model(other.graph).SerializeToString() != to_model(runs[0].graph).SerializeToString()


def test_training_learns_the_digits_and_never_modifies_its_input():
    graph = untrained_mlp()
    before = to_model(graph).SerializeToString()
    val = digits(graph, "val", "direct")
    start = accuracy(graph, val)
    result = train(graph, digits(graph, "train", "direct"), val, TrainConfig(**{**CONFIG, "epochs": 6, "lr": 1e-2}))
    assert accuracy(result.graph, val) > max(0.6, start + 0.3)
    assert to_model(graph).SerializeToString() == before


def test_the_returned_snapshot_is_the_best_epoch_on_validation():
    graph = untrained_mlp()
    val = digits(graph, "val", "direct")
    result = train(graph, digits(graph, "train"), val, TrainConfig(**{**CONFIG, "epochs": 5}))
    scores = [record.val_accuracy for record in result.history]
    assert result.best_val_accuracy == max(scores)
    assert result.best_epoch == 1 + scores.index(max(scores))
    assert accuracy(result.graph, val) == pytest.approx(result.best_val_accuracy)


def test_resuming_from_any_step_continues_bit_for_bit():
    graph = untrained_mlp()
    data = digits(graph, "train")
    config = TrainConfig(**CONFIG)
    straight = Trainer(graph.copy(), data, None, config)
    for _ in range(10):
        straight.train_step()
    first = Trainer(graph.copy(), data, None, config)
    for _ in range(4):
        first.train_step()
    state = first.optimizer.state_dict()
    resumed = Trainer(first.graph.copy(), data, None, config)
    resumed.optimizer.load_state_dict(state)
    resumed.step = first.step
    for _ in range(6):
        resumed.train_step()
    assert to_model(resumed.graph).SerializeToString() == to_model(straight.graph).SerializeToString()


def test_masked_weights_stay_exactly_zero_with_zero_moments():
    graph = untrained_mlp().copy()
    keep = np.random.default_rng(1).random((32, 64)) > 0.7
    trainer = Trainer(graph, digits(graph, "train"), None, TrainConfig(**CONFIG), masks={"fc1.weight": keep})
    for _ in range(5):
        trainer.train_step()
    weight = trainable(graph)["fc1.weight"]
    assert np.all(weight[~keep] == 0.0) and np.count_nonzero(weight[keep]) == keep.sum()
    state = trainer.optimizer.state_dict()
    for key, value in state.items():
        if key.endswith(":fc1.weight") and key.split(":")[0] in ("exp_avg", "exp_avg_sq"):
            assert np.all(value[~keep] == 0.0)


def test_train_command_writes_a_better_model_and_refuses_to_overwrite_its_input(tmp_path, capsys, monkeypatch):
    from onnx_snn_compress.backends.onnx_profile import save

    graph = untrained_mlp()
    source = tmp_path / "untrained.onnx"
    save(graph, source)
    out = tmp_path / "trained.onnx"
    monkeypatch.setattr(sys, "argv", ["snn-compress", "train", str(source), "--out", str(out), "--epochs", "6",
                                      "--lr", "1e-2", "--time-steps", "4", "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert (exit_info.value.code or 0) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_accuracy"] > 0.6 and len(summary["history"]) == 6
    trained = load_model(out)
    assert trained.metadata["training"].startswith("snn-compress train")
    monkeypatch.setattr(sys, "argv", ["snn-compress", "train", str(source), "--out", str(source)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "never overwritten" in capsys.readouterr().err


def test_a_run_that_no_epoch_improves_says_it_wrote_the_input_weights(tmp_path, capsys, monkeypatch):
    out = tmp_path / "same.onnx"
    monkeypatch.setattr(sys, "argv", ["snn-compress", "train", "--out", str(out), "--epochs", "1", "--lr", "1e-12",
                                      "--threads", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert (exit_info.value.code or 0) == 0
    captured = capsys.readouterr()
    assert "best_epoch: 0" in captured.out
    assert "no epoch beat the input model's validation accuracy" in captured.err and "best_epoch 0" in captured.err
