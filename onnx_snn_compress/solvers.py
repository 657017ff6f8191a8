"""How each method chooses which synapses to prune during a budget's search stage.

A method sees the trainer after every optimizer step and answers with the flat
bool vector of pruned weights once the budget is met (``None`` while it still
searches). All methods get the same number of training steps per budget; what is
left of them after the search is spent finetuning with the mask frozen.

minimax (Chen et al., ACM MM 2023), made robust::

    min_{W,s} max_{y>=0, z>=0}  L(W) + y * sum(least ceil(s) squared weights) + z * (R(s)/R0 - b)

each step: the gradient ``2 y w`` of the penalty joins the loss gradient of the
least-s weights (see :meth:`Minimax.penalty` for why not a proximal step), the
optimizer steps on W; then a step on s (as a fraction of the group's weights)
with gradient ``y * u - z * c`` (``u``: squared magnitude of the next weight to
prune, ``c``: its resource cost, both relative to their means over the group's
weights still in play, not pruned by an earlier budget: a straight-through
gradient through ``ceil``), taken in units of the share of
the group that costs the distance ``d = R(start)/R0 - b`` to the budget;
projected dual ascent on ``y`` (the relative squared mass of the least-s
weights) and ``z`` (the resource excess in units of ``d``, so a budget close to
the previous one is approached as fast as a far one); then the least-s set is
recomputed. The budget is met when pruning the
least-s set brings the resource to ``b``. Duals are clipped, so no learning rate
can make them overflow, and the search is bounded in steps. The least-s set is
taken in the order of ``rank`` (magnitude, with protected synapses last: see
``pruning.protect_strongest``). docs/solver.md has the whole algorithm.

minimax-paper: the reference, as the authors' code runs it (with the product's fixes:
validation snapshots, bounded search, hard masks, scale-free s steps). After
the optimizer step the least-s weights are shrunk by the proximal operator of
the penalty, ``w <- w / (1 + 2 lr y)``; plain gradient steps on s (as above, but
in absolute units: no distance),
``y += lr_y * m`` (``m``: the relative squared mass of the least-s set) and
``z += lr_z * max(0, R/R0 - b_last)``, so y and z only grow;
the resource term aims at the *last* budget of the schedule in one trajectory,
and each budget is a stopping point on it (the state carries over). Its
finetune restarts at 10x the search learning rate with a cosine decay
(``compress.py``).

magnitude: prune the least-magnitude weights at once until the budget is met.
gradual: Zhu & Gupta (2017): the resource target follows
``b + (r0 - b) * (1 - t / n)^3`` over the search steps, pruning by magnitude
every ``n / 10`` steps.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from .kernels import search_step as arithmetic
from .kernels.search_step import TINY, dual_step, s_step, search_step, set_sizes
from .kernels.selection import kept_cost, key_bits, least_mask, uniform_cost
from .least_sets import LeastSets
from .optim import Penalty
from .pruning import FlatWeights, ProtectStrongest, magnitude_prune_to

METHODS = ("minimax", "minimax-paper", "magnitude", "gradual")
MIN_DISTANCE = 1e-6  # of R0: a search that starts at its budget takes finite steps
# weights from which a rank that can (``in_place``) ranks the |w| buffer itself: below, its Python (the
# protected |w| kept, their chunk summed again, restored for a check) costs more than the copy it saves
# (one thread, thread CPU time, `NUMBA_NUM_THREADS=1 python bench/rank_in_place.py`, least of 6 rounds:
# digits_mlp's 9,472 weights, step 0.18 ms copied against 0.25 in place with this at 0; mnist_mlp's 635,200,
# step + Adam's add 1.95 against 1.74 ms)
RANK_IN_PLACE_FROM = 1 << 16


@dataclass
class Budget:
    """What a search stage needs to know about the resource (all figures per inference)."""

    target: float  # b: the budget as a fraction of the input model's resource
    reference: float  # R0: the input model's resource
    fixed: float  # resource of synapse layers that are not pruned
    goal: float | None = None  # what the resource dual aims at (minimax-paper: the last budget); None: target

    @property
    def aim(self) -> float:
        return self.target if self.goal is None else self.goal


@dataclass
class MinimaxState:
    """The solver's variables for one budget; plain floats and arrays, so they checkpoint exactly."""

    sigma: np.ndarray  # pruned fraction per group (one group, or one per layer)
    y: np.ndarray  # sparsity duals per group
    z: float = 0.0  # resource dual
    history: list = field(default_factory=list)


