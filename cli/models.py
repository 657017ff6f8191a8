"""Commands that look at a model: inspect, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SNNError
from .app import JsonOpt, ModelArg, app, model_path, percent, print_json, table


@app.command()
def inspect(model: Optional[Path] = ModelArg, as_json: bool = JsonOpt):
    """Layers, neuron parameters, parameter and nonzero counts, connectivity, MACs per time step."""
    from ..frontends import load_model
    from ..resources import summarize

    summary = summarize(load_model(model_path(model)))
    if as_json:
        print_json(summary)
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
            layer["nonzero"], percent(layer["connectivity"]), layer["macs_nonzero"], detail,
        ])
    typer.echo(table(rows, ["layer", "kind", "shape", "params", "nonzero", "connectivity", "MACs/step", "detail"]))
    typer.echo(
        f"\nparams {summary['params']:,}  nonzero {summary['nonzero']:,}  "
        f"connectivity {percent(summary['connectivity'])}  neurons {summary['neurons']:,}  "
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
    path = model_path(model)
    graph, proto = load_with_proto(path)
    dataset = load_for_model(
        data if data is not None else digits_path(), graph.input.shape, graph.num_classes,
        split=split, time_steps=time_steps, encoding=encoding, seed=seed,
    )
    result = run_evaluation(graph, dataset, runtime=runtime, model=proto, batch_size=batch_size)
    if as_json:
        print_json({"model": str(path), "split": split, **result.to_json()})
        return
    typer.echo(f"{path}: {split} accuracy {100 * result.accuracy:.2f}% on {result.samples} samples, "
               f"T={result.time_steps}, runtime {runtime}")
    rows = [[name, percent(rate)] for name, rate in result.firing_rates.items()]
    typer.echo(table(rows, ["neuron layer", "firing rate"]))


