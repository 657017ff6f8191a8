"""Readers that turn model files into the SNN IR; :func:`load_model` picks one by format.

Formats (``fmt``):

- ``profile``: an ONNX model in the SNN-ONNX profile (neurons are ``snn::LIF`` / ``snn::IF`` nodes);
- ``torch-onnx``: a plain ``torch.onnx.export`` of an snnTorch / SpikingJelly / Norse model,
  whose unrolled neuron arithmetic is lifted back into neurons (frontends/torch_onnx.py);
- ``nir``: a NIR graph (HDF5), read with the optional ``nir`` extra (frontends/nir.py);
- ``auto``: HDF5 files (by signature or a ``.nir`` suffix) are NIR; ONNX files with a node in
  the ``snn`` domain are the profile, other ONNX files with comparison ops (the spikes)
  torch-onnx exports.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from .. import ir, profile
from ..errors import IRError, ModelError
from .nir import FRAMEWORKS  # the nir package itself is imported only to read a file
from .onnx_file import read_onnx
from .onnx_profile import from_model

FORMATS = ("auto", "profile", "nir", "torch-onnx")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def detect_format(path: Path, model: onnx.ModelProto | None = None) -> str:
    """``nir``, ``profile`` or ``torch-onnx`` for an existing file (the ONNX ones by their nodes, when given)."""
    if path.suffix.lower() == ".nir" or _is_hdf5(path):
        return "nir"
    if model is not None and not _is_profile(model) and _has_spike_comparisons(model):
        return "torch-onnx"
    return "profile"


def _has_spike_comparisons(model: onnx.ModelProto) -> bool:
    """An unrolled torch.onnx SNN fires with Greater / GreaterOrEqual (or Less) ops."""
    return any(node.op_type in ("Greater", "GreaterOrEqual", "Less", "LessOrEqual") for node in model.graph.node)


def _is_profile(model: onnx.ModelProto) -> bool:
    return any(node.domain == profile.DOMAIN for node in model.graph.node) or any(
        p.key == profile.KEY_PROFILE for p in model.metadata_props
    )


def resolve_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """The concrete format (``profile``, ``nir`` or ``torch-onnx``) :func:`load_model` reads ``path`` as."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ModelError(f"unknown model format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if detect_format(path) == "nir":
        return "nir"
    return detect_format(path, read_onnx(path))


def load_model(path: str | os.PathLike, fmt: str = "auto", *, dt: float | None = None,
               nir_reset: str | None = None, framework: str | None = None) -> ir.Graph:
    """Read a model file as an IR graph; every problem is a one-line ModelError that starts with the path.

    ``dt`` and ``nir_reset`` apply to NIR files only (see :func:`frontends.nir.read_nir`); ``framework``
    (the exporting framework, ``--from-framework``) to NIR files and torch.onnx exports.
    """
    return load_with_proto(path, fmt, dt=dt, nir_reset=nir_reset, framework=framework)[0]


def load_with_proto(path: str | os.PathLike, fmt: str = "auto", *, dt: float | None = None,
                    nir_reset: str | None = None,
                    framework: str | None = None) -> tuple[ir.Graph, onnx.ModelProto | None]:
    """The IR graph, and the file's own ONNX model when it is already in the profile
    (so onnxruntime can run exactly what the user has); ``None`` for other formats."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    if fmt not in FORMATS:
        raise ModelError(f"unknown model format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if framework is not None and framework not in FRAMEWORKS:
        raise ModelError(f"unknown framework {framework!r} for --from-framework; choose one of {', '.join(FRAMEWORKS)}")
    try:
        return _read(path, fmt, dt, nir_reset, framework)
    except (ModelError, IRError) as error:  # every message starts with the file it is about
        if str(error).startswith(f"{path}: "):
            raise
        raise (ModelError if isinstance(error, IRError) else type(error))(f"{path}: {error}") from None


def _read(path: Path, fmt: str, dt, nir_reset, framework) -> tuple[ir.Graph, onnx.ModelProto | None]:
    if fmt == "auto" and detect_format(path) == "nir":
        fmt = "nir"
    if fmt == "nir":
        from .nir import read_nir

        return read_nir(path, dt=dt, reset=nir_reset, framework=framework), None
    if dt is not None or nir_reset is not None:
        raise ModelError(f"{path}: --dt and --nir-reset apply to NIR files only (this is an ONNX model)")
    model = read_onnx(path)
    if fmt == "auto":
        fmt = detect_format(path, model)
    if fmt == "torch-onnx":
        from .torch_onnx import from_model as lift

        return lift(model, framework=framework), None
    if framework is not None:
        raise ModelError(f"{path}: --from-framework applies to NIR files and torch.onnx exports (this is an "
                         f"SNN-ONNX profile model, which records its source framework)")
    if not any(node.domain == profile.DOMAIN for node in model.graph.node):
        raise ModelError(
            f"{path}: no spiking neuron found (the SNN-ONNX profile writes neurons as snn::LIF / snn::IF nodes); "
            f"for a plain torch.onnx export use --from torch-onnx"
        )
    return from_model(model), model
