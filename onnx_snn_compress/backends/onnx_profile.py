"""Write an SNN IR graph as an ONNX model in the SNN-ONNX profile (docs/profile.md).

Stateless layers are standard ONNX ops on ``[T*N, ...]``; each neuron layer is a
node of a model-local function ``snn::LIF`` / ``snn::IF`` (``snn::CubaLIF`` /
``snn::RecurrentCubaLIF`` for a SynapticNeuron) whose body is a ``Scan`` over time made
of standard ops, so stock onnxruntime runs the model with no
custom-op library. One table maps each IR node kind to its writer.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import ir, profile
from ..errors import ModelError
from ..files import atomic_write_bytes

TIME, MERGED = "time", "merged"  # [T, N, *shape] or [T*N, *shape]


# ---------------------------------------------------------------------------
# Model-local functions: the neuron dynamics as a Scan of standard ops
# ---------------------------------------------------------------------------
def _ref_constant(output: str, attribute: str, kind: int) -> onnx.NodeProto:
    """A Constant node whose value is the calling node's attribute ``attribute``."""
    field = {
        onnx.AttributeProto.FLOAT: "value_float",
        onnx.AttributeProto.INT: "value_int",
        onnx.AttributeProto.STRING: "value_string",
        onnx.AttributeProto.TENSOR: "value",
    }[kind]
    node = helper.make_node("Constant", [], [output])
    ref = onnx.AttributeProto(name=field, ref_attr_name=attribute, type=kind)
    node.attribute.append(ref)
    return node


def _const(output: str, value, dtype=np.float32) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [output], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), output)
    )


def _variant_tag(delay: bool, on_equal: bool, hard: bool, leak: bool = True, jump: bool = True,
                 unit: bool = False) -> str:
    """The names' suffix of one loop: a variant (reset_delay, fire_on_equal, hard reset), each with
    its own loop, whether the loop has the leak's and the reset jump's terms, and whether its
    jump is the spike's negative (see :func:`_reset_terms`)."""
    return (f"_d{int(delay)}e{int(on_equal)}h{int(hard)}" + ("" if leak else "n") + ("" if jump else "z")
            + ("u" if unit else ""))


def _reset_terms(spike: str, hard: bool, jump: bool, n,
                 unit: bool = False) -> tuple[list[onnx.NodeProto], tuple[str | None, str | None]]:
    """The reset that the float spike S (0 or 1) calls for, as the terms of :func:`_apply_reset`:
    ``factor = 1 - S`` (hard reset only) and ``jump = S * reset_value`` (only with ``jump``:
    reset_value is not 0, i.e. not a hard reset to 0 nor no reset). With ``unit`` (reset_value
    is -1: a subtract reset with threshold 1, or a hard reset to -1) the jump is S itself, to
    be subtracted: ``S * -1.0`` is ``-S`` exactly, so ``P - S`` is ``P + S * reset_value`` bit
    for bit, one op fewer."""
    nodes, factor, jump_term = [], None, None
    if hard:
        nodes.append(helper.make_node("Sub", ["one", spike], [n("factor")]))
        factor = n("factor")
    if jump and unit:
        jump_term = spike
    elif jump:
        nodes.append(helper.make_node("Mul", [spike, "reset_value"], [n("jump")]))
        jump_term = n("jump")
    return nodes, (factor, jump_term)


def _apply_reset(potential: str, terms: tuple[str | None, str | None], n,
                 unit: bool = False) -> tuple[list[onnx.NodeProto], str]:
    """``potential`` P reset: ``P * factor + jump``, i.e. ``P + S * reset_value`` (subtract, none)
    or ``P * (1 - S) + S * reset_value`` (hard). Either is exactly ``P * (1 - hard) +
    reset_value`` after a spike (``P - v_threshold``, ``P`` or ``v_reset``) and ``P`` without
    one; a term that is absent (see :func:`_reset_terms`) would add an exact 0.0 or multiply by
    1.0, which changes no spike. Not ``Where``: onnxruntime's Where is the slowest op of the
    step on large layers (bench/bench_neuron_step.py). With ``unit`` the jump term is S, subtracted."""
    factor, jump_term = terms
    nodes = []
    if factor is not None:
        nodes.append(helper.make_node("Mul", [potential, factor], [n("kept")]))
        potential = n("kept")
    if jump_term is not None:
        nodes.append(helper.make_node("Sub" if unit else "Add", [potential, jump_term], [n("reset")]))
        potential = n("reset")
    return nodes, potential


