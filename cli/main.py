"""The `snn-compress` command line. Each command parses options, calls one library
function and prints its result; all logic lives in the library."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..errors import SNNError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compress spiking neural networks stored as ONNX, on a CPU.",
)

ModelArg = typer.Argument(None, help="Model file (.onnx in the SNN-ONNX profile). Default: the embedded digits MLP sample.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def _model_path(model: Optional[Path]) -> Path:
    from ..samples import sample_model_path

    return model if model is not None else sample_model_path("digits_mlp")


def _print_json(value) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


@app.command()
def inspect(model: Optional[Path] = ModelArg, as_json: bool = JsonOpt):
    """Layers, neuron parameters, parameter and nonzero counts, connectivity, MACs per time step."""
    from ..frontends import load_model
    from ..resources import summarize

    summary = summarize(load_model(_model_path(model)))
    if as_json:
        _print_json(summary)
        return
    rows = []
    for layer in summary["layers"]:
        detail = ""
        if "neuron" in layer:
            n = layer["neuron"]
            detail = f"{n['model']} beta={n['beta']:.4g} vth={n['v_threshold']:.4g} reset={n['reset']}"
        elif "readout" in layer:
            detail = layer["readout"]["mode"]
        rows.append([
            layer["name"], layer["kind"], "x".join(map(str, layer["output_shape"])), layer["params"],
            layer["nonzero"], _percent(layer["connectivity"]), layer["macs_nonzero"], detail,
        ])
    typer.echo(_table(rows, ["layer", "kind", "shape", "params", "nonzero", "connectivity", "MACs/step", "detail"]))
    typer.echo(
        f"\nparams {summary['params']:,}  nonzero {summary['nonzero']:,}  "
        f"connectivity {_percent(summary['connectivity'])}  neurons {summary['neurons']:,}  "
        f"MACs/step {summary['macs_per_step_nonzero']:,} (dense {summary['macs_per_step']:,})"
    )


@app.command()
def evaluate(
    model: Optional[Path] = ModelArg,
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz (x, y, x_val, y_val, x_test, y_test). Default: the embedded digits."),
    runtime: str = typer.Option("sim", "--runtime", help="sim (Numba simulator) or onnxruntime."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    encoding: str = typer.Option("direct", "--encoding", help="For static data: direct or poisson."),
    time_steps: int = typer.Option(8, "--time-steps", help="T for static data (temporal data bring their own)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the poisson encoding."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    as_json: bool = JsonOpt,
):
    """Accuracy and per-layer firing rates of MODEL on a data split."""
    from ..data import load_for_model
    from ..evaluate import RUNTIMES, evaluate as run_evaluation
    from ..frontends import load_with_proto
    from ..samples import digits_path

    if runtime not in RUNTIMES:
        raise SNNError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = _model_path(model)
    graph, proto = load_with_proto(path)
    dataset = load_for_model(
        data if data is not None else digits_path(), graph.input.shape, graph.num_classes,
        split=split, time_steps=time_steps, encoding=encoding, seed=seed,
    )
    result = run_evaluation(graph, dataset, runtime=runtime, model=proto, batch_size=batch_size)
    if as_json:
        _print_json({"model": str(path), "split": split, **result.to_json()})
        return
    typer.echo(f"{path}: {split} accuracy {100 * result.accuracy:.2f}% on {result.samples} samples, "
               f"T={result.time_steps}, runtime {runtime}")
    rows = [[name, _percent(rate)] for name, rate in result.firing_rates.items()]
    typer.echo(_table(rows, ["neuron layer", "firing rate"]))


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"snn-compress {__version__}")
        raise typer.Exit()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
