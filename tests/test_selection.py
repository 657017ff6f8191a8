"""The solver's selection kernels (kernels/selection.py) against numpy's sort."""

import numpy as np
import pytest

from onnx_snn_compress.kernels.selection import add_scaled_at, finite_count, kept_cost, least_set


def squared_weights(size, seed, zeros=0.3, protected=0.02):
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(size).astype(np.float32).astype(np.float64) * 0.05
    weights[rng.random(size) < zeros] = 0.0  # pruned weights: many exact ties at 0
    ranks = weights * weights
    ranks[rng.random(size) < protected] = np.inf  # protected synapses rank last
    return ranks


@pytest.mark.parametrize("size", [1, 7, 5000, 300_000])
def test_least_set_is_the_first_k_of_a_stable_sort(size):
    ranks = squared_weights(size, seed=size)
    order = np.argsort(ranks, kind="stable")  # ties in index order, as least_set takes them
    for k in sorted({0, 1, size // 10, size // 3, size // 2, int(0.7 * size), size - 1} - {size}):
        chosen, following = least_set(ranks, k)
        assert np.array_equal(chosen, np.sort(order[:k]))
        assert following == order[k]


def test_least_set_of_every_weight_has_no_following_one():
    ranks = squared_weights(10, seed=1)
    chosen, following = least_set(ranks, 10)
    assert np.array_equal(chosen, np.arange(10)) and following == -1


def test_least_set_splits_a_large_bucket_of_one_binade():
    # every value in [1, 2): one binade, so the selection must refine below the exponent
    ranks = 1.0 + np.random.default_rng(3).random(100_000)
    chosen, following = least_set(ranks, 41_234)
    order = np.argsort(ranks, kind="stable")
    assert np.array_equal(chosen, np.sort(order[:41_234])) and following == order[41_234]


def test_kept_cost_sums_the_costs_of_the_weights_left():
    rng = np.random.default_rng(0)
    pruned = rng.random(100_003) < 0.6
    counts = rng.integers(1, 50, pruned.size).astype(np.float64)  # integer costs: exact in any order
    assert kept_cost(counts, pruned) == np.sum(counts[~pruned])
    energies = rng.random(pruned.size) * 4.6e-12
    assert kept_cost(energies, pruned) == pytest.approx(np.sum(energies[~pruned]), rel=1e-12)
    assert kept_cost(counts, np.ones_like(pruned)) == 0.0


def test_add_scaled_at_is_numpys_scatter_add_bit_for_bit():
    rng = np.random.default_rng(4)
    source = rng.standard_normal(10_001).astype(np.float32)
    target = rng.standard_normal(10_001).astype(np.float32)
    indices = np.flatnonzero(rng.random(10_001) < 0.4)
    expected = target.copy()
    expected[indices] += np.float32(2.0 * 0.37) * source[indices]
    add_scaled_at(target, source, indices, 2.0 * 0.37)
    assert np.array_equal(target.view(np.uint32), expected.view(np.uint32))


def test_finite_count_counts_what_isfinite_accepts():
    ranks = squared_weights(10_000, seed=5)  # +inf for the protected
    ranks[7] = np.nan
    assert finite_count(ranks) == int(np.sum(np.isfinite(ranks))) < ranks.size - 1
