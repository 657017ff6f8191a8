"""Compression over a schedule of budgets, with finetuning, checkpoints and one report.

For each budget b (a fraction of the input model's resource, largest first), in
``steps_per_budget`` training steps that every method gets alike:

1. search: the method decides which synapses to prune (minimax: the joint
   minimax dynamics, bounded in steps and projected by magnitude if they have
   not met the budget; minimax-paper: the reference dynamics on one trajectory
   to the last budget; magnitude: at once; gradual: the cubic schedule);
2. finetune with the mask frozen (hard: zero weights, gradients and moments),
   the learning rate restarted at ``finetune_lr_factor`` x lr with a cosine
   decay, validating every ``eval_every`` steps and keeping the best snapshot on
   the validation split;
3. for firing-rate-aware resources, prune more if finetuning raised the rates
   above the budget (``repaired``), so the exported model always meets it;
4. export the model in the profile, evaluate it in the simulator and in
   onnxruntime, and add its entry to ``report.json``.

With ``distill`` a > 0 (default for minimax: ``DEFAULT_DISTILL``), search and
finetune train towards (1 - a) onehot + a x the input model's output on each
training sample (losses.py). Masks only grow from one budget to the next. The run checkpoints every
``eval_every`` steps; ``resume`` continues it to the same report.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import ir
from .backends.onnx_profile import save, to_model
from .data import ModelData
from .errors import SNNError
from .evaluate import run_model
from .files import atomic_write_bytes, atomic_write_text
from .frontends.onnx_profile import from_model
from .progress import Progress
from .pruning import FlatWeights, ProtectStrongest, choose_prunable
from .report import accuracy_percent, percent
from .profile import STORAGES
from .resources import RESOURCES, EnergyModel, measure_activity, resource_figures, weight_costs
from .shrink import live_synapses, remove_dead
from .simulate import simulate
from .structured import STRUCTURES, ChannelGroups
from .solvers import (METHODS, Budget, Minimax, MinimaxState, PaperMinimax, gradual_target, magnitude_to_budget,
                      resource_after, unranked)
from .train import TrainConfig, Trainer, accuracy
from .optim import CosineSchedule
from .schema import REPORT_SCHEMA_VERSION

CHECKPOINT = "checkpoint.npz"
REPORT = "report.json"
# the weight of distillation from the input model when --distill is not given (docs/solver.md: measured)
DEFAULT_DISTILL = {"minimax": 0.5, "minimax-paper": 0.0, "magnitude": 0.0, "gradual": 0.0}
# the search's learning rate when --search-lr-factor is not given (docs/solver.md: measured); minimax-paper
# searches at the constant base rate as the authors' code does, and magnitude has no search
DEFAULT_SEARCH_LR_FACTOR = {"minimax": 3.0, "minimax-paper": 1.0, "magnitude": 1.0, "gradual": 1.0}
# whether a budget's cut spends the cost of its dead synapses on live ones when --reconnect is not given
DEFAULT_RECONNECT = {"minimax": True, "minimax-paper": False, "magnitude": False, "gradual": False}
TEACHER_CHUNK = 256  # training samples encoded and simulated at a time for the teacher's outputs
MAX_ENERGY_PJ = 1e6  # per operation: a microjoule is far above any chip, and keeps the figures finite


@dataclass
class CompressConfig:
    budgets: tuple[float, ...] = (0.3, 0.2, 0.1, 0.05)  # the sample's models stay useful (docs/results.md)
    resource: str = "params"
    method: str = "minimax"
    granularity: str = "global"  # global | layer (minimax only)
    prunable: list[str] | None = None  # None: pruning.default_prunable (all but the first, unless it holds most)
    steps_per_budget: int = 300
    search_fraction: float = 0.5  # the search stage may use at most this share of a budget's steps
    finetune_lr_factor: float = 10.0  # each finetune restarts a cosine at this x lr (minimax-paper: 10)
    min_output_synapses: int = 1  # each output neuron keeps its this many strongest synapses (if its layer is pruned)
    distill: float | None = None  # weight of the input model's outputs in the loss; None: DEFAULT_DISTILL[method]
    search_lr_factor: float | None = None  # the search's cosine starts at this x lr; None: DEFAULT_SEARCH_LR_FACTOR[method]
    reconnect: bool | None = None  # a cut's dead synapses re-spent on live ones; None: DEFAULT_RECONNECT[method]
    # training steps per minimax search step (the least-s sets, the s step and the dual ascent, its step
    # sizes times the steps since the last); between them the penalty holds the last sets. None: 1, after
    # every training step (docs/solver.md, "A search step every few training steps": 4 cut the search
    # step's share of a fully connected net's training step from 15-23 % to 6-9 % and cost accuracy)
    search_every: int | None = None
    eval_every: int = 50
    lr_s: float = 0.1
    dual_lr_y: float = 1.0
    dual_lr_z: float = 0.1
    measure_samples: int = 256
    storage: str = "dense"  # how the exported models store pruned weights (profile.STORAGES)
    # drop dead channels and neurons from the exported models (shrink.py); off by default so every
    # budget's model keeps the input's layout (masks line up across budgets)
    remove_dead: bool = False
    structure: str = "none"  # none (synapses) | channel (whole channels / neurons, structured.py)
    energy: EnergyModel = field(default_factory=EnergyModel)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, schedule="cosine"))

    def validate(self) -> None:
        if not self.budgets:
            raise SNNError("give at least one --budget")
        for budget in self.budgets:
            if not (0.0 < budget <= 1.0) or not math.isfinite(budget):
                raise SNNError(f"budget {budget} is outside (0, 1]: budgets are fractions of the input model's resource")
        if len(set(self.budgets)) != len(self.budgets):
            raise SNNError("budgets must differ from each other")
        if self.resource not in RESOURCES:
            raise SNNError(f"unknown resource {self.resource!r}; choose one of {', '.join(RESOURCES)}")
        if self.method not in METHODS:
            raise SNNError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.granularity not in ("global", "layer"):
            raise SNNError(f"unknown granularity {self.granularity!r}; choose global or layer")
        if self.steps_per_budget < 1 or self.eval_every < 1:
            raise SNNError("--steps-per-budget and --eval-every must be at least 1")
        for name in ("lr_s", "dual_lr_y", "dual_lr_z"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SNNError(f"{name} must be a finite number >= 0, got {value}")
        for name, value in asdict(self.energy).items():
            if not 0 <= value <= MAX_ENERGY_PJ:  # false for NaN too
                raise SNNError(f"energy per operation {name} must lie in [0, {MAX_ENERGY_PJ:g}] pJ, got {value}")
        if not (math.isfinite(self.finetune_lr_factor) and self.finetune_lr_factor > 0):
            raise SNNError(f"--finetune-lr-factor must be a positive number, got {self.finetune_lr_factor}")
        if not 0.0 < self.search_fraction <= 1.0:
            raise SNNError(f"--search-fraction must lie in (0, 1], got {self.search_fraction}")
        if self.search_lr_factor is not None and not (math.isfinite(self.search_lr_factor) and self.search_lr_factor > 0):
            raise SNNError(f"--search-lr-factor must be a positive number, got {self.search_lr_factor}")
        if self.search_lr_factor is not None and self.method in ("minimax-paper", "magnitude"):
            raise SNNError(f"--search-lr-factor does not apply to {self.method} (" + (
                "it searches at --lr, as the authors' code does)" if self.method == "minimax-paper" else "it has no search)"))
        if self.search_every is not None and self.search_every < 1:
            raise SNNError(f"--search-every must be at least 1, got {self.search_every}")
        if self.search_every not in (None, 1) and self.method != "minimax":
            raise SNNError(f"--search-every does not apply to {self.method} (" + (
                "it steps after every training step, as the authors' code does)" if self.method == "minimax-paper"
                else "it has no minimax search)"))
        if self.distill is not None and not 0.0 <= self.distill <= 1.0:  # false for NaN too
            raise SNNError(f"--distill must lie in [0, 1], got {self.distill}")
        if self.min_output_synapses < 0:
            raise SNNError(f"--min-output-synapses must be >= 0, got {self.min_output_synapses}")
        if self.structure not in STRUCTURES:
            raise SNNError(f"unknown structure {self.structure!r}; choose one of {', '.join(STRUCTURES)}")
        if self.storage not in STORAGES:
            raise SNNError(f"unknown storage {self.storage!r}; choose one of {', '.join(STORAGES)}")
        if self.measure_samples < 1:
            raise SNNError(f"measure samples must be at least 1, got {self.measure_samples}")
        self.train.validate()

    def to_json(self) -> dict:
        values = asdict(self)
        values["budgets"] = list(self.budgets)
        return values


# ---------------------------------------------------------------------------
# The run's state, all of it checkpointable
# ---------------------------------------------------------------------------
@dataclass
class RunState:
    budget_index: int = 0
    stage: str = "start"  # start | search | finetune | done
    phase_step: int = 0
    search_steps: int = 0
    forced: bool = False
    gradual_start: float = 1.0
    best_val: float = -1.0
    best_step: int = 0
    solver: MinimaxState | None = None
    hard_pruned: np.ndarray | None = None  # flat bool: pruned for good (earlier budgets)
    phase_pruned: np.ndarray | None = None  # flat bool: this budget's mask (finetune stage)
    costs: np.ndarray | None = None  # flat per-weight costs of the current activity
    fixed: float = 0.0  # resource of the synapse layers that are not pruned
    results: list = field(default_factory=list)


def _graph_bytes(graph: ir.Graph) -> np.ndarray:
    return np.frombuffer(to_model(graph).SerializeToString(), dtype=np.uint8)


def _graph_from(array: np.ndarray) -> ir.Graph:
    model = onnx.ModelProto()
    model.ParseFromString(array.tobytes())
    return from_model(model)


def _fingerprint(graph: ir.Graph, splits: tuple[ModelData | None, ...]) -> str:
    """A digest of the input model and data, so a run resumes only on the ones it started with."""
    digest = hashlib.sha256(to_model(graph).SerializeToString())
    for data in splits:
        if data is None:
            digest.update(b"none")
            continue
        for array in (data.x, data.y):
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(repr((data.temporal, data.time_steps, data.encoding, data.seed)).encode())
    return digest.hexdigest()


def _options(config_json: dict) -> dict:
    """What a resumed run must share with the interrupted one: everything but how it prints."""
    return {**config_json, "train": {k: v for k, v in config_json["train"].items() if k != "progress"}}


_CHECKPOINT_META = ("budget_index", "stage", "phase_step", "search_steps", "forced", "gradual_start", "best_val",
                    "best_step", "trainer_step", "fixed", "inputs", "results", "config", "solver")


class DamagedCheckpointError(SNNError):
    """The checkpoint cannot be read back (not an npz, truncated, keys or values missing)."""


def _teacher_outputs(graph: ir.Graph, train: ModelData) -> np.ndarray:
    """The input (uncompressed) model's time-averaged output ``[len(train), C]`` on the training
    inputs (eval mode, the data's own encoding seed): the distillation teacher (losses.py).
    Encoded a chunk at a time, so a large training split never sits in memory as spikes."""
    chunks = []
    for start in range(0, len(train), TEACHER_CHUNK):
        output = simulate(graph, train.inputs(slice(start, start + TEACHER_CHUNK))).output
        chunks.append(output.mean(axis=0) if output.ndim == 3 else output)
    return np.concatenate(chunks)


def _copy_arrays(source: ir.Graph, target: ir.Graph) -> None:
    """Put ``source``'s parameters and BatchNorm statistics into ``target``'s own arrays."""
    for a, b in zip(source, target):
        for name, array in a.parameters().items():
            getattr(b, name)[...] = array


class Compression:
    """One compression run; ``run()`` executes (or resumes) it and returns the report."""

    def __init__(self, graph: ir.Graph, train: ModelData, val: ModelData | None, test: ModelData | None,
                 config: CompressConfig, out: Path, source: str = "", log=sys.stderr, provenance: dict | None = None,
                 keep_checkpoint: bool = False):
        """``provenance``: what the caller knows of the run (``inputs`` with file digests, the
        effective ``config``), copied into the report as is. ``timings`` collects the wall
        seconds of this process per phase (prepare, search, finetune, export); the report
        leaves them out, so equal runs give equal reports (the API adds them to the final one).
        ``keep_checkpoint``: keep ``checkpoint.npz`` when the run has finished."""
        started = time.perf_counter()
        config.validate()
        self.config, self.out, self.source, self.log = config, Path(out), source, log
        self.keep_checkpoint = keep_checkpoint
        self.progress = Progress(log, quiet=log is None or not config.train.progress)
        self.progress.say_if_compiling()
        self._task = None  # the progress bar (or periodic lines) of a run
        self.provenance = dict(provenance or {})
        self.timings: dict[str, float] = {}
        self.original = graph
        self.graph = graph.copy()
        self.train_data, self.val, self.test = train, val, test
        self.fingerprint = _fingerprint(graph, (train, val, test))
        self.options = _options(json.loads(json.dumps(config.to_json())))  # as a checkpoint reads them back
        options = json.dumps(self.options, sort_keys=True)
        self.run_key = hashlib.sha256(f"{self.fingerprint} {options}".encode()).hexdigest()
        self.layers, self.notes = choose_prunable(graph, config.prunable)
        self.search_every = config.search_every or 1
        self.flat = FlatWeights(self.graph, self.layers)
        # the solver's units: synapses, or whole channels (the solver sees one value per channel)
        self.units = ChannelGroups(self.graph, self.flat) if config.structure == "channel" else None
        units = self.flat if self.units is None else self.units
        if config.granularity == "layer":
            self.groups = [part for _, part in units.layer_slices()]
        else:
            self.groups = [slice(0, units.size)]
        total = len(config.budgets) * config.steps_per_budget
        self.trainer = Trainer(self.graph, train, val, config.train, total_steps=total)  # checks the memory first
        self.trainer.distill = DEFAULT_DISTILL[config.method] if config.distill is None else config.distill
        if self.trainer.distill > 0:
            self.trainer.teacher = _teacher_outputs(graph, train)
        measure = val if val is not None else train
        self.measure_x = measure.inputs(slice(0, config.measure_samples))
        factor = DEFAULT_SEARCH_LR_FACTOR[config.method] if config.search_lr_factor is None else config.search_lr_factor
        per_phase = CosineSchedule(factor * config.train.lr, config.steps_per_budget)
        if config.method == "minimax-paper":  # the search at the base rate (its finetune: below)
            self.search_schedule = lambda step: config.train.lr
        elif config.train.schedule == "cosine":  # restart the cosine for every budget's steps
            self.search_schedule = lambda step: per_phase(step % config.steps_per_budget)
        else:
            schedule = self.trainer.schedule
            self.search_schedule = lambda step: factor * schedule(step)
        self.trainer.schedule = self._learning_rate
        solver = PaperMinimax if config.method == "minimax-paper" else Minimax
        self.solver = solver(units, self.groups, config.lr_s, config.dual_lr_y, config.dual_lr_z,
                             rank=self._rank if self.units is None else self.units.rank)
        self.state = RunState()
        self.budgets = sorted(config.budgets, reverse=True)
        self.best = self.graph.copy()
        # the input model's resource, and the part no pruning can remove
        self.reference_figures = resource_figures(self.graph, self._activity(self.graph), config.energy)
        self.reference = self.reference_figures[config.resource]
        self._check_reachable()  # before any work, and before the caller makes an output folder
        self.dense_accuracy = self._accuracies(self.graph)
        self.timings["prepare"] = time.perf_counter() - started

    @functools.cached_property
    def _rank(self):
        """The order of pruning, ``rank(magnitudes, out=None)`` as the solver takes it: by magnitude,
        with each output neuron's ``min_output_synapses`` strongest synapses last when the output
        layer is pruned (``pruning.ProtectStrongest``, which the solver applies in place), so no
        class is disconnected; ``solvers.unranked`` when it protects none (the layers and their
        shapes are fixed for a compression)."""
        output = self.graph.prunable()[-1].name
        if self.config.min_output_synapses == 0 or output not in self.layers:
            return unranked
        return ProtectStrongest(dict(self.flat.layer_slices())[output], self.graph[output].weight.shape[0],
                                self.config.min_output_synapses)

    def _magnitudes(self) -> np.ndarray:
        """|w| of the prunable weights, in the order of :meth:`_rank`."""
        return self._rank(np.abs(self.flat.weights()))

    def _learning_rate(self, step: int) -> float:
        """The weights' learning rate at trainer step ``step``: the search schedule; each
        finetune restarts its own cosine at ``finetune_lr_factor`` x lr (minimax-paper: 10x)."""
        state, config = self.state, self.config
        factor = 10.0 if config.method == "minimax-paper" else config.finetune_lr_factor
        if state.stage != "finetune":
            return self.search_schedule(step)
        finetune_steps = max(1, config.steps_per_budget - state.search_steps)
        return CosineSchedule(factor * config.train.lr, finetune_steps)(state.phase_step - state.search_steps)

    # -- measurements --------------------------------------------------------------
    def _activity(self, graph: ir.Graph):
        return measure_activity(graph, self.measure_x)

    def _costs(self, graph: ir.Graph) -> tuple[np.ndarray, float]:
        """(flat costs of the prunable weights, resource of the other synapse layers)."""
        activity = self._activity(graph) if self.config.resource in ("synops", "energy") else None
        costs = weight_costs(graph, self.config.resource, activity, self.config.energy,
                             time_steps=self.measure_x.shape[0])
        fixed = float(sum(np.sum(c[graph[name].weight != 0]) for name, c in costs.items() if name not in self.layers))
        return self.flat.flatten({name: costs[name] for name in self.layers}), fixed

    def _budget(self, fixed: float) -> Budget:
        goal = self.budgets[-1] if self.config.method == "minimax-paper" else None  # one trajectory to the last
        return Budget(target=self.budgets[self.state.budget_index], reference=self.reference, fixed=fixed, goal=goal)

    def _accuracies(self, graph: ir.Graph) -> dict:
        result = {}
        for split, data in (("val", self.val), ("test", self.test)):
            if data is not None:
                result[split] = accuracy(graph, data)
        return result

    # -- checkpoints ---------------------------------------------------------------
    def _checkpoint(self) -> None:
        state = self.state
        arrays = {
            "graph": _graph_bytes(self.graph),
            "best": _graph_bytes(self.best),
            "meta": np.array(json.dumps({
                "budget_index": state.budget_index, "stage": state.stage, "phase_step": state.phase_step,
                "search_steps": state.search_steps, "forced": state.forced, "gradual_start": state.gradual_start,
                "best_val": state.best_val, "best_step": state.best_step, "trainer_step": self.trainer.step,
                "fixed": state.fixed, "inputs": self.fingerprint,
                "results": state.results, "config": self.config.to_json(),
                "solver": None if state.solver is None else {"z": state.solver.z},
            })),
        }
        for name in ("hard_pruned", "phase_pruned", "costs"):
            if getattr(state, name) is not None:
                arrays[name] = getattr(state, name)
        if state.solver is not None:
            arrays["solver_sigma"], arrays["solver_y"] = state.solver.sigma, state.solver.y
        for key, value in self.trainer.optimizer.state_dict().items():
            arrays[f"optimizer/{key}"] = np.asarray(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.out / CHECKPOINT, buffer.getvalue())

    def restore(self) -> None:
        """Continue from ``out/checkpoint.npz`` (same model, data and options required).

        A finished run that kept no checkpoint is restored from its ``report.json``
        when that report was made from the same model, data and options.
        Raises SNNError when there is nothing to resume, DamagedCheckpointError when
        the checkpoint cannot be read back.
        """
        path = self.out / CHECKPOINT
        if not path.is_file():
            if self._restore_finished():
                return
            raise SNNError(f"nothing to resume: {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                if not isinstance(meta, dict):
                    raise ValueError("its meta is not a JSON object")
                missing = sorted(set(_CHECKPOINT_META) - set(meta)) + sorted({"graph", "best"} - set(saved.files))
                if missing:
                    raise KeyError(f"no {', '.join(missing)}")
                if _options(meta["config"]) != self.options:
                    raise SNNError(f"{path} was made with other options; resume with the same options or start anew")
                if meta["inputs"] != self.fingerprint:
                    raise SNNError(f"{path} was made from another model or other data; resume with the same ones or start anew")
                self._restore_from(saved, meta)
        except SNNError:
            raise
        except Exception as error:  # any failure to read it back: BadZipFile, KeyError, JSON, protobuf, shapes
            raise DamagedCheckpointError(
                f"the checkpoint in {self.out} is damaged ({type(error).__name__}: {error}); "
                "rerun without --resume (with --overwrite)"
            ) from None
        self._remove_stale_temporaries()
        state = self.state
        if state.budget_index < len(self.budgets):
            self._say(f"resumed from {path.name}: budget {self.budgets[state.budget_index]:g} "
                      f"({state.budget_index + 1}/{len(self.budgets)}), {state.stage} step {state.phase_step} of "
                      f"{self.config.steps_per_budget}")

    def _restore_from(self, saved, meta: dict) -> None:
        _copy_arrays(_graph_from(saved["graph"]), self.graph)
        self.best = _graph_from(saved["best"])
        state = RunState(
            budget_index=meta["budget_index"], stage=meta["stage"], phase_step=meta["phase_step"],
            search_steps=meta["search_steps"], forced=meta["forced"], gradual_start=meta["gradual_start"],
            best_val=meta["best_val"], best_step=meta["best_step"], results=meta["results"], fixed=meta["fixed"],
        )
        for name in ("hard_pruned", "phase_pruned", "costs"):
            if name in saved.files:
                setattr(state, name, saved[name].copy())
        if meta["solver"] is not None:
            state.solver = MinimaxState(sigma=saved["solver_sigma"].copy(), y=saved["solver_y"].copy(),
                                        z=float(meta["solver"]["z"]))
        optimizer_state = {k[len("optimizer/"):]: saved[k] for k in saved.files if k.startswith("optimizer/")}
        self.trainer.optimizer.load_state_dict(optimizer_state)
        self.trainer.step = meta["trainer_step"]
        self.state = state

    def _restore_finished(self) -> bool:
        """Whether ``out/report.json`` is this very run, finished: then resuming changes nothing."""
        try:
            report = json.loads((self.out / REPORT).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(report, dict) or report.get("run_key") != self.run_key:
            return False
        self.state = RunState(budget_index=len(self.budgets), stage="start", results=report["budgets"])
        return True

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of atomic writes that a kill interrupted (``.<name>.<random>.tmp``)."""
        for pattern in (".*.tmp", "budget_*/.*.tmp"):
            for path in self.out.glob(pattern):
                if path.is_file():
                    path.unlink(missing_ok=True)

    # -- the run -------------------------------------------------------------------
    def run(self) -> dict:
        state = self.state
        if state.hard_pruned is None:
            # weights that are zero in the input model are pruned already (a model compressed
            # before, compressed further): masked from the first step, so they cannot regrow
            state.hard_pruned = self.flat.weights() == 0.0
            if state.hard_pruned.any():
                self._set_masks(state.hard_pruned)
        steps = self.config.steps_per_budget
        # one count over every budget's steps (the description names the budget: "budget 0.1 (3/4) search")
        with self.progress.task("compress", len(self.budgets) * steps, unit="steps of all budgets",
                                completed=state.budget_index * steps + state.phase_step) as self._task:
            while state.budget_index < len(self.budgets):
                if state.stage == "start":
                    self._timed("search", self._start_phase)
                if state.stage == "search":
                    self._timed("search", self._search)
                if state.stage == "finetune":
                    self._timed("finetune", self._finetune)
                if state.stage == "finish":
                    self._timed("export", self._finish_phase)
        report = self.report()
        atomic_write_text(self.out / REPORT, json.dumps(report, indent=2))
        if not self.keep_checkpoint:  # the run is finished; report.json now says all there is
            (self.out / CHECKPOINT).unlink(missing_ok=True)
        return report

    def _timed(self, phase: str, work) -> None:
        started = time.perf_counter()
        try:
            work()
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def _check_reachable(self) -> None:
        costs, fixed = self._costs(self.graph)
        floor = fixed / self.reference if self.reference > 0 else 0.0
        smallest = min(self.budgets)
        if self.reference <= 0:
            raise SNNError(f"the input model has no {self.config.resource} to reduce (measured 0 on the data)")
        if smallest < floor:
            every = [n.name for n in self.graph.prunable()]
            kept = ", ".join(repr(name) for name in every if name not in self.layers)
            prune_all = " ".join(f"--prune {shlex.quote(name)}" for name in every)
            raise SNNError(
                f"budget {smallest} of {self.config.resource} cannot be reached: the layers kept dense "
                f"({kept}) alone cost {floor:.4g} of the input model; prune them too ({prune_all}) or raise the budget"
            )
        if self.units is not None:
            lowest = self.units.lowest_resource(costs, self.flat.weights() == 0.0, Budget(smallest, self.reference, fixed))
            if smallest < lowest:
                raise SNNError(
                    f"budget {smallest:g} of {self.config.resource} cannot be reached with --structure channel: "
                    f"removing every channel but the strongest of each layer ({', '.join(self.units.layers)}) "
                    f"leaves {lowest:.4g} of the input model; raise the budget or prune more layers (--prune)"
                )
        cheapest = costs[costs > 0].min(initial=np.inf)
        if smallest * self.reference - fixed < cheapest:
            raise SNNError(
                f"budget {smallest:g} of {self.config.resource} keeps less than one synapse of the pruned layers "
                f"({', '.join(self.layers)}): the cheapest synapse alone is {cheapest / self.reference:.3g} of the input "
                f"model's {self.config.resource} (budget {smallest:g} leaves {max(0.0, smallest - fixed / self.reference):.3g} "
                "for the pruned layers); raise the budget"
            )

    def _say(self, text: str) -> None:
        self.progress.line(text)

    def _advance(self, loss: float) -> None:
        """One training step done: move the progress bar (or the periodic lines) on."""
        state = self.state
        # the best validation accuracy first: a narrow terminal cuts the status's end
        best = "" if state.best_val < 0 else f"best val {accuracy_percent(state.best_val)}, "
        index = state.budget_index
        self._task.advance(description=f"budget {self.budgets[index]:g} ({index + 1}/{len(self.budgets)}) {state.stage}",
                           status=f"{best}loss {loss:.3g}")

    def _start_phase(self) -> None:
        state = self.state
        state.phase_step = state.search_steps = 0
        state.forced, state.best_val, state.best_step = False, -1.0, 0
        state.phase_pruned = None
        state.costs, state.fixed = self._costs(self.graph)
        budget = self._budget(state.fixed)
        self._say(f"budget {budget.target:g} of {self.config.resource}: {self.config.method} search")
        if self.config.method == "magnitude":
            self._freeze(self._by_magnitude(state.costs, state.hard_pruned, budget))
        else:
            if self.config.method == "minimax" or state.solver is None:  # minimax-paper: one trajectory
                state.solver = self.solver.start(self._solver_view(state.costs, state.hard_pruned, budget)[1]) \
                    if self._minimax else None
            state.gradual_start = resource_after(state.costs, state.hard_pruned, budget)
            state.stage = "search"

    @property
    def _minimax(self) -> bool:
        return self.config.method in ("minimax", "minimax-paper")

    @property
    def _search_limit(self) -> int:
        return max(1, int(self.config.search_fraction * self.config.steps_per_budget))

    def _search_step_due(self, step: int) -> bool:
        """Whether a minimax search step follows the search's training step ``step`` (0: its start):
        every ``search_every`` steps, at every checkpoint (a resumed run selects the very sets the
        run held) and at the search's bound."""
        return step % self.search_every == 0 or step % self.config.eval_every == 0 or step >= self._search_limit

    def _search(self) -> None:
        state, config = self.state, self.config
        last_search = state.phase_step  # a search starts, or resumes at a checkpoint, where a search step was
        while state.stage == "search":
            minimax = self._minimax
            penalty = None
            if minimax:
                hard_pruned = self._solver_view(state.costs, state.hard_pruned, self._budget(state.fixed))[1]
                penalty = self.solver.penalty(state.solver, hard_pruned, held=not self._search_step_due(state.phase_step),
                                              then_step=self._search_step_due(state.phase_step + 1))
            loss, _, _ = self.trainer.train_step(penalty)
            state.phase_step += 1
            self._advance(loss)
            if state.phase_step % config.eval_every == 0 and config.resource in ("synops", "energy"):
                state.costs, state.fixed = self._costs(self.graph)  # firing rates move while training
            budget = self._budget(state.fixed)
            at_limit = state.phase_step >= self._search_limit
            pruned = None
            if minimax:
                if self._search_step_due(state.phase_step):
                    pruned = self.solver.step(state.solver, *self._solver_view(state.costs, state.hard_pruned, budget),
                                              self.trainer.optimizer.lr, state.phase_step - last_search)
                    last_search = state.phase_step
                if pruned is not None and self.units is not None:
                    pruned = self._channels_to_budget(pruned, budget)
            elif state.phase_step % max(1, self._search_limit // 10) == 0 or at_limit:
                target = gradual_target(state.phase_step, self._search_limit, state.gradual_start, budget.target)
                step_mask = self._by_magnitude(state.costs, state.hard_pruned, budget, target)
                if at_limit:
                    pruned = step_mask
                else:
                    self.flat.zero(step_mask)
                    self._set_masks(step_mask)
            if pruned is None and at_limit:
                pruned = self._by_magnitude(state.costs, state.hard_pruned, budget)
                state.forced = True
                self._say(f"  minimax did not meet the budget in {state.phase_step} steps (its --search-fraction of the "
                          f"budget's); pruned the rest by magnitude")
            if pruned is not None:
                state.search_steps = state.phase_step
                self._freeze(pruned)
            elif state.phase_step % config.eval_every == 0:
                self._checkpoint()

    def _by_magnitude(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget,
                      target: float | None = None) -> np.ndarray:
        """Prune by magnitude until the resource is at most ``target`` (default: the budget):
        the least synapses, or with ``structure="channel"`` the channels of least relative norm (structured.py)."""
        if self.units is None:
            return magnitude_to_budget(self._magnitudes(), costs, hard_pruned, budget, target)
        target = budget.target if target is None else target
        excess = (resource_after(costs, hard_pruned, budget) - target) * budget.reference
        return self.units.prune(costs, hard_pruned, excess)

    def _channels_to_budget(self, chosen: np.ndarray, budget: Budget) -> np.ndarray:
        """The flat pruned vector of the fewest channels of ``chosen`` (the solver's, per channel),
        least relative norm first, that meet the budget: the solver's estimate counts a synapse
        shared by two channels half in each, so it may choose more than the budget needs."""
        state = self.state
        excess = (resource_after(state.costs, state.hard_pruned, budget) - budget.target) * budget.reference
        pruned = self.units.prune(state.costs, state.hard_pruned, excess, among=chosen)
        return self._by_magnitude(state.costs, pruned, budget)  # adds channels only if still above it

    def _solver_view(self, costs: np.ndarray, hard_pruned: np.ndarray, budget: Budget):
        """(costs, hard-pruned vector, budget) as the solver sees them: per synapse, or with
        ``structure="channel"`` per channel (structured.ChannelGroups.view)."""
        return (costs, hard_pruned, budget) if self.units is None else self.units.view(costs, hard_pruned, budget)

    def _set_masks(self, pruned: np.ndarray) -> None:
        for name, keep in self.flat.keep_masks(pruned).items():
            self.trainer.optimizer.set_mask(name, keep)

    def _freeze(self, pruned: np.ndarray) -> None:
        """Make ``pruned`` this budget's hard mask and start finetuning."""
        state = self.state
        if self._reconnects:
            pruned = self._reconnect(pruned)
        state.phase_pruned = pruned | state.hard_pruned
        self.flat.zero(state.phase_pruned)
        self._set_masks(state.phase_pruned)
        state.stage = "finetune"
        self._consider_snapshot()
        self._checkpoint()

    @property
    def _reconnects(self) -> bool:
        wanted = self.config.reconnect
        return (DEFAULT_RECONNECT[self.config.method] if wanted is None else wanted) and self.units is None

    def _reconnect(self, pruned: np.ndarray) -> np.ndarray:
        """``pruned`` (flat bool, this budget's cut) with the synapses it keeps dead pruned too (no
        output depends on them: they drive a neuron nothing reads, or read one that is always
        zero; shrink.live_synapses; but for the output neurons' protected ones), weakest first, as far
        as their cost can be spent on the strongest synapses this cut pruned between live neurons
        (the resource never rises).
        Dead kept synapses are common at extreme budgets: a global magnitude cut of mnist_conv to
        0.25 % keeps 109 of its 373 prunable synapses dead. Neither change alters which neurons
        are live, so one round leaves no dead synapse when there are live ones enough to take their
        place."""
        state = self.state
        cut = pruned | state.hard_pruned
        graph = self.graph.copy()
        FlatWeights(graph, self.flat.layers).zero(cut)
        live = live_synapses(graph)
        live = np.concatenate([live[name].ravel() for name in self.flat.layers])
        magnitudes, costs = np.abs(self.flat.weights()), state.costs
        protected = ~np.isfinite(self._rank(magnitudes))  # _magnitudes()'s rank (a copy): these stay
        dead = np.flatnonzero(~cut & ~live & ~protected)
        dead = dead[np.argsort(magnitudes[dead], kind="stable")]  # weakest first
        candidates = np.flatnonzero(pruned & ~state.hard_pruned & live)
        candidates = candidates[np.argsort(-magnitudes[candidates], kind="stable")]  # strongest first
        if dead.size == 0 or candidates.size == 0:
            return pruned
        freed, spent = np.cumsum(costs[dead]), np.cumsum(costs[candidates])
        revived = int(np.searchsorted(spent, freed[-1] * (1 + 1e-12), side="right"))
        if revived == 0:
            return pruned
        removed = min(dead.size, int(np.searchsorted(freed, spent[revived - 1] * (1 - 1e-12))) + 1)
        reconnected = pruned.copy()
        reconnected[dead[:removed]] = True
        reconnected[candidates[:revived]] = False
        self._say(f"  {removed:,} dead synapses of the cut pruned, {revived:,} live ones kept instead")
        return reconnected

    def _consider_snapshot(self) -> None:
        state = self.state
        data = self.val if self.val is not None else self.train_data
        score = accuracy(self.graph, data)
        if score > state.best_val:
            state.best_val, state.best_step = score, state.phase_step
            self.best = self.graph.copy()

    def _finetune(self) -> None:
        state, config = self.state, self.config
        while state.phase_step < config.steps_per_budget:
            loss, _, _ = self.trainer.train_step()
            state.phase_step += 1
            self._advance(loss)
            if state.phase_step % config.eval_every == 0 or state.phase_step == config.steps_per_budget:
                self._consider_snapshot()
                self._checkpoint()
        state.stage = "finish"

    def _finish_phase(self) -> None:
        state = self.state
        _copy_arrays(self.best, self.graph)  # continue from the best snapshot
        repaired = self._repair()
        budget = self.budgets[state.budget_index]
        entry = self._export(budget, repaired)
        state.results.append(entry)
        state.hard_pruned = self.flat.weights() == 0.0
        self._set_masks(state.hard_pruned)
        accuracies = "".join(f", {split} acc {accuracy_percent(entry['accuracy'][split])}" for split in ("val", "test")
                             if split in entry["accuracy"])
        self._say(f"  budget {budget:g}: kept {percent(entry['achieved'])} of the {self.config.resource}{accuracies}")
        state.budget_index += 1
        state.stage = "start"
        atomic_write_text(self.out / REPORT, json.dumps(self.report(), indent=2))
        self._checkpoint()

    def _repair(self) -> int:
        """Prune more until the measured resource meets the budget (rates can rise in finetuning)."""
        rounds = 0
        budget_fraction = self.budgets[self.state.budget_index]
        for rounds in range(0, 50):
            costs, fixed = self._costs(self.graph)
            pruned = self.flat.weights() == 0.0
            if resource_after(costs, pruned, Budget(budget_fraction, self.reference, fixed)) <= budget_fraction:
                return rounds
            target = Budget(budget_fraction * (1.0 - 0.01 * (rounds + 1)), self.reference, fixed)
            self.flat.zero(self._by_magnitude(costs, pruned, target))
        raise SNNError(f"budget {budget_fraction} could not be met after 50 rounds of extra pruning")

    def _export(self, budget: float, repaired: int) -> dict:
        folder = self.out / f"budget_{budget:g}"
        model_path = folder / "model.onnx"
        activity = self._activity(self.graph)
        figures = resource_figures(self.graph, activity, self.config.energy)
        achieved = figures[self.config.resource] / self.reference
        removing = self.config.remove_dead or self.config.structure == "channel"  # pruned channels go from the file
        graph, removed = remove_dead(self.graph) if removing else (self.graph.copy(), {})
        graph.metadata.update({
            "compression": json.dumps({"budget": budget, "resource": self.config.resource, "method": self.config.method,
                                       "achieved": achieved, "figures": figures}),
            **self.train_data.input_metadata(),
        })
        save(graph, model_path, self.config.storage)
        model = onnx.load(str(model_path))
        accuracy_entry, agreement = {}, True
        for split, data in (("val", self.val), ("test", self.test)):
            if data is None:
                continue
            x = data.inputs()
            sim = run_model(graph, x, "sim").predictions()
            ort = run_model(graph, x, "onnxruntime", model=model).predictions()
            accuracy_entry[split] = float(np.mean(sim == data.y))
            accuracy_entry[f"{split}_onnxruntime"] = float(np.mean(ort == data.y))
            agreement &= bool(np.array_equal(sim, ort))
            if removed:  # the smaller model predicts what the masked one does
                agreement &= bool(np.array_equal(sim, run_model(self.graph, x, "sim").predictions()))
        rates = run_model(self.graph, self.measure_x, "sim").firing_rates()
        layers = {
            node.name: {"connectivity": float(np.count_nonzero(node.weight)) / node.weight.size,
                        "nonzero": int(np.count_nonzero(node.weight)), "synapses": int(node.weight.size)}
            for node in self.graph.prunable()
        }
        return {
            "budget": budget,
            "resource": self.config.resource,
            "achieved": achieved,
            "figures": figures,
            "fractions": {k: (v / self.reference_figures[k] if self.reference_figures[k] else None) for k, v in figures.items()},
            "accuracy": accuracy_entry,
            "runtimes_agree": agreement,
            "model": str(model_path.relative_to(self.out)),
            "search_steps": self.state.search_steps,
            "finetune_steps": self.config.steps_per_budget - self.state.search_steps,
            "best_finetune_step": self.state.best_step,
            "forced": self.state.forced,
            "repaired": repaired,
            "layers": layers,
            "removed": removed,
            "file_bytes": model_path.stat().st_size,
            "firing_rates": rates,
        }

    def report(self) -> dict:
        """The report as report.json holds it (onnx_snn_compress/schema/report.schema.json)."""
        from . import __version__

        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "onnx-snn-compress", "version": __version__},
            "input_model": self.source,
            **self.provenance,
            "method": self.config.method,
            "resource": self.config.resource,
            "granularity": self.config.granularity,
            "search_every": self.search_every,
            "structure": self.config.structure,
            "prunable": self.layers,
            "seed": self.config.train.seed,
            "steps_per_budget": self.config.steps_per_budget,
            "measured_on": "validation split" if self.val is not None else "training split",
            "measure_samples": int(self.measure_x.shape[1]),  # rate figures: the first N samples of measured_on
            "energy_model_pj": asdict(self.config.energy),
            "notes": list(self.notes),
            "input": {"figures": self.reference_figures, "accuracy": self.dense_accuracy},
            "budgets": self.state.results,
            "run_key": self.run_key,  # a digest of the model, data and options: `--resume` of a finished run
        }
