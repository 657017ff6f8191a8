"""Training and finetuning: seeded minibatch BPTT with validation-based snapshot selection.

Everything random is derived from ``(seed, step)`` or ``(seed, epoch)``, never
from a stateful generator, so a run is bit-identical for the same seed on the
same machine and can be resumed from any step by restoring the parameters, the
optimizer state and the step counter.

The best snapshot is chosen on the validation split (never on test); without a
validation split, the last one is kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from . import ir
from .backprop import backward, forward_train, trainable
from .data import ModelData, check_seed
from .errors import SNNError
from .losses import LOSSES, default_loss
from .footprint import check_run
from .memory import keep_freed_memory
from .optim import OPTIMIZERS, SCHEDULES, SGD, Adam, ConstantSchedule, CosineSchedule, StepSchedule
from .progress import Progress
from .report import accuracy_percent, seconds
from .simulate import simulate

MAX_LR = 10.0  # a learning rate (or weight decay) above this overflows float32 weights within steps: a typo


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (defaults suit the embedded digits samples)."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant, over all steps of the run
    step_size: int = 10  # epochs between decays of the step schedule
    gamma: float = 0.1
    loss: str | None = None  # None: the default for the graph's readout
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SNNError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SNNError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.loss is not None and self.loss not in LOSSES:
            raise SNNError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.epochs < 0 or self.batch_size < 1:
            raise SNNError("epochs must be >= 0 and batch size >= 1")
        if not (0 < self.lr <= MAX_LR):  # false for NaN too
            raise SNNError(f"learning rate must lie in (0, {MAX_LR:g}], got {self.lr}")
        if not (0 <= self.weight_decay <= MAX_LR and math.isfinite(self.weight_decay)):
            raise SNNError(f"weight decay must lie in [0, {MAX_LR:g}], got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise SNNError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.step_size < 1 or not 0 < self.gamma <= 1:
            raise SNNError(f"the step schedule needs step size >= 1 and gamma in (0, 1], got {self.step_size}, {self.gamma}")
        check_seed(self.seed)


@dataclass
class EpochRecord:
    epoch: int
    step: int
    loss: float
    train_accuracy: float
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    graph: ir.Graph  # the best snapshot (on validation)
    best_epoch: int
    best_val_accuracy: float | None
    history: list[EpochRecord] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "history": [asdict(r) for r in self.history],
        }


def accuracy(graph: ir.Graph, data: ModelData, batch_size: int = 256) -> float:
    """Accuracy of ``graph`` on ``data`` in the simulator (eval mode)."""
    result = simulate(graph, data.inputs(), batch_size=batch_size)
    return float(np.mean(result.predictions() == data.y))


def _prediction(output: np.ndarray) -> np.ndarray:
    return np.argmax(output.mean(axis=0) if output.ndim == 3 else output, axis=-1)


class Trainer:
    """Minibatch training of ``graph`` in place (pass a copy to keep the original).

    ``masks`` (name -> bool keep-array, for ``trainable(graph)`` entries) are hard:
    masked weights are zero and stay zero, with zero gradients and moments.
    """

    def __init__(
        self,
        graph: ir.Graph,
        train: ModelData,
        val: ModelData | None,
        config: TrainConfig,
        masks: dict[str, np.ndarray] | None = None,
        total_steps: int | None = None,
    ):
        config.validate()
        check_run(graph, (train, val), config.batch_size, training=True)
        keep_freed_memory()  # each step's arrays reuse the last step's pages
        self.graph, self.train, self.val, self.config = graph, train, val, config
        self.loss_name = config.loss or default_loss(graph.readout.mode)
        self.loss = LOSSES[self.loss_name]
        self.params = trainable(graph)
        if config.optimizer == "adam":
            self.optimizer = Adam(self.params, lr=config.lr, weight_decay=config.weight_decay, masks=masks)
        else:
            self.optimizer = SGD(self.params, lr=config.lr, momentum=config.momentum,
                                 weight_decay=config.weight_decay, masks=masks)
        self.steps_per_epoch = max(1, math.ceil(len(train) / config.batch_size))
        total = total_steps if total_steps is not None else config.epochs * self.steps_per_epoch
        if config.schedule == "cosine":
            self.schedule = CosineSchedule(config.lr, max(1, total))
        elif config.schedule == "step":
            self.schedule = StepSchedule(config.lr, config.step_size * self.steps_per_epoch, config.gamma)
        else:
            self.schedule = ConstantSchedule(config.lr)
        self.step = 0  # optimizer steps taken so far
        # distillation: the teacher's time-averaged output for every training sample [len(train), C]
        # and its weight in the loss (losses.py); None: the labels alone
        self.teacher: np.ndarray | None = None
        self.distill = 0.0

    # -- batches ---------------------------------------------------------------
    def batch_indices(self, step: int) -> np.ndarray:
        """Sample indices of global step ``step``: epoch-wise seeded permutations, so any
        step's batch is known without replaying the ones before it."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch, 0]).permutation(len(self.train))
        size = self.config.batch_size
        return np.sort(order[position * size : (position + 1) * size])

    # -- one step ----------------------------------------------------------------
    def train_step(self, penalty: Callable[[dict[str, np.ndarray]], None] | None = None) -> tuple[float, int, int]:
        """One forward/backward/update on the next batch: (loss, correct, batch size).

        ``penalty(grads)`` may add the gradient of a regulariser to ``grads`` in place
        before the optimizer steps (the compression solver's sparsity term); it is handed to
        the optimizer, which fuses an ``optim.Penalty`` into its own pass where it can.
        """
        index = self.batch_indices(self.step)
        encoding_seed = int(np.random.SeedSequence([self.config.seed, self.step, 2]).generate_state(1)[0])
        x = self.train.inputs(index, seed=encoding_seed)
        y = self.train.y[index]
        output, tape = forward_train(self.graph, x, np.random.default_rng([self.config.seed, self.step, 1]))
        teaching = {} if self.teacher is None else {"teacher": self.teacher[index], "distill": self.distill}
        loss, grad_output = self.loss(output, y, **teaching)
        if not np.isfinite(loss):
            raise SNNError(f"training diverged at step {self.step} (loss {loss}); lower the learning rate")
        grads = backward(self.graph, tape, grad_output)
        self.optimizer.lr = self.schedule(self.step)
        self.optimizer.step(grads, penalty)
        if not all(np.isfinite(param).all() for param in self.params.values()):
            raise SNNError(f"training diverged at step {self.step} (weights overflowed); lower the learning rate")
        self.step += 1
        return float(loss), int(np.sum(_prediction(output) == y)), len(index)

    # -- a whole run -----------------------------------------------------------
    def fit(
        self,
        epochs: int | None = None,
        after_step: Callable[["Trainer"], None] | None = None,
        log=None,
    ) -> TrainResult:
        """Train for ``epochs`` (default: the config's), validating after each epoch and
        keeping the best snapshot on validation. Progress (a bar on a terminal,
        periodic lines otherwise, see progress.py) goes to ``log`` (default: the
        current ``sys.stderr``) when the config asks for it."""
        epochs = self.config.epochs if epochs is None else epochs
        progress = Progress(log, quiet=not self.config.progress)
        if epochs > 0:
            progress.say_if_compiling()
        best = TrainResult(self.graph.copy(), 0, accuracy(self.graph, self.val) if self.val is not None else None)
        with progress.task(f"epoch 1/{epochs}", epochs * self.steps_per_epoch) as task:
            for epoch in range(1, epochs + 1):
                started, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
                for _ in range(self.steps_per_epoch):
                    loss, hits, size = self.train_step()
                    if after_step is not None:
                        after_step(self)
                    total_loss += loss * size
                    correct += hits
                    seen += size
                    task.advance(description=f"epoch {epoch}/{epochs}",
                                 status=f"loss {total_loss / seen:.3g}, train acc {accuracy_percent(correct / seen)}")
                val_accuracy = accuracy(self.graph, self.val) if self.val is not None else None
                record = EpochRecord(epoch, self.step, total_loss / seen, correct / seen, val_accuracy,
                                     float(self.optimizer.lr), time.perf_counter() - started)
                best.history.append(record)
                val_text = "" if val_accuracy is None else f", val acc {accuracy_percent(val_accuracy)}"
                progress.line(f"epoch {epoch}/{epochs}: loss {record.loss:.3g}, train acc "
                              f"{accuracy_percent(record.train_accuracy)}{val_text} ({seconds(record.seconds)})")
                if val_accuracy is None or best.best_val_accuracy is None or val_accuracy > best.best_val_accuracy:
                    best.graph, best.best_epoch, best.best_val_accuracy = self.graph.copy(), epoch, val_accuracy
        return best


def train(
    graph: ir.Graph,
    train_data: ModelData,
    val_data: ModelData | None,
    config: TrainConfig,
    log=None,
) -> TrainResult:
    """Train a copy of ``graph`` (the input graph is never modified)."""
    trainer = Trainer(graph.copy(), train_data, val_data, config)
    return trainer.fit(log=log)
