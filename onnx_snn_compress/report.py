"""Human views of a compression report: numbers rounded for people, a table, figures, a page.

Everything here reads a finished ``report.json`` (a dict) and recomputes nothing,
so ``snn-compress report DIR`` re-renders a run's views at any time. Figures
need matplotlib (the ``plot`` extra); without it they are skipped with a note.
Full precision stays in report.json; the text here is rounded.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from .errors import SNNError, install_hint
from .files import atomic_write_bytes, atomic_write_text

UNITS = {"params": "synapses", "macs": "MACs", "effective_macs": "MACs", "synops": "SynOps", "energy": "pJ"}
FIGURES = ("curve", "connectivity", "firing_rates")  # written as NAME.png and NAME.svg


# ---------------------------------------------------------------------------
# Numbers for people
# ---------------------------------------------------------------------------
def percent(value: float | None) -> str:
    """A fraction as a percentage with three significant digits: ``96.4 %``, ``0.52 %``; ``-`` for None."""
    return "-" if value is None else f"{100 * value:.3g} %"


def accuracy_percent(value: float | None) -> str:
    """An accuracy as a percentage with one decimal from 10 % up, so that a column reads alike
    (``96.0 %`` beside ``96.2 %``, not ``96 %``); below, as :func:`percent` (``9.87 %``)."""
    return percent(value) if value is None or value < 0.1 else f"{100 * value:.1f} %"


def count(value: float, millions: bool | None = None) -> str:
    """An operation or synapse count: ``306,432``, ``12.3 M`` from ten million on. ``millions``
    forces the unit, so that a table column reads in one (``6.51 M`` beside ``16.8 M``)."""
    if millions is None:
        millions = value >= 1e7
    return f"{value / 1e6:.3g} M" if millions else f"{value:,.0f}"


def energy(picojoules: float) -> str:
    """Energy with a unit that keeps three significant digits: ``223 nJ``, ``0.9 pJ``, ``1.2 µJ``."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if picojoules >= scale:
            return f"{picojoules / scale:.3g} {unit}"
    return f"{picojoules:.3g} pJ"


def seconds(value: float) -> str:
    """A duration: ``8 s``, ``2 min 05 s``, ``1 h 02 min``."""
    value = max(0, int(round(value)))
    if value < 60:
        return f"{value} s"
    if value < 3600:
        return f"{value // 60} min {value % 60:02d} s"
    return f"{value // 3600} h {value % 3600 // 60:02d} min"


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
_COUNTED = ("params", "macs", "effective_macs", "synops")


def _figure_cells(figures: dict, millions: dict) -> list[str]:
    return [*(count(figures.get(key, math.nan), millions[key]) for key in _COUNTED), energy(figures["energy"])]


def table(report: dict) -> str:
    """One row per budget: share of the resource kept, every figure, accuracies in both runtimes."""
    header = ["budget", "kept", "synapses", "MACs (dense)", "eff. MACs", "SynOps", "energy",
              "val acc", "test acc", "test acc (ORT)", "note"]
    source = report["input"]
    every = [source["figures"], *(entry["figures"] for entry in report["budgets"])]
    # one unit per column: millions when any row reaches ten million
    millions = {key: any(figures.get(key, 0) >= 1e7 for figures in every) for key in _COUNTED}
    rows = [["input", "100 %", *_figure_cells(source["figures"], millions),
             accuracy_percent(source["accuracy"].get("val")), accuracy_percent(source["accuracy"].get("test")), "", ""]]
    for entry in report["budgets"]:
        accuracy = entry["accuracy"]
        notes = [n for n, flag in (("forced", entry["forced"]), ("repaired", entry["repaired"]),
                                   ("RUNTIMES DISAGREE", not entry["runtimes_agree"])) if flag]
        rows.append([
            f"{entry['budget']:g}", percent(entry["achieved"]), *_figure_cells(entry["figures"], millions),
            accuracy_percent(accuracy.get("val")), accuracy_percent(accuracy.get("test")),
            accuracy_percent(accuracy.get("test_onnxruntime")),
            ", ".join(notes),
        ])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return _title(report) + "\n" + "\n".join(lines)


