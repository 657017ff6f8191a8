"""Compression quality: test accuracy of every method on the sample models, at equal training steps.

    python bench/quality.py [--models digits_conv digits_mlp mnist_conv mnist_mlp]
                            [--methods minimax minimax-paper magnitude gradual]
                            [--budgets 0.2 0.1 0.05 0.02 0.01] [--steps 300]
                            [--seeds 0 1 2] [--jobs 2]

Runs ``snn-compress compress`` once for every model x method x seed, with the
same budgets and the same ``--steps`` training steps per budget for every
method, each in a fresh temporary folder (nothing of an earlier run or commit is
ever read back), ``--jobs`` processes at a time with one thread each
(NUMBA_NUM_THREADS=1). Then prints one markdown table per model: the test-split
accuracy (%) of each budget's exported model, mean and (min-max) over seeds,
with the command, the commit and the date that produced it, each model's table
as soon as its runs are done. docs/results.md is this output.

A method may carry extra ``compress`` options, for ablations:
``--methods minimax "minimax --search-fraction 0.2"`` (the whole string labels the row).

The MLPs' first layer holds most of their synapses, so they are compressed with
every layer prunable (``--prune fc1 --prune fc2``); the conv models keep their
first layer dense (the paper's default). A full run is hours of CPU: size it
with the options. The library, kernels and CLI are this file's tree's, in this process and each
run's (``python bench/tree.py ROOT -m onnx_snn_compress``), whatever is installed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from tree import use_tree  # noqa: E402

use_tree(ROOT)
from onnx_snn_compress.samples import SAMPLE_MODELS, sample_data_path, sample_model_path  # noqa: E402

PRUNE = {"digits_mlp": ["--prune", "fc1", "--prune", "fc2"], "mnist_mlp": ["--prune", "fc1", "--prune", "fc2"]}
ONE_THREAD = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SAMPLE_MODELS), choices=SAMPLE_MODELS)
    parser.add_argument("--methods", nargs="+", default=["minimax", "minimax-paper", "magnitude", "gradual"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.2, 0.1, 0.05, 0.02, 0.01])
    parser.add_argument("--steps", type=int, default=300, help="training steps per budget, for every method")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (one thread each)")
    return parser.parse_args(argv)


def compress_command(model: str, method: str, seed: int, budgets: list[float], steps: int, out: Path) -> list[str]:
    name, *extra = shlex.split(method)
    command = [sys.executable, str(ROOT / "bench" / "tree.py"), str(ROOT), "-m", "onnx_snn_compress", "compress",
               str(sample_model_path(model)),
               "--data", str(sample_data_path(model)), "--out", str(out), "--method", name, "--seed", str(seed),
               "--steps-per-budget", str(steps), "--json", *PRUNE.get(model, []), *extra]
    for budget in budgets:
        command += ["--budget", repr(budget)]
    return command


def run_one(model: str, method: str, seed: int, budgets: list[float], steps: int) -> dict:
    """One compression in a fresh temporary folder; its report (the folder is removed)."""
    with tempfile.TemporaryDirectory(prefix="snn-quality-") as folder:
        command = compress_command(model, method, seed, budgets, steps, Path(folder) / "run")
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr.strip()}")
        report = json.loads(done.stdout)
    accuracies = " / ".join(f"{100 * entry['accuracy']['test']:.1f}" + (" forced" if entry["forced"] else "")
                            for entry in report["budgets"])
    print(f"  {model} {method} seed {seed}: {time.perf_counter() - started:.0f} s, test % {accuracies}",
          file=sys.stderr, flush=True)  # each run's result as it comes, so a long run's partial results survive
    return report


def cell(values: list[float], forced: int) -> str:
    text = f"{statistics.fmean(values):.1f} ({min(values):.1f}-{max(values):.1f})"
    return text + (f" [{forced} forced]" if forced else "")


def table(model: str, methods: list[str], budgets: list[float], reports: dict) -> str:
    """The markdown table of one model; ``reports``: (model, method, seed) -> report, of this model."""
    dense = next(iter(reports.values()))["input"]["accuracy"].get("test")
    lines = [f"### {model}" + (f" ({100 * dense:.1f} % test accuracy before compression)" if dense is not None else ""),
             "", "| method | " + " | ".join(f"{100 * b:g} %" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method in methods:
        runs = [report for (_, label, _), report in reports.items() if label == method]
        cells = []
        for index in range(len(budgets)):
            entries = [run["budgets"][index] for run in runs]
            cells.append(cell([100 * e["accuracy"]["test"] for e in entries], sum(bool(e["forced"]) for e in entries)))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def environment() -> str:
    """The Python and the packages whose versions can change a run's floats (BLAS, LLVM's code)."""
    versions = []
    for package in ("numpy", "scipy", "numba", "llvmlite", "onnxruntime"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    return f"Python {platform.python_version()}, " + ", ".join(versions)


def main(argv=None) -> None:
    args = parse_args(argv)
    budgets = sorted(args.budgets, reverse=True)
    jobs = [(model, method, seed) for model in args.models for method in args.methods for seed in args.seeds]
    started = time.perf_counter()
    print(f"Test accuracy %, mean (min-max) over seeds {', '.join(map(str, args.seeds))}; "
          f"{args.steps} training steps per budget for every method; [n forced]: the search did not meet "
          f"the budget in n runs and the rest was pruned by magnitude.\n")
    print("```\npython bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv) + "\n```")
    print(f"commit {commit()}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {environment()}\n", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(run_one, *job, budgets, args.steps) for job in jobs}
        for model in args.models:  # each table as soon as its runs are done
            reports = {job: future.result() for job, future in futures.items() if job[0] == model}
            print(table(model, args.methods, budgets, reports) + "\n", flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"{len(jobs)} runs in {minutes:.0f} min with {args.jobs} jobs of one thread each")


if __name__ == "__main__":
    main()
