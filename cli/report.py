"""The report command: re-render a finished run's table and figures from its report.json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import JsonOpt, app, print_json


@app.command()
def report(
    folder: Path = typer.Argument(..., help="The --out folder of a compress run (it holds report.json)."),
    as_html: bool = typer.Option(False, "--html", help="Also write report.html: the table and figures in one self-contained page."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="Another run's folder to draw on the curve as a baseline (repeat). Runs in FOLDER's subfolders are drawn too."),
    as_json: bool = JsonOpt,
):
    """Print the table and write the figures of a finished run, without recomputing.

    Example: snn-compress report snn-compress-out --html
    """
    from ..report import figures_missing_note, load_report, render

    text, written = render(folder, as_html=as_html, compare=list(compare or []))
    if not any(p.suffix in (".png", ".svg") for p in written) and figures_missing_note():
        typer.echo(f"note: {figures_missing_note()}", err=True)
    if as_json:  # the report itself, as report.json holds it, and what was written
        print_json({"report": load_report(folder), "written": [str(p) for p in written]})
        return
    typer.echo(text)
    if written:
        typer.echo("\nwrote " + ", ".join(str(p) for p in written))