def _title(report: dict) -> str:
    measured = report["measured_on"]
    if "measure_samples" in report:
        measured = f"first {report['measure_samples']:,} samples of the {measured}"
    return (f"{report['method']} compression of {report['input_model']}: budgets of {report['resource']} "
            f"({UNITS[report['resource']]}); rates measured on the {measured}")


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(figure, folder: Path, name: str) -> list[Path]:
    written = []
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix, metadata={"Date": None} if suffix == "svg" else None)
        path = folder / f"{name}.{suffix}"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    figure.clf()
    return written


def _accuracy_split(entries: list[dict]) -> str | None:
    return next((s for s in ("test", "val") if entries and all(s in e["accuracy"] for e in entries)), None)


def curve_floor(lowest: float) -> float:
    """The bottom of the curve's accuracy axis (%) for its lowest point ``lowest`` (%): the tens
    at or below ``lowest - 5``, at least 0, so that points a few tenths apart near 100 % do not
    merge into one (an axis from 0 drew 96.9 and 99.2 % as one line)."""
    return max(0.0, 10 * ((lowest - 5) // 10))


def plot_curve(report: dict, folder: Path, baselines: dict[str, dict] | None = None) -> list[Path]:
    """Accuracy versus the share of the resource kept, as curve.png and curve.svg.

    ``baselines`` (label -> report) are drawn on the same axes, by their share of
    this report's resource. Nothing is written without matplotlib or without a
    validation or test split (no accuracy to plot).
    """
    plt = _pyplot()
    entries = sorted(report["budgets"], key=lambda e: e["achieved"])
    split = _accuracy_split(entries)
    if plt is None or split is None:
        return []
    import matplotlib.ticker

    resource = report["resource"]
    figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    runs = {report["method"]: report, **(baselines or {})}
    lowest = 100.0
    for label, run in runs.items():
        points = sorted((e["fractions"][resource], e["accuracy"][split]) for e in run["budgets"]
                        if e.get("fractions", {}).get(resource) and split in e["accuracy"])
        if points:
            axis.plot([100 * x for x, _ in points], [100 * y for _, y in points], "o-", label=label)
            lowest = min([lowest, *(100 * y for _, y in points)])
    if split in report["input"]["accuracy"]:
        axis.axhline(100 * report["input"]["accuracy"][split], color="grey", linestyle="--", label="input model")
        lowest = min(lowest, 100 * report["input"]["accuracy"][split])
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_ylim(curve_floor(lowest), 101)  # room above a 100 % line
    axis.set_xlabel(f"{resource} kept (% of the input model)")
    axis.set_ylabel(f"{split} accuracy (%)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    written = _save(figure, folder, "curve")
    plt.close(figure)
    return written


def _grouped_bars(plt, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str):
    figure, axis = plt.subplots(figsize=(max(5.5, 1.1 * len(groups) + 2), 3.8), dpi=120)
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        axis.bar([g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))],
                 [100 * v for v in values], width, label=label)
    axis.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 5 else 0)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize="medium")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize="small", ncols=min(3, len(series)))
    figure.tight_layout()
    return figure


