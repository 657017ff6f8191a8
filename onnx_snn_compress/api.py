"""The Python API: what the ``compress`` and ``evaluate`` commands do, as functions.

``from onnx_snn_compress import compress, evaluate, load_model``. Each function
takes the command's options as keyword arguments (the long option name with
underscores: ``--steps-per-budget`` is ``steps_per_budget``) with the same
defaults, returns a typed result and raises :class:`~onnx_snn_compress.errors.SNNError`
(one line) on bad input. docs/api.md shows them at work.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import DataError, SNNError
from .gates import Gates, apply_to_report, check_selection

CONFIG_FILE = "config.toml"
# options of a call that do not change its result, so the saved configuration leaves them out
_NOT_RUN_OPTIONS = ("out", "resume", "overwrite", "keep_checkpoint", "progress", "log")
PATH_OPTIONS = ("model", "data", "out", "reference_model")  # options that name files or folders
STDERR = "stderr"  # the default ``log``: sys.stderr at call time (a test or notebook may replace it)


def run_options(function, values: dict) -> dict:
    """The options of ``function`` that decide its result, as JSON-ready values (paths absolute)."""
    options = {}
    for name in inspect.signature(function).parameters:
        if name in _NOT_RUN_OPTIONS:
            continue
        value = values[name]
        if name in PATH_OPTIONS and value is not None:
            value = str(Path(value).resolve())
        elif isinstance(value, tuple):
            value = list(value)
        options[name] = value
    return options


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, in hex (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _note(log, notes: Sequence[str]) -> None:
    for note in notes:
        if log is not None:
            print(f"note: {note}", file=log, flush=True)


@contextmanager
def _embedded_data_said(data):
    """A data error raised inside, when the user gave no ``data``, says that the embedded digits
    sample was read in its place (a user's model rarely takes 8x8 digits)."""
    try:
        yield
    except DataError as error:
        if data is not None:
            raise
        raise DataError(f"{error}; no --data was given, so the embedded 8x8 digits sample was read "
                        "(pass --data)") from None


def _load_source(path: Path, source_format: str, dt, nir_reset, framework, time_steps: int | None, log):
    """(IR graph, the file's own ONNX model when it is a profile file, T for static data: the
    model's own unless given, the note that says so or None), saying on ``log`` what the importer
    assumed. The T note is the caller's to say once the data are known to be static."""
    from .data import model_time_steps
    from .frontends import load_with_proto

    graph, proto = load_with_proto(path, source_format, dt=dt, nir_reset=nir_reset, framework=framework)
    time_steps, note = model_time_steps(graph.metadata, time_steps)
    _note(log, [n for n in graph.metadata.get("import_notes", "").split(" | ") if n])
    return graph, proto, time_steps, note


@dataclass
class CompressResult:
    """What a compression leaves: the report (report.json's content) and where the files are.

    ``passed``: every gate passes (with ``select="best-within-gates"``: one model does);
    always true without gates. ``selected``: the budget ``best-within-gates`` chose.
    """

    report: dict
    out: Path
    passed: bool
    selected: float | None
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    @property
    def report_path(self) -> Path:
        from .compress import REPORT

        return self.out / REPORT

    def model_path(self, budget: float) -> Path:
        """The exported model of ``budget`` (a value of ``report["budgets"][i]["budget"]``)."""
        for entry in self.report["budgets"]:
            if entry["budget"] == budget:
                return self.out / entry["model"]
        raise SNNError(f"no model for budget {budget}; budgets are {[e['budget'] for e in self.report['budgets']]}")

    def failed_gates(self) -> list[str]:
        """One line per budget whose model failed a gate."""
        return [f"budget {e['budget']:g}: {'; '.join(e['gate']['failed'])}"
                for e in self.report["budgets"] if not e.get("gate", {"passed": True})["passed"]]


def compress(
    model: str | Path | None = None,
    *,
    data: str | Path | None = None,
    budget: Sequence[float] | None = None,
    resource: str = "params",
    method: str = "minimax",
    granularity: str = "global",
    structure: str = "none",
    prune: Sequence[str] | None = None,
    out: str | Path = "snn-compress-out",
    steps_per_budget: int = 300,
    search_fraction: float = 0.5,
    finetune_lr_factor: float = 10.0,
    min_output_synapses: int = 1,
    distill: float | None = None,
    reconnect: bool | None = None,
    search_lr_factor: float | None = None,
    search_every: int | None = None,
    eval_every: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    lr_s: float = 0.1,
    dual_lr_y: float = 1.0,
    dual_lr_z: float = 0.1,
    e_mac: float = 4.6,
    e_ac: float = 0.9,
    time_steps: int | None = None,
    encoding: str = "direct",
    seed: int = 0,
    measure_samples: int = 256,
    source_format: str = "auto",
    dt: float | None = None,
    nir_reset: str | None = None,
    framework: str | None = None,
    threads: int | None = None,
    storage: str = "dense",
    remove_dead: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    keep_checkpoint: bool = False,
    min_accuracy: float | None = None,
    max_accuracy_drop: float | None = None,
    max_resource: float | None = None,
    select: str = "all",
    progress: bool = True,
    log=STDERR,
) -> CompressResult:
    """Prune ``model`` to each budget with joint finetuning (``snn-compress compress``).

    Writes ``out/budget_B/model.onnx`` per budget, ``out/report.json`` (schema:
    ``snn-compress schema``) and ``out/config.toml`` (these options; ``snn-compress
    compress --config out/config.toml`` repeats the run). Without ``model`` the
    embedded digits conv sample is compressed, without ``data`` the embedded digits.
    Budgets are fractions of the input model's ``resource`` in (0, 1] (default 0.3,
    0.2, 0.1, 0.05). Gates: see :mod:`onnx_snn_compress.gates`; a failed gate
    does not raise, it sets ``passed`` to false. Notes on what was assumed go to ``log``.
    Raises SNNError on bad input; KeyboardInterrupt leaves a checkpoint for ``resume``.
    A folder that holds a run is refused unless ``resume`` or ``overwrite`` (which
    removes that run's files, nothing else); the run locks ``out`` while it writes,
    removes its checkpoint when finished unless ``keep_checkpoint``, and a fresh run
    that fails leaves nothing behind (docs/safety.md).
    """
    started = time.perf_counter()
    options = run_options(compress, locals())
    log = sys.stderr if log == STDERR else log
    from .compress import CHECKPOINT, REPORT, CompressConfig, Compression
    from .config import to_toml
    from .data import load_splits_for_model, split_notes
    from .files import atomic_write_text
    from .outputs import RunFolder, check_output_folder
    from .report import FIGURES, figures_missing_note, write_figures
    from .resources import EnergyModel
    from .samples import digits_path, sample_model_path
    from .threads import training_step_macs, use_threads
    from .train import TrainConfig

    if threads is not None:
        use_threads(threads)  # a count that cannot be used is refused before anything is read
    gates = Gates(min_accuracy, max_accuracy_drop, max_resource)
    gates.validate()
    check_selection(select)
    out = Path(out)
    source = Path(model) if model is not None else sample_model_path("digits_conv")  # a small first layer
    data_path = Path(data) if data is not None else digits_path()
    # what a run writes at the top of its folder, and the names that mean a folder holds a run
    writes = (REPORT, CHECKPOINT, CONFIG_FILE, "report.html", "budget_*", ".*.tmp",
              *(f"{name}.{suffix}" for name in FIGURES for suffix in ("png", "svg")))
    check_output_folder(out, {"the input model": source, "--data": data_path}, writes)
    folder = RunFolder(out, writes, (REPORT, CHECKPOINT), resume=resume, overwrite=overwrite)
    folder.check()
    graph, _, time_steps, steps_note = _load_source(source, source_format, dt, nir_reset, framework, time_steps, log)
    with _embedded_data_said(data):
        train_data, val_data, test_data = load_splits_for_model(
            data_path, graph.input.shape, graph.num_classes, time_steps=time_steps, encoding=encoding, seed=seed
        )
    _note(log, [steps_note] if steps_note and not train_data.temporal else [])
    _note(log, split_notes(data_path, (train_data, val_data, test_data), graph.input.shape,
                           without_val="each budget's snapshot is chosen on the training split",
                           without_test="no test accuracy is measured and no accuracy curve (curve.png) drawn"))
    threads_used, threads_note = use_threads(threads, training_step_macs(graph, batch_size, train_data.time_steps))
    # the note is said once the run has succeeded (errors stay one line)
    config = CompressConfig(
        budgets=tuple(budget) if budget else CompressConfig.budgets,
        resource=resource, method=method, granularity=granularity, structure=structure,
        prunable=list(prune) if prune else None, storage=storage, remove_dead=remove_dead,
        steps_per_budget=steps_per_budget, search_fraction=search_fraction, finetune_lr_factor=finetune_lr_factor,
        min_output_synapses=min_output_synapses, distill=distill, reconnect=reconnect, search_lr_factor=search_lr_factor,
        search_every=search_every, eval_every=eval_every, lr_s=lr_s, dual_lr_y=dual_lr_y, dual_lr_z=dual_lr_z,
        energy=EnergyModel(e_mac_pj=e_mac, e_ac_pj=e_ac), measure_samples=measure_samples,
        train=TrainConfig(lr=lr, batch_size=batch_size, seed=seed, schedule="cosine", progress=progress),
    )
    config.validate()
    options["budget"] = list(config.budgets)
    provenance = {
        "inputs": {"model": {"path": str(source), "sha256": file_sha256(source)},
                   "data": {"path": str(data_path), "sha256": file_sha256(data_path)}},
        "config": options,
        "threads": threads_used,  # results repeat bit for bit per seed and thread count
    }
    loaded = time.perf_counter()
    run = Compression(graph, train_data, val_data, test_data, config, out, source=str(source), log=log,
                      provenance=provenance, keep_checkpoint=keep_checkpoint)
    _note(log, run.notes)
    with folder:
        _note(log, folder.notes)
        if resume:
            run.restore()
        atomic_write_text(out / CONFIG_FILE, to_toml(
            options, f"snn-compress compress --config {out / CONFIG_FILE} --out NEW_FOLDER repeats this run"))
        run.run()
        run.timings["load"] = loaded - started
        run.timings["total"] = time.perf_counter() - started
        report = {**run.report(), "timings_s": run.timings}
        passed = apply_to_report(report, gates, select)
        atomic_write_text(out / REPORT, _json(report))
        figures = write_figures(report, out)
    late_notes = [n for n in (threads_note, None if figures else figures_missing_note()) if n]
    _note(log, late_notes)
    return CompressResult(report=report, out=out, passed=passed, selected=report["selected"],
                          notes=list(run.notes) + late_notes, figures=figures)


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2)


