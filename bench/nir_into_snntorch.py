"""Accuracy of a model after NIR -> snnTorch (issue 11, item 7): the NIR file this tool writes,
loaded by snnTorch's own ``import_from_nir`` and run over T steps on a data split.

snnTorch's importer assumes dt = 1e-4 for every LIF (beta = 1 - 1e-4/tau) and rejects or rescales
an input gain other than 1, so a file written at another dt loses the model's leak. Run in an
environment with torch, snntorch 1.0.0, nir and nirtorch (never the project's own)::

    snn-compress convert samples/digits_mlp.onnx /tmp/mlp.nir               # dt 1e-4 (the default)
    snn-compress convert samples/digits_mlp.onnx /tmp/mlp_1e-3.nir --dt 1e-3
    python bench/nir_into_snntorch.py /tmp/mlp.nir samples/digits.npz --time-steps 8
    snn-compress evaluate samples/digits_mlp.onnx                           # the same split in our simulator

Inputs: static ``x_test [N, ...]`` repeated over T (direct encoding, as ``evaluate`` does).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .nir file")
    parser.add_argument("data", help=".npz with x_test, y_test (static data)")
    parser.add_argument("--time-steps", type=int, default=8)
    args = parser.parse_args()

    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    data = np.load(args.data, allow_pickle=False)
    x, y = data["x_test"].astype(np.float32), data["y_test"]
    net = import_from_nir(nir.read(args.model))
    inputs = torch.from_numpy(x.reshape(len(x), -1) if not any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
                              else x)
    with torch.no_grad():
        state, counts = None, 0
        for _ in range(args.time_steps):
            spikes, state = net(inputs) if state is None else net(inputs, state)
            counts = counts + spikes
    accuracy = float((counts.argmax(1).numpy() == y).mean())
    print(f"{args.model}: snnTorch import_from_nir accuracy {100 * accuracy:.2f}% on {len(y)} samples, "
          f"T={args.time_steps}")


if __name__ == "__main__":
    main()
