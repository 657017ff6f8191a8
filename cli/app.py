"""The Typer application and what every command shares (options, output helpers)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Iterable, Optional

import typer

from .. import __version__
from ..api import PATH_OPTIONS
from ..errors import EXIT_GATE_FAILED, SNNError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compress spiking neural networks stored as ONNX, on a CPU.",
)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"snn-compress {__version__}")
        raise typer.Exit()


def choices(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """A str Enum of the library's choices, so ``--help`` lists them and Typer checks them."""
    return enum.Enum(name, {value: value for value in values}, type=str)


def plain(value):
    """An option's value as the library takes it (Enum members as their strings)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


ModelArg = typer.Argument(None, help="Model file: .onnx (the SNN-ONNX profile or a torch.onnx export) or .nir. Default: the embedded digits MLP sample.")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON document on stdout (notes and progress go to stderr).")
StorageOpt = typer.Option("dense", "--storage", help="dense, or compact: pruned weights as a packed bitmask plus "
                          "their nonzero values, rebuilt by standard ops that onnxruntime folds at load.")
RemoveDeadOpt = typer.Option(False, "--remove-dead", help="Drop the channels and neurons that pruning left dead "
                             "(same predictions, smaller dense tensors; see docs/profile.md).")
MinAccuracyOpt = typer.Option(None, "--min-accuracy", help="Gate: fail (exit 1) when accuracy is below this fraction, e.g. 0.95.")
MaxDropOpt = typer.Option(None, "--max-accuracy-drop", help="Gate: fail (exit 1) when accuracy is more than this fraction below the uncompressed model's on the same split, e.g. 0.02.")
MaxResourceOpt = typer.Option(None, "--max-resource", help="Gate: fail (exit 1) when --resource per inference exceeds this (synapses, MACs, SynOps or pJ).")


def _read_config(ctx: typer.Context, param, value: Optional[Path]) -> Optional[Path]:
    """Make the TOML file's options the defaults of this command (command-line options override them)."""
    if value is None or ctx.resilient_parsing:
        return value
    from ..config import read_config

    table = read_config(value)
    params = {p.name: p for p in ctx.command.params if p.name not in ("config", "as_json")}
    unknown = sorted(key for key in table if key not in params)
    if unknown:
        names = ", ".join(sorted(name.replace("_", "-") for name in params))
        raise SNNError(f"--config {value}: {', '.join(u.replace('_', '-') for u in unknown)} is not an option of "
                       f"{ctx.command_path}; options are {names}")
    for key in PATH_OPTIONS:
        if isinstance(table.get(key), str):
            table[key] = str(value.parent / table[key])  # relative to the file's folder (absolute stays)
    ctx.default_map = {**(ctx.default_map or {}), **table}
    return value


ConfigOpt = typer.Option(
    None, "--config", is_eager=True, callback=_read_config, dir_okay=False,
    help="TOML file of options (keys: option names without dashes, e.g. steps-per-budget = 300); "
         "command-line options override it.",
)


def command_options(ctx: typer.Context, *, leave_out: tuple[str, ...] = ("as_json", "config")) -> dict:
    """This command's options as the library function takes them (keyword arguments); a
    repeatable option given no times is ``None``, as in the library's defaults."""
    return {name: plain(value) if value != [] and value != () else None
            for name, value in ctx.params.items() if name not in leave_out}


def model_path(model: Optional[Path], sample: str = "digits_mlp") -> Path:
    """The user's model, or the embedded sample ``sample`` when none is given."""
    from ..samples import sample_model_path

    return model if model is not None else sample_model_path(sample)


def print_json(value) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def fail_gates(failed: list[str]) -> None:
    """Say which gates failed, one line each on stderr, and exit with code 1 (nothing when none did)."""
    if not failed:
        return
    for line in failed:
        typer.echo(f"gate failed: {line}", err=True)
    raise typer.Exit(EXIT_GATE_FAILED)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def percent(value: float | None) -> str:
    """A table cell: blank for None, else the report's rounding (``96.4 %``)."""
    from ..report import percent as rounded

    return "" if value is None else rounded(value)
