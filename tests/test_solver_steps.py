"""The minimax solver's search steps: what it reuses from one step to the next changes no result."""

import numpy as np
import pytest

from onnx_snn_compress import solvers
from onnx_snn_compress.data import load_for_model
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.least_sets import LeastSets
from onnx_snn_compress.optim import Adam
from onnx_snn_compress.pruning import FlatWeights, ProtectStrongest, protect_strongest
from onnx_snn_compress.samples import digits_path, sample_model_path
from onnx_snn_compress.kernels.search_step import array_sum, clip
from onnx_snn_compress.solvers import Budget, Minimax, MinimaxState, PaperMinimax, unranked
from onnx_snn_compress.train import TrainConfig, Trainer


def search(reuse: bool, seed: int = 0, steps: int = 12, fresh_windows: bool = False, protect: str = ""):
    """A search on digits_mlp's two layers (per-layer s) with random 'optimizer steps', and on
    every third step a change of the weights between the solver's step and the next penalty;
    returns every penalty gradient and step result. ``fresh_windows``: the least-s sets are
    located from scratch every step (no window kept from the last). ``protect``: rank each
    output neuron's strongest synapse last (``pruning.protect_strongest``), into the solver's
    rank buffers ("buffers"), into a new array each selection ("copies") or over the |w| in
    their own buffer ("in place": ``pruning.ProtectStrongest``)."""
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    parts = [part for _, part in flat.layer_slices()]
    rows = graph[layers[-1]].weight.shape[0]
    rank = {"": lambda m, out: m, "buffers": lambda m, out: protect_strongest(m, parts[-1], rows, 1, out),
            "copies": lambda m, out: protect_strongest(m, parts[-1], rows, 1),
            "in place": ProtectStrongest(parts[-1], rows, 1)}[protect]
    solver = Minimax(flat, parts, lr_s=0.1, lr_y=1.0, lr_z=0.1, rank=rank)
    costs = np.ones(flat.size)
    budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
    hard_pruned = np.zeros(flat.size, dtype=bool)
    state = MinimaxState(sigma=np.array([0.2, 0.4]), y=np.array([0.5, 2.0]), z=0.1)
    rng = np.random.default_rng(seed)
    results = []
    for step in range(steps):
        if not reuse:
            solver._last = None
        if fresh_windows:
            solver._least = LeastSets(solver.groups, flat.size)
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


def assert_same_search(first, second):
    for a, b in zip(first, second):
        if isinstance(a, tuple):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
        elif a is None or b is None:
            assert a is None and b is None
        else:
            assert np.array_equal(a, b)


def test_the_penalty_reusing_the_last_steps_sets_gives_the_same_search():
    reused, computed = search(reuse=True), search(reuse=False)
    assert any(np.any(r) for r in computed[0::3])  # the penalty did add something
    assert_same_search(reused, computed)


def test_the_windows_kept_from_step_to_step_change_no_result():
    assert_same_search(search(reuse=True), search(reuse=True, fresh_windows=True))


def test_ranks_written_into_the_solvers_two_buffers_give_the_searches_of_fresh_copies():
    # a selection's keys view a buffer that the next selection but one writes: the penalty
    # reads those of the last step's, or of its own when the weights moved in between
    assert_same_search(search(reuse=True, protect="buffers"), search(reuse=True, protect="copies"))


def test_ranks_written_over_the_magnitudes_in_place_give_the_searches_of_copies(monkeypatch):
    monkeypatch.setattr(solvers, "RANK_IN_PLACE_FROM", 0)  # in place at digits_mlp's size too
    # the squares, the penalty's check and the pruned vector of a met budget take the protected
    # synapses' own |w|, which the ranks (+inf) replaced; reselected every step or reused
    for reuse in (True, False):
        assert_same_search(search(reuse=reuse, protect="in place", steps=16),
                           search(reuse=reuse, protect="copies", steps=16))


