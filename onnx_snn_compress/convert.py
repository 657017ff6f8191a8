"""Convert a model between formats: any readable input -> the SNN-ONNX profile or NIR.

The converted graph keeps the source's output (a spike train ``[T, N, C]`` when
the source returns one), so it can be checked against the source framework step
by step. The input is never overwritten and the output is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import ir, shrink
from .backends import nir as nir_backend
from .backends import onnx_profile
from .errors import ModelError
from .frontends import load_model, resolve_format
from .outputs import check_output_file

TARGETS = {".nir": "nir"}  # every other suffix: the SNN-ONNX profile


@dataclass
class Conversion:
    source: Path
    target: Path
    source_format: str
    target_format: str
    graph: ir.Graph
    notes: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)  # layer -> dead channels/neurons removed

    def to_json(self) -> dict:
        return {
            "input": str(self.source), "output": str(self.target), "input_format": self.source_format,
            "output_format": self.target_format, "source_framework": self.graph.metadata.get("source_framework", "unknown"),
            "layers": len(self.graph) - 2, "neuron_layers": len(self.graph.neurons()),
            "readout": self.graph.readout.mode, "removed": self.removed, "notes": self.notes,
        }


def convert(source: str | os.PathLike, target: str | os.PathLike, fmt: str = "auto", *,
            dt: float | None = None, nir_reset: str | None = None, framework: str | None = None,
            storage: str = "dense", remove_dead: bool = False, fixed_time_steps: int | None = None) -> Conversion:
    """Read ``source`` (format ``fmt`` or detected) and write it to ``target``: NIR for ``.nir``, else the profile.

    ``dt`` is the NIR time step: of the input when it is NIR, else of the NIR output. ``framework``
    is the input's exporting framework (:func:`frontends.load_model`).
    ``storage`` (``dense`` or ``compact``) is how the profile stores pruned weights;
    ``remove_dead`` drops the channels and neurons pruning left dead (shrink.py);
    ``fixed_time_steps`` writes a model for that T only, with the neurons' time loop unrolled.
    """
    source, target = Path(source), Path(target)
    check_output_file(target, {"the input model": source}, "the output file")
    source_format = resolve_format(source, fmt)
    target_format = TARGETS.get(target.suffix.lower(), "profile")
    if target_format == "nir" and (storage != "dense" or fixed_time_steps is not None):
        raise ModelError("--storage and --fixed-time-steps apply to the SNN-ONNX profile, not to NIR outputs")
    reading_nir = source_format == "nir"
    if dt is not None and not reading_nir and target_format != "nir":
        raise ModelError("--dt is the time step of a NIR file; neither the input nor the output is NIR")
    graph = load_model(source, source_format, dt=dt if reading_nir else None, nir_reset=nir_reset, framework=framework)
    notes = [n for n in graph.metadata.get("import_notes", "").split(" | ") if n]
    removed = {}
    if remove_dead:
        graph, removed = shrink.remove_dead(graph)
    if target_format == "nir":
        write_dt = dt if dt is not None else float(graph.metadata.get("nir.dt", nir_backend.DEFAULT_DT))
        notes += nir_backend.save(graph, target, dt=write_dt)
    else:
        onnx_profile.save(graph, target, storage, fixed_time_steps)
    return Conversion(source, target, source_format, target_format, graph, notes, removed)
