"""Human views of a compression report: a table for the terminal, a curve for the eye."""

from __future__ import annotations

from pathlib import Path

from .files import atomic_write_bytes

UNITS = {"params": "synapses", "macs": "MACs", "synops": "SynOps", "energy": "pJ"}


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def table(report: dict) -> str:
    """One row per budget: achieved resource, all four figures, accuracies in both runtimes."""
    header = ["budget", "achieved", "params", "MACs", "SynOps", "energy µJ", "val acc", "test acc", "test acc (ORT)", "note"]
    source = report["input"]
    rows = [[
        "input", "100%", f"{source['figures']['params']:,.0f}", f"{source['figures']['macs']:,.0f}",
        f"{source['figures']['synops']:,.0f}", f"{source['figures']['energy'] / 1e6:.4f}",
        _percent(source["accuracy"].get("val")), _percent(source["accuracy"].get("test")), "", "",
    ]]
    for entry in report["budgets"]:
        figures, accuracy = entry["figures"], entry["accuracy"]
        notes = [n for n, flag in (("forced", entry["forced"]), ("repaired", entry["repaired"]),
                                   ("RUNTIMES DISAGREE", not entry["runtimes_agree"])) if flag]
        rows.append([
            f"{entry['budget']:g}", _percent(entry["achieved"]), f"{figures['params']:,.0f}", f"{figures['macs']:,.0f}",
            f"{figures['synops']:,.0f}", f"{figures['energy'] / 1e6:.4f}", _percent(accuracy.get("val")),
            _percent(accuracy.get("test")), _percent(accuracy.get("test_onnxruntime")), ", ".join(notes),
        ])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = (f"{report['method']} compression of {report['input_model']}: budgets of {report['resource']} "
             f"({UNITS[report['resource']]}), measured on the {report['measured_on']}")
    return title + "\n" + "\n".join(lines)


def plot_curve(report: dict, folder: Path) -> list[Path]:
    """Accuracy versus achieved resource as curve.png and curve.svg; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return []
    entries = sorted(report["budgets"], key=lambda e: e["achieved"])
    split = next((s for s in ("test", "val") if entries and all(s in e["accuracy"] for e in entries)), None)
    if split is None:  # data without a validation or test split: no accuracy to plot
        return []
    figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    axis.plot([100 * e["achieved"] for e in entries], [100 * e["accuracy"][split] for e in entries], "o-",
              label=report["method"])
    if split in report["input"]["accuracy"]:
        axis.axhline(100 * report["input"]["accuracy"][split], color="grey", linestyle="--", label="input model")
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_ylim(0, 102)  # room above a 100 % line
    axis.set_xlabel(f"{report['resource']} kept (% of the input model)")
    axis.set_ylabel(f"{split} accuracy (%)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    written = []
    for suffix in ("png", "svg"):
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix)
        path = folder / f"curve.{suffix}"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    plt.close(figure)
    return written