def plot_layers(report: dict, folder: Path) -> list[Path]:
    """Per-layer connectivity (connectivity.png/svg) and per-layer firing rates
    (firing_rates.png/svg), one bar per budget; nothing without matplotlib."""
    plt = _pyplot()
    entries = report["budgets"]
    if plt is None or not entries:
        return []
    import matplotlib.ticker

    label = lambda e: f"budget {e['budget']:g}"  # noqa: E731
    written = []
    layers = list(entries[0]["layers"])
    figure = _grouped_bars(plt, layers, {label(e): [e["layers"][n]["connectivity"] for n in layers] for e in entries},
                           "connectivity (% of synapses kept)", "per-layer connectivity")
    figure.axes[0].set_yscale("log")
    figure.axes[0].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    written += _save(figure, folder, "connectivity")
    plt.close(figure)
    neurons = list(entries[0]["firing_rates"])
    figure = _grouped_bars(plt, neurons, {label(e): [e["firing_rates"][n] for n in neurons] for e in entries},
                           "firing rate (% of neurons per time step)", "per-layer firing rates")
    written += _save(figure, folder, "firing_rates")
    plt.close(figure)
    return written


def write_figures(report: dict, folder: Path, baselines: dict[str, dict] | None = None) -> list[Path]:
    """Every figure of :data:`FIGURES` that the report and the installed packages allow."""
    return plot_curve(report, folder, baselines) + plot_layers(report, folder)


def figures_missing_note() -> str | None:
    """Why no figure was written, when matplotlib is missing; None otherwise."""
    if _pyplot() is not None:
        return None
    return f"no figures: matplotlib is not installed; {install_hint('plot')}"


# ---------------------------------------------------------------------------
# A folder's report, its baselines, and one self-contained page
# ---------------------------------------------------------------------------
def load_report(folder: Path) -> dict:
    """The report.json in ``folder``; SNNError when it is missing or not a compression report."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise SNNError(f"{path} does not exist; give the --out folder of a compress run")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SNNError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(report, dict) or not {"budgets", "input", "method", "resource"} <= report.keys():
        raise SNNError(f"{path} is not a compression report (no budgets, input, method and resource)")
    return report


def find_baselines(folder: Path, extra: list[Path] = ()) -> dict[str, dict]:
    """Reports to compare with: those in ``folder``'s subfolders (e.g. ``DIR/magnitude/``)
    and in the ``extra`` folders, labelled by method and folder name."""
    folders = [p.parent for p in sorted(Path(folder).glob("*/report.json"))] + [Path(p) for p in extra]
    return {f"{report['method']} ({path.name})": report for path in folders for report in [load_report(path)]}


def write_html(report: dict, folder: Path, figures: list[Path]) -> Path:
    """``report.html``: the table and every figure, inlined (SVG as is, PNG as base64), no other file needed."""
    parts = []
    for path in figures:
        if path.suffix == ".svg":
            svg = path.read_text(encoding="utf-8")
            parts.append(svg[svg.index("<svg"):])
        elif path.with_suffix(".svg") not in figures:  # a PNG without its SVG twin
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f'<img alt="{path.stem}" src="data:image/png;base64,{data}">')
    title = html.escape(_title(report))
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>snn-compress report</title></head>\n<body>\n<h1>snn-compress report</h1>\n<p>{title}</p>\n"
        f"<pre>{html.escape(table(report).split(chr(10), 1)[1])}</pre>\n"
        + "\n".join(f"<figure>{part}</figure>" for part in parts)
        + "\n</body></html>\n"
    )
    path = Path(folder) / "report.html"
    atomic_write_text(path, page)
    return path


def render(folder: Path, as_html: bool = False, compare: list[Path] = ()) -> tuple[str, list[Path]]:
    """Re-render the table and the figures of the run in ``folder`` from its report.json,
    without recomputing anything: (the table, files written).

    Raises SNNError when the folder holds no readable report, or one that lacks what a
    view needs (written by another version).
    """
    report = load_report(folder)
    try:
        text = table(report)
        written = write_figures(report, Path(folder), find_baselines(folder, compare))
        if as_html:
            written.append(write_html(report, Path(folder), written))
    except (KeyError, TypeError, AttributeError) as error:
        raise SNNError(f"{Path(folder) / 'report.json'} lacks what the views need ({type(error).__name__}: {error}); "
                       "was it written by another version?") from None
    return text, written
