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
SYNAPTIC_CURRENT = "norse_lifcell_mlp"  # Norse LIFCell: not an IR neuron, must be rejected by name
LIFTABLE = [e for e in EXPORTS if e[0] != SYNAPTIC_CURRENT]
FORWARD_FIELDS = ("beta", "gain", "v_threshold", "v_leak", "v_init", "reset", "reset_delay", "fire_on_equal")


def fixture(name: str):
    data = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    return data, json.loads(str(data["info"]))


def export_path(name: str, kind: str) -> Path:
    return FIXTURES / f"{name}.{kind}.onnx"


def test_every_fixture_export_is_covered():
    assert len(EXPORTS) == 26  # as the fixtures' README counts
    assert {kind for _, kind in EXPORTS} == {"legacy", "dynamo", "legacy.dynbatch", "dynamo.dynbatch"}


@pytest.mark.parametrize("name,kind", LIFTABLE)
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


@pytest.mark.parametrize("name,kind", LIFTABLE)
def test_exported_profile_model_reproduces_the_spikes_in_onnxruntime_for_any_batch(name, kind):
    data, _ = fixture(name)
    model = to_model(load_model(export_path(name, kind)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_param == "N"  # the baked batch size of the export is gone
    assert np.array_equal(run(model, data["x"]).output, data["spikes"])
    assert np.array_equal(run(model, data["x"][:, 1:2]).output, data["spikes"][:, 1:2])


def test_norse_lifcell_synaptic_current_is_rejected_naming_the_node():
    with pytest.raises(UnsupportedOpError) as error:  # legacy: no class names, the arithmetic says it
        load_model(export_path(SYNAPTIC_CURRENT, "legacy"))
    message = str(error.value)
    assert "lif1" in message and "node '" in message and "input 'fc1' of step 0" in message
    assert "synaptic current" in message and "\n" not in message
    with pytest.raises(UnsupportedOpError, match=r"synaptic current \(CubaLIF / Norse LIFCell\) is not supported yet"):
        load_model(export_path(SYNAPTIC_CURRENT, "dynamo"))


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


def test_a_per_neuron_threshold_is_rejected_by_name():
    threshold = np.linspace(0.5, 0.9, 10)
    model = edited("snntorch_leaky_subtract_mlp", "legacy", lambda m: replace_initializer(m, "lif1.threshold", threshold))
    with pytest.raises(UnsupportedOpError, match=r"per-neuron thresholds in a torch.onnx export are not supported yet"):
        from_model(model)


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


@pytest.mark.parametrize("kind", ["legacy", "dynamo"])
def test_per_neuron_beta_reproduces_snntorch_in_the_simulator_and_onnxruntime_at_any_t_and_n(kind):
    """snnTorch Leaky(learn_beta=True) with a vector beta: 10 and 4 different decays per layer."""
    expected = np.load(CASES / "snntorch_learnbeta.expected.npz", allow_pickle=False)
    graph = load_model(CASES / f"snntorch_learnbeta.{kind}.onnx")
    betas = [n.beta for n in graph.neurons()]
    assert [b.shape for b in betas] == [(10,), (4,)] and len(np.unique(betas[0])) == 10
    model = to_model(graph)
    assert from_profile(model).same_as(graph)  # the profile keeps the per-neuron values bit for bit
    for x_key, spikes_key in (("x", "spikes"), ("x_T10_N1", "spikes_T10_N1")):  # T 6, N 3 and T 10, N 1
        x, spikes = expected[x_key], expected[spikes_key]
        assert 0.05 < spikes.mean() < 0.95
        assert np.array_equal(simulate(graph, x).output, spikes)
        assert np.array_equal(run(model, x).output, spikes)


@pytest.mark.parametrize("file,message", [
    ("snntorch_rleaky.legacy.onnx", r"recurrent synapses \(snnTorch RLeaky / RSynaptic\) are not supported yet "
                                    r"\(initializer 'lif1.recurrent.weight'\)"),
    ("snntorch_rleaky.dynamo.onnx", r"recurrent synapses \(snnTorch RLeaky\) are not supported yet \(class "
                                    r"'snntorch._neurons.rleaky'"),
    ("snntorch_synaptic.legacy.onnx", r"synaptic current \(CubaLIF / snnTorch Synaptic\) is not supported yet "
                                      r"\(initializers 'lif1.alpha' and its beta"),
    ("snntorch_synaptic.dynamo.onnx", r"synaptic current \(CubaLIF / snnTorch Synaptic\) is not supported yet"),
    ("sj_cubalif.dynamo.onnx", r"synaptic current \(CubaLIF / SpikingJelly CUBALIFNode\) is not supported yet"),
])
def test_constructs_not_supported_yet_are_refused_in_one_line_that_names_them(file, message):
    with pytest.raises(UnsupportedOpError, match=message) as error:
        load_model(CASES / file)
    assert str(error.value).startswith(f"{CASES / file}: ") and "\n" not in str(error.value)
