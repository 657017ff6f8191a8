#!/usr/bin/env bash
# Rebuild the shipped sample SNNs: seeded random initialisation, then training on the
# embedded digits (digits_*) and MNIST subset (mnist_*) with `snn-compress train` (T=8,
# direct encoding, Adam, cosine schedule).
# Deterministic: the same machine gives bit-identical files. From the repository root,
# with the package installed (pip install -e .):
#     bash scripts/train_samples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
untrained=$(mktemp -d)
trap 'rm -rf "$untrained"' EXIT
python scripts/make_sample_models.py --output-dir "$untrained"
snn-compress train "$untrained/digits_mlp.onnx" --out samples/digits_mlp.onnx --epochs 60 --lr 3e-3 --seed 0
snn-compress train "$untrained/digits_conv.onnx" --out samples/digits_conv.onnx --epochs 40 --lr 3e-3 --seed 0
snn-compress train "$untrained/mnist_mlp.onnx" --data samples/mnist.npz --out samples/mnist_mlp.onnx --epochs 10 --lr 1e-3 --seed 0
snn-compress train "$untrained/mnist_conv.onnx" --data samples/mnist.npz --out samples/mnist_conv.onnx --epochs 6 --lr 3e-3 --seed 0
