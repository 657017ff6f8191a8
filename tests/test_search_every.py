"""A minimax search step every ``search_every`` training steps: between them the penalty holds the
last sets, and a search step's s and dual step sizes count the training steps since the last."""

import numpy as np
import pytest

from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.kernels.selection import key_bits, least_mask
from onnx_snn_compress.optim import Adam
from onnx_snn_compress.pruning import FlatWeights, ProtectStrongest, protect_strongest
from onnx_snn_compress.samples import sample_model_path
from onnx_snn_compress.solvers import Budget, Minimax, MinimaxState, unranked
from onnx_snn_compress.train import TrainConfig
from test_compress import (CHECKPOINT, REPORT, Interrupt, cli_files, compress, interrupt_after, no_training,
                           reachable_budgets, run_cli, start, tiny_mlp)


def solver_on_digits_mlp(per_layer=False, protect=False, lr_factor=1.0):
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    groups = [part for _, part in flat.layer_slices()] if per_layer else [slice(0, flat.size)]
    output = list(flat.layer_slices())[-1][1]
    rank = ProtectStrongest(output, graph[layers[-1]].weight.shape[0], 1) if protect else unranked
    solver = Minimax(flat, groups, lr_s=0.1 * lr_factor, lr_y=1.0 * lr_factor, lr_z=0.1 * lr_factor, rank=rank)
    params = {f"{name}.weight": graph[name].weight for name in layers}
    return graph, layers, flat, solver, params


def test_a_step_over_n_training_steps_is_the_step_of_n_times_the_step_sizes():
    results = []
    for steps, factor in ((3, 1.0), (1, 3.0)):
        _, _, flat, solver, _ = solver_on_digits_mlp(per_layer=True, lr_factor=factor)
        state = MinimaxState(sigma=np.array([0.2, 0.4]), y=np.array([0.5, 2.0]), z=0.1)
        costs, hard_pruned = np.ones(flat.size), np.zeros(flat.size, bool)
        budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
        trail = []
        for _ in range(4):
            pruned = solver.step(state, costs, hard_pruned, budget, steps=steps)
            trail.append((state.sigma.tolist(), state.y.tolist(), state.z, pruned is None))
        results.append(trail)
    assert results[0] == results[1]
    assert results[0][0][0] != results[0][1][0]  # s moved


def gradient_mask(solver, state, hard_pruned, params, held):
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    solver.penalty(state, hard_pruned, held=held)(grads)
    return np.concatenate([grads[name].ravel() != 0 for name in params])


@pytest.mark.parametrize("ranked", ["by |w|", "in a buffer of their own"])
def test_a_held_penalty_acts_on_the_last_sets_threshold_or_their_synapses_after_the_weights_moved(ranked):
    graph, layers, flat, solver, params = solver_on_digits_mlp()
    if ranked != "by |w|":  # the keys are not the |w|' bits: the set is held as the synapses selected
        output = list(flat.layer_slices())[-1][1]
        solver.rank = lambda m, out: protect_strongest(m, output, graph[layers[-1]].weight.shape[0], 1, out)
    state = MinimaxState(sigma=np.array([0.5]), y=np.array([0.5]), z=0.1)
    hard_pruned = np.zeros(flat.size, bool)
    solver.step(state, np.ones(flat.size), hard_pruned, Budget(0.1, float(flat.size), 0.0))
    selected = solver._last
    rng = np.random.default_rng(0)
    for name in layers:  # an optimizer step that moves every weight
        graph[name].weight += 0.05 * rng.standard_normal(graph[name].weight.shape).astype(np.float32)
    bound, following, size = selected.sets[0]
    if ranked == "by |w|":  # the weights whose |w| is below the bound now, strictly
        keys, following = key_bits(flat.native_magnitudes()), 0
    else:
        keys = selected.keys
    expected = np.empty(flat.size, bool)
    least_mask(keys, 0, flat.size, (bound, following, size), expected)
    held = gradient_mask(solver, state, hard_pruned, params, held=True)
    assert np.array_equal(held, expected)
    assert solver._last is selected
    fresh = gradient_mask(solver, state, hard_pruned, params, held=False)  # selected again on the weights now
    assert not np.array_equal(fresh, held)
    if ranked != "by |w|":
        assert fresh.sum() == held.sum()  # the same number of synapses, other ones


def test_a_penalty_that_no_step_follows_gives_adam_no_buffer_to_fill():
    _, _, flat, solver, _ = solver_on_digits_mlp()
    state, hard_pruned = MinimaxState(sigma=np.array([0.5]), y=np.array([0.5]), z=0.1), np.zeros(flat.size, bool)
    for _ in range(2):  # both of the solver's |w| buffers made
        solver.step(state, np.ones(flat.size), hard_pruned, Budget(0.1, float(flat.size), 0.0))
    assert solver.penalty(state, hard_pruned, held=True, then_step=False).magnitudes == {}
    assert solver.penalty(state, hard_pruned, held=True, then_step=True).magnitudes != {}


