"""The compress command: the product's main job."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..gates import SELECTIONS
from ..profile import STORAGES
from ..resources import RESOURCES
from ..solvers import METHODS
from ..structured import STRUCTURES
from .app import (ConfigOpt, JsonOpt, MaxDropOpt, MaxResourceOpt, MinAccuracyOpt, RemoveDeadOpt, StorageOpt, app,
                  choices, command_options, fail_gates, print_json)
from .models import DtOpt, Encoding, Framework, FrameworkOpt, FromOpt, NirReset, NirResetOpt, SourceFormat, TimeStepsOpt

Resource = choices("Resource", RESOURCES)
Method = choices("Method", METHODS)
Granularity = choices("Granularity", ("global", "layer"))
Select = choices("Select", SELECTIONS)
Structure = choices("Structure", STRUCTURES)
Storage = choices("Storage", STORAGES)


@app.command()
def compress(
    ctx: typer.Context,
    model: Optional[Path] = typer.Argument(None, help="Model file: .onnx (the SNN-ONNX profile or a torch.onnx export) or .nir. Default: the embedded digits conv sample."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz (x, y, x_val, y_val, x_test, y_test). Default: the embedded digits."),
    budget: Optional[List[float]] = typer.Option(None, "--budget", help="Fraction of the input model's resource to keep, in (0, 1]; repeat for a schedule. Default: 0.3 0.2 0.1 0.05."),
    resource: Resource = typer.Option("params", "--resource", help="What a budget limits: surviving synapses, MACs, SynOps or energy (pJ)."),
    method: Method = typer.Option("minimax", "--method", help="Pruning method (minimax-paper: the reference); every method gets the same training steps."),
    granularity: Granularity = typer.Option("global", "--granularity", help="global (one pruning amount) or layer "
                                            "(one amount per layer, each chosen by the search; the budget is the "
                                            "whole model's; see docs/solver.md)."),
    structure: Structure = typer.Option("none", "--structure", help="none (single synapses) or channel (whole conv channels / "
                                        "linear neurons, removed from the written models; every method)."),
    prune: Optional[List[str]] = typer.Option(None, "--prune", help="Synapse layer to prune (repeat). Default: all but the first, unless the first holds most synapses."),
    out: Path = typer.Option(Path("snn-compress-out"), "--out", help="Output folder (one model per budget, report.json, config.toml)."),
    steps_per_budget: int = typer.Option(300, "--steps-per-budget", help="Training steps per budget, the same for every method."),
    search_fraction: float = typer.Option(0.5, "--search-fraction", help="Most of a budget's steps the search may use (the rest finetunes)."),
    finetune_lr_factor: float = typer.Option(10.0, "--finetune-lr-factor", help="Each budget's finetune restarts a cosine at this x --lr."),
    min_output_synapses: int = typer.Option(1, "--min-output-synapses", min=0, help="Each output neuron keeps at least its this many strongest synapses (when the output layer is pruned)."),
    reconnect: Optional[bool] = typer.Option(None, "--reconnect/--no-reconnect", help="Spend the cost of the synapses a cut keeps dead (no output depends on them) on the strongest live ones it pruned. Default: on for minimax, off otherwise."),
    distill: Optional[float] = typer.Option(None, "--distill", help="Weight in [0, 1] of the input model's output rates "
                                            "as a target in the loss (distillation). Default: 0.5 for minimax, 0 otherwise."),
    search_lr_factor: Optional[float] = typer.Option(None, "--search-lr-factor", help="The search stage's cosine starts at this x --lr "
                                                     "(not minimax-paper's). Default: 3 for minimax, 1 for gradual."),
    search_every: Optional[int] = typer.Option(None, "--search-every", help="Training steps per minimax search step (the "
                                               "least-s sets, s and duals; minimax only): faster searches, "
                                               "lower accuracy (docs/solver.md). Default: 1."),
    eval_every: int = typer.Option(50, "--eval-every", help="Steps between validations (and checkpoints)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of the weights (Adam)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr_s: float = typer.Option(0.1, "--lr-s", help="Step size of the pruning amount (minimax)."),
    dual_lr_y: float = typer.Option(1.0, "--dual-lr-y", help="Dual ascent step of the sparsity multiplier (minimax)."),
    dual_lr_z: float = typer.Option(0.1, "--dual-lr-z", help="Dual ascent step of the resource multiplier (minimax)."),
    e_mac: float = typer.Option(4.6, "--e-mac", help="Energy of a MAC in pJ (non-spike input layers)."),
    e_ac: float = typer.Option(0.9, "--e-ac", help="Energy of an accumulate (one SynOp) in pJ."),
    time_steps: Optional[int] = TimeStepsOpt,
    encoding: Encoding = typer.Option("direct", "--encoding", help="How static data become spikes over T steps."),
    seed: int = typer.Option(0, "--seed"),
    measure_samples: int = typer.Option(256, "--measure-samples", help="Firing rates, SynOps, effective MACs and energy are measured on the first N validation samples."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out (its files only; nothing else there is touched)."),
    keep_checkpoint: bool = typer.Option(False, "--keep-checkpoint", help="Keep checkpoint.npz after the run has finished."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads of the kernels. Default: the cores free at start."),
    min_accuracy: Optional[float] = MinAccuracyOpt,
    max_accuracy_drop: Optional[float] = MaxDropOpt,
    max_resource: Optional[float] = MaxResourceOpt,
    select: Select = typer.Option("all", "--select", help="all: every budget's model must pass the gates; "
                                  "best-within-gates: name the smallest model that passes as `selected` (exit 1 if none does)."),
    config: Optional[Path] = ConfigOpt,
    storage: Storage = StorageOpt,
    remove_dead: bool = RemoveDeadOpt,
    as_json: bool = JsonOpt,
    source_format: SourceFormat = FromOpt,
    dt: Optional[float] = DtOpt,
    nir_reset: Optional[NirReset] = NirResetOpt,
    framework: Optional[Framework] = FrameworkOpt,
):
    """Prune MODEL to each budget with joint finetuning; write one model per budget, report.json and config.toml.

    Example: snn-compress compress model.onnx --data data.npz --budget 0.1 --budget 0.02 --out runs/model

    Exit codes: 0 done, 1 a quality gate failed (the outputs are still written), 2 bad input, 130 interrupted.
    """
    from ..api import compress as run_compression
    from ..report import table

    try:
        result = run_compression(**command_options(ctx, leave_out=("as_json", "config", "quiet")), progress=not quiet)
    except KeyboardInterrupt:
        typer.echo(f"interrupted; continue with the same options and --resume (checkpoint in {out})", err=True)
        raise typer.Exit(130) from None
    if as_json:
        print_json(result.report)
    else:
        typer.echo(table(result.report))
        figures = f"; figures: {', '.join(p.name for p in result.figures)}" if result.figures else ""
        selected = f"; selected: budget {result.selected:g} ({result.model_path(result.selected)})" if result.selected is not None else ""
        typer.echo(f"\nreport: {result.report_path}{figures}{selected}")
    if not result.passed:
        fail_gates(result.failed_gates() or ["no budget's model passes every gate"])
