"""The SNN-ONNX profile: checker-clean, runs in stock onnxruntime, round-trips bit-exactly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings

from onnx_snn_compress import ir, profile
from onnx_snn_compress.backends.onnx_profile import save, to_model
from onnx_snn_compress.errors import ModelError, UnsupportedOpError
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.frontends.onnx_profile import from_model

from graphs import random_input, snn_graphs

PROFILE_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small_graph(**neuron) -> ir.Graph:
    rng = np.random.default_rng(0)
    return ir.Graph([
        ir.Input("x", shape=(6,)),
        ir.Linear("fc", ("x",), weight=rng.normal(size=(4, 6)), bias=rng.normal(size=4)),
        ir.Neuron("lif", ("fc",), **{"beta": 0.9, **neuron}),
        ir.Readout("out", ("lif",)),
    ])


@PROFILE_SETTINGS
@given(snn_graphs())
def test_export_then_import_gives_back_the_same_graph_bit_for_bit(graph):
    model = to_model(graph)
    onnx.checker.check_model(model, full_check=True)
    assert from_model(model).same_as(graph)


@PROFILE_SETTINGS
@given(snn_graphs())
def test_exported_model_runs_in_plain_onnxruntime_with_dynamic_time_and_batch(graph):
    session = ort.InferenceSession(to_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    for time_steps, samples in ((3, 2), (5, 1)):
        (output,) = session.run(None, {"x": random_input(graph, time_steps, samples, seed=1)})
        expected = (time_steps, samples, graph.num_classes) if graph.readout.mode == "spikes" else (samples, graph.num_classes)
        assert output.shape == expected
        assert np.all(np.isfinite(output))


def test_model_declares_opset_domain_and_metadata():
    graph = small_graph()
    graph.metadata["source_framework"] = "test"
    model = to_model(graph)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets[""] == profile.OPSET >= 17 and opsets[profile.DOMAIN] == profile.DOMAIN_VERSION
    props = {p.key: p.value for p in model.metadata_props}
    assert props[profile.KEY_PROFILE] == profile.PROFILE_VERSION
    assert props[profile.KEY_OUTPUT] == "rate"
    assert props["source_framework"] == "test"
    assert {f.name for f in model.functions} == {"LIF"}
    assert [n.op_type for n in model.graph.node if n.domain == profile.DOMAIN] == ["LIF"]


def test_integrate_and_fire_is_written_as_snn_IF_without_leak_attributes():
    model = to_model(small_graph(beta=1.0, v_leak=0.7))
    (node,) = [n for n in model.graph.node if n.domain == profile.DOMAIN]
    assert node.op_type == "IF"
    assert {a.name for a in node.attribute}.isdisjoint({"beta", "v_leak"})
    assert from_model(model).neurons()[0].v_leak == 0.0


@pytest.mark.parametrize("reset", ir.RESET_MODES)
@pytest.mark.parametrize("reset_delay", [False, True])
@pytest.mark.parametrize("fire_on_equal", [False, True])
# without leak, input scale or reset jump (hard reset to 0, or none) the body skips their Add
# and Mul; an IF (beta = 1) also the decay's Mul; a reset value of -1 (subtract reset with
# threshold 1, hard reset to -1) subtracts the spike itself, without the jump's Mul
@pytest.mark.parametrize("beta, v_leak, gain, v_reset, v_threshold", [
    (0.75, 0.25, 0.5, -0.5, 1.0), (0.75, 0.0, 1.0, 0.0, 1.0), (1.0, 0.0, 1.0, -0.5, 1.0), (0.75, 0.0, 1.0, -1.0, 0.75)])
@pytest.mark.parametrize("time_steps", [None, 12])
def test_onnx_neuron_follows_the_documented_equations(reset, reset_delay, fire_on_equal, beta, v_leak, gain, v_reset,
                                                      v_threshold, time_steps):
    """Drive one neuron through onnxruntime and through the equations of docs/profile.md (Scan and unrolled)."""
    params = dict(beta=beta, v_threshold=v_threshold, v_reset=v_reset, v_leak=v_leak, v_init=0.5, gain=gain,
                  reset=reset, reset_delay=reset_delay, fire_on_equal=fire_on_equal)
    graph = ir.Graph([ir.Input("x", shape=(5,)), ir.Neuron("lif", ("x",), **params), ir.Readout("out", ("lif",), mode="spikes")])
    # inputs on the 0.25 grid make H hit the threshold exactly, so > and >= differ
    x = np.random.default_rng(3).integers(0, 6, size=(12, 2, 5)).astype(np.float32) * np.float32(0.5)
    model = to_model(graph, time_steps=time_steps)
    (spikes,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    f = np.float32
    v = np.full(x.shape[1:], f(params["v_init"]), f)
    s_prev = np.zeros_like(v)
    expected = []

    def do_reset(p, s):
        if reset == "subtract":
            return np.where(s > 0, p - f(v_threshold), p)
        if reset == "hard":
            return np.where(s > 0, f(v_reset), p)
        return p

    for t in range(x.shape[0]):
        d = f(beta) * v + f(1 - beta) * f(v_leak)
        d = do_reset(d, s_prev) if reset_delay else d
        h = d + f(gain) * x[t]
        s = ((h >= f(v_threshold)) if fire_on_equal else (h > f(v_threshold))).astype(f)
        v = h if reset_delay else do_reset(h, s)
        s_prev = s
        expected.append(s)
    np.testing.assert_array_equal(spikes, np.stack(expected))
    assert 0 < spikes.mean() < 1


def test_save_writes_atomically_and_load_model_reads_it(tmp_path):
    graph = small_graph()
    path = tmp_path / "nested" / "model.onnx"
    save(graph, path)
    assert load_model(path).same_as(graph)
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary file left


def test_unsupported_op_error_names_the_node_and_the_op():
    model = to_model(small_graph())
    relu = onnx.helper.make_node("Relu", ["fc"], ["fc_relu"], name="my_relu")
    nodes = list(model.graph.node)
    index = [n.name for n in nodes].index("fc") + 1
    nodes.insert(index, relu)
    for n in nodes[index + 1 :]:
        n.input[:] = ["fc_relu" if i == "fc" else i for i in n.input]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    with pytest.raises(UnsupportedOpError, match=r"'my_relu' \(Relu\)"):
        from_model(model)


def test_other_profile_major_version_is_refused():
    model = to_model(small_graph())
    onnx.helper.set_model_props(model, {profile.KEY_PROFILE: "2"})
    with pytest.raises(ModelError, match="version '2'"):
        from_model(model)
