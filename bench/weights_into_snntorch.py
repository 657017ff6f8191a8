"""The compressed weights loaded into the user's own snnTorch module (issue 11, item 7; the recipe
of docs/interop.md, "Loading the compressed weights back"): the sample MLP's architecture written
in snnTorch (Linear 64-128-10, Leaky beta 0.9, subtract reset without delay, as digits_mlp has),
its state dict taken from a compressed model, accuracy on the digits test split.

Step 1, in the project's environment (the arrays by layer name, as the recipe builds them)::

    python -c "import numpy as np; from onnx_snn_compress.frontends import load_model; \\
      g = load_model('OUT/budget_0.2/model.onnx'); \\
      np.savez('/tmp/state.npz', **{f'{n.name}.{k}': v for n in g for k, v in n.parameters().items()})"

Step 2, in an environment with torch and snntorch 1.0.0 (never the project's own)::

    python bench/weights_into_snntorch.py /tmp/state.npz samples/digits.npz
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    import snntorch as snn
    import torch

    class DigitsMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(64, 128), torch.nn.Linear(128, 10)
            self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="subtract", reset_delay=False)
            self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="subtract", reset_delay=False)

        def forward(self, x, time_steps=8):
            mem1, mem2, counts = self.lif1.init_leaky(), self.lif2.init_leaky(), 0
            for _ in range(time_steps):
                spikes1, mem1 = self.lif1(self.fc1(x), mem1)
                spikes2, mem2 = self.lif2(self.fc2(spikes1), mem2)
                counts = counts + spikes2
            return counts

    state_path, data_path = sys.argv[1:3]
    net = DigitsMLP()
    state = {k: torch.from_numpy(v.copy()) for k, v in np.load(state_path, allow_pickle=False).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    data = np.load(data_path, allow_pickle=False)
    x = torch.from_numpy(data["x_test"].reshape(len(data["x_test"]), -1).astype(np.float32))
    with torch.no_grad():
        accuracy = float((net(x).argmax(1).numpy() == data["y_test"]).mean())
    print(f"snnTorch module with the compressed weights: accuracy {100 * accuracy:.2f}% on {len(x)} samples, "
          f"T=8 (kept the module's own: {', '.join(missing)})")


if __name__ == "__main__":
    main()