def _neuron_step(variant: tuple[bool, bool, bool], decays: bool, leak: bool, jump: bool, tag: str, v_prev: str,
                 reset_prev: tuple[str | None, str | None] | None, drive_t: str, unit: bool = False):
    """One time step of one neuron variant (``reset_delay``, ``fire_on_equal``, hard reset): 3 to
    9 elementwise ops, 6 for the common immediate subtract reset of a LIF without leak, 5 when
    its threshold is 1 (the decay ``Mul`` only when ``decays``, i.e. not an IF; the ``Add`` of
    the leak only with ``leak``: adding an exact 0.0 changes no spike; ``jump`` and ``unit``:
    see :func:`_reset_terms`; ``unit`` only for an immediate reset).
    Reads the constants of :func:`_neuron_function`. With ``reset_delay`` the previous step's
    reset terms ``reset_prev`` (None at the first step) reset the decayed potential, and the
    step returns its own for the next one: carrying the terms rather than the spike lets the
    loop give the spike out without a copy. Returns the nodes, the potential, the float spike
    (0 or 1) and the reset terms after the step (None without ``reset_delay``).
    """
    delay, on_equal, hard = variant
    assert not (unit and delay), "a delayed reset carries its jump term; a unit jump would carry the spike"
    n = lambda name: f"{name}{tag}"  # noqa: E731
    nodes, charged = [], v_prev
    if decays:
        nodes.append(helper.make_node("Mul", [v_prev, "beta"], [n("decayed")]))
        charged = n("decayed")
    if leak:
        nodes.append(helper.make_node("Add", [charged, "leak"], [n("charged")]))
        charged = n("charged")
    if delay and reset_prev is not None:  # reset the decayed potential by the previous spike
        reset, charged = _apply_reset(charged, reset_prev, lambda name: n(f"{name}_early"))
        nodes += reset
    nodes += [
        helper.make_node("Add", [charged, drive_t], [n("h")]),
        helper.make_node("GreaterOrEqual" if on_equal else "Greater", [n("h"), "v_threshold"], [n("fired")]),
        helper.make_node("Cast", [n("fired")], [n("spike")], to=TensorProto.FLOAT),
    ]
    terms_nodes, terms = _reset_terms(n("spike"), hard, jump, n, unit)
    nodes += terms_nodes
    if delay:
        return nodes, n("h"), n("spike"), terms
    reset, v_next = _apply_reset(n("h"), terms, lambda name: n(f"{name}_now"), unit)  # immediate reset
    return nodes + reset, v_next, n("spike"), None


def _neuron_loop(variant: tuple[bool, bool, bool], decays: bool, leak: bool, jump: bool, time_steps: int | None,
                 own_start: bool = False, unit: bool = False) -> onnx.GraphProto:
    """``drive`` ``[T, N, ...]`` (outer scope) -> the spikes (0.0 / 1.0) ``[T, N, ...]`` of one
    variant: a Scan over any T, or, for a fixed ``time_steps``, the steps written out one
    after another. A Scan starts from the outer ``v_first``, or with ``own_start`` from its own
    (in a function whose other loops are unrolled, so that those compute no unused state)."""
    delay, hard = variant[0], variant[2]
    tag = _variant_tag(*variant, leak, jump, unit)
    n = lambda name: f"{name}{tag}"  # noqa: E731
    f = TensorProto.FLOAT
    spikes = n("s")  # short names: every variant's loop is in the file
    if time_steps is None:
        # names inside the Scan body are its own (the bodies of the variants are never in one scope)
        carried = (("keep_prev" if hard else None), ("jump_prev" if jump else None)) if delay else None
        step, v_next, spike, terms = _neuron_step(variant, decays, leak, jump, "", "v_prev", carried, "drive_t", unit)
        nodes, starts = [], ["v_first"]
        if own_start:
            nodes.append(helper.make_node("Expand", ["v_init", "step_shape"], [n("v_first")]))
            starts = [n("v_first")]
        states = [("v_prev", v_next)]
        for name, term, before in zip(carried or (), terms or (), (1.0, 0.0)):  # no reset before the first step
            if name is not None:
                states.append((name, term))
                nodes.append(helper.make_node("ConstantOfShape", ["step_shape"], [n(name)],
                                              value=numpy_helper.from_array(np.full(1, before, np.float32))))
                starts.append(n(name))
        body = helper.make_graph(
            step, "step",
            [helper.make_tensor_value_info(name, f, None) for name, _ in states]
            + [helper.make_tensor_value_info("drive_t", f, None)],
            [helper.make_tensor_value_info(out, f, None) for _, out in states + [(None, spike)]],
        )
        nodes.append(helper.make_node(
            "Scan", [*starts, "drive"], [*(n(f"e{i}") for i in range(len(starts))), spikes], body=body,
            num_scan_inputs=1,
        ))
    else:
        drives = [n(f"drive_{t}") for t in range(time_steps)]
        nodes = [helper.make_node("Split", ["drive"], drives, axis=0, num_outputs=time_steps) if time_steps > 1
                 else helper.make_node("Identity", ["drive"], drives)]
        v, terms, all_spikes = "v_init", None, []
        for t in range(time_steps):
            step, v, spike, terms = _neuron_step(variant, decays, leak, jump, f"{tag}_{t}", v, terms, drives[t], unit)
            nodes += step
            all_spikes.append(spike)
        nodes.append(helper.make_node("Concat", all_spikes, [spikes], axis=0))
    return helper.make_graph(nodes, tag, [], [helper.make_tensor_value_info(spikes, f, None)])


