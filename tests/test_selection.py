"""The solver's selection kernels (kernels/selection.py, least_sets.py) against numpy's sort and sums."""

import numpy as np
import pytest

from onnx_snn_compress.kernels import selection
from onnx_snn_compress.kernels.selection import (add_scaled_at, add_scaled_least, histogram, kept_cost, key_bits,
                                                 least_mask, same_bits, same_magnitudes, set_sums, top_shift,
                                                 uniform_cost)
from onnx_snn_compress.least_sets import LeastSets


def magnitudes(size, seed, dtype=np.float32, zeros=0.3, protected=0.02):
    """|w| of float32 weights (or their float64 squares), many exact ties at 0 (pruned
    weights) and +inf for protected synapses (ranked last)."""
    rng = np.random.default_rng(seed)
    weights = np.abs(rng.standard_normal(size).astype(np.float32)) * np.float32(0.05)
    weights[rng.random(size) < zeros] = 0.0
    ranks = weights if dtype == np.float32 else weights.astype(np.float64) ** 2
    ranks[rng.random(size) < protected] = np.inf
    return ranks


def expected_set(ranks, start, stop, k):
    """The least-k set of ranks[start:stop] by a stable sort: (its mask, (bound, following, size))."""
    order = np.argsort(ranks[start:stop], kind="stable") + start  # ties in index order
    finite = int(np.sum(np.isfinite(ranks[start:stop])))
    mask = np.zeros(ranks.size, dtype=bool)
    mask[order[:min(k, finite)]] = True
    if k >= finite:
        return mask, (selection.infinity_key(key_bits(ranks)), -1, finite)
    return mask, (int(key_bits(ranks)[order[k]]), int(order[k]), k)


def least_sets(ranks, groups, ks):
    """The sets of ``groups`` of ``ranks`` for sizes ``ks`` by LeastSets, and their masks."""
    finder = LeastSets(groups, ranks.size)
    values = np.where(np.isfinite(ranks), ranks, 0).astype(ranks.dtype)
    finder.survey(values, key_bits(ranks), ks)
    sets = [finder.least(g, k) for g, k in enumerate(ks)]
    masks = []
    for group, least in zip(groups, sets):
        mask = np.zeros(ranks.size, dtype=bool)
        least_mask(key_bits(ranks), group.start, group.stop, least, mask)
        masks.append(mask)
    return finder, sets, masks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 5000, 300_000])
