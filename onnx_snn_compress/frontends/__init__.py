"""Readers that turn model files into the SNN IR; :func:`load_model` picks one by format."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from .. import ir, profile
from ..errors import ModelError
from .onnx_file import read_onnx
from .onnx_profile import from_model

FORMATS = ("auto", "profile", "nir")


def detect_format(path: Path) -> str:
    return "nir" if path.suffix.lower() == ".nir" else "profile"


def load_model(path: str | os.PathLike, fmt: str = "auto") -> ir.Graph:
    """Read a model file as an IR graph; every problem is a one-line ModelError."""
    return load_with_proto(path, fmt)[0]


def load_with_proto(path: str | os.PathLike, fmt: str = "auto") -> tuple[ir.Graph, onnx.ModelProto | None]:
    """The IR graph, and the file's own ONNX model when it is already in the profile
    (so onnxruntime can run exactly what the user has); ``None`` for other formats."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    if fmt not in FORMATS:
        raise ModelError(f"unknown model format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "nir":
        raise ModelError(f"{path}: reading NIR files is not supported yet")
    model = read_onnx(path)
    if not any(node.domain == profile.DOMAIN for node in model.graph.node):
        raise ModelError(
            f"{path}: no spiking neuron found (the SNN-ONNX profile writes neurons as snn::LIF / snn::IF nodes)"
        )
    return from_model(model), model
