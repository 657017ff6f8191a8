"""The embedded samples: scikit-learn digits, MNIST digits and two trained SNNs in the SNN-ONNX profile.

``digits.npz`` holds the 1,797 8x8 handwritten digits that ship with
scikit-learn (UCI "Optical Recognition of Handwritten Digits", E. Alpaydin and
C. Kaynak, 1998, CC BY 4.0), as float32 ``[N, 1, 8, 8]`` in [0, 1] with a fixed
stratified split: ``x``/``y`` (train, 1,078), ``x_val``/``y_val`` (359),
``x_test``/``y_test`` (360). Made by ``scripts/make_digits_data.py``.

``digits_mlp.onnx`` (64 -> 128 LIF -> 10 LIF) and ``digits_conv.onnx`` (two
conv layers with LIF neurons, then 128 -> 64 LIF -> 10 LIF) are trained SNNs
(T = 8, direct encoding, LIF beta = 0.9): ``scripts/train_samples.sh`` draws a
seeded random initialisation with ``scripts/make_sample_models.py`` and trains
it on the digits with ``snn-compress train``. Their test accuracies are in the
README (``snn-compress evaluate samples/digits_conv.onnx``).

``mnist.npz`` holds 5,000 real 28x28 MNIST digits, split 3,000 / 1,000 / 1,000,
made by ``scripts/make_mnist_data.py``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

SAMPLE_MODELS = ("digits_mlp", "digits_conv")

_HERE = Path(__file__).resolve().parent


def digits_path() -> Path:
    """Path of the embedded digits data set (``digits.npz``)."""
    return _HERE / "digits.npz"


def sample_model_path(name: str) -> Path:
    """Path of the sample model ``name`` (one of :data:`SAMPLE_MODELS`), an ``.onnx`` file."""
    if name not in SAMPLE_MODELS:
        raise ModelError(f"unknown sample model {name!r}; choose one of {', '.join(SAMPLE_MODELS)}")
    return _HERE / f"{name}.onnx"


__all__ = ["SAMPLE_MODELS", "digits_path", "sample_model_path"]
