"""The compress command: the product's main job."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import SNNError
from .app import JsonOpt, app, model_path, print_json


@app.command()
def compress(
    model: Optional[Path] = typer.Argument(None, help="Model file (.onnx in the SNN-ONNX profile). Default: the embedded digits conv sample."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz (x, y, x_val, y_val, x_test, y_test). Default: the embedded digits."),
    budget: Optional[List[float]] = typer.Option(None, "--budget", help="Fraction of the input model's resource to keep, in (0, 1]; repeat for a schedule. Default: 0.3 0.2 0.1 0.05."),
    resource: str = typer.Option("params", "--resource", help="params, macs, synops or energy."),
    method: str = typer.Option("minimax", "--method", help="minimax, minimax-paper (the reference), magnitude or gradual."),
    granularity: str = typer.Option("global", "--granularity", help="global (one pruning amount) or layer (one per layer)."),
    prune: Optional[List[str]] = typer.Option(None, "--prune", help="Synapse layer to prune (repeat). Default: all but the first."),
    out: Path = typer.Option(Path("snn-compress-out"), "--out", help="Output folder (one model per budget, report.json)."),
    steps: int = typer.Option(300, "--steps-per-budget", help="Training steps per budget, the same for every method."),
    search_fraction: float = typer.Option(0.5, "--search-fraction", help="Most of a budget's steps the search may use (the rest finetunes)."),
    finetune_lr_factor: float = typer.Option(10.0, "--finetune-lr-factor", help="Each budget's finetune restarts a cosine at this x --lr."),
    min_output_synapses: int = typer.Option(1, "--min-output-synapses", min=0, help="Each output neuron keeps at least its this many strongest synapses (when the output layer is pruned)."),
    eval_every: int = typer.Option(50, "--eval-every", help="Steps between validations (and checkpoints)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of the weights (Adam)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr_s: float = typer.Option(0.1, "--lr-s", help="Step size of the pruning amount (minimax)."),
    dual_lr_y: float = typer.Option(1.0, "--dual-lr-y", help="Dual ascent step of the sparsity multiplier (minimax)."),
    dual_lr_z: float = typer.Option(0.1, "--dual-lr-z", help="Dual ascent step of the resource multiplier (minimax)."),
    e_mac: float = typer.Option(4.6, "--e-mac", help="Energy of a MAC in pJ (non-spike input layers)."),
    e_ac: float = typer.Option(0.9, "--e-ac", help="Energy of an accumulate (one SynOp) in pJ."),
    time_steps: int = typer.Option(8, "--time-steps", help="T for static data."),
    encoding: str = typer.Option("direct", "--encoding", help="direct or poisson, for static data."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    as_json: bool = JsonOpt,
):
    """Prune MODEL to each budget with joint finetuning; write one model per budget and report.json."""
    from ..compress import CHECKPOINT, REPORT, CompressConfig, Compression
    from ..data import load_splits_for_model
    from ..frontends import load_model
    from ..report import plot_curve, table
    from ..resources import EnergyModel
    from ..samples import digits_path
    from ..train import TrainConfig

    source = model_path(model, sample="digits_conv")  # its first layer is small, so the default schedule is reachable
    graph = load_model(source)
    data = data if data is not None else digits_path()

    train_data, val_data, test_data = load_splits_for_model(
        data, graph.input.shape, graph.num_classes, time_steps=time_steps, encoding=encoding, seed=seed
    )
    config = CompressConfig(
        budgets=tuple(budget) if budget else CompressConfig.budgets,
        resource=resource, method=method, granularity=granularity, prunable=list(prune) if prune else None,
        steps_per_budget=steps, search_fraction=search_fraction, finetune_lr_factor=finetune_lr_factor,
        min_output_synapses=min_output_synapses,
        eval_every=eval_every, lr_s=lr_s, dual_lr_y=dual_lr_y, dual_lr_z=dual_lr_z,
        energy=EnergyModel(e_mac_pj=e_mac, e_ac_pj=e_ac),
        train=TrainConfig(lr=lr, batch_size=batch_size, seed=seed, schedule="cosine", progress=not as_json),
    )
    config.validate()
    if out.exists() and not out.is_dir():
        raise SNNError(f"--out {out} exists and is not a folder")
    if not resume and ((out / REPORT).exists() or (out / CHECKPOINT).exists()):
        raise SNNError(f"--out {out} already holds a run; pass --resume to continue it or choose another folder")
    run = Compression(graph, train_data, val_data, test_data, config, out, source=str(source))
    if resume:
        run.restore()
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = run.run()
    except KeyboardInterrupt:
        typer.echo(f"interrupted; continue with the same options and --resume (checkpoint in {out})", err=True)
        raise typer.Exit(130) from None
    curves = plot_curve(report, out)
    if as_json:
        print_json(report)
        return
    typer.echo(table(report))
    typer.echo(f"\nreport: {out / REPORT}" + (f"; curve: {', '.join(map(str, curves))}" if curves else ""))
