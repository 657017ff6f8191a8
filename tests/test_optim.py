"""Optimizers and schedules: torch's update formulas, hard masks, bit-exact resume."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from onnx_snn_compress.errors import SNNError
from onnx_snn_compress.kernels.selection import add_scaled_least, key_bits
from onnx_snn_compress.optim import SGD, Adam, CosineSchedule, Penalty, StepSchedule


# -- independent references: torch's documented algorithms, one float64 scalar at a time ------
def reference_adam(weights, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    weights = [float(w) for w in weights]
    m = [0.0] * len(weights)
    v = [0.0] * len(weights)
    for t, grad in enumerate(grads, start=1):
        for i, g in enumerate(grad):
            g = float(g)
            if decoupled:
                weights[i] *= 1 - lr * weight_decay
            else:
                g += weight_decay * weights[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**t)
            v_hat = v[i] / (1 - beta2**t)
            weights[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return np.array(weights), np.array(m), np.array(v)


def reference_sgd(weights, grads, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    weights = [float(w) for w in weights]
    buffers = [None] * len(weights)
    for grad in grads:
        for i, g in enumerate(grad):
            g = float(g) + weight_decay * weights[i]
            if momentum:
                buffers[i] = g if buffers[i] is None else momentum * buffers[i] + g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            weights[i] -= lr * g
    return np.array(weights), np.array(buffers, dtype=float) if momentum else None


def random_problem(steps=5, size=12, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(size).astype(np.float32)
    grads = [(rng.standard_normal(size) * 0.3).astype(np.float32) for _ in range(steps)]
    return weights, grads


# -- Adam ---------------------------------------------------------------------------------
def test_first_adam_step_moves_each_weight_by_lr_against_its_gradient_sign():
    # m_hat = g and v_hat = g^2 after bias correction, so the step is lr * g / (|g| + eps).
    weights = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    Adam({"w": weights}, lr=0.01).step({"w": np.array([3.0, -0.001, 1e3], dtype=np.float32)})
    np.testing.assert_allclose(weights, [0.99, -1.99, 0.49], rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decoupled": True},
        {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3},
    ],
    ids=["plain", "l2", "adamw", "betas"],
)
def test_adam_follows_the_torch_formulas(options):
    weights, grads = random_problem()
    lr = 0.05
    expected, expected_m, expected_v = reference_adam(weights, grads, lr, **options)
    adam = Adam(
        {"w": weights},
        lr=lr,
        betas=(options.get("beta1", 0.9), options.get("beta2", 0.999)),
        eps=options.get("eps", 1e-8),
        weight_decay=options.get("weight_decay", 0.0),
        decoupled_weight_decay=options.get("decoupled", False),
    )
    for grad in grads:
        adam.step({"w": grad})
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(adam.moments["exp_avg"]["w"], expected_m, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(adam.moments["exp_avg_sq"]["w"], expected_v, rtol=1e-5, atol=1e-10)


def test_adamw_decays_weights_multiplicatively_and_adam_l2_through_the_gradient():
    weights_w = np.array([2.0, -4.0], dtype=np.float32)
    weights_l2 = weights_w.copy()
    zero = {"w": np.zeros(2, np.float32)}
    Adam({"w": weights_w}, lr=0.1, weight_decay=0.5, decoupled_weight_decay=True).step(zero)
    Adam({"w": weights_l2}, lr=0.1, weight_decay=0.5).step(zero)
    np.testing.assert_allclose(weights_w, [2.0 * 0.95, -4.0 * 0.95], rtol=1e-7)  # w * (1 - lr * wd)
    np.testing.assert_allclose(weights_l2, [1.9, -3.9], rtol=1e-6)  # g = wd * w: a plain first Adam step


# -- SGD ----------------------------------------------------------------------------------
def test_sgd_momentum_on_a_constant_gradient_by_hand():
    # b = 1, 1.9, 2.71; w = 1 - 0.1 * b cumulated
    weights = np.array([1.0], dtype=np.float32)
    sgd = SGD({"w": weights}, lr=0.1, momentum=0.9)
    seen = []
    for _ in range(3):
        sgd.step({"w": np.ones(1, np.float32)})
        seen.append(float(weights[0]))
    np.testing.assert_allclose(seen, [0.9, 0.71, 0.439], rtol=1e-6)


def test_sgd_nesterov_on_a_constant_gradient_by_hand():
    # step g + 0.9 * b with b = 1, 1.9: 1.9 then 2.71
    weights = np.array([1.0], dtype=np.float32)
    sgd = SGD({"w": weights}, lr=0.1, momentum=0.9, nesterov=True)
    sgd.step({"w": np.ones(1, np.float32)})
    assert weights[0] == pytest.approx(0.81, rel=1e-6)
    sgd.step({"w": np.ones(1, np.float32)})
    assert weights[0] == pytest.approx(0.539, rel=1e-6)


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1}],
    ids=["plain", "momentum", "momentum-decay", "nesterov-decay"],
)
def test_sgd_follows_the_torch_formulas(options):
    weights, grads = random_problem(seed=1)
    expected, expected_buffer = reference_sgd(weights, grads, 0.1, **options)
    sgd = SGD({"w": weights}, lr=0.1, **options)
    for grad in grads:
        sgd.step({"w": grad})
    np.testing.assert_allclose(weights, expected, rtol=2e-6, atol=2e-7)
    if options.get("momentum"):
        np.testing.assert_allclose(sgd.moments["momentum_buffer"]["w"], expected_buffer, rtol=1e-5, atol=1e-7)


def test_gradients_of_another_dtype_are_cast_and_not_modified():
    weights = np.ones(3, np.float32)
    grad = np.array([1.0, np.nan, 2.0])
    SGD({"w": weights}, lr=0.5, weight_decay=0.1, masks={"w": np.array([True, False, True])}).step({"w": grad})
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [0.45, 0.0, -0.05], rtol=1e-6)
    assert np.isnan(grad[1]) and grad[0] == 1.0  # the caller's gradient is left alone


# -- masks --------------------------------------------------------------------------------
OPTIMIZERS = {
    "adam-l2": lambda params, masks=None: Adam(params, lr=0.05, weight_decay=0.1, masks=masks),
    "adamw": lambda params, masks=None: Adam(params, lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, masks=masks),
    "sgd-momentum": lambda params, masks=None: SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1, masks=masks),
    "sgd-nesterov": lambda params, masks=None: SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, masks=masks),
}


def masked_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"fc.weight": rng.standard_normal((6, 5)).astype(np.float32), "fc.bias": rng.standard_normal(6).astype(np.float32)}
    keep = rng.random((6, 5)) < 0.5
    grads = [{name: rng.standard_normal(p.shape).astype(np.float32) for name, p in params.items()} for _ in range(6)]
    return params, keep, grads


def assert_pruned_entries_are_zero(optimizer, name, keep):
    weight = optimizer.params[name]
    assert np.all(weight[~keep] == 0.0) and not np.any(np.signbit(weight[~keep]))  # +0.0, not -0.0
    for moments in optimizer.moments.values():
        assert np.all(moments[name][~keep] == 0.0)


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_masked_weights_stay_exactly_zero_with_zero_moments(kind):
    params, keep, grads = masked_problem()
    optimizer = OPTIMIZERS[kind](params, masks={"fc.weight": keep})
    assert_pruned_entries_are_zero(optimizer, "fc.weight", keep)  # zeroed at construction
    for grad in grads:
        grad["fc.weight"][~keep] = np.where(np.arange((~keep).sum()) % 2, 5.0, np.inf)  # even inf is ignored
        with np.errstate(over="raise", invalid="raise"):  # pruned gradients never enter the arithmetic
            optimizer.step(grad)
        assert_pruned_entries_are_zero(optimizer, "fc.weight", keep)
    assert np.all(params["fc.weight"][keep] != 0.0)  # the kept weights did learn
    assert np.all(np.isfinite(params["fc.weight"]))


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_mask_does_not_change_the_updates_of_kept_weights(kind):
    params, keep, grads = masked_problem()
    reference = {name: p.copy() for name, p in params.items()}
    reference["fc.weight"][~keep] = 0.0
    masked = OPTIMIZERS[kind](params, masks={"fc.weight": keep})
    unmasked = OPTIMIZERS[kind](reference)
    for grad in grads:
        masked.step(grad)
        unmasked.step({name: np.where(keep, g, 0.0).astype(np.float32) if name == "fc.weight" else g for name, g in grad.items()})
    np.testing.assert_array_equal(params["fc.weight"], reference["fc.weight"])
    np.testing.assert_array_equal(params["fc.bias"], reference["fc.bias"])


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_setting_a_mask_zeroes_the_moments_of_newly_pruned_weights_and_regrown_ones_start_from_zero(kind):
    params, keep, grads = masked_problem()
    optimizer = OPTIMIZERS[kind](params)
    for grad in grads[:3]:
        optimizer.step(grad)
    before = {moment: arrays["fc.weight"].copy() for moment, arrays in optimizer.moments.items()}
    kept_weights = params["fc.weight"][keep].copy()
    assert all(np.all(b != 0.0) for b in before.values())

    optimizer.set_mask("fc.weight", keep)
    assert_pruned_entries_are_zero(optimizer, "fc.weight", keep)
    for moment, arrays in optimizer.moments.items():  # kept entries keep their history
        np.testing.assert_array_equal(arrays["fc.weight"][keep], before[moment][keep])
    np.testing.assert_array_equal(params["fc.weight"][keep], kept_weights)

    optimizer.step(grads[3])
    regrow = ~keep & (np.arange(keep.size).reshape(keep.shape) % 2 == 0)
    optimizer.set_mask("fc.weight", keep | regrow)
    np.testing.assert_array_equal(optimizer.mask("fc.weight"), keep | regrow)
    assert np.all(params["fc.weight"][regrow] == 0.0)
    for arrays in optimizer.moments.values():
        assert np.all(arrays["fc.weight"][regrow] == 0.0)
    optimizer.step(grads[4])
    assert np.all(params["fc.weight"][regrow] != 0.0)  # re-grown weights learn again
    assert_pruned_entries_are_zero(optimizer, "fc.weight", keep | regrow)

    optimizer.set_mask("fc.weight", None)
    assert optimizer.mask("fc.weight") is None


def test_set_mask_rejects_a_mask_of_the_wrong_shape_or_dtype():
    adam = Adam({"w": np.ones((2, 3), np.float32)})
    with pytest.raises(ValueError, match="bool of shape"):
        adam.set_mask("w", np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="bool of shape"):
        adam.set_mask("w", np.ones((2, 3), np.float32))


def test_parameters_must_be_float32_arrays():
    with pytest.raises(TypeError, match="float32"):
        Adam({"w": np.ones(3)})


# -- checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_resume_from_state_dict_continues_bit_identically(kind, tmp_path):
    steps, resume_at = 8, 3
    schedule = CosineSchedule(0.05, total=steps, eta_min=0.001)
    params, keep, _ = masked_problem()
    rng = np.random.default_rng(7)
    grads = [{name: rng.standard_normal(p.shape).astype(np.float32) for name, p in params.items()} for _ in range(steps)]

    def run(optimizer, start, stop):
        for t in range(start, stop):
            optimizer.lr = schedule(t)
            if t == 2:
                optimizer.set_mask("fc.weight", keep)
            optimizer.step(grads[t])

    straight = {name: p.copy() for name, p in params.items()}
    run(OPTIMIZERS[kind](straight), 0, steps)

    first = {name: p.copy() for name, p in params.items()}
    interrupted = OPTIMIZERS[kind](first)
    run(interrupted, 0, resume_at)
    np.savez(tmp_path / "checkpoint.npz", **interrupted.state_dict(), **{f"param:{n}": p for n, p in first.items()})

    saved = np.load(tmp_path / "checkpoint.npz", allow_pickle=False)
    resumed_params = {name: saved[f"param:{name}"].copy() for name in params}
    resumed = OPTIMIZERS[kind]({name: p for name, p in resumed_params.items()})
    resumed.lr = 123.0  # restored from the checkpoint, as torch restores param_groups
    resumed.load_state_dict(saved)
    assert resumed.lr == schedule(resume_at - 1)
    np.testing.assert_array_equal(resumed.mask("fc.weight"), keep)
    run(resumed, resume_at, steps)

    for name in params:
        assert resumed_params[name].tobytes() == straight[name].tobytes()


def test_state_dict_holds_only_plain_arrays():
    params, keep, grads = masked_problem()
    adam = Adam(params, masks={"fc.weight": keep})
    adam.step(grads[0])
    state = adam.state_dict()
    assert all(isinstance(value, np.ndarray) and value.dtype != object for value in state.values())
    assert int(state["step:fc.weight"]) == 1
    np.testing.assert_array_equal(state["mask:fc.weight"], keep)


def test_loading_another_optimizers_state_is_a_one_line_error():
    params, _, _ = masked_problem()
    state = SGD(params, momentum=0.9).state_dict()
    with pytest.raises(SNNError, match="SGD optimizer state, not Adam"):
        Adam(params).load_state_dict(state)
    with pytest.raises(SNNError, match="parameters"):
        SGD({"other": np.zeros(2, np.float32)}, momentum=0.9).load_state_dict(state)


# -- schedules ----------------------------------------------------------------------------
def test_cosine_schedule_runs_from_base_lr_to_eta_min():
    schedule = CosineSchedule(base_lr=0.1, total=10, eta_min=0.01)
    assert schedule(0) == 0.1
    assert schedule(5) == pytest.approx(0.055, rel=1e-12)  # halfway: the mean
    assert schedule(10) == pytest.approx(0.01, rel=1e-12)
    assert schedule(2) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * 0.2)) / 2, rel=1e-12)
    values = [schedule(t) for t in range(11)]
    assert values == sorted(values, reverse=True)


def test_step_schedule_decays_at_each_boundary():
    schedule = StepSchedule(base_lr=0.1, step_size=3, gamma=0.5)
    assert [schedule(t) for t in (0, 2, 3, 5, 6)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def _numpy_adam(param, grad, m, v, keep, lr, beta1, beta2, eps, weight_decay, decoupled, t):
    """Adam in numpy float32 operations, the order the one-pass kernel must reproduce bit for bit."""
    f = np.float32
    gradient = grad * keep
    if weight_decay and decoupled:
        param *= f(1.0 - lr * weight_decay)
    elif weight_decay:
        gradient += f(weight_decay) * param
    m += f(1.0 - beta1) * (gradient - m)
    v *= f(beta2)
    v += f(1.0 - beta2) * gradient * gradient
    denominator = np.sqrt(v) / f(np.sqrt(1.0 - beta2**t)) + f(eps)
    param += f(-(lr / (1.0 - beta1**t))) * m / denominator
    for array in (param, m, v):
        array *= keep


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.01, False), (0.05, True)])
def test_adam_takes_one_pass_with_exactly_the_numpy_float32_operations(weight_decay, decoupled):
    rng = np.random.default_rng(9)
    shape = (140, 1000)
    param = rng.standard_normal(shape).astype(np.float32)
    keep = rng.random(shape) > 0.3
    expected, m, v = param.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    params = {"w": param[:, :500]}  # 70,000 entries (a parallel pass), not C-contiguous: updated through a copy
    optimizer = Adam(params, lr=1e-2, weight_decay=weight_decay, decoupled_weight_decay=decoupled,
                     masks={"w": keep[:, :500]})
    reference = expected[:, :500].copy()
    m, v, keep_f = m[:, :500].copy(), v[:, :500].copy(), keep[:, :500].astype(np.float32)
    for t in range(1, 4):
        grad = rng.standard_normal((140, 500)).astype(np.float32)
        optimizer.step({"w": grad})
        _numpy_adam(reference, grad, m, v, keep_f, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled, t)
    assert np.array_equal(param[:, :500], reference)
    assert np.array_equal(optimizer.moments["exp_avg"]["w"], m) and np.array_equal(optimizer.moments["exp_avg_sq"]["w"], v)


def _least_problem(rng, size):
    """A weight, its gradient and the rank keys of |w| with the set of about the least third of
    them in [first, last): (weight, gradient, keys, (first, split, last, bound)); ties at the bound."""
    weight = rng.standard_normal(size).astype(np.float32)
    keys = key_bits(np.abs(weight))
    first, last = size // 7, size - size // 5
    bound = int(np.sort(keys[first:last])[(last - first) // 3])
    keys[first + 3] = keys[last - 3] = bound  # ties on either side of the split
    return weight, rng.standard_normal(size).astype(np.float32), keys, (first, (first + last) // 2, last, bound)


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.01, False), (0.05, True)])
@pytest.mark.parametrize("size", [3001, 70_001])  # at two threads: the plain loop, then the prange loop
def test_adam_adds_a_least_set_penalty_and_writes_magnitudes_bit_for_bit_as_the_separate_passes(
        weight_decay, decoupled, size, monkeypatch):
    monkeypatch.setattr(Adam, "fuse_from", 0)  # fuse at both sizes
    rng = np.random.default_rng(5)
    weight, _, keys, (first, split, last, bound) = _least_problem(rng, size)
    keep = rng.random(size) > 0.2
    factor = 2.0 * 0.73
    before, per_thread_count = numba.get_num_threads(), []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            fused, separate = ({"w": weight.copy()} for _ in range(2))
            optimizers = [Adam(params, lr=1e-2, weight_decay=weight_decay, decoupled_weight_decay=decoupled,
                               masks={"w": keep}) for params in (fused, separate)]
            magnitudes = np.full(size, np.nan, np.float32)
            for step in range(3):
                grad = np.random.default_rng(step).standard_normal(size).astype(np.float32)

                def add(grads, params=separate):  # kernels.selection's pass, as the solver's closure makes it
                    add_scaled_least(grads["w"][first:last], params["w"][first:last], keys[first:last],
                                     (bound, split - first), factor)

                penalty = Penalty(add, {"w": (keys, first, split, last, bound, factor)}, {"w": magnitudes})
                given = grad.copy()
                optimizers[0].step({"w": given}, penalty)
                optimizers[1].step({"w": grad.copy()}, add)
                assert np.array_equal(fused["w"].view(np.int32), separate["w"].view(np.int32))
                for moment in ("exp_avg", "exp_avg_sq"):
                    assert np.array_equal(optimizers[0].moments[moment]["w"], optimizers[1].moments[moment]["w"])
                assert np.array_equal(magnitudes.view(np.int32), np.abs(fused["w"]).view(np.int32))
                assert np.array_equal(given, grad)  # the fused penalty leaves the gradient as it was
                assert penalty.magnitudes_current()
            unpenalised = {"w": weight.copy()}
            plain = Adam(unpenalised, lr=1e-2, weight_decay=weight_decay, decoupled_weight_decay=decoupled,
                         masks={"w": keep})
            for step in range(3):
                plain.step({"w": np.random.default_rng(step).standard_normal(size).astype(np.float32)})
            assert not np.array_equal(unpenalised["w"], fused["w"])  # (the penalty did change the steps)
            per_thread_count.append(fused["w"])
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(w.view(np.int32), per_thread_count[0].view(np.int32)) for w in per_thread_count)


@pytest.mark.parametrize("size", [3001, 70_001])
def test_adam_reads_the_sets_membership_from_the_weights_when_the_keys_are_their_magnitudes(size, monkeypatch):
    # keys None: the same steps as with keys that are the bits of |w| now, for any bound (zeros,
    # ties, every finite weight) and weights of +-0, +-inf and NaN
    monkeypatch.setattr(Adam, "fuse_from", 0)
    rng = np.random.default_rng(6)
    weight, _, keys, (first, split, last, tied) = _least_problem(rng, size)
    weight[[first, first + 1, split, last - 2, last - 1]] = [0.0, -0.0, np.inf, -np.inf, np.nan]
    infinite = int(key_bits(np.array([np.inf], np.float32))[0])
    for bound in (0, tied, infinite - 1, infinite):
        runs = []
        for by_weight in (False, True):
            params = {"w": weight.copy()}
            optimizer = Adam(params, lr=1e-2)
            magnitudes = np.empty(size, np.float32)
            for step in range(3):
                keys = None if by_weight else key_bits(np.abs(params["w"]))
                penalty = Penalty(lambda grads: None, {"w": (keys, first, split, last, bound, 1.46)}, {"w": magnitudes})
                optimizer.step({"w": np.random.default_rng(step).standard_normal(size).astype(np.float32)}, penalty)
            runs.append([params["w"], magnitudes, *(optimizer.moments[m]["w"] for m in ("exp_avg", "exp_avg_sq"))])
        for a, b in zip(*runs):
            assert a.tobytes() == b.tobytes()


def test_magnitudes_written_by_a_step_are_current_until_the_optimizer_changes_a_parameter(monkeypatch):
    monkeypatch.setattr(Adam, "fuse_from", 0)  # fuse at this size
    rng = np.random.default_rng(1)
    weight, grad, keys, (first, split, last, bound) = _least_problem(rng, 500)
    params = {"w": weight, "b": np.zeros(3, np.float32)}
    optimizer = Adam(params, lr=1e-2)
    state = optimizer.state_dict()

    def step(penalty):
        optimizer.step({"w": grad.copy(), "b": np.ones(3, np.float32)}, penalty)
        return penalty

    def fused():
        return Penalty(lambda grads: None, {"w": (keys, first, split, last, bound, 1.0)},
                       {"w": np.empty(500, np.float32)})

    assert step(fused()).magnitudes_current()
    written = step(fused())
    step(None)  # another step
    assert not written.magnitudes_current()
    written = step(fused())
    optimizer.set_mask("w", rng.random(500) > 0.5)  # a mask frozen (it zeroes weights)
    assert not written.magnitudes_current()
    written = step(fused())
    optimizer.load_state_dict(state)  # a checkpoint resumed
    assert not written.magnitudes_current()
    missing = fused()
    optimizer.step({"b": np.ones(3, np.float32)}, missing)  # "w" had no gradient: nothing written for it
    assert not missing.magnitudes_current()
    unfused = Penalty(lambda grads: None, None, {"w": np.empty(500, np.float32)})
    SGD(params, lr=1e-2).step({"w": grad.copy()}, unfused)  # SGD calls ``add`` and writes no magnitudes
    assert not unfused.magnitudes_current()


def test_a_penalty_on_fewer_entries_than_fuse_from_is_added_by_its_own_pass_and_writes_no_magnitudes():
    rng = np.random.default_rng(2)
    weight, grad, keys, (first, split, last, bound) = _least_problem(rng, 500)
    results = []
    for fuse_from in (0, 501):  # fused, then the add and a plain step (500 < 501)
        params = {"w": weight.copy()}
        optimizer = Adam(params, lr=1e-2)
        optimizer.fuse_from = fuse_from
        added = []

        def add(grads, params=params):
            added.append(1)
            add_scaled_least(grads["w"][first:last], params["w"][first:last], keys[first:last],
                             (bound, split - first), 1.5)

        penalty = Penalty(add, {"w": (keys, first, split, last, bound, 1.5)}, {"w": np.empty(500, np.float32)})
        optimizer.step({"w": grad.copy()}, penalty)
        results.append(params["w"])
        assert penalty.magnitudes_current() == (fuse_from == 0) and len(added) == (fuse_from != 0)
    assert np.array_equal(results[0].view(np.int32), results[1].view(np.int32))


def test_fuse_from_counts_the_parameters_whose_magnitudes_adam_writes_not_only_those_it_penalises():
    # a step of a search whose duals are still zero: no set to add on, |w| still to write
    weight = np.random.default_rng(3).standard_normal(500).astype(np.float32)
    optimizer = Adam({"w": weight}, lr=1e-2)
    optimizer.fuse_from = 400
    penalty = Penalty(lambda grads: None, {}, {"w": np.empty(500, np.float32)})
    optimizer.step({"w": np.ones(500, np.float32)}, penalty)
    assert penalty.magnitudes_current()
    assert np.array_equal(penalty.magnitudes["w"].view(np.int32), np.abs(weight).view(np.int32))
