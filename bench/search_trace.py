"""Trace the minimax search of one compression run: where s, y and z go, whether the search met
each budget or was forced, the validation accuracy right after the cut (before finetuning), and
the synapses each layer keeps.

    python bench/search_trace.py METHOD SEED ['{"model": "digits_conv", "budgets": [0.05, 0.02, 0.01],
                                                "steps": 200, ...api.compress options...}']

Prints (stderr) per budget: the step at which the mask was frozen, ``forced``, the validation
accuracy of the cut model, and s, y, z at a few steps of the search; then (stdout) per budget the
test accuracy, ``forced``, the search steps, the best finetune step and the kept synapses per
layer. A diagnosis tool: it wraps ``Minimax.step`` and ``Compression._freeze`` to watch them.
Run it with one thread (NUMBA_NUM_THREADS=1) when the machine is shared. The library and kernels
are this file's tree's, whatever is installed (``tree.use_tree``).
"""

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from tree import OWN_TREE, use_tree

use_tree(OWN_TREE)
from onnx_snn_compress import api, solvers  # noqa: E402
from onnx_snn_compress.samples import sample_data_path, sample_model_path  # noqa: E402

compression = importlib.import_module("onnx_snn_compress.compress")  # the module, not the API function


def main() -> None:
    method, seed = sys.argv[1], int(sys.argv[2])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    budgets = options.pop("budgets", [0.05, 0.02, 0.01])
    steps = options.pop("steps", 200)
    model = options.pop("model", "digits_conv")
    trace = []
    step, freeze = solvers.Minimax.step, compression.Compression._freeze

    def traced_step(self, state, *args, **kwargs):
        result = step(self, state, *args, **kwargs)
        trace.append((float(state.sigma[0]), float(state.y[0]), float(state.z)))
        return result

    def traced_freeze(self, pruned):
        freeze(self, pruned)
        print(f"  frozen at step {self.state.phase_step}, forced {self.state.forced}, "
              f"val acc of the cut model {self.state.best_val:.3f}", file=sys.stderr)
        for index in sorted({*range(0, len(trace), max(1, len(trace) // 6)), len(trace) - 1} - {-1}):
            print("    step {}: s {:.4g} y {:.4g} z {:.4g}".format(index + 1, *trace[index]), file=sys.stderr)
        trace.clear()

    solvers.Minimax.step, compression.Compression._freeze = traced_step, traced_freeze
    prune = ["fc1", "fc2"] if "mlp" in model else None  # as bench/quality.py
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        result = api.compress(sample_model_path(model), data=sample_data_path(model), budget=budgets, method=method,
                              seed=seed, steps_per_budget=steps, out=Path(folder) / "run", progress=False, prune=prune,
                              **options)
    for entry in result.report["budgets"]:
        print(entry["budget"], "test %.1f" % (100 * entry["accuracy"]["test"]), "forced", entry["forced"],
              "search", entry["search_steps"], "best_ft", entry["best_finetune_step"],
              {name: layer["nonzero"] for name, layer in entry["layers"].items()})
    print("time %.0f s" % (time.time() - started))


if __name__ == "__main__":
    main()
