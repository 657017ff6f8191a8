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
prune, ``c``: its resource cost, both relative to their group means: a
straight-through gradient through ``ceil``), taken in units of the share of
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
from dataclasses import dataclass, field

import numpy as np

from .kernels.selection import finite_count, kept_cost, least_set
from .pruning import FlatWeights, magnitude_prune_to

METHODS = ("minimax", "minimax-paper", "magnitude", "gradual")
DUAL_LIMIT = 1e8  # duals beyond this only saturate the shrink factor; clipping keeps every number finite
TINY = 1e-30
MIN_DISTANCE = 1e-6  # of R0: a search that starts at its budget takes finite steps


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


def resource_after(costs: np.ndarray, pruned: np.ndarray, budget: Budget) -> float:
    """The resource as a fraction of R0 when ``pruned`` weights are removed."""
    return (budget.fixed + kept_cost(costs, pruned)) / budget.reference


def unranked(magnitudes: np.ndarray) -> np.ndarray:
    return magnitudes


class Minimax:
    """``rank(magnitudes)`` orders the weights for pruning (default: by magnitude itself;
    ``pruning.protect_strongest`` ranks protected synapses last). ``flat``: a
    ``pruning.FlatWeights``, or a ``structured.ChannelGroups`` whose units are whole channels;
    the solver uses only their ``weights()``, ``add_scaled_weights`` and ``scale_weights``."""

    def __init__(self, flat: FlatWeights, groups: list[slice], lr_s: float, lr_y: float, lr_z: float,
                 tolerance: float = 0.01, rank=unranked):
        self.flat, self.groups, self.rank = flat, groups, rank
        self.lr_s, self.lr_y, self.lr_z, self.tolerance = lr_s, lr_y, lr_z, tolerance
        self._last = None  # (squares, s, hard-pruned mask, their least-s sets) of the last step()

    def start(self, hard_pruned: np.ndarray) -> MinimaxState:
        floor = np.array([hard_pruned[g].mean() if g.stop > g.start else 0.0 for g in self.groups])
        return MinimaxState(sigma=floor.copy(), y=np.zeros(len(self.groups)))

    def _least_sets(self, squared: np.ndarray, sigma: np.ndarray, hard_pruned: np.ndarray):
        """Per group: (flat indices of the least-k weights, flat index of the next one or -1)."""
        sets = []
        ranked = self.rank(squared)
        for group, fraction in zip(self.groups, sigma):
            size = finite_count(ranked[group])  # protected ones are never in the least-s set
            k = min(size, max(int(math.ceil(fraction * (group.stop - group.start) - 1e-9)),
                              int(np.count_nonzero(hard_pruned[group]))))
            # already pruned weights are exactly zero, so they are always among the least
            if k >= size:
                sets.append((np.flatnonzero(np.isfinite(ranked[group])) + group.start, -1))
                continue
            chosen, following = least_set(ranked[group], k)
            chosen += group.start  # a fresh array: shifted in place
            sets.append((chosen, following + group.start))
        return sets

    def _current_sets(self, squared: np.ndarray, sigma: np.ndarray, hard_pruned: np.ndarray):
        """:meth:`_least_sets`, or the sets the last :meth:`step` ended with when they were
        computed from equal inputs (the penalty of the next training step sees the weights
        that step left): one comparison pass instead of a selection."""
        if self._last is not None:
            last_squared, last_sigma, last_hard, sets = self._last
            if (np.array_equal(last_sigma, sigma) and np.array_equal(last_hard, hard_pruned)
                    and np.array_equal(last_squared, squared)):
                return sets
        return self._least_sets(squared, sigma, hard_pruned)

    def penalty(self, state: MinimaxState, hard_pruned: np.ndarray):
        """The gradient of ``y * sum(least-s squared weights)``, to add before the optimizer step.

        The paper shrinks the least-s weights with a proximal step ``w / (1 + 2 lr y)``
        after plain SGD. Under Adam that shrink loses against Adam's normalised
        steps (a weight with a tiny loss gradient still moves by about lr per step),
        so the term enters the gradient and Adam's own preconditioning applies it;
        to first order in ``lr * y`` this is the same step for SGD.
        """
        weights = self.flat.weights()
        sets = self._current_sets(weights * weights, state.sigma, hard_pruned)

        def add(grads):
            for (least_set, _), y in zip(sets, state.y):
                if y > 0:
                    self.flat.add_scaled_weights(grads, least_set, 2.0 * y)

        return add

    def _ascend_y(self, y: float, mass: float) -> float:
        """Dual ascent on a sparsity dual; ``mass``: relative squared mass of the least-s set."""
        return float(np.clip(y + self.lr_y * (mass - self.tolerance), 0.0, DUAL_LIMIT))

    def _ascend_z(self, z: float, excess: float) -> float:
        """Dual ascent on the resource dual; ``excess``: resource after pruning minus the aim."""
        return float(np.clip(z + self.lr_z * excess, 0.0, DUAL_LIMIT))

    def step(self, state: MinimaxState, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
             lr: float = 0.0):
        """After the optimizer step (of learning rate ``lr``): step on s, dual ascent, new
        least-s sets; returns the pruned vector once pruning them meets the budget
        (``None`` otherwise)."""
        weights = self.flat.weights()
        squared = weights * weights
        distance = self._distance(costs, hard_pruned, budget)
        pruned = np.zeros_like(hard_pruned)
        for index, (group, (least_set, following)) in enumerate(
            zip(self.groups, self._least_sets(squared, state.sigma, hard_pruned))
        ):
            pruned[least_set] = True
            size = group.stop - group.start
            group_squared = float(np.sum(squared[group]))  # np.mean is this sum / size, bit for bit
            if following >= 0:
                mean_squared = group_squared / size + TINY
                mean_cost = float(np.mean(costs[group])) + TINY
                # Python floats: a huge step size overflows to inf (clipped below) without a numpy warning
                gradient = float(state.y[index] * squared[following] / mean_squared - state.z * costs[following] / mean_cost)
                floor = np.count_nonzero(hard_pruned[group]) / size
                span = self._span(distance, budget, mean_cost * size)
                state.sigma[index] = float(np.clip(state.sigma[index] - self.lr_s * span * gradient, floor, 1.0))
            mass = float(np.sum(squared[least_set])) / (group_squared + TINY)
            state.y[index] = self._ascend_y(state.y[index], mass)
        state.z = self._ascend_z(state.z, (resource_after(costs, pruned, budget) - budget.aim) / distance)
        pruned = np.zeros_like(hard_pruned)
        sets = self._least_sets(squared, state.sigma, hard_pruned)
        for least_set, _ in sets:
            pruned[least_set] = True
        self._last = (squared, state.sigma.copy(), hard_pruned.copy(), sets)
        pruned |= hard_pruned
        if resource_after(costs, pruned, budget) > budget.target:
            return None
        if len(self.groups) == 1:
            # the s step can overshoot; keep every weight the budget allows (the least-s set is
            # ranked by magnitude, so this is its smallest prefix that meets the budget)
            pruned = magnitude_to_budget(self.rank(np.sqrt(squared)), costs, hard_pruned, budget)
        return pruned

    def _distance(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget) -> float:
        """d = R(start)/R0 - b: how far the search has to go, the resource before it (with only the
        earlier budgets' synapses pruned) minus the aim; the resource dual ascends on the excess in
        units of d."""
        return max(resource_after(costs, hard_pruned, budget) - budget.aim, MIN_DISTANCE)

    @staticmethod
    def _span(distance: float, budget: Budget, group_cost: float) -> float:
        """The share of a group's weights whose cost is ``distance`` x R0 (at most 1): s steps are
        taken in this unit, so a budget near the last one is approached as fast as a far one."""
        return min(1.0, distance * budget.reference / (group_cost + TINY))


