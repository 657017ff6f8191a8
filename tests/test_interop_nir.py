"""NIR files written by snnTorch, SpikingJelly, Norse and Sinabs (tests/fixtures/interop): read with
the documented discretisation they reproduce the peer's spikes exactly; nothing about the exporter
is guessed silently (a note, or a one-line refusal asking for --from-framework / --dt); IR -> NIR
-> IR is exact; what the IR cannot express is rejected by name. Needs the optional nir extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from onnx_snn_compress import ir  # noqa: E402
from onnx_snn_compress.backends import nir as nir_backend  # noqa: E402
from onnx_snn_compress.backends.onnx_profile import to_model  # noqa: E402
from onnx_snn_compress.errors import ModelError, UnsupportedOpError  # noqa: E402
from onnx_snn_compress.frontends import load_model  # noqa: E402
from onnx_snn_compress.frontends.nir import read_nir, to_graph  # noqa: E402
from onnx_snn_compress.runtime import run  # noqa: E402
from onnx_snn_compress.samples import sample_model_path  # noqa: E402
from onnx_snn_compress.simulate import simulate  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
CASES = FIXTURES / "cases"  # real users' files (../shared/cases/interop, issue 11)
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
NIR_FILES = sorted(name for name, f in MANIFEST["fixtures"].items() if f["files"].get("nir", {}).get("exported"))
SYNAPTIC_CURRENT = "norse_lifcell_mlp"
# snnTorch does not write its reset mechanism; the user says it (docs/interop.md)
RESET = {"snntorch_leaky_subtract_mlp": "subtract-delayed", "snntorch_leaky_subtract_conv": "subtract-delayed",
         "snntorch_leaky_subtract_nodelay_mlp": "subtract"}


def options(name: str) -> dict:
    """What the user of each fixture tells the reader: snnTorch files are recognised; SpikingJelly's and
    Norse's time step is their export's argument, which the file does not record."""
    if name.startswith("spikingjelly"):
        return dict(framework="spikingjelly", dt=1e-4)
    if name.startswith("norse"):
        return dict(framework="norse", dt=1e-3)
    return dict(nir_reset=RESET.get(name))
FORWARD_FIELDS = ("beta", "gain", "v_threshold", "v_leak", "v_init", "reset", "reset_delay", "fire_on_equal")


def fixture(name):
    data = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    return data, json.loads(str(data["info"]))


def test_every_nir_fixture_is_covered():
    assert len(NIR_FILES) == 12


@pytest.mark.parametrize("name", NIR_FILES)
def test_nir_file_reproduces_the_peers_spikes_exactly(name):
    data, info = fixture(name)
    graph = load_model(FIXTURES / f"{name}.nir", **options(name))
    assert float(graph.metadata["nir.dt"]) == pytest.approx(info["nir_dt"])
    result = simulate(graph, data["x"])
    assert np.array_equal(result.output, data["spikes"])
    for neuron, layer in zip(graph.neurons(), ("lif1", "lif2")):
        assert np.array_equal(result.spike_counts[neuron.name], data[f"spikes.{layer}"].sum(axis=(0, 1)))
    assert np.array_equal(run(to_model(graph), data["x"]).output, data["spikes"])


@pytest.mark.parametrize("name", [n for n in NIR_FILES if n != SYNAPTIC_CURRENT])
def test_nir_neurons_have_the_peers_parameters(name):
    _, info = fixture(name)
    expected = [layer for layer in info["expected_ir"] if layer["kind"] == "Neuron"]
    read = options(name)
    read["reset"] = read.pop("nir_reset", None)
    for neuron, want in zip(read_nir(FIXTURES / f"{name}.nir", **read).neurons(), expected):
        for field in FORWARD_FIELDS:
            assert getattr(neuron, field) == want[field], (neuron.name, field)


def test_snntorch_subtract_read_as_nir_says_reset_to_v_reset_and_notes_the_option():
    data, _ = fixture("snntorch_leaky_subtract_mlp")
    graph = read_nir(FIXTURES / "snntorch_leaky_subtract_mlp.nir")
    assert all(n.reset == "hard" for n in graph.neurons())
    assert "--nir-reset subtract-delayed" in graph.metadata["import_notes"]
    mismatches = int((simulate(graph, data["x"]).output != data["spikes"]).sum())
    assert mismatches == MANIFEST["fixtures"]["snntorch_leaky_subtract_mlp"]["files"]["nir"]["discretisations"][
        "euler_dt1e-4_reset_to_v_reset"]["mismatches"]


def test_norse_cubalif_adds_its_input_to_the_current_without_dt():
    neurons = read_nir(FIXTURES / f"{SYNAPTIC_CURRENT}.nir", framework="norse", dt=1e-3).neurons()
    assert [(n.kind, n.current_decay, n.beta, n.gain) for n in neurons] == [
        ("SynapticNeuron", np.float32(0.8), np.float32(0.9), np.float32(0.1)),
        ("SynapticNeuron", np.float32(0.9), np.float32(0.95), np.float32(0.05))]


def test_spikingjelly_cubalif_reproduces_its_spikes_in_the_simulator_and_onnxruntime():
    data = np.load(CASES / "sj_cubalif.expected.npz")
    graph = read_nir(CASES / "sj_cubalif.nir")  # SpikingJelly's r = tau_mem/dt pins the exporter and dt
    assert "read as a SpikingJelly export_to_nir file with dt = 0.0001" in graph.metadata["import_notes"]
    assert [(n.kind, n.current_decay, n.beta, n.gain, n.recurrent) for n in graph.neurons()] == [
        ("SynapticNeuron", 0.5, 0.75, 1.0, False)] * 2
    model = to_model(graph)
    for x, spikes in ((data["x"], data["spikes"]), (data["x"][:4, 1:2], data["spikes"][:4, 1:2])):  # another T, N
        assert np.array_equal(simulate(graph, x).output, spikes)
        assert np.array_equal(run(model, x).output, spikes)


BRAILLE = ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]


@pytest.mark.parametrize("name", BRAILLE)
def test_the_braille_rnn_reads_as_a_recurrent_synaptic_layer_and_runs_alike_in_onnxruntime(name):
    graph = read_nir(CASES / name, framework="nir", dt=1e-4)  # the paper's scripts use dt = 1e-4
    hidden, output = graph.neurons()
    source = nir.read(str(CASES / name), type_check=False)
    assert hidden.recurrent and not output.recurrent
    assert np.array_equal(hidden.weight, source.nodes["lif1.w_rec"].weight)
    assert hidden.current_decay == pytest.approx(1 - 1e-4 / source.nodes["lif1.lif"].tau_syn[0])
    x = (np.random.default_rng(0).random((30, 5, 12)) < 0.5).astype(np.float32)
    result = simulate(graph, x)
    assert result.spike_counts[hidden.name].sum() > 0
    assert np.array_equal(run(to_model(graph), x).output, result.output)


@pytest.mark.parametrize("name", [*BRAILLE, "sj_cubalif.nir"])
def test_synaptic_and_recurrent_layers_round_trip_through_nir_exactly(name, tmp_path):
    graph = load_model(CASES / name, **(dict(framework="nir", dt=1e-4) if name in BRAILLE else {}))
    path = tmp_path / "back.nir"
    nir_backend.save(graph, path)
    written = nir.read(str(path))  # nir's own reader, with its type checks
    assert {type(n).__name__ for n in written.nodes.values()} >= {"CubaLIF"}
    if name in BRAILLE:
        assert ("lif1.lif", "lif1.lif.recurrent") in written.edges and ("lif1.lif.recurrent", "lif1.lif") in written.edges
    assert read_nir(path).same_as(graph)


def test_a_cycle_that_is_not_a_neurons_recurrent_synapses_is_refused_by_name():
    graph = nir.read(str(CASES / "braille_noDelay_bias_zero.nir"), type_check=False)
    graph.edges.append(("lif2", "fc1"))  # a loop over two layers
    with pytest.raises(UnsupportedOpError, match=r"a cycle through NIR node\(s\) .*'fc1'.* is not a neuron's "
                                                 r"recurrent synapses"):
        to_graph(graph, framework="nir", dt=1e-4)


def test_cubalif_without_synaptic_memory_reduces_to_a_lif():
    graph = nir.read(str(FIXTURES / f"{SYNAPTIC_CURRENT}.nir"), type_check=False)
    for name in ("1", "3"):
        graph.nodes[name].tau_syn = np.full_like(graph.nodes[name].tau_syn, 1e-6)  # dt/tau_syn = 1
    lifs = to_graph(graph, framework="norse", dt=1e-3).neurons()
    assert [(n.beta, n.gain, n.v_threshold) for n in lifs] == [(np.float32(0.9), np.float32(0.1), 1.0),
                                                                (np.float32(0.95), np.float32(0.05), np.float32(0.8))]


def test_per_neuron_tau_and_threshold_are_read_as_per_neuron_values():
    graph = nir.read(str(FIXTURES / "spikingjelly_lif_hard_decay_s_mlp.nir"), type_check=False)
    tau = np.asarray(graph.nodes["lif1"].tau, np.float64)
    graph.nodes["lif1"].v_threshold = np.linspace(0.5, 1.0, 10)
    graph.nodes["lif1"].tau = tau * np.linspace(1.0, 2.0, 10)
    lif1 = to_graph(graph, framework="spikingjelly", dt=1e-4)["lif1"]
    assert set(lif1.per_neuron) == {"beta", "gain", "v_threshold"}  # decay_input: gain = r*dt/tau with r = 1
    assert np.array_equal(lif1.v_threshold, np.linspace(0.5, 1.0, 10).astype(np.float32))
    np.testing.assert_allclose(lif1.beta, 1.0 - 1e-4 / (tau * np.linspace(1.0, 2.0, 10)), rtol=1e-6)


def test_per_neuron_parameters_round_trip_through_nir_exactly(tmp_path):
    graph = load_model(CASES / "snntorch_learnbeta.dynamo.onnx")
    nir_backend.save(graph, tmp_path / "model.nir")
    back = read_nir(tmp_path / "model.nir")
    assert back.same_as(graph)
    assert np.asarray(nir.read(str(tmp_path / "model.nir")).nodes["lif1"].tau).shape == (10,)


def test_unknown_exporter_needs_dt_and_a_too_long_step_is_explained():
    layers = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)),
        nir.LIF(tau=np.full(2, 0.02, np.float32), r=np.ones(2, np.float32), v_leak=np.zeros(2, np.float32),
                v_threshold=np.ones(2, np.float32)),
    )
    with pytest.raises(ModelError, match=r"pass --from-framework snntorch\|spikingjelly\|norse\|sinabs\|rockpool\|lava"
                                         r"\|nir \(and --dt unless the exporter fixes it\)$"):
        to_graph(layers)
    graph = to_graph(layers, dt=1e-3)
    assert graph.neurons()[0].beta == np.float32(0.95)
    assert graph.metadata["import_notes"].startswith("no exporter recognised: read with NIR's own definitions")
    with pytest.raises(ModelError, match=r"dt/tau = 5 > 1 .*--dt"):
        to_graph(layers, dt=0.1)


def test_sumpool_scale_is_folded_into_the_next_layer():
    layers = nir.NIRGraph.from_list(
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0, end_dim=-1),
        nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)),
        nir.IF(r=np.full(3, 1e4), v_threshold=np.ones(3)),
        type_check=False,
    )
    layers.nodes["input"] = nir.Input(input_type={"input": np.array([1, 4, 4])})
    graph = to_graph(layers, dt=1e-4)
    assert isinstance(graph["sumpool2d"], ir.AvgPool2d)
    assert np.all(graph["affine"].weight == 4.0)  # sum = 4 * mean over a 2x2 window


@pytest.mark.parametrize("source", ["digits_mlp", "spikingjelly_if_soft_m_mlp", "snntorch_leaky_subtract_conv",
                                    "norse_lifboxcell_mlp", "spikingjelly_lif_hard_nodecay_s_mlp"])
def test_round_trip_ir_nir_ir_is_exact(source, tmp_path):
    path = sample_model_path(source) if source.startswith("digits") else FIXTURES / f"{source}.dynamo.onnx"
    graph = load_model(path)
    notes = nir_backend.save(graph, tmp_path / "model.nir")
    back = read_nir(tmp_path / "model.nir")
    assert back.same_as(graph)
    if any(n.reset == "subtract" for n in graph.neurons()):
        assert any("subtract reset" in note for note in notes)
    # and any NIR reader can load it with NIR's own type checks
    assert isinstance(nir.read(str(tmp_path / "model.nir")), nir.NIRGraph)


def test_rate_and_leaky_readouts_survive_the_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for mode, beta in (("rate", 1.0), ("leaky", 0.75), ("leaky", 1.0)):
        layers = [
            ir.Input("x", shape=(3,)),
            ir.Linear("fc", ("x",), weight=rng.normal(size=(2, 3)), bias=np.ones(2)),
            ir.Neuron("lif", ("fc",), beta=0.8125, reset="hard", v_reset=-0.5, v_init=0.25, fire_on_equal=True),
        ]
        if mode == "leaky":
            layers.append(ir.Linear("out", ("lif",), weight=rng.normal(size=(2, 2)), bias=None))
        graph = ir.Graph([*layers, ir.Readout("readout", (layers[-1].name,), mode=mode, beta=beta)])
        nir_backend.save(graph, tmp_path / f"{mode}.nir")
        assert read_nir(tmp_path / f"{mode}.nir").same_as(graph), mode


def test_layers_nir_cannot_hold_are_named(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"MaxPool2d 'pool1' has no NIR equivalent"):
        nir_backend.save(load_model(sample_model_path("digits_conv")), tmp_path / "conv.nir")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_batchnorm_is_folded_into_the_layer_before_it_on_nir_export(tmp_path):
    conv = load_model(sample_model_path("digits_conv"))
    folded, notes = nir_backend.fold_batchnorm(conv)
    assert notes == ["BatchNorm 'bn1' folded into Conv2d 'conv1' (NIR has no batch norm)"]
    assert not any(isinstance(n, ir.BatchNorm) for n in folded) and folded["lif1"].inputs == ("conv1",)
    x = np.random.default_rng(0).random((8, 32, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(simulate(folded, x).output, simulate(conv, x).output)
    rng = np.random.default_rng(1)
    mlp = ir.Graph([
        ir.Input("x", shape=(3,)),
        ir.Linear("fc", ("x",), weight=rng.normal(size=(4, 3)), bias=None),
        ir.BatchNorm("bn", ("fc",), weight=rng.random(4) + 0.5, bias=rng.normal(size=4), running_mean=rng.normal(size=4),
                     running_var=rng.random(4) + 0.5),
        ir.Neuron("lif", ("bn",), beta=0.5),
        ir.Readout("out", ("lif",), mode="rate"),
    ])
    notes = nir_backend.save(mlp, tmp_path / "mlp.nir")
    assert "BatchNorm 'bn' folded into Linear 'fc' (NIR has no batch norm)" in notes
    back = read_nir(tmp_path / "mlp.nir")
    assert [n.kind for n in back] == ["Input", "Linear", "Neuron", "Readout"]
    np.testing.assert_allclose(back["fc"].bias, (0 - mlp["bn"].running_mean) * mlp["bn"].weight
                               / np.sqrt(mlp["bn"].running_var + mlp["bn"].eps) + mlp["bn"].bias, rtol=1e-5)


def test_a_corrupt_nir_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ModelError, match=r"not a readable NIR file") as error:
        load_model(bad)
    assert "\n" not in str(error.value)


def test_missing_nir_package_says_how_to_install(monkeypatch):
    # the packages with pyproject's floors: they install from a clone as from the index, where
    # 'onnx-snn-compress[nir]' needs the package published (a fresh user of a clone tried it)
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ModelError, match=r"nir and h5py: pip install 'nir>=1\.0' 'h5py>=3\.8' \(the \[nir\] extra\)$"):
        read_nir(FIXTURES / "snntorch_leaky_zero_mlp.nir")


# -- issue 11: files that were read silently wrong; each reproduces its framework with the documented option
SILENTLY_WRONG_BEFORE = {
    "snntorch_conv_nir": dict(nir_reset="subtract-delayed"),  # recognised as snnTorch; its reset is not in the file
    "cnn_sinabs": dict(framework="sinabs"),  # digit node names: nothing identifies Sinabs
    "sj_conv_s2_dt1e-3": dict(framework="spikingjelly", dt=1e-3),  # exported with dt = 1e-3, which NIR does not record
}


@pytest.mark.parametrize("name", sorted(SILENTLY_WRONG_BEFORE))
def test_case_reproduces_its_frameworks_spikes_in_the_simulator_and_onnxruntime(name):
    expected = np.load(CASES / f"{name}.expected.npz", allow_pickle=False)
    x, spikes = expected["x"], expected["spikes"]
    graph = load_model(CASES / f"{name}.nir", **SILENTLY_WRONG_BEFORE[name])
    assert spikes.sum() > 0
    result = simulate(graph, x)
    assert np.array_equal(result.output, spikes)
    if "spikes_layer1" in expected:  # the first hidden layer too, not only the output
        first = graph.neurons()[0].name
        assert np.array_equal(result.spike_counts[first], expected["spikes_layer1"].sum(axis=(0, 1)))
    model = to_model(graph)
    assert np.array_equal(run(model, x).output, spikes)
    # another N and another T: the first sample, the first steps (the network is causal)
    assert np.array_equal(run(model, x[:4, :1]).output, spikes[:4, :1])
    assert np.array_equal(simulate(graph, x[:3, 1:]).output, spikes[:3, 1:])


def test_digit_node_names_and_float64_arrays_identify_no_exporter():
    for name in ("cnn_sinabs", "sj_conv_s2_dt1e-3"):  # nn.Sequential names '0'.. / float64 parameters
        with pytest.raises(ModelError, match=r"cannot tell which tool exported this NIR graph.*--from-framework") as error:
            read_nir(CASES / f"{name}.nir")
        assert str(error.value).startswith(str(CASES / f"{name}.nir")) and "\n" not in str(error.value)


def test_a_framework_whose_time_step_the_file_does_not_pin_needs_dt():
    with pytest.raises(ModelError, match=r"time step the spikingjelly export used \(its export default is 0.0001\).*"
                                         r"pass --dt$"):
        read_nir(CASES / "sj_conv_s2_dt1e-3.nir", framework="spikingjelly")
    with pytest.raises(ModelError, match=r"lif_rockpool.nir: .* the rockpool export used .*pass --dt$"):
        read_nir(CASES / "lif_rockpool.nir", framework="rockpool")
    assert read_nir(CASES / "lif_rockpool.nir", framework="rockpool", dt=1e-3).metadata["source_framework"] == "rockpool"


@pytest.mark.parametrize("name,evidence", [
    ("snntorch_leaky_zero_mlp", "read as an snnTorch export_to_nir file with dt = 1e-4: every LIF has tau = r*1e-4"),
    ("spikingjelly_if_hard_s_mlp", "read as a SpikingJelly export_to_nir file with dt = 0.0001: float64 parameters "
                                   "with IF r = 1/dt"),
    ("spikingjelly_lif_hard_nodecay_s_mlp", "read as a SpikingJelly export_to_nir file with dt = 0.0001"),
])
def test_an_exporter_recognised_by_its_parameters_is_said_with_the_evidence_and_the_override(name, evidence):
    data, _ = fixture(name)
    graph = read_nir(FIXTURES / f"{name}.nir")
    notes = graph.metadata["import_notes"]
    assert notes.startswith(evidence) and "--from-framework" in notes
    assert np.array_equal(simulate(graph, data["x"]).output, data["spikes"])


def test_conventions_apply_per_node_kind():
    """Norse: LIF tau is written times dt (Euler over dt**2), its IF adds r*I each step; Sinabs' IF too."""
    layers = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)),
        nir.LIF(tau=np.full(2, 1e-5, np.float32), r=np.ones(2, np.float32), v_leak=np.zeros(2, np.float32),
                v_threshold=np.ones(2, np.float32)),
        nir.Affine(weight=np.ones((2, 2), np.float32), bias=np.zeros(2, np.float32)),
        nir.IF(r=np.full(2, 0.5, np.float32), v_threshold=np.ones(2, np.float32)),
    )
    lif, if_ = to_graph(layers, framework="norse", dt=1e-3).neurons()
    assert (lif.beta, lif.gain) == (pytest.approx(0.9), pytest.approx(0.1))  # dt*tau_mem_inv = 1e-3 * 100
    assert (if_.beta, if_.gain) == (1.0, 0.5)  # no dt
    sinabs = nir.NIRGraph.from_list(layers.nodes["affine"], layers.nodes["if"])
    assert to_graph(sinabs, framework="sinabs").neurons()[0].gain == 0.5
    assert to_graph(sinabs, framework="nir", dt=1e-3).neurons()[0].gain == pytest.approx(5e-4)  # NIR: r*dt


