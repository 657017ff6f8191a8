"""The Typer application and what every command shares (options, output helpers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compress spiking neural networks stored as ONNX, on a CPU.",
)

ModelArg = typer.Argument(None, help="Model file (.onnx in the SNN-ONNX profile). Default: the embedded digits MLP sample.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
StorageOpt = typer.Option("dense", "--storage", help="dense, or compact: pruned weights as a packed bitmask plus "
                          "their nonzero values, rebuilt by standard ops that onnxruntime folds at load.")
RemoveDeadOpt = typer.Option(False, "--remove-dead", help="Drop the channels and neurons that pruning left dead "
                             "(same predictions, smaller dense tensors; see docs/profile.md).")


def model_path(model: Optional[Path], sample: str = "digits_mlp") -> Path:
    """The user's model, or the embedded sample ``sample`` when none is given."""
    from ..samples import sample_model_path

    return model if model is not None else sample_model_path(sample)


def print_json(value) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"
