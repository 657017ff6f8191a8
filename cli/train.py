"""The train command: train or finetune a model on an .npz and write it in the profile."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SNNError
from .app import JsonOpt, ModelArg, app, model_path, print_json


@app.command()
def train(
    model: Optional[Path] = ModelArg,
    out: Path = typer.Option(..., "--out", help="Where to write the trained model (.onnx, profile)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz. Default: the embedded digits."),
    epochs: int = typer.Option(30, "--epochs", min=0),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd."),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(0.0, "--weight-decay"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, step or constant."),
    loss: Optional[str] = typer.Option(None, "--loss", help="mse_rate, ce_rate or ce_readout. Default: by readout."),
    time_steps: int = typer.Option(8, "--time-steps", help="T for static data."),
    encoding: str = typer.Option("direct", "--encoding", help="direct or poisson, for static data."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads of the kernels. Default: the cores free at start."),
    as_json: bool = JsonOpt,
):
    """Train (or finetune) MODEL with surrogate-gradient BPTT; keeps the best epoch on validation."""
    from ..backends.onnx_profile import save
    from ..data import load_splits_for_model
    from ..frontends import load_model
    from ..samples import digits_path
    from ..threads import use_threads
    from ..train import TrainConfig, accuracy, train as run_training

    _, note = use_threads(threads)  # said once the run has succeeded (errors stay one line)

    source = model_path(model)
    if out.resolve() == source.resolve():
        raise SNNError(f"--out {out} is the input model; choose another path (inputs are never overwritten)")
    graph = load_model(source)
    data = data if data is not None else digits_path()
    train_data, val_data, test_data = load_splits_for_model(
        data, graph.input.shape, graph.num_classes, time_steps=time_steps, encoding=encoding, seed=seed
    )
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         schedule=schedule, loss=loss, seed=seed, progress=not as_json)
    result = run_training(graph, train_data, val_data, config)
    test_accuracy = accuracy(result.graph, test_data) if test_data is not None else None
    result.graph.metadata["training"] = (
        f"snn-compress train: epochs={epochs} batch={batch_size} {optimizer} lr={lr} {schedule} "
        f"T={train_data.time_steps} {encoding} seed={seed}; best epoch {result.best_epoch}"
    )
    save(result.graph, out)
    if note:
        typer.echo(f"note: {note}", err=True)
    summary = {"model": str(out), "best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
               "test_accuracy": test_accuracy}
    if as_json:
        print_json({**summary, "history": result.to_json()["history"]})
        return
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")

