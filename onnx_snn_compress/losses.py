"""Training losses: each one returns its value and its gradient w.r.t. its input, side by side.

A loss is a pure function ``(output, labels) -> (loss, grad)``: ``loss`` is a Python float,
``grad`` has the shape and dtype of ``output``. Losses are found by name in :data:`LOSSES`:

    mse_rate     MSE between the output firing rate and the one-hot target (the paper's loss)
    ce_rate      softmax cross-entropy on the output firing rate
    ce_readout   softmax cross-entropy on a non-spiking leaky-integrator readout

Every loss also takes ``teacher`` (``[N, C]``: another model's time-averaged output on the
same samples) and ``distill`` (its weight in [0, 1]) for distillation from an uncompressed
model (see :func:`mse_rate` and :func:`cross_entropy`).

``mse_rate`` and ``ce_rate`` take the graph output as it comes: ``[N, C]`` for a rate
readout, or the spike train ``[T, N, C]`` of a "spikes" readout, which they average over
time first (see :func:`time_averaged`). :func:`default_loss` picks the loss for a
readout mode.

Arithmetic runs in the input's precision: float32 in the engine; float64 inputs stay
float64 so that finite-difference checks are exact. (The scalar cross-entropy value alone
is summed in float64; see there.) ``labels`` are integer class indices ``[N]`` in ``[0, C)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Loss = Callable[..., tuple[float, np.ndarray]]


def _scores(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype != np.float64:
        values = values.astype(np.float32)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"{name} must be a non-empty [N, C], got shape {values.shape}")
    return values


def _class_indices(labels: np.ndarray, samples: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (samples,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({samples},), got {labels.dtype} {labels.shape}")
    if (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.intp)


def one_hot(labels: np.ndarray, classes: int, dtype=np.float32) -> np.ndarray:
    """``[N, C]`` with ``target[n, labels[n]] = 1`` and 0 elsewhere."""
    target = np.zeros((len(labels), classes), dtype=dtype)
    target[np.arange(len(labels)), labels] = 1
    return target


def _teacher_scores(teacher: np.ndarray, distill: float, shape: tuple, dtype) -> np.ndarray:
    if not 0.0 <= distill <= 1.0:
        raise ValueError(f"distill must lie in [0, 1], got {distill}")
    teacher = np.asarray(teacher, dtype=dtype)
    if teacher.shape != shape:
        raise ValueError(f"teacher must have the output's shape {shape}, got {teacher.shape}")
    return teacher


def mse_rate(output_rate: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None = None,
             distill: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean squared error between the firing rate and the one-hot target, mean over N*C.

        L = 1/(N*C) * sum_{n,c} (R[n,c] - Q[n,c])^2
        dL/dR = 2/(N*C) * (R - Q)

    with Q = onehot(y); this is ``torch.nn.MSELoss()(rate, one_hot(y))`` (reduction 'mean').
    Distillation (Hinton et al. 2015, on rates): with a ``teacher`` rate ``[N, C]`` (an
    uncompressed model's output on the same samples) and weight ``distill`` = a in [0, 1],
    Q = (1 - a) onehot(y) + a teacher, which is (1 - a) MSE(R, onehot) + a MSE(R, teacher)
    up to a constant.
    """
    rate = _scores(output_rate, "output_rate")
    samples, classes = rate.shape
    labels = _class_indices(labels, samples, classes)
    target = one_hot(labels, classes, rate.dtype)
    if teacher is not None:
        teacher = _teacher_scores(teacher, distill, rate.shape, rate.dtype)
        target = (1 - distill) * target + distill * teacher
    error = rate - target
    loss = float(np.mean(error * error))
    grad = error * rate.dtype.type(2.0 / (samples * classes))
    return loss, grad


