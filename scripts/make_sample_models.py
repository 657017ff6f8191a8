"""Write the untrained sample SNNs: digits_mlp, digits_conv, mnist_mlp and mnist_conv (.onnx).

All are built as IR graphs with seeded, PyTorch-style initialisation and
saved in the SNN-ONNX profile. They are UNTRAINED: their weights are random,
so they claim no accuracy (training them is a later step). Rerun with the
project's own environment, from the repository root:

    /work/venv/bin/python scripts/make_sample_models.py        # or any env with the package

The seeds below are fixed, so a rerun writes the same weights.

digits_mlp   input (64,)  [data (1, 8, 8) is flattened by onnx_snn_compress.data]
             Linear 64->128 -> LIF -> Linear 128->10 -> LIF -> rate readout
digits_conv  input (1, 8, 8)
             Conv2d 1->8 3x3 pad 1 -> BatchNorm -> LIF -> MaxPool2d 2
             -> Conv2d 8->32 3x3 pad 1 -> LIF -> MaxPool2d 2
             -> Flatten (128) -> Linear 128->64 -> LIF -> Linear 64->10 -> LIF -> rate readout
             (the first layer holds 0.6 % of the synapses, so the paper's default of
             keeping it dense still reaches a 1 % budget)
mnist_mlp    input (784,)  [data (1, 28, 28) is flattened]
             Linear 784->800 -> LIF -> Linear 800->10 -> LIF -> rate readout
             (the 784-800-10 MNIST network of Grad R, Chen et al. 2021; 635,200 synapses)
mnist_conv   input (1, 28, 28)
             Conv2d 1->16 3x3 pad 1 -> BatchNorm -> LIF -> MaxPool2d 2      (16, 14, 14)
             -> Conv2d 16->32 3x3 pad 1 -> BatchNorm -> LIF -> MaxPool2d 2  (32, 7, 7)
             -> Flatten (1568) -> Linear 1568->128 -> LIF -> Linear 128->10 -> LIF -> rate readout
             (206,736 synapses; conv1 holds 0.07 % of them)

LIF everywhere: beta = 0.9, gain = 1, v_threshold = 1, fire on >=, subtract
reset, atan surrogate (alpha 2).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from onnx_snn_compress import ir

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SEEDS = {"digits_mlp": 1, "digits_conv": 2, "mnist_mlp": 3, "mnist_conv": 4}

LIF = dict(beta=0.9, gain=1.0, v_threshold=1.0, reset="subtract", fire_on_equal=True, surrogate="atan", alpha=2.0)


def kaiming_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """PyTorch's default weight init: ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in = int(np.prod(shape[1:]))
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def bias_uniform(rng: np.random.Generator, out_features: int, fan_in: int) -> np.ndarray:
    """PyTorch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=(out_features,)).astype(np.float32)


def linear(rng, name: str, source: str, in_features: int, out_features: int) -> ir.Linear:
    return ir.Linear(
        name,
        (source,),
        weight=kaiming_uniform(rng, (out_features, in_features)),
        bias=bias_uniform(rng, out_features, in_features),
    )


def conv(rng, name: str, source: str, in_channels: int, out_channels: int, bias: bool) -> ir.Conv2d:
    shape = (out_channels, in_channels, 3, 3)
    return ir.Conv2d(
        name,
        (source,),
        weight=kaiming_uniform(rng, shape),
        bias=bias_uniform(rng, out_channels, in_channels * 9) if bias else None,
        padding=(1, 1),
    )


def lif(name: str, source: str) -> ir.Neuron:
    return ir.Neuron(name, (source,), **LIF)


def provenance(name: str, seed: int) -> dict[str, str]:
    return {
        "name": name,  # also the ONNX graph's name
        "source_framework": "onnx-snn-compress (scripts/make_sample_models.py)",
        "training": "untrained: seeded PyTorch-style random initialisation, no accuracy claimed",
        "init_seed": str(seed),
    }


def build_digits_mlp(seed: int = SEEDS["digits_mlp"]) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph(
        [
            ir.Input("input", shape=(64,)),
            linear(rng, "fc1", "input", 64, 128),
            lif("lif1", "fc1"),
            linear(rng, "fc2", "lif1", 128, 10),
            lif("lif2", "fc2"),
            ir.Readout("output", ("lif2",), mode="rate"),
        ],
        metadata=provenance("digits_mlp", seed),
    )


def batchnorm(name: str, source: str, channels: int) -> ir.BatchNorm:
    return ir.BatchNorm(
        name,
        (source,),
        weight=np.ones(channels, np.float32),
        bias=np.zeros(channels, np.float32),
        running_mean=np.zeros(channels, np.float32),
        running_var=np.ones(channels, np.float32),
    )


def build_digits_conv(seed: int = SEEDS["digits_conv"]) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph(
        [
            ir.Input("input", shape=(1, 8, 8)),
            conv(rng, "conv1", "input", 1, 8, bias=False),  # BatchNorm supplies the shift
            batchnorm("bn1", "conv1", 8),
            lif("lif1", "bn1"),
            ir.MaxPool2d("pool1", ("lif1",), kernel_size=2),  # (8, 4, 4)
            conv(rng, "conv2", "pool1", 8, 32, bias=True),
            lif("lif2", "conv2"),
            ir.MaxPool2d("pool2", ("lif2",), kernel_size=2),  # (32, 2, 2)
            ir.Flatten("flatten", ("pool2",)),  # (128,)
            linear(rng, "fc1", "flatten", 128, 64),
            lif("lif3", "fc1"),
            linear(rng, "fc2", "lif3", 64, 10),
            lif("lif4", "fc2"),
            ir.Readout("output", ("lif4",), mode="rate"),
        ],
        metadata=provenance("digits_conv", seed),
    )


def build_mnist_mlp(seed: int = SEEDS["mnist_mlp"]) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph(
        [
            ir.Input("input", shape=(784,)),
            linear(rng, "fc1", "input", 784, 800),
            lif("lif1", "fc1"),
            linear(rng, "fc2", "lif1", 800, 10),
            lif("lif2", "fc2"),
            ir.Readout("output", ("lif2",), mode="rate"),
        ],
        metadata=provenance("mnist_mlp", seed),
    )


def build_mnist_conv(seed: int = SEEDS["mnist_conv"]) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph(
        [
            ir.Input("input", shape=(1, 28, 28)),
            conv(rng, "conv1", "input", 1, 16, bias=False),  # BatchNorm supplies the shift
            batchnorm("bn1", "conv1", 16),
            lif("lif1", "bn1"),
            ir.MaxPool2d("pool1", ("lif1",), kernel_size=2),  # (16, 14, 14)
            conv(rng, "conv2", "pool1", 16, 32, bias=False),
            batchnorm("bn2", "conv2", 32),
            lif("lif2", "bn2"),
            ir.MaxPool2d("pool2", ("lif2",), kernel_size=2),  # (32, 7, 7)
            ir.Flatten("flatten", ("pool2",)),  # (1568,)
            linear(rng, "fc1", "flatten", 1568, 128),
            lif("lif3", "fc1"),
            linear(rng, "fc2", "lif3", 128, 10),
            lif("lif4", "fc2"),
            ir.Readout("output", ("lif4",), mode="rate"),
        ],
        metadata=provenance("mnist_conv", seed),
    )


BUILDERS = {
    "digits_mlp": build_digits_mlp,
    "digits_conv": build_digits_conv,
    "mnist_mlp": build_mnist_mlp,
    "mnist_conv": build_mnist_conv,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=SAMPLES_DIR)
    parser.add_argument("--models", nargs="*", choices=sorted(BUILDERS), default=list(BUILDERS))
    args = parser.parse_args()

    from onnx_snn_compress.backends.onnx_profile import save

    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        graph = BUILDERS[name]()
        path = args.output_dir / f"{name}.onnx"
        save(graph, path)
        weights = sum(n.weight.size for n in graph.prunable())
        print(f"wrote {path} ({path.stat().st_size} bytes, {weights} synapses, untrained)")


if __name__ == "__main__":
    main()
