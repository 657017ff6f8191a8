"""The bench command: onnxruntime latency, throughput and size of models on this CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import JsonOpt, app, print_json, table
from .models import print_notes


@app.command()
def bench(
    target: Path = typer.Argument(..., help="A model file, or a compress output folder (with report.json)."),
    batch: str = typer.Option("1,64", "--batch", help="Batch sizes, separated by commas."),
    time_steps: int = typer.Option(8, "--time-steps", help="T of the timed inputs."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime intra-op threads (0: its default)."),
    repeats: int = typer.Option(100, "--repeats", help="Timed runs per batch size (after 3 warm-up runs)."),
    as_json: bool = JsonOpt,
):
    """p50/p95 onnxruntime latency, throughput, file size, params and MACs of TARGET's models.

    Example: snn-compress bench snn-compress-out --batch 1,64 --threads 1
    """
    from ..latency import bench as run_bench, parse_batches

    costs, notes = run_bench(target, parse_batches(batch), time_steps, threads, repeats)
    print_notes(notes)
    if as_json:
        print_json({"time_steps": time_steps, "threads": threads, "repeats": repeats,
                    "models": [cost.to_json() for cost in costs]})
        return
    # what the file's tensors hold and what onnxruntime computes (zeros included), unlike the
    # surviving-synapse figures of compress and inspect
    header = ["model", "file bytes", "stored params", "nonzero", "MACs computed", "SynOps"]
    for timing in costs[0].timings:
        header += [f"p50 ms b{timing.batch}", f"p95 ms b{timing.batch}", f"samples/s b{timing.batch}"]
    rows = []
    for cost in costs:
        row = [cost.label, f"{cost.file_bytes:,}", f"{cost.params:,}", f"{cost.nonzero:,}", f"{cost.macs:,}",
               "" if cost.synops is None else f"{cost.synops:,.0f}"]
        for timing in cost.timings:
            row += [f"{timing.p50_ms:.3f}", f"{timing.p95_ms:.3f}", f"{timing.samples_per_s:,.0f}"]
        rows.append(row)
    typer.echo(table(rows, header))
    typer.echo(f"\nonnxruntime, T={time_steps}, {threads} thread(s), {repeats} timed runs per batch size; "
               "stored params and MACs computed count the zeros of pruned tensors, which onnxruntime still multiplies")