def held_search(fused: bool, per_layer: bool, protect: bool, every: int = 3, steps: int = 10):
    """A search with an Adam step between penalties and a solver step every ``every`` of them;
    Adam adds the penalty in its pass (``fused``) or as a call of its own."""
    graph, layers, flat, solver, params = solver_on_digits_mlp(per_layer, protect)
    optimizer = Adam(params, lr=1e-2)
    optimizer.fuse_from = 0 if fused else 10**9
    costs, hard_pruned = np.ones(flat.size), np.zeros(flat.size, bool)
    budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
    state = solver.start(hard_pruned)
    state.y[:] = 0.5
    rng = np.random.default_rng(1)
    results = []
    for step in range(steps):
        penalty = solver.penalty(state, hard_pruned, held=step % every != 0, then_step=(step + 1) % every == 0)
        grads = {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in params.items()}
        optimizer.step(grads, penalty if fused else penalty.add)
        if (step + 1) % every == 0:
            solver.step(state, costs, hard_pruned, budget, steps=every)
        results.append((flat.weights(), state.sigma.copy(), state.y.copy(), state.z))
    return results


@pytest.mark.parametrize("per_layer, protect", [(False, False), (True, False), (False, True)])
def test_a_held_penalty_fused_in_adams_pass_gives_the_search_of_a_separate_add(per_layer, protect):
    fused, separate = (held_search(f, per_layer, protect) for f in (True, False))
    for a, b in zip(fused, separate, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
        assert a[3] == b[3]
    assert not np.array_equal(fused[2][1], fused[-1][1])  # s moved


@pytest.mark.parametrize("every, eval_every, expected", [
    (4, 5, [(4, 4), (5, 1), (8, 3), (10, 2)]),  # a search step at every checkpoint as well
    (1, 5, [(step, 1) for step in range(1, 11)]),
])
def test_the_search_steps_come_every_search_every_steps_and_at_each_checkpoint(tmp_path, every, eval_every, expected):
    run = start(tiny_mlp(), tmp_path, search_every=every, eval_every=eval_every, budgets=(0.3,),
                search_fraction=0.5)
    calls = []

    def step(state, costs, hard_pruned, budget, lr=0.0, steps=1):
        calls.append((run.state.phase_step, steps))
        return None  # never met: the search runs to its bound (10 steps), then prunes by magnitude

    run.solver.step = step
    run.run()
    assert calls == expected


@pytest.mark.parametrize("options, message", [
    (["--search-every", "0"], "--search-every must be at least 1"),
    (["--method", "minimax-paper", "--search-every", "2"], "does not apply to minimax-paper"),
    (["--method", "gradual", "--search-every", "2"], "does not apply to gradual"),
])
def test_a_search_every_that_cannot_apply_is_refused_in_one_line(tmp_path, capsys, monkeypatch, options, message):
    model, data = cli_files(tmp_path)
    no_training(monkeypatch)
    code, out, err = run_cli(["compress", model, "--data", data, *options, "--out", tmp_path / "out"],
                             capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_run_interrupted_while_the_penalty_held_its_sets_resumes_to_the_uninterrupted_result(tmp_path,
                                                                                               monkeypatch):
    # the duals grow fast enough that the penalty acts while it holds a search step's sets; the
    # checkpoint after step 10 of the second budget is not a multiple of 4: its search step is the rule's
    graph = tiny_mlp()
    changes = dict(method="minimax", search_every=4, eval_every=5, search_fraction=1.0, dual_lr_y=1000.0, lr_s=0.3,
                   budgets=reachable_budgets(graph, "params"), train=TrainConfig(lr=0.1, batch_size=32, progress=False))
    whole = start(graph, tmp_path / "whole", **changes)
    seen, original = [], whole.solver.penalty

    def penalty(state, hard_pruned, held=False, then_step=True):
        seen.append((whole.state.budget_index, whole.state.phase_step, held, float(state.y[0])))
        return original(state, hard_pruned, held, then_step)

    whole.solver.penalty = penalty
    expected = whole.run()
    # the second budget's training step 10 penalised by the sets of its search step 8 (held), step 11
    # by those of the search step that the checkpoint after step 10 adds
    assert [(held, y > 0) for budget, step, held, y in seen if budget == 1 and step in (9, 10)] == [
        (True, True), (False, True)]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 20 + 12)
        with pytest.raises(Interrupt):
            start(graph, tmp_path / "cut", **changes).run()
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    run = start(graph, tmp_path / "cut", **changes)
    run.restore()
    assert run.run() == expected
    assert (tmp_path / "cut" / REPORT).read_bytes() == (tmp_path / "whole" / REPORT).read_bytes()


@pytest.mark.parametrize("given, expected", [(None, 1), (4, 4)])
def test_the_report_names_the_search_steps_interval_the_run_used(tmp_path, given, expected):
    report = compress(tiny_mlp(), tmp_path, search_every=given)  # (the report checked against its schema)
    assert report["search_every"] == expected
    assert compress(tiny_mlp(), tmp_path / "gradual", method="gradual")["search_every"] == 1
