"""The command line: inspect and evaluate, and one-line errors for every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import save
from onnx_snn_compress.samples import SAMPLE_MODELS, digits_path, sample_model_path
from commands import run_cli



def small_model(path, num_classes=3, inputs=4):
    rng = np.random.default_rng(0)
    graph = ir.Graph([
        ir.Input("x", shape=(inputs,)),
        ir.Linear("fc", ("x",), weight=rng.normal(size=(num_classes, inputs)) * 2, bias=np.ones(num_classes)),
        ir.Neuron("lif", ("fc",), beta=0.9),
        ir.Readout("out", ("lif",)),
    ])
    save(graph, path)
    return graph


def write_data(path, x, y, **extra):
    np.savez(path, x=x, y=y, x_test=x, y_test=y, **extra)
    return path


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_inspect_json_reports_counts_connectivity_and_layers(name, capsys, monkeypatch):
    code, out, err = run_cli(["inspect", sample_model_path(name), "--json"], capsys, monkeypatch)
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert {"params", "parameters", "connectivity", "layers"} <= summary.keys()
    model = onnx.load(str(sample_model_path(name)))
    weights = sum(np.prod(t.dims) for t in model.graph.initializer if t.name.endswith((".weight", ".bias")))
    assert summary["parameters"] == weights
    assert summary["params"] == summary["synapses"] < weights  # params: synapses only, as compress counts them
    assert summary["connectivity"] == 1.0
    assert summary["macs_per_step"] > 0
    assert any(layer.get("neuron") for layer in summary["layers"])


def test_inspect_counts_pruned_weights(tmp_path, capsys, monkeypatch):
    graph = small_model(tmp_path / "m.onnx")
    graph.nodes[1].weight[0, :] = 0.0  # prune one output's 4 synapses of 12
    save(graph, tmp_path / "pruned.onnx")
    code, out, _ = run_cli(["inspect", tmp_path / "pruned.onnx", "--json"], capsys, monkeypatch)
    summary = json.loads(out)
    assert code == 0
    assert summary["connectivity"] == pytest.approx(8 / 12)
    assert summary["synapses"] - summary["params"] == 4
    assert summary["parameters"] - summary["parameters_nonzero"] == 4
    assert summary["macs_per_step_nonzero"] == 8


def test_inspect_table_names_every_layer(capsys, monkeypatch):
    code, out, _ = run_cli(["inspect"], capsys, monkeypatch)
    assert code == 0
    for layer in ("fc1", "lif1", "fc2", "lif2", "output"):
        assert layer in out
    assert "connectivity" in out


@pytest.mark.parametrize("runtime", ["sim", "onnxruntime"])
def test_evaluate_json_accuracy_matches_a_recount(tmp_path, runtime, capsys, monkeypatch):
    graph = small_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    data = write_data(tmp_path / "d.npz", x, y)
    code, out, _ = run_cli(["evaluate", tmp_path / "m.onnx", "--data", data, "--runtime", runtime, "--json",
                            "--time-steps", 5], capsys, monkeypatch)
    assert code == 0
    result = json.loads(out)
    from onnx_snn_compress.simulate import simulate

    expected = simulate(graph, np.repeat(x[None], 5, axis=0)).predictions()
    assert result["accuracy"] == pytest.approx(np.mean(expected == y))
    assert result["samples"] == 40 and result["time_steps"] == 5
    assert set(result["firing_rates"]) == {"lif"}


def test_evaluate_on_the_embedded_sample_uses_the_test_split(capsys, monkeypatch):
    code, out, _ = run_cli(["evaluate", "--json"], capsys, monkeypatch)
    assert code == 0
    result = json.loads(out)
    assert result["split"] == "test" and result["samples"] == len(np.load(digits_path())["y_test"])
    assert 0.0 <= result["accuracy"] <= 1.0


def test_console_script_and_module_entry_point_run(tmp_path):
    for command in (["snn-compress", "--version"], [sys.executable, "-m", "onnx_snn_compress", "--version"]):
        if command[0] == "snn-compress":
            command[0] = str(__import__("pathlib").Path(sys.executable).with_name("snn-compress"))
        # run outside the source tree: there `python -m` would import the uninstalled sources first
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("snn-compress ")


# -- bad input: one line on stderr, exit code 2, no traceback, nothing written -------------
def _bad_model_cases(tmp_path):
    """(name, model path, data path or None, expected fragment of the message)."""
    cases = []
    folder = tmp_path / "folder"
    folder.mkdir()
    cases.append(("missing", tmp_path / "nope.onnx", None, "no such file"))
    cases.append(("directory", folder, None, "not a file"))
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n" * 20)
    cases.append(("not onnx", text, None, "not"))
    small_model(tmp_path / "good.onnx")
    blob = (tmp_path / "good.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(blob[: len(blob) // 2])
    cases.append(("truncated", truncated, None, "truncated"))
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(plain, tmp_path / "plain.onnx")
    cases.append(("no neuron", tmp_path / "plain.onnx", None, "no spiking neuron"))
    model = onnx.load(str(tmp_path / "good.onnx"))
    nodes = list(model.graph.node)
    index = [n.name for n in nodes].index("fc") + 1
    for n in nodes[index:]:
        n.input[:] = ["fc_sig" if i == "fc" else i for i in n.input]
    nodes.insert(index, helper.make_node("Sigmoid", ["fc"], ["fc_sig"], name="squash"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, tmp_path / "sigmoid.onnx")
    cases.append(("unsupported op", tmp_path / "sigmoid.onnx", None, "'squash' (Sigmoid)"))
    escaping = onnx.load(str(tmp_path / "good.onnx"))
    weight = next(t for t in escaping.graph.initializer if t.name == "fc.weight")
    (tmp_path / "outside.bin").write_bytes(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../outside.bin")
    inner = tmp_path / "inner"
    inner.mkdir()
    onnx.save(escaping, inner / "escape.onnx")
    cases.append(("external data escapes", inner / "escape.onnx", None, "escapes the model's folder"))
    unsorted = onnx.load(str(tmp_path / "good.onnx"))  # a node deleted: onnx's checker speaks over three lines
    del unsorted.graph.node[[n.name for n in unsorted.graph.node].index("fc")]
    onnx.save(unsorted, tmp_path / "unsorted.onnx")
    cases.append(("a node deleted", tmp_path / "unsorted.onnx", None, "is not output of any previous nodes"))
    return cases


def _bad_data_cases(tmp_path):
    small_model(tmp_path / "good.onnx")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(10, 4)).astype(np.float32), rng.integers(0, 3, size=10)
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    objects = np.empty(10, dtype=object)
    objects[:] = [[1.0]] * 10
    np.savez(tmp_path / "objects.npz", x=objects, y=y, x_test=objects, y_test=y)
    return [
        ("shape does not fit", write_data(tmp_path / "shape.npz", rng.uniform(size=(10, 5)).astype(np.float32), y), "shape"),
        ("label out of range", write_data(tmp_path / "labels.npz", x, np.full(10, 7)), "label"),
        ("NaN in data", write_data(tmp_path / "nan.npz", nan_x, y), "NaN"),
        ("object arrays", tmp_path / "objects.npz", "object"),
        ("no such file", tmp_path / "absent.npz", "absent.npz': no such file"),
    ]


def _assert_clean_failure(code, out, err, fragment, before, after):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert before == after, "a failing command must not write anything"


@pytest.mark.parametrize("command", ["inspect", "evaluate"])
def test_bad_model_files_fail_with_one_line_and_exit_code_2(tmp_path, command, capsys, monkeypatch):
    for name, path, _, fragment in _bad_model_cases(tmp_path):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        code, out, err = run_cli([command, path], capsys, monkeypatch)
        _assert_clean_failure(code, out, err, fragment, before, sorted(p.name for p in tmp_path.rglob("*")))


def test_bad_data_fails_with_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    for name, data, fragment in _bad_data_cases(tmp_path):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        code, out, err = run_cli(["evaluate", tmp_path / "good.onnx", "--data", data], capsys, monkeypatch)
        _assert_clean_failure(code, out, err, fragment, before, sorted(p.name for p in tmp_path.rglob("*")))


def test_data_reshaped_to_an_image_input_say_their_layout_was_guessed(tmp_path, capsys, monkeypatch):
    digits = np.load(digits_path())
    flat = {key: digits[key].reshape(len(digits[key]), -1) if key.startswith("x") else digits[key]
            for key in digits.files}
    np.savez(tmp_path / "flat.npz", **flat)
    code, _, err = run_cli(["evaluate", sample_model_path("digits_conv"), "--data", tmp_path / "flat.npz"],
                           capsys, monkeypatch)
    assert code == 0, err
    assert "samples of shape (64) read as the model's input (1, 8, 8), row-major" in err
    assert "reshape them to [N, 1, 8, 8] first" in err
    # flattened to a vector input (digits_mlp's (64,)): row-major is the one convention, nothing to say
    code, _, err = run_cli(["evaluate", sample_model_path("digits_mlp")], capsys, monkeypatch)
    assert code == 0 and "row-major" not in err


def test_train_says_what_it_does_without_validation_and_test_splits(tmp_path, capsys, monkeypatch):
    small_model(tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train_only.npz", x=rng.uniform(size=(40, 4)).astype(np.float32), y=rng.integers(0, 3, 40))
    code, _, err = run_cli(["train", tmp_path / "model.onnx", "--data", tmp_path / "train_only.npz", "--epochs", "1",
                            "--out", tmp_path / "trained.onnx", "--quiet"], capsys, monkeypatch)
    assert code == 0, err
    assert "has no validation split (x_val, y_val): the last epoch is kept, not the best on validation" in err
    assert "has no test split (x_test, y_test): no test accuracy is measured" in err


def test_unknown_runtime_is_a_one_line_error_that_lists_the_choices(capsys, monkeypatch):
    code, out, err = run_cli(["evaluate", "--runtime", "gpu"], capsys, monkeypatch)
    assert code == 2 and "'gpu'" in err and "'sim', 'onnxruntime'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, fragment", [
    (["compress", "--budget", "abc"], "--budget"),
    (["inspect", "--no-such-option"], "--no-such-option"),
    (["evaluate", "--batch-size", "zero"], "--batch-size"),
])
def test_option_parse_errors_are_one_line_with_exit_code_2(args, fragment, capsys, monkeypatch):
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and fragment in err


@pytest.mark.parametrize("args, message", [
    (["compress", "--budget", "abc"], "error: invalid value for '--budget': expected a number (see "),
    (["compress", "--steps-per-budget", "1.5"], "error: invalid value for '--steps-per-budget': expected an integer (see "),
])
def test_a_value_of_the_wrong_kind_is_named_in_plain_words(args, message, capsys, monkeypatch):
    # not the parser's "Input should be a valid integer, unable to parse string as an integer"
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and err.startswith(message)


@pytest.mark.parametrize("args, suggestion", [
    (["compress", "--budjet", "0.1"], "error: no such option '--budjet'; did you mean '--budget'? (see "),
    (["evaluate", "--runtim", "sim"], "did you mean '--runtime'?"),
    (["compres"], "error: no such command 'compres'; did you mean 'compress'?"),
])
def test_a_misspelled_option_or_command_suggests_the_right_one(args, suggestion, capsys, monkeypatch):
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and out == "" and suggestion in err and len(err.strip().splitlines()) == 1


def test_an_option_with_no_close_match_suggests_nothing(capsys, monkeypatch):
    code, _, err = run_cli(["evaluate", "--zzz"], capsys, monkeypatch)
    assert code == 2 and "did you mean" not in err


def test_every_command_help_has_a_summary_and_an_example(capsys, monkeypatch):
    from onnx_snn_compress.cli.app import app

    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert {"compress", "train", "evaluate", "inspect", "convert", "report"} <= set(commands)
    for command in commands:
        code, out, _ = run_cli([command, "--help"], capsys, monkeypatch)
        assert code == 0 and "Example: snn-compress " + command in " ".join(out.split()), command


def test_the_command_alone_prints_the_help_once_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "onnx_snn_compress"], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0 and result.stdout.count("Usage: ") == 1, result.stdout
