"""The minimax solver's search steps: what it reuses from one step to the next changes no result."""

import numpy as np
import pytest

from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.pruning import FlatWeights
from onnx_snn_compress.samples import sample_model_path
from onnx_snn_compress.solvers import Budget, Minimax, MinimaxState, PaperMinimax


def search(reuse: bool, seed: int = 0, steps: int = 12):
    """A search on digits_mlp's two layers (per-layer s) with random 'optimizer steps', and on
    every third step a change of the weights between the solver's step and the next penalty;
    returns every penalty gradient and step result."""
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    solver = Minimax(flat, [part for _, part in flat.layer_slices()], lr_s=0.1, lr_y=1.0, lr_z=0.1)
    costs = np.ones(flat.size)
    budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
    hard_pruned = np.zeros(flat.size, dtype=bool)
    state = MinimaxState(sigma=np.array([0.2, 0.4]), y=np.array([0.5, 2.0]), z=0.1)
    rng = np.random.default_rng(seed)
    results = []
    for step in range(steps):
        if not reuse:
            solver._last = None
        grads = {f"{name}.weight": np.zeros_like(graph[name].weight) for name in layers}
        solver.penalty(state, hard_pruned)(grads)
        results.append(flat.flatten({name: grads[f"{name}.weight"] for name in layers}))
        perturb(graph, layers, rng)  # the optimizer step
        if step == 7:
            hard_pruned = hard_pruned.copy()
            hard_pruned[:50] = True
        pruned = solver.step(state, costs, hard_pruned, budget)
        results.append(None if pruned is None else pruned.copy())
        results.append((state.sigma.copy(), state.y.copy(), state.z))
        if step % 3 == 0:  # something else moves the weights before the next penalty
            perturb(graph, layers, rng)
    return results


def perturb(graph, layers, rng):
    for name in layers:
        graph[name].weight += 0.01 * rng.standard_normal(graph[name].weight.shape).astype(np.float32)


def test_the_penalty_reusing_the_last_steps_sets_gives_the_same_search():
    reused, computed = search(reuse=True), search(reuse=False)
    assert any(np.any(r) for r in computed[0::3])  # the penalty did add something
    for a, b in zip(reused, computed):
        if isinstance(a, tuple):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
        elif a is None or b is None:
            assert a is None and b is None
        else:
            assert np.array_equal(a, b)



def first_steps(target: float, solver_class=Minimax):
    """Two search steps of one global s on digits_mlp with about half of the synapses pruned for
    good (zero) and the weights held still; returns the state, the distance from the start to
    ``target`` and the start's pruned fraction (s's floor), all fractions of the synapses."""
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    hard_pruned = np.random.default_rng(0).random(flat.size) < 0.5
    flat.zero(hard_pruned)
    solver = solver_class(flat, [slice(0, flat.size)], lr_s=0.1, lr_y=1.0, lr_z=0.1)
    budget = Budget(target=target, reference=float(flat.size), fixed=0.0)
    state = solver.start(hard_pruned)
    for _ in range(2):
        solver.step(state, np.ones(flat.size), hard_pruned, budget)
    floor = float(hard_pruned.mean())
    return state, 1.0 - floor - target, floor


def test_the_search_covers_the_same_share_of_the_distance_to_any_budget_in_the_same_steps():
    for target in (0.45, 0.05):  # a budget near the start and one far from it
        state, distance, floor = first_steps(target)
        # s moves only once z > 0 (the second step), the least-s set stays the start's pruned set,
        # so each step's excess is the whole distance: z ascends by lr_z x (excess / distance) = lr_z
        assert state.z == pytest.approx(0.2)
        # and s moved once, by lr_s x z x distance (params: every synapse costs alike)
        assert state.sigma[0] - floor == pytest.approx(0.1 * 0.1 * distance, rel=1e-6)
    state, distance, _ = first_steps(0.45, PaperMinimax)  # absolute steps: z crawls near a budget
    assert state.z == pytest.approx(0.2 * distance)


def windowed(selection_every: int, z=0.1):
    """A solver on digits_mlp's two layers (per-layer s) that selects at least every
    ``selection_every`` steps, its state after one selecting step, and what its steps need."""
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    solver = Minimax(flat, [part for _, part in flat.layer_slices()], lr_s=0.1, lr_y=1.0, lr_z=0.1,
                     selection_every=selection_every)
    costs, hard_pruned = np.ones(flat.size), np.zeros(flat.size, dtype=bool)
    budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
    state = MinimaxState(sigma=np.array([0.2, 0.4]), y=np.array([0.5, 2.0]), z=z)
    solver.step(state, costs, hard_pruned, budget, fresh=True)
    return graph, layers, flat, solver, state, (costs, hard_pruned, budget)


def penalty_gradient(solver, state, graph, layers, flat, hard_pruned):
    grads = {f"{name}.weight": np.zeros_like(graph[name].weight) for name in layers}
    solver.penalty(state, hard_pruned)(grads)
    return flat.flatten({name: grads[f"{name}.weight"] for name in layers})


def test_while_s_stays_within_the_margin_the_penalty_keeps_its_sets_for_k_steps():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(4)
    solver.lr_s = 0.0  # s stays: the sets are kept though the weights move
    kept = solver._last
    rng = np.random.default_rng(0)
    for _ in range(3):
        perturb(graph, layers, rng)
        assert solver.step(state, costs, hard_pruned, budget) is None
        assert solver._last is kept
    solver.step(state, costs, hard_pruned, budget)  # the fourth step selects
    assert solver._last is not kept


def test_the_s_and_dual_steps_go_on_between_selections():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(1000)
    start = (state.sigma.copy(), state.y.copy(), state.z)
    solver.step(state, costs, hard_pruned, budget)
    assert not np.array_equal(state.sigma, start[0]) and state.z != start[2]


def test_s_moving_past_the_margin_selects_the_sets_anew_at_once():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(1000)
    state.z = 2.0  # a resource dual that moves s by more than the margin in one step
    kept, sigma = solver._last, state.sigma.copy()
    solver.step(state, costs, hard_pruned, budget)
    assert np.any(np.abs(state.sigma - sigma) > 0.002) and solver._last is not kept
    assert np.array_equal(solver._last.sigma, state.sigma)


def test_a_fresh_step_selects_whatever_its_age():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(1000)
    solver.lr_s = 0.0
    kept = solver._last
    solver.step(state, costs, hard_pruned, budget, fresh=True)
    assert solver._last is not kept


def test_new_hard_pruned_weights_are_selected_on_at_once():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(1000)
    hard_pruned = hard_pruned.copy()
    hard_pruned[:10] = True
    penalty_gradient(solver, state, graph, layers, flat, hard_pruned)
    assert solver._last.hard_pruned is hard_pruned


def test_a_windowed_search_meets_its_budget_and_returns_a_pruned_vector_that_does():
    graph, layers, flat, solver, state, (costs, hard_pruned, budget) = windowed(8, z=1.0)
    for _ in range(200):
        penalty_gradient(solver, state, graph, layers, flat, hard_pruned)
        pruned = solver.step(state, costs, hard_pruned, budget)
        if pruned is not None:
            break
    assert pruned is not None and (~pruned).sum() <= budget.target * flat.size