def test_a_node_kind_not_supported_yet_is_named_before_any_question_about_the_exporter(tmp_path):
    layers = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)),
                                    nir.Delay(delay=np.ones(2, np.float32)), type_check=False)
    nir.write(str(tmp_path / "delay.nir"), layers)
    with pytest.raises(UnsupportedOpError, match=r"delay.nir: NIR node 'delay' \(Delay\) is not supported yet"):
        read_nir(tmp_path / "delay.nir")


def test_written_nir_uses_the_time_step_snntorchs_importer_assumes():
    """snnTorch's import_from_nir reads every LIF with dt = 1e-4 and needs an input gain r*dt/tau of 1
    (bench/nir_into_snntorch.py: 98.33 % at 1e-4 vs 9.72 % at 1e-3 for digits_mlp)."""
    graph = load_model(sample_model_path("digits_mlp"))
    written, _ = nir_backend.to_nir(graph)
    assert written.metadata["snn.dt"] == "0.0001"
    for neuron in graph.neurons():
        lif = written.nodes[neuron.name]
        assert np.allclose(1 - 1e-4 / lif.tau, neuron.beta) and np.allclose(lif.r * 1e-4 / lif.tau, neuron.gain)


def test_snntorch_cubalif_read_with_a_zero_reset_says_the_current_is_not_reset():
    graph = read_nir(CASES / "braille_noDelay_bias_zero.nir", framework="snntorch")
    assert "snnTorch's Synaptic / RSynaptic zero reset also zeroes the synaptic current" in graph.metadata["import_notes"]
    assert "--nir-reset subtract-delayed" in graph.metadata["import_notes"]