def test_a_met_budget_ranks_the_protected_synapses_by_their_own_magnitudes(monkeypatch):
    monkeypatch.setattr(solvers, "RANK_IN_PLACE_FROM", 0)
    # one global s: a met budget's pruned vector ranks the |w| again (magnitude_to_budget); up to
    # s = 1, where the set holds every synapse but the protected ones
    for sigma in (0.4, 0.9, 1.0):
        found = []
        for in_place in (True, False):
            graph = load_model(sample_model_path("digits_mlp"))
            flat = FlatWeights(graph, [node.name for node in graph.prunable()])
            part, rows = list(flat.layer_slices())[-1][1], graph.prunable()[-1].weight.shape[0]
            rank = ProtectStrongest(part, rows, 2) if in_place \
                else (lambda m, out=None: protect_strongest(m, part, rows, 2))
            solver = Minimax(flat, [slice(0, flat.size)], lr_s=0.1, lr_y=1.0, lr_z=0.1, rank=rank)
            state = MinimaxState(sigma=np.array([sigma]), y=np.array([0.5]), z=0.1)
            budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
            hard_pruned = np.zeros(flat.size, dtype=bool)
            pruned = solver.step(state, np.ones(flat.size), hard_pruned, budget)
            found.append((pruned, state.sigma.copy(), state.y.copy(), state.z))
        assert found[0][0] is not None or sigma == 0.4  # met from s = 0.9
        assert_same_search(*([pruned, (sigma_, y, z)] for pruned, sigma_, y, z in found))


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


def test_the_solver_ranks_the_magnitudes_of_the_layers_weights_end_to_end():
    graph = load_model(sample_model_path("digits_mlp"))
    flat = FlatWeights(graph, [node.name for node in graph.prunable()])
    out = np.full(flat.size, np.nan, np.float32)
    magnitudes = flat.native_magnitudes(out)
    expected = np.abs(np.concatenate([graph[name].weight.ravel() for name in flat.layers]))
    assert magnitudes is out and np.array_equal(magnitudes, expected) and magnitudes.dtype == np.float32


def test_the_s_step_weighs_the_next_weight_against_the_weights_still_in_play():
    # half of the synapses pruned for good (zero): the y term of the s step is the next weight's
    # w^2 over the mean w^2 of the other half, not of the whole group (which would double it)
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    hard_pruned = np.random.default_rng(0).random(flat.size) < 0.5
    flat.zero(hard_pruned)
    weights = flat.weights().astype(np.float64)
    floor = float(hard_pruned.mean())
    start = floor + 0.1
    state = MinimaxState(sigma=np.array([start]), y=np.array([1.0]), z=0.0)
    budget = Budget(target=0.05, reference=float(flat.size), fixed=0.0)
    Minimax(flat, [slice(0, flat.size)], lr_s=0.1, lr_y=1.0, lr_z=0.1).step(state, np.ones(flat.size), hard_pruned,
                                                                            budget)
    following = np.sort(np.abs(weights))[int(np.ceil(start * flat.size))] ** 2
    in_play = np.sum(weights ** 2) / np.count_nonzero(~hard_pruned)
    distance = 1.0 - floor - budget.target  # of R0 = the synapses, each costing 1: the span is d
    assert state.sigma[0] == pytest.approx(start - 0.1 * distance * following / in_play, rel=1e-6)


def test_the_s_and_dual_clips_are_numpys_bit_for_bit():
    values = [-0.0, 0.0, 0.5, -1.5, 2.0, 1e300 * 1e10, -1e300 * 1e10, float("nan")]
    for value in values:
        for low, high in ((0.0, 1.0), (-0.0, 1e8), (0.25, -0.0), (0.0, 0.0)):
            expected = float(np.clip(value, low, high))
            assert np.array(clip(value, low, high)).tobytes() == np.array(expected).tobytes()


