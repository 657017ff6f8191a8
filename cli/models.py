"""Commands that look at a model: inspect, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..data import ENCODINGS, SPLITS
from ..frontends import FORMATS
from ..frontends.nir import FRAMEWORKS, RESET_CHOICES
from ..resources import RESOURCES
from .app import (JsonOpt, MaxDropOpt, MaxResourceOpt, MinAccuracyOpt, ModelArg, app, choices, command_options,
                  fail_gates, model_path, percent, plain, print_json, table)

SourceFormat = choices("SourceFormat", FORMATS)
NirReset = choices("NirReset", RESET_CHOICES)
Encoding = choices("Encoding", ENCODINGS)
Runtime = choices("Runtime", ("sim", "onnxruntime"))  # evaluate.RUNTIMES: importing it loads Numba, slowing --help
Split = choices("Split", SPLITS)
Resource = choices("Resource", RESOURCES)
Framework = choices("Framework", FRAMEWORKS)

FromOpt = typer.Option("auto", "--from", help="Input format (torch-onnx: a plain torch.onnx export).")
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




def print_notes(notes) -> None:
    """Assumptions an importer had to make, one line each on stderr."""
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def load_source(path: Path, source_format: str, dt, nir_reset, framework):
    """The IR graph and, for profile files, the ONNX model as the user has it; notes go to stderr."""
    from ..frontends import load_with_proto

    graph, proto = load_with_proto(path, plain(source_format), dt=dt, nir_reset=plain(nir_reset), framework=plain(framework))
    print_notes(n for n in graph.metadata.get("import_notes", "").split(" | ") if n)
    return graph, proto


@app.command()
def inspect(model: Optional[Path] = ModelArg, as_json: bool = JsonOpt, source_format: SourceFormat = FromOpt,
            dt: Optional[float] = DtOpt, nir_reset: Optional[NirReset] = NirResetOpt,
            framework: Optional[Framework] = FrameworkOpt):
    """Layers, neuron parameters, parameter and nonzero counts, connectivity, MACs per time step.

    Example: snn-compress inspect exported.onnx --from torch-onnx
    """
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
            value = lambda v: f"{v['min']:.4g}..{v['max']:.4g}" if isinstance(v, dict) else f"{v:.4g}"  # noqa: E731
            detail = f"{n['model']} beta={value(n['beta'])} vth={value(n['v_threshold'])} reset={n['reset']}"
            if "current_decay" in n:  # a synaptic current (SynapticNeuron)
                detail += f" current_decay={value(n['current_decay'])}"
        elif "readout" in layer:
            detail = layer["readout"]["mode"]
        rows.append([
            layer["name"], layer["kind"], "x".join(map(str, layer["output_shape"])), layer["synapses"] or "",
            layer["params"] or "", percent(layer["connectivity"]), layer["macs_nonzero"], detail,
        ])
    typer.echo(table(rows, ["layer", "kind", "shape", "synapses", "params", "connectivity", "MACs/step", "detail"]))
    typer.echo(
        f"\nparams {summary['params']:,} (surviving synapses, as compress counts them) of {summary['synapses']:,}  "
        f"connectivity {percent(summary['connectivity'])}  neurons {summary['neurons']:,}  "
        f"MACs/step {summary['macs_per_step_nonzero']:,} ({summary['macs_per_step']:,} with every synapse kept)  "
        f"parameters with biases and BatchNorm {summary['parameters']:,}"
    )
    source = {k: v for k, v in summary["metadata"].items() if k in SOURCE_KEYS}
    if source:
        typer.echo("read as: " + "  ".join(f"{k} {v}" for k, v in source.items()))
    if "source_notes" in summary["metadata"]:  # a profile file converted from another format
        typer.echo("converted from a file read with these notes: " + summary["metadata"]["source_notes"])


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Optional[Path] = ModelArg,
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz (x, y, x_val, y_val, x_test, y_test). Default: the embedded digits."),
    runtime: Runtime = typer.Option("sim", "--runtime", help="sim (Numba simulator) or onnxruntime."),
    split: Split = typer.Option("test", "--split"),
    encoding: Encoding = typer.Option("direct", "--encoding", help="How static data become spikes over T steps."),
    time_steps: Optional[int] = TimeStepsOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the poisson encoding."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    as_json: bool = JsonOpt,
    source_format: SourceFormat = FromOpt,
    dt: Optional[float] = DtOpt,
    nir_reset: Optional[NirReset] = NirResetOpt,
    framework: Optional[Framework] = FrameworkOpt,
    min_accuracy: Optional[float] = MinAccuracyOpt,
    max_accuracy_drop: Optional[float] = MaxDropOpt,
    reference_model: Optional[Path] = typer.Option(None, "--reference-model", help="The uncompressed model, for --max-accuracy-drop (same split, runtime and format)."),
    max_resource: Optional[float] = MaxResourceOpt,
    resource: Resource = typer.Option("params", "--resource", help="The resource --max-resource bounds."),
    e_mac: float = typer.Option(4.6, "--e-mac", help="Energy of a MAC in pJ (for --resource energy)."),
    e_ac: float = typer.Option(0.9, "--e-ac", help="Energy of an accumulate (one SynOp) in pJ."),
    measure_samples: int = typer.Option(256, "--measure-samples", min=1, help="Samples (the split's first) on which --max-resource measures firing rates."),
):
    """Accuracy and per-layer firing rates of MODEL on a data split, checked against the quality gates.

    Example: snn-compress evaluate runs/model/budget_0.1/model.onnx --data data.npz --runtime onnxruntime

    Exit codes: 0 done, 1 a quality gate failed, 2 bad input, 130 interrupted.
    """
    from ..api import evaluate as run_evaluation
    from ..report import accuracy_percent

    result = run_evaluation(**command_options(ctx, leave_out=("as_json", "quiet")), progress=not quiet)
    if as_json:
        print_json(result.to_json())
    else:
        samples = f"{result.samples} sample{'' if result.samples == 1 else 's'}"
        typer.echo(f"{result.model}: {result.split} accuracy {accuracy_percent(result.accuracy)} on {samples}, "
                   f"T={result.time_steps}, runtime {result.runtime}")
        rows = [[name, percent(rate)] for name, rate in result.firing_rates.items()]
        typer.echo(table(rows, ["neuron layer", "firing rate"]))
    fail_gates(result.failed)
