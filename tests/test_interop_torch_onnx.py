"""Plain torch.onnx exports of snnTorch, SpikingJelly and Norse SNNs (tests/fixtures/interop):
each one lifts into IR neurons that reproduce the peer's own spikes exactly, in the
simulator and in onnxruntime, and what cannot be lifted is named. No PyTorch here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnx_snn_compress.backends.onnx_profile import to_model
from onnx_snn_compress.errors import ModelError, UnsupportedOpError
from onnx_snn_compress.frontends import load_model, resolve_format
from onnx_snn_compress.frontends.onnx_profile import from_model as from_profile
from onnx_snn_compress.frontends.torch_onnx import from_model
from onnx_snn_compress.runtime import run
from onnx_snn_compress.simulate import simulate

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
EXPORTS = sorted(
    (name, kind)
    for name, fixture in MANIFEST["fixtures"].items()
    for kind, entry in fixture["files"].items()
    if kind not in ("nir", "npz") and entry.get("exported")
)
SYNAPTIC_CURRENT = "norse_lifcell_mlp"  # Norse LIFCell: a synaptic current (ir.SynapticNeuron)
LIFTABLE = [e for e in EXPORTS if e[0] != SYNAPTIC_CURRENT]  # plain LIF / IF layers
f32 = np.float32
FORWARD_FIELDS = ("beta", "gain", "v_threshold", "v_leak", "v_init", "reset", "reset_delay", "fire_on_equal")


def fixture(name: str):
    data = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    return data, json.loads(str(data["info"]))


def export_path(name: str, kind: str) -> Path:
    return FIXTURES / f"{name}.{kind}.onnx"


def test_every_fixture_export_is_covered():
    assert len(EXPORTS) == 26  # as the fixtures' README counts
    assert {kind for _, kind in EXPORTS} == {"legacy", "dynamo", "legacy.dynbatch", "dynamo.dynbatch"}


@pytest.mark.parametrize("name,kind", EXPORTS)
def test_lifted_model_reproduces_the_peers_spikes_exactly(name, kind):
    data, _ = fixture(name)
    path = export_path(name, kind)
    assert resolve_format(path) == "torch-onnx"
    graph = load_model(path)
    result = simulate(graph, data["x"])
    assert result.output.dtype == np.float32 and graph.readout.mode == "spikes"
    assert np.array_equal(result.output, data["spikes"])
    for neuron, layer in zip(graph.neurons(), ("lif1", "lif2")):  # every hidden layer, not only the output
        assert np.array_equal(result.spike_counts[neuron.name], data[f"spikes.{layer}"].sum(axis=(0, 1)))


@pytest.mark.parametrize("name,kind", LIFTABLE)
def test_lifted_neurons_have_the_peers_parameters(name, kind):
    _, info = fixture(name)
    expected = [layer for layer in info["expected_ir"] if layer["kind"] == "Neuron"]
    neurons = load_model(export_path(name, kind)).neurons()
    assert len(neurons) == len(expected)
    for neuron, want in zip(neurons, expected):
        for field in FORWARD_FIELDS:
            assert getattr(neuron, field) == want[field], (neuron.name, field)
        if neuron.reset == "hard":
            assert neuron.v_reset == want["v_reset"]


@pytest.mark.parametrize("name,kind", EXPORTS)
def test_exported_profile_model_reproduces_the_spikes_in_onnxruntime_for_any_batch(name, kind):
    data, _ = fixture(name)
    model = to_model(load_model(export_path(name, kind)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_param == "N"  # the baked batch size of the export is gone
    assert np.array_equal(run(model, data["x"]).output, data["spikes"])
    assert np.array_equal(run(model, data["x"][:, 1:2]).output, data["spikes"][:, 1:2])


@pytest.mark.parametrize("kind", ["legacy", "dynamo"])
def test_norse_lifcell_is_lifted_as_a_synaptic_current(kind):
    neurons = load_model(export_path(SYNAPTIC_CURRENT, kind)).neurons()
    assert [(n.kind, n.current_decay, n.beta, n.gain, n.reset) for n in neurons] == [
        ("SynapticNeuron", f32(0.8), f32(0.9), f32(0.1), "hard"), ("SynapticNeuron", f32(0.9), f32(0.95), f32(0.05), "hard")]


def test_snntorch_reset_delay_false_is_lifted_with_a_note():
    graph = load_model(export_path("snntorch_leaky_subtract_nodelay_mlp", "legacy"))
    assert all(n.reset == "subtract" and not n.reset_delay for n in graph.neurons())
    assert "reset_delay=False" in graph.metadata["import_notes"]


def test_framework_is_recorded_and_sets_the_training_surrogate():
    graph = load_model(export_path("spikingjelly_lif_hard_decay_m_mlp", "dynamo"))
    assert graph.metadata["source_framework"] == "spikingjelly"
    assert {(n.surrogate, n.alpha) for n in graph.neurons()} == {("sigmoid", 4.0)}
    snntorch = load_model(export_path("snntorch_leaky_subtract_mlp", "legacy"))
    assert snntorch.metadata["source_framework"] == "snntorch" and all(n.detach_reset for n in snntorch.neurons())


# -- what cannot be lifted: edited copies of a fixture --------------------------------------
def edited(name: str, kind: str, edit) -> onnx.ModelProto:
    model = onnx.load(str(export_path(name, kind)))
    edit(model)
    return model


def replace_initializer(model, name, array):
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(array, np.float32), name))
            return
    raise KeyError(name)


def test_a_per_neuron_beta_is_read_as_per_neuron_values():
    beta = np.linspace(0.5, 0.9, 10).astype(np.float32)
    model = edited("snntorch_leaky_subtract_mlp", "legacy", lambda m: replace_initializer(m, "lif1.beta", beta))
    (lif1, lif2) = from_model(model).neurons()[:2]
    assert lif1.per_neuron == ("beta",) and np.array_equal(lif1.beta, beta)
    assert lif2.per_neuron == ()


def test_graded_spikes_are_rejected_naming_the_consumer():
    def graded(model):
        for node in model.graph.node:
            if node.output[0] == "lif1.graded_spikes_factor":
                node.op_type = "Constant"
                del node.input[:]
                node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(np.float32(0.5))))
    with pytest.raises(UnsupportedOpError, match=r"node '/fc2/Gemm' \(Gemm\) reads node '/lif1/Mul_1' \(Mul\).*not a spike"):
        from_model(edited("snntorch_leaky_subtract_mlp", "legacy", graded))


def test_an_unknown_op_is_named():
    def tanh(model):
        node = next(n for n in model.graph.node if n.name == "/lif1/Cast")
        node.op_type = "Tanh"
        del node.attribute[:]
    with pytest.raises(UnsupportedOpError, match=r"unsupported op: node '/lif1/Cast' \(Tanh\)"):
        from_model(edited("snntorch_leaky_subtract_mlp", "legacy", tanh))


def test_a_profile_model_read_as_torch_onnx_says_what_it_found(tmp_path):
    from onnx_snn_compress.samples import sample_model_path

    with pytest.raises(ModelError, match=r"snn::LIF|domain 'snn'"):
        load_model(sample_model_path("digits_mlp"), "torch-onnx")


# -- issue 11: input layouts and outputs of real exports, lifted to the profile's time-major form
CASES = FIXTURES / "cases"
LAYOUTS = {  # file -> (input key, spikes key) of its expected.npz, time-major; the note that says the lift
    "snntorch_batchfirst": ("x_timemajor", "spikes_timemajor", "is batch-first [N, T, ...] = [3, 6, 12]"),
    "snntorch_static": ("x_timemajor", "spikes_timemajor", "[N, ...] = [3, 12] is repeated at each of the model's T = 6"),
    "snntorch_tutorial_two_outputs": ("x", "spikes", "kept the first, 'spikes' (the spike record), dropped 'mem'"),
}


@pytest.mark.parametrize("kind", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_batch_first_static_and_two_output_exports_reproduce_the_spikes_time_major(name, kind):
    x_key, spikes_key, note = LAYOUTS[name]
    expected = np.load(CASES / f"{name}.expected.npz", allow_pickle=False)
    x, spikes = expected[x_key], expected[spikes_key]
    graph = load_model(CASES / f"{name}.{kind}.onnx")
    assert note in graph.metadata["import_notes"]
    assert graph.metadata["time_steps"] == str(len(x))  # the T it was unrolled over: the default T (data.py)
    assert np.array_equal(simulate(graph, x).output, spikes)
    model = to_model(graph)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == ["T", "N"]
    assert np.array_equal(run(model, x).output, spikes)
    # another N and a shorter T: the first sample, the first steps
    assert np.array_equal(run(model, x[:4, :1]).output, spikes[:4, :1])


def test_a_converted_files_import_notes_are_provenance_not_notes_about_it():
    """The notes about the export (here: its batch-first input) do not apply to the profile file
    converted from it: reading that file says nothing, and its metadata keeps them as source_notes."""
    _, _, note = LAYOUTS["snntorch_batchfirst"]
    converted = from_profile(to_model(load_model(CASES / "snntorch_batchfirst.dynamo.onnx")))
    assert "import_notes" not in converted.metadata
    assert note in converted.metadata["source_notes"]


@pytest.mark.parametrize("file", ["snntorch_synaptic.legacy.onnx", "snntorch_synaptic.dynamo.onnx",
                                  "sj_cubalif.dynamo.onnx"])
def test_synaptic_current_exports_reproduce_their_frameworks_spikes(file):
    graph = load_model(CASES / file)
    assert [(n.kind, n.current_decay, n.recurrent) for n in graph.neurons()] == [("SynapticNeuron", f32(0.5), False)] * 2
    reproduces_its_frameworks_spikes(graph, file)


@pytest.mark.parametrize("file", ["snntorch_rleaky.legacy.onnx", "snntorch_rleaky.dynamo.onnx"])
def test_recurrent_leaky_exports_reproduce_their_frameworks_spikes(file):
    graph = load_model(CASES / file)
    assert [n.name for n in graph.nodes] == ["x", "fc1", "lif1", "fc2", "lif2", "spikes"]  # recurrence inside lif1/2
    lif1, lif2 = graph.neurons()
    assert (lif1.current_decay, lif1.beta, lif1.reset, lif1.reset_delay) == (0.0, f32(0.8), "subtract", True)
    source = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(CASES / file)).graph.initializer}
    assert np.array_equal(lif1.weight, source["lif1.recurrent.weight"])
    assert np.array_equal(lif2.bias, source["lif2.recurrent.bias"])
    reproduces_its_frameworks_spikes(graph, file)


def reproduces_its_frameworks_spikes(graph, file):
    data = np.load(CASES / f"{file.split('.')[0]}.expected.npz")
    cases = [(data[k], data[f"spikes{k[1:]}"]) for k in data if k.startswith("x")]
    cases.append((data["x"][:4, 1:2], data["spikes"][:4, 1:2]))  # another T and N: a prefix of one sample
    model = to_model(graph)
    for x, spikes in cases:
        assert np.array_equal(simulate(graph, x).output, spikes)
        assert np.array_equal(run(model, x).output, spikes)


@pytest.mark.parametrize("kind", ["legacy", "dynamo"])
def test_per_neuron_beta_reproduces_snntorch_in_the_simulator_and_onnxruntime_at_any_t_and_n(kind):
    """snnTorch Leaky(learn_beta=True) with a vector beta: 10 and 4 different decays per layer."""
    graph = load_model(CASES / f"snntorch_learnbeta.{kind}.onnx")
    betas = [n.beta for n in graph.neurons()]
    assert [b.shape for b in betas] == [(10,), (4,)] and len(np.unique(betas[0])) == 10
    assert from_profile(to_model(graph)).same_as(graph)  # the profile keeps the per-neuron values bit for bit
    reproduces_its_frameworks_spikes(graph, f"snntorch_learnbeta.{kind}.onnx")


@pytest.mark.parametrize("file", ["snntorch_rsynaptic.legacy.onnx", "snntorch_rsynaptic.dynamo.onnx"])
def test_recurrent_synaptic_exports_reproduce_their_frameworks_spikes(file):
    """snnTorch RSynaptic (tests/fixtures/interop/make_snntorch_cases.py): synaptic current and recurrent
    synapses in one layer, the second layer with one alpha per neuron."""
    graph = load_model(CASES / file)
    lif1, lif2 = graph.neurons()
    assert (lif1.kind, lif1.current_decay, lif1.beta, lif1.reset, lif1.reset_delay, lif1.recurrent) == \
        ("SynapticNeuron", f32(0.5), f32(0.8), "subtract", True, True)
    assert np.array_equal(lif2.current_decay, np.array([0.3, 0.5, 0.6, 0.7], f32)) and lif2.recurrent
    source = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(CASES / file)).graph.initializer}
    if "lif1.recurrent.weight" in source:
        assert np.array_equal(lif1.weight, source["lif1.recurrent.weight"])
    reproduces_its_frameworks_spikes(graph, file)


@pytest.mark.parametrize("kind", ["legacy", "dynamo"])
def test_per_neuron_threshold_reproduces_snntorch_in_the_simulator_and_onnxruntime(kind):
    """snnTorch Leaky with a vector threshold (tests/fixtures/interop/make_snntorch_cases.py)."""
    graph = load_model(CASES / f"snntorch_threshold.{kind}.onnx")
    lif1, lif2 = graph.neurons()
    assert lif1.per_neuron == ("v_threshold",) and lif2.per_neuron == ()
    np.testing.assert_allclose(lif1.v_threshold, np.linspace(0.5, 1.4, 10), rtol=1e-6)
    reproduces_its_frameworks_spikes(graph, f"snntorch_threshold.{kind}.onnx")