def trained_search(fused: bool, per_layer: bool, steps: int = 6, between=None, after=None, reuse: bool = True,
                   protect: bool = False, fuse_from: int = 0):
    """A search on digits_mlp inside real training steps (Adam): penalty, training step, solver step;
    ``fused=False`` hands Adam the penalty as a plain function (the separate add and |w| copy).
    ``between(trainer, step)`` may act between the training step and the solver's, ``after(trainer,
    step)`` between the solver's step and the next penalty; ``reuse=False``: every penalty selects
    anew; ``protect``: each output neuron's strongest synapse ranked last, in place
    (``pruning.ProtectStrongest``). Returns every weight, s, y and z, the number of |w| copies the
    solver made and of the penalty's read-only |w| checks. (Adam fuses from any size here:
    digits_mlp is below its ``fuse_from``.)"""
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    data = load_for_model(digits_path(), graph.input.shape, 10, split="train", time_steps=4)
    trainer = Trainer(graph, data, None, TrainConfig(batch_size=32, lr=1e-2, progress=False))
    trainer.optimizer.fuse_from = fuse_from
    flat = FlatWeights(graph, layers)
    copies = []
    native = flat.native_magnitudes
    flat.native_magnitudes = lambda out=None: copies.append(1) or native(out)
    checks = []
    same = flat.same_magnitudes
    flat.same_magnitudes = lambda values: checks.append(1) or same(values)
    groups = [part for _, part in flat.layer_slices()] if per_layer else [slice(0, flat.size)]
    output = list(flat.layer_slices())[-1][1]
    rank = ProtectStrongest(output, graph[layers[-1]].weight.shape[0], 1) if protect else unranked
    solver = Minimax(flat, groups, lr_s=0.1, lr_y=1.0, lr_z=0.1, rank=rank)
    costs, hard_pruned = np.ones(flat.size), np.zeros(flat.size, dtype=bool)
    budget = Budget(target=0.3, reference=float(flat.size), fixed=0.0)
    state = solver.start(hard_pruned)
    state.y[:] = 0.5  # penalised from the first step
    results = []
    for step in range(steps):
        if not reuse:
            solver._last = None
        penalty = solver.penalty(state, hard_pruned)
        trainer.train_step(penalty if fused else (lambda grads, penalty=penalty: penalty(grads)))
        if between is not None:
            between(trainer, step)
        solver.step(state, costs, hard_pruned, budget, trainer.optimizer.lr)
        assert np.array_equal(solver._last.magnitudes(), native(None))  # what the step selected on is |w| now
        results.append((flat.weights(), state.sigma.copy(), state.y.copy(), state.z))
        if after is not None:
            after(trainer, step)
    return results, len(copies), len(checks)


def assert_same_trained_search(first, second):
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
        assert a[3] == b[3]


def freeze(trainer, step):  # a mask frozen on even steps: it zeroes a column of fc2
    if step % 2 == 0:
        keep = np.ones(trainer.params["fc2.weight"].shape, bool)
        keep[:, step] = False
        trainer.optimizer.set_mask("fc2.weight", keep)


@pytest.mark.parametrize("per_layer, protect", [(False, False), (True, False), (False, True)])
def test_adam_fusing_the_penalty_and_the_magnitudes_gives_the_search_of_the_separate_passes(per_layer, protect,
                                                                                            monkeypatch):
    monkeypatch.setattr(solvers, "RANK_IN_PLACE_FROM", 0)
    # fused, Adam reads the set's membership from |w| (keys read only in the layer of protected synapses)
    (fused, fused_copies, _), (separate, separate_copies, _) = (trained_search(f, per_layer, protect=protect)
                                                                for f in (True, False))
    assert_same_trained_search(fused, separate)
    assert fused_copies < separate_copies  # the steps read what Adam wrote


def test_adam_reads_the_keys_of_the_protected_synapses_layer_when_the_set_holds_every_other_synapse(monkeypatch):
    monkeypatch.setattr(solvers, "RANK_IN_PLACE_FROM", 0)
    # at s = 1 the set is every finite rank: a protected synapse's |w| is below its bound, its key (+inf) is not
    graph = load_model(sample_model_path("digits_mlp"))
    layers = [node.name for node in graph.prunable()]
    flat = FlatWeights(graph, layers)
    rank = ProtectStrongest(list(flat.layer_slices())[-1][1], graph[layers[-1]].weight.shape[0], 1)
    solver = Minimax(flat, [slice(0, flat.size)], lr_s=0.1, lr_y=1.0, lr_z=0.1, rank=rank)
    state, hard_pruned = MinimaxState(sigma=np.array([1.0]), y=np.array([0.5]), z=0.0), np.zeros(flat.size, bool)
    penalty = solver.penalty(state, hard_pruned)
    assert penalty.least["fc1.weight"][0] is None and penalty.least["fc2.weight"][0] is not None
    saved, steps = {name: graph[name].weight.copy() for name in layers}, []
    for fused in (True, False):
        for name in layers:
            graph[name].weight[...] = saved[name]
        params = {f"{name}.weight": graph[name].weight for name in layers}
        optimizer = Adam(params, lr=1e-2)
        optimizer.fuse_from = 0
        grads = {key: np.ones_like(value) for key, value in params.items()}
        optimizer.step(grads, penalty if fused else penalty.add)
        steps.append({key: value.copy() for key, value in params.items()})
    assert all(steps[0][key].tobytes() == steps[1][key].tobytes() for key in steps[0])


