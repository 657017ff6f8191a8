"""Deployment: file size and onnxruntime latency of pruned models in every output form.

    python bench/bench_deploy.py [--densities 1 0.25 0.05] [--repeats 200] [--threads 1]

For the digits conv sample and a 28x28 MNIST-sized conv SNN (random weights: size and
latency do not depend on training), each synapse layer but the first is pruned to
each density by global magnitude, then written as: the masked dense profile (Scan),
compact storage, dead channels removed + compact, and removed + compact + unrolled
for T = 8 (``convert --fixed-time-steps 8``). Each file is timed with the ``bench``
command's library (onnxruntime, 1 thread by default, T = 8, p50 over ``repeats``), the
forms of one model and density in turns, three rounds, and the median p50 is printed,
so a busy machine slows all forms alike. Not a test: compare within one run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from onnx_snn_compress import ir
from onnx_snn_compress.backends.onnx_profile import save
from onnx_snn_compress.frontends import load_model
from onnx_snn_compress.latency import time_model
from onnx_snn_compress.samples import sample_model_path
from onnx_snn_compress.shrink import remove_dead

TIME_STEPS = 8


def mnist_conv(seed: int = 0) -> ir.Graph:
    """conv 1->16 3x3, LIF, maxpool 2, conv 16->32 3x3, LIF, maxpool 2, fc 1568->128, LIF, fc 128->10, LIF."""
    rng = np.random.default_rng(seed)
    he = lambda *shape: rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))  # noqa: E731
    return ir.Graph([
        ir.Input("x", shape=(1, 28, 28)),
        ir.Conv2d("conv1", ("x",), weight=he(16, 1, 3, 3), bias=np.zeros(16), padding=1),
        ir.Neuron("lif1", ("conv1",), beta=0.9),
        ir.MaxPool2d("pool1", ("lif1",), kernel_size=2),
        ir.Conv2d("conv2", ("pool1",), weight=he(32, 16, 3, 3), bias=np.zeros(32), padding=1),
        ir.Neuron("lif2", ("conv2",), beta=0.9),
        ir.MaxPool2d("pool2", ("lif2",), kernel_size=2),
        ir.Flatten("flat", ("pool2",)),
        ir.Linear("fc1", ("flat",), weight=he(128, 32 * 7 * 7), bias=np.zeros(128)),
        ir.Neuron("lif3", ("fc1",), beta=0.9),
        ir.Linear("fc2", ("lif3",), weight=he(10, 128), bias=np.zeros(10)),
        ir.Neuron("lif4", ("fc2",), beta=0.9),
        ir.Readout("out", ("lif4",)),
    ], {"name": "mnist_conv"})


def magnitude_pruned(graph: ir.Graph, density: float) -> ir.Graph:
    """Keep the largest ``density`` of the weights of every synapse layer but the first (global threshold)."""
    graph = graph.copy()
    layers = graph.prunable()[1:]
    magnitudes = np.concatenate([np.abs(n.weight).ravel() for n in layers])
    keep = max(1, int(round(density * magnitudes.size)))
    threshold = np.partition(magnitudes, magnitudes.size - keep)[magnitudes.size - keep]
    for node in layers:
        node.weight[np.abs(node.weight) < threshold] = 0.0
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.25, 0.05])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    models = {"digits_conv": load_model(sample_model_path("digits_conv")), "mnist_conv": mnist_conv()}
    print(f"onnxruntime, {args.threads} thread(s), T={TIME_STEPS}, p50 of {args.repeats} runs")
    print(f"{'model':<12} {'density':>7} {'form':<26} {'bytes':>9} {'of dense':>8} {'MACs':>11} "
          f"{'p50 ms b1':>10} {'p50 ms b64':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name, graph in models.items():
            dense_bytes = None
            for density in args.densities:
                pruned = magnitude_pruned(graph, density)
                smaller, _ = remove_dead(pruned)
                forms = {
                    "masked dense (Scan)": (pruned, "dense", None),
                    "compact": (pruned, "compact", None),
                    "removed + compact": (smaller, "compact", None),
                    "removed + compact + T=8": (smaller, "compact", TIME_STEPS),
                }
                paths = {form: Path(folder) / f"{name}_{density}_{form.replace(' ', '_')}.onnx" for form in forms}
                for form, (written, storage, steps) in forms.items():
                    save(written, paths[form], storage, steps)
                rounds = {form: [] for form in forms}
                for _ in range(3):
                    for form, path in paths.items():
                        rounds[form].append(time_model(path, (1, 64), TIME_STEPS, args.threads, args.repeats))
                for form, costs in rounds.items():
                    cost = costs[0]
                    dense_bytes = dense_bytes or cost.file_bytes
                    b1, b64 = (float(np.median([c.timings[i].p50_ms for c in costs])) for i in range(2))
                    print(f"{name:<12} {density:7.2f} {form:<26} {cost.file_bytes:9,} "
                          f"{cost.file_bytes / dense_bytes:8.1%} {cost.macs:11,} {b1:10.3f} {b64:11.3f}", flush=True)


if __name__ == "__main__":
    main()
