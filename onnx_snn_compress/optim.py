"""Optimizers (Adam, SGD with momentum) and learning-rate schedules, with hard masks.

Parameters are a dict ``name -> float32 ndarray`` that the optimizer updates *in place*
(the trainer holds the graph's own arrays). ``step(grads)`` takes a dict of gradients of
the same shapes; a parameter missing from ``grads`` is skipped that step, as a torch
parameter whose ``.grad`` is None.

Masks are first class. ``set_mask(name, keep)`` takes a boolean array, True where the
weight is kept and False where it is pruned (torch.nn.utils.prune's ``weight_mask``).
For every pruned entry, after ``set_mask`` and after every ``step``:

    weight == 0.0,   its gradient is treated as 0,   every optimizer moment == 0.0

When a mask is set or changed, the moments of every entry whose mask changed are zeroed,
so a newly pruned weight keeps no stale moments and a re-grown weight starts from zero
moments (its weight is 0.0, as it was while pruned).

The update formulas are torch's (``torch.optim.Adam`` / ``SGD``, single-tensor path):
hyperparameters are Python floats, combined in double precision and cast to float32
where they meet the arrays, which are float32 throughout. Results agree with torch to
float32 rounding, not bit for bit (torch's CPU kernels may fuse multiply-adds).

``state_dict()`` returns a flat ``dict[str, ndarray]`` (scalars as 0-d arrays) that
``np.savez`` stores without pickling; ``load_state_dict`` of it continues bit-identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import SNNError
from .kernels.adam import adam_update

f32 = np.float32


class Optimizer:
    """What Adam and SGD share: parameters, masks, and the state-dict plumbing.

    A subclass names its per-parameter moment arrays in ``moment_names``, its
    hyperparameters in ``hyperparameter_names``, and implements ``_update``.
    """

    moment_names: tuple[str, ...] = ()
    hyperparameter_names: tuple[str, ...] = ("lr",)

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, masks: Mapping[str, np.ndarray] | None = None):
        for name, param in params.items():
            if not isinstance(param, np.ndarray) or param.dtype != np.float32:
                raise TypeError(f"parameter {name!r} must be a float32 ndarray, got {getattr(param, 'dtype', type(param))}")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.params = dict(params)
        self.lr = float(lr)
        self.steps = {name: 0 for name in self.params}
        self.moments = {
            moment: {name: np.zeros(param.shape, np.float32) for name, param in self.params.items()}
            for moment in self.moment_names
        }
        self._pruned: dict[str, np.ndarray] = {}  # name -> bool array, True where pruned
        self._keep: dict[str, np.ndarray] = {}  # name -> float32 array, 1 where kept, 0 where pruned
        self._gradient: dict[str, np.ndarray] = {}  # per-parameter buffers of step(), made on first use
        self.writes = 0  # counts the steps, mask changes and state loads: each may change the parameters
        for name, keep in (masks or {}).items():
            self.set_mask(name, keep)

    # -- masks ----------------------------------------------------------------------
    def set_mask(self, name: str, keep: np.ndarray | None) -> None:
        """Keep the entries of parameter ``name`` where ``keep`` is True; prune the rest.

        Zeroes the pruned weights and the moments of every entry whose mask changed.
        ``keep=None`` removes the mask (every entry kept).
        """
        param = self.params[name]
        previous = self._pruned.get(name)
        if keep is None:
            pruned = None
        else:
            keep = np.asarray(keep)
            if keep.shape != param.shape or keep.dtype != np.bool_:
                raise ValueError(f"mask of {name!r} must be bool of shape {param.shape}, got {keep.dtype} {keep.shape}")
            pruned = ~keep
        if previous is None and pruned is None:
            return
        self.writes += 1
        if previous is None:
            changed = pruned
        elif pruned is None:
            changed = previous
        else:
            changed = previous != pruned
        for moments in self.moments.values():
            np.copyto(moments[name], 0.0, where=changed)
        if pruned is None:
            del self._pruned[name], self._keep[name]
        else:
            self._pruned[name] = pruned
            self._keep[name] = np.ascontiguousarray(keep, dtype=np.float32)
            np.copyto(param, 0.0, where=pruned)

    def mask(self, name: str) -> np.ndarray | None:
        """The keep-mask of parameter ``name`` (a copy), or None if it has none."""
        pruned = self._pruned.get(name)
        return None if pruned is None else ~pruned

    # -- stepping ---------------------------------------------------------------------
    def step(self, grads: Mapping[str, np.ndarray], penalty: Callable | None = None) -> None:
        """One update of every parameter that has a gradient in ``grads``, after ``penalty(grads)``
        (a :class:`Penalty` or any function that adds a regulariser's gradient to ``grads`` in place)."""
        self.writes += 1
        if penalty is not None:
            penalty(grads)
            if isinstance(penalty, Penalty):
                penalty.stepped = (self, self.writes)
        for name, grad in grads.items():
            param = self._parameter_for(name, grad)
            gradient = self._gradient.get(name)
            if gradient is None:
                gradient = self._gradient[name] = np.empty_like(param)
            keep = self._keep.get(name)
            if keep is None:
                np.copyto(gradient, grad, casting="same_kind")
            else:
                # Multiplying by a 0/1 array is many times faster than a masked assignment
                # (no branch per entry); only inf * 0 = NaN needs the slow path.
                with np.errstate(invalid="ignore"):
                    np.multiply(grad, keep, out=gradient)
                if not np.isfinite(gradient).all():
                    np.copyto(gradient, grad, casting="same_kind")
                    np.copyto(gradient, 0.0, where=self._pruned[name])
            self.steps[name] += 1
            self._update(name, param, gradient)
            if keep is not None:
                # With a zero gradient the updates above leave pruned weights and moments at
                # +0.0 already; zeroing them again makes that a guarantee, not a derivation.
                param *= keep
                for moments in self.moments.values():
                    moments[name] *= keep

    def _parameter_for(self, name: str, grad) -> np.ndarray:
        """The parameter ``name``, after checking that ``grad`` fits it."""
        if name not in self.params:
            raise KeyError(f"gradient for unknown parameter {name!r}")
        param = self.params[name]
        if np.shape(grad) != param.shape:
            raise ValueError(f"gradient of {name!r} has shape {np.shape(grad)}, parameter has {param.shape}")
        return param

    def _update(self, name: str, param: np.ndarray, gradient: np.ndarray) -> None:
        raise NotImplementedError

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit-identically, as plain numpy arrays.

        Keys: ``optimizer`` (the class name), one per hyperparameter, and per parameter
        ``step:<name>``, ``<moment>:<name>`` and, if masked, ``mask:<name>`` (keep-mask).
        """
        state = {"optimizer": np.array(type(self).__name__)}
        for key in self.hyperparameter_names:
            state[key] = np.array(getattr(self, key))
        for name in self.params:
            state[f"step:{name}"] = np.array(self.steps[name], dtype=np.int64)
            for moment, arrays in self.moments.items():
                state[f"{moment}:{name}"] = arrays[name].copy()
            if name in self._pruned:
                state[f"mask:{name}"] = ~self._pruned[name]
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` (also as read back by ``np.load``) into this optimizer.

        Hyperparameters, step counts, moments and masks are all restored, as torch restores
        its param_groups; the masks are applied to the parameters.
        """
        kind = str(state.get("optimizer", ""))
        if kind != type(self).__name__:
            raise SNNError(f"checkpoint holds {kind or 'no'} optimizer state, not {type(self).__name__}")
        params_in_state = {key.split(":", 1)[1] for key in state if key.startswith("step:")}
        if params_in_state != set(self.params):
            raise SNNError(
                f"checkpoint optimizer state is for parameters {sorted(params_in_state)}, not {sorted(self.params)}"
            )
        self.writes += 1
        for key in self.hyperparameter_names:
            value = state[key].item()
            setattr(self, key, type(getattr(self, key))(value))
        for name, param in self.params.items():
            self.steps[name] = int(state[f"step:{name}"])
            for moment, arrays in self.moments.items():
                saved = np.asarray(state[f"{moment}:{name}"])
                if saved.shape != param.shape:
                    raise SNNError(f"checkpoint {moment} of {name!r} has shape {saved.shape}, parameter has {param.shape}")
                np.copyto(arrays[name], saved, casting="same_kind")
            self._pruned.pop(name, None)
            self._keep.pop(name, None)
            if f"mask:{name}" in state:
                self.set_mask(name, np.asarray(state[f"mask:{name}"], dtype=bool))


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's bias correction and ``eps`` outside the square root.

    With gradient g, parameter w, step t = 1, 2, ... (per parameter):

        L2 weight decay (default):   g <- g + weight_decay * w
        decoupled (AdamW):           w <- w * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        w <- w - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``decoupled_weight_decay=True`` is ``torch.optim.AdamW`` (torch's default
    weight_decay for AdamW is 0.01; here it is whatever you pass).
    """

    moment_names = ("exp_avg", "exp_avg_sq")
    hyperparameter_names = ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay")
    # A Penalty's add and |w| ride in the update's pass from this many entries of its parameters;
    # below, the fused loop's calls per range cost more than the passes they save (at two threads,
    # warm: digits_mlp's 9,472 weights 0.45 ms fused against 0.18 for the add and a plain step;
    # mnist_mlp's 635,200: 0.56-0.67 against 0.79-0.95)
    fuse_from = 1 << 16

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        masks: Mapping[str, np.ndarray] | None = None,
    ):
        beta1, beta2 = betas
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        super().__init__(params, lr, masks)

    def step(self, grads: Mapping[str, np.ndarray], penalty: Callable | None = None) -> None:
        """One update of every parameter that has a gradient in ``grads``: one pass of
        ``kernels/adam.py`` per parameter, bit-identical to the formulas above in numpy.

        ``penalty``: as :meth:`Optimizer.step`. A :class:`Penalty`'s ``least`` gradient is added
        inside that pass (when it names only parameters in ``grads``; else ``add`` is called), and
        its ``magnitudes`` are written there; ``grads`` are then left as they are. Below
        ``fuse_from`` entries in the parameters it adds to or writes |w| of, ``add`` is called
        instead and nothing is written (the fused loop's range calls cost more than the passes they save there)."""
        self.writes += 1
        fused = (isinstance(penalty, Penalty) and penalty.least is not None and penalty.least.keys() <= grads.keys()
                 and sum(grads[name].size for name in penalty.least.keys() | penalty.magnitudes.keys()
                         if name in grads) >= self.fuse_from)
        if penalty is not None and not fused:
            penalty(grads)
        magnitudes = penalty.magnitudes if fused else {}
        for name, grad in grads.items():
            param = self._parameter_for(name, grad)
            self.steps[name] += 1
            work = param if param.flags.c_contiguous else np.ascontiguousarray(param)
            adam_update(work, np.ascontiguousarray(grad, dtype=np.float32), self.moments["exp_avg"][name],
                        self.moments["exp_avg_sq"][name], self._keep.get(name), self.lr, self.beta1, self.beta2,
                        self.eps, self.weight_decay, self.decoupled_weight_decay, self.steps[name],
                        penalty.least.get(name) if fused else None, magnitudes.get(name))
            if work is not param:
                param[...] = work
        if isinstance(penalty, Penalty):
            penalty.stepped = (self, self.writes)
        if magnitudes and magnitudes.keys() <= grads.keys():
            penalty.written = (self, self.writes)


@dataclass
class Penalty:
    """A regulariser's gradient for one optimizer step, in a form :class:`Adam` fuses into its pass.

    ``add(grads)`` adds the gradient to ``grads`` in place (any optimizer calls it; so does
    calling the penalty). ``least``: the same gradient per parameter as ``kernels.adam.adam_update``'s
    ``least`` (``(keys, first, split, last, bound, factor)`` over the parameter's flat entries;
    keys None: the set's membership is read from |w|, so give the penalty to the step right after
    it was made, the weights unchanged in between), or None where it has no such form.
    ``magnitudes``: per parameter, a float32 ``[size]`` view that Adam fills with |w| after its
    update, so that the caller needs no pass to read them.
    ``written``: (optimizer, its ``writes``) once an optimizer step filled every one of them;
    ``stepped``: (optimizer, its ``writes``) once an optimizer step took the penalty (fused or added),
    so that its caller knows the optimizer whose counter dates the weights from then on.
    """

    add: Callable[[dict], None]
    least: dict[str, tuple] | None = None
    magnitudes: dict[str, np.ndarray] = field(default_factory=dict)
    written: tuple | None = None
    stepped: tuple | None = None

    def __call__(self, grads: dict) -> None:
        self.add(grads)

    def magnitudes_current(self) -> bool:
        """Whether ``magnitudes`` hold |w| now: an optimizer filled them in a step and has not
        changed the parameters since (no step, mask change or state load; writes by others
        than the optimizer are the caller's to rule out)."""
        return self.written is not None and self.written[0].writes == self.written[1]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and weight decay, as ``torch.optim.SGD``.

    With gradient g, parameter w and momentum buffer b (dampening 0):

        g <- g + weight_decay * w
        b <- momentum * b + g                       (b = g at the first step)
        g <- g + momentum * b  if nesterov,  else  g <- b
        w <- w - lr * g

    The buffer starts at zero, which gives b = g exactly at the first step, as torch.
    """

    moment_names = ("momentum_buffer",)
    hyperparameter_names = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        masks: Mapping[str, np.ndarray] | None = None,
    ):
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        super().__init__(params, lr, masks)

    def _update(self, name, param, gradient):
        if self.weight_decay:
            gradient += f32(self.weight_decay) * param
        if self.momentum:
            buffer = self.moments["momentum_buffer"][name]
            buffer *= f32(self.momentum)
            buffer += gradient
            if self.nesterov:
                gradient += f32(self.momentum) * buffer
            else:
                gradient = buffer
        param += f32(-self.lr) * gradient


# -- learning-rate schedules ----------------------------------------------------------
@dataclass(frozen=True)
class ConstantSchedule:
    """``lr(t) = base_lr``."""

    base_lr: float

    def __call__(self, t: int) -> float:
        return float(self.base_lr)


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine annealing, the closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR``:

        lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / total)) / 2

    ``lr(0) = base_lr``, ``lr(total) = eta_min``. As in torch, the cosine goes on past
    ``total`` (rising again), so set ``total`` to the number of steps (or epochs) run.
    """

    base_lr: float
    total: int
    eta_min: float = 0.0

    def __post_init__(self):
        if self.total <= 0:
            raise ValueError(f"cosine schedule needs total > 0, got {self.total}")

    def __call__(self, t: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.total)) / 2.0


@dataclass(frozen=True)
class StepSchedule:
    """Step decay, as ``torch.optim.lr_scheduler.StepLR``:

        lr(t) = base_lr * gamma ** floor(t / step_size)
    """

    base_lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        if self.step_size <= 0:
            raise ValueError(f"step schedule needs step_size > 0, got {self.step_size}")

    def __call__(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


SCHEDULES = {"constant": ConstantSchedule, "cosine": CosineSchedule, "step": StepSchedule}
OPTIMIZERS = ("adam", "sgd")