@dataclass
class Selection:
    """The least-s sets of one set of weights: per group ``(bound, following, size)`` (the set:
    the weights whose rank keys are below ``bound``, and those equal to it before flat index
    ``following``; kernels/selection.py) and each group's sum of squared weights. ``values``
    is a reused buffer of the solver's: valid until its next selection but one."""

    values: np.ndarray  # the flat's native_magnitudes() they were selected on (but at ``protected``)
    keys: np.ndarray  # key_bits of their ranks (a view of ``values``, or of a buffer of the solver's, as ``values``)
    sigma: np.ndarray
    hard_pruned: np.ndarray  # the array passed (the caller never changes it in place)
    sets: list
    squares: np.ndarray  # per group: the sum of its squared values (float64)
    read: tuple | None = None  # (optimizer, its ``writes``) when ``values`` were read: None, no optimizer known
    # (flat indices, their |w|) where ``values`` hold the rank +inf (ranked in place), or None; a set never
    # holds them (+inf is above every set's bound), so only the squares of all values and the check need them
    protected: tuple | None = None
    set_array: np.ndarray | None = None  # ``sets`` as int64 [G, 3], where made so (None: made from them when asked)

    def set_rows(self) -> np.ndarray:
        """``sets`` as int64 ``[G, 3]``."""
        if self.set_array is None:
            self.set_array = np.array(self.sets, np.int64).reshape(-1, 3)
        return self.set_array

    def native_magnitudes(self) -> np.ndarray:
        """The |w| selected on, of their dtype: ``values`` itself, or a copy with the protected
        synapses' own |w| where ``values`` hold their rank."""
        if self.protected is None:
            return self.values
        native = self.values.copy()
        native[self.protected[0]] = self.protected[1]
        return native

    def magnitudes(self) -> np.ndarray:
        """The |w| selected on, as float64 (a copy)."""
        return self.native_magnitudes().astype(np.float64)


def resource_after(costs: np.ndarray, pruned: np.ndarray, budget: Budget) -> float:
    """The resource as a fraction of R0 when ``pruned`` weights are removed."""
    return resource_fraction(kept_cost(costs, pruned), budget)


def resource_fraction(kept: float, budget: Budget) -> float:
    """The resource as a fraction of R0 when the prunable weights left cost ``kept``."""
    return (budget.fixed + kept) / budget.reference


