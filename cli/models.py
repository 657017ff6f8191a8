"""Commands that look at a model: inspect, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SNNError
from .app import JsonOpt, ModelArg, app, model_path, percent, print_json, table

FromOpt = typer.Option("auto", "--from", help="Input format: auto, profile, nir or torch-onnx (a plain torch.onnx export).")
DtOpt = typer.Option(None, "--dt", help="NIR only: the time step the exporter used (Norse: its dt). Default: "
                     "fixed by the exporter (snnTorch, Sinabs) or pinned by the file, else asked for (docs/interop.md).")
NirResetOpt = typer.Option(None, "--nir-reset", help="NIR only: hard (NIR's reset to v_reset, the default), "
                           "subtract (Sinabs MembraneSubtract), or subtract-delayed (snnTorch's default Leaky).")
TimeStepsOpt = typer.Option(None, "--time-steps", help="T for static data (temporal data bring their own). "
                             "Default: the T a torch.onnx export was unrolled over, else 8.")
FrameworkOpt = typer.Option(None, "--from-framework", help="The framework that exported the model: snntorch, "
                            "spikingjelly, norse, sinabs, rockpool, lava or nir (NIR's own definitions). Default: "
                            "inferred from the file and said in a note (docs/interop.md).")


# what a frontend inferred about its input, shown by inspect
SOURCE_KEYS = ("source_format", "source_framework", "nir.exporter", "nir.dt", "nir.reset", "time_steps")


def source_time_steps(graph, time_steps: Optional[int]) -> int:
    """``--time-steps``, else the model's own T (with a note), else the default."""
    from ..data import model_time_steps

    time_steps, note = model_time_steps(graph.metadata, time_steps)
    print_notes([note] if note else [])
    return time_steps


def print_notes(notes) -> None:
    """Assumptions an importer had to make, one line each on stderr."""
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def load_source(path: Path, source_format: str, dt, nir_reset, framework):
    """The IR graph and, for profile files, the ONNX model as the user has it; notes go to stderr."""
    from ..frontends import load_with_proto

    graph, proto = load_with_proto(path, source_format, dt=dt, nir_reset=nir_reset, framework=framework)
    print_notes(n for n in graph.metadata.get("import_notes", "").split(" | ") if n)
    return graph, proto


@app.command()
def inspect(model: Optional[Path] = ModelArg, as_json: bool = JsonOpt, source_format: str = FromOpt,
            dt: Optional[float] = DtOpt, nir_reset: Optional[str] = NirResetOpt,
            framework: Optional[str] = FrameworkOpt):
    """Layers, neuron parameters, parameter and nonzero counts, connectivity, MACs per time step."""
    from ..resources import summarize

    summary = summarize(load_source(model_path(model), source_format, dt, nir_reset, framework)[0])
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
    source = {k: v for k, v in summary["metadata"].items() if k in SOURCE_KEYS}
    if source:
        typer.echo("read as: " + "  ".join(f"{k} {v}" for k, v in source.items()))


@app.command()
def evaluate(
    model: Optional[Path] = ModelArg,
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz (x, y, x_val, y_val, x_test, y_test). Default: the embedded digits."),
    runtime: str = typer.Option("sim", "--runtime", help="sim (Numba simulator) or onnxruntime."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    encoding: str = typer.Option("direct", "--encoding", help="For static data: direct or poisson."),
    time_steps: Optional[int] = TimeStepsOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the poisson encoding."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    as_json: bool = JsonOpt,
    source_format: str = FromOpt,
    dt: Optional[float] = DtOpt,
    nir_reset: Optional[str] = NirResetOpt,
    framework: Optional[str] = FrameworkOpt,
):
    """Accuracy and per-layer firing rates of MODEL on a data split."""
    from ..data import load_for_model
    from ..evaluate import RUNTIMES, evaluate as run_evaluation
    from ..samples import digits_path

    if runtime not in RUNTIMES:
        raise SNNError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = model_path(model)
    graph, proto = load_source(path, source_format, dt, nir_reset, framework)
    time_steps = source_time_steps(graph, time_steps)
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