def test_per_neuron_cubalif_time_constants_are_read_per_neuron_and_round_trip(tmp_path):
    graph = nir.read(str(CASES / "sj_cubalif.nir"), type_check=False)
    cubalif = graph.nodes["_1"]
    tau_syn, tau_mem = np.asarray(cubalif.tau_syn, np.float64), np.asarray(cubalif.tau_mem, np.float64)
    cubalif.tau_syn = tau_syn * np.linspace(1.0, 2.0, 10)
    cubalif.tau_mem = tau_mem * np.linspace(2.0, 1.0, 10)
    model = to_graph(graph, framework="spikingjelly", dt=1e-4)
    layer = model["_1"]
    assert {"current_decay", "beta"} <= set(layer.per_neuron) and layer.current_decay.shape == (10,)
    np.testing.assert_allclose(layer.current_decay, 1.0 - 1e-4 / (tau_syn * np.linspace(1.0, 2.0, 10)), rtol=1e-6)
    x = (np.random.default_rng(1).random((8, 2, model.input.shape[0])) < 0.5).astype(np.float32)
    assert np.array_equal(run(to_model(model), x).output, simulate(model, x).output)
    nir_backend.save(model, tmp_path / "back.nir")
    assert np.asarray(nir.read(str(tmp_path / "back.nir")).nodes["_1"].tau_syn).shape == (10,)
    assert read_nir(tmp_path / "back.nir").same_as(model)


@pytest.mark.parametrize("name", BRAILLE)
def test_the_braille_rnn_pins_no_exporter_and_asks_for_one(name):
    """Its CubaLIF has SpikingJelly's r = tau_mem/dt, w_in = tau_syn/dt pattern, but SpikingJelly writes no
    recurrent graphs: read without options, it is refused with a line that asks for --from-framework."""
    with pytest.raises(ModelError, match=r"cannot tell which tool exported this NIR graph.*--from-framework"):
        read_nir(CASES / name)