def unranked(magnitudes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return magnitudes


class Minimax:
    """``rank(magnitudes, out)`` orders the weights for pruning (default: by magnitude itself;
    ``pruning.protect_strongest`` ranks protected synapses last), into ``out`` (a buffer of the
    solver's, as ``magnitudes``) when it does not return ``magnitudes`` itself; a rank with an
    ``in_place(magnitudes)`` method (``pruning.ProtectStrongest``) ranks the solver's float32 |w|
    buffer itself from ``RANK_IN_PLACE_FROM`` weights, keeping the |w| of the entries it changed (no
    copy of all ranks). ``flat``: a
    ``pruning.FlatWeights``, or a ``structured.ChannelGroups`` whose units are whole channels;
    the solver uses only their ``native_magnitudes``, ``same_magnitudes``, ``add_scaled_least`` and
    ``scale_weights`` (and a ``FlatWeights``' ``add_scaled_sets``, ``least_terms``, ``magnitude_views``,
    ``layer_slices`` and ``offsets``, to add the penalty in one call and hand Adam the penalty and the
    |w| copy: ``optim.Penalty``).

    The ranks are ``rank(|w|)`` of float32 weights (their float64 squares, which the method is
    defined on, are exact and order as |w|), else ``rank(w * w)``. The least-s sets are found by
    ``least_sets.LeastSets`` (one survey pass a step); the s step and the dual ascent are
    ``kernels.search_step``'s, and a whole :meth:`step` is one call of it (``search_step``, with the
    windows in the kernels: ``least_sets.KERNEL_WINDOWS``). Flat buffers are reused
    from step to step, and per-search constants (the distance, each group's cost and
    hard-pruned count) while the same ``costs`` and ``hard_pruned`` arrays are passed: pass new
    arrays when they change, never change them in place."""

    def __init__(self, flat: FlatWeights, groups: list[slice], lr_s: float, lr_y: float, lr_z: float,
                 tolerance: float = 0.01, rank=unranked):
        self.flat, self.groups, self.rank = flat, groups, rank
        self.lr_s, self.lr_y, self.lr_z, self.tolerance = lr_s, lr_y, lr_z, tolerance
        self._gaps = _gaps(groups)  # the flat ranges no group holds
        self._group_sizes = np.array([group.stop - group.start for group in groups], np.int64)
        self._bounds = np.array([(group.start, group.stop) for group in groups], np.int64).reshape(-1, 2)
        self._least = LeastSets(groups, flat.size)
        self._last: Selection | None = None  # the latest selection: the penalty reuses it on equal inputs
        self._constants: SearchConstants | None = None
        self._values = []  # up to two buffers for native_magnitudes (one may be held by _last)
        self._ranks = []  # up to two buffers for the ranks, likewise
        self._handed = None  # (the last penalty, the buffer its optimizer step is to fill with |w|)
        self._optimizer = None  # the optimizer that stepped with a penalty: its ``writes`` date the |w| read

    def start(self, hard_pruned: np.ndarray) -> MinimaxState:
        floor = np.array([hard_pruned[g].mean() if g.stop > g.start else 0.0 for g in self.groups])
        return MinimaxState(sigma=floor.copy(), y=np.zeros(len(self.groups)))

    # -- the least-s sets ----------------------------------------------------------
    def _fresh_values(self) -> tuple[np.ndarray, tuple | None]:
        """``flat.native_magnitudes()``, into a buffer the last selection does not hold, and
        (optimizer, its ``writes``) now (None while no optimizer filled a penalty's buffer); no pass
        when the optimizer step of the last :meth:`penalty` wrote them there and changed nothing since."""
        out = self._spare_values()
        handed, self._handed = self._handed, None  # one use: a later call copies
        if handed is not None and handed[0].stepped is not None:
            self._optimizer = handed[0].stepped[0]
        read = None if self._optimizer is None else (self._optimizer, self._optimizer.writes)
        if out is not None and handed is not None and handed[1] is out and handed[0].magnitudes_current():
            return out, read
        values = self.flat.native_magnitudes(out)
        if out is None and len(self._values) < 2:
            self._values.append(values)
        return values, read

    def _spare_values(self) -> np.ndarray | None:
        """The buffer :meth:`_fresh_values` fills next (one the last selection does not hold), if made."""
        held = None if self._last is None else self._last.values
        for buffer in self._values:
            if buffer is not held:
                return buffer
        return None

    def _select(self, values: np.ndarray, read: tuple | None, sigma: np.ndarray, hard_pruned: np.ndarray) -> Selection:
        """The least-s sets of ``values`` (read at ``read``: :meth:`_fresh_values`) for the fractions
        ``sigma`` (one survey pass); becomes the last selection."""
        keys, protected = self._ranked(values)
        squares, sets = self._least.locate(values, keys, self._sizes(sigma, hard_pruned), protected)
        self._last = Selection(values, keys, sigma.copy(), hard_pruned, sets, squares, read, protected)
        return self._last

    def _ranked(self, values: np.ndarray) -> tuple[np.ndarray, tuple | None]:
        """The keys (``key_bits``) of the ranks of ``values`` and, where the rank was applied in
        place, ``(flat indices, their |w|)`` of the entries it changed (else None)."""
        in_place = getattr(self.rank, "in_place", None)
        if in_place is not None and values.dtype == np.float32 and values.size >= RANK_IN_PLACE_FROM:
            # the ranks over |w| in their own buffer: no copy
            protected = in_place(values)
            return key_bits(values), protected
        magnitudes = values if values.dtype == np.float32 else values * values
        return key_bits(np.ascontiguousarray(self.rank(magnitudes, self._rank_buffer(magnitudes)))), None

    def _rank_buffer(self, magnitudes: np.ndarray) -> np.ndarray:
        """A buffer for the ranks of ``magnitudes`` that the last selection's keys do not view."""
        held = None if self._last is None else self._last.keys.base
        for buffer in self._ranks:
            if buffer is not held and buffer.dtype == magnitudes.dtype and buffer.shape == magnitudes.shape:
                return buffer
        out = np.empty_like(magnitudes)
        self._ranks = [buffer for buffer in self._ranks if buffer is held] + [out]
        return out

    def _sizes(self, sigma: np.ndarray, hard_pruned: np.ndarray) -> np.ndarray:
        """Per group, the size of its least-s set for the fractions ``sigma`` (float64 ``[G]``):
        int64 ``[G]`` (``kernels.search_step.set_sizes``)."""
        sizes = np.empty(len(self.groups), np.int64)
        set_sizes(sigma, self._group_sizes, self._constants_for(None, hard_pruned, None).hard_counts, sizes)
        return sizes

    def _mask(self, selection: Selection) -> np.ndarray:
        """The bool mask of ``selection``'s sets over the flat space (False where no group lies)."""
        mask = np.empty(selection.values.size, np.bool_)
        for gap in self._gaps:
            mask[gap] = False  # what no group holds is never pruned by the solver
        for group, least in zip(self.groups, selection.sets):
            least_mask(selection.keys, group.start, group.stop, least, mask)
        return mask

    def _current(self, sigma: np.ndarray, hard_pruned: np.ndarray) -> Selection:
        """The sets of the weights now: those the last selection (a :meth:`step`'s, whose weights
        the next training step's penalty sees) made, when its inputs are equal; else selected."""
        last = self._last
        if last is not None and self._holds(last, sigma, hard_pruned) and self._unchanged(last):
            return last
        return self._select(*self._fresh_values(), sigma, hard_pruned)

    def _unchanged(self, selection: Selection) -> bool:
        """Whether the weights' |w| are still those ``selection`` was made on: by the optimizer's
        counter when one dated them (no step, mask change or state load since: the contract of
        :meth:`penalty`), else by a read-only pass comparing them."""
        read = selection.read
        if read is not None and read[0].writes == read[1]:
            return True
        return self.flat.same_magnitudes(selection.native_magnitudes())

    @staticmethod
    def _holds(selection: Selection, sigma: np.ndarray, hard_pruned: np.ndarray) -> bool:
        """Whether ``selection`` was made for these s and hard-pruned weights."""
        # lists of Python floats compare as np.array_equal (-0.0 == 0.0, NaN unequal, shapes), in fewer calls
        return selection.sigma.tolist() == sigma.tolist() and _same(selection.hard_pruned, hard_pruned)

    def _constants_for(self, costs: np.ndarray | None, hard_pruned: np.ndarray, budget: Budget | None):
        """The search's constants for these arrays (kept while the same arrays are passed); with
        ``costs`` None, those that depend on ``hard_pruned`` alone."""
        constants = self._constants
        if constants is None or not _same(constants.hard_pruned, hard_pruned):
            hard = np.ascontiguousarray(hard_pruned, dtype=np.bool_)
            constants = self._constants = SearchConstants(
                hard_pruned, np.array([np.count_nonzero(hard_pruned[group]) for group in self.groups], np.int64),
                hard.view(np.uint8) if hard.any() else np.zeros(1, np.uint8))
        if costs is not None and (not _same(constants.costs, costs) or constants.budget != _budget_key(budget)):
            constants.costs, constants.budget = costs, _budget_key(budget)
            constants.distance = self._distance(costs, hard_pruned, budget)
            constants.group_costs = [float(np.sum(costs[group])) for group in self.groups]
            groups_cost = sum(constants.group_costs)  # the span's unit; one group: its own cost, bit for bit
            constants.in_play_costs = [kept_cost(costs[group], hard_pruned[group]) for group in self.groups]
            constants.scales = np.array([
                (*self._scales(size, hard_count, group_cost, in_play_cost), hard_count / size if size else 0.0,
                 self._span(constants.distance, budget, groups_cost), self._step_limit)
                for size, hard_count, group_cost, in_play_cost in zip(
                    self._group_sizes.tolist(), constants.hard_counts.tolist(), constants.group_costs,
                    constants.in_play_costs)], np.float64).reshape(len(self.groups), 5)
            constants.costs64 = np.ascontiguousarray(costs, dtype=np.float64)
            uniform = uniform_cost(costs)
            constants.cost_view = constants.costs64 if uniform is None else np.full(1, uniform)
            constants.total_cost = float(np.sum(costs))
            constants.hard_cost = float(np.sum(costs[hard_pruned]))
            constants.parameters = np.zeros(arithmetic.PARAMETERS)
            for index, value in ((arithmetic.LR_S, self.lr_s), (arithmetic.LR_Y, self.lr_y),
                                 (arithmetic.LR_Z, self.lr_z), (arithmetic.TOLERANCE, self._tolerance),
                                 (arithmetic.GROW_ONLY, float(self.grow_only)),
                                 (arithmetic.TOTAL_COST, constants.total_cost),
                                 (arithmetic.HARD_COST, constants.hard_cost), (arithmetic.FIXED, budget.fixed),
                                 (arithmetic.REFERENCE, budget.reference), (arithmetic.AIM, budget.aim),
                                 (arithmetic.DISTANCE, constants.distance)):
                constants.parameters[index] = value
        return constants

    grow_only = False  # whether the resource dual ascends on the excess only where it is positive

    @property
    def _tolerance(self) -> float:
        """The relative squared mass of the least-s set at which the sparsity dual stops growing."""
        return self.tolerance

    def penalty(self, state: MinimaxState, hard_pruned: np.ndarray, held: bool = False, then_step: bool = True):
        """The gradient of ``y * sum(least-s squared weights)``, to add before the optimizer step.

        The paper shrinks the least-s weights with a proximal step ``w / (1 + 2 lr y)``
        after plain SGD. Under Adam that shrink loses against Adam's normalised
        steps (a weight with a tiny loss gradient still moves by about lr per step),
        so the term enters the gradient and Adam's own preconditioning applies it;
        to first order in ``lr * y`` this is the same step for SGD. The returned
        ``optim.Penalty`` adds it when called (it reads the sets' keys then: call it before the
        next :meth:`step`); for a ``FlatWeights`` it also carries the same gradient per layer, for
        Adam to add in its own pass, and the flat buffer in which Adam is to write the |w| that
        the next :meth:`step` reads (which then needs no pass of its own).

        The sets of the last :meth:`step` are reused when s and the hard-pruned weights are those
        it left and the weights did not move since. Once an optimizer step has taken a penalty (fused
        in Adam's pass or added: ``optim.Penalty.stepped``), that the weights did not move is read off
        that optimizer's counter (``Optimizer.writes``: no step, mask change or state load since the
        |w| were read), with no pass: so, as for :meth:`step`, between a step and this call change the
        weights only through that optimizer, as ``compress.py`` does. Before that (no optimizer known:
        the penalty given as a plain function, units of ``structured.ChannelGroups``), or when the counter moved, one
        read-only pass compares |w| with those selected on. Where the keys are the bits of the
        |w| selected on (ranked by |w| itself, or in place, outside the layer of protected
        synapses), Adam reads membership in the set from the weights themselves: give the penalty to
        the optimizer step right after it, the weights unchanged in between (``Trainer.train_step``).

        ``held``: between two search steps (``compress.CompressConfig.search_every``) the sets of the
        last :meth:`step` (or selection) are *held* while s and the hard-pruned weights are the same
        (with none, a selection). Where the rank is |w| (``unranked``, ``pruning.ProtectStrongest``)
        of float32 weights, each set is held as the *threshold* it is: the weights whose |w| is now
        below its bound, strictly (protected synapses too, which are never pruned but may be
        penalised there), which Adam reads from the weights in its pass (one range a layer, no key
        read); else (another rank, channel units) as the same units, by the keys selected on.
        ``then_step``: whether a :meth:`step` follows this penalty's optimizer step; if not, Adam
        is not given the |w| buffer to fill.
        """
        last = self._last
        held = held and last is not None and self._holds(last, state.sigma, hard_pruned)
        selection = last if held else self._current(state.sigma, hard_pruned)
        by_threshold = (held and isinstance(self.flat, FlatWeights) and selection.values.dtype == np.float32
                        and (self.rank is unranked or isinstance(self.rank, ProtectStrongest)))
        sets = selection.sets
        if by_threshold:  # below the bound, no tie: every set's ``following`` its group's first weight
            sets = [(least[0], group.start, least[2]) for least, group in zip(sets, self.groups)]

        def add(grads):
            if isinstance(self.flat, FlatWeights):  # every set in one call for a small network
                keys = key_bits(self.flat.native_magnitudes(self._spare_values())) if by_threshold else selection.keys
                rows = np.array(sets, np.int64).reshape(-1, 3) if by_threshold else selection.set_rows()
                self.flat.add_scaled_sets(grads, keys, self._bounds, rows, 2.0 * state.y)
                return
            for group, least, y in zip(self.groups, selection.sets, state.y):
                if y > 0:
                    self.flat.add_scaled_least(grads, selection.keys, least, group, 2.0 * y)

        if not isinstance(self.flat, FlatWeights):  # units that are not single weights: no per-entry form
            return Penalty(add)
        spare = self._spare_values() if then_step else None
        if getattr(self._optimizer, "fuse_from", -1) > self.flat.size:
            # the optimizer that steps with the penalties fuses none of this size (Adam.fuse_from, over
            # the entries of the parameters it adds to: at most the flat's): it only calls ``add``
            penalty = Penalty(add)
        else:
            if by_threshold:  # Adam reads membership from every layer's weights
                by_magnitude = frozenset(f"{name}.weight" for name, _ in self.flat.layer_slices())
            else:  # held: by the keys selected on, everywhere; else from |w| where the keys are theirs
                by_magnitude = frozenset() if held else self._keys_are_magnitudes(selection)
            penalty = Penalty(add, self._least_terms(selection, sets, state.y, by_magnitude),
                              {} if spare is None else self.flat.magnitude_views(spare))
        self._handed = (penalty, spare)
        return penalty

    def _least_terms(self, selection: Selection, sets: list, y: np.ndarray,
                     by_magnitude: frozenset) -> dict[str, tuple] | None:
        """The penalty's gradient per parameter (``FlatWeights.least_terms``) of ``sets`` (as
        ``selection.sets``), or None where a layer meets two penalised groups (Adam's pass adds
        one set per parameter); Adam reads membership from the weights of the parameters named in
        ``by_magnitude``, from ``selection.keys`` elsewhere."""
        terms = {}
        for group, least, dual in zip(self.groups, sets, y):
            if dual > 0:
                for name, term in self.flat.least_terms(selection.keys, least, group, 2.0 * dual, by_magnitude).items():
                    if name in terms:
                        return None
                    terms[name] = term
        return terms

    def _keys_are_magnitudes(self, selection: Selection) -> frozenset:
        """The parameters whose keys are the bits of their |w| now: where the keys view the |w|
        selected on (ranked by |w| itself, or in place) and no protected synapse lies (the
        penalty's selection is of the weights now: :meth:`_current`). Adam tests membership
        in the set on their weights, without reading the keys."""
        if selection.keys.base is not selection.values:
            return frozenset()
        slices = list(self.flat.layer_slices())
        names = [f"{name}.weight" for name, _ in slices]
        if selection.protected is not None and selection.protected[0].size:  # flat indices, ascending
            starts = [part.start for _, part in slices]  # (Python's bisect: a few layers, no numpy call)
            first, last = (bisect_right(starts, int(selection.protected[0][index])) - 1 for index in (0, -1))
            names = names[:first] + names[last + 1:]  # the layers from the first protected synapse's to the last's
        return frozenset(names)

    def step(self, state: MinimaxState, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
             lr: float = 0.0, steps: int = 1):
        """After the optimizer step (of learning rate ``lr``): step on s, dual ascent, new
        least-s sets; returns the pruned vector once pruning them meets the budget
        (``None`` otherwise). ``steps``: the training steps since the last search step (the
        penalty held the sets between them): the s and dual step sizes are ``steps`` times
        theirs, so s and the duals move at the same rate per training step (an Euler step of
        ``steps``). The |w| that Adam wrote in the training step of the last
        :meth:`penalty` are read as they are (``optim.Penalty.magnitudes_current``): between that
        step and this call, change the weights only through the optimizer (a mask, a step, a
        state load: the |w| are then copied anew), as ``compress.py`` does."""
        values, read = self._fresh_values()
        constants = self._constants_for(costs, hard_pruned, budget)
        parameters = constants.parameters
        if steps != 1:
            parameters = parameters.copy()
            for index in (arithmetic.LR_S, arithmetic.LR_Y, arithmetic.LR_Z):  # finite, as any step size given
                parameters[index] = min(float(parameters[index]) * steps, sys.float_info.max)
        keys, protected = self._ranked(values)
        layout = self._least.direct_layout(keys)
        if layout is not None:  # the whole step in one call
            sets, squares = np.empty((len(self.groups), 3), np.int64), np.empty(len(self.groups))
            state.z, after = search_step(
                values, keys, *layout, *self._least.pass_arguments(values, protected), constants.costs64,
                constants.cost_view, constants.hard_view, state.sigma, state.y, state.z, constants.scales,
                self._group_sizes, constants.hard_counts, parameters, sets, squares)
            selection = self._last = Selection(values, keys, state.sigma.copy(), hard_pruned, sets.tolist(), squares,
                                               read, protected, sets)
        else:
            selection, after = self._step_by_sets(state, values, read, keys, protected, constants, parameters,
                                                  hard_pruned)
        if after > budget.target:
            return None
        if len(self.groups) == 1:
            # the s step can overshoot; keep every weight the budget allows (the least-s set is
            # ranked by magnitude, so this is its smallest prefix that meets the budget)
            wide = selection.magnitudes()
            return magnitude_to_budget(self.rank(np.sqrt(wide * wide)), costs, hard_pruned, budget)
        return self._cut_back(selection.keys, [least[2] for least in selection.sets], costs, hard_pruned, budget)

    def _cut_back(self, keys: np.ndarray, after: list[int], costs: np.ndarray, hard_pruned: np.ndarray,
                  budget: Budget) -> np.ndarray:
        """The pruned vector of per-group least sets that meets the budget: each group's set that the
        step met it with (``after[g]`` units: its size), less the same share ``1 - j / m`` of what
        it adds to the group's hard-pruned units (``m``: the largest such addition), for the least
        ``j`` in ``[0, m]`` that meets the budget (found by bisection; ``j = m``: the step's own sets).

        With one s per layer the sets can overshoot by whole layers: digits_mlp per layer, 5 %: s
        of fc1 rose from 0.69 to 1 in the step that met the budget, and pruning its sets kept no
        fc1 synapse (10 % test accuracy); minimax-paper carries s = 1 of conv2 and fc1 from 2 % into
        1 % on digits_conv, and kept none of either. Cut back this way, every group keeps the
        units the step's sets leave it plus its share of the overshoot, and the budget is met
        within one unit per group. ``keys``: the sets' rank keys (flat ``[n]``)."""
        orders = [group.start + np.argsort(keys[group], kind="stable") for group in self.groups]  # (key, index) order
        floor = [int(np.count_nonzero(hard_pruned[group])) for group in self.groups]
        move = max(1, max(size - least for least, size in zip(floor, after)))

        def pruned_at(j: int) -> np.ndarray:
            mask = hard_pruned.copy()
            for order, least, size in zip(orders, floor, after):
                mask[order[:least + (j * (size - least)) // move]] = True
            return mask

        low, high = 0, move  # pruned_at(move), the step's own sets, meets the budget
        while low < high:
            middle = (low + high) // 2
            if resource_after(costs, pruned_at(middle), budget) <= budget.target:
                high = middle
            else:
                low = middle + 1
        return pruned_at(high)

    def _step_by_sets(self, state: MinimaxState, values: np.ndarray, read: tuple | None, keys: np.ndarray,
                      protected: tuple | None, constants, parameters: np.ndarray,
                      hard_pruned: np.ndarray) -> tuple[Selection, float]:
        """:meth:`step`'s sets, s step and dual steps through ``LeastSets``' windows in Python (a pass
        per call; ``least_sets.KERNEL_WINDOWS`` False: the reference of the one call, whose arithmetic
        is the same ``kernels.search_step``'s); returns the
        selection after the s step and the resource after pruning it (a fraction of R0)."""
        squares, before = self._least.locate(values, keys, self._sizes(state.sigma, hard_pruned), protected)
        selection = Selection(values, keys, state.sigma.copy(), hard_pruned, before, squares, read, protected)
        sizes = np.empty(len(self.groups), np.int64)
        s_step(state.sigma, state.y, state.z, squares, np.array([least[1] for least in before], np.int64), values,
               constants.costs64, constants.scales, parameters[arithmetic.LR_S], self._group_sizes,
               constants.hard_counts, sizes)
        after = [self._least.least(g, k) for g, k in enumerate(sizes.tolist())]
        # the squares and cost of the sets before the s step (for the duals), the cost after it
        sums = self._least.sums(constants.cost_view, constants.hard_view, before, after)
        for g, (least, previous) in enumerate(zip(after, before)):
            self._least.recentre(g, least[2], previous[2])
        state.z, resource = dual_step(state.y, state.z, squares, *(np.array(column, np.float64) for column in sums),
                                      parameters)
        selection.sets, selection.sigma = after, state.sigma.copy()
        self._last = selection
        return selection, resource

    @staticmethod
    def _scales(size: int, pruned_before: int, group_cost: float, in_play_cost: float) -> tuple[int, float]:
        """(the count mean w^2 is taken over, mean cost) of a group's weights **still in play**, those no
        earlier budget pruned (``size`` weights, ``pruned_before`` of them hard-pruned; the pruned are
        zero, so a group's sum of w^2 is theirs; ``group_cost`` / ``in_play_cost``: the costs of all /
        of those in play): the scales of the s step's u and c, ``mean w^2 = sum / count + TINY``. Over
        the whole group, u / mean(w^2) would grow as 1 / (the share still in play), and the y term
        would hold s back ever harder as budgets shrink (digits_conv 1 % after 2 %: 70 x;
        docs/solver.md, item 7)."""
        in_play = max(1, size - pruned_before)
        return in_play, in_play_cost / in_play + TINY

    def _distance(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget) -> float:
        """d = R(start)/R0 - b: how far the search has to go, the resource before it (with only the
        earlier budgets' synapses pruned) minus the aim; the resource dual ascends on the excess in
        units of d."""
        return max(resource_after(costs, hard_pruned, budget) - budget.aim, MIN_DISTANCE)

    @staticmethod
    def _span(distance: float, budget: Budget, groups_cost: float) -> float:
        """The share of the groups' weights whose cost is ``distance`` x R0 (at most 1; ``groups_cost``:
        the cost of every group's weights): s steps are taken in this unit, so a budget near the last
        one is approached as fast as a far one. With one s per layer the unit is the same for every
        layer: the distance is the whole model's (a layer's own share of it was up to 7 x larger
        for a small layer, docs/solver.md item 15)."""
        return min(1.0, distance * budget.reference / (groups_cost + TINY))

    @property
    def _step_limit(self) -> float:
        """The most the s step's gradient counts, either way: +inf with one group; 1 with one s per
        layer, where a layer whose boundary reaches its strongest weights gets a y term tens of
        times the z term and its s fell from 0.9 to its floor in one step, again and again
        (docs/solver.md item 15)."""
        return math.inf if len(self.groups) == 1 else 1.0


class PaperMinimax(Minimax):
    """The reference dynamics: a proximal shrink instead of a penalty gradient, and duals that only grow."""

    def penalty(self, state: MinimaxState, hard_pruned: np.ndarray, held: bool = False, then_step: bool = True):
        return None

    @staticmethod
    def _scales(size: int, pruned_before: int, group_cost: float, in_play_cost: float) -> tuple[int, float]:
        # over the whole group, pruned weights included: np.mean, bit for bit (an empty group's are never used)
        return max(1, size), group_cost / max(1, size) + TINY

    def _distance(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget) -> float:
        return 1.0  # absolute steps: the excess itself, in fractions of R0

    @staticmethod
    def _span(distance: float, budget: Budget, groups_cost: float) -> float:
        return 1.0

    _step_limit = math.inf  # the reference's s step, unclipped

    grow_only = True  # z ascends on max(0, excess)

    @property
    def _tolerance(self) -> float:
        return 0.0  # y ascends on the mass itself: y + lr_y * (m - 0.0) is y + lr_y * m, bit for bit

    def step(self, state: MinimaxState, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
             lr: float = 0.0, steps: int = 1):
        """The proximal step of ``y * sum(least-s squared weights)``, ``w / (1 + 2 lr y)`` on
        the least-s set, then the s and dual steps of :meth:`Minimax.step`."""
        selection = self._select(*self._fresh_values(), state.sigma, hard_pruned)
        mask = self._mask(selection)
        for group, y in zip(self.groups, state.y):
            if y > 0:
                self.flat.scale_weights(np.flatnonzero(mask[group]) + group.start, 1.0 / (1.0 + 2.0 * lr * y))
        return super().step(state, costs, hard_pruned, budget, lr, steps)


@dataclass
class SearchConstants:
    """What a search step needs that changes only with the costs, the hard-pruned weights or the
    budget: kept while the same arrays (or equal ones) are passed."""

    hard_pruned: np.ndarray
    hard_counts: np.ndarray  # int64 [G]: per group, its hard-pruned weights (the floor of its s)
    hard_view: np.ndarray  # uint8 [n] (1: hard-pruned), or [1] zero when none is (kernels.selection.set_sums)
    costs: np.ndarray | None = None
    budget: tuple | None = None
    distance: float = 0.0
    group_costs: list = field(default_factory=list)  # per group: np.sum(costs[group])
    in_play_costs: list = field(default_factory=list)  # per group: the costs of its weights not hard-pruned
    # float64 [G, 5]: per group, the s step's (count its mean w^2 is over, mean cost, floor of s, span,
    # limit of its gradient): Minimax._scales, _span, _step_limit
    scales: np.ndarray | None = None
    costs64: np.ndarray | None = None  # the costs as float64 [n]
    cost_view: np.ndarray | None = None  # float64 costs [n], or [1]: the one cost of every weight
    total_cost: float = 0.0  # np.sum(costs)
    hard_cost: float = 0.0  # the costs of the hard-pruned weights
    parameters: np.ndarray | None = None  # float64 [kernels.search_step.PARAMETERS]: the dual step's constants


def _same(kept: np.ndarray | None, given: np.ndarray) -> bool:
    """Whether ``given`` is the array kept (the caller never changes one in place), or equal to it."""
    return kept is given or (kept is not None and np.array_equal(kept, given))


def _budget_key(budget: Budget) -> tuple:
    return budget.target, budget.reference, budget.fixed, budget.aim


def _gaps(groups: list[slice]) -> list[slice]:
    """The flat ranges before, between and after ``groups`` that none of them holds."""
    gaps, end = [], 0
    for group in sorted(groups, key=lambda g: g.start):
        if group.start > end:
            gaps.append(slice(end, group.start))
        end = max(end, group.stop)
    return gaps + [slice(end, None)]


def magnitude_to_budget(magnitudes: np.ndarray, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
                        target: float | None = None) -> np.ndarray:
    """Prune by magnitude (global) until the resource is at most ``target`` (default: the budget)."""
    target = budget.target if target is None else target
    excess = (budget.fixed + float(np.sum(costs[~hard_pruned]))) - target * budget.reference
    return magnitude_prune_to(magnitudes, costs, hard_pruned, excess)


def gradual_target(step: int, search_steps: int, start: float, budget: float) -> float:
    """Zhu & Gupta's cubic schedule, as a resource fraction."""
    progress = min(1.0, step / max(1, search_steps))
    return budget + (start - budget) * (1.0 - progress) ** 3