def cross_entropy(logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0,
                  teacher: np.ndarray | None = None, distill: float = 0.0) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy, mean over N, with optional label smoothing (as torch).

        log p[n,c] = Z[n,c] - m[n] - log sum_k exp(Z[n,k] - m[n]),   m[n] = max_k Z[n,k]
        q[n,c]     = (1 - eps) * onehot(y)[n,c] + eps / C
        L          = -1/N * sum_{n,c} q[n,c] * log p[n,c]
        dL/dZ      = (p - q) / N

    Distillation (Hinton et al. 2015, temperature 1): with the ``teacher``'s logits
    ``[N, C]`` and weight ``distill`` = a, q becomes (1 - a) q + a softmax(teacher), which
    adds a * KL(softmax(teacher) || p) to the loss up to a constant.

    Subtracting the row maximum (log-sum-exp) keeps every ``exp`` in (0, 1], so huge
    logits give no overflow; the gradient is always finite. This is
    ``torch.nn.CrossEntropyLoss(label_smoothing=eps)(Z, y)``.
    """
    logits = _scores(logits, "logits")
    samples, classes = logits.shape
    labels = _class_indices(labels, samples, classes)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    dtype = logits.dtype.type
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(samples)
    # The picked log-probability, not onehot * log p: 0 * (-inf) would be NaN when a
    # non-target logit is so far below the maximum that its log-probability overflows.
    # The loss value is summed in float64: log-probabilities can reach -3e38, and a
    # float32 sum of a few of them overflows although their mean does not.
    nll = -log_probs[rows, labels].astype(np.float64)
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * log_probs.mean(axis=1, dtype=np.float64)
    loss = float(nll.mean())
    target = np.full_like(logits, dtype(label_smoothing / classes))
    target[rows, labels] += dtype(1.0 - label_smoothing)
    if teacher is not None:
        teacher = _teacher_scores(teacher, distill, logits.shape, logits.dtype)
        shifted_teacher = np.exp(teacher - teacher.max(axis=1, keepdims=True))
        soft = shifted_teacher / shifted_teacher.sum(axis=1, keepdims=True)
        loss = (1 - distill) * loss - distill * float(np.sum(soft * log_probs, dtype=np.float64)) / samples
        target = (1 - distill) * target + distill * soft
    grad = (np.exp(log_probs) - target) / dtype(samples)
    return loss, grad


def time_averaged(loss: Loss) -> Loss:
    """Lift a loss on ``[N, C]`` to a graph output that may be a spike train ``[T, N, C]``.

        Y = (1/T) * sum_t X[t],   L = loss(Y),   dL/dX[t] = (dL/dY) / T

    ``[N, C]`` outputs pass straight through; the gradient of a spike train comes back as
    ``[T, N, C]``.
    """

    def on_output(output: np.ndarray, labels: np.ndarray, **options) -> tuple[float, np.ndarray]:
        output = np.asarray(output)
        if output.ndim != 3:
            return loss(output, labels, **options)
        if output.dtype != np.float64:
            output = output.astype(np.float32)
        time_steps = output.shape[0]
        value, grad = loss(output.mean(axis=0), labels, **options)
        grad = grad / grad.dtype.type(time_steps)
        return value, np.ascontiguousarray(np.broadcast_to(grad, output.shape))

    on_output.__name__ = loss.__name__
    on_output.__doc__ = loss.__doc__
    return on_output


LOSSES: dict[str, Loss] = {
    "mse_rate": time_averaged(mse_rate),
    "ce_rate": time_averaged(cross_entropy),
    "ce_readout": cross_entropy,
}

DEFAULT_LOSS = {"rate": "mse_rate", "spikes": "mse_rate", "leaky": "ce_readout"}


def default_loss(readout_mode: str) -> str:
    """The name of the loss to train a graph whose Readout has this mode with.

    A firing-rate output (rate, spikes) is trained towards the one-hot target as in the
    paper; a leaky integrator's output is unbounded, so it is trained as logits.
    """
    if readout_mode not in DEFAULT_LOSS:
        raise ValueError(f"no default loss for readout mode {readout_mode!r}; modes: {tuple(DEFAULT_LOSS)}")
    return DEFAULT_LOSS[readout_mode]
