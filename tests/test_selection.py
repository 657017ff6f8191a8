"""The solver's selection kernels (kernels/selection.py) against numpy's sort and sums."""

import numpy as np
import pytest

from onnx_snn_compress.kernels.selection import (add_scaled_at, add_scaled_masked, histogram,
                                                 kept_cost, key_bits, least_mask, prune_pass, same_bits, select,
                                                 sum_of_squares, top_shift, uniform_cost)


def magnitudes(size, seed, dtype=np.float32, zeros=0.3, protected=0.02):
    """|w| of float32 weights (or their float64 squares), many exact ties at 0 (pruned
    weights) and +inf for protected synapses (ranked last)."""
    rng = np.random.default_rng(seed)
    weights = np.abs(rng.standard_normal(size).astype(np.float32)) * np.float32(0.05)
    weights[rng.random(size) < zeros] = 0.0
    ranks = weights if dtype == np.float32 else weights.astype(np.float64) ** 2
    ranks[rng.random(size) < protected] = np.inf
    return ranks


def least_set(ranks, start, stop, k):
    """(the least-k set as a bool mask over all of ``ranks``, its (bound, following, size)) by the kernels."""
    bits = key_bits(ranks)
    shift = top_shift(bits, stop - start)
    counts, gathered = histogram(bits, start, stop, shift), {}
    least = select(bits, start, stop, k, counts, shift, gathered)
    mask = np.zeros(ranks.size, dtype=bool)
    least_mask(bits, start, stop, least, shift, gathered, mask)
    return mask, least


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 5000, 300_000])
def test_the_least_set_is_the_first_k_of_a_stable_sort(size, dtype):
    ranks = magnitudes(size, seed=size, dtype=dtype)
    order = np.argsort(ranks, kind="stable")  # ties in index order, as the set takes them
    finite = int(np.sum(np.isfinite(ranks)))  # the protected (+inf) are never in a set
    for k in sorted({0, 1, size // 10, size // 3, size // 2, int(0.7 * size), finite - 1} - {finite}):
        mask, (bound, following, count) = least_set(ranks, 0, size, k)
        expected = np.zeros(size, dtype=bool)
        expected[order[:k]] = True
        assert np.array_equal(mask, expected) and count == k
        assert following == order[k] and bound == key_bits(ranks)[order[k]]


def test_a_set_within_a_range_leaves_the_rest_alone():
    ranks = magnitudes(20_000, seed=2)
    start, stop = 3_000, 17_001
    order = np.argsort(ranks[start:stop], kind="stable") + start
    mask, (_, following, _) = least_set(ranks, start, stop, 5_000)
    assert np.array_equal(np.flatnonzero(mask), np.sort(order[:5_000])) and following == order[5_000]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_set_of_every_finite_rank_has_no_following_weight(dtype):
    ranks = magnitudes(1_000, seed=1, dtype=dtype)
    ranks[:3] = np.finfo(dtype).max  # huge, but finite: in the set
    ranks[3] = np.nan  # never in a set, as +inf
    finite = int(np.sum(np.isfinite(ranks)))
    mask, (_, following, count) = least_set(ranks, 0, ranks.size, finite + 3)
    assert np.array_equal(mask, np.isfinite(ranks)) and following == -1 and count == finite < ranks.size - 1


def test_the_selection_refines_a_bucket_of_equal_and_of_one_binade_values():
    equal_values = np.full(70_000, np.float32(0.25))  # one key: ties all the way down
    mask, (_, following, _) = least_set(equal_values, 0, equal_values.size, 41_234)
    assert np.array_equal(np.flatnonzero(mask), np.arange(41_234)) and following == 41_234
    binade = (1.0 + np.random.default_rng(3).random(100_000)).astype(np.float32)  # [1, 2): one exponent
    order = np.argsort(binade, kind="stable")
    mask, (_, following, _) = least_set(binade, 0, binade.size, 41_234)
    assert np.array_equal(np.flatnonzero(mask), np.sort(order[:41_234])) and following == order[41_234]


def test_two_selections_on_the_same_histogram_match_fresh_ones():
    ranks = magnitudes(50_000, seed=6)
    bits = key_bits(ranks)
    shift = top_shift(bits, ranks.size)
    counts, gathered = histogram(bits, 0, ranks.size, shift), {}
    first = select(bits, 0, ranks.size, 20_000, counts, shift, gathered)
    second = select(bits, 0, ranks.size, 20_003, counts, shift, gathered)  # most likely the same bucket
    assert first == least_set(ranks, 0, ranks.size, 20_000)[1]
    assert second == least_set(ranks, 0, ranks.size, 20_003)[1]


def test_a_selection_gathers_the_buckets_near_its_bound_for_the_next_one():
    ranks = magnitudes(50_000, seed=7)
    bits = key_bits(ranks)
    shift = top_shift(bits, ranks.size)
    counts, gathered = histogram(bits, 0, ranks.size, shift), {}
    select(bits, 0, ranks.size, 20_000, counts, shift, gathered)
    for k in (19_000, 20_900):  # an s step of about 2 % down or up finds its bucket gathered
        gathered_before = dict(gathered)
        assert select(bits, 0, ranks.size, k, counts, shift, gathered) == least_set(ranks, 0, ranks.size, k)[1]
        assert gathered.keys() == gathered_before.keys()
    for bucket, members in gathered.items():  # each bucket's members, in index order
        assert np.array_equal(members, np.flatnonzero((bits >> shift) == bucket))


def test_add_scaled_masked_is_numpys_masked_add_bit_for_bit():
    rng = np.random.default_rng(4)
    for size in (1_001, 100_001):  # one thread, and the parallel kernel
        source = rng.standard_normal(size).astype(np.float32)
        target = rng.standard_normal(size).astype(np.float32)
        target[:50] = -0.0  # unchosen entries keep their exact bits
        mask = rng.random(size) < 0.4
        expected = target.copy()
        expected[mask] += np.float32(2.0 * 0.37) * source[mask]
        add_scaled_masked(target, source, mask, 2.0 * 0.37)
        assert np.array_equal(target.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_of_squares_is_numpys_sum_bit_for_bit(dtype):
    values = np.random.default_rng(5).standard_normal(300_007).astype(dtype)
    for start, stop in [(0, 0), (0, 5), (3, 130), (0, 129), (11, 9_472), (0, values.size), (1_000, 300_000)]:
        assert sum_of_squares(values, start, stop) == np.sum(values[start:stop].astype(np.float64) ** 2)


def test_the_prune_pass_is_two_kept_costs_and_the_chosen_values_in_order():
    rng = np.random.default_rng(7)
    values = rng.standard_normal(10_003).astype(np.float32)
    before, after, hard = (rng.random(values.size) < p for p in (0.3, 0.5, 0.1))
    costs = rng.random(values.size) * 4.6e-12  # not integers: the order of the sums shows
    chosen = np.empty(values.size + 1, np.float32)
    kept_before, kept_after, count = prune_pass(costs, values, before, after, hard, chosen)
    assert kept_before == kept_cost(costs, before) and kept_after == kept_cost(costs, after | hard)
    assert count == int(before.sum()) and np.array_equal(chosen[:count], values[before])


@pytest.mark.parametrize("cost", [1.0, 3.0, 0.0])
def test_with_one_integer_cost_the_prune_pass_counts_and_gives_the_same_sums(cost):
    rng = np.random.default_rng(9)
    values = rng.standard_normal(10_003).astype(np.float32)
    before, after, hard = (rng.random(values.size) < p for p in (0.3, 0.5, 0.1))
    costs = np.full(values.size, cost)
    assert uniform_cost(costs) == cost
    chosen = np.empty(values.size + 1, np.float32)
    counted = prune_pass(costs, values, before, after, hard, chosen, uniform_cost(costs))
    assert counted == prune_pass(costs, values, before, after, hard, chosen)  # bit for bit: exact integers
    assert uniform_cost(np.array([1.0, 1.0, 2.0])) is None and uniform_cost(np.array([0.5, 0.5])) is None
    assert uniform_cost(np.full(3, 2.0 ** 52)) is None  # sums past 2**53 are not exact


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


def test_same_bits_is_numpys_array_equal_on_the_bit_patterns():
    a = np.random.default_rng(8).standard_normal(5_000).astype(np.float32)  # more than one block
    assert same_bits(a, a.copy()) and not same_bits(a, a[:-1]) and not same_bits(a, a.astype(np.float64))
    for index in (0, 2_047, 2_048, 4_999):  # a difference at a block's edge, or in the last entry
        b = a.copy()
        b[index] = np.nextafter(b[index], np.float32(np.inf))
        assert not same_bits(a, b)
    assert not same_bits(np.array([0.0]), np.array([-0.0])) and same_bits(np.array([np.nan]), np.array([np.nan]))


def test_the_histogram_does_not_depend_on_how_the_range_is_split():
    from onnx_snn_compress.kernels.selection import _histogram_parallel  # the kernel of several threads

    bits = key_bits(magnitudes(300_001, seed=8))
    shift = top_shift(bits, 280_000)
    counts = histogram(bits, 7, 280_007, shift)
    assert counts.sum() == 280_000
    for chunks in (1, 2, 5):
        split = np.zeros_like(counts)
        _histogram_parallel(bits, 7, 280_007, shift, split, chunks)
        assert np.array_equal(split, counts)