@dataclass
class EvaluateResult:
    """Accuracy, firing rates and gate verdict of one model on one split (``snn-compress evaluate``).

    ``figures``: the resource figures per inference (only when a resource gate asked for
    them); ``reference_accuracy``: the uncompressed model's, on the same split and runtime.
    """

    model: Path
    split: str
    runtime: str
    samples: int
    time_steps: int
    accuracy: float
    firing_rates: dict[str, float]
    reference_accuracy: float | None = None
    figures: dict[str, float] | None = None
    gates: Gates = field(default_factory=Gates)
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_json(self) -> dict:
        result = {"model": str(self.model), "split": self.split, "runtime": self.runtime, "samples": self.samples,
                  "time_steps": self.time_steps, "accuracy": self.accuracy, "firing_rates": self.firing_rates}
        if self.reference_accuracy is not None:
            result["reference_accuracy"] = self.reference_accuracy
        if self.figures is not None:
            result["figures"] = self.figures
        if self.gates.active:
            result["gates"] = {**self.gates.to_json(), "passed": self.passed, "failed": self.failed}
        return result


def evaluate(
    model: str | Path | None = None,
    *,
    data: str | Path | None = None,
    runtime: str = "sim",
    split: str = "test",
    encoding: str = "direct",
    time_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    source_format: str = "auto",
    dt: float | None = None,
    nir_reset: str | None = None,
    framework: str | None = None,
    min_accuracy: float | None = None,
    max_accuracy_drop: float | None = None,
    reference_model: str | Path | None = None,
    max_resource: float | None = None,
    resource: str = "params",
    e_mac: float = 4.6,
    e_ac: float = 0.9,
    measure_samples: int = 256,
    progress: bool = True,
    log=STDERR,
) -> EvaluateResult:
    """Accuracy and per-layer firing rates of ``model`` on ``split`` of ``data``, in the
    Numba simulator (``runtime="sim"``) or onnxruntime, checked against the gates.

    ``max_accuracy_drop`` compares with ``reference_model`` (the uncompressed model) on
    the same split and runtime. ``max_resource`` bounds ``resource`` per inference
    (synapses, MACs, SynOps or pJ), with rates measured on the first ``measure_samples``
    samples of the split. Without ``model``: the embedded digits MLP; without ``data``:
    the embedded digits. Import notes go to ``log``. Raises SNNError on bad input.
    """
    from .data import layout_note, load_for_model
    from .evaluate import RUNTIMES, evaluate as run_evaluation
    from .progress import Progress
    from .resources import RESOURCES, EnergyModel, measure_activity, resource_figures
    from .samples import digits_path, sample_model_path

    log = sys.stderr if log == STDERR else log
    if runtime not in RUNTIMES:
        raise SNNError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if resource not in RESOURCES:
        raise SNNError(f"unknown resource {resource!r}; choose one of {', '.join(RESOURCES)}")
    gates = Gates(min_accuracy, max_accuracy_drop, max_resource)
    gates.validate()
    if max_accuracy_drop is not None and reference_model is None:
        raise SNNError("--max-accuracy-drop needs --reference-model (the uncompressed model to compare with)")
    data_path = Path(data) if data is not None else digits_path()

    def measure(path: Path):
        graph, proto, steps, steps_note = _load_source(path, source_format, dt, nir_reset, framework, time_steps, log)
        with _embedded_data_said(data):
            dataset = load_for_model(data_path, graph.input.shape, graph.num_classes, split=split,
                                     time_steps=steps, encoding=encoding, seed=seed)
        _note(log, [n for n in (steps_note if not dataset.temporal else None,
                                layout_note(data_path, dataset, graph.input.shape)) if n])
        return graph, dataset, run_evaluation(graph, dataset, runtime=runtime, model=proto, batch_size=batch_size,
                                                     progress=Progress(log, quiet=log is None or not progress))

    path = Path(model) if model is not None else sample_model_path("digits_mlp")
    graph, dataset, evaluation = measure(path)
    reference = measure(Path(reference_model))[2].accuracy if reference_model is not None else None
    figures = None
    if max_resource is not None:
        activity = measure_activity(graph, dataset.inputs(slice(0, measure_samples)))
        figures = resource_figures(graph, activity, EnergyModel(e_mac_pj=e_mac, e_ac_pj=e_ac))
    failed = gates.failures(evaluation.accuracy, reference, resource, figures[resource] if figures else None)
    return EvaluateResult(model=path, split=split, runtime=runtime, samples=evaluation.samples,
                          time_steps=evaluation.time_steps, accuracy=evaluation.accuracy,
                          firing_rates=evaluation.firing_rates, reference_accuracy=reference, figures=figures,
                          gates=gates, failed=failed)


__all__ = ["CompressResult", "EvaluateResult", "compress", "evaluate"]