def test_the_solver_copies_the_magnitudes_after_the_optimizer_changed_the_weights_again():
    def another_step(trainer, step):
        if step % 2 == 0:
            trainer.train_step()

    _, undisturbed, _ = trained_search(True, False)
    for between in (freeze, another_step):  # (each step asserts that it selected on |w| now)
        _, copies, _ = trained_search(True, False, between=between)
        assert copies == undisturbed + 2  # steps 2 and 4 copied (the first two copy anyway: buffers made)


@pytest.mark.parametrize("fused", [True, False])
def test_the_penalty_trusts_the_optimizers_counter_and_checks_the_weights_once_it_moved(fused):
    def reload(trainer, step):  # a state load on even steps: it leaves the weights as they are
        if step % 2 == 0:
            trainer.optimizer.load_state_dict(trainer.optimizer.state_dict())

    fresh, _, _ = trained_search(fused, False, reuse=False)
    reused, _, checks = trained_search(fused, False)
    assert_same_trained_search(reused, fresh)
    # the counter dates the |w| once an optimizer step took a penalty (optim.Penalty.stepped: from the
    # first step on, with or without a buffer to fill); with a plain function each penalty checks
    assert checks == (0 if fused else 5)
    _, undisturbed, _ = trained_search(fused, False)
    for after, reselected in ((freeze, 3), (reload, 0)):  # between the solver's step and the next penalty
        results, copies, checks = trained_search(fused, False, after=after)
        assert_same_trained_search(results, trained_search(fused, False, after=after, reuse=False)[0])
        assert checks == (3 if fused else 5)  # after steps 0, 2 and 4 (not after the last)
        assert copies == undisturbed + reselected  # a mask that zeroed weights: the penalty selected anew


def test_the_sums_over_a_steps_groups_are_numpys_bit_for_bit():
    rng = np.random.default_rng(2)
    for size in [*range(0, 40), 127, 128, 129, 136, 300, 1001]:  # numpy's blocks of 8, of 128, and its halves
        for scale in (1.0, 1e-12, 1e16):
            values = rng.standard_normal((size, 4)) * scale  # a column: as a strided view of totals
            values[:, 2][rng.random(size) < 0.2] = -0.0
            column = values[:, 2]
            assert np.array(array_sum(column)).tobytes() == np.sum(column).tobytes()


@pytest.mark.parametrize("protect", ["", "buffers", "in place"])
def test_the_one_call_step_gives_the_search_of_the_windows_python(monkeypatch, protect):
    """A step is one jitted call (kernels/search_step.py) with windows of its own
    (``least_sets.KERNEL_WINDOWS``): every penalty, s, y, z and pruned vector is that of the windows'
    Python, bit for bit (also when every step locates its sets from scratch)."""
    from onnx_snn_compress import least_sets

    monkeypatch.setattr(solvers, "RANK_IN_PLACE_FROM", 0)  # "in place": over the |w| at digits_mlp's size too
    one_call = search(reuse=True, steps=16, protect=protect)
    fresh = search(reuse=True, steps=16, protect=protect, fresh_windows=True)
    monkeypatch.setattr(least_sets, "KERNEL_WINDOWS", False)
    by_windows = search(reuse=True, steps=16, protect=protect)
    assert_same_bits(one_call, by_windows)
    assert_same_bits(fresh, by_windows)


def assert_same_bits(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        if isinstance(a, tuple):
            assert all(np.array(x).tobytes() == np.array(y).tobytes() for x, y in zip(a, b))
        elif a is None or b is None:
            assert a is None and b is None
        else:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_a_penalty_that_adam_adds_outside_its_pass_dates_the_weights_by_its_counter_too():
    # below fuse_from Adam calls the penalty's add; its step still names the optimizer whose counter
    # dates the |w| the solver's step reads (optim.Penalty.stepped), so the next penalty checks none
    fresh, _, _ = trained_search(True, False, reuse=False, fuse_from=1 << 30)
    reused, _, checks = trained_search(True, False, fuse_from=1 << 30)
    assert_same_trained_search(reused, fresh)
    assert_same_trained_search(reused, trained_search(True, False)[0])  # as Adam's fused pass
    assert checks == 0
    results, _, checks = trained_search(True, False, after=freeze, fuse_from=1 << 30)
    assert_same_trained_search(results, trained_search(True, False, after=freeze, reuse=False, fuse_from=1 << 30)[0])
    assert checks == 3  # the mask changes after steps 0, 2 and 4 moved the counter
