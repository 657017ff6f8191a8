"""Losses: values on hand examples, gradients by finite differences, stability, readout shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnx_snn_compress import ir
from onnx_snn_compress.losses import DEFAULT_LOSS, LOSSES, cross_entropy, default_loss, mse_rate


def finite_difference_gradient(loss, x, labels, step=1e-6, **options):
    """Central differences of a loss in float64, one input entry at a time."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[index] += step
        above = loss(shifted, labels, **options)[0]
        shifted[index] -= 2 * step
        below = loss(shifted, labels, **options)[0]
        grad[index] = (above - below) / (2 * step)
    return grad


def check_gradient(loss, x, labels, **options):
    value, grad = loss(x, labels, **options)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    np.testing.assert_allclose(grad, finite_difference_gradient(loss, x, labels, **options), rtol=1e-6, atol=1e-9)
    return value


# -- mse_rate -----------------------------------------------------------------------------
def test_mse_rate_is_the_mean_over_samples_and_classes_of_the_squared_error_to_one_hot():
    rate = np.array([[0.5, 0.25], [1.0, 0.0]], dtype=np.float32)
    loss, grad = mse_rate(rate, np.array([0, 0]))
    # errors (-0.5, 0.25) and (0, 0): (0.25 + 0.0625) / 4
    assert loss == 0.078125
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, [[-0.25, 0.125], [0.0, 0.0]])  # 2 / (N*C) * error


def test_mse_rate_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    check_gradient(mse_rate, rng.random((5, 4)), rng.integers(0, 4, 5))


def test_mse_rate_with_a_teacher_aims_at_the_mix_of_one_hot_and_teacher_rates():
    rate = np.array([[0.5, 0.25]], dtype=np.float32)
    teacher = np.array([[0.5, 0.5]], dtype=np.float32)
    loss, grad = mse_rate(rate, np.array([0]), teacher=teacher, distill=0.5)
    # target (1 - 0.5) * (1, 0) + 0.5 * (0.5, 0.5) = (0.75, 0.25): errors (-0.25, 0)
    assert loss == 0.03125
    np.testing.assert_array_equal(grad, [[-0.25, 0.0]])


def test_mse_rate_with_full_distillation_ignores_the_labels():
    rng = np.random.default_rng(2)
    rate, teacher = rng.random((4, 3)), rng.random((4, 3))
    first = mse_rate(rate, np.array([0, 1, 2, 0]), teacher=teacher, distill=1.0)
    second = mse_rate(rate, np.array([2, 2, 1, 1]), teacher=teacher, distill=1.0)
    assert first[0] == second[0] and np.array_equal(first[1], second[1])