def test_the_least_set_is_the_first_k_of_a_stable_sort(size, dtype):
    ranks = magnitudes(size, seed=size, dtype=dtype)
    finite = int(np.sum(np.isfinite(ranks)))
    for k in sorted({0, 1, size // 10, size // 3, size // 2, int(0.7 * size), finite - 1, finite, size} - {-1}):
        _, (least,), (mask,) = least_sets(ranks, [slice(0, size)], [k])
        expected_mask, expected = expected_set(ranks, 0, size, k)
        assert least == expected and np.array_equal(mask, expected_mask)


def test_a_set_far_from_the_window_is_found_as_exactly():
    # the window is taken around the expected size; sets far from it (below, above, all) fall back
    ranks = magnitudes(200_000, seed=3)
    finder, _, _ = least_sets(ranks, [slice(0, ranks.size)], [100_000])
    for k in (100_010, 0, 5, 150_000, 99_000, ranks.size):
        assert finder.least(0, k) == expected_set(ranks, 0, ranks.size, k)[1]


def test_a_set_that_left_its_window_is_found_exactly_by_an_extrapolated_window_or_a_histogram(monkeypatch):
    # a set outside the window: the window is moved towards it by the density of keys it held
    # (at most GUESSES times), else a histogram is taken; each way gives the exact set
    from onnx_snn_compress import least_sets as module

    histograms, surveys = [], []
    counted, surveyed = module.histogram, module.LeastSets._survey
    monkeypatch.setattr(module, "histogram", lambda *arguments: histograms.append(1) or counted(*arguments))
    monkeypatch.setattr(module.LeastSets, "_survey", lambda self, *span: surveys.append(1) or surveyed(self, *span))
    rng = np.random.default_rng(1)
    smooth = magnitudes(200_000, seed=6, zeros=0.1, protected=0.0)
    gap = np.concatenate([1 + rng.random(150_000), 1_000 + 1_000 * rng.random(50_000)]).astype(np.float32)
    rng.shuffle(gap)  # keys dense below 2, then none up to 1,000: the window's density misleads past 150,000
    cases = [(smooth, k, 1, 0) for k in (108_000, 60_000, 199_000)]  # one guess, one survey
    cases += [(smooth, 1_000, 3, 1),  # among the zeros (below lo = 1): a histogram
              (gap, 160_000, 3, 1)]  # two guesses fall short: a histogram
    for ranks, k, survey_count, histogram_count in cases:
        finder, _, _ = least_sets(ranks, [slice(0, ranks.size)], [100_000])
        histograms.clear(), surveys.clear()
        assert finder.least(0, k) == expected_set(ranks, 0, ranks.size, k)[1]
        assert (len(surveys), len(histograms)) == (survey_count, histogram_count)


@pytest.mark.parametrize("threads, dtype", [(1, np.float32), (2, np.float32), (2, np.float64)])
def test_the_kernels_windows_find_every_set_exactly_near_their_last_and_far_from_it(threads, dtype):
    # LeastSets.locate with the windows in the kernels (one call: kernels/windows.py): sets near
    # the last (in the window), far from it (extrapolated, a histogram), among the zeros, every
    # finite key; groups of several chunks (in parallel ones with two threads), ranks written over
    # some values in place (+inf, their values squared from the originals)
    from numba import get_num_threads, set_num_threads

    rng = np.random.default_rng(8)
    smooth = magnitudes(400_000, seed=8, zeros=0.1, protected=0.0)
    gap = np.concatenate([1 + rng.random(150_000), 1_000 + 1_000 * rng.random(50_000)]).astype(np.float32)
    rng.shuffle(gap)
    values = np.concatenate([smooth, gap]).astype(dtype)
    groups = [slice(0, 300_000), slice(300_000, 400_000), slice(400_000, 600_000)]
    ranks = values.copy()
    replaced = np.sort(rng.choice(values.size, 500, replace=False))
    ranks[replaced] = np.inf
    expected_squares = [np.sum(values[group].astype(np.float64) ** 2) for group in groups]
    finder, by_python = LeastSets(groups, ranks.size), LeastSets(groups, ranks.size)
    assert finder.direct
    by_python.direct = False  # the windows of LeastSets' Python: the same sets and sums, bit for bit
    before = get_num_threads()
    set_num_threads(min(threads, before))
    try:
        for ks in ([150_000, 50_000, 100_000], [151_000, 49_000, 101_000], [170_000, 52_000, 160_000],
                   [2_000, 99_000, 10], [299_000, 100_000, 199_000], [150_000, 0, 100_000]):
            squares, sets = finder.locate(ranks, key_bits(ranks), np.array(ks), (replaced, values[replaced]))
            python_squares, python_sets = by_python.locate(ranks, key_bits(ranks), np.array(ks),
                                                           (replaced, values[replaced]))
            assert squares.tobytes() == python_squares.tobytes() and [tuple(a) for a in sets] == python_sets
            for group, k, least, total, square in zip(groups, ks, sets, expected_squares, squares):
                assert tuple(least) == expected_set(ranks, group.start, group.stop, k)[1]
                assert square == pytest.approx(total, rel=1e-12)
    finally:
        set_num_threads(before)


def test_the_sets_after_the_window_is_recentred_are_exact_as_the_weights_move():
    rng = np.random.default_rng(4)
    ranks = magnitudes(100_000, seed=4)
    finder = LeastSets([slice(0, ranks.size)], ranks.size)
    k = 40_000
    for _ in range(8):
        finder.survey(ranks, key_bits(ranks), [k])
        assert finder.least(0, k) == expected_set(ranks, 0, ranks.size, k)[1]
        previous, k = k, int(k + rng.integers(-3_000, 3_000))
        assert finder.least(0, k) == expected_set(ranks, 0, ranks.size, k)[1]
        finder.recentre(0, k, previous)
        ranks = np.where(np.isfinite(ranks), ranks * (1 + 0.05 * rng.standard_normal(ranks.size)), ranks)
        ranks = np.abs(ranks).astype(np.float32)


def test_a_window_reaches_further_along_a_move_after_its_set_left_it(monkeypatch):
    # s accelerates in runs: a window that extends by the last move alone (at most two margins)
    # loses a faster boundary every step; one that reaches twice as far after a miss holds more.
    # The sets are exact either way
    from onnx_snn_compress import least_sets as module

    def misses(reach):
        monkeypatch.setattr(module, "REACH", reach)
        ranks = magnitudes(100_000, seed=5, zeros=0.0, protected=0.0)  # margin: 2,500 ranks
        finder, count, k = LeastSets([slice(0, ranks.size)], ranks.size), 0, 10_000
        for move in range(2_000, 16_000, 2_000):
            finder.survey(ranks, key_bits(ranks), [k])
            assert finder.least(0, k) == expected_set(ranks, 0, ranks.size, k)[1]
            count += finder._in_window(0, k + move) is None
            assert finder.least(0, k + move) == expected_set(ranks, 0, ranks.size, k + move)[1]
            finder.recentre(0, k + move, k)
            k += move
        return count

    assert misses((2, 16)) < misses((2, 2))


def test_sets_within_ranges_leave_the_rest_alone():
    ranks = magnitudes(20_000, seed=2)
    groups = [slice(3_000, 17_001), slice(17_001, 19_000), slice(0, 0)]  # a gap before, one after, an empty group
    finder, sets, masks = least_sets(ranks, groups, [5_000, 700, 0])
    for group, k, least, mask in zip(groups, [5_000, 700, 0], sets, masks):
        expected_mask, expected = expected_set(ranks, group.start, group.stop, k)
        assert least == expected and np.array_equal(mask, expected_mask)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_set_of_every_finite_rank_has_no_following_weight(dtype):
    ranks = magnitudes(1_000, seed=1, dtype=dtype)
    ranks[:3] = np.finfo(dtype).max  # huge, but finite: in the set
    ranks[3] = np.nan  # never in a set, as +inf
    finite = int(np.sum(np.isfinite(ranks)))
    _, (least,), (mask,) = least_sets(ranks, [slice(0, ranks.size)], [finite + 3])
    assert np.array_equal(mask, np.isfinite(ranks)) and least[1] == -1 and least[2] == finite < ranks.size - 1


def test_the_selection_refines_a_window_of_equal_and_of_one_binade_values():
    equal_values = np.full(70_000, np.float32(0.25))  # one key: ties all the way down
    _, (least,), (mask,) = least_sets(equal_values, [slice(0, equal_values.size)], [41_234])
    assert np.array_equal(np.flatnonzero(mask), np.arange(41_234)) and least[1] == 41_234
    binade = (1.0 + np.random.default_rng(3).random(100_000)).astype(np.float32)  # [1, 2): one exponent
    order = np.argsort(binade, kind="stable")
    _, (least,), (mask,) = least_sets(binade, [slice(0, binade.size)], [41_234])
    assert np.array_equal(np.flatnonzero(mask), np.sort(order[:41_234])) and least[1] == order[41_234]


@pytest.mark.parametrize("size", [1, 2, 31, 32, 33, 200, 2047, 2048, 5000])
def test_a_windows_key_of_every_rank_is_that_of_a_stable_sort_with_its_counts_in_the_same_call(size):
    # a window of few members (narrower digits, a few candidates ranked directly) or many, with
    # ties (a tenth of the keys repeat another's) and keys that differ only in their low bits
    from onnx_snn_compress.least_sets import Window

    rng = np.random.default_rng(size)
    base = int(key_bits(np.array([0.375], np.float32))[0])
    keys = (base + rng.integers(0, 3 * size + 1, size)).astype(np.int32)
    keys[rng.random(size) < 0.1] = keys[0]
    members = np.sort(rng.choice(10 * size, size, replace=False)).astype(np.int64)
    lo, hi = int(keys.min()), int(keys.max()) + 1 + int(rng.integers(0, 100))
    order = np.lexsort((members, keys))  # by key, then index
    ranks = range(size) if size <= 300 else rng.integers(0, size, 300)
    for rank in ranks:
        expected = (int(keys[order[rank]]), int(members[order[rank]]))
        fresh = Window(keys, members, lo, hi)
        assert fresh.key_of_rank(int(rank)) == expected  # counted and found in one call
        assert fresh.key_of_rank(int(rank)) == expected  # from the counts kept
    counted = Window(keys, members, lo, hi)
    for rank in ranks:  # a bucket's first key is at most the rank's, its end above it
        assert counted.bucket_start(int(rank)) <= keys[order[rank]] < counted.bucket_stop(int(rank))
    offsets, shift, width, bound, following = selection.counted_key_of_rank(keys, members, lo, hi, -1)
    assert (bound, following) == (-1, -1) and offsets[-1] == size and width <= selection.digit_width(size)
    assert width == min(max(1, (lo ^ (hi - 1)).bit_length()), selection.digit_width(size))


def test_the_digit_narrows_below_2048_keys():
    assert [selection.digit_width(size) for size in (0, 16, 17, 300, 2047, 2048, 10**6)] == [4, 4, 5, 9, 11, 12, 12]


def test_the_survey_sums_the_squares_and_does_not_depend_on_the_window_or_the_threads():
    values = np.abs(np.random.default_rng(5).standard_normal(300_007)).astype(np.float32)
    groups = [slice(0, 5), slice(11, 200_000), slice(200_000, 300_007)]
    finder = LeastSets(groups, values.size)
    squares = finder.survey(values, key_bits(values), [1, 50_000, 3])
    wide = values.astype(np.float64) ** 2
    for group, total in zip(groups, squares):
        assert total == pytest.approx(np.sum(wide[group]), rel=1e-12)
    finder.lo[:], finder.hi[:] = 0, 1  # other windows: the same sums, bit for bit
    assert np.array_equal(finder.survey(values, key_bits(values), [1, 50_000, 3]), squares)
    finder.lo[:], finder.hi[:] = key_bits(values)[[0, 20, 200_000]], key_bits(values)[[0, 20, 200_000]] + 50_000_000
    windows = []
    for kernel in (selection._survey_serial, selection._survey_parallel):  # one thread or several
        starts, stops = finder._starts, finder._stops
        out, counts, origins = np.empty(starts.size), np.empty((starts.size, 2), np.int64), np.empty(starts.size, np.int64)
        kernel(values, key_bits(values), starts, stops, finder._owners, finder.lo, finder.hi, finder._slots,
               finder._members, finder._member_keys, out, counts, origins)
        totals = [sum(out[finder._firsts[p]:finder._firsts[p + 1]], 0.0) for p in range(len(groups))]
        assert np.array_equal(totals, squares)
        group_counts, group_window = np.empty((len(groups), 2), np.int64), np.empty(len(groups), np.int64)
        selection._gather_windows(finder._members, finder._member_keys, origins, counts, out, finder._firsts,
                                  np.empty(len(groups)), group_counts, group_window)
        windows.append([finder._members[start:start + inside].copy() for start, inside in
                        zip(group_window, group_counts[:, 1])])
    for group, (lo, hi), serial, parallel in zip(groups, zip(finder.lo, finder.hi), *windows):
        keys = key_bits(values)[group]  # the same members, in index order, either way
        expected = np.flatnonzero((keys >= lo) & (keys < hi)) + group.start
        assert np.array_equal(serial, expected) and np.array_equal(parallel, expected) and expected.size > 0


def test_the_survey_squares_the_original_values_where_ranks_were_written_over_them():
    rng = np.random.default_rng(6)
    values = np.abs(rng.standard_normal(300_007)).astype(np.float32)
    groups = [slice(0, 5), slice(11, 200_000), slice(200_000, 300_007)]
    # in several chunks of each group, at a chunk's edges, and between groups (no chunk holds it)
    indices = np.unique(np.concatenate([rng.choice(values.size, 40, replace=False), [0, 7, 65_546, 65_547, 300_006]]))
    ranks = values.copy()
    ranks[indices] = np.inf
    ks = [1, 50_000, 3]
    expected, written = LeastSets(groups, values.size), LeastSets(groups, values.size)
    squares = expected.survey(values, key_bits(ranks.copy()), ks)
    assert np.array_equal(written.survey(ranks, key_bits(ranks), ks, (indices, values[indices])), squares)
    assert [written.least(g, k) for g, k in enumerate(ks)] == [expected.least(g, k) for g, k in enumerate(ks)]
    assert np.isinf(LeastSets(groups, values.size).survey(ranks, key_bits(ranks), ks)).all()  # unless told


@pytest.mark.parametrize("uniform", [False, True])
def test_the_set_sums_are_the_squares_and_costs_of_the_sets(uniform):
    rng = np.random.default_rng(7)
    ranks = magnitudes(150_001, seed=7)
    values = np.where(np.isfinite(ranks), ranks, 0).astype(np.float32)
    hard = rng.random(ranks.size) < 0.1
    costs = np.full(ranks.size, 3.0) if uniform else rng.random(ranks.size) * 4.6e-12
    groups = [slice(0, 100_000), slice(100_000, 150_001)]
    finder, first, first_masks = least_sets(ranks, groups, [30_000, 10_000])
    second = [finder.least(0, 60_000), finder.least(1, 2_000)]
    finder.survey(values, key_bits(ranks), [30_000, 10_000])
    squares, first_costs, second_costs = finder.sums(np.full(1, 3.0) if uniform else costs, hard.view(np.uint8),
                                                     first, second)
    for g, group in enumerate(groups):
        second_mask = np.zeros(ranks.size, dtype=bool)
        least_mask(key_bits(ranks), group.start, group.stop, second[g], second_mask)
        assert squares[g] == pytest.approx(np.sum(values[first_masks[g]].astype(np.float64) ** 2), rel=1e-12)
        assert first_costs[g] == pytest.approx(np.sum(costs[first_masks[g]]), rel=1e-12)
        assert second_costs[g] == pytest.approx(np.sum(costs[second_mask & ~hard]), rel=1e-12)
        if uniform:  # integer costs: exact in any order
            assert first_costs[g] == np.sum(costs[first_masks[g]])
            assert second_costs[g] == np.sum(costs[second_mask & ~hard])
    sets = np.array([[*first[g][:2], *second[g][:2]] for g in range(2)])
    for parallel in (False, True):  # one thread or several: the same sums, bit for bit
        with_costs = set_sums(values, key_bits(ranks), costs, hard.view(np.uint8), finder._starts, finder._stops,
                              finder._owners, finder._firsts, sets, parallel)
        assert with_costs[:, 0].tolist() == squares  # the squares do not depend on the costs' form
        if not uniform:
            assert np.array_equal(with_costs[:, 2], first_costs) and np.array_equal(with_costs[:, 3], second_costs)


def test_add_scaled_least_is_numpys_masked_add_bit_for_bit():
    rng = np.random.default_rng(4)
    for size in (1_001, 100_001):  # one thread, and the parallel kernel
        source = rng.standard_normal(size).astype(np.float32)
        target = rng.standard_normal(size).astype(np.float32)
        target[:50] = -0.0  # unchosen entries keep their exact bits
        ranks = magnitudes(size, seed=size)
        ranks[size // 2: size // 2 + 30] = ranks[size // 3]  # ties split by ``following``
        k = size // 3 + 20
        mask, least = expected_set(ranks, 0, size, k)
        expected = target.copy()
        expected[mask] += np.float32(2.0 * 0.37) * source[mask]
        add_scaled_least(target, source, key_bits(ranks), least, 2.0 * 0.37)
        assert np.array_equal(target.view(np.uint32), expected.view(np.uint32))


def test_same_magnitudes_compares_the_absolute_values_bit_for_bit():
    weights = np.random.default_rng(8).standard_normal(5_000).astype(np.float32)  # more than one block
    assert same_magnitudes(weights, np.abs(weights)) and not same_magnitudes(weights, weights)
    for index in (0, 2_047, 2_048, 4_999):  # a difference at a block's edge, or in the last entry
        values = np.abs(weights)
        values[index] = np.nextafter(values[index], np.float32(np.inf))
        assert not same_magnitudes(weights, values)
    assert not same_magnitudes(weights, np.abs(weights)[:-1]) and not same_magnitudes(weights, np.abs(weights).astype(np.float64))


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


def test_groups_given_out_of_flat_order_get_the_sets_and_sums_of_the_same_groups_in_order():
    rng = np.random.default_rng(11)
    ranks = magnitudes(20_001, seed=11)
    values = np.where(np.isfinite(ranks), ranks, 0).astype(np.float32)
    costs, hard = rng.random(ranks.size), (rng.random(ranks.size) < 0.1).view(np.uint8)
    groups, ks = [slice(0, 12_000), slice(12_000, 15_000), slice(15_000, 20_001)], [4_000, 900, 2_500]
    order = [2, 0, 1]
    in_order, first, _ = least_sets(ranks, groups, ks)
    shuffled, shuffled_first, _ = least_sets(ranks, [groups[g] for g in order], [ks[g] for g in order])
    assert shuffled_first == [first[g] for g in order]
    second = [in_order.least(g, k // 2) for g, k in enumerate(ks)]
    sums = in_order.sums(costs, hard, first, second)
    shuffled_sums = shuffled.sums(costs, hard, shuffled_first, [second[g] for g in order])
    for column, shuffled_column in zip(sums, shuffled_sums):
        assert [column[g] for g in order] == list(shuffled_column)


def test_protect_strongest_ranks_the_strongest_of_each_row_last_as_argpartition_chooses():
    # the kernel writes a row's strongest when they are unique; ties at the edge and NaN take
    # argpartition's own choice: the ranks are those of argpartition in every case
    from onnx_snn_compress.pruning import ProtectStrongest, protect_strongest

    def by_argpartition(magnitudes, part, rows, count):
        ranked = magnitudes.copy()
        block = ranked[part].reshape(rows, -1)
        np.put_along_axis(block, np.argpartition(-block, count - 1, axis=1)[:, :count], np.inf, axis=1)
        return ranked

    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        magnitudes = np.abs(rng.standard_normal(1_000)).astype(dtype)
        part = slice(600, 1_000)  # 8 rows of 50
        tied = magnitudes.copy()
        tied[650:700] = 0.0  # a row of zeros: every weight ties
        with_nan = magnitudes.copy()
        with_nan[620] = np.nan
        for values in (magnitudes, tied, with_nan):
            for count in (1, 3, 49):
                ranked = protect_strongest(values, part, 8, count)
                assert ranked.tobytes() == by_argpartition(values, part, 8, count).tobytes()
                assert np.array_equal(ranked[:600], values[:600]) and ranked is not values
                out = np.full_like(values, 7.0)  # a buffer holding an earlier selection's ranks
                assert protect_strongest(values, part, 8, count, out) is out and out.tobytes() == ranked.tobytes()
                in_place = values.copy()  # the same ranks over the magnitudes, which it returns where it changed them
                indices, before = ProtectStrongest(part, 8, count).in_place(in_place)
                assert in_place.tobytes() == ranked.tobytes()
                changed = np.flatnonzero(key_bits(ranked) != key_bits(values))  # bits: a NaN left as it was is not
                assert np.array_equal(indices, changed) and before.tobytes() == values[indices].tobytes()
        assert selection.set_strongest(magnitudes[part].reshape(8, -1).copy(), 2)
        assert not selection.set_strongest(tied[part].reshape(8, -1).copy(), 2)


def test_the_flat_magnitudes_and_their_check_are_numpys_abs_in_one_thread_or_several():
    weights = np.random.default_rng(10).standard_normal(300_001).astype(np.float32)  # above the parallel size
    weights[:4] = [-0.0, -np.inf, np.nan, -np.nan]
    out = np.empty_like(weights)
    selection.magnitudes_into(weights, out)
    assert out.tobytes() == np.abs(weights).tobytes()
    bits = weights.view(np.uint32)
    parallel = np.empty_like(bits)
    selection._magnitudes_parallel(bits, parallel, selection._SIGN_BITS[4])
    assert parallel.tobytes() == np.abs(weights).tobytes()
    for kernel in (selection._same_magnitudes_kernel, selection._same_magnitudes_parallel):
        assert kernel(bits, np.abs(weights).view(np.uint32), selection._SIGN_BITS[4])
        for index in (5, 65_535, 65_536, 300_000):  # a chunk's edge, the last entry
            values = np.abs(weights)
            values[index] = np.nextafter(values[index], np.float32(np.inf))
            assert not kernel(bits, values.view(np.uint32), selection._SIGN_BITS[4])
