"""The command line on peer models: inspect / evaluate read NIR files and torch.onnx exports
directly (format detected, --from forces it), and convert writes the profile or NIR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.runtime import run

from commands import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
SJ_ONNX = FIXTURES / "spikingjelly_lif_hard_decay_m_conv.dynamo.onnx"
ST_ONNX = FIXTURES / "snntorch_leaky_subtract_mlp.legacy.onnx"
ST_NIR = FIXTURES / "snntorch_leaky_subtract_mlp.nir"
NORSE_NIR = FIXTURES / "norse_lifboxcell_mlp.nir"
NORSE_OPTIONS = ["--from-framework", "norse", "--dt", "1e-3"]  # NIR files do not record either
ROCKPOOL = FIXTURES / "cases" / "lif_rockpool.nir"



def spikes(name):
    data = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    return data["x"], data["spikes"]


@pytest.mark.parametrize("path,options", [(SJ_ONNX, []), (ST_ONNX, []), (NORSE_NIR, NORSE_OPTIONS)])
def test_inspect_reads_peer_models_directly(path, options, capsys, monkeypatch):
    pytest.importorskip("nir")
    code, out, _ = run_cli(["inspect", path, "--json", *options], capsys, monkeypatch)
    assert code == 0
    summary = json.loads(out)
    assert summary["params"] > 0 and sum(1 for layer in summary["layers"] if layer.get("neuron")) == 2


def test_inspect_prints_the_nir_assumptions_on_stderr(capsys, monkeypatch):
    pytest.importorskip("nir")
    code, out, err = run_cli(["inspect", ST_NIR], capsys, monkeypatch)
    assert code == 0 and "lif1" in out
    assert err.startswith("note: read as an snnTorch export_to_nir file with dt = 1e-4: every LIF has tau = r*1e-4")
    assert "note: snnTorch's NIR export does not record the reset mechanism" in err
    # and the table says what was inferred
    assert "read as: source_format nir  source_framework snntorch  nir.exporter snntorch  nir.dt 0.0001" in out


def test_a_nir_file_without_evidence_is_refused_in_one_line_asking_for_the_framework(capsys, monkeypatch):
    pytest.importorskip("nir")
    code, _, err = run_cli(["inspect", NORSE_NIR], capsys, monkeypatch)
    assert code == 2 and err.startswith(f"error: {NORSE_NIR}: cannot tell which tool exported") and err.count("\n") == 1
    assert "--from-framework snntorch|spikingjelly|norse|sinabs|rockpool|lava|nir" in err
    code, _, err = run_cli(["inspect", NORSE_NIR, "--from-framework", "keras"], capsys, monkeypatch)
    assert code == 2 and "'keras' is not one of 'snntorch', 'spikingjelly'" in err


@pytest.mark.parametrize("runtime", ["sim", "onnxruntime"])
def test_evaluate_runs_a_torch_onnx_export(runtime, tmp_path, capsys, monkeypatch):
    x, peer = spikes("snntorch_leaky_subtract_mlp")
    labels = peer.mean(axis=0).argmax(axis=1)
    np.savez(tmp_path / "data.npz", x=x.transpose(1, 0, 2), y=labels, x_test=x.transpose(1, 0, 2), y_test=labels)
    code, out, _ = run_cli(["evaluate", ST_ONNX, "--data", tmp_path / "data.npz", "--runtime", runtime, "--json"],
                           capsys, monkeypatch)
    assert code == 0
    assert json.loads(out)["accuracy"] == 1.0  # the labels are the peer's own predictions


def test_from_forces_the_format_and_explains_a_mismatch(capsys, monkeypatch):
    code, _, err = run_cli(["inspect", ST_ONNX, "--from", "profile"], capsys, monkeypatch)
    assert code == 2 and "--from torch-onnx" in err and err.count("\n") == 1
    code, _, err = run_cli(["inspect", ST_ONNX, "--from", "nir"], capsys, monkeypatch)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    code, _, err = run_cli(["inspect", ST_ONNX, "--from", "keras"], capsys, monkeypatch)
    assert code == 2 and "'keras' is not one of 'auto', 'profile', 'nir', 'torch-onnx'" in err


def test_dt_on_an_onnx_model_is_refused(capsys, monkeypatch):
    code, _, err = run_cli(["inspect", ST_ONNX, "--dt", "1e-3"], capsys, monkeypatch)
    assert code == 2 and "NIR files only" in err


def test_convert_torch_onnx_to_profile_keeps_the_spike_train(tmp_path, capsys, monkeypatch):
    x, peer = spikes("snntorch_leaky_subtract_mlp")
    target = tmp_path / "out.onnx"
    code, out, _ = run_cli(["convert", ST_ONNX, target], capsys, monkeypatch)
    assert code == 0 and "torch-onnx" in out and "output spikes" in out
    model = onnx.load(str(target))
    onnx.checker.check_model(model, full_check=True)
    assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == ["T", "N", 4]
    assert np.array_equal(run(model, x).output, peer)  # step by step against snnTorch


def test_convert_nir_with_the_reset_option_and_back_to_nir(tmp_path, capsys, monkeypatch):
    pytest.importorskip("nir")
    x, peer = spikes("snntorch_leaky_subtract_mlp")
    code, out, err = run_cli(["convert", ST_NIR, tmp_path / "a.onnx", "--nir-reset", "subtract-delayed", "--json"],
                             capsys, monkeypatch)
    assert code == 0 and json.loads(out)["input_format"] == "nir" and err == ""
    assert np.array_equal(run(onnx.load(str(tmp_path / "a.onnx")), x).output, peer)
    code, out, err = run_cli(["convert", tmp_path / "a.onnx", tmp_path / "b.nir"], capsys, monkeypatch)
    assert code == 0 and "(nir)" in out and "note: neuron 'lif1': NIR has no subtract reset" in err
    assert load_model(tmp_path / "b.nir").same_as(load_model(tmp_path / "a.onnx"))


def test_convert_never_overwrites_its_input(tmp_path, capsys, monkeypatch):
    source = tmp_path / "model.onnx"
    source.write_bytes(ST_ONNX.read_bytes())
    for target in (source, tmp_path / "." / "model.onnx"):
        code, _, err = run_cli(["convert", source, target], capsys, monkeypatch)
        assert code == 2 and "would overwrite the input" in err
    assert source.read_bytes() == ST_ONNX.read_bytes()


def test_convert_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    code, _, err = run_cli(["convert", bad, tmp_path / "out.onnx"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1
    unliftable = tmp_path / "sine.onnx"  # a torch.onnx-like export whose neuron arithmetic holds a Sin
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 1, 3])
    spikes = onnx.helper.make_tensor_value_info("spikes", onnx.TensorProto.FLOAT, [2, 1, 3])
    zero = onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [onnx.helper.make_node("Sin", ["x"], ["sine"], name="sine"),
             onnx.helper.make_node("Greater", ["sine", "zero"], ["fired"]),
             onnx.helper.make_node("Cast", ["fired"], ["spikes"], to=onnx.TensorProto.FLOAT)]
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [spikes], [zero])), unliftable)
    code, _, err = run_cli(["convert", unliftable, tmp_path / "out.onnx"], capsys, monkeypatch)
    assert code == 2 and "(Sin)" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "sine.onnx"]


def test_convert_to_nir_of_a_layer_nir_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("nir")
    from onnx_snn_compress.samples import sample_model_path

    code, _, err = run_cli(["convert", sample_model_path("digits_conv"), tmp_path / "conv.nir"], capsys, monkeypatch)
    assert code == 2 and "has no NIR equivalent" in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,options", [
    ("snntorch_leaky_subtract_mlp.legacy.onnx", []), ("spikingjelly_lif_hard_decay_m_mlp.dynamo.onnx", []),
    ("norse_lifboxcell_mlp.nir", NORSE_OPTIONS),
])
def test_compress_accepts_peer_models_and_emits_a_profile_model(name, options, tmp_path):
    if name.endswith(".nir"):
        pytest.importorskip("nir")
    x, _ = spikes(name.split(".")[0])
    samples = np.concatenate([x.transpose(1, 0, 2)] * 8)
    labels = np.random.default_rng(0).integers(0, 4, len(samples))
    np.savez(tmp_path / "data.npz", x=samples, y=labels, x_val=samples, y_val=labels, x_test=samples, y_test=labels)
    # a separate process: compress binds its log stream at import time
    done = subprocess.run(
        [sys.executable, "-m", "onnx_snn_compress", "compress", str(FIXTURES / name), "--data", str(tmp_path / "data.npz"),
         "--budget", "0.9", "--steps-per-budget", "2", "--eval-every", "1", "--out", str(tmp_path / "out"), *options],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # outside the source tree (see test_cli)
    )
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(tmp_path / "out" / "budget_0.9" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert any(node.domain == "snn" for node in model.graph.node)


def test_train_and_compress_take_the_nir_options_and_their_errors_start_with_the_path(tmp_path, capsys, monkeypatch):
    pytest.importorskip("nir")
    data = FIXTURES / "cases" / "lif_rockpool_data.npz"
    for command in (["train", ROCKPOOL, "--out", tmp_path / "t.onnx"], ["compress", ROCKPOOL, "--out", tmp_path / "c"]):
        code, _, err = run_cli([*command, "--data", data, "--from-framework", "rockpool"], capsys, monkeypatch)
        assert code == 2 and err.startswith(f"error: {ROCKPOOL}: ") and err.rstrip().endswith("pass --dt")
    code, _, err = run_cli(["train", ROCKPOOL, "--out", tmp_path / "t.onnx", "--data", data, "--epochs", "1",
                            "--from-framework", "rockpool", "--dt", "1e-3", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert onnx.load(str(tmp_path / "t.onnx")).graph.node


def test_evaluate_uses_the_time_steps_the_model_was_exported_with_and_says_so(tmp_path, capsys, monkeypatch):
    cases = FIXTURES / "cases"
    expected = np.load(cases / "snntorch_static.expected.npz", allow_pickle=False)
    labels = expected["spikes"].sum(axis=0).argmax(axis=1)  # static x [N, 12]: the model repeats it T = 6 times
    np.savez(tmp_path / "data.npz", x=expected["x"], y=labels, x_test=expected["x"], y_test=labels)
    code, out, err = run_cli(["evaluate", cases / "snntorch_static.legacy.onnx", "--data", tmp_path / "data.npz",
                              "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["time_steps"] == 6 and json.loads(out)["accuracy"] == 1.0
    assert "note: T = 6 for static data: the time steps the model was exported with; override with --time-steps" in err
    code, out, err = run_cli(["evaluate", cases / "snntorch_static.legacy.onnx", "--data", tmp_path / "data.npz",
                              "--json", "--time-steps", "4"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["time_steps"] == 4 and "note: T =" not in err
    temporal = np.repeat(expected["x"][:, None], 10, axis=1)  # [N, T = 10, 12]: the data bring their own T
    np.savez(tmp_path / "temporal.npz", x=temporal, y=labels, x_test=temporal, y_test=labels)
    code, out, err = run_cli(["evaluate", cases / "snntorch_static.legacy.onnx", "--data", tmp_path / "temporal.npz",
                              "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["time_steps"] == 10 and "note: T =" not in err


def test_the_braille_rnn_compresses_prunes_its_recurrent_synapses_and_round_trips_to_nir(tmp_path, capsys, monkeypatch):
    nir = pytest.importorskip("nir")
    from onnx_snn_compress.frontends.nir import read_nir

    braille = FIXTURES / "cases" / "braille_noDelay_bias_zero.nir"  # the NIR paper's recurrent CubaLIF (paper/03_rnn)
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 12), dtype=np.float32), rng.integers(0, 7, 96)  # synthetic data of the model's shape
    np.savez(tmp_path / "data.npz", x=x[:64], y=y[:64], x_val=x[64:80], y_val=y[64:80], x_test=x[80:], y_test=y[80:])
    code, out, err = run_cli(["compress", braille, "--from-framework", "nir", "--dt", "1e-4", "--data",
                              tmp_path / "data.npz", "--steps-per-budget", "6", "--eval-every", "3", "--batch-size", "32",
                              "--time-steps", "8", "--budget", "0.5", "--out", tmp_path / "run", "--json", "--quiet"],
                             capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "lif1.lif" in report["prunable"]  # recurrent synapses are prunable synapses
    (budget,) = report["budgets"]
    assert budget["layers"]["lif1.lif"]["synapses"] == 38 * 38 and budget["layers"]["lif1.lif"]["connectivity"] < 1.0
    assert budget["runtimes_agree"]
    compressed = tmp_path / "run" / "budget_0.5" / "model.onnx"
    code, _, err = run_cli(["convert", compressed, tmp_path / "compressed.nir"], capsys, monkeypatch)
    assert code == 0, err
    written = nir.read(str(tmp_path / "compressed.nir"))
    assert ("lif1.lif.recurrent", "lif1.lif") in written.edges
    assert read_nir(tmp_path / "compressed.nir").same_as(load_model(compressed))


def test_a_peer_model_without_data_is_told_the_embedded_digits_were_read(capsys, monkeypatch):
    # the snnTorch MLP takes other inputs than the embedded 8x8 digits that stand in for --data
    code, out, err = run_cli(["evaluate", ST_ONNX], capsys, monkeypatch)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: data file ") and "no --data was given, so the embedded 8x8 digits sample was read" in err