def _reset_mode_nodes() -> list[onnx.NodeProto]:
    """The calling neuron's ``reset`` attribute decoded: ``is_hard`` (bool), ``hard`` (float32) and
    ``reset_value = hard * v_reset - subtract * v_threshold`` (subtract = (reset == "subtract")), so
    that the reset of a potential P after a spike is ``P * (1 - hard) + reset_value``. Needs
    ``v_reset`` and ``v_threshold``."""
    return [
        _ref_constant("reset", "reset", onnx.AttributeProto.STRING),
        _const("hard_name", "hard", dtype=object),
        _const("subtract_name", "subtract", dtype=object),
        helper.make_node("Equal", ["reset", "hard_name"], ["is_hard"]),
        helper.make_node("Cast", ["is_hard"], ["hard"], to=TensorProto.FLOAT),
        helper.make_node("Equal", ["reset", "subtract_name"], ["is_subtract"]),
        helper.make_node("Cast", ["is_subtract"], ["subtract"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["hard", "v_reset"], ["hard_target"]),
        helper.make_node("Mul", ["subtract", "v_threshold"], ["subtract_step"]),
        helper.make_node("Sub", ["hard_target", "subtract_step"], ["reset_value"]),
    ]


def _parameter_constant(attribute: str, per_neuron: bool) -> onnx.NodeProto:
    """A neuron parameter of the calling node: a float attribute, or (per-neuron functions) a
    tensor attribute that broadcasts over one time step."""
    return _ref_constant(attribute, attribute, onnx.AttributeProto.TENSOR if per_neuron else onnx.AttributeProto.FLOAT)


def _all_equal(value: str, target: str, out: str, tensor: bool) -> list[onnx.NodeProto]:
    """``out`` = whether the float scalar ``value`` (or, for a ``tensor``, all of it) equals the
    scalar ``target`` (NaN does not)."""
    if not tensor:
        return [helper.make_node("Equal", [value, target], [out])]
    return [helper.make_node("Sub", [value, target], [f"{out}_offset"]),
            helper.make_node("Abs", [f"{out}_offset"], [f"{out}_abs"]),
            helper.make_node("ReduceSum", [f"{out}_abs"], [f"{out}_sum"], keepdims=0),
            helper.make_node("Equal", [f"{out}_sum", "zero"], [out])]


def _neuron_function(name: str, time_steps: int | None = None, specialized=frozenset()) -> onnx.FunctionProto:
    """``snn::LIF`` (or ``snn::IF``: beta = 1, no leak; or ``snn::LIFPerNeuron``: LIF whose
    six neuron parameters are tensors that broadcast over one time step ``[N, ...]``):
    X ``[T, N, ...]`` -> S ``[T, N, ...]``, for any T, or unrolled for ``time_steps``
    (see :func:`_neuron_loop`).

    ``If`` nodes on the reset mode (hard or not), ``reset_delay`` and ``fire_on_equal`` pick
    the loop of that variant; their conditions are constants, so onnxruntime keeps only the
    chosen branch at load. ``specialized`` holds the ``(variant, leak, jump, unit)`` keys the
    model's nodes use (leak: ``(1 - beta) * v_leak`` is not 0; jump: ``reset_value`` is not
    0; unit: it is -1, for an immediate reset): each gets its own loop, without the leak's
    ``Add`` or the reset's ``S * reset_value`` where those are 0, with ``P - S`` for the
    reset where reset_value is -1, chosen by ``If``s on these constants as well; any
    other key runs the loop with both terms. With ``time_steps`` only the specialized loops
    are unrolled; the others stay Scans, correct for any T, to keep the file small. An
    input scale ``gain`` of 1 skips its ``Mul`` the same way.
    """
    INT = onnx.AttributeProto.INT
    is_if = name == profile.IF
    per_neuron = name == profile.LIF_PER_NEURON

    def parameter(attribute: str) -> onnx.NodeProto:
        return _parameter_constant(attribute, per_neuron)

    attributes = [
        a for a in profile.NEURON_FLOAT_ATTRS + profile.NEURON_INT_ATTRS + profile.NEURON_STRING_ATTRS
        if not (is_if and a in profile.IF_OMITTED_ATTRS)
    ]
    nodes = [_const("one", 1.0), _const("zero", 0.0)] + [parameter(a) for a in ("v_threshold", "v_reset", "gain", "v_init")]
    if not is_if:
        nodes += [
            parameter("beta"),
            parameter("v_leak"),
            helper.make_node("Sub", ["one", "beta"], ["one_minus_beta"]),
            helper.make_node("Mul", ["one_minus_beta", "v_leak"], ["leak"]),
            *_all_equal("leak", "zero", "leak0", per_neuron),
        ]
    f = TensorProto.FLOAT

    def branch(output: str, graph_nodes) -> onnx.GraphProto:
        return helper.make_graph(graph_nodes, output, [], [helper.make_tensor_value_info(output, f, None)])

    nodes += [
        *_reset_mode_nodes(),  # is_hard also picks the loop
        *_all_equal("reset_value", "zero", "jump0", per_neuron),
        # the input current of every step at once, outside the time loop (X itself for gain 1)
        *_all_equal("gain", "one", "gain1", per_neuron),
        helper.make_node("If", ["gain1"], ["drive"],
                         then_branch=branch("drive1", [helper.make_node("Identity", ["X"], ["drive1"])]),
                         else_branch=branch("drive_g", [helper.make_node("Mul", ["gain", "X"], ["drive_g"])])),
        helper.make_node("Shape", ["drive"], ["step_shape"], start=1),
        # the variant: reset_delay, then fire_on_equal
        _ref_constant("delay_int", "reset_delay", INT),
        helper.make_node("Cast", ["delay_int"], ["delay"], to=TensorProto.BOOL),
        _ref_constant("fire_on_equal_int", "fire_on_equal", INT),
        helper.make_node("Cast", ["fire_on_equal_int"], ["fire_on_equal"], to=TensorProto.BOOL),
    ]
    if time_steps is None:  # a Scan's initial state: V = v_init, shaped like one time step (not by Expand,
        # which onnxruntime's optimizer rewrites with a warning when the Scans read it from outside)
        nodes += [helper.make_node("ConstantOfShape", ["step_shape"], ["zeros"],
                                   value=numpy_helper.from_array(np.zeros(1, np.float32))),
                  helper.make_node("Add", ["zeros", "v_init"], ["v_first"])]

    def choose(condition: str, tag: str, then_branch: onnx.GraphProto, else_branch: onnx.GraphProto) -> onnx.GraphProto:
        if then_branch is else_branch:
            return then_branch
        node = helper.make_node("If", [condition], [f"s{tag}"], then_branch=then_branch, else_branch=else_branch)
        return branch(f"s{tag}", [node])

    written: set[str] = set()

    if any(unit for *_, unit in specialized):
        nodes += [_const("minus_one", -1.0), *_all_equal("reset_value", "minus_one", "jump_unit", per_neuron)]

    def condition(leak: bool, jump: bool, unit: bool) -> str:
        """A bool: the leak and the reset's jump are nonzero (or 0) as given, and with ``unit`` the
        jump is -1; its nodes written once."""
        def once(node: onnx.NodeProto) -> str:
            if node.output[0] not in written:
                nodes.append(node)
                written.add(node.output[0])
            return node.output[0]

        def flag(zero: str, nonzero: bool) -> str:  # leak0: the leak is 0, leak1: it is not
            return once(helper.make_node("Not", [zero], [zero[:-1] + "1"])) if nonzero else zero

        flags = ([] if is_if else [flag("leak0", leak)]) + [flag("jump0", jump)] + (["jump_unit"] if unit else [])
        combined = flags[0]
        for other in flags[1:]:
            combined = once(helper.make_node("And", [combined, other], [combined + other]))
        return combined

    def by_constants(variant) -> onnx.GraphProto:
        """The variant's loop, with its own loop for each (leak, jump, unit) of ``specialized``
        (a unit key's ``If`` comes first: its loop is right only where reset_value is -1)."""
        general_key = (not is_if, True, False)
        own_start = time_steps is not None
        steps = time_steps if (variant, *general_key) in specialized else None
        tree = _neuron_loop(variant, not is_if, general_key[0], general_key[1], steps, own_start)
        for leak, jump, unit in sorted({tuple(key) for v, *key in specialized if v == variant} - {general_key}):
            special = _neuron_loop(variant, not is_if, leak, jump, time_steps, own_start, unit)
            tree = choose(condition(leak, jump, unit), _variant_tag(*variant, leak, jump, unit) + "_c", special, tree)
        return tree

    def by_firing(delay: bool, hard: bool) -> onnx.GraphProto:
        return choose("fire_on_equal", f"_d{int(delay)}h{int(hard)}", by_constants((delay, True, hard)),
                      by_constants((delay, False, hard)))

    def by_delay(hard: bool) -> onnx.GraphProto:
        return choose("delay", f"_h{int(hard)}", by_firing(True, hard), by_firing(False, hard))

    nodes.append(helper.make_node("If", ["is_hard"], ["S"], then_branch=by_delay(True), else_branch=by_delay(False)))
    return helper.make_function(
        profile.DOMAIN, name, ["X"], ["S"], nodes, [helper.make_opsetid("", profile.OPSET)], attributes=attributes
    )


def _synaptic_function(name: str) -> onnx.FunctionProto:
    """``snn::CubaLIF`` (X) or ``snn::RecurrentCubaLIF`` (X, W, B): X ``[T, N, n]`` -> S ``[T, N, n]``,
    ir.SynapticNeuron's equations as a Scan over any T, in the float32 order of kernels/synaptic.py.
    Their ``...PerNeuron`` twins take the seven neuron parameters as tensor attributes ``[n]``
    (or 0-d), which broadcast over one time step ``[N, n]``.

    One body serves every variant: ``reset_delay`` and ``fire_on_equal`` select with ``Where`` /
    ``Or`` (exact, no arithmetic), and the recurrent current is ``MatMul(S[t-1], W^T) + B``.
    """
    INT = onnx.AttributeProto.INT
    f, b = TensorProto.FLOAT, TensorProto.BOOL
    recurrent = name in (profile.RECURRENT_CUBALIF, profile.RECURRENT_CUBALIF_PER_NEURON)
    per_neuron = name in (profile.CUBALIF_PER_NEURON, profile.RECURRENT_CUBALIF_PER_NEURON)
    attributes = list(profile.SYNAPTIC_FLOAT_ATTRS + profile.NEURON_INT_ATTRS + profile.NEURON_STRING_ATTRS)
    step = [
        helper.make_node("Mul", ["i_prev", "current_decay"], ["i_decayed"]),
        helper.make_node("Add", ["i_decayed", "x_t"], ["i_input"]),
    ]
    current = "i_input"
    if recurrent:
        step += [
            helper.make_node("Cast", ["fired_prev"], ["s_prev"], to=f),
            helper.make_node("MatMul", ["s_prev", "weight_t"], ["r_synapses"]),
            helper.make_node("Add", ["r_synapses", "B"], ["r"]),
            helper.make_node("Add", ["i_input", "r"], ["i_next"]),
        ]
        current = "i_next"
    else:
        step.append(helper.make_node("Identity", ["i_input"], ["i_next"]))
    step += [
        # charge: (beta * V + leak) + gain * I
        helper.make_node("Mul", ["v_prev", "beta"], ["decayed"]),
        helper.make_node("Add", ["decayed", "leak"], ["charged"]),
        helper.make_node("Mul", ["gain", current], ["drive"]),
        helper.make_node("Add", ["charged", "drive"], ["p"]),
        # reset(P) = P * keep + reset_value; with reset_delay after the previous step's spike
        helper.make_node("Mul", ["p", "keep"], ["p_kept"]),
        helper.make_node("Add", ["p_kept", "reset_value"], ["p_reset"]),
        helper.make_node("And", ["fired_prev", "delay"], ["reset_early"]),
        helper.make_node("Where", ["reset_early", "p_reset", "p"], ["h"]),
        # fire: H > thr, or H >= thr with fire_on_equal
        helper.make_node("Greater", ["h", "v_threshold"], ["above"]),
        helper.make_node("Equal", ["h", "v_threshold"], ["at"]),
        helper.make_node("And", ["at", "fire_on_equal"], ["at_fires"]),
        helper.make_node("Or", ["above", "at_fires"], ["fired"]),
        # reset now unless reset_delay
        helper.make_node("Mul", ["h", "keep"], ["h_kept"]),
        helper.make_node("Add", ["h_kept", "reset_value"], ["h_reset"]),
        helper.make_node("And", ["fired", "immediate"], ["reset_now"]),
        helper.make_node("Where", ["reset_now", "h_reset", "h"], ["v_next"]),
        helper.make_node("Identity", ["fired"], ["fired_next"]),
        helper.make_node("Identity", ["fired"], ["fired_t"]),
    ]
    states = [("i_prev", "i_next", f), ("v_prev", "v_next", f), ("fired_prev", "fired_next", b)]
    body = helper.make_graph(
        step, "cubalif_step",
        [helper.make_tensor_value_info(name, t, None) for name, _, t in states]
        + [helper.make_tensor_value_info("x_t", f, None)],
        [helper.make_tensor_value_info(out, t, None) for _, out, t in states]
        + [helper.make_tensor_value_info("fired_t", b, None)],
    )
    nodes = [
        _const("one", 1.0),
        *(_parameter_constant(a, per_neuron) for a in ("current_decay", "beta", "v_threshold", "v_reset", "v_leak",
                                                        "gain", "v_init")),
        helper.make_node("Sub", ["one", "beta"], ["one_minus_beta"]),
        helper.make_node("Mul", ["one_minus_beta", "v_leak"], ["leak"]),
        *_reset_mode_nodes(),
        helper.make_node("Sub", ["one", "hard"], ["keep"]),
        _ref_constant("delay_int", "reset_delay", INT),
        helper.make_node("Cast", ["delay_int"], ["delay"], to=b),
        helper.make_node("Not", ["delay"], ["immediate"]),
        _ref_constant("fire_on_equal_int", "fire_on_equal", INT),
        helper.make_node("Cast", ["fire_on_equal_int"], ["fire_on_equal"], to=b),
        # initial state: I = 0, V = v_init, no previous spike, shaped like one time step
        helper.make_node("Shape", ["X"], ["step_shape"], start=1),
        helper.make_node("ConstantOfShape", ["step_shape"], ["zeros"],
                         value=numpy_helper.from_array(np.zeros(1, np.float32))),
        helper.make_node("Add", ["zeros", "v_init"], ["v_first"]),
        helper.make_node("ConstantOfShape", ["step_shape"], ["no_spikes"],
                         value=numpy_helper.from_array(np.zeros(1, bool))),
    ]
    if recurrent:
        nodes.append(helper.make_node("Transpose", ["W"], ["weight_t"], perm=[1, 0]))
    nodes += [
        helper.make_node("Scan", ["zeros", "v_first", "no_spikes", "X"], ["i_end", "v_end", "fired_end", "spikes"],
                         body=body, num_scan_inputs=1),
        helper.make_node("Cast", ["spikes"], ["S"], to=f),
    ]
    inputs = ["X", "W", "B"] if recurrent else ["X"]
    return helper.make_function(
        profile.DOMAIN, name, inputs, ["S"], nodes, [helper.make_opsetid("", profile.OPSET)], attributes=attributes
    )


def _leaky_integrator_function() -> onnx.FunctionProto:
    """``snn::LI``: U[t] = beta * U[t-1] + X[t], U[-1] = 0; returns U ``[T, N, ...]``."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Mul", ["u_prev", "beta"], ["decayed"]), helper.make_node("Add", ["decayed", "x_t"], ["u_next"]),
         helper.make_node("Identity", ["u_next"], ["u_t"])],
        "integrate_step",
        [helper.make_tensor_value_info(n, f, None) for n in ("u_prev", "x_t")],
        [helper.make_tensor_value_info(n, f, None) for n in ("u_next", "u_t")],
    )
    nodes = [
        _ref_constant("beta", "beta", onnx.AttributeProto.FLOAT),
        helper.make_node("Shape", ["X"], ["step_shape"], start=1),
        helper.make_node(
            "ConstantOfShape", ["step_shape"], ["zeros"], value=numpy_helper.from_array(np.zeros(1, np.float32))
        ),
        helper.make_node("Scan", ["zeros", "X"], ["u_end", "U"], body=body, num_scan_inputs=1),
    ]
    return helper.make_function(
        profile.DOMAIN, profile.LI, ["X"], ["U"], nodes, [helper.make_opsetid("", profile.OPSET)], attributes=["beta"]
    )


def _masked_weight_function() -> onnx.FunctionProto:
    """``snn::MaskedWeight(mask_bits, values, shape) -> W``: a pruned weight tensor from a
    packed bitmask (``np.packbits`` of ``W != 0``, most significant bit first, uint8)
    and ``values`` (0.0, then the nonzero values in row-major order, float32)::

        bits[i] = (mask_bits[i // 8] >> (7 - i % 8)) & 1       for i < size = prod(shape)
        W[i]    = values[bits[i] * cumsum(bits)[i]]            (index 0 holds 0.0)

    All inputs are initializers, so onnxruntime constant-folds the call at load.
    """
    nodes = [
        _const("column", [1], np.int64),
        _const("shifts", [7, 6, 5, 4, 3, 2, 1, 0], np.uint8),
        _const("one", 1, np.uint8),
        _const("start", [0], np.int64),
        _const("flat", [-1], np.int64),
        helper.make_node("ReduceProd", ["shape"], ["size"], keepdims=1),
        helper.make_node("Unsqueeze", ["mask_bits", "column"], ["bytes"]),
        helper.make_node("BitShift", ["bytes", "shifts"], ["shifted"], direction="RIGHT"),
        helper.make_node("BitwiseAnd", ["shifted", "one"], ["bit_matrix"]),
        helper.make_node("Reshape", ["bit_matrix", "flat"], ["padded_bits"]),
        helper.make_node("Slice", ["padded_bits", "start", "size"], ["bits8"]),
        helper.make_node("Cast", ["bits8"], ["bits"], to=TensorProto.INT64),
        helper.make_node("CumSum", ["bits", "start"], ["rank"]),
        helper.make_node("Mul", ["rank", "bits"], ["index"]),
        helper.make_node("Gather", ["values", "index"], ["flat_weight"]),
        helper.make_node("Reshape", ["flat_weight", "shape"], ["W"]),
    ]
    return helper.make_function(
        profile.DOMAIN, profile.MASKED_WEIGHT, ["mask_bits", "values", "shape"], ["W"], nodes,
        [helper.make_opsetid("", profile.OPSET)],
    )


# ---------------------------------------------------------------------------
# Graph writer
# ---------------------------------------------------------------------------
MAX_UNROLLED_STEPS = 1000  # about 30 ops per step (four variants) in each neuron function
COMPACT_OVERHEAD = 200  # bytes of a MaskedWeight call, its shape and the tensors' names, about


class _Writer:
    """Emits nodes and initializers, tracking each IR tensor's layout."""

    def __init__(self, graph: ir.Graph, storage: str = "dense", time_steps: int | None = None):
        if storage not in profile.STORAGES:
            raise ModelError(f"unknown storage {storage!r}; choose one of {', '.join(profile.STORAGES)}")
        if time_steps is not None and not 1 <= time_steps <= MAX_UNROLLED_STEPS:
            raise ModelError(f"time steps to unroll must lie in [1, {MAX_UNROLLED_STEPS}], got {time_steps}")
        self.graph = graph
        self.storage = storage
        self.time_steps = time_steps
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.layout: dict[str, str] = {}  # IR node name -> layout of the ONNX tensor of that name
        self.views: dict[tuple[str, str], str] = {}  # (IR name, layout) -> ONNX tensor name
        self.functions: dict[str, onnx.FunctionProto] = {}
        self.has_time_steps = False

    def initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def synapses(self, name: str, weight: np.ndarray) -> str:
        """A weight tensor: an initializer, or with ``compact`` storage a packed bitmask and
        the nonzero values rebuilt by ``snn::MaskedWeight`` when that takes fewer bytes."""
        if self.storage == "dense":
            return self.initializer(name, weight)
        nonzero = weight.reshape(-1).view(np.uint32) != 0  # by bits, so a -0.0 is kept as a value
        if 4 * int(nonzero.sum()) + (nonzero.size + 7) // 8 + COMPACT_OVERHEAD >= 4 * weight.size:
            return self.initializer(name, weight)
        inputs = [
            self.initializer(f"{name}.mask_bits", np.packbits(nonzero)),
            self.initializer(f"{name}.values", np.concatenate([np.zeros(1, np.float32), weight.reshape(-1)[nonzero]])),
            self.initializer(f"{name}.shape", np.array(weight.shape, np.int64)),
        ]
        if profile.MASKED_WEIGHT not in self.functions:
            self.functions[profile.MASKED_WEIGHT] = _masked_weight_function()
        self.emit(profile.MASKED_WEIGHT, inputs, [name], name, domain=profile.DOMAIN)
        return name

    def emit(self, op: str, inputs, outputs, name: str, domain: str = "", **attrs) -> None:
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, domain=domain, **attrs))

    def view(self, source: str, layout: str) -> str:
        """The ONNX tensor holding IR tensor ``source`` in ``layout``, reshaping once if needed."""
        if self.layout[source] == layout:
            return source
        key = (source, layout)
        if key not in self.views:
            shape = list(self.graph.shapes[source])
            if layout == MERGED:
                target = self.initializer(f"{source}.merged_shape", np.array([-1, *shape], np.int64))
                out = f"{source}.merged"
            else:
                if not self.has_time_steps:
                    self.emit("Shape", [self.graph.input.name], [profile.TIME_STEPS], profile.TIME_STEPS, start=0, end=1)
                    self.has_time_steps = True
                rest = self.initializer(f"{source}.step_shape", np.array([-1, *shape], np.int64))
                target = f"{source}.time_shape"
                self.emit("Concat", [profile.TIME_STEPS, rest], [target], target, axis=0)
                out = f"{source}.time"
            self.emit("Reshape", [self.view(source, self.layout[source]), target], [out], out)
            self.views[key] = out
        return self.views[key]

    def write(self, node: ir.Node) -> None:
        _WRITERS[type(node)](self, node)


def _write_input(w: _Writer, node: ir.Input):
    w.layout[node.name] = TIME


def _write_linear(w: _Writer, node: ir.Linear):
    inputs = [w.view(node.inputs[0], MERGED), w.synapses(f"{node.name}.weight", node.weight)]
    if node.bias is not None:
        inputs.append(w.initializer(f"{node.name}.bias", node.bias))
    w.emit("Gemm", inputs, [node.name], node.name, transB=1)
    w.layout[node.name] = MERGED


def _spatial(node: ir.Node, values) -> list[int]:
    """Per spatial axis: both for a 2-D layer; for a 1-D one (stored over ``[C, 1, L]``) only L's."""
    return list(values)[1:] if type(node) in ir.PLANAR_1D_KINDS else list(values)


def _write_conv(w: _Writer, node: ir.Conv2d):
    # a Conv1d is written as the user's 1-D Conv on [T*N, C, L], weight [out, in, k]
    weight = np.ascontiguousarray(node.weight[:, :, 0, :]) if isinstance(node, ir.Conv1d) else node.weight
    inputs = [w.view(node.inputs[0], MERGED), w.synapses(f"{node.name}.weight", weight)]
    if node.bias is not None:
        inputs.append(w.initializer(f"{node.name}.bias", node.bias))
    padding = _spatial(node, node.padding)
    w.emit(
        "Conv", inputs, [node.name], node.name,
        kernel_shape=list(weight.shape[2:]), strides=_spatial(node, node.stride),
        pads=[*padding, *padding], dilations=_spatial(node, node.dilation), group=node.groups,
    )
    w.layout[node.name] = MERGED


def _write_batchnorm(w: _Writer, node: ir.BatchNorm):
    params = [w.initializer(f"{node.name}.{p}", getattr(node, p)) for p in ("weight", "bias", "running_mean", "running_var")]
    w.emit(
        "BatchNormalization", [w.view(node.inputs[0], MERGED), *params], [node.name], node.name,
        epsilon=node.eps, momentum=float(np.float32(1.0 - node.momentum)),
    )
    w.layout[node.name] = MERGED


def _write_pool(w: _Writer, node):
    padding = _spatial(node, node.padding)
    attrs = dict(kernel_shape=_spatial(node, node.kernel_size), strides=_spatial(node, node.stride),
                 pads=[*padding, *padding])
    if isinstance(node, ir.AvgPool2d):
        op, attrs["count_include_pad"] = "AveragePool", int(node.count_include_pad)
    else:
        op = "MaxPool"
    w.emit(op, [w.view(node.inputs[0], MERGED)], [node.name], node.name, **attrs)
    w.layout[node.name] = MERGED


def _write_flatten(w: _Writer, node: ir.Flatten):
    w.emit("Flatten", [w.view(node.inputs[0], MERGED)], [node.name], node.name, axis=1)
    w.layout[node.name] = MERGED


def _write_add(w: _Writer, node: ir.Add):
    layout = w.layout[node.inputs[0]]
    w.emit("Add", [w.view(s, layout) for s in node.inputs], [node.name], node.name)
    w.layout[node.name] = layout


def _write_dropout(w: _Writer, node: ir.Dropout):
    source = node.inputs[0]
    ratio = w.initializer(f"{node.name}.ratio", np.array(node.p, np.float32))
    w.emit("Dropout", [source, ratio], [node.name], node.name)
    w.layout[node.name] = w.layout[source]


def _neuron_op(node: ir.Neuron) -> str:
    if node.per_neuron:
        return profile.LIF_PER_NEURON
    return profile.IF if node.is_if else profile.LIF


def _loop_key(node: ir.Neuron) -> tuple[tuple[bool, bool, bool], bool, bool, bool]:
    """The loop a neuron layer runs (see :func:`_neuron_function`): its variant, whether the
    function's ``leak = (1 - beta) * v_leak`` and ``reset_value`` (float32, as the function
    computes them) are nonzero for some neuron of the layer, and whether ``reset_value`` is
    -1 for all of them with an immediate reset."""
    f32 = lambda value: np.asarray(value, np.float32)  # noqa: E731
    leak = (np.float32(1.0) - f32(node.beta)) * f32(node.v_leak)
    reset_value = {"hard": f32(node.v_reset), "subtract": -f32(node.v_threshold)}.get(node.reset, f32(0.0))
    unit = not node.reset_delay and bool(np.all(reset_value == -1.0))
    return ((node.reset_delay, node.fire_on_equal, node.reset == "hard"), not node.is_if and bool(np.any(leak != 0)),
            bool(np.any(reset_value != 0)), unit)


def _write_neuron(w: _Writer, node: ir.Neuron):
    op = _neuron_op(node)
    attrs = {
        a: getattr(node, a) for a in profile.NEURON_FLOAT_ATTRS + profile.NEURON_STRING_ATTRS
        if not (op == profile.IF and a in profile.IF_OMITTED_ATTRS)
    }
    if op == profile.LIF_PER_NEURON:  # every one a tensor, a scalar as a 0-d one
        attrs.update({a: numpy_helper.from_array(np.asarray(attrs[a], np.float32), a)
                      for a in profile.NEURON_PER_NEURON_ATTRS})
    attrs.update({a: int(getattr(node, a)) for a in profile.NEURON_INT_ATTRS})
    if op not in w.functions:
        used = {_loop_key(n) for n in w.graph.neurons() if isinstance(n, ir.Neuron) and _neuron_op(n) == op}
        w.functions[op] = _neuron_function(op, w.time_steps, used)
    w.emit(op, [w.view(node.inputs[0], TIME)], [node.name], node.name, domain=profile.DOMAIN, **attrs)
    w.layout[node.name] = TIME


def _write_synaptic_neuron(w: _Writer, node: ir.SynapticNeuron):
    if node.per_neuron:
        op = profile.RECURRENT_CUBALIF_PER_NEURON if node.recurrent else profile.CUBALIF_PER_NEURON
    else:
        op = profile.RECURRENT_CUBALIF if node.recurrent else profile.CUBALIF
    attrs = {a: getattr(node, a) for a in profile.SYNAPTIC_FLOAT_ATTRS + profile.NEURON_STRING_ATTRS}
    if node.per_neuron:  # every one a tensor, a scalar as a 0-d one
        attrs.update({a: numpy_helper.from_array(np.asarray(attrs[a], np.float32), a) for a in node.PARAMETERS})
    attrs.update({a: int(getattr(node, a)) for a in profile.NEURON_INT_ATTRS})
    if op not in w.functions:
        w.functions[op] = _synaptic_function(op)
    inputs = [w.view(node.inputs[0], TIME)]
    if node.recurrent:
        inputs += [w.synapses(f"{node.name}.weight", node.weight), w.initializer(f"{node.name}.bias", node.bias)]
    w.emit(op, inputs, [node.name], node.name, domain=profile.DOMAIN, **attrs)
    w.layout[node.name] = TIME


def _write_readout(w: _Writer, node: ir.Readout):
    source = w.view(node.inputs[0], TIME)
    if node.mode == "spikes":
        w.emit("Identity", [source], [node.name], node.name)
        return
    if node.mode == "leaky":
        if profile.LI not in w.functions:
            w.functions[profile.LI] = _leaky_integrator_function()
        integrated = f"{node.name}.membrane"
        w.emit(profile.LI, [source], [integrated], integrated, domain=profile.DOMAIN, beta=node.beta)
        source = integrated
    axes = w.initializer(f"{node.name}.time_axis", np.array([0], np.int64))
    w.emit("ReduceMean", [source, axes], [node.name], node.name, keepdims=0)


_WRITERS = {
    ir.Input: _write_input,
    ir.Linear: _write_linear,
    ir.Conv2d: _write_conv,
    ir.Conv1d: _write_conv,
    ir.MaxPool1d: _write_pool,
    ir.AvgPool1d: _write_pool,
    ir.BatchNorm: _write_batchnorm,
    ir.MaxPool2d: _write_pool,
    ir.AvgPool2d: _write_pool,
    ir.Flatten: _write_flatten,
    ir.Add: _write_add,
    ir.Dropout: _write_dropout,
    ir.Neuron: _write_neuron,
    ir.SynapticNeuron: _write_synaptic_neuron,
    ir.Readout: _write_readout,
}


def to_model(graph: ir.Graph, storage: str = "dense", time_steps: int | None = None) -> onnx.ModelProto:
    """The graph as an ONNX model in the SNN-ONNX profile (checked with ``full_check``).

    ``storage="compact"`` writes each pruned weight tensor as a packed bitmask and its
    nonzero values (``snn::MaskedWeight``; docs/profile.md, "Compact storage").
    ``time_steps`` fixes T and writes the neurons' time loop unrolled, which onnxruntime
    runs faster than a Scan on small networks, not on large layers (docs/profile.md,
    "Fixed time steps"). Raises ModelError for
    an unknown storage or a T outside [1, MAX_UNROLLED_STEPS].
    """
    writer = _Writer(graph, storage, time_steps)
    for node in graph:
        writer.write(node)
    readout = graph.readout
    classes = graph.num_classes
    steps = "T" if time_steps is None else time_steps
    output_dims = [steps, "N", classes] if readout.mode == "spikes" else ["N", classes]
    onnx_graph = helper.make_graph(
        writer.nodes,
        graph.metadata.get("name", "snn"),
        [helper.make_tensor_value_info(graph.input.name, TensorProto.FLOAT, [steps, "N", *graph.input.shape])],
        [helper.make_tensor_value_info(readout.name, TensorProto.FLOAT, output_dims)],
        initializer=writer.initializers,
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", profile.OPSET), helper.make_opsetid(profile.DOMAIN, profile.DOMAIN_VERSION)],
        functions=list(writer.functions.values()),
        producer_name=profile.PRODUCER,
        ir_version=profile.IR_VERSION,
    )
    metadata = {**graph.metadata, profile.KEY_PROFILE: profile.PROFILE_VERSION, profile.KEY_OUTPUT: readout.mode}
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def save(graph: ir.Graph, path: str | os.PathLike, storage: str = "dense", time_steps: int | None = None) -> None:
    """Write the graph to ``path`` atomically (temporary file, then rename); options as :func:`to_model`."""
    atomic_write_bytes(path, to_model(graph, storage, time_steps).SerializeToString())
