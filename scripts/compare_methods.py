"""Compare minimax, one-shot magnitude and gradual magnitude pruning on the samples.

    python scripts/compare_methods.py [--seeds 0 1 2] [--steps 300] [--out results-runs]

Runs `snn-compress compress` for every sample model x method x seed with the same
budgets (20, 10, 5, 2, 1 % of the synapses) and the same training steps per
budget, then prints a markdown table of test accuracy (mean and spread over
seeds) for docs/results.md. The digits MLP's first layer holds 86 % of its
synapses, so for it every layer is pruned (--prune fc1 --prune fc2); the conv
sample keeps its first layer dense (the paper's default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BUDGETS = ("0.2", "0.1", "0.05", "0.02", "0.01")
METHODS = ("minimax", "magnitude", "gradual")
MODELS = {
    "digits_mlp": ["--prune", "fc1", "--prune", "fc2"],
    "digits_conv": [],
}


def run(model: str, extra: list[str], method: str, seed: int, steps: int, out: Path) -> dict:
    folder = out / f"{model}-{method}-seed{seed}"
    report = folder / "report.json"
    if not report.exists():
        sample = Path(__file__).resolve().parent.parent / "samples" / f"{model}.onnx"
        command = [sys.executable, "-m", "onnx_snn_compress", "compress", str(sample), "--out", str(folder),
                   "--method", method, "--seed", str(seed), "--steps-per-budget", str(steps), "--json", *extra]
        for budget in BUDGETS:
            command += ["--budget", budget]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("results-runs"))
    args = parser.parse_args()
    for model, extra in MODELS.items():
        print(f"\n### {model} (test accuracy %, mean ± spread over seeds {', '.join(map(str, args.seeds))}; "
              f"{args.steps} steps per budget)\n")
        print("| method | " + " | ".join(f"{float(b) * 100:g} %" for b in BUDGETS) + " |")
        print("|---|" + "---|" * len(BUDGETS))
        for method in METHODS:
            reports = [run(model, extra, method, seed, args.steps, args.out) for seed in args.seeds]
            cells = []
            for index in range(len(BUDGETS)):
                values = [100 * r["budgets"][index]["accuracy"]["test"] for r in reports]
                spread = (max(values) - min(values)) / 2
                forced = sum(r["budgets"][index]["forced"] for r in reports)
                cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}" + (f" (forced {forced})" if forced else ""))
            print(f"| {method} | " + " | ".join(cells) + " |")
        dense = reports[0]["input"]["accuracy"]["test"]
        print(f"\ninput model: {100 * dense:.2f} % test accuracy")


if __name__ == "__main__":
    main()
