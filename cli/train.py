"""The train command: train or finetune a model on an .npz and write it in the profile."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..losses import LOSSES
from ..optim import OPTIMIZERS, SCHEDULES
from .app import ConfigOpt, JsonOpt, ModelArg, app, choices, model_path, plain, print_json
from .models import (DtOpt, Encoding, Framework, FrameworkOpt, FromOpt, NirReset, NirResetOpt, SourceFormat, TimeStepsOpt,
                     load_source, print_notes)

Optimizer = choices("Optimizer", OPTIMIZERS)
Schedule = choices("Schedule", SCHEDULES)
Loss = choices("Loss", LOSSES)


@app.command()
def train(
    model: Optional[Path] = ModelArg,
    out: Path = typer.Option(..., "--out", help="Where to write the trained model (.onnx, profile)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data .npz. Default: the embedded digits."),
    epochs: int = typer.Option(30, "--epochs", min=0),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    optimizer: Optimizer = typer.Option("adam", "--optimizer"),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(0.0, "--weight-decay"),
    schedule: Schedule = typer.Option("cosine", "--schedule", help="Learning-rate schedule over all steps."),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="Default: by readout."),
    time_steps: Optional[int] = TimeStepsOpt,
    encoding: Encoding = typer.Option("direct", "--encoding", help="How static data become spikes over T steps."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    config: Optional[Path] = ConfigOpt,
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads of the kernels. Default: the cores free at start."),
    as_json: bool = JsonOpt,
    source_format: SourceFormat = FromOpt,
    dt: Optional[float] = DtOpt,
    nir_reset: Optional[NirReset] = NirResetOpt,
    framework: Optional[Framework] = FrameworkOpt,
):
    """Train (or finetune) MODEL with surrogate-gradient BPTT; keeps the best epoch on validation.

    Example: snn-compress train model.onnx --data data.npz --epochs 20 --out trained.onnx
    """
    from ..backends.onnx_profile import save
    from ..data import load_splits_for_model, model_time_steps, split_notes
    from ..outputs import check_output_file
    from ..report import accuracy_percent
    from ..samples import digits_path
    from ..threads import training_step_macs, use_threads
    from ..train import TrainConfig, accuracy, train as run_training

    optimizer, schedule, loss, encoding = plain(optimizer), plain(schedule), plain(loss), plain(encoding)
    if threads is not None:
        use_threads(threads)  # a count that cannot be used is refused before anything is read

    source = model_path(model)
    data = data if data is not None else digits_path()
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         schedule=schedule, loss=loss, seed=seed, progress=not quiet)
    config.validate()
    check_output_file(out, {"the input model": source, "the --data file": data}, "--out", kinds=(".onnx",))
    graph = load_source(source, source_format, dt, nir_reset, framework)[0]
    time_steps, steps_note = model_time_steps(graph.metadata, time_steps)
    train_data, val_data, test_data = load_splits_for_model(
        data, graph.input.shape, graph.num_classes, time_steps=time_steps, encoding=encoding, seed=seed
    )
    print_notes([steps_note] if steps_note and not train_data.temporal else [])  # temporal data bring their T
    print_notes(split_notes(data, (train_data, val_data, test_data), graph.input.shape,
                            without_val="the last epoch is kept, not the best on validation",
                            without_test="no test accuracy is measured"))
    _, note = use_threads(threads, training_step_macs(graph, batch_size, train_data.time_steps))
    # the note is said once the run has succeeded (errors stay one line)
    result = run_training(graph, train_data, val_data, config)
    test_accuracy = accuracy(result.graph, test_data) if test_data is not None else None
    result.graph.metadata["training"] = (
        f"snn-compress train: epochs={epochs} batch={batch_size} {optimizer} lr={lr} {schedule} "
        f"T={train_data.time_steps} {encoding} seed={seed}; best epoch {result.best_epoch}"
    )
    result.graph.metadata.update(train_data.input_metadata())
    save(result.graph, out)
    if note:
        typer.echo(f"note: {note}", err=True)
    if result.best_epoch == 0 and result.best_val_accuracy is not None:
        best = accuracy_percent(result.best_val_accuracy)
        typer.echo(f"note: no epoch beat the input model's validation accuracy ({best}); "
                   f"{out} holds the input weights unchanged (best_epoch 0)", err=True)
    summary = {"model": str(out), "best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
               "test_accuracy": test_accuracy}
    if as_json:
        print_json({**summary, "history": result.to_json()["history"]})
        return
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")

