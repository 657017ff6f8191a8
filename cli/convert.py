"""The convert command: any supported model file -> the SNN-ONNX profile (or NIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import JsonOpt, RemoveDeadOpt, StorageOpt, app, plain, print_json
from .models import DtOpt, Framework, FrameworkOpt, FromOpt, NirReset, NirResetOpt, SourceFormat, print_notes


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Model to read: SNN-ONNX profile, NIR (.nir) or a plain torch.onnx export."),
    target: Path = typer.Argument(..., help="File to write: NIR when it ends in .nir, else the SNN-ONNX profile."),
    source_format: SourceFormat = FromOpt,
    dt: Optional[float] = DtOpt,
    nir_reset: Optional[NirReset] = NirResetOpt,
    framework: Optional[Framework] = FrameworkOpt,
    storage: str = StorageOpt,
    remove_dead: bool = RemoveDeadOpt,
    fixed_time_steps: Optional[int] = typer.Option(
        None, "--fixed-time-steps", help="Write the model for this T only, the neurons' time loop unrolled "
        "(faster in onnxruntime than the Scan of the default, which runs any T, on small networks only)."),
    as_json: bool = JsonOpt,
):
    """Write SOURCE as TARGET, keeping its output (the spike train when SOURCE returns one).

    Example: snn-compress convert snntorch_model.nir model.onnx
    """
    from ..convert import convert as run_conversion

    result = run_conversion(source, target, plain(source_format), dt=dt, nir_reset=plain(nir_reset), framework=plain(framework),
                            storage=plain(storage), remove_dead=remove_dead, fixed_time_steps=fixed_time_steps)
    if as_json:
        print_json(result.to_json())
        return
    summary = result.to_json()
    typer.echo(
        f"wrote {result.target} ({result.target_format}) from {result.source} ({result.source_format}, "
        f"{summary['source_framework']}): {summary['layers']} layers, {summary['neuron_layers']} neuron layers, "
        f"output {summary['readout']}"
        + "".join(f"; removed {count} dead channels/neurons of {layer}" for layer, count in result.removed.items() if count)
    )
    print_notes(result.notes)
