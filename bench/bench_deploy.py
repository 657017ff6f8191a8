"""Deployment: accuracy, file size and onnxruntime latency of compressed sample models, beside their MACs.

    python bench/bench_deploy.py [--out bench-deploy-out] [--models mnist_conv digits_conv]
                                 [--repeats 30] [--rounds 3] [--threads 1]

For each sample model (trained, with its own data) it runs ``compress`` twice (or
reuses the report.json of an earlier run in ``--out``; the CLI equivalent of each run
is in the RUNS table below, e.g. ``snn-compress compress samples/mnist_conv.onnx
--data samples/mnist.npz --structure channel --resource macs --prune conv1 --prune
conv2 --prune fc1 --prune fc2 --budget 0.5 --budget 0.25``):

- structured: minimax on whole channels (``--structure channel --resource macs``,
  every layer pruned), budgets 0.5 and 0.25, pruned channels removed, each
  model timed as the profile (``Scan``, any T) and unrolled for T = 8
  (``convert --fixed-time-steps 8``);
- unstructured: minimax on synapses (``--resource params``, the first layer dense),
  budgets 0.25 and 0.05, each model timed as the profile (masked dense) and with
  ``--storage compact``.

Every file timed is written anew by today's exporter (the input sample's file too).

Every file of one sample model is timed with the ``bench`` command's library
(onnxruntime, T = 8, p50 over ``--repeats`` runs per batch size), all files in turns,
``--rounds`` rounds, and the median p50 is printed with its speed-up over the input
model's ``Scan`` file: a busy machine slows every file of a round alike, so compare
within one run. ``--statistic min`` uses the fastest run of all rounds instead of the
p50s: on a machine shared with other jobs it is the figure least disturbed by them. MACs are those onnxruntime computes (the stored tensors, zeros
included), as a fraction of the input model's. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from onnx_snn_compress.api import compress
from onnx_snn_compress.backends.onnx_profile import save
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.latency import time_model
from onnx_snn_compress.samples import sample_data_path, sample_model_path

TIME_STEPS = 8
BATCHES = (1, 64)
RUNS = {
    "structured": dict(resource="macs", budget=[0.5, 0.25], structure="channel",
                       prune=["conv1", "conv2", "fc1", "fc2"]),
    "unstructured": dict(resource="params", budget=[0.25, 0.05]),
}


def compressed(name: str, run: str, out: Path, steps: int):
    """The report of ``run`` on the sample ``name``: run now, or read back from an earlier run of the same options."""
    folder = out / f"{name}_{run}"
    if (folder / "report.json").is_file():
        print(f"note: reusing {folder / 'report.json'} (remove the folder to compress again)", file=sys.stderr)
        return folder, json.loads((folder / "report.json").read_text())
    result = compress(sample_model_path(name), data=sample_data_path(name), out=folder, steps_per_budget=steps,
                      storage="dense", progress=False, log=None, **RUNS[run])
    return folder, result.report


def files_to_time(name: str, out: Path, steps: int) -> list[tuple[str, Path, float | None]]:
    """(label, file, test accuracy) of the input model and of every output form of both runs, each
    written by today's exporter (a run reused from an earlier commit may have written older files)."""
    forms = out / f"{name}_forms"
    forms.mkdir(parents=True, exist_ok=True)
    rows = []

    def write(label: str, graph, accuracy, storage: str = "dense", time_steps: int | None = None) -> None:
        path = forms / ("".join(c for c in label.replace(" ", "_") if c.isalnum() or c in "_.") + ".onnx")
        save(graph, path, storage, time_steps)
        rows.append((label, path, accuracy))

    for run in RUNS:
        folder, report = compressed(name, run, out, steps)
        if not rows:
            graph, accuracy = load_model(sample_model_path(name)), report["input"]["accuracy"].get("test")
            write("input (Scan)", graph, accuracy)
            write("input, unrolled T=8", graph, accuracy, time_steps=TIME_STEPS)
        for entry in report["budgets"]:
            graph, accuracy, label = load_model(folder / entry["model"]), entry["accuracy"].get("test"), f"{run} {entry['budget']:g}"
            write(label, graph, accuracy)
            if run == "unstructured":
                write(f"{label} compact", graph, accuracy, "compact")
            else:
                write(f"{label}, unrolled T=8", graph, accuracy, time_steps=TIME_STEPS)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-deploy-out"))
    parser.add_argument("--models", nargs="+", default=["mnist_conv", "digits_conv"])
    parser.add_argument("--steps", type=int, default=300, help="compress --steps-per-budget")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--statistic", choices=("p50", "min"), default="p50",
                        help="p50: the median over the rounds of each round's p50; min: the fastest run of all")
    args = parser.parse_args()
    statistic = (f"median over {args.rounds} rounds of the p50 of {args.repeats} runs" if args.statistic == "p50"
                 else f"fastest of {args.rounds} rounds of {args.repeats} runs")
    print(f"onnxruntime, {args.threads} thread(s), T={TIME_STEPS}, {statistic}; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    print(f"| model | form | MACs | test acc | file bytes | {args.statistic} ms b1 | {args.statistic} ms b64 | speed-up b1 "
          f"| speed-up b64 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        rows = files_to_time(name, args.out, args.steps)
        timings = {label: [] for label, _, _ in rows}
        for _ in range(args.rounds):
            for label, path, _ in rows:
                timings[label].append(time_model(path, BATCHES, TIME_STEPS, args.threads, args.repeats))
        base = None
        for label, path, accuracy in rows:
            costs = timings[label]
            if args.statistic == "p50":
                ms = [float(np.median([cost.timings[i].p50_ms for cost in costs])) for i in range(len(BATCHES))]
            else:
                ms = [min(cost.timings[i].min_ms for cost in costs) for i in range(len(BATCHES))]
            base = base or (costs[0], ms)
            macs = costs[0].macs / base[0].macs
            acc = "–" if accuracy is None else f"{100 * accuracy:.1f} %"
            print(f"| {name} | {label} | {100 * macs:.1f} % | {acc} | {costs[0].file_bytes:,} "
                  f"({100 * costs[0].file_bytes / base[0].file_bytes:.1f} %) | {ms[0]:.3f} | {ms[1]:.2f} | "
                  f"{base[1][0] / ms[0]:.2f}x | {base[1][1] / ms[1]:.2f}x |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