class PaperMinimax(Minimax):
    """The reference dynamics: a proximal shrink instead of a penalty gradient, and duals that only grow."""

    def penalty(self, state: MinimaxState, hard_pruned: np.ndarray):
        return None

    def _distance(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget) -> float:
        return 1.0  # absolute steps: the excess itself, in fractions of R0

    @staticmethod
    def _span(distance: float, budget: Budget, group_cost: float) -> float:
        return 1.0

    def _ascend_y(self, y: float, mass: float) -> float:
        return float(np.clip(y + self.lr_y * mass, 0.0, DUAL_LIMIT))

    def _ascend_z(self, z: float, excess: float) -> float:
        return float(np.clip(z + self.lr_z * max(0.0, excess), 0.0, DUAL_LIMIT))

    def step(self, state: MinimaxState, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
             lr: float = 0.0):
        """The proximal step of ``y * sum(least-s squared weights)``, ``w / (1 + 2 lr y)`` on
        the least-s set, then the s and dual steps of :meth:`Minimax.step`."""
        weights = self.flat.weights()
        for (least_set, _), y in zip(self._least_sets(weights * weights, state.sigma, hard_pruned), state.y):
            if y > 0:
                self.flat.scale_weights(least_set, 1.0 / (1.0 + 2.0 * lr * y))
        return super().step(state, costs, hard_pruned, budget, lr)


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