# -- cross_entropy ------------------------------------------------------------------------
def test_cross_entropy_with_a_teacher_adds_the_weighted_cross_entropy_to_its_softmax():
    logits = np.array([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    teacher = np.array([[math.log(3.0), 0.0]])  # softmax = (3/4, 1/4)
    loss, grad = cross_entropy(logits, np.array([1]), teacher=teacher, distill=0.5)
    expected = 0.5 * -math.log(0.75) + 0.5 * -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, [[0.25 - 0.375, 0.75 - 0.625]], rtol=1e-12)


def test_distillation_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    teacher = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    check_gradient(cross_entropy, 2 * rng.standard_normal((5, 4)), labels, teacher=teacher, distill=0.3,
                   label_smoothing=0.1)
    check_gradient(mse_rate, rng.random((5, 4)), labels, teacher=rng.random((5, 4)), distill=0.3)


def test_distillation_rejects_a_weight_outside_0_1_and_a_teacher_of_another_shape():
    rate = np.zeros((2, 3))
    with pytest.raises(ValueError, match="distill"):
        mse_rate(rate, np.array([0, 1]), teacher=rate, distill=1.5)
    with pytest.raises(ValueError, match="teacher"):
        cross_entropy(rate, np.array([0, 1]), teacher=np.zeros((2, 4)), distill=0.5)


def test_cross_entropy_on_hand_example():
    logits = np.array([[0.0, math.log(3.0)]], dtype=np.float32)  # softmax = (1/4, 3/4)
    loss, grad = cross_entropy(logits, np.array([0]))
    assert loss == pytest.approx(math.log(4.0), rel=1e-6)
    np.testing.assert_allclose(grad, [[0.25 - 1.0, 0.75]], rtol=1e-6)
    assert grad.dtype == np.float32


def test_cross_entropy_label_smoothing_mixes_in_the_uniform_target_as_torch():
    logits = np.array([[0.0, math.log(3.0)]])
    eps = 0.2
    loss, grad = cross_entropy(logits, np.array([0]), label_smoothing=eps)
    # q = (1 - eps) * onehot + eps / C = (0.9, 0.1); L = -sum q log p
    assert loss == pytest.approx(-(0.9 * math.log(0.25) + 0.1 * math.log(0.75)), rel=1e-12)
    np.testing.assert_allclose(grad, [[0.25 - 0.9, 0.75 - 0.1]], rtol=1e-12)


def test_cross_entropy_is_the_mean_over_samples():
    logits = np.array([[0.0, 0.0], [0.0, math.log(3.0)]])
    loss, grad = cross_entropy(logits, np.array([0, 1]))
    assert loss == pytest.approx((math.log(2.0) + math.log(4.0 / 3.0)) / 2, rel=1e-12)
    np.testing.assert_allclose(grad, [[-0.25, 0.25], [0.125, -0.125]], rtol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_gradient_matches_finite_differences(label_smoothing):
    rng = np.random.default_rng(1)
    check_gradient(cross_entropy, 3 * rng.standard_normal((6, 5)), rng.integers(0, 5, 6), label_smoothing=label_smoothing)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_is_finite_for_huge_logits(label_smoothing):
    logits = np.array(
        [
            [1e30, -1e30, 0.0],  # the label's logit is the maximum: loss 0
            [1e30, -1e30, 0.0],  # the label's logit is 2e30 below the maximum
            [3e38, 3e38, 3e38],  # equal huge logits: uniform softmax
            [-3e38, -3e38, -1e4],
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 1, 2, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # exp may underflow to 0, harmlessly
        loss, grad = cross_entropy(logits, labels, label_smoothing=label_smoothing)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    per_sample_nll = [0.0, 2e30, math.log(3.0), 0.0]
    if not label_smoothing:
        assert loss == pytest.approx(np.mean(per_sample_nll), rel=1e-6)
        np.testing.assert_allclose(grad[2], np.float32(1 / 3 / 4) - np.array([0, 0, 0.25]), rtol=1e-6)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-7)  # p and q both sum to 1


def test_losses_reject_labels_out_of_range():
    with pytest.raises(ValueError, match="labels must lie in"):
        cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must lie in"):
        mse_rate(np.zeros((2, 3), np.float32), np.array([-1, 0]))


# -- registry and readouts ----------------------------------------------------------------
def test_every_readout_mode_has_a_default_loss_in_the_registry():
    assert set(DEFAULT_LOSS) == set(ir.READOUT_MODES)
    assert default_loss("rate") == "mse_rate"
    assert default_loss("spikes") == "mse_rate"
    assert default_loss("leaky") == "ce_readout"
    assert all(name in LOSSES for name in DEFAULT_LOSS.values())
    with pytest.raises(ValueError):
        default_loss("membrane")


@pytest.mark.parametrize("name", ["mse_rate", "ce_rate"])
def test_spike_train_loss_is_the_loss_of_its_mean_over_time_with_gradient_spread_over_time(name):
    rng = np.random.default_rng(2)
    spikes = (rng.random((4, 3, 5)) < 0.4).astype(np.float32)  # [T, N, C]
    labels = np.array([0, 4, 2])
    loss, grad = LOSSES[name](spikes, labels)
    rate_loss, rate_grad = LOSSES[name](spikes.mean(axis=0), labels)
    assert loss == rate_loss
    assert grad.shape == spikes.shape and grad.dtype == np.float32
    for t in range(4):
        np.testing.assert_array_equal(grad[t], rate_grad / np.float32(4))


@pytest.mark.parametrize("name", ["mse_rate", "ce_rate"])
def test_spike_train_loss_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    check_gradient(LOSSES[name], rng.random((3, 2, 4)), np.array([1, 3]))


def test_ce_readout_takes_the_leaky_readout_output_only():
    rng = np.random.default_rng(4)
    output = rng.standard_normal((3, 4)).astype(np.float32)
    assert LOSSES["ce_readout"](output, np.array([0, 1, 2]))[0] == cross_entropy(output, np.array([0, 1, 2]))[0]
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        LOSSES["ce_readout"](np.zeros((2, 3, 4), np.float32), np.array([0, 1, 2]))
